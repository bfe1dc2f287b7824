//! The readiness backend (epoll): completions emulated on top of non-blocking system calls,
//! for where io_uring is unavailable (spec §8.2, epoll column).
//!
//! - Submission: an operation step is tried at once with a non-blocking system call. If it
//!   finishes, its result waits in the ready queue for the next reap, exactly as a CQE waits in
//!   io_uring's completion queue. If it would block, the operation waits in its socket's list
//!   for its direction (receives and accepts: readable; sends and connects: writable), behind
//!   any earlier one, so operations complete in issue order.
//! - Readiness: each socket is registered once, edge-triggered for both directions. The thread
//!   that waits on the port (the poller) blocks in `epoll_wait`; on an edge it retries the
//!   socket's waiting operations in order until one would block again, and hands each finished
//!   one to the callback, on its own thread, as the io_uring backend does with CQEs.
//! - No lost edge: a step is tried and, if it would block, queued under its socket's lock, and
//!   the poller retries under the same lock.
//! - Batched sends: a plain stream send is not tried at once but queued, and the queue is
//!   written at the next flush (a running worker's next `get`, as io_uring submits at the next
//!   `io_uring_enter`), many sends in one `io_submit` (`aio.rs` says why). One that would block
//!   is then started the ordinary way.
//! - Cancellation takes a waiting (or queued) operation off its list and completes it with
//!   `ECANCELED`; one that is being performed completes with its own result.
//! - Ownership: the driver owns each submitted record until it hands it to the callback; a
//!   record is never freed here while a system call may use it (calls are synchronous).

mod aio;
mod batch;
mod sys;
mod wait_list;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use self::batch::Writing;
use self::sys::Attempt;
use self::wait_list::WaitList;
use crate::lock::Lock;
use crate::op::machine::{self, Step};
use crate::op::{OpKind, RawOp};

/// Ready results taken from the ready queue per lock.
const DELIVER_AT_ONCE: usize = 32;
/// The epoll user data of the wake-up eventfd (socket registrations use their descriptor).
const WAKE_TOKEN: u64 = u64::MAX;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

/// Which readiness a step waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

/// An operation waiting for its socket to become ready.
struct Waiting {
    op: RawOp,
    /// A connect is under way: readiness means "read its outcome", not "try again".
    connecting: bool,
}

/// One socket's waiting operations.
#[derive(Default)]
#[repr(C)]
struct SocketWaiters {
    registered: bool,
    /// Known to have nothing to read: a stream receive came back short or would block, and no
    /// readable edge came since. A new receive then waits for the edge without trying first
    /// (saving the system call that would fail).
    drained: bool,
    read: WaitList<Waiting>,
    write: WaitList<Waiting>,
}

impl SocketWaiters {
    fn list(&mut self, dir: Direction) -> &mut WaitList<Waiting> {
        match dir {
            Direction::Read => &mut self.read,
            Direction::Write => &mut self.write,
        }
    }
}

/// A socket's entry in the table, on cache lines of its own (a socket's events then touch its
/// lock and lists on one line, never a neighbour's).
#[derive(Default)]
#[repr(align(64))]
struct Slot(Lock<SocketWaiters>);

impl std::ops::Deref for Slot {
    type Target = Lock<SocketWaiters>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Descriptors per chunk of the socket table.
const CHUNK: usize = 1024;
/// Chunks: descriptors up to `CHUNK * CHUNKS` (a million) have a slot.
const CHUNKS: usize = 1024;

/// The driver's per-socket state, indexed by descriptor (small, dense numbers): chunks of
/// slots allocated on first use and never moved, so a lookup takes no lock.
struct SocketTable {
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
}

impl SocketTable {
    fn new() -> Self {
        Self { chunks: (0..CHUNKS).map(|_| OnceLock::new()).collect() }
    }

    fn position(fd: RawFd) -> Option<(usize, usize)> {
        let i = usize::try_from(fd).ok()?;
        (i < CHUNK * CHUNKS).then_some((i / CHUNK, i % CHUNK))
    }

