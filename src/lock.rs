//! The lock of the I/O path: a socket's lanes, the port's queue, the io_uring backend's
//! submission and completion queues, and the epoll backend's per-socket lists and queues.
//!
//! # Why not `std::sync::Mutex`
//! A request on the port echo server takes about ten such locks, and `std`'s release is an
//! atomic swap (it must learn whether a waiter sleeps). Each locked instruction waits for the
//! store buffer to drain, behind the section's stores that missed the cache: measured, the
//! swaps cost about 50 ns per request.
//!
//! Nor a spin lock, whose release is a plain store: that was measured too. Where two threads
//! share a core (the event and routine servers' I/O thread and the engine thread they had then, under
//! `taskset -c 0`), a waiter that yields to a preempted holder can be picked again and again
//! until the holder is due: those servers ran at less than half their throughput. A lock must
//! sleep while it waits.
//!
//! # How this one works: an asymmetric futex lock
//! - `state` is 0 (free) or 1 (held); `lock` takes it with one compare-and-swap.
//! - A waiter spins briefly, then announces itself in `sleepers` and sleeps on `state` with
//!   `FUTEX_WAIT` (which sleeps only while `state` is still 1).
//! - `unlock` stores 0 with a plain release store, then reads `sleepers` and wakes one if any.
//!
//! A plain store followed by a load may be reordered by the CPU (store to load), so on its own
//! the release could read a stale `sleepers` of 0 while the waiter reads a stale `state` of 1:
//! a lost wake-up. The waiter closes that window with `membarrier(PRIVATE_EXPEDITED)` between
//! announcing itself and reading `state`: when the call returns, every running thread of the
//! process has executed a full memory barrier. Either a releasing thread's barrier came before
//! its store, so its later read of `sleepers` sees the announcement, or after it, so the store
//! is visible to the waiter's read. (The technique is the "asymmetric fence" of userspace RCU
//! and folly: the rare side pays a system call so the frequent side needs no fence.)
//!
//! Where `membarrier` is unavailable (kernels before 4.14, a seccomp filter), the release is
//! an atomic swap instead, and both sides are then ordinary sequentially consistent Dekker
//! synchronisation. The choice is made once per process, when the first completion port is
//! created ([`prepare`]) or by the first thread that has to wait, whichever comes first; until
//! then releases use the swap, which is correct with either kind of waiter.
//!
//! After its store, a release still reads `sleepers` (and may wake `state`), so the lock must
//! stay allocated until `unlock` returns. The guard's borrow of the lock guarantees that: the
//! lock is freed only by its owner, and the owner cannot be gone while a guard borrows it.
//!
//! Poisoning: there is none. Every section leaves its data consistent at each step, so a panic
//! in a holder's thread (the guard's drop releases the lock while unwinding) must not make the
//! socket or the port unusable.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering, compiler_fence};

/// Compare-and-swap attempts a waiter makes before it sleeps.
const SPINS: u32 = 64;

/// Chooses how releases are ordered (module docs), if not done yet: one `membarrier`
/// registration per process. Called when a completion port is created, so that a process
/// whose locks never see a sleeping waiter still gets the plain-store release.
pub(crate) fn prepare() {
    barrier::prepare();
}

/// A mutual-exclusion lock without poisoning (see the module docs).
pub(crate) struct Lock<T> {
    /// 0: free; 1: held.
    state: AtomicU32,
    /// Threads that announced they sleep (or are about to) on `state`.
    sleepers: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time (the guard exists only
// while `state` is 1 on its behalf), so sharing the lock moves `T` between threads, as a
// `Mutex<T>` does: `T: Send` suffices.
unsafe impl<T: Send> Sync for Lock<T> {}
// SAFETY: the lock owns its `T`; sending it sends the `T`.
unsafe impl<T: Send> Send for Lock<T> {}

impl<T: Default> Default for Lock<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// Access to a [`Lock`]'s value; releases the lock when dropped.
pub(crate) struct LockGuard<'a, T> {
    lock: &'a Lock<T>,
    /// Not `Send` (like `std`'s guard) and not `Sync` unless `T` is (impl below).
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only gives `&T`, which may be shared between threads if `T: Sync`.
unsafe impl<T: Sync> Sync for LockGuard<'_, T> {}

impl<T> Lock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self { state: AtomicU32::new(0), sleepers: AtomicU32::new(0), value: UnsafeCell::new(value) }
    }

