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
//! - A result may also come back through [`Driver::reap_ready`] (what is already there, without
//!   blocking) or [`Driver::reap_now`] (also what the kernel finished and has not reported).
//! - [`Driver::cancel`] asks for one operation (by id; the descriptor it works on is a hint) to
//!   finish early with `ECANCELED`;
//!   [`Driver::close`] cancels everything and refuses further steps. A cancelled operation
//!   still comes back through `wait`, so its memory is freed only after the kernel is done.
//! - [`Driver::flush`] hands work that `submit` buffered to the kernel (io_uring), or wakes the
//!   poller for results that `submit` produced at once (epoll).
//! - [`Driver::forget_fd`] drops what the backend keeps about a descriptor about to be closed.

mod epoll;
mod select;
mod uring;

use select::unavailable;
pub use select::with_default_backend;
pub(crate) use select::{default_backend, process_default_backend, thread_default};

use std::io;
use std::time::Duration;

use crate::op::RawOp;

/// Which kernel mechanism runs a port's operations.
///
/// Chosen at run time ([`Backend::detect`]): io_uring when the ring can be set up with
/// every opcode the library uses, epoll otherwise. The environment variable
/// `OVERLAPPED_BACKEND=io_uring|epoll`, [`PortBuilder::backend`](crate::PortBuilder::backend)
/// and [`with_default_backend`] force one; forcing io_uring where it is unavailable fails
/// ([`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported)) rather than falling back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring: operations are submitted to a ring and complete as CQEs.
    IoUring,
    /// epoll: operations are tried with non-blocking system calls and retried when the socket
    /// becomes ready; completions are emulated.
    Epoll,
}

impl Backend {
    /// Every backend, in order of preference.
    pub const ALL: [Backend; 2] = [Backend::IoUring, Backend::Epoll];

    /// Whether this backend can run here: the first call sets one up and drops it; the answer
    /// is kept for the life of the process. The error says why not.
    pub fn probe(self) -> Result<(), crate::Error> {
        select::probe(self)
    }

    /// The backend a port or socket gets when none is forced: this thread's
    /// [`with_default_backend`], else `OVERLAPPED_BACKEND`, else io_uring if it can be set up,
    /// else epoll. Fails if `OVERLAPPED_BACKEND` names an unknown backend.
    pub fn detect() -> Result<Backend, crate::Error> {
        default_backend()
    }

    /// The name `OVERLAPPED_BACKEND` takes: `io_uring` or `epoll`.
    pub fn name(self) -> &'static str {
        match self {
            Self::IoUring => "io_uring",
            Self::Epoll => "epoll",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL.into_iter().find(|b| b.name() == s).ok_or(crate::Error::new(crate::ErrorKind::InvalidArgument))
    }
}

/// What runs operation steps on a backend: a completion port, or the engine of the operations
/// notified through events and completion routines. Sockets submit through it, so they need
/// not know which one an operation belongs to.
pub(crate) trait Runner: Sync {
    /// Starts the next step of `op` (see [`Driver::submit`]); hands it back if refused.
    fn submit(&self, op: RawOp) -> Result<(), RawOp>;
    /// Asks for the operation with this id, working on `fd`, to finish early.
    fn cancel(&self, id: usize, fd: std::os::fd::RawFd);
}

/// One port's backend.
// One per port, so the size difference costs nothing; boxing would add an indirection to
// every call on the hot path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Driver {
    Uring(uring::UringDriver),
    Epoll(epoll::EpollDriver),
}

impl Driver {
    /// Sets up the backend for a new port: `backend`, or the default one.
    pub(crate) fn new(backend: Option<Backend>) -> Result<Self, crate::Error> {
        let backend = match backend {
            Some(b) => b,
            None => default_backend()?,
        };
        // A backend chosen by the caller or the environment is not swapped for another.
        Self::create(backend).map_err(|e| unavailable(e.into()))
    }

    fn create(backend: Backend) -> io::Result<Self> {
        match backend {
            Backend::IoUring => Ok(Self::Uring(uring::UringDriver::new()?)),
            Backend::Epoll => Ok(Self::Epoll(epoll::EpollDriver::new()?)),
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Self::Uring(_) => Backend::IoUring,
            Self::Epoll(_) => Backend::Epoll,
        }
    }

    /// Forgets what the backend keeps about a descriptor that is being closed.
    pub(crate) fn forget_fd(&self, fd: std::os::fd::RawFd) {
        match self {
            Self::Uring(_) => {}
            Self::Epoll(d) => d.forget_fd(fd),
        }
    }

    pub(crate) fn submit(&self, op: RawOp) -> Result<(), RawOp> {
        match self {
            Self::Uring(d) => d.submit(op),
            Self::Epoll(d) => d.submit(op),
        }
    }

    /// Registers a descriptor with the backend (io_uring fixed files); the slot, if any.
    pub(crate) fn register_file(&self, fd: std::os::fd::RawFd) -> Option<u32> {
        match self {
            Self::Uring(d) => d.register_file(fd),
            Self::Epoll(_) => None,
        }
    }

    /// Releases a slot from [`Driver::register_file`]; no new request may use it.
    pub(crate) fn unregister_file(&self, slot: u32) {
        match self {
            Self::Uring(d) => d.unregister_file(slot),
            Self::Epoll(_) => {}
        }
    }

    pub(crate) fn flush(&self) {
        match self {
            Self::Uring(d) => d.flush(),
            Self::Epoll(d) => d.flush(),
        }
    }

    /// Cancels the operation with this id, which works on `fd`.
    pub(crate) fn cancel(&self, id: usize, fd: std::os::fd::RawFd) {
        match self {
            Self::Uring(d) => d.cancel(id),
            Self::Epoll(d) => d.cancel(id, fd),
        }
    }

    pub(crate) fn cancel_all(&self) {
        match self {
            Self::Uring(d) => d.cancel_all(),
            Self::Epoll(d) => d.cancel_all(),
        }
    }

    pub(crate) fn wake(&self) {
        match self {
            Self::Uring(d) => d.wake(),
            Self::Epoll(d) => d.wake(),
        }
    }

    pub(crate) fn close(&self) {
        match self {
            Self::Uring(d) => d.close(),
            Self::Epoll(d) => d.close(),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        match self {
            Self::Uring(d) => d.in_flight(),
            Self::Epoll(d) => d.in_flight(),
        }
    }

    /// Whether results are ready to be reaped without blocking (a cheap check).
    pub(crate) fn has_completions(&self) -> bool {
        match self {
            Self::Uring(d) => d.has_completions(),
            Self::Epoll(d) => d.has_completions(),
        }
    }

    /// Hands the results that are already ready to `on_complete`, without blocking.
    /// Returns whether a wake-up was among the results.
    pub(crate) fn reap_ready(&self, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        match self {
            Self::Uring(d) => d.reap_ready(on_complete),
            Self::Epoll(d) => d.reap_ready(on_complete),
        }
    }

    /// Like [`Driver::reap_ready`], but also collects what the kernel finished and not yet
    /// reported (the readiness backend performs what became possible). Returns whether a
    /// wake-up was among the results.
    pub(crate) fn reap_now(&self, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        match self {
            Self::Uring(d) => d.reap_ready(on_complete),
            Self::Epoll(d) => d.reap_now(on_complete),
        }
    }

    /// Returns whether a wake-up was among the results.
    pub(crate) fn wait(&self, timeout: Option<Duration>, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        match self {
            Self::Uring(d) => d.wait(timeout, on_complete),
            Self::Epoll(d) => d.wait(timeout, on_complete),
        }
    }
}