    /// The slot of `fd`, creating its chunk if needed (`None` for numbers out of range).
    fn slot(&self, fd: RawFd) -> Option<&Slot> {
        let (chunk, at) = Self::position(fd)?;
        let slots = self.chunks[chunk].get_or_init(|| (0..CHUNK).map(|_| Slot::default()).collect());
        Some(&slots[at])
    }

    /// The slot of `fd` if its chunk exists.
    fn existing(&self, fd: RawFd) -> Option<&Slot> {
        let (chunk, at) = Self::position(fd)?;
        Some(&self.chunks[chunk].get()?[at])
    }

    fn all(&self) -> impl Iterator<Item = &Slot> {
        self.chunks.iter().filter_map(OnceLock::get).flat_map(|c| c.iter())
    }
}

/// An epoll instance shared by the threads of one completion port.
pub(crate) struct EpollDriver {
    epfd: OwnedFd,
    wake_fd: OwnedFd,
    sockets: SocketTable,
    /// Results of steps that finished without waiting (or were cancelled), not yet reaped.
    ready: Lock<VecDeque<(RawOp, i32)>>,
    has_ready: AtomicBool,
    /// Threads blocked in `epoll_wait` (so a new ready result must wake one).
    polling: AtomicUsize,
    /// Operations submitted and not yet handed back, except the queued sends (counted by the
    /// length of `sends`; they are added here, under its lock, when they leave it). Lowered
    /// after delivery, once per batch: it may run high for a moment, never low.
    in_flight: AtomicUsize,
    closed: AtomicBool,
    /// Plain stream sends waiting for the next flush.
    sends: Lock<Vec<RawOp>>,
    /// What writes the queued sends (held across `io_submit`).
    writing: Lock<Writing>,
}

impl EpollDriver {
    pub(crate) fn new() -> io::Result<Self> {
        let epfd = sys::epoll_create()?;
        let wake_fd = crate::sys::eventfd()?;
        sys::epoll_add(&epfd, wake_fd.as_raw_fd(), WAKE_TOKEN, true)?;
        Ok(Self {
            epfd,
            wake_fd,
            sockets: SocketTable::new(),
            ready: Lock::new(VecDeque::new()),
            has_ready: AtomicBool::new(false),
            polling: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            sends: Lock::new(Vec::new()),
            writing: Lock::new(Writing::new()),
        })
    }

    /// Starts the next step of `op`. Refused (the op comes back) once the driver is closed.
    pub(crate) fn submit(&self, op: RawOp) -> Result<(), RawOp> {
        if self.closed.load(Ordering::Acquire) {
            return Err(op);
        }
        if batch::is_plain_stream_send(&op) {
            self.sends.lock().push(op);
        } else {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            self.start(op);
        }
        Ok(())
    }

    /// Tries the step; queues it on its socket if it would block.
    fn start(&self, mut op: RawOp) {
        let step = machine::next_step(op.state_mut());
        let (fd, dir) = target(&step);
        let Some(slot) = self.sockets.slot(fd) else {
            self.push_ready(op, -libc::EBADF);
            return;
        };
        let mut waiters = slot.lock();
        // Earlier operations of this direction go first (issue order); a receive on a socket
        // known to be drained waits for its edge (it is registered: `drained` implies it).
        if !waiters.list(dir).is_empty() || (dir == Direction::Read && waiters.drained) {
            waiters.list(dir).push_back(Waiting { op, connecting: false });
            return;
        }
        let attempt = sys::attempt(&step);
        waiters.drained |= drains(&step, &attempt, &op);
        let waits = !matches!(attempt, Attempt::Done(_));
        // A socket that is drained, or has an operation waiting, must see its next edge.
        if (waits || waiters.drained) && !waiters.registered {
            match sys::epoll_add(&self.epfd, fd, fd as u64, false) {
                Ok(()) => waiters.registered = true,
                // Unregistered, the next receive simply tries first.
                Err(_) if !waits => waiters.drained = false,
                Err(e) => {
                    drop(waiters);
                    return self.push_ready(op, -e.raw_os_error().unwrap_or(libc::EINVAL));
                }
            }
        }
        match attempt {
            Attempt::Done(res) => {
                drop(waiters);
                self.push_ready(op, res);
            }
            Attempt::WouldBlock => waiters.list(dir).push_back(Waiting { op, connecting: false }),
            Attempt::Connecting => waiters.list(dir).push_back(Waiting { op, connecting: true }),
        }
    }

