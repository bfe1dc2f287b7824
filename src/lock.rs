//! The lock of the short critical sections on the I/O path: a socket's lanes, the port's
//! queue, and the epoll backend's per-socket lists and queues.
//!
//! Each request takes several of these locks, always uncontended in the common case and held
//! for a few dozen instructions. `std::sync::Mutex` releases with an atomic swap (it must learn
//! whether a waiter sleeps on the futex), so every lock/unlock pair costs two atomic
//! read-modify-writes, about 6 ns each on the machines this was measured on. A spin lock
//! releases with a plain store: one atomic per pair. A thread that finds the lock held yields
//! its core while it waits, so a holder preempted on the same core runs again at once.
//!
//! Never hold one across a blocking call or a callback into the caller's code.

/// A spin lock that yields while it waits (see the module docs).
pub(crate) type Lock<T> = spin::mutex::SpinMutex<T, spin::relax::Yield>;

/// What [`Lock::lock`] returns.
pub(crate) type LockGuard<'a, T> = spin::mutex::SpinMutexGuard<'a, T>;
