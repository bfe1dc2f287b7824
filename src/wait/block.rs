//! The per-thread wait block: what a thread parks on while it waits in the library, and what
//! wakers (an event being set or closed, an APC being queued) notify.
//!
//! One block per thread, reused by every wait, so waiting allocates nothing. A block is
//! registered with the objects of at most one wait at a time: a wait unregisters before it
//! returns or runs APCs, so a wait nested in an APC reuses it safely.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Thread};
use std::time::Instant;

/// A thread's wait block.
pub(crate) struct WaitBlock {
    thread: Thread,
    notified: AtomicBool,
}

thread_local! {
    static BLOCK: Arc<WaitBlock> = Arc::new(WaitBlock { thread: thread::current(), notified: AtomicBool::new(false) });
}

/// The calling thread's wait block.
pub(crate) fn current() -> Arc<WaitBlock> {
    BLOCK.with(Arc::clone)
}

impl WaitBlock {
    /// Wakes the thread if it is parked on this block (or makes its next park return).
    pub(crate) fn notify(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.thread.unpark();
        }
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