    fn push_ready(&self, op: RawOp, res: i32) {
        self.ready.lock().push_back((op, res));
        self.has_ready.store(true, Ordering::SeqCst);
    }

    /// Makes the results queued by `submit` visible to a thread blocked in [`EpollDriver::wait`].
    pub(crate) fn flush(&self) {
        self.write_sends();
        if self.has_ready.load(Ordering::SeqCst) && self.polling.load(Ordering::SeqCst) > 0 {
            self.wake();
        }
    }

    /// Makes a thread blocked in [`EpollDriver::wait`] return.
    pub(crate) fn wake(&self) {
        crate::sys::eventfd_signal(self.wake_fd.as_raw_fd());
    }

    /// Completes the operation with this id with `ECANCELED` if it is waiting (on `fd`'s lists,
    /// or anywhere if not found there); one being performed completes on its own.
    pub(crate) fn cancel(&self, id: usize, fd: RawFd) {
        if self.cancel_queued_sends(|op| op.id() == id) {
            return;
        }
        let found = self.sockets.existing(fd).is_some_and(|s| self.cancel_in(s, |op| op.id() == id));
        if !found {
            for s in self.sockets.all() {
                if self.cancel_in(s, |op| op.id() == id) {
                    break;
                }
            }
        }
    }

    /// Cancels the waiting operations of one socket that `pick` selects; true if any.
    fn cancel_in(&self, slot: &Slot, pick: impl Fn(&RawOp) -> bool) -> bool {
        let mut cancelled = Vec::new();
        {
            let mut waiters = slot.lock();
            for dir in [Direction::Read, Direction::Write] {
                waiters.list(dir).take_where(|w| pick(&w.op), &mut cancelled);
            }
        }
        let any = !cancelled.is_empty();
        for w in cancelled {
            self.push_ready(w.op, -libc::ECANCELED);
        }
        if any {
            self.wake();
        }
        any
    }

    /// Cancels the queued sends that `pick` selects; true if any.
    fn cancel_queued_sends(&self, pick: impl Fn(&RawOp) -> bool) -> bool {
        let cancelled: Vec<RawOp> = {
            let mut sends = self.sends.lock();
            if !sends.iter().any(&pick) {
                return false;
            }
            let (cancelled, kept): (Vec<RawOp>, _) = std::mem::take(&mut *sends).into_iter().partition(|op| pick(op));
            *sends = kept;
            self.in_flight.fetch_add(cancelled.len(), Ordering::Relaxed);
            cancelled
        };
        for op in cancelled {
            self.push_ready(op, -libc::ECANCELED);
        }
        self.wake();
        true
    }

    /// Cancels every waiting operation.
    pub(crate) fn cancel_all(&self) {
        self.cancel_queued_sends(|_| true);
        for s in self.sockets.all() {
            self.cancel_in(s, |_| true);
        }
    }

    /// Refuses further submissions and cancels everything waiting.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.cancel_all();
        self.wake();
    }

    /// Performs what readiness allows right now, without blocking (for callers that must see
    /// every completion that already happened in the kernel, like `PostQueuedCompletionStatus`
    /// ordering its packet after them, PQ-2), then hands over the ready results.
    pub(crate) fn reap_now(&self, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        if self.in_flight() == 0 {
            return self.reap_ready(on_complete);
        }
        self.wait(Some(Duration::ZERO), on_complete)
    }

