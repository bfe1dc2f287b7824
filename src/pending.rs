//! The handle to an operation whose result the caller fetches itself (`WSAGetOverlappedResult`,
//! spec §3.2): operations notified through an event rather than a completion port.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::engine::{self, Driving};
use crate::error::{Error, ErrorKind};
use crate::op::{Notify, RawOp};
use crate::overlapped::{Overlapped, OverlappedId};
use crate::wait::block::{self, WaitBlock};

/// Where a completed record waits for its [`PendingIo`] handle. Once the handle has taken the
/// record, the slot goes back into the record, so that reissuing it allocates nothing.
pub(crate) struct ResultSlot {
    state: Mutex<SlotState>,
    /// Set when the record is stored: read without the lock by `HasOverlappedIoCompleted`.
    completed: AtomicBool,
    /// The engine running the flight (its index): what a wait for it drives.
    engine: AtomicUsize,
}

struct SlotState {
    record: Option<RawOp>,
    /// The thread waiting for the record (`WSAGetOverlappedResult` with `fWait`), notified when
    /// it is stored.
    waiter: Option<Arc<WaitBlock>>,
}

impl ResultSlot {
    /// The slot a record kept from its last flight, or a new one, for a flight on engine
    /// `engine`. A kept slot is free: its handle gave it back with the record.
    pub(crate) fn reuse(spare: Option<Arc<ResultSlot>>, engine: usize) -> Arc<ResultSlot> {
        match spare {
            Some(slot) => {
                slot.completed.store(false, Ordering::Release);
                slot.engine.store(engine, Ordering::Relaxed);
                slot
            }
            None => Arc::new(Self {
                state: Mutex::new(SlotState { record: None, waiter: None }),
                completed: AtomicBool::new(false),
                engine: AtomicUsize::new(engine),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the completed record (its status already written, IO-1) and signals its event
    /// (EV-2), both under the slot's lock: a handle takes the record only once its event is
    /// set, so reissuing the record can never be followed by this flight's signal.
    fn complete(&self, op: RawOp) {
        let waiter = {
            let mut st = self.lock();
            let event = op.state().event.clone();
            st.record = Some(op);
            self.completed.store(true, Ordering::Release);
            if let Some(e) = event {
                e.signal();
            }
            st.waiter.take()
        };
        if let Some(w) = waiter {
            w.notify();
        }
    }

    /// Hands what the flight's engine has completed to its notifications (so a thread that
    /// never waits sees its operation complete).
    fn collect(&self) {
        if let Some(e) = engine::by_index(self.engine.load(Ordering::Relaxed)) {
            e.collect();
        }
    }

    /// Waits (not alertably, GR-2) until the record is stored, driving the flight's engine.
    fn wait(&self) {
        let block = block::current();
        let mut driving = Driving::new();
        loop {
            {
                let mut st = self.lock();
                if st.record.is_some() {
                    return;
                }
                block.arm();
                st.waiter = Some(Arc::clone(&block));
            }
            match engine::by_index(self.engine.load(Ordering::Relaxed)) {
                Some(e) => driving.sleep(e, &block, None),
                None => {
                    block.park(None);
                }
            }
        }
    }
}

/// Hands a completed operation to its notification: the caller's handle and event, or its
/// completion routine, queued to the issuing thread (dropped, record and all, if that thread
/// has exited: AP-6). Returns the record if it goes to a port instead.
pub(crate) fn complete(mut op: RawOp) -> Option<RawOp> {
    match std::mem::take(&mut op.state_mut().notify) {
        Notify::Port => Some(op),
        Notify::Slot(slot) => {
            slot.complete(op);
            None
        }
        Notify::Routine { queue, run } => {
            queue.push_routine(run, op);
            None
        }
    }
}

/// An operation in flight whose completion signals an event instead of queuing a packet: what
/// the `LPOVERLAPPED` is to `WSAGetOverlappedResult`. Returned as
/// [`Issued::Event`](crate::Issued::Event) by an operation on a socket not associated with a
/// port (or with [`Overlapped::set_event_only`]).
///
/// Dropping the handle while the operation is pending is safe: the operation goes on, and its
/// record is freed when it completes.
pub struct PendingIo<C: Send + 'static> {
    slot: Option<Arc<ResultSlot>>,
    id: OverlappedId,
    _context: PhantomData<fn() -> C>,
}

impl<C: Send + 'static> PendingIo<C> {
    pub(crate) fn new(slot: Arc<ResultSlot>, id: OverlappedId) -> Self {
        Self { slot: Some(slot), id, _context: PhantomData }
    }

    /// `HasOverlappedIoCompleted`: whether the operation has completed (also true once its
    /// record was taken). What the kernel has completed is collected first, so a thread that
    /// never waits sees its operation complete here.
    pub fn is_completed(&self) -> bool {
        let Some(slot) = self.slot.as_ref() else { return true };
        if !slot.completed.load(Ordering::Acquire) {
            slot.collect();
        }
        slot.completed.load(Ordering::Acquire)
    }

    /// The record's identity, for [`Socket::cancel`](crate::Socket::cancel) (`CancelIoEx`).
    pub fn id(&self) -> OverlappedId {
        self.id
    }

    /// `WSAGetOverlappedResult(socket, lpOverlapped, &bytes, wait, &flags)`: the completed
    /// operation's record, holding its result ([`Overlapped::result`]: bytes or the operation's
    /// error), flags and buffers.
    ///
    /// While the operation is pending: with `wait == false`, [`ErrorKind::IoIncomplete`]
    /// (`WSA_IO_INCOMPLETE`), and the handle stays usable (GR-1); with `wait == true`, blocks
    /// (not alertably) until it completes (GR-2). A completed operation returns at once,
    /// whatever the state of its event (EV-4). The record is handed back once; later calls
    /// fail with [`ErrorKind::InvalidArgument`].
    pub fn overlapped_result(&mut self, wait: bool) -> Result<Overlapped<C>, Error> {
        let slot = self.slot.as_ref().ok_or(Error::new(ErrorKind::InvalidArgument))?;
        if !slot.completed.load(Ordering::Acquire) {
            if wait {
                crate::port::worker::blocking(|| slot.wait());
            } else {
                slot.collect();
            }
        }
        let mut st = slot.lock();
        let Some(mut op) = st.record.take() else {
            return Err(Error::new(if wait { ErrorKind::InvalidArgument } else { ErrorKind::IoIncomplete }));
        };
        drop(st);
        op.state_mut().spare_slot = self.slot.take();
        Ok(Overlapped::from_raw(op))
    }
}

impl<C: Send + 'static> fmt::Debug for PendingIo<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingIo").field("id", &self.id).field("completed", &self.is_completed()).finish()
    }
}
