//! The library's handle-table entry for one socket: its descriptor, its port association, and
//! the operations it has in flight, kept in ordered lanes.
//!
//! Lanes (spec §8.4.12): receives run one at a time in call order, and so do sends and
//! disconnects; accepts and connects run freely. An operation waiting behind another is held
//! here, not in the kernel, and starts when the one ahead of it finishes.
//!
//! Closing (spec CN-5, §8.4.5): `close(2)` does not cancel io_uring requests, so closing the
//! handle cancels every operation itself, then releases the socket at once (its requests keep
//! their own file references until they complete). The descriptor number stays reserved
//! until this entry is dropped, so a stale handle can never reach a reused number.

use std::any::TypeId;
use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::driver::{Backend, Runner};
use crate::engine;
use crate::error::{Error, ErrorKind};
use crate::lock::{Lock, LockGuard};
use crate::op::inline::{self, Inline};
use crate::op::machine::{self, Progress};
use crate::op::{CancelReason, Lane, OpKind, RawOp, Status};
use crate::pending;
use crate::port::core::{Packet, PortCore};
use crate::socket::Accepted;
use crate::sys;

/// A socket's association with a completion port (`CreateIoCompletionPort(socket, port, key)`).
pub(crate) struct Association {
    pub(crate) port: Arc<PortCore>,
    pub(crate) key: usize,
    pub(crate) context_type: TypeId,
}

/// One operation that the kernel (or a step between two kernel requests) holds.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    id: usize,
    issuer: u64,
    /// Whether it runs on the socket's port (else on the engine, see `engine/mod.rs`).
    on_port: bool,
    /// Whether its issuing thread's exit cancels it (TE-1): everything but port operations
    /// without an event.
    exit_cancels: bool,
    cancel: Option<CancelReason>,
}

impl InFlight {
    fn of(op: &RawOp) -> Self {
        let state = op.state();
        let on_port = state.notify.is_port();
        Self {
            id: op.id(),
            issuer: state.issuer,
            on_port,
            exit_cancels: state.cancelled_at_issuer_exit(),
            cancel: None,
        }
    }
}

#[derive(Default)]
#[repr(C)]
struct OrderedLane {
    active: Option<InFlight>,
    waiting: VecDeque<RawOp>,
}

/// Laid out in declaration order (`repr(C)`): the flags every operation checks, then the
/// receive lane, so that a receive touches one cache line of it.
#[derive(Default)]
#[repr(C)]
struct SocketState {
    shut_write: bool,
    shut_read: bool,
    /// The peer reset the connection (a stream operation failed with `ECONNRESET`): later
    /// data operations fail with `WSAECONNRESET` at once (SK-2), where Linux would report end
    /// of file.
    reset: bool,
    read: OrderedLane,
    write: OrderedLane,
    free: Vec<InFlight>,
}

impl SocketState {
    /// Whether an operation of `kind` must fail with `WSAECONNRESET` because of an earlier reset.
    fn refuses_after_reset(&self, kind: &OpKind) -> bool {
        self.reset && kind.aborts_connection_on_close()
    }

    fn ordered(&mut self, lane: Lane) -> Option<&mut OrderedLane> {
        match lane {
            Lane::Read => Some(&mut self.read),
            Lane::Write => Some(&mut self.write),
            Lane::Free => None,
        }
    }

    fn in_flight_mut(&mut self, id: usize) -> Option<&mut InFlight> {
        let lanes = [self.read.active.as_mut(), self.write.active.as_mut()];
        lanes.into_iter().flatten().chain(self.free.iter_mut()).find(|f| f.id == id)
    }

    /// Removes the record of a finished operation; returns its cancel reason.
    fn remove(&mut self, id: usize, lane: Lane) -> Option<CancelReason> {
        match self.ordered(lane) {
            Some(l) => l.active.take().and_then(|f| f.cancel),
            None => {
                let at = self.free.iter().position(|f| f.id == id)?;
                self.free.swap_remove(at).cancel
            }
        }
    }
}

