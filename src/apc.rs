//! APC queues and alertable waits (spec §4): every thread has a FIFO queue of user APCs
//! (completion routines and [`ThreadHandle::queue_user_apc`] calls) that runs only while the
//! thread is in an alertable library wait (AP-1, AP-2).
//!
//! Linux has no APCs: the queue is a library object, and "alertable" means one of this
//! library's waits called with `alertable = true` (spec §8.4.4): [`sleep_ex`],
//! [`wait_for_events`](crate::wait_for_events), [`Event::wait`](crate::Event::wait),
//! [`CompletionPort::get_many_alertable`](crate::CompletionPort::get_many_alertable), and the
//! wait inside [`Socket::recv_blocking`](crate::Socket::recv_blocking) and
//! [`Socket::send_blocking`](crate::Socket::send_blocking) (1.10). A thread blocked anywhere
//! else runs nothing. When a thread exits, its queue is discarded: APCs still
//! queued are dropped without running, and queuing to it fails (AP-6).
//!
//! Who completes a routine's operation: `sleep_ex` and the alertable event waits reap the
//! engine that runs this thread's routine operations themselves (`engine/`), so a routine is
//! queued the moment its thread observes the completion. A thread waiting alertably elsewhere
//! (on a completion port, or in a blocking socket call) does not reap that engine; the
//! helper thread does, within about 10 ms, and the routine then ends that wait as usual.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crate::engine::Driving;
use crate::error::{Error, ErrorKind};
use crate::op::RawOp;
use crate::port::core::PortCore;
use crate::wait::Wait;
use crate::wait::block::{self, WaitBlock};

/// One queued APC.
enum Apc {
    /// `QueueUserAPC`.
    User(Box<dyn FnOnce() + Send>),
    /// An operation's completion routine: `run` calls it with the record.
    Routine(fn(RawOp), RawOp),
}

impl Apc {
    fn run(self) {
        match self {
            Self::User(f) => f(),
            Self::Routine(run, op) => run(op),
        }
    }
}

/// How to wake a thread that waits alertably.
pub(crate) enum Waker {
    /// It parks on its wait block.
    Block(Arc<WaitBlock>),
    /// It waits on a completion port: it may be blocked in the port's backend.
    Port(Thread, Weak<PortCore>),
}

impl Waker {
    fn wake(&self) {
        match self {
            Self::Block(b) => b.notify(),
            Self::Port(thread, port) => {
                thread.unpark();
                if let Some(p) = port.upgrade() {
                    p.wake_driver();
                }
            }
        }
    }
}

/// One thread's APC queue.
pub(crate) struct ApcQueue {
    state: Mutex<QueueState>,
    /// The engines (a bit per engine index) that ran completion-routine operations this thread
    /// issued: the ones its alertable waits drive.
    engines: AtomicU8,
}

struct QueueState {
    apcs: VecDeque<Apc>,
    /// How to wake the thread while it is in an alertable wait: a new APC wakes it.
    alertable: Option<Waker>,
    /// False once the thread has exited.
    alive: bool,
}

impl ApcQueue {
    fn new(alive: bool) -> Arc<Self> {
        let state = Mutex::new(QueueState { apcs: VecDeque::new(), alertable: None, alive });
        Arc::new(Self { state, engines: AtomicU8::new(0) })
    }

