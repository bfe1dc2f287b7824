//! How each operation advances: which kernel request comes next ([`next_step`]) and what a
//! request's result means ([`on_result`]). Backend-independent: io_uring turns a [`Step`] into
//! an SQE, the readiness backend into a non-blocking system call.
//!
//! Multi-step operations: a stream send whose request came back short is resubmitted for the
//! rest until every byte is sent (WS-1, §8.4.7); `AcceptEx` with a receive buffer is an accept
//! then a receive on the new socket (AX-4); `ConnectEx` with data is a connect then a send
//! (CX-2).
//!
//! Receives write into the spare capacity of the record's buffers; [`commit_received`] extends
//! the buffers over what the kernel reported writing, the one place this module needs `unsafe`.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, RawFd};

use super::{OpKind, OpState};
use crate::error::{Error, ErrorKind};
use crate::sys;

/// The descriptor a request works on, and its slot in the backend's table of registered
/// files, if it has one (io_uring fixed files: no per-request descriptor lookup).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) fd: RawFd,
    pub(crate) fixed: Option<u32>,
}

/// One kernel request. Pointers refer into the operation record, which outlives the request.
#[derive(Debug)]
pub(crate) enum Step {
    Recv { fd: Target, buf: *mut u8, len: u32, flags: i32 },
    RecvMsg { fd: Target, msg: *mut libc::msghdr, flags: i32 },
    Send { fd: Target, buf: *const u8, len: u32, flags: i32 },
    SendMsg { fd: Target, msg: *const libc::msghdr, flags: i32 },
    Accept { fd: Target, addr: *mut libc::sockaddr, len: *mut libc::socklen_t },
    Connect { fd: Target, addr: *const libc::sockaddr, len: libc::socklen_t },
    Shutdown { fd: Target, how: i32 },
}

/// What a request's result means for the operation.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Another step is needed; call [`next_step`] and submit it.
    Again,
    /// The operation is complete with this status; `bytes`/`flags` are set.
    Done(Result<(), Error>),
}

/// Flags every send carries (no `SIGPIPE` on a reset connection).
pub(crate) const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;

/// The next kernel request of `op`. Panics if `op` is idle (a bug: only issued records get
/// here).
pub(crate) fn next_step(op: &mut OpState) -> Step {
    let socket = op.socket.as_ref().expect("issued operation has a socket");
    // Registered files belong to the port's ring; other operations run on the engine's.
    let fixed = if op.notify.is_port() { socket.fixed_slot() } else { None };
    let fd = Target { fd: socket.fd(), fixed };
    let stream = socket.is_stream();
    match &op.kind {
        OpKind::Recv { flags } => recv_step(op, fd, *flags, stream, false),
        OpKind::RecvFrom { flags } => recv_step(op, fd, *flags, false, true),
        OpKind::Send { flags } => send_step(op, fd, *flags, false),
        OpKind::SendTo { flags, .. } => send_step(op, fd, *flags, true),
        OpKind::Accept { accepted: None } => {
            let (addr, len) = op.args().addr_out();
            Step::Accept { fd, addr, len }
        }
        OpKind::Accept { accepted: Some(new) } => {
            let new_fd = Target { fd: new.as_raw_fd(), fixed: None };
            recv_step(op, new_fd, 0, true, false)
        }
        OpKind::Connect { connected: false, .. } => {
            let (addr, len) = op.args().addr_ptr();
            Step::Connect { fd, addr, len }
        }
        OpKind::Connect { connected: true, .. } => send_step(op, fd, 0, false),
        OpKind::Disconnect => Step::Shutdown { fd, how: libc::SHUT_WR },
        OpKind::Idle => unreachable!("idle operation has no step"),
    }
}

fn recv_step(op: &mut OpState, fd: Target, flags: i32, plain: bool, with_addr: bool) -> Step {
    if plain && op.bufs.len() == 1 {
        let spare = op.bufs[0].spare_capacity_mut();
        return Step::Recv { fd, buf: spare.as_mut_ptr().cast(), len: clamp_len(spare.len()), flags };
    }
    let (args, bufs) = op.args_and_bufs();
    args.set_spare_iovecs(bufs);
    Step::RecvMsg { fd, msg: args.msghdr(with_addr, true), flags }
}

fn send_step(op: &mut OpState, fd: Target, flags: i32, with_addr: bool) -> Step {
    let flags = flags | SEND_FLAGS;
    if !with_addr && op.bufs.len() == 1 {
        let rest = &op.bufs[0][op.progress..];
        return Step::Send { fd, buf: rest.as_ptr(), len: clamp_len(rest.len()), flags };
    }
    let progress = op.progress;
    let (args, bufs) = op.args_and_bufs();
    args.set_iovecs(bufs, progress);
    Step::SendMsg { fd, msg: args.msghdr(with_addr, false), flags }
}

/// Whether [`next_step`] would return a plain send: [`Step::Send`] of one buffer, with no
/// flags but [`SEND_FLAGS`] (a stream send or a connect's data). Decided from the kind and
/// the buffer count alone, without building the step (`send_step` takes that branch).
pub(crate) fn next_is_plain_send(op: &OpState) -> bool {
    let flags = match op.kind {
        OpKind::Send { flags } => flags,
        OpKind::Connect { connected: true, .. } => 0,
        _ => return false,
    };
    flags | SEND_FLAGS == SEND_FLAGS && op.bufs.len() == 1
}

