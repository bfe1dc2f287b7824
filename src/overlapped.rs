//! The caller-visible operation record: `OVERLAPPED` plus the lecture's per-I/O data.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::buf::BufList;
use crate::error::{Error, ErrorKind};
use crate::event::Event;
use crate::op::{RawOp, Record, Status};
use crate::routine::CompletionRoutine;
use crate::socket::{Accepted, MsgFlags};

/// One overlapped operation's record: the `OVERLAPPED` structure, its `WSABUF` list, and the
/// caller's per-operation context `C` (the lecture's "per-I/O data" struct).
///
/// Issuing an operation (e.g. [`Socket::recv`](crate::Socket::recv)) moves the record into the
/// library, which owns it, and the buffers the kernel writes, for the whole flight; the
/// completion ([`Completion`](crate::Completion)) hands it back with the result, also when the
/// operation failed or was cancelled. A record can be reused for the next operation, so a
/// steady-state server allocates nothing per operation.
///
/// Results of the last operation (`OVERLAPPED.Internal` / `InternalHigh`): [`Overlapped::result`],
/// [`Overlapped::bytes_transferred`], [`Overlapped::flags`], and the outputs of `AcceptEx`
/// ([`Overlapped::take_accepted`]) and `WSARecvFrom` ([`Overlapped::peer_addr`]).
pub struct Overlapped<C: Send + 'static = ()> {
    rec: Box<Record<C>>,
}

/// The identity of an [`Overlapped`] record, stable across re-issues: what
/// `CancelIoEx(handle, lpOverlapped)` matches on ([`Socket::cancel`](crate::Socket::cancel)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OverlappedId(pub(crate) usize);