    /// Notes that a routine operation of this thread runs on engine `index`.
    pub(crate) fn note_engine(&self, index: usize) {
        let bit = 1u8 << index;
        if self.engines.load(Ordering::Relaxed) & bit == 0 {
            self.engines.fetch_or(bit, Ordering::AcqRel);
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an APC; hands it back if the thread has exited.
    fn push(&self, apc: Apc) -> Result<(), Apc> {
        let mut st = self.lock();
        if !st.alive {
            return Err(apc);
        }
        st.apcs.push_back(apc);
        if let Some(w) = &st.alertable {
            w.wake();
        }
        Ok(())
    }

    /// Queues an operation's completion routine (AP-4). If the thread has exited, the record
    /// is dropped here, outside the lock: no routine runs on a dead thread (AP-6, TE-1).
    pub(crate) fn push_routine(&self, run: fn(RawOp), op: RawOp) {
        if let Err(apc) = self.push(Apc::Routine(run, op)) {
            drop(apc);
        }
    }

    fn pop(&self) -> Option<Apc> {
        self.lock().apcs.pop_front()
    }
}

/// Owned by the thread-local slot: its drop is the thread's exit.
struct ThreadQueue(Arc<ApcQueue>);

impl Drop for ThreadQueue {
    fn drop(&mut self) {
        let dropped = {
            let mut st = self.0.lock();
            st.alive = false;
            st.alertable = None;
            std::mem::take(&mut st.apcs)
        };
        // AP-6: the queue is discarded; whatever the APCs own is freed, outside the lock.
        drop(dropped);
    }
}

thread_local! {
    static QUEUE: ThreadQueue = ThreadQueue(ApcQueue::new(true));
}

/// The calling thread's APC queue (`None` while the thread is exiting).
pub(crate) fn current_queue() -> Option<Arc<ApcQueue>> {
    QUEUE.try_with(|q| Arc::clone(&q.0)).ok()
}

/// The engines that run this thread's routine operations (a bit per engine index): what its
/// alertable waits drive.
pub(crate) fn routine_engines() -> u8 {
    QUEUE.try_with(|q| q.0.engines.load(Ordering::Acquire)).unwrap_or(0)
}

/// Whether APCs are queued to the calling thread.
pub(crate) fn has_queued() -> bool {
    current_queue().is_some_and(|q| !q.lock().apcs.is_empty())
}

/// Runs every APC queued to the calling thread, in FIFO order, including ones queued while they
/// run (AP-2). Returns whether any ran.
pub(crate) fn run_queued() -> bool {
    let Some(queue) = current_queue() else { return false };
    let mut ran = false;
    while let Some(apc) = queue.pop() {
        apc.run();
        ran = true;
    }
    ran
}

/// The calling thread is in an alertable wait while this lives: queuing an APC notifies its
/// wait block.
pub(crate) struct Alertable {
    queue: Option<Arc<ApcQueue>>,
}

impl Alertable {
    /// Enters an alertable wait that parks on `block`.
    pub(crate) fn enter(block: &Arc<WaitBlock>) -> Self {
        Self::enter_with(Waker::Block(Arc::clone(block)))
    }

    /// Enters an alertable wait on a completion port.
    pub(crate) fn enter_port(port: &Arc<PortCore>) -> Self {
        Self::enter_with(Waker::Port(std::thread::current(), Arc::downgrade(port)))
    }

    fn enter_with(waker: Waker) -> Self {
        let queue = current_queue();
        if let Some(q) = &queue {
            q.lock().alertable = Some(waker);
        }
        Self { queue }
    }

    /// Whether APCs are waiting (checked after entering, so none can be missed).
    pub(crate) fn has_queued(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| !q.lock().apcs.is_empty())
    }
}

impl Drop for Alertable {
    fn drop(&mut self) {
        if let Some(q) = &self.queue {
            q.lock().alertable = None;
        }
    }
}

/// A handle to a thread's APC queue: the thread `HANDLE` that `QueueUserAPC` takes.
///
/// Obtained on the thread itself with [`ThreadHandle::current`], then sent to other threads.
#[derive(Clone)]
pub struct ThreadHandle {
    queue: Arc<ApcQueue>,
}

impl ThreadHandle {
    /// The calling thread (`GetCurrentThread`, duplicated into a real handle).
    pub fn current() -> Self {
        // During thread teardown the queue is gone: the handle is one of an exited thread.
        let queue = current_queue().unwrap_or_else(|| ApcQueue::new(false));
        Self { queue }
    }

    /// `QueueUserAPC`: queues `apc` to this handle's thread; it runs at that thread's next
    /// alertable wait, on that thread (AP-1). Fails with [`ErrorKind::ThreadExited`]
    /// (`ERROR_GEN_FAILURE`) if the thread has exited (AP-6); `apc` is then dropped unrun.
    pub fn queue_user_apc(&self, apc: impl FnOnce() + Send + 'static) -> Result<(), Error> {
        self.queue.push(Apc::User(Box::new(apc))).map_err(|_| Error::new(ErrorKind::ThreadExited))
    }

    /// Whether the thread is still alive (its queue accepts APCs).
    pub fn is_alive(&self) -> bool {
        self.queue.lock().alive
    }
}

impl fmt::Debug for ThreadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadHandle").field("alive", &self.is_alive()).finish_non_exhaustive()
    }
}

/// `SleepEx(timeout, alertable)`: sleeps for `timeout` (`None`: forever). Alertable, it returns
/// [`Wait::IoCompletion`] as soon as queued APCs and completion routines have run (at once if
/// some were queued on entry); otherwise it returns [`Wait::Timeout`] (`SleepEx` returning 0)
/// when the time is up (AP-3). `sleep_ex(Some(Duration::ZERO), true)` just runs what is queued.
pub fn sleep_ex(timeout: Option<Duration>, alertable: bool) -> Wait {
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    crate::port::worker::blocking(|| {
        let block = block::current();
        let mut driving = Driving::new();
        // An alertable sleep ends when a routine is queued: it reaps what can queue one.
        let engines = if alertable { routine_engines() } else { 0 };
        loop {
            if alertable && has_queued() {
                driving.release();
                run_queued();
                return Wait::IoCompletion;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Wait::Timeout;
            }
            block.arm();
            let alert = alertable.then(|| Alertable::enter(&block));
            if !alert.as_ref().is_some_and(Alertable::has_queued) {
                crate::wait::sleep(&mut driving, &block, engines, deadline);
            }
        }
    })
}
