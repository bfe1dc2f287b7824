//! The overlapped operation record and the operations it can carry.
//!
//! An operation is defined once here (what it needs, which ordered lane of its socket it runs
//! in, how its steps advance: [`machine`]); each backend turns a [`machine::Step`] into kernel
//! work (io_uring: `driver/uring/prep.rs`).
//!
//! Ownership: the caller's [`Overlapped`](crate::Overlapped) is a boxed record. Issuing an
//! operation moves the box into a [`RawOp`] that the socket's lane or the driver's in-flight
//! set owns until the kernel is done with every pointer in it; the completion hands the box
//! back. Nothing else may free it (see `record.rs`).

pub(crate) mod inline;
pub(crate) mod kernel_args;
pub(crate) mod machine;
pub(crate) mod record;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::apc::ApcQueue;
use crate::buf::BufList;
use crate::error::Error;
use crate::event::Event;
use crate::pending::ResultSlot;
use crate::socket::Accepted;
use crate::socket::inner::SocketInner;

pub(crate) use kernel_args::KernelArgs;
pub(crate) use record::{RawOp, Record};

/// Which operation a record is carrying, with its own arguments.
#[derive(Debug, Default)]
pub(crate) enum OpKind {
    /// Not issued yet (or handed back).
    #[default]
    Idle,
    /// `WSARecv`.
    Recv { flags: i32 },
    /// `WSASend`.
    Send { flags: i32 },
    /// `WSARecvFrom`.
    RecvFrom { flags: i32 },
    /// `WSASendTo`.
    SendTo { to: SocketAddr, flags: i32 },
    /// `AcceptEx`: the accept, then (with a receive buffer) the first receive on the new socket.
    Accept { accepted: Option<OwnedFd> },
    /// `ConnectEx`: the connect, then (with a send buffer) the send of that data.
    Connect { to: SocketAddr, connected: bool },
    /// `DisconnectEx`: a send-side shutdown.
    Disconnect,
}

/// The ordered lane of a socket an operation runs in (spec §8.4.12: per socket, receives are
/// filled and sends transmitted in call order, so at most one kernel request per direction is
/// in flight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Receives, in call order.
    Read,
    /// Sends and disconnects, in call order.
    Write,
    /// Accepts and connects, which need no ordering among themselves.
    Free,
}

impl OpKind {
    pub(crate) fn lane(&self) -> Lane {
        match self {
            Self::Recv { .. } | Self::RecvFrom { .. } => Lane::Read,
            Self::Send { .. } | Self::SendTo { .. } | Self::Disconnect => Lane::Write,
            Self::Idle | Self::Accept { .. } | Self::Connect { .. } => Lane::Free,
        }
    }

    /// Whether closing the socket turns this operation's cancellation into
    /// `STATUS_CONNECTION_ABORTED` rather than `STATUS_CANCELLED` (CN-5, §8.3).
    pub(crate) fn aborts_connection_on_close(&self) -> bool {
        matches!(self, Self::Recv { .. } | Self::Send { .. } | Self::RecvFrom { .. } | Self::SendTo { .. })
    }
}

/// Where an operation is in its life (`OVERLAPPED.Internal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// `STATUS_PENDING`: issued, not yet completed (or never issued).
    Pending,
    /// Completed with this result.
    Done(Result<(), Error>),
}

/// Why an operation was asked to stop early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CancelReason {
    /// `CancelIo` / `CancelIoEx`, or the port closing.
    Cancel,
    /// `closesocket` on the operation's socket.
    Close,
}

/// Where an operation's completion goes (spec 1.7: exactly one path per operation).
#[derive(Default)]
pub(crate) enum Notify {
    /// A packet to the port the socket is associated with (and the record's event, if any, is
    /// signalled too).
    #[default]
    Port,
    /// The record goes to the caller's [`crate::PendingIo`] handle and the record's event (if
    /// any) is signalled: sockets not associated with a port, or `hEvent` with its low bit set.
    Slot(Arc<ResultSlot>),
    /// The record's completion routine is queued as an APC to the issuing thread (`run` calls
    /// it with the record): sockets not associated with a port, when the record has a routine.
    Routine { queue: Arc<ApcQueue>, run: fn(RawOp) },
}