impl<C: Send + 'static> Overlapped<C> {
    /// A record with no buffers (for accept without data, connect without data, disconnect,
    /// or as a posted packet's payload).
    pub fn new(context: C) -> Self {
        Self { rec: Record::new(context, BufList::new()) }
    }

    /// A record owning `buffers` (the `WSABUF` array): what a send transmits, or where a
    /// receive writes.
    pub fn with_buffers(context: C, buffers: impl Into<BufList>) -> Self {
        Self { rec: Record::new(context, buffers.into()) }
    }

    /// Takes back a record that was issued as `C`.
    pub(crate) fn from_raw(op: RawOp) -> Self {
        match op.downcast::<C>() {
            Ok(rec) => Self { rec },
            Err(_) => unreachable!("records reach only the port or socket of their context type"),
        }
    }

    pub(crate) fn from_record(rec: Box<Record<C>>) -> Self {
        Self { rec }
    }

    pub(crate) fn into_record(self) -> Box<Record<C>> {
        self.rec
    }

    /// `OVERLAPPED.hEvent`: the event the record's operations signal on completion (and reset
    /// when issued, EV-2). It stays attached across re-issues; `None` detaches it.
    pub fn set_event(&mut self, event: Option<Event>) {
        let state = self.rec.state_mut();
        state.event = event;
        state.event_only = false;
    }

    /// This record with `event` as its `hEvent` (see [`Overlapped::set_event`]).
    pub fn with_event(mut self, event: Event) -> Self {
        self.set_event(Some(event));
        self
    }

    /// `hEvent` with its low-order bit set: on a socket associated with a port, operations of
    /// this record signal `event` and queue no packet; their result comes through
    /// [`PendingIo`](crate::PendingIo) (spec 1.7). On other sockets, the same as
    /// [`Overlapped::set_event`].
    pub fn set_event_only(&mut self, event: Event) {
        let state = self.rec.state_mut();
        state.event = Some(event);
        state.event_only = true;
    }

    /// The record's event, if it has one.
    pub fn event(&self) -> Option<&Event> {
        self.rec.state().event.as_ref()
    }

    /// `lpCompletionRoutine`: the routine the record's operations queue to the issuing thread
    /// on completion, instead of signalling the event or returning a [`PendingIo`](crate::PendingIo)
    /// (AP-8). It stays attached across re-issues; `None` detaches it. Operations with a routine
    /// are refused on a socket associated with a port ([`ErrorKind::InvalidArgument`], 1.7).
    pub fn set_completion_routine(&mut self, routine: Option<CompletionRoutine<C>>) {
        self.rec.routine = routine;
    }

    /// This record with `routine` as its completion routine (see
    /// [`Overlapped::set_completion_routine`]).
    pub fn with_completion_routine(
        mut self,
        routine: impl Fn(Option<Error>, usize, Overlapped<C>, MsgFlags) + Send + Sync + 'static,
    ) -> Self {
        self.rec.routine = Some(Arc::new(routine));
        self
    }

    /// The record's completion routine, if it has one.
    pub fn completion_routine(&self) -> Option<&CompletionRoutine<C>> {
        self.rec.routine.as_ref()
    }

    pub(crate) fn is_event_only(&self) -> bool {
        self.rec.state().event_only
    }

    /// The caller's per-operation context.
    pub fn context(&self) -> &C {
        &self.rec.ctx
    }

    /// The caller's per-operation context, mutably.
    pub fn context_mut(&mut self) -> &mut C {
        &mut self.rec.ctx
    }

    /// The buffer list (`WSABUF` array).
    pub fn buffers(&self) -> &BufList {
        &self.rec.state().bufs
    }

    /// The buffer list, mutably: resize or replace buffers between operations.
    pub fn buffers_mut(&mut self) -> &mut BufList {
        &mut self.rec.state_mut().bufs
    }

    /// Takes the context and the buffers out.
    pub fn into_parts(self) -> (C, BufList) {
        let mut rec = self.rec;
        let bufs = std::mem::take(&mut rec.state_mut().bufs);
        (rec.ctx, bufs)
    }

    /// This record's identity for [`Socket::cancel`](crate::Socket::cancel).
    pub fn id(&self) -> OverlappedId {
        OverlappedId(std::ptr::from_ref(self.rec.as_ref()) as usize)
    }

    /// `HasOverlappedIoCompleted`: whether the last operation has completed (false for a record
    /// never issued).
    pub fn is_completed(&self) -> bool {
        matches!(self.rec.state().status, Status::Done(_))
    }

    /// The last operation's result: the bytes transferred, or its error (a truncated datagram is
    /// [`ErrorKind::MessageTooLong`], with the kept bytes in
    /// [`Overlapped::bytes_transferred`]). [`ErrorKind::IoIncomplete`] (`WSA_IO_INCOMPLETE`) if
    /// it has not completed.
    pub fn result(&self) -> Result<usize, Error> {
        match self.rec.state().status {
            Status::Done(Ok(())) => Ok(self.rec.state().bytes),
            Status::Done(Err(e)) => Err(e),
            Status::Pending => Err(Error::new(ErrorKind::IoIncomplete)),
        }
    }

    /// `OVERLAPPED.InternalHigh`: bytes transferred by the last operation (written on failure
    /// too, e.g. the kept part of a truncated datagram, GR-3).
    pub fn bytes_transferred(&self) -> usize {
        self.rec.state().bytes
    }

    /// The receive flags the last operation reported (`lpFlags` of `WSARecv`: truncation).
    pub fn flags(&self) -> MsgFlags {
        MsgFlags::from_bits(self.rec.state().flags)
    }

    /// `AcceptEx` output: the accepted socket with its local and remote addresses
    /// (`GetAcceptExSockaddrs`). Present after a successful accept, once.
    pub fn take_accepted(&mut self) -> Option<Accepted> {
        self.rec.state_mut().extra.as_deref_mut()?.accepted.take()
    }

    /// `WSARecvFrom` output (`lpFrom`): the sender of the datagram received.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.rec.state().extra.as_deref()?.peer
    }
}

impl<C: Send + 'static + fmt::Debug> fmt::Debug for Overlapped<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overlapped")
            .field("context", self.context())
            .field("buffers", &self.buffers().len())
            .field("status", &self.rec.state().status)
            .field("bytes", &self.bytes_transferred())
            .finish()
    }
}
