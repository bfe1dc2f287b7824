//! The skip-on-success fast path (`FILE_SKIP_COMPLETION_PORT_ON_SUCCESS`, spec NM-2): try the
//! operation with non-blocking system calls first; if it completes, the caller consumes the
//! result inline and no packet is queued. If it would block, it goes to the kernel as usual
//! (keeping any progress, e.g. the first part of a send).

use super::machine::{self, Progress};
use super::{OpKind, RawOp, Status};
use crate::error::{Error, ErrorKind};
use crate::sys;

/// The outcome of an inline attempt.
pub(crate) enum Inline {
    /// Completed successfully: status, bytes and flags are set.
    Done,
    /// Failed at once: an immediate failure, which never notifies (spec 1.5).
    Failed(Error),
    /// Would block: submit it.
    WouldBlock,
}

/// Tries to complete `op` without waiting. Only sends and receives take this path; accepts,
/// connects and disconnects always pend (CX-4, DX-2).
pub(crate) fn try_complete(op: &mut RawOp) -> Inline {
    let state = op.state_mut();
    let data_op = matches!(
        state.kind,
        OpKind::Recv { .. } | OpKind::Send { .. } | OpKind::RecvFrom { .. } | OpKind::SendTo { .. }
    );
    if !data_op {
        return Inline::WouldBlock;
    }
    loop {
        let step = machine::next_step(state);
        let res = sys::perform_nonblocking(&step);
        if res == -libc::EAGAIN {
            return Inline::WouldBlock;
        }
        match machine::on_result(state, res) {
            Progress::Again => continue,
            Progress::Done(Ok(())) => {
                state.status = Status::Done(Ok(()));
                state.socket = None;
                return Inline::Done;
            }
            // A truncated datagram is a warning: it completes (and is skipped) like a success.
            Progress::Done(Err(e)) if e.kind() == ErrorKind::MessageTooLong => {
                state.status = Status::Done(Err(e));
                state.socket = None;
                return Inline::Done;
            }
            Progress::Done(Err(e)) => {
                state.socket = None;
                return Inline::Failed(e);
            }
        }
    }
}