impl Notify {
    pub(crate) fn is_port(&self) -> bool {
        matches!(self, Self::Port)
    }
}

impl OpState {
    /// Whether the exit of the issuing thread cancels this operation (TE-1): every operation
    /// but those that complete to a port without an event.
    pub(crate) fn cancelled_at_issuer_exit(&self) -> bool {
        !self.notify.is_port() || self.event.is_some()
    }
}

/// The non-generic part of every operation record. Laid out in declaration order (`repr(C)`),
/// the fields every operation touches first, so that an operation's life touches few cache
/// lines of its record; the kernel arguments and the outputs of accepts and datagram receives
/// come last.
#[repr(C)]
pub(crate) struct OpState {
    pub(crate) kind: OpKind,
    pub(crate) bufs: BufList,
    /// The socket the operation runs on, while issued.
    pub(crate) socket: Option<Arc<SocketInner>>,
    /// Where this flight's completion goes.
    pub(crate) notify: Notify,
    /// `OVERLAPPED.Internal`.
    pub(crate) status: Status,
    /// Receive flags reported by the completion (`MSG_TRUNC`, ...).
    pub(crate) flags: i32,
    /// Bytes moved by earlier steps (a short send's first part, a connect's data).
    pub(crate) progress: usize,
    /// `OVERLAPPED.InternalHigh`: bytes transferred.
    pub(crate) bytes: usize,
    /// The thread that issued the operation (for `CancelIo`).
    pub(crate) issuer: u64,
    /// `OVERLAPPED.hEvent`: kept across issues, like the field of a reused `OVERLAPPED`.
    pub(crate) event: Option<Event>,
    /// The result slot of the last event-notified flight, kept for the next one.
    pub(crate) spare_slot: Option<Arc<ResultSlot>>,
    /// `hEvent` with its low-order bit set: no packet even on a port-associated socket.
    pub(crate) event_only: bool,
    /// How often the kernel cancelled this flight's request because the thread that submitted
    /// it exited, and it was submitted again.
    pub(crate) requeues: u8,
    /// What only some operations use, allocated by the first that needs it (a plain send or
    /// receive never touches it, so the record's hot part and its context share cache lines).
    pub(crate) extra: Option<Box<OpExtra>>,
}

/// The part of an operation record that only message, address and accept operations use.
#[derive(Default)]
pub(crate) struct OpExtra {
    /// The kernel's message header, vectors and address (stable while in flight: boxed).
    pub(crate) args: KernelArgs,
    /// `AcceptEx` output: the new socket and its addresses.
    pub(crate) accepted: Option<Accepted>,
    /// `WSARecvFrom` output: the sender's address.
    pub(crate) peer: Option<SocketAddr>,
}

impl OpState {
    pub(crate) fn new(bufs: BufList) -> Self {
        Self {
            kind: OpKind::Idle,
            bufs,
            extra: None,
            progress: 0,
            bytes: 0,
            flags: 0,
            status: Status::Pending,
            socket: None,
            issuer: 0,
            event: None,
            event_only: false,
            notify: Notify::Port,
            spare_slot: None,
            requeues: 0,
        }
    }

    /// Clears the outputs of an earlier flight before the record is issued again.
    pub(crate) fn reset_for_issue(&mut self, kind: OpKind, socket: Arc<SocketInner>, issuer: u64, notify: Notify) {
        self.notify = notify;
        self.requeues = 0;
        self.kind = kind;
        if let Some(extra) = self.extra.as_deref_mut() {
            extra.args.clear();
            extra.accepted = None;
            extra.peer = None;
        }
        self.progress = 0;
        self.bytes = 0;
        self.flags = 0;
        self.status = Status::Pending;
        self.socket = Some(socket);
        self.issuer = issuer;
    }

    /// The rarely used part, allocated on first use.
    pub(crate) fn extra(&mut self) -> &mut OpExtra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// The kernel arguments of message, address and accept operations.
    pub(crate) fn args(&mut self) -> &mut KernelArgs {
        &mut self.extra().args
    }

    /// The kernel arguments together with the buffers they describe (a message step fills
    /// the first from the second).
    pub(crate) fn args_and_bufs(&mut self) -> (&mut KernelArgs, &mut BufList) {
        (&mut self.extra.get_or_insert_with(Box::default).args, &mut self.bufs)
    }
}