    /// Takes the lock, sleeping while another thread holds it.
    pub(crate) fn lock(&self) -> LockGuard<'_, T> {
        if self.state.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.lock_contended();
        }
        LockGuard { lock: self, _not_send: PhantomData }
    }

    /// Takes the lock if it is free, without waiting.
    pub(crate) fn try_lock(&self) -> Option<LockGuard<'_, T>> {
        // Built only on success: a guard dropped after a failed attempt would release the
        // holder's lock.
        self.try_take().then(|| LockGuard { lock: self, _not_send: PhantomData })
    }

    fn try_take(&self) -> bool {
        self.state.load(Ordering::Relaxed) == 0
            && self.state.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).is_ok()
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        loop {
            for _ in 0..SPINS {
                if self.try_take() {
                    return;
                }
                std::hint::spin_loop();
            }
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            let ordered = barrier::before_sleep();
            if self.state.load(Ordering::SeqCst) != 0 {
                // Once `ordered`, a release cannot miss this waiter; otherwise (never expected:
                // the barrier worked when it was chosen) sleep in short slices, so that a
                // missed wake-up costs a slice, not a hang.
                sys::futex_wait(&self.state, 1, !ordered);
            }
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            if self.try_take() {
                return;
            }
        }
    }

    fn unlock(&self) {
        if barrier::asymmetric() {
            self.state.store(0, Ordering::Release);
            // Only the compiler must keep the read below the store; the CPU's order is made
            // safe by the waiters' heavy barrier (module docs).
            compiler_fence(Ordering::SeqCst);
        } else {
            self.state.swap(0, Ordering::SeqCst);
        }
        if self.sleepers.load(Ordering::SeqCst) != 0 {
            sys::futex_wake_one(&self.state);
        }
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread holds the lock, so no other
        // reference to the value exists (exclusive access, from `lock` until `drop`).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for LockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

/// The heavy side of the asymmetric fence (`membarrier`), chosen once per process.
mod barrier {
    use super::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const ASYMMETRIC: u8 = 1;
    const SYMMETRIC: u8 = 2;

    static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);

    #[cfg(test)]
    thread_local! {
        /// Tests of the fallback: threads that set it (all the threads using one lock) behave
        /// as where `membarrier` is unavailable.
        pub(super) static FORCE_SYMMETRIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn mode() -> u8 {
        #[cfg(test)]
        if FORCE_SYMMETRIC.with(std::cell::Cell::get) {
            return SYMMETRIC;
        }
        MODE.load(Ordering::Acquire)
    }

    /// Whether releases may use a plain store: set once a waiter has registered for
    /// `membarrier` (until then, and where it is unavailable, releases swap).
    pub(super) fn asymmetric() -> bool {
        mode() == ASYMMETRIC
    }

    /// Orders a waiter's announcement before its read of the lock word against every
    /// release: with plain-store releases, by making every running thread of the process
    /// execute a full memory barrier. Returns false if that failed (never expected).
    pub(super) fn before_sleep() -> bool {
        let mode = match mode() {
            UNKNOWN => choose(),
            m => m,
        };
        // Swapping releases are ordered already (sequentially consistent on both sides).
        mode == SYMMETRIC || super::sys::membarrier_private_expedited()
    }

    pub(super) fn prepare() {
        if MODE.load(Ordering::Acquire) == UNKNOWN {
            choose();
        }
    }

    #[cold]
    fn choose() -> u8 {
        let mode = if super::sys::membarrier_register() { ASYMMETRIC } else { SYMMETRIC };
        // Racing first waiters reach the same answer.
        MODE.store(mode, Ordering::Release);
        mode
    }
}

/// The system calls the lock makes.
mod sys {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED` of `linux/membarrier.h`.
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    /// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED` of `linux/membarrier.h`.
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;
    /// How long a waiter sleeps at a time when the heavy barrier failed.
    const SLICE: Duration = Duration::from_millis(1);

    fn membarrier(cmd: libc::c_long) -> bool {
        // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` takes no pointers.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long, 0 as libc::c_long) == 0 }
    }

    /// Registers the process for private expedited barriers; false where unsupported.
    pub(super) fn membarrier_register() -> bool {
        membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
    }

    pub(super) fn membarrier_private_expedited() -> bool {
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
    }

    /// Sleeps while `*word == expected` (or until woken, interrupted, or, if `sliced`,
    /// [`SLICE`] has passed).
    pub(super) fn futex_wait(word: &AtomicU32, expected: u32, sliced: bool) {
        let slice = libc::timespec { tv_sec: 0, tv_nsec: SLICE.as_nanos() as libc::c_long };
        let timeout: *const libc::timespec = if sliced { &slice } else { std::ptr::null() };
        // SAFETY: `word` is a valid, aligned 32-bit atomic for the duration of the call (the
        // kernel only reads it); `timeout` is null or points to `slice`, which outlives the
        // call.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                timeout,
            )
        };
    }

    /// Wakes one thread sleeping on `word`.
    pub(super) fn futex_wake_one(word: &AtomicU32) {
        // SAFETY: `word` is a valid, aligned 32-bit atomic; FUTEX_WAKE does not access it.
        unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1) };
    }
}

