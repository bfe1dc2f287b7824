//! The backend behind every completion port: one internal interface, one implementation per
//! kernel mechanism, chosen in one place ([`Driver::new`]) and invisible above it.
//!
//! # The contract every backend provides
//! - [`Driver::submit`] starts the next step of an operation (`op::machine::next_step`) and
//!   owns the record until that step's result comes back through [`Driver::wait`], exactly
//!   once. Once the driver is closed it refuses new steps and hands the record back.
//! - Steps of one operation never overlap, and the backend never reorders steps of different
//!   operations of one socket lane (the socket layer only submits one per lane).
//! - [`Driver::wait`] blocks the calling thread (the port's poller) until at least one result
//!   is ready, the timeout passes, or [`Driver::wake`] is called, then hands every ready result
//!   to the callback on the calling thread: no extra thread sits between the kernel and the
//!   waiter.
//! - [`Driver::cancel`] asks for one operation (by id) to finish early with `ECANCELED`;
//!   [`Driver::close`] cancels everything and refuses further steps. A cancelled operation
//!   still comes back through `wait`, so its memory is freed only after the kernel is done.
//! - [`Driver::flush`] hands work that `submit` buffered to the kernel.

mod uring;

use std::io;
use std::time::Duration;

use crate::op::RawOp;

/// Which kernel mechanism runs a port's operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring: operations are submitted to a ring and complete as CQEs.
    IoUring,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::IoUring => "io_uring",
        })
    }
}

/// One port's backend.
pub(crate) enum Driver {
    Uring(uring::UringDriver),
}

impl Driver {
    /// Sets up the backend for a new port.
    pub(crate) fn new(backend: Option<Backend>) -> io::Result<Self> {
        match backend {
            None | Some(Backend::IoUring) => Ok(Self::Uring(uring::UringDriver::new()?)),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Uring(_) => Backend::IoUring,
        }
    }

    pub(crate) fn submit(&self, op: RawOp) -> Result<(), RawOp> {
        match self {
            Self::Uring(d) => d.submit(op),
        }
    }

    /// Registers a descriptor with the backend (io_uring fixed files); the slot, if any.
    pub(crate) fn register_file(&self, fd: std::os::fd::RawFd) -> Option<u32> {
        match self {
            Self::Uring(d) => d.register_file(fd),
        }
    }

    /// Releases a slot from [`Driver::register_file`]; no new request may use it.
    pub(crate) fn unregister_file(&self, slot: u32) {
        match self {
            Self::Uring(d) => d.unregister_file(slot),
        }
    }

    pub(crate) fn flush(&self) {
        match self {
            Self::Uring(d) => d.flush(),
        }
    }

    pub(crate) fn cancel(&self, id: usize) {
        match self {
            Self::Uring(d) => d.cancel(id),
        }
    }

    pub(crate) fn cancel_all(&self) {
        match self {
            Self::Uring(d) => d.cancel_all(),
        }
    }

    pub(crate) fn wake(&self) {
        match self {
            Self::Uring(d) => d.wake(),
        }
    }

    pub(crate) fn close(&self) {
        match self {
            Self::Uring(d) => d.close(),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        match self {
            Self::Uring(d) => d.in_flight(),
        }
    }

    /// Whether results are ready to be reaped without blocking (a cheap check).
    pub(crate) fn has_completions(&self) -> bool {
        match self {
            Self::Uring(d) => d.has_completions(),
        }
    }

    /// Hands the results that are already ready to `on_complete`, without blocking.
    /// Returns whether a wake-up was among the results.
    pub(crate) fn reap_ready(&self, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        match self {
            Self::Uring(d) => d.reap_ready(on_complete),
        }
    }

    /// Returns whether a wake-up was among the results.
    pub(crate) fn wait(&self, timeout: Option<Duration>, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        match self {
            Self::Uring(d) => d.wait(timeout, on_complete),
        }
    }
}
