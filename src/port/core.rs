//! The completion port object: its queue, its backend, and the poller protocol that lets
//! waiting workers reap the kernel's completions themselves.
//!
//! Poller protocol: a thread that finds nothing to take in `get` joins the waiter stack; if no
//! waiter is polling, or if it is now the most recent waiter, it becomes the poller and blocks
//! in the driver (an older poller is woken and parks instead); otherwise it parks. The poller
//! turns each completion into a packet and delivers it through the queue, so packets go LIFO
//! to the most recent waiter, which is normally the poller itself: with one thread running at
//! a time, no thread switch at all. Whenever the poller leaves while another waiter could run,
//! that waiter is woken to take over polling. With `active == max` nobody needs to poll:
//! completions wait in the kernel's queue, as packets wait in the port on Windows (CC-7).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::state::QueueState;
use super::worker;
use crate::apc;
use crate::driver::Runner;
use crate::driver::{Backend, Driver};
use crate::error::{Error, ErrorKind};
use crate::lock::{Lock, LockGuard};
use crate::op::RawOp;

/// An I/O completion packet: what `GetQueuedCompletionStatus` returns.
pub(crate) struct Packet {
    pub(crate) key: usize,
    pub(crate) bytes: usize,
    pub(crate) status: Result<(), Error>,
    pub(crate) op: Option<RawOp>,
}

/// How long a closing port waits for the kernel to give back cancelled operations before it
/// leaks them (never frees them early).
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

pub(crate) struct PortCore {
    state: Lock<QueueState>,
    driver: Driver,
}

impl PortCore {
    pub(crate) fn new(concurrency: usize, backend: Option<Backend>) -> Result<Self, Error> {
        let max =
            if concurrency == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { concurrency };
        let driver = Driver::new(backend)?;
        crate::lock::prepare();
        Ok(Self { state: Lock::new(QueueState::new(max)), driver })
    }

