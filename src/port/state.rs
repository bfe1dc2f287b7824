//! The completion port's kernel-queue model (spec §2.2, CC-1..CC-7; ReactOS `KeRemoveQueue` /
//! `KiInsertQueue`): a FIFO of packets, a LIFO stack of waiting threads, and the `active` /
//! `max` counters that cap how many threads run at once.
//!
//! Rules kept here:
//! - a packet goes straight to the most recently arrived waiter while `active < max`
//!   (CC-4), otherwise it is queued; one packet wakes at most one thread;
//! - a thread entering `get` with packets queued and `active < max` takes the oldest at once
//!   (CC-5);
//! - when `active` drops below `max` (a running thread waits again, blocks elsewhere, or
//!   exits), queued packets go to waiters (CC-6).
//!
//! Not kept here: who blocks in the kernel on behalf of the waiters (the *poller*, one of the
//! waiters, see `core.rs`).

use std::collections::VecDeque;
use std::thread::Thread;

use super::core::Packet;

struct Waiter {
    id: u64,
    thread: Thread,
    /// Blocked in the driver (the poller, or a poller that was asked to step down and has not
    /// left the driver yet): only a driver wake-up reaches it, not an unpark.
    in_driver: bool,
}

pub(crate) struct QueueState {
    packets: VecDeque<Packet>,
    waiters: Vec<Waiter>,
    /// Packets handed to waiters that have not picked them up: (waiter, packet, whether the
    /// waiter was blocked in the driver when it was handed the packet).
    handed: Vec<(u64, Packet, bool)>,
    pub(crate) active: usize,
    pub(crate) max: usize,
    pub(crate) closed: bool,
    /// The waiter currently blocked in the driver, reaping completions for everyone.
    pub(crate) poller: Option<u64>,
}

impl QueueState {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            packets: VecDeque::new(),
            waiters: Vec::new(),
            handed: Vec::new(),
            active: 0,
            max,
            closed: false,
            poller: None,
        }
    }

    /// A packet handed directly to waiter `id`, if any.
    pub(crate) fn take_handed(&mut self, id: u64) -> Option<Packet> {
        let at = self.handed.iter().position(|(w, _, _)| *w == id)?;
        Some(self.handed.swap_remove(at).1)
    }

    /// The oldest queued packet, if this thread may run (`active < max`); counts it running.
    pub(crate) fn take_ready(&mut self) -> Option<Packet> {
        if self.active >= self.max {
            return None;
        }
        let p = self.packets.pop_front()?;
        self.active += 1;
        Some(p)
    }

    /// One more queued packet for a thread already counted running (the batch `get`).
    pub(crate) fn take_extra(&mut self) -> Option<Packet> {
        self.packets.pop_front()
    }

    pub(crate) fn push_waiter(&mut self, id: u64, thread: impl FnOnce() -> Thread) {
        if !self.waiters.iter().any(|w| w.id == id) {
            self.waiters.push(Waiter { id, thread: thread(), in_driver: false });
        }
    }

    /// Whether waiter `id` is the most recent one.
    pub(crate) fn is_top(&self, id: u64) -> bool {
        self.waiters.last().is_some_and(|w| w.id == id)
    }

    pub(crate) fn remove_waiter(&mut self, id: u64) {
        if let Some(at) = self.waiters.iter().rposition(|w| w.id == id) {
            self.waiters.remove(at);
        }
        if self.poller == Some(id) {
            self.poller = None;
        }
    }

    /// Marks waiter `id` as blocked in the driver, or back from it.
    pub(crate) fn set_in_driver(&mut self, id: u64, in_driver: bool) {
        if let Some(w) = self.waiters.iter_mut().rev().find(|w| w.id == id) {
            w.in_driver = in_driver;
        }
    }

    /// Queues a packet and releases waiters for queued packets (CC-4). Returns whether a
    /// waiter blocked in the driver, other than thread `current`, was handed a packet: the
    /// caller must then wake the driver.
    pub(crate) fn push(&mut self, packet: Packet, current: u64) -> bool {
        self.packets.push_back(packet);
        self.dispatch(current)
    }

    /// Hands queued packets to the most recent waiters while fewer than `max` threads run.
    /// Returns whether the driver must be woken (see [`QueueState::push`]).
    pub(crate) fn dispatch(&mut self, current: u64) -> bool {
        let mut wake_driver = false;
        while self.active < self.max && !self.packets.is_empty() {
            let Some(w) = self.waiters.pop() else { break };
            let p = self.packets.pop_front().expect("checked non-empty");
            self.handed.push((w.id, p, w.in_driver));
            self.active += 1;
            if Some(w.id) == self.poller {
                self.poller = None;
            }
            if w.in_driver {
                wake_driver |= w.id != current;
            } else {
                w.thread.unpark();
            }
        }
        wake_driver
    }

    /// Whether a thread other than `current` may be blocked in the driver although it has a
    /// packet to pick up or the port is closed: then a driver wake-up is still owed to it.
    /// Checked by whoever reaps a wake-up, since the wake-up may have been meant for another
    /// thread (which would otherwise sleep on).
    pub(crate) fn owes_driver_wake(&self, current: u64) -> bool {
        let handed = self.handed.iter().any(|(w, _, in_driver)| *in_driver && *w != current);
        let closing = self.closed && self.waiters.iter().any(|w| w.in_driver && w.id != current);
        handed || closing
    }

    /// If nobody polls the driver although a waiter could run, wakes the most recent waiter so
    /// that it takes over polling.
    pub(crate) fn ensure_poller(&self) {
        if self.poller.is_none() && self.active < self.max {
            if let Some(top) = self.waiters.last().filter(|w| !w.in_driver) {
                top.thread.unpark();
            }
        }
    }

    /// Closes the queue: wakes every waiter and returns the queued packets, to be dropped
    /// outside the lock (CL-1).
    pub(crate) fn close(&mut self) -> VecDeque<Packet> {
        self.closed = true;
        for w in &self.waiters {
            w.thread.unpark();
        }
        std::mem::take(&mut self.packets)
    }
}
