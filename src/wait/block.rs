//! The per-thread wait block: what a thread parks on while it waits in the library, and what
//! wakers (an event being set or closed, an APC being queued) notify.
//!
//! One block per thread, reused by every wait, so waiting allocates nothing. A block is
//! registered with the objects of at most one wait at a time: a wait unregisters before it
//! returns or runs APCs, so a wait nested in an APC reuses it safely.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
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
}

thread_local! {
    static BLOCK: Arc<WaitBlock> = Arc::new(WaitBlock {
        thread: thread::current(),
        notified: AtomicBool::new(false),
        wake_fd: OnceLock::new(),
    });
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
            if let Some(fd) = self.wake_fd.get() {
                sys::eventfd_signal(fd.as_raw_fd());
            }
        }
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
