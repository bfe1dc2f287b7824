//! One SQE per operation step: the io_uring column of the operation table (spec §8.2).

use io_uring::types::{Fd, Fixed};
use io_uring::{opcode, squeue};

use crate::op::machine::Step;

/// Builds `$build` with `$t` as the request's file: its fixed-file slot if registered,
/// else its descriptor.
macro_rules! on_target {
    ($t:expr, |$f:ident| $build:expr) => {
        match $t.fixed {
            Some(slot) => {
                let $f = Fixed(slot);
                $build
            }
            None => {
                let $f = Fd($t.fd);
                $build
            }
        }
    };
}

/// The SQE that performs `step`. The caller sets the user data.
pub(super) fn sqe(step: Step) -> squeue::Entry {
    match step {
        Step::Recv { fd, buf, len, flags } => on_target!(fd, |f| opcode::Recv::new(f, buf, len).flags(flags).build()),
        Step::RecvMsg { fd, msg, flags } => {
            on_target!(fd, |f| opcode::RecvMsg::new(f, msg).flags(flags as u32).build())
        }
        Step::Send { fd, buf, len, flags } => on_target!(fd, |f| opcode::Send::new(f, buf, len).flags(flags).build()),
        Step::SendMsg { fd, msg, flags } => {
            on_target!(fd, |f| opcode::SendMsg::new(f, msg).flags(flags as u32).build())
        }
        Step::Accept { fd, addr, len } => {
            on_target!(fd, |f| opcode::Accept::new(f, addr, len).flags(libc::SOCK_CLOEXEC).build())
        }
        Step::Connect { fd, addr, len } => on_target!(fd, |f| opcode::Connect::new(f, addr, len).build()),
        Step::Shutdown { fd, how } => on_target!(fd, |f| opcode::Shutdown::new(f, how).build()),
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