#[cfg(test)]
mod tests {
    use super::Lock;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Runs `threads` threads that each add 1 to a plain counter under the lock `rounds` times,
    /// every `hold_every`th time holding the lock across a yield (so that waiters give up
    /// spinning and sleep); `one_core` pins them all to one CPU, `symmetric` makes them behave
    /// as where `membarrier` is unavailable. Returns the final count, or `None` if the threads
    /// did not finish in time (a lost wake-up leaves a waiter asleep for good).
    fn hammer(threads: usize, rounds: u64, hold_every: u64, one_core: bool, symmetric: bool) -> Option<u64> {
        let lock = Arc::new(Lock::new(0u64));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    super::barrier::FORCE_SYMMETRIC.with(|f| f.set(symmetric));
                    if one_core {
                        pin_to_first_cpu();
                    }
                    for i in 0..rounds {
                        let mut n = lock.lock();
                        let seen = *n;
                        if i % hold_every == 0 {
                            std::thread::yield_now();
                        }
                        *n = seen + 1;
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while workers.iter().any(|w| !w.is_finished()) {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for w in workers {
            w.join().expect("worker panicked");
        }
        let n = *lock.lock();
        Some(n)
    }

    fn pin_to_first_cpu() {
        // SAFETY: `set` is a valid, zeroed cpu_set_t that CPU_SET writes in place; the call
        // reads it for its duration.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return;
            }
            let Some(first) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)) else { return };
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(first, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }

    #[test]
    fn sections_exclude_each_other_and_no_waiter_is_left_asleep() {
        assert_eq!(hammer(4, 20_000, 7, false, false), Some(80_000));
    }

    #[test]
    fn without_membarrier_releases_swap_and_still_wake_every_waiter() {
        assert_eq!(hammer(4, 20_000, 7, false, true), Some(80_000));
        assert_eq!(hammer(3, 5_000, 3, true, true), Some(15_000));
    }

    #[test]
    fn waiters_sharing_one_core_with_the_holder_sleep_and_are_woken() {
        assert_eq!(hammer(3, 5_000, 3, true, false), Some(15_000));
    }

    #[test]
    fn try_lock_takes_only_a_free_lock() {
        let lock = Lock::new(1);
        let held = lock.try_lock().expect("free");
        assert!(lock.try_lock().is_none(), "held");
        // The failed attempts must leave the holder's lock held.
        assert!(lock.try_lock().is_none(), "still held after a failed attempt");
        drop(held);
        assert_eq!(lock.try_lock().map(|v| *v), Some(1));
    }

    #[test]
    fn a_panic_while_held_leaves_the_lock_usable() {
        let lock = Arc::new(Lock::new(vec![1]));
        let l2 = Arc::clone(&lock);
        let r = std::thread::spawn(move || {
            let mut v = l2.lock();
            v.push(2);
            panic!("holder panics");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(*lock.lock(), vec![1, 2]);
    }
}