fn clamp_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Applies the result of the request made by the last [`next_step`] (`res` is the kernel's
/// return value: a count, a new fd, or a negated errno).
pub(crate) fn on_result(op: &mut OpState, res: i32) -> Progress {
    let stream = op.socket.as_ref().is_some_and(|s| s.is_stream());
    match &mut op.kind {
        OpKind::Recv { flags } => {
            let wait_all = stream && *flags & libc::MSG_WAITALL != 0;
            if wait_all { finish_recv_all(op, res) } else { finish_recv(op, res, false) }
        }
        OpKind::RecvFrom { .. } => finish_recv(op, res, true),
        OpKind::Send { .. } => continue_send(op, res, stream),
        OpKind::SendTo { .. } => continue_send(op, res, false),
        OpKind::Accept { accepted } => match (accepted.is_some(), res) {
            (_, res) if res < 0 => Progress::Done(Err(errno_error(res))),
            (false, fd) => {
                *accepted = Some(sys::fd_from_kernel(fd));
                if op.bufs.total_spare() > 0 { Progress::Again } else { Progress::Done(Ok(())) }
            }
            (true, n) => {
                op.bytes = n as usize;
                commit_received(op);
                Progress::Done(Ok(()))
            }
        },
        OpKind::Connect { connected, .. } => {
            if res < 0 {
                return Progress::Done(Err(errno_error(res)));
            }
            if *connected {
                return continue_send(op, res, true);
            }
            *connected = true;
            if op.bufs.total_len() > 0 { Progress::Again } else { Progress::Done(Ok(())) }
        }
        OpKind::Disconnect => Progress::Done(if res < 0 { Err(errno_error(res)) } else { Ok(()) }),
        OpKind::Idle => Progress::Done(Err(Error::new(ErrorKind::InvalidArgument))),
    }
}

fn finish_recv(op: &mut OpState, res: i32, with_addr: bool) -> Progress {
    if res < 0 {
        return Progress::Done(Err(errno_error(res)));
    }
    op.bytes = res as usize;
    commit_received(op);
    // A plain receive never allocates the extra part; one that used a message header did.
    let Some(extra) = op.extra.as_deref_mut().filter(|x| !x.args.iovecs().is_empty() || with_addr) else {
        return Progress::Done(Ok(()));
    };
    op.flags = extra.args.msg_flags();
    if with_addr {
        extra.peer = extra.args.received_name();
    }
    if op.flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        // RV-3: the buffers keep the first part; the rest of the datagram is gone.
        return Progress::Done(Err(Error::new(ErrorKind::MessageTooLong)));
    }
    Progress::Done(Ok(()))
}

/// A stream receive with `MSG_WAITALL` (RV-5): complete only when the buffers are full, the
/// peer closed, or an error came. The kernel usually does this itself; a backend that performs
/// steps without waiting gets the data in parts, gathered here.
fn finish_recv_all(op: &mut OpState, res: i32) -> Progress {
    if res < 0 {
        op.bytes = op.progress;
        return Progress::Done(Err(errno_error(res)));
    }
    op.bytes = res as usize;
    commit_received(op);
    op.progress += res as usize;
    op.bytes = op.progress;
    if res > 0 && op.bufs.total_spare() > 0 {
        return Progress::Again;
    }
    Progress::Done(Ok(()))
}

fn continue_send(op: &mut OpState, res: i32, stream: bool) -> Progress {
    if res < 0 {
        op.bytes = op.progress;
        return Progress::Done(Err(errno_error(res)));
    }
    op.progress += res as usize;
    let total = op.bufs.total_len();
    if stream && res > 0 && op.progress < total {
        return Progress::Again;
    }
    op.bytes = op.progress;
    Progress::Done(Ok(()))
}

/// Extends the buffers over the `op.bytes` bytes a receive step reported.
fn commit_received(op: &mut OpState) {
    // SAFETY: `op.bytes` is the count the kernel returned for the receive that `recv_step`
    // aimed at exactly these spare-capacity regions, in buffer order; the record (and so the
    // buffers) stayed owned by the library since, so nothing moved or reallocated them.
    unsafe { op.bufs.commit_received(op.bytes) };
}

/// The error for a negated errno returned by the kernel.
pub(crate) fn errno_error(res: i32) -> Error {
    Error::from_errno(-res)
}

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::Arc;

    use super::{SEND_FLAGS, Step, next_is_plain_send, next_step};
    use crate::buf::BufList;
    use crate::op::{OpKind, OpState};
    use crate::socket::inner::SocketInner;

    fn stream_socket() -> Arc<SocketInner> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors `socketpair` writes.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors are new and owned here alone; the second is closed at once.
        let (fd, _peer) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Arc::new(SocketInner::new(fd, true, None))
    }

    #[test]
    fn the_plain_send_test_agrees_with_the_step_built() {
        let socket = stream_socket();
        let to = "127.0.0.1:9".parse().unwrap();
        let kinds = || {
            [
                OpKind::Send { flags: 0 },
                OpKind::Send { flags: SEND_FLAGS },
                OpKind::Send { flags: libc::MSG_DONTROUTE },
                OpKind::SendTo { to, flags: 0 },
                OpKind::Recv { flags: 0 },
                OpKind::Connect { to, connected: false },
                OpKind::Connect { to, connected: true },
                OpKind::Disconnect,
            ]
        };
        let mut plain = 0;
        for bufs in [|| BufList::single(vec![1; 8]), || BufList::with_capacities(&[8, 8])] {
            for kind in kinds() {
                let mut op = OpState::new(bufs());
                op.kind = kind;
                op.socket = Some(socket.clone());
                let cheap = next_is_plain_send(&op);
                let built = matches!(next_step(&mut op), Step::Send { flags, .. } if flags == SEND_FLAGS);
                assert_eq!(cheap, built, "{:?} with {} buffers", op.kind, op.bufs.len());
                plain += usize::from(built);
            }
        }
        assert_eq!(plain, 3, "single-buffer sends without caller flags, and a connect's data");
    }
}
