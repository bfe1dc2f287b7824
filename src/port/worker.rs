//! Per-thread bookkeeping for completion ports: the thread's id (for LIFO waiting and for
//! `CancelIo`), and the port it is currently *running* for.
//!
//! A thread counts as running on a port from the moment it takes a packet until it next calls
//! `get` on that port, calls `get` on another port, or exits (CC-2, CC-3); while it runs, the
//! port's `active` count includes it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, Thread};

use super::core::{Packet, PortCore};
use crate::op::CancelReason;
use crate::socket::inner::SocketInner;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Worker {
    id: u64,
    thread: Thread,
    /// Weak, so that a port the application closed and dropped is freed (with its ring) even
    /// while a thread that last ran on it lives on.
    running_on: RefCell<Option<Weak<PortCore>>>,
    /// Nesting depth of [`crate::blocking`] sections.
    blocked: Cell<u32>,
    /// The port or engine whose completions this thread is reaping, if any (see [`reaping`]).
    reaping: Cell<*const ()>,
    /// Packets reaped but not yet queued; kept here so its capacity is reused.
    batch: RefCell<Vec<Packet>>,
    /// Sockets this thread issued operations on that its exit cancels (TE-1), by address.
    exit_cancellable: RefCell<IssuedSockets>,
}

/// A set of sockets held weakly, pruned of dead ones as it grows.
#[derive(Default)]
struct IssuedSockets {
    sockets: HashMap<usize, Weak<SocketInner>>,
    prune_at: usize,
}

impl IssuedSockets {
    fn note(&mut self, socket: &Arc<SocketInner>) {
        let key = Arc::as_ptr(socket) as usize;
        match self.sockets.get(&key) {
            Some(w) if std::ptr::eq(w.as_ptr(), Arc::as_ptr(socket)) && w.strong_count() > 0 => return,
            _ => {}
        }
        self.sockets.insert(key, Arc::downgrade(socket));
        if self.sockets.len() >= self.prune_at {
            self.sockets.retain(|_, w| w.strong_count() > 0);
            self.prune_at = (2 * self.sockets.len()).max(64);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // TE-1: the operations this thread issued are cancelled, except port operations without
        // an event; events are still signalled and packets queued, routines dropped with the
        // thread's APC queue (AP-6).
        let id = self.id;
        for socket in self.exit_cancellable.get_mut().sockets.values().filter_map(Weak::upgrade) {
            socket.cancel(|_, issuer, exit_cancels| issuer == id && exit_cancels, CancelReason::Cancel);
        }
        // A thread that exits while running stops counting toward its port's concurrency.
        if let Some(port) = self.running_on.get_mut().take().and_then(|w| w.upgrade()) {
            port.leave_active();
        }
    }
}

thread_local! {
    static WORKER: Worker = Worker {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        thread: thread::current(),
        running_on: RefCell::new(None),
        blocked: Cell::new(0),
        reaping: Cell::new(std::ptr::null()),
        batch: RefCell::new(Vec::new()),
        exit_cancellable: RefCell::new(IssuedSockets::default()),
    };
}

/// This thread's id (unique for the life of the process).
pub(crate) fn id() -> u64 {
    WORKER.try_with(|w| w.id).unwrap_or(0)
}

/// This thread's handle, for waking it.
pub(crate) fn thread() -> Thread {
    WORKER.try_with(|w| w.thread.clone()).unwrap_or_else(|_| thread::current())
}

/// Stops running on whatever port this thread was running on, returning that port.
pub(crate) fn take_running() -> Option<Weak<PortCore>> {
    WORKER.try_with(|w| w.running_on.borrow_mut().take()).ok().flatten()
}

/// Marks this thread as running on `port` (it just took a packet from it).
pub(crate) fn set_running(port: Weak<PortCore>) {
    let _ = WORKER.try_with(|w| *w.running_on.borrow_mut() = Some(port));
}

/// Whether submissions this thread makes to `port` may wait: it is running on the port (its
/// next `get` submits them with its wait), or it is reaping the port's completions (the wait
/// it returns to submits them). Submissions to any other port go at once.
pub(crate) fn may_defer_submissions(port: &PortCore) -> bool {
    WORKER
        .try_with(|w| {
            std::ptr::eq(w.reaping.get(), std::ptr::from_ref(port).cast())
                || w.running_on.borrow().as_ref().is_some_and(|p| std::ptr::eq(p.as_ptr(), port))
        })
        .unwrap_or(false)
}

/// Whether this thread is reaping the completions of `runner` (a port or the engine) right
/// now: its submissions to it then go with the wait it returns to.
pub(crate) fn is_reaping<T>(runner: &T) -> bool {
    WORKER.try_with(|w| std::ptr::eq(w.reaping.get(), std::ptr::from_ref(runner).cast())).unwrap_or(false)
}

/// Runs `f` (a driver wait that reaps the completions of `runner`, a port or the engine) with
/// submissions to `runner` deferred.
pub(crate) fn reaping<T, R>(runner: &T, f: impl FnOnce() -> R) -> R {
    let this = std::ptr::from_ref(runner).cast::<()>();
    let was = WORKER.try_with(|w| w.reaping.replace(this)).unwrap_or(std::ptr::null());
    let result = f();
    let _ = WORKER.try_with(|w| w.reaping.set(was));
    result
}

/// Runs `f` as a blocking section: while it runs, the thread does not count toward its port's
/// concurrency, so another waiting thread may be released (CC-3, CC-6, spec §8.4.1).
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let port = WORKER.try_with(|w| {
        let outer = w.blocked.get() == 0;
        w.blocked.set(w.blocked.get() + 1);
        if outer { w.running_on.borrow().as_ref().and_then(Weak::upgrade) } else { None }
    });
    let port = port.ok().flatten();
    if let Some(p) = &port {
        p.leave_active();
    }
    let result = f();
    let _ = WORKER.try_with(|w| w.blocked.set(w.blocked.get() - 1));
    if let Some(p) = &port {
        p.reenter_active();
    }
    result
}

/// Records that this thread issued an operation on `socket` that its exit cancels (TE-1).
pub(crate) fn note_exit_cancellable(socket: &Arc<SocketInner>) {
    let _ = WORKER.try_with(|w| w.exit_cancellable.borrow_mut().note(socket));
}

/// This thread's (empty) batch vector, to collect reaped packets in.
pub(crate) fn take_batch() -> Vec<Packet> {
    WORKER.try_with(|w| std::mem::take(&mut *w.batch.borrow_mut())).unwrap_or_default()
}

/// Gives the batch vector back, keeping its capacity for the next reap.
pub(crate) fn return_batch(batch: Vec<Packet>) {
    debug_assert!(batch.is_empty());
    let _ = WORKER.try_with(|w| *w.batch.borrow_mut() = batch);
}