/// Submits `op` and records it as its lane's (or the free set's) operation in flight. Called
/// with the state locked, so a cancellation finds the operation as soon as it is submitted.
fn submit_in_lane(st: &mut SocketState, port: &dyn Runner, op: RawOp) -> Result<(), RawOp> {
    let lane = op.state().kind.lane();
    let entry = InFlight::of(&op);
    port.submit(op)?;
    match st.ordered(lane) {
        Some(ordered) => ordered.active = Some(entry),
        None => st.free.push(entry),
    }
    Ok(())
}

/// Turns one result from a backend into progress: the next step (submitted to `runner`, which
/// ran this one), or the finished operation handed to its notification, returning the packet
/// to queue if it goes to a port.
pub(crate) fn on_step_result(runner: &dyn Runner, mut op: RawOp, res: i32) -> Option<Packet> {
    if res == -libc::ECANCELED {
        // io_uring cancels the requests a thread submitted when that thread exits, whoever
        // issued them. Unless the library asked for this cancellation, the operation goes on:
        // this live thread submits the step again (TE-1: port operations outlive threads).
        let socket = op.state().socket.clone().expect("issued operation has a socket");
        match socket.resubmit_unless_cancelled(runner, op) {
            Ok(()) => return None,
            Err(back) => op = back,
        }
    }
    match machine::on_result(op.state_mut(), res) {
        Progress::Again => {
            let socket = op.state().socket.clone().expect("issued operation has a socket");
            match socket.resubmit(runner, op) {
                Ok(()) => None,
                Err(op) => socket.finish(op, Err(Error::new(ErrorKind::OperationAborted))),
            }
        }
        Progress::Done(status) => {
            let socket = op.state_mut().socket.take().expect("issued operation has a socket");
            socket.finish(op, status)
        }
    }
}

/// Whether an issued operation went to the kernel or waits in its lane.
pub(crate) enum Started {
    /// Submitted (or queued behind an earlier operation of its lane).
    Pending,
    /// Completed on the spot through the skip-on-success fast path: no packet follows.
    Inline(RawOp),
}

/// The shared state behind every handle of one socket. Laid out in declaration order
/// (`repr(C)`): what every operation reads, then the lock, fill the first cache line.
#[repr(C)]
pub(crate) struct SocketInner {
    /// `closesocket` was called. Set under the state lock, so a check under the lock orders
    /// with it; read without the lock for quick refusals.
    closed: AtomicBool,
    skip_on_success: AtomicBool,
    stream: bool,
    fd: OwnedFd,
    /// The socket's slot in its port's table of registered files.
    fixed: OnceLock<u32>,
    assoc: OnceLock<Association>,
    state: Lock<SocketState>,
    /// The backend whose engine runs the socket's event and routine operations (`None`: the
    /// process's default).
    backend: Option<Backend>,
}

impl Drop for SocketInner {
    fn drop(&mut self) {
        // Every operation is over (each held this entry); the descriptor closes after this.
        let fd = self.fd();
        if let Some(assoc) = self.assoc.get() {
            assoc.port.forget_fd(fd);
        }
        if let Some(engine) = self.engine_backend().ok().and_then(engine::running) {
            engine.forget_fd(fd);
        }
    }
}

