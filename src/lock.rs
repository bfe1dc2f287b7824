//! The lock of the short critical sections on the I/O path: a socket's lanes, the port's
//! queue, and the epoll backend's per-socket lists and queues.
//!
//! A `std::sync::Mutex` whose poisoning is ignored: every section leaves its data consistent
//! at each step, so a panic elsewhere in a holder's thread must not make the socket or the
//! port unusable.
//!
//! Why not a spin lock, whose release is a plain store instead of the atomic swap `std` needs
//! to learn whether a waiter sleeps: it was measured. It saves about 50 ns of user time per
//! request on the port echo server, but where two threads share a core (the event and routine
//! servers' I/O thread and engine thread under `taskset -c 0`), a waiter that yields to a
//! preempted holder can be picked again and again until the holder is due: those servers ran
//! at less than half their throughput. A lock must sleep while it waits.

use std::sync::{Mutex, MutexGuard};

/// A mutex that ignores poisoning (see the module docs).
#[derive(Default)]
pub(crate) struct Lock<T>(Mutex<T>);

/// What [`Lock::lock`] returns.
pub(crate) type LockGuard<'a, T> = MutexGuard<'a, T>;

impl<T> Lock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> LockGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