    pub(crate) fn in_flight(&self) -> usize {
        let sends = self.sends.lock();
        self.in_flight.load(Ordering::Acquire) + sends.len()
    }

    /// Forgets a socket whose descriptor is about to be closed, so that a new socket reusing
    /// the number is registered afresh.
    pub(crate) fn forget_fd(&self, fd: RawFd) {
        let Some(slot) = self.sockets.existing(fd) else { return };
        let mut waiters = slot.lock();
        if waiters.registered {
            sys::epoll_del(&self.epfd, fd);
        }
        // No operation waits here any more (each held the socket that is going away).
        waiters.registered = false;
        waiters.drained = false;
    }

    pub(crate) fn has_completions(&self) -> bool {
        self.has_ready.load(Ordering::Acquire)
    }

    /// Hands the results already there to `on_complete`, without blocking. Returns false (no
    /// wake-up among them: wake-ups are only seen by [`EpollDriver::wait`]).
    pub(crate) fn reap_ready(&self, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        self.deliver_ready(on_complete);
        false
    }

    /// Hands every ready result to `on_complete`, taking them [`DELIVER_AT_ONCE`] per lock;
    /// returns whether there was any.
    fn deliver_ready(&self, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        let mut any = false;
        let mut taken: [Option<(RawOp, i32)>; DELIVER_AT_ONCE] = std::array::from_fn(|_| None);
        loop {
            let n = {
                let mut ready = self.ready.lock();
                let n = ready.len().min(DELIVER_AT_ONCE);
                for slot in &mut taken[..n] {
                    *slot = ready.pop_front();
                }
                if ready.is_empty() {
                    self.has_ready.store(false, Ordering::SeqCst);
                }
                n
            };
            if n == 0 {
                return any;
            }
            any = true;
            for (op, res) in taken[..n].iter_mut().filter_map(Option::take) {
                self.deliver(op, res, on_complete);
            }
            self.lower_in_flight(n);
        }
    }

    /// Counts `n` delivered operations out of `in_flight` (each was counted in before it could be
    /// delivered: the test suite checks that no count goes below zero).
    fn lower_in_flight(&self, n: usize) {
        let before = self.in_flight.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(before >= n, "in_flight would fall below zero: {before} - {n}");
    }

    /// Hands a result over; the caller lowers `in_flight` afterwards.
    fn deliver(&self, op: RawOp, res: i32, on_complete: &mut dyn FnMut(RawOp, i32)) {
        self.forget_accepted(&op);
        on_complete(op, res);
    }

    /// The first receive of an accept waited on the new connection's descriptor here. That
    /// descriptor now becomes a socket of its own, which registers afresh wherever its
    /// operations run, or is closed: either way this driver must forget it before the number
    /// can be reused.
    fn forget_accepted(&self, op: &RawOp) {
        if let OpKind::Accept { accepted: Some(new) } = &op.state().kind {
            self.forget_fd(new.as_raw_fd());
        }
    }

    /// Hands ready results to `on_complete`; if there were none, waits up to `timeout` (`None`:
    /// no limit) for readiness or a wake-up, and performs what became possible. Returns whether
    /// a wake-up was among the events.
    pub(crate) fn wait(&self, timeout: Option<Duration>, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        self.write_sends();
        let delivered = self.deliver_ready(on_complete);
        let mut events = sys::no_events::<EVENTS>();
        self.polling.fetch_add(1, Ordering::SeqCst);
        // A result queued after the check above finds `polling` raised and wakes us.
        let timeout = if delivered || self.has_ready.load(Ordering::SeqCst) { Some(Duration::ZERO) } else { timeout };
        let ready = sys::epoll_wait(&self.epfd, &mut events, timeout);
        self.polling.fetch_sub(1, Ordering::SeqCst);
        let (mut woke, mut delivered) = (false, 0);
        for ev in ready {
            let (token, flags) = (ev.u64, ev.events);
            if token == WAKE_TOKEN {
                crate::sys::eventfd_drain(self.wake_fd.as_raw_fd());
                woke = true;
            } else {
                delivered += self.on_ready(token as RawFd, flags, on_complete);
            }
        }
        if delivered > 0 {
            self.lower_in_flight(delivered);
        }
        self.deliver_ready(on_complete);
        woke
    }

