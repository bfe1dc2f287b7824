//! The process's completion engine for operations that complete without a port: those
//! notified through an event or a completion routine (spec 1.7, §8.1: the kernel side of
//! "set the event" and "queue the APC").
//!
//! One engine per backend (io_uring, epoll), each a backend instance shared by the process.
//! It has no thread of its own: **the thread that waits reaps.** A thread blocked in a library
//! wait that such an operation can end ([`wait_for_events`](crate::wait_for_events),
//! [`Event::wait`](crate::Event::wait), [`PendingIo::overlapped_result`](crate::PendingIo)
//! with `wait`, an alertable wait) blocks in the engine's backend itself and hands each
//! completion to its notification (the caller's result slot and event, or the issuing thread's
//! APC queue), as the Windows kernel does on I/O completion. So a completion reaches the thread
//! that waits for it without a hop through another thread, and the operations that thread
//! issues while it reaps go to the kernel with its next wait.
//!
//! Leader and followers (`lead.rs`): of the threads waiting on one engine, one leads (blocks in
//! the backend); the others sleep on their wait blocks until their event is set or the leader
//! leaves and hands the backend to the most recent of them.
//!
//! Non-blocking observations (`PendingIo::overlapped_result(false)`, `PendingIo::is_completed`,
//! `Event::is_set`) first collect what has already completed ([`Engine::collect`]).
//!
//! Operations nobody waits for (a thread that never waits, a routine whose thread waits on a
//! port, a short send's remainder) are not left behind: a helper thread (`helper.rs`) looks at
//! the engines every few milliseconds and reaps one that has operations in flight and nobody
//! waiting on it, until a waiting thread takes over. It is never on the path of a thread that
//! waits.

mod helper;
mod lead;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use self::lead::Driving;
use crate::driver::{self, Backend, Driver, Runner};
use crate::error::Error;
use crate::lock::Lock;
use crate::op::{Lane, OpKind, RawOp};
use crate::port::worker;

/// The engine of one backend: its driver and who reaps it.
pub(crate) struct Engine {
    driver: Driver,
    lead: Lock<lead::LeadState>,
    /// How often a thread entered the backend to reap (the helper tells an abandoned engine by
    /// this count standing still).
    drives: AtomicU64,
    /// The count the helper saw at its last look.
    drives_seen: AtomicU64,
    /// This engine's place in [`ENGINES`] (what a wait block names it by).
    index: usize,
}

/// One engine per backend, so that both can serve one process (the test suite runs every
/// test on each).
static ENGINES: [OnceLock<Result<Engine, Error>>; Backend::ALL.len()] = [const { OnceLock::new() }; 2];

fn index_of(backend: Backend) -> usize {
    Backend::ALL.iter().position(|b| *b == backend).unwrap_or(0)
}

/// The engine of `backend`, set up on first use. Fails if the backend cannot be set up.
pub(crate) fn get(backend: Backend) -> Result<&'static Engine, Error> {
    let i = index_of(backend);
    match ENGINES[i].get_or_init(|| Engine::new(backend, i)) {
        Ok(engine) => {
            helper::ensure_started();
            Ok(engine)
        }
        Err(e) => Err(*e),
    }
}

/// The engine of `backend` if it is set up already (every operation on it set it up).
pub(crate) fn running(backend: Backend) -> Option<&'static Engine> {
    by_index(index_of(backend))
}

/// The engine at `index` of [`ENGINES`], if it is set up.
pub(crate) fn by_index(index: usize) -> Option<&'static Engine> {
    ENGINES.get(index)?.get()?.as_ref().ok()
}

/// Every engine that is set up.
fn all() -> impl Iterator<Item = &'static Engine> {
    (0..ENGINES.len()).filter_map(by_index)
}

/// The backend that runs operations not tied to a completion port (the event and
/// completion-routine models), setting its engine up if needed. A server can call this at
/// start-up to report the backend, and so that the engine's descriptors exist before it counts
/// its own.
pub fn engine_backend() -> Result<Backend, Error> {
    let backend = driver::default_backend()?;
    get(backend).map(Engine::backend)
}

impl Engine {
    fn new(backend: Backend, index: usize) -> Result<Self, Error> {
        let driver = Driver::new(Some(backend))?;
        crate::lock::prepare();
        Ok(Self {
            driver,
            lead: Lock::new(lead::LeadState::default()),
            drives: AtomicU64::new(0),
            drives_seen: AtomicU64::new(0),
            index,
        })
    }

    pub(crate) fn backend(&self) -> Backend {
        self.driver.backend()
    }

    /// What a wait block and a result slot name this engine by ([`by_index`]).
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Forgets what the backend keeps about a descriptor that is being closed.
    pub(crate) fn forget_fd(&self, fd: std::os::fd::RawFd) {
        self.driver.forget_fd(fd);
    }

    /// Makes the thread blocked in the backend (the leader) return.
    pub(crate) fn wake(&self) {
        self.driver.wake();
    }

    /// Hands every completion already there to its notification, without blocking: what a
    /// non-blocking observation does first.
    pub(crate) fn collect(&self) {
        self.driver.flush();
        let woke = self.reap(|on_complete| self.driver.reap_now(on_complete));
        self.driver.flush();
        // A wake-up taken here was meant for the thread blocked in the backend: pass it on.
        if woke && self.lead.lock().has_leader_in_backend() {
            self.driver.wake();
        }
    }

    /// Runs a driver call that reaps completions, handing each to its notification (the
    /// engine's operations never make packets). Submissions made meanwhile wait for the
    /// driver's next wait (or the flush when the reaping thread leaves). Returns whether a
    /// wake-up was among the results.
    fn reap(&self, driver_call: impl FnOnce(&mut dyn FnMut(RawOp, i32)) -> bool) -> bool {
        worker::reaping(self, || {
            driver_call(&mut |op, res| {
                // An engine operation goes to a slot or an APC queue; a packet is impossible,
                // and would be dropped here.
                drop(crate::socket::inner::on_step_result(self, op, res));
            })
        })
    }

    /// Blocks in the backend until a completion, a wake-up or `timeout`, reaping what comes.
    fn drive(&self, timeout: Option<std::time::Duration>) {
        self.drives.fetch_add(1, Ordering::Relaxed);
        self.reap(|on_complete| self.driver.wait(timeout, on_complete));
    }

    fn in_flight(&self) -> usize {
        self.driver.in_flight()
    }
}

impl Runner for Engine {
    /// Starts an operation step: at once, unless this thread is reaping the engine (the wait
    /// it returns to, or the flush when it leaves, submits it), or it is a receive or accept
    /// issued by the thread that led the engine last: that goes to the kernel with the next
    /// wait on the engine, in one system call with it, or within two helper ticks (about 10 ms)
    /// if nobody waits (a receive waiting longer delays nothing the peer sees: its data waits
    /// in the socket; a non-blocking observation submits it at once).
    fn submit(&self, op: RawOp) -> Result<(), RawOp> {
        let receive = op.state().kind.lane() == Lane::Read || matches!(op.state().kind, OpKind::Accept { .. });
        self.driver.submit(op)?;
        let deferred = worker::is_reaping(self) || (receive && lead::led_last(self.index));
        if !deferred {
            self.driver.flush();
        }
        helper::note_busy();
        Ok(())
    }

    fn cancel(&self, id: usize, fd: std::os::fd::RawFd) {
        self.driver.cancel(id, fd);
    }
}
