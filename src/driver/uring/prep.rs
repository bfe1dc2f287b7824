//! One SQE per operation step: the io_uring column of the operation table (spec §8.2).

use io_uring::{opcode, squeue, types::Fd};

use crate::op::machine::Step;

/// The SQE that performs `step`. The caller sets the user data.
pub(super) fn sqe(step: Step) -> squeue::Entry {
    match step {
        Step::Recv { fd, buf, len, flags } => opcode::Recv::new(Fd(fd), buf, len).flags(flags).build(),
        Step::RecvMsg { fd, msg, flags } => opcode::RecvMsg::new(Fd(fd), msg).flags(flags as u32).build(),
        Step::Send { fd, buf, len, flags } => opcode::Send::new(Fd(fd), buf, len).flags(flags).build(),
        Step::SendMsg { fd, msg, flags } => opcode::SendMsg::new(Fd(fd), msg).flags(flags as u32).build(),
        Step::Accept { fd, addr, len } => opcode::Accept::new(Fd(fd), addr, len).flags(libc::SOCK_CLOEXEC).build(),
        Step::Connect { fd, addr, len } => opcode::Connect::new(Fd(fd), addr, len).build(),
        Step::Shutdown { fd, how } => opcode::Shutdown::new(Fd(fd), how).build(),
    }
}

/// The opcodes this backend needs; ring setup fails over to another backend without them.
pub(super) const REQUIRED_OPCODES: [(u8, &str); 9] = [
    (opcode::Nop::CODE, "NOP"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::RecvMsg::CODE, "RECVMSG"),
    (opcode::Send::CODE, "SEND"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Accept::CODE, "ACCEPT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::Shutdown::CODE, "SHUTDOWN"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
];