impl SocketInner {
    pub(crate) fn new(fd: OwnedFd, stream: bool, backend: Option<Backend>) -> Self {
        Self {
            fd,
            stream,
            backend,
            state: Lock::default(),
            assoc: OnceLock::new(),
            skip_on_success: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            fixed: OnceLock::new(),
        }
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub(crate) fn owned_fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub(crate) fn is_stream(&self) -> bool {
        self.stream
    }

    fn lock(&self) -> LockGuard<'_, SocketState> {
        self.state.lock()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn association(&self) -> Option<&Association> {
        self.assoc.get()
    }

    /// `CreateIoCompletionPort(socket, port, key, 0)`: once per socket (CP-4). Also registers
    /// the descriptor with the port's backend, under the lock so that a concurrent close
    /// cannot miss the slot.
    pub(crate) fn associate(&self, assoc: Association) -> Result<(), Error> {
        let st = self.lock();
        if self.is_closed() {
            return Err(Error::new(ErrorKind::NotSocket));
        }
        self.assoc.set(assoc).map_err(|_| Error::new(ErrorKind::AlreadyAssociated))?;
        let port = &self.assoc.get().expect("just set").port;
        if let Some(slot) = port.register_file(self.fd()) {
            let _ = self.fixed.set(slot);
        }
        drop(st);
        Ok(())
    }

    /// The socket's registered-file slot, if it has one.
    pub(crate) fn fixed_slot(&self) -> Option<u32> {
        self.fixed.get().copied()
    }

    /// The completion port that runs an operation's kernel requests: the socket's port for
    /// port-notified operations, the engine for the others (`None` if that is gone).
    fn core_for(&self, on_port: bool) -> Option<&dyn Runner> {
        if on_port {
            self.association().map(|a| &*a.port as &dyn Runner)
        } else {
            engine::running(self.engine_backend().ok()?).map(|e| e as &dyn Runner)
        }
    }

    /// The backend of the engine that runs this socket's event and routine operations.
    pub(crate) fn engine_backend(&self) -> Result<Backend, Error> {
        match self.backend {
            Some(b) => Ok(b),
            None => crate::driver::process_default_backend(),
        }
    }

    /// Queues a finished operation's packet on the socket's port.
    fn deliver(&self, packet: Option<Packet>) {
        if let (Some(packet), Some(assoc)) = (packet, self.association()) {
            assoc.port.deliver_or_drop(packet);
        }
    }

    pub(crate) fn set_skip_on_success(&self) {
        self.skip_on_success.store(true, Ordering::Release);
    }

    pub(crate) fn skips_on_success(&self) -> bool {
        self.skip_on_success.load(Ordering::Acquire)
    }

    /// Records a local shutdown (§8.3: `EPIPE` after our own `SHUT_WR` is `WSAESHUTDOWN`;
    /// CN-7: new receives after `SD_RECEIVE` fail). Returns whether receives are pending.
    pub(crate) fn mark_shutdown(&self, read: bool, write: bool) -> bool {
        let mut st = self.lock();
        st.shut_read |= read;
        st.shut_write |= write;
        st.read.active.is_some()
    }

    /// Starts an issued operation: refuses it on a closed or shut-down socket, queues it
    /// behind its lane, completes it inline in skip-on-success mode, or submits it.
    pub(crate) fn start(self: &Arc<Self>, port: &dyn Runner, op: RawOp) -> Result<Started, (Error, RawOp)> {
        let mut st = self.lock();
        if self.is_closed() {
            return Err((Error::new(ErrorKind::NotSocket), op));
        }
        let kind = &op.state().kind;
        if (st.shut_read && kind.lane() == Lane::Read) || (st.shut_write && kind.lane() == Lane::Write) {
            return Err((Error::new(ErrorKind::Shutdown), op));
        }
        if st.refuses_after_reset(kind) {
            return Err((Error::new(ErrorKind::ConnectionReset), op));
        }
        let lane = kind.lane();
        if let Some(ordered) = st.ordered(lane) {
            if ordered.active.is_some() {
                ordered.waiting.push_back(op);
                return Ok(Started::Pending);
            }
        }
        let mut op = op;
        // Skip-on-success mode completes port operations inline (NM-2). Event-notified sends
        // are tried inline too: they usually complete at once, and the event is then set
        // without a trip through the engine (1.4).
        let try_inline = if op.state().notify.is_port() { self.skips_on_success() } else { lane == Lane::Write };
        if try_inline {
            match inline::try_complete(&mut op) {
                Inline::Done => return Ok(Started::Inline(op)),
                Inline::Failed(e) => return Err((e, op)),
                Inline::WouldBlock => {}
            }
        }
        match submit_in_lane(&mut st, port, op) {
            Ok(()) => Ok(Started::Pending),
            Err(op) => Err((Error::new(ErrorKind::InvalidHandle), op)),
        }
    }

    /// Submits the next step of a multi-step operation, unless it was cancelled meanwhile.
    /// Returns the operation if it must finish now (cancelled, or the port is closed).
    pub(crate) fn resubmit(&self, port: &dyn Runner, op: RawOp) -> Result<(), RawOp> {
        // Checked and submitted under the lock, so a cancellation cannot slip in between.
        let mut st = self.lock();
        if self.is_closed() || st.in_flight_mut(op.id()).and_then(|f| f.cancel).is_some() {
            return Err(op);
        }
        port.submit(op)
    }

    /// Submits an operation's step again after the kernel cancelled it on its own (its
    /// submitting thread exited), unless the socket is closed, the library asked for the
    /// cancellation, or this keeps happening. Gives the operation back otherwise.
    pub(crate) fn resubmit_unless_cancelled(&self, port: &dyn Runner, mut op: RawOp) -> Result<(), RawOp> {
        const MAX_REQUEUES: u8 = 16;
        let state = op.state_mut();
        if state.requeues >= MAX_REQUEUES {
            return Err(op);
        }
        state.requeues += 1;
        self.resubmit(port, op)
    }

    /// Finishes an operation: takes it off its lane, starts the next one waiting there, and
    /// returns the packet to deliver (with the status the spec gives a closed socket's
    /// operations, CN-5).
    pub(crate) fn finish(self: &Arc<Self>, op: RawOp, status: Result<(), Error>) -> Option<Packet> {
        let lane = op.state().kind.lane();
        let (status, next) = {
            let mut st = self.lock();
            let reason = st.remove(op.id(), lane);
            // DX-3: after DisconnectEx the send side is shut, as after shutdown(SD_SEND).
            st.shut_write |= matches!(op.state().kind, OpKind::Disconnect) && status.is_ok();
            let status = self.adjust_status(&op.state().kind, status, reason, st.shut_write);
            st.reset |= self.stream && status.is_err_and(|e| e.kind() == ErrorKind::ConnectionReset);
            (status, st.ordered(lane).and_then(|l| l.waiting.pop_front()))
        };
        if let Some(next) = next {
            self.start_waiting(next);
        }
        self.packet(op, status)
    }

    /// Writes the final status into the record (`OVERLAPPED.Internal`), turns an accepted
    /// descriptor into the `AcceptEx` outputs, and hands the record to its notification
    /// (spec 1.7): the caller's result slot and event or its completion routine, or, returned
    /// here, a packet for the socket's port.
    fn packet(&self, mut op: RawOp, mut status: Result<(), Error>) -> Option<Packet> {
        let state = op.state_mut();
        state.socket = None;
        if let OpKind::Accept { accepted } = &mut state.kind {
            if let (Some(fd), Ok(())) = (accepted.take(), status) {
                let extra = state.extra();
                match Accepted::from_fd(fd, extra.args.addr(), self.backend) {
                    Ok(a) => extra.accepted = Some(a),
                    Err(e) => status = Err(e),
                }
            }
        }
        if let (Err(_), Some(extra)) = (&status, state.extra.as_deref_mut()) {
            extra.accepted = None;
        }
        state.status = Status::Done(status);
        if state.notify.is_port() {
            // 1.7: an associated socket's operation queues its packet and signals its event.
            if let Some(e) = &state.event {
                e.signal();
            }
        }
        let bytes = state.bytes;
        let op = pending::complete(op)?;
        let key = self.association().map_or(0, |a| a.key);
        Some(Packet { key, bytes, status, op: Some(op) })
    }

    /// Starts an operation that waited in its lane; if it cannot start, finishes it at once
    /// (aborted) and tries the next.
    fn start_waiting(self: &Arc<Self>, op: RawOp) {
        let mut op = op;
        loop {
            let lane = op.state().kind.lane();
            let mut st = self.lock();
            let closed = self.is_closed();
            let reset = st.refuses_after_reset(&op.state().kind);
            let refused = match self.core_for(op.state().notify.is_port()) {
                Some(core) if !closed && !reset => submit_in_lane(&mut st, core, op),
                _ => Err(op),
            };
            let Err(back) = refused else { return };
            let next = st.ordered(lane).and_then(|l| l.waiting.pop_front());
            drop(st);
            let packet = if reset && !closed {
                // SK-2: it was pending already, so it completes with the reset.
                self.packet(back, Err(Error::new(ErrorKind::ConnectionReset)))
            } else {
                let reason = if closed { CancelReason::Close } else { CancelReason::Cancel };
                self.finish_unstarted(back, reason)
            };
            self.deliver(packet);
            match next {
                Some(n) => op = n,
                None => return,
            }
        }
    }

    /// Completes an operation that never reached the kernel, as cancelled for `reason`.
    fn finish_unstarted(&self, mut op: RawOp, reason: CancelReason) -> Option<Packet> {
        let status =
            self.adjust_status(&op.state().kind, Err(Error::new(ErrorKind::OperationAborted)), Some(reason), false);
        op.state_mut().bytes = 0;
        self.packet(op, status)
    }

    fn adjust_status(
        &self,
        kind: &OpKind,
        status: Result<(), Error>,
        reason: Option<CancelReason>,
        shut_write: bool,
    ) -> Result<(), Error> {
        let Err(e) = status else { return status };
        match (e.kind(), reason) {
            // CN-5: closing a connected stream socket aborts its data operations.
            (ErrorKind::OperationAborted, Some(CancelReason::Close))
                if self.stream && kind.aborts_connection_on_close() =>
            {
                Err(Error::new(ErrorKind::ConnectionAborted))
            }
            // §8.3: EPIPE after our own shutdown is WSAESHUTDOWN, not a reset.
            (ErrorKind::ConnectionReset, _) if shut_write && e.raw_os_error() == Some(libc::EPIPE) => {
                Err(Error::with_errno(ErrorKind::Shutdown, libc::EPIPE))
            }
            _ => status,
        }
    }

    /// Cancels operations matching `pick` (by id, issuing thread, and whether that thread's exit
    /// cancels them). Returns how many were
    /// found; waiting ones complete at once (delivered here), in-flight ones when the kernel
    /// answers the cancellation.
    pub(crate) fn cancel(self: &Arc<Self>, pick: impl Fn(usize, u64, bool) -> bool, reason: CancelReason) -> usize {
        let mut unstarted = Vec::new();
        let mut found = 0;
        {
            let mut st = self.lock();
            let SocketState { read, write, free, .. } = &mut *st;
            for lane in [&mut *read, &mut *write] {
                let mut kept = VecDeque::new();
                for op in lane.waiting.drain(..) {
                    if pick(op.id(), op.state().issuer, op.state().cancelled_at_issuer_exit()) {
                        unstarted.push(op)
                    } else {
                        kept.push_back(op)
                    }
                }
                lane.waiting = kept;
            }
            let actives = [read.active.as_mut(), write.active.as_mut()];
            for f in actives.into_iter().flatten().chain(free.iter_mut()) {
                if pick(f.id, f.issuer, f.exit_cancels) {
                    f.cancel = Some(reason);
                    if let Some(core) = self.core_for(f.on_port) {
                        core.cancel(f.id, self.fd());
                    }
                    found += 1;
                }
            }
        }
        found += unstarted.len();
        for op in unstarted {
            self.deliver(self.finish_unstarted(op, reason));
        }
        found
    }

    /// `closesocket`: marks the socket closed and cancels everything it has in flight.
    /// Returns false if it was already closed.
    pub(crate) fn close(self: &Arc<Self>) -> bool {
        {
            let _st = self.lock();
            if self.is_closed() {
                return false;
            }
            self.closed.store(true, Ordering::Release);
        }
        self.cancel(|_, _, _| true, CancelReason::Close);
        // No request can be issued any more (closed); requests issued on the slot keep the
        // file until they complete.
        if let (Some(assoc), Some(&slot)) = (self.assoc.get(), self.fixed.get()) {
            assoc.port.unregister_file(slot);
        }
        // The cancellations above also handed every request of this socket to the kernel, so
        // none is left to resolve the descriptor number. Release the socket now (the peer sees
        // the close once the kernel drops the requests' references), but keep the number
        // reserved until this entry is dropped, so it cannot be reused under a stale handle.
        sys::retire_fd(self.fd());
        true
    }
}
