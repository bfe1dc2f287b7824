//! The overlapped socket operations (lecture §1: the Winsock calls that take an
//! `OVERLAPPED`), notified through the completion port the socket is associated with, or
//! through the record's event (spec 1.7).
//!
//! Every call returns at once: [`Issued::Pending`] (`WSA_IO_PENDING`) and the completion comes
//! later as a packet, exactly once; or [`Issued::Completed`] when the socket is in
//! skip-on-success mode and the operation completed on the spot (no packet, NM-2); or
//! [`Issued::Event`] with the handle to fetch the result from once the event is signalled; or
//! [`Rejected`] when the operation could not start, which never notifies (spec 1.5) and hands
//! the record back with the error, so nothing is lost.

use std::any::TypeId;
use std::fmt;
use std::net::SocketAddr;

use super::inner::Started;
use super::{MsgFlags, Socket};
use crate::apc;
use crate::driver::Runner;
use crate::engine;
use crate::error::{Error, ErrorKind};
use crate::op::{CancelReason, Notify, OpKind, RawOp};
use crate::overlapped::{Overlapped, OverlappedId};
use crate::pending::{self, PendingIo, ResultSlot};
use crate::port::worker;
use crate::routine;
use crate::sys;

/// How an overlapped call returned.
#[derive(Debug)]
pub enum Issued<C: Send + 'static> {
    /// `WSA_IO_PENDING` / `ERROR_IO_PENDING`: started; the completion comes as a packet to the
    /// socket's port, or, for a record with a completion routine, as that routine's call at an
    /// alertable wait of this thread (also when it completed at once, AP-5).
    Pending,
    /// Returned 0 on a socket in skip-on-success mode (`FILE_SKIP_COMPLETION_PORT_ON_SUCCESS`):
    /// completed at once, no packet will follow; the record comes back here with the result.
    Completed(Overlapped<C>),
    /// Started on a socket not associated with a port (or with
    /// [`Overlapped::set_event_only`]): the completion signals the record's event (if it has
    /// one) and its result is fetched through this handle (`WSAGetOverlappedResult`). The
    /// operation may already be complete (an immediate success still signals, 1.4).
    Event(PendingIo<C>),
}

impl<C: Send + 'static> Issued<C> {
    /// Whether the operation is pending (`Pending`, or `Event` not yet completed).
    pub fn is_pending(&self) -> bool {
        match self {
            Self::Pending => true,
            Self::Completed(_) => false,
            Self::Event(io) => !io.is_completed(),
        }
    }

    /// The handle of an event-notified operation ([`Issued::Event`]), if this is one.
    pub fn into_pending_io(self) -> Option<PendingIo<C>> {
        match self {
            Self::Event(io) => Some(io),
            _ => None,
        }
    }
}

/// An operation that could not start: its error, and the record handed back untouched.
pub struct Rejected<C: Send + 'static> {
    /// Why the operation did not start.
    pub error: Error,
    /// The record, with its buffers and context.
    pub overlapped: Overlapped<C>,
}

impl<C: Send + 'static> fmt::Debug for Rejected<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<C: Send + 'static> fmt::Display for Rejected<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operation rejected: {}", self.error)
    }
}

impl<C: Send + 'static> std::error::Error for Rejected<C> {}

impl<C: Send + 'static> From<Rejected<C>> for Error {
    fn from(r: Rejected<C>) -> Self {
        r.error
    }
}

fn reject<C: Send + 'static>(kind: ErrorKind, overlapped: Overlapped<C>) -> Result<Issued<C>, Rejected<C>> {
    Err(Rejected { error: Error::new(kind), overlapped })
}

type IssueResult<C> = Result<Issued<C>, Rejected<C>>;