    fn lock(&self) -> LockGuard<'_, QueueState> {
        self.state.lock()
    }

    pub(crate) fn backend(&self) -> Backend {
        self.driver.backend()
    }

    pub(crate) fn concurrency(&self) -> usize {
        self.lock().max
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    pub(crate) fn register_file(&self, fd: std::os::fd::RawFd) -> Option<u32> {
        self.driver.register_file(fd)
    }

    pub(crate) fn unregister_file(&self, slot: u32) {
        self.driver.unregister_file(slot);
    }

    /// Forgets what the backend keeps about a descriptor that is being closed.
    pub(crate) fn forget_fd(&self, fd: std::os::fd::RawFd) {
        self.driver.forget_fd(fd);
    }

    /// Queues a packet (delivered LIFO to a waiter when one may run). If the port is closed,
    /// the packet is dropped, here, outside every lock.
    pub(crate) fn deliver_or_drop(&self, packet: Packet) {
        if let Err(p) = self.post(packet) {
            drop(p);
        }
    }

    /// `PostQueuedCompletionStatus` and the delivery of I/O packets (PQ-2: same queue, same
    /// rules). Gives the packet back if the port is closed.
    pub(crate) fn post(&self, packet: Packet) -> Result<(), Packet> {
        let wake_driver = {
            let mut st = self.lock();
            if st.closed {
                return Err(packet);
            }
            st.push(packet, worker::id())
        };
        if wake_driver {
            self.driver.wake();
        }
        Ok(())
    }

    /// Reaps every completion that already happened, so that a packet posted now is queued
    /// after them (PQ-2, OR-1).
    pub(crate) fn reap_before_post(&self) {
        self.reap(|on_complete| self.driver.reap_now(on_complete));
        // This thread does not wait on the port: what reaping deferred must go now.
        self.driver.flush();
    }

    /// Moves completions that the kernel already posted into the packet queue, so that packets
    /// are queued in completion order even when nobody waits in the driver (PQ-2, OR-1).
    pub(crate) fn reap_ready(&self) {
        if self.driver.has_completions() {
            self.reap(|on_complete| self.driver.reap_ready(on_complete));
        }
    }

    /// Runs a driver call that reaps completions, turning them into packets that are queued
    /// together, under one lock, when the call returns. Submissions made meanwhile (next steps,
    /// the next operation of a lane) wait for the driver's next wait.
    fn reap(&self, driver_call: impl FnOnce(&mut dyn FnMut(RawOp, i32)) -> bool) {
        worker::reaping(self, || {
            let mut batch = worker::take_batch();
            let woke = driver_call(&mut |op, res| {
                if let Some(packet) = crate::socket::inner::on_step_result(self, op, res) {
                    batch.push(packet);
                }
            });
            if !batch.is_empty() {
                self.deliver_batch(&mut batch);
            }
            worker::return_batch(batch);
            // The wake-up this thread consumed may have been meant for another thread still
            // blocked in the driver: pass it on.
            if woke && self.lock().owes_driver_wake(worker::id()) {
                self.driver.wake();
            }
        });
    }

    /// Queues reaped packets in order, under one lock; drops them (outside the lock) if the
    /// port is closed.
    fn deliver_batch(&self, batch: &mut Vec<Packet>) {
        let me = worker::id();
        let mut wake_driver = false;
        {
            let mut st = self.lock();
            if !st.closed {
                for packet in batch.drain(..) {
                    wake_driver |= st.push(packet, me);
                }
            }
        }
        batch.clear();
        if wake_driver {
            self.driver.wake();
        }
    }

    /// `GetQueuedCompletionStatus`: waits until a packet may be taken, the deadline passes
    /// (`Timeout`) or the port closes (`PortClosed`).
    pub(crate) fn get(self: &Arc<Self>, deadline: Option<Instant>, alertable: bool) -> Result<Packet, Error> {
        self.reap_ready();
        let previous = worker::take_running();
        let same = previous.as_ref().is_some_and(|p| std::ptr::eq(p.as_ptr(), Arc::as_ptr(self)));
        if let Some(other) = previous.as_ref().filter(|_| !same).and_then(Weak::upgrade) {
            other.leave_active();
        }
        let alert = alertable.then(|| apc::Alertable::enter_port(self));
        let result = self.wait_for_packet(deadline, same, alert.as_ref());
        drop(alert);
        // Matched by reference: the packet is moved once, into the caller's hands.
        match &result {
            Ok(_) => worker::set_running(match previous {
                Some(p) if same => p,
                _ => Arc::downgrade(self),
            }),
            Err(e) => {
                // GX-4: no packet, APCs queued: they run now, outside every lock.
                if e.kind() == ErrorKind::IoCompletion {
                    apc::run_queued();
                }
                // Leaving without a packet: what this thread deferred must reach the kernel now.
                self.driver.flush();
            }
        }
        result
    }

    fn wait_for_packet(
        &self,
        deadline: Option<Instant>,
        was_running: bool,
        alert: Option<&apc::Alertable>,
    ) -> Result<Packet, Error> {
        let me = worker::id();
        let mut st = self.lock();
        if was_running {
            // CC-3/CC-5: leave `active` first, then take a queued packet ourselves if one is
            // there, even if other threads have waited longer.
            st.active = st.active.saturating_sub(1);
        }
        let mut polled = false;
        loop {
            if let Some(p) = st.take_handed(me) {
                st.remove_waiter(me);
                st.ensure_poller();
                return Ok(p);
            }
            if st.closed {
                st.remove_waiter(me);
                return Err(Error::new(ErrorKind::PortClosed));
            }
            if let Some(p) = st.take_ready() {
                st.remove_waiter(me);
                st.ensure_poller();
                return Ok(p);
            }
            // GX-4: packets win; with none, queued APCs end an alertable wait.
            if alert.is_some_and(apc::Alertable::has_queued) {
                st.remove_waiter(me);
                st.ensure_poller();
                return Err(Error::new(ErrorKind::IoCompletion));
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let expired = remaining.is_some_and(|r| r.is_zero());
            if expired && (polled || st.poller.is_some()) {
                st.remove_waiter(me);
                st.ensure_poller();
                return Err(Error::new(ErrorKind::Timeout));
            }
            st.push_waiter(me, worker::thread);
            // The most recent waiter polls: it is the one packets go to first (LIFO), so the
            // thread that reaps a completion is the one that handles it. An older poller is
            // woken to step down.
            let take_over = st.poller.is_some_and(|p| p != me) && st.is_top(me);
            if st.poller.is_none() || take_over {
                st.poller = Some(me);
                st.set_in_driver(me, true);
                drop(st);
                if take_over {
                    self.driver.wake();
                }
                self.reap(|on_complete| self.driver.wait(remaining, on_complete));
                polled = true;
                st = self.lock();
                st.set_in_driver(me, false);
                if st.poller == Some(me) {
                    st.poller = None;
                }
            } else {
                drop(st);
                self.driver.flush();
                match remaining {
                    Some(r) => std::thread::park_timeout(r),
                    None => std::thread::park(),
                }
                st = self.lock();
            }
        }
    }

    /// Makes a thread blocked in the backend return (an APC arrived for an alertable waiter).
    pub(crate) fn wake_driver(&self) {
        self.driver.wake();
    }

    /// More queued packets for a thread that already holds one (`GetQueuedCompletionStatusEx`).
    pub(crate) fn take_extra(&self, max: usize, mut sink: impl FnMut(Packet)) {
        let mut st = self.lock();
        for _ in 0..max {
            match st.take_extra() {
                Some(p) => sink(p),
                None => break,
            }
        }
    }

    /// This thread stops counting as running (it waits elsewhere, moved to another port, or
    /// exited): queued packets may now go to waiters (CC-3, CC-6).
    pub(crate) fn leave_active(&self) {
        let wake_driver = {
            let mut st = self.lock();
            st.active = st.active.saturating_sub(1);
            let wake = st.dispatch(worker::id());
            st.ensure_poller();
            wake
        };
        // What this thread deferred while it ran must not wait for a `get` that may not come.
        self.driver.flush();
        if wake_driver {
            self.driver.wake();
        }
    }

    /// The thread is back from a blocking section and counts as running again; `active` may
    /// exceed `max` for a while (CC-6).
    pub(crate) fn reenter_active(&self) {
        self.lock().active += 1;
    }

    /// `CloseHandle(port)`: wakes every waiter with `PortClosed`, drops queued packets, cancels
    /// every operation in flight and reaps them, so their buffers are freed only after the
    /// kernel is done (CL-1). Returns false if already closed.
    pub(crate) fn close(&self) -> bool {
        let dropped: VecDeque<Packet> = {
            let mut st = self.lock();
            if st.closed {
                return false;
            }
            st.close()
        };
        self.driver.close();
        drop(dropped);
        let start = Instant::now();
        while self.driver.in_flight() > 0 && start.elapsed() < DRAIN_LIMIT {
            self.reap(|on_complete| self.driver.wait(Some(Duration::from_millis(50)), on_complete));
            if self.driver.in_flight() > 0 {
                self.driver.cancel_all();
            }
        }
        true
    }
}

impl Runner for PortCore {
    /// Starts an operation step. A running worker's submissions wait for its next `get`, so
    /// they reach the kernel in one system call with its wait; anyone else's go at once.
    fn submit(&self, op: RawOp) -> Result<(), RawOp> {
        self.driver.submit(op)?;
        if !worker::may_defer_submissions(self) {
            self.driver.flush();
        }
        Ok(())
    }

    fn cancel(&self, id: usize, fd: std::os::fd::RawFd) {
        self.driver.cancel(id, fd);
    }
}

impl Drop for PortCore {
    fn drop(&mut self) {
        self.close();
    }
}
