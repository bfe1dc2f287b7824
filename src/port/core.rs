//! The completion port object: its queue, its backend, and the poller protocol that lets
//! waiting workers reap the kernel's completions themselves.
//!
//! Poller protocol: a thread that finds nothing to take in `get` joins the waiter stack; if no
//! waiter is polling, it becomes the poller and blocks in the driver, otherwise it parks. The
//! poller turns each completion into a packet and delivers it through the queue, so packets
//! still go LIFO to the most recent waiter (itself, when it arrived last, which is the common
//! case: no thread switch at all). Whenever the poller leaves while another waiter could run,
//! that waiter is woken to take over polling. With `active == max` nobody needs to poll:
//! completions wait in the kernel's queue, as packets wait in the port on Windows (CC-7).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::state::QueueState;
use super::worker;
use crate::driver::{Backend, Driver};
use crate::error::{Error, ErrorKind};
use crate::op::RawOp;
use crate::op::machine::{self, Progress};

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
    state: Mutex<QueueState>,
    driver: Driver,
}

impl PortCore {
    pub(crate) fn new(concurrency: usize, backend: Option<Backend>) -> Result<Self, Error> {
        let max =
            if concurrency == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { concurrency };
        let driver = Driver::new(backend)?;
        Ok(Self { state: Mutex::new(QueueState::new(max)), driver })
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Starts an operation step. A running worker's submissions wait for its next `get`, so
    /// they reach the kernel in one system call with its wait; anyone else's go at once.
    pub(crate) fn submit(&self, op: RawOp) -> Result<(), RawOp> {
        self.driver.submit(op)?;
        if !worker::may_defer_submissions(self) {
            self.driver.flush();
        }
        Ok(())
    }

    pub(crate) fn cancel(&self, id: usize) {
        self.driver.cancel(id);
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
        let poller = {
            let mut st = self.lock();
            if st.closed {
                return Err(packet);
            }
            st.push(packet)
        };
        if poller.is_some_and(|p| p != worker::id()) {
            self.driver.wake();
        }
        Ok(())
    }

    /// Moves completions that the kernel already posted into the packet queue, so that packets
    /// are queued in completion order even when nobody waits in the driver (PQ-2, OR-1).
    pub(crate) fn reap_ready(&self) {
        worker::reaping(|| self.driver.reap_ready(&mut |op, res| self.on_completion(op, res)));
    }

    /// `GetQueuedCompletionStatus`: waits until a packet may be taken, the deadline passes
    /// (`Timeout`) or the port closes (`PortClosed`).
    pub(crate) fn get(self: &Arc<Self>, deadline: Option<Instant>) -> Result<Packet, Error> {
        self.reap_ready();
        let previous = worker::take_running();
        let same = previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, self));
        if let Some(other) = previous.as_ref().filter(|_| !same) {
            other.leave_active();
        }
        let result = self.wait_for_packet(deadline, same);
        match result {
            Ok(_) => worker::set_running(if same { previous.expect("same port") } else { Arc::clone(self) }),
            // Leaving without a packet: what this thread deferred must reach the kernel now.
            Err(_) => self.driver.flush(),
        }
        result
    }

    fn wait_for_packet(&self, deadline: Option<Instant>, was_running: bool) -> Result<Packet, Error> {
        let me = worker::id();
        let thread = worker::thread();
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
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let expired = remaining.is_some_and(|r| r.is_zero());
            if expired && (polled || st.poller.is_some()) {
                st.remove_waiter(me);
                st.ensure_poller();
                return Err(Error::new(ErrorKind::Timeout));
            }
            st.push_waiter(me, &thread);
            if st.poller.is_none() {
                st.poller = Some(me);
                drop(st);
                worker::reaping(|| self.driver.wait(remaining, &mut |op, res| self.on_completion(op, res)));
                polled = true;
                st = self.lock();
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

    /// Turns one result from the driver into progress: the next step, or a packet.
    fn on_completion(&self, mut op: RawOp, res: i32) {
        let socket = op.state().socket.clone().expect("issued operation has a socket");
        let packet = match machine::on_result(op.state_mut(), res) {
            Progress::Again => match socket.resubmit(self, op) {
                Ok(()) => return,
                Err(op) => socket.finish(self, op, Err(Error::new(ErrorKind::OperationAborted))),
            },
            Progress::Done(status) => socket.finish(self, op, status),
        };
        self.deliver_or_drop(packet);
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
        let mut st = self.lock();
        st.active = st.active.saturating_sub(1);
        st.dispatch_and_wake(self);
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
            self.driver.wait(Some(Duration::from_millis(50)), &mut |op, res| self.on_completion(op, res));
            if self.driver.in_flight() > 0 {
                self.driver.cancel_all();
            }
        }
        true
    }
}

impl QueueState {
    /// Dispatches queued packets after `active` dropped, and makes sure someone polls.
    fn dispatch_and_wake(&mut self, port: &PortCore) {
        if let Some(p) = self.dispatch() {
            if p != worker::id() {
                port.driver.wake();
            }
        }
        self.ensure_poller();
    }
}

impl Drop for PortCore {
    fn drop(&mut self) {
        self.close();
    }
}