impl Socket {
    /// `WSARecv`: receives into the record's buffers, filling them in order (scatter). A stream
    /// receive completes as soon as some data is there (RV-1); 0 bytes means the peer closed
    /// (SK-1), or, for a zero-length buffer, that data is ready (the zero-byte-receive idiom,
    /// ZB-1). An empty buffer list is refused (`WSAEINVAL`, RV-2).
    pub fn recv<C: Send + 'static>(&self, overlapped: Overlapped<C>, flags: MsgFlags) -> IssueResult<C> {
        self.issue(overlapped, OpKind::Recv { flags: flags.bits() })
    }

    /// `WSASend`: sends every byte of the record's buffers, in order (gather). A stream send
    /// completes only when all bytes are sent, or fails (WS-1; short kernel sends are resumed
    /// internally). An empty buffer list is refused.
    pub fn send<C: Send + 'static>(&self, overlapped: Overlapped<C>, flags: MsgFlags) -> IssueResult<C> {
        self.issue(overlapped, OpKind::Send { flags: flags.bits() })
    }

    /// `WSARecvFrom`: receives one datagram; the sender is [`Overlapped::peer_addr`]. A datagram
    /// larger than the buffers completes with [`ErrorKind::MessageTooLong`] (`WSAEMSGSIZE`) and
    /// the bytes that fit (RV-3).
    pub fn recv_from<C: Send + 'static>(&self, overlapped: Overlapped<C>, flags: MsgFlags) -> IssueResult<C> {
        self.issue(overlapped, OpKind::RecvFrom { flags: flags.bits() })
    }

    /// `WSASendTo`: sends the record's buffers as one datagram to `to`.
    pub fn send_to<C: Send + 'static>(
        &self,
        overlapped: Overlapped<C>,
        to: SocketAddr,
        flags: MsgFlags,
    ) -> IssueResult<C> {
        self.issue(overlapped, OpKind::SendTo { to, flags: flags.bits() })
    }

    /// `AcceptEx` on this listening socket: accepts a connection; if the record has buffers,
    /// also waits for the first data and receives it (AX-4; a client that closes without
    /// sending gives 0 bytes). The new socket and its addresses come back through
    /// [`Overlapped::take_accepted`]. The completion goes to this listener's port and key (AX-5);
    /// cancel it through the listener (CN-4).
    pub fn accept<C: Send + 'static>(&self, overlapped: Overlapped<C>) -> IssueResult<C> {
        self.issue(overlapped, OpKind::Accept { accepted: None })
    }

    /// `ConnectEx`: connects to `to`, then sends the record's buffers if it has any; the byte
    /// count is what was sent (CX-2). As on Windows, the socket must be bound first
    /// (`WSAEINVAL` otherwise) and not yet connected (`WSAEISCONN`) (CX-1).
    pub fn connect<C: Send + 'static>(&self, to: SocketAddr, overlapped: Overlapped<C>) -> IssueResult<C> {
        self.issue(overlapped, OpKind::Connect { to, connected: false })
    }

    /// `DisconnectEx` (without `TF_REUSE_SOCKET`): a graceful send-side shutdown after the
    /// sends issued before it; completes with 0 bytes, always through a packet (DX-2, DX-3).
    pub fn disconnect<C: Send + 'static>(&self, overlapped: Overlapped<C>) -> IssueResult<C> {
        self.issue(overlapped, OpKind::Disconnect)
    }

    fn issue<C: Send + 'static>(&self, overlapped: Overlapped<C>, kind: OpKind) -> IssueResult<C> {
        let inner = self.inner();
        if inner.is_closed() {
            return reject(ErrorKind::NotSocket, overlapped);
        }
        let routine = overlapped.completion_routine().is_some();
        // Spec 1.7: a routine is refused on a port-associated socket.
        if routine && inner.association().is_some() {
            return reject(ErrorKind::InvalidArgument, overlapped);
        }
        // Spec 1.7: a port-associated socket's operations go to its port, unless the record's
        // event is marked event-only; every other operation completes through its routine or
        // its handle.
        let port = inner.association().filter(|_| !overlapped.is_event_only());
        if let Some(assoc) = port {
            if assoc.context_type != TypeId::of::<C>() {
                return reject(ErrorKind::InvalidArgument, overlapped);
            }
        }
        let engine = match port {
            Some(_) => None,
            None => match inner.engine_backend().and_then(engine::get) {
                Ok(engine) => Some(engine),
                Err(e) => return Err(Rejected { error: e, overlapped }),
            },
        };
        let core: &dyn Runner = match (port, engine) {
            (Some(assoc), _) => &*assoc.port,
            (None, Some(engine)) => engine,
            (None, None) => unreachable!("an operation runs on its port or on the engine"),
        };
        if let Err(kind) = self.validate(&kind, &overlapped) {
            return reject(kind, overlapped);
        }
        let id = overlapped.id();
        let mut rec = overlapped.into_record();
        let state = rec.state_mut();
        if let OpKind::Connect { to, .. } | OpKind::SendTo { to, .. } = &kind {
            state.args().set_addr(to);
        }
        let notify = if routine {
            // AP-4: queued to the issuing thread. The event is left alone (AP-8).
            match apc::current_queue() {
                Some(queue) => {
                    if let Some(engine) = engine {
                        queue.note_engine(engine.index());
                    }
                    Notify::Routine { queue, run: routine::run::<C> }
                }
                None => return reject(ErrorKind::ThreadExited, Overlapped::from_record(rec)),
            }
        } else {
            // EV-2: starting the operation resets its event.
            if let Some(e) = &state.event {
                e.reset_for_issue();
                if let Some(engine) = engine {
                    e.object().note_engine(engine.index());
                }
            }
            match engine {
                None => Notify::Port,
                Some(engine) => Notify::Slot(ResultSlot::reuse(state.spare_slot.take(), engine.index())),
            }
        };
        let slot = match &notify {
            Notify::Slot(slot) => Some(slot.clone()),
            _ => None,
        };
        state.reset_for_issue(kind, inner.clone(), worker::id(), notify);
        if state.cancelled_at_issuer_exit() {
            worker::note_exit_cancellable(inner);
        }
        let started = inner.start(core, RawOp::new(rec));
        let started = started.map_err(|(error, op)| Rejected { error, overlapped: Overlapped::from_raw(op) })?;
        if let Started::Inline(op) = started {
            // 1.4, AP-5: an immediate success notifies as a pending completion would: its slot
            // and event, or its routine. Only a port's packet is skipped (NM-2), not its event.
            if let Some(op) = pending::complete(op) {
                if let Some(e) = &op.state().event {
                    e.signal();
                }
                return Ok(Issued::Completed(Overlapped::from_raw(op)));
            }
        }
        Ok(match slot {
            Some(slot) => Issued::Event(PendingIo::new(slot, id)),
            None => Issued::Pending,
        })
    }

    /// Call-time checks: bad input is refused before anything starts (spec 1.5).
    fn validate<C: Send + 'static>(&self, kind: &OpKind, ov: &Overlapped<C>) -> Result<(), ErrorKind> {
        let fd = self.inner().fd();
        match kind {
            OpKind::Recv { .. } | OpKind::Send { .. } | OpKind::RecvFrom { .. } | OpKind::SendTo { .. } => {
                if ov.buffers().is_empty() {
                    return Err(ErrorKind::InvalidArgument);
                }
            }
            OpKind::Accept { .. } => {
                if !self.inner().is_stream() || !sys::is_listening(fd).unwrap_or(false) {
                    return Err(ErrorKind::InvalidArgument);
                }
            }
            OpKind::Connect { .. } => {
                if !self.inner().is_stream() || sys::is_listening(fd).unwrap_or(false) {
                    return Err(ErrorKind::InvalidArgument);
                }
                if self.peer_addr().is_ok() {
                    return Err(ErrorKind::AlreadyConnected);
                }
                let bound = self.local_addr().is_ok_and(|a| a.port() != 0);
                if !bound {
                    return Err(ErrorKind::InvalidArgument);
                }
            }
            OpKind::Disconnect => {
                if !self.inner().is_stream() {
                    return Err(ErrorKind::InvalidArgument);
                }
                if self.peer_addr().is_err() {
                    return Err(ErrorKind::NotConnected);
                }
            }
            OpKind::Idle => return Err(ErrorKind::InvalidArgument),
        }
        Ok(())
    }

    /// `CancelIoEx(socket, lpOverlapped)`: cancels the operations issued with this record (CN-2).
    /// Each completes once, with [`ErrorKind::OperationAborted`] unless it completed first
    /// (CN-3). [`ErrorKind::NotFound`] (`ERROR_NOT_FOUND`) if none is pending.
    pub fn cancel(&self, id: OverlappedId) -> Result<(), Error> {
        self.cancel_matching(|op, _, _| op == id.0)
    }

    /// `CancelIoEx(socket, NULL)`: cancels every pending operation on the socket, from any
    /// thread (CN-2).
    pub fn cancel_all(&self) -> Result<(), Error> {
        self.cancel_matching(|_, _, _| true)
    }

    /// `CancelIo(socket)`: cancels the pending operations this thread issued on the socket
    /// (CN-1).
    pub fn cancel_io(&self) -> Result<(), Error> {
        let me = worker::id();
        self.cancel_matching(move |_, issuer, _| issuer == me)
    }

    fn cancel_matching(&self, pick: impl Fn(usize, u64, bool) -> bool) -> Result<(), Error> {
        if self.inner().is_closed() {
            return Err(Error::new(ErrorKind::NotSocket));
        }
        match self.inner().cancel(pick, CancelReason::Cancel) {
            0 => Err(Error::new(ErrorKind::NotFound)),
            _ => Ok(()),
        }
    }
}
