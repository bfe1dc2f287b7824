//! The per-thread wait block: what a thread parks on while it waits in the library, and what
//! wakers (an event being set or closed, an APC being queued) notify.
//!
//! One block per thread, reused by every wait, so waiting allocates nothing. A block is
//! registered with the objects of at most one wait at a time: a wait unregisters before it
//! returns or runs APCs, so a wait nested in an APC reuses it safely.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, Thread};
use std::time::Instant;

use crate::sys;

/// A thread's wait block.
pub(crate) struct WaitBlock {
    thread: Thread,
    notified: AtomicBool,
    /// For waits in `poll` (the alertable blocking socket calls): made readable by `notify`.
    /// Created on first use.
    wake_fd: OnceLock<OwnedFd>,
    /// The engine whose backend the thread is blocked in (its index plus one; 0: none), which
    /// `notify` wakes.
    in_engine: AtomicUsize,
}

thread_local! {
    static BLOCK: Arc<WaitBlock> = Arc::new(WaitBlock {
        thread: thread::current(),
        notified: AtomicBool::new(false),
        wake_fd: OnceLock::new(),
        in_engine: AtomicUsize::new(0),
    });
}

/// The calling thread's wait block.
pub(crate) fn current() -> Arc<WaitBlock> {
    BLOCK.with(Arc::clone)
}

impl WaitBlock {
    /// Wakes the thread if it is parked on this block or blocked in an engine's backend (or
    /// makes its next park return).
    pub(crate) fn notify(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            self.thread.unpark();
            if let Some(fd) = self.wake_fd.get() {
                sys::eventfd_signal(fd.as_raw_fd());
            }
            // The thread may be blocked in a backend: wake that, unless it is this thread,
            // reaping (it looks at its block again before it blocks).
            let engine = self.in_engine.load(Ordering::SeqCst);
            if engine != 0 && !self.is_current() {
                if let Some(e) = crate::engine::by_index(engine - 1) {
                    e.wake();
                }
            }
        }
    }

    fn is_current(&self) -> bool {
        BLOCK.try_with(|b| std::ptr::eq(Arc::as_ptr(b), self)).unwrap_or(false)
    }

    /// The thread is about to block in the backend of engine `index` (then it reads
    /// [`WaitBlock::is_notified`]: see `notify` for the order).
    pub(crate) fn enter_engine(&self, index: usize) {
        self.in_engine.store(index + 1, Ordering::SeqCst);
    }

    /// The thread is back from the backend.
    pub(crate) fn leave_engine(&self) {
        self.in_engine.store(0, Ordering::SeqCst);
    }

    /// Whether the block was notified since it was last armed.
    pub(crate) fn is_notified(&self) -> bool {
        self.notified.load(Ordering::SeqCst)
    }

    /// The descriptor that [`WaitBlock::notify`] makes readable, emptied: a thread that waits in
    /// `poll` adds it to its set (after [`WaitBlock::arm`]). `None` if it cannot be created.
    pub(crate) fn poll_fd(&self) -> Option<RawFd> {
        let fd = match self.wake_fd.get() {
            Some(fd) => fd,
            None => {
                let fd = sys::eventfd().ok()?;
                self.wake_fd.get_or_init(|| fd)
            }
        };
        sys::eventfd_drain(fd.as_raw_fd());
        Some(fd.as_raw_fd())
    }

    /// Forgets earlier notifications; called before registering for a new wait.
    pub(crate) fn arm(&self) {
        self.notified.store(false, Ordering::Release);
    }

    /// Parks until notified or until `deadline`. Returns whether it was notified.
    pub(crate) fn park(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.notified.load(Ordering::Acquire) {
                return true;
            }
            match deadline {
                None => thread::park(),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return self.notified.load(Ordering::Acquire);
                    }
                    thread::park_timeout(d - now);
                }
            }
        }
    }
}
