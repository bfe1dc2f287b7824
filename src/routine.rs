//! Completion routines (`LPWSAOVERLAPPED_COMPLETION_ROUTINE`, spec §4): what an operation
//! issued with a routine runs, on the issuing thread, at its next alertable wait.

use std::sync::Arc;

use crate::error::Error;
use crate::op::RawOp;
use crate::overlapped::Overlapped;
use crate::socket::MsgFlags;

/// A completion routine: `CompletionROUTINE(dwError, cbTransferred, lpOverlapped, dwFlags)`.
///
/// It receives the operation's error (`None` for `dwError == 0`; else the error, whose
/// [`Error::wsa_error`] is `dwError`, AP-7), the bytes transferred, the record by value (its
/// context and buffers; reissue it or drop it), and the receive flags (always empty for
/// sends). It runs on the thread that issued the operation, inside one of that thread's
/// alertable waits, never nested inside another routine of the same wait (AP-4, AP-9).
pub type CompletionRoutine<C> = Arc<dyn Fn(Option<Error>, usize, Overlapped<C>, MsgFlags) + Send + Sync>;

/// Calls the record's routine with its result: the APC a routine-notified operation queues.
pub(crate) fn run<C: Send + 'static>(op: RawOp) {
    let ov = Overlapped::<C>::from_raw(op);
    let Some(routine) = ov.completion_routine().cloned() else { return };
    let error = ov.result().err();
    let (bytes, flags) = (ov.bytes_transferred(), ov.flags());
    routine(error, bytes, ov, flags);
}