    /// A socket became ready: retry its waiting operations in order, delivering each that
    /// finishes, until one would block. Returns how many it delivered.
    fn on_ready(&self, fd: RawFd, flags: u32, on_complete: &mut dyn FnMut(RawOp, i32)) -> usize {
        let Some(slot) = self.sockets.existing(fd) else { return 0 };
        let trouble = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
        let mut delivered = 0;
        if flags & (libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 | trouble) != 0 {
            delivered += self.retry(slot, Direction::Read, true, on_complete);
        }
        if flags & (libc::EPOLLOUT as u32 | trouble) != 0 {
            delivered += self.retry(slot, Direction::Write, false, on_complete);
        }
        delivered
    }

    /// A readable edge (`edge_read`) also ends the socket's drained state, under the same lock.
    /// Operations queued while one is being delivered are left for the next edge (they were
    /// queued because the socket would block).
    fn retry(
        &self,
        slot: &Slot,
        dir: Direction,
        mut edge_read: bool,
        on_complete: &mut dyn FnMut(RawOp, i32),
    ) -> usize {
        let mut delivered = 0;
        loop {
            // The lock is released before the callback, which may submit to this socket.
            let (op, res, more) = {
                let mut waiters = slot.lock();
                if std::mem::take(&mut edge_read) {
                    waiters.drained = false;
                }
                let Some(front) = waiters.list(dir).front_mut() else { return delivered };
                let step = machine::next_step(front.op.state_mut());
                let attempt = sys::attempt(&step);
                let drained = drains(&step, &attempt, &front.op);
                let outcome = match attempt {
                    // The connect under way has completed.
                    Attempt::Done(res) if front.connecting && res == -libc::EISCONN => Some(0),
                    Attempt::Done(res) => Some(res),
                    Attempt::WouldBlock => None,
                    Attempt::Connecting => {
                        front.connecting = true;
                        None
                    }
                };
                waiters.drained |= drained;
                // Still blocked: it stays first in line for the next edge.
                let Some(res) = outcome else { return delivered };
                let Some(done) = waiters.list(dir).pop_front() else { return delivered };
                (done.op, res, !waiters.list(dir).is_empty())
            };
            self.deliver(op, res, on_complete);
            delivered += 1;
            if !more {
                return delivered;
            }
        }
    }
}

/// Whether an attempt shows that a stream socket has nothing more to read: it would block, or
/// a plain receive came back with less than it asked for (the kernel hands over everything
/// it has; more data will come with a new edge).
fn drains(step: &Step, attempt: &Attempt, op: &RawOp) -> bool {
    match (step, attempt) {
        (Step::Recv { .. } | Step::RecvMsg { .. }, Attempt::WouldBlock) => true,
        (Step::Recv { len, .. }, Attempt::Done(res)) => {
            let stream = op.state().socket.as_ref().is_some_and(|s| s.is_stream());
            stream && *res > 0 && (*res as u32) < *len
        }
        _ => false,
    }
}

/// The descriptor a step works on and the readiness it waits for.
fn target(step: &Step) -> (RawFd, Direction) {
    match *step {
        Step::Recv { fd, .. } | Step::RecvMsg { fd, .. } | Step::Accept { fd, .. } => (fd.fd, Direction::Read),
        Step::Send { fd, .. } | Step::SendMsg { fd, .. } | Step::Connect { fd, .. } | Step::Shutdown { fd, .. } => {
            (fd.fd, Direction::Write)
        }
    }
}
