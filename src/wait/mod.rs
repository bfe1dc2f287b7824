//! Waiting for several objects at once (`WSAWaitForMultipleEvents` / `WaitForMultipleObjectsEx`,
//! spec §3.1), and the alertable part every library wait shares (spec §4).
//!
//! # Cost
//! There is no limit of 64 events (`WSA_MAXIMUM_WAIT_EVENTS`); any number works. Waiting for
//! any event goes through the thread's standing registration (`standing.rs`): the first wait on
//! a set registers with each event (one lock each), later waits on the same set compare the
//! handles (a contiguous array, no event object touched) and then cost what they return: the
//! events that were set mark themselves, and the wait checks only those. Changing the set
//! registers it anew. Waiting for all events locks each one, in address order, for every check.
//!
//! While a wait sleeps, its thread drives the engine whose completions can end it
//! (`engine/`): the thread that waits reaps.

pub(crate) mod block;
pub(crate) mod standing;

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::block::WaitBlock;
use crate::apc;
use crate::engine::{self, Driving};
use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventObject, Locked};

/// `WSA_MAXIMUM_WAIT_EVENTS` / `MAXIMUM_WAIT_OBJECTS`: the most events one Windows wait takes.
/// This library has no such limit ([`wait_for_events`] takes any number); the constant is kept
/// for code that wants to stay within the classic bound.
pub const MAXIMUM_WAIT_EVENTS: usize = crate::win32::WSA_MAXIMUM_WAIT_EVENTS;

/// How a wait ended (`WSAWaitForMultipleEvents` return values). A failed wait
/// (`WSA_WAIT_FAILED`) is an `Err` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wait {
    /// `WSA_WAIT_EVENT_0 + i`: the event at index `i` is signalled: the lowest such index when
    /// waiting for any (WE-3); `0` when waiting for all (WE-4).
    Signaled(usize),
    /// `WSA_WAIT_TIMEOUT` (`WAIT_TIMEOUT`, 258): the timeout passed first (WE-5).
    Timeout,
    /// `WSA_WAIT_IO_COMPLETION` (`WAIT_IO_COMPLETION`, 0xC0): the wait was alertable and queued
    /// completion routines or APCs ran; the events may still be unsignalled (WE-6, AP-2).
    IoCompletion,
}

/// `WSAWaitForMultipleEvents(n, events, wait_all, timeout, alertable)` /
/// `WaitForMultipleObjectsEx`.
///
/// - `wait_all == false`: returns as soon as one event is signalled, as
///   [`Wait::Signaled`]`(i)` with the lowest signalled index; only that event is consumed (an
///   auto-reset one is reset) (WE-3).
/// - `wait_all == true`: returns [`Wait::Signaled`]`(0)` once all are signalled at the same
///   time; their auto-reset events are consumed together, atomically; until then none is
///   touched (WE-4).
/// - `timeout`: `None` is `WSA_INFINITE`; `Some(Duration::ZERO)` polls (WE-5).
/// - `alertable`: queued completion routines and APCs of this thread run, and the wait returns
///   [`Wait::IoCompletion`] (WE-6). An event already signalled on entry wins over queued
///   routines, which then wait for the next alertable wait (AP-10).
///
/// Errors (`WSA_WAIT_FAILED`): no events, or the same event twice with `wait_all`
/// ([`ErrorKind::InvalidArgument`], `WSA_INVALID_PARAMETER`); a closed event, also one closed
/// during the wait ([`ErrorKind::InvalidHandle`], `WSA_INVALID_HANDLE`). There is no 64-event
/// limit (see the module docs for the cost of large waits).
pub fn wait_for_events<E: Borrow<Event>>(
    events: &[E],
    wait_all: bool,
    timeout: Option<Duration>,
    alertable: bool,
) -> Result<Wait, Error> {
    if events.is_empty() {
        return Err(Error::new(ErrorKind::InvalidArgument));
    }
    let objects = Objects(events);
    let waiter = Waiter { deadline: timeout.and_then(|t| Instant::now().checked_add(t)), alertable };
    crate::port::worker::blocking(|| {
        if wait_all {
            let order = address_order(&objects)?;
            waiter.wait(&objects, |block| take_all_signaled(&objects, &order, block).map(|all| all.then_some(0)))
        } else {
            waiter.wait_any(events, |marks| standing::take_lowest(events, marks))
        }
    })
}

/// Waits like [`wait_for_events`]`(events, false, timeout, alertable)`, and returns every
/// event signalled at that moment, up to `max`: their indices are appended to `out`, lowest
/// first, each consumed as that wait would consume it (an auto-reset event is reset). Returns
/// [`Wait::Signaled`] with the lowest index, [`Wait::Timeout`] or [`Wait::IoCompletion`] (then
/// `out` is unchanged).
///
/// Windows has no such call: a server on `WSAWaitForMultipleEvents` loops over the events
/// after each return to serve all that are signalled, or the lowest indices starve the others
/// (WE-3). This does that in one call, at a cost that follows what it returns (the module
/// docs), which is what a server with thousands of events needs.
///
/// Errors: as [`wait_for_events`]; `max == 0` is [`ErrorKind::InvalidArgument`].
pub fn wait_for_any_events<E: Borrow<Event>>(
    events: &[E],
    out: &mut Vec<usize>,
    max: usize,
    timeout: Option<Duration>,
    alertable: bool,
) -> Result<Wait, Error> {
    if events.is_empty() || max == 0 {
        return Err(Error::new(ErrorKind::InvalidArgument));
    }
    let waiter = Waiter { deadline: timeout.and_then(|t| Instant::now().checked_add(t)), alertable };
    crate::port::worker::blocking(|| {
        waiter.wait_any(events, |marks| {
            let start = out.len();
            standing::take_many(events, marks, out, max)?;
            Ok(out.get(start).copied())
        })
    })
}

/// The events of one wait, read in place (a wait allocates nothing for them).
struct Objects<'a, E>(&'a [E]);

impl<'a, E: Borrow<Event>> Objects<'a, E> {
    fn get(&self, i: usize) -> &'a EventObject {
        self.0[i].borrow().object()
    }

    fn iter(&self) -> impl Iterator<Item = &'a EventObject> + use<'a, E> {
        let events = self.0;
        events.iter().map(|e| e.borrow().object())
    }
}

/// One call's wait parameters.
struct Waiter {
    deadline: Option<Instant>,
    alertable: bool,
}

impl Waiter {
    /// The wait loop shared by waiting for any and for all. `take(None)` checks and consumes
    /// what the wait is for (the index to return); `take(Some(block))` does the same and, if
    /// nothing is there yet, registers `block` with every event, so that a set racing with the
    /// first check still wakes the wait.
    fn wait<E: Borrow<Event>>(
        &self,
        objects: &Objects<'_, E>,
        take: impl Fn(Option<&Arc<WaitBlock>>) -> Result<Option<usize>, Error>,
    ) -> Result<Wait, Error> {
        let block = block::current();
        let mut driving = Driving::new();
        loop {
            if let Some(i) = take(None)? {
                return Ok(Wait::Signaled(i));
            }
            if let Some(done) = self.ends_without_waiting(&mut driving) {
                return Ok(done);
            }
            block.arm();
            let alert = self.alertable.then(|| apc::Alertable::enter(&block));
            let taken = take(Some(&block));
            if matches!(taken, Ok(None)) {
                self.sleep(&block, alert.as_ref(), &mut driving, engines_of(objects));
            }
            drop(alert);
            unregister(objects, &block);
            if let Some(i) = taken? {
                return Ok(Wait::Signaled(i));
            }
        }
    }

    /// Waiting for any: through this thread's standing registration (`standing.rs`), at a
    /// cost that follows what the wait returns.
    fn wait_any<E: Borrow<Event>>(
        &self,
        events: &[E],
        mut take: impl FnMut(&standing::Marks) -> Result<Option<usize>, Error>,
    ) -> Result<Wait, Error> {
        let block = block::current();
        let marks = standing::marks_for(events, &block);
        let mut driving = Driving::new();
        loop {
            if let Some(i) = take(&marks)? {
                return Ok(Wait::Signaled(i));
            }
            if let Some(done) = self.ends_without_waiting(&mut driving) {
                return Ok(done);
            }
            block.arm();
            let alert = self.alertable.then(|| apc::Alertable::enter(&block));
            // A set after the look above marked the set and notified the block armed here.
            if let Some(i) = take(&marks)? {
                return Ok(Wait::Signaled(i));
            }
            self.sleep(&block, alert.as_ref(), &mut driving, marks.engines());
        }
    }

    /// Sleeps until a registered event or an APC notifies `block`, or the deadline, driving the
    /// engines whose completions can end the wait; not at all if an APC is already queued for
    /// an alertable wait.
    fn sleep(&self, block: &Arc<WaitBlock>, alert: Option<&apc::Alertable>, driving: &mut Driving, engines: u8) {
        if !alert.is_some_and(apc::Alertable::has_queued) {
            let engines = if self.alertable { engines | apc::routine_engines() } else { engines };
            sleep(driving, block, engines, self.deadline);
        }
    }

    /// Before blocking: queued routines end an alertable wait (they run now, once this wait
    /// leads no engine); a passed deadline (at once for a zero timeout) ends any wait.
    fn ends_without_waiting(&self, driving: &mut Driving) -> Option<Wait> {
        if self.alertable && apc::has_queued() {
            driving.release();
            apc::run_queued();
            return Some(Wait::IoCompletion);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Some(Wait::Timeout);
        }
        None
    }
}

/// Sleeps on `block` until it is notified or `deadline` passes, driving one of `engines` (a bit
/// per engine index) while it sleeps: the thread that waits reaps (`engine/mod.rs`). With no
/// engine to drive it just parks.
pub(crate) fn sleep(driving: &mut Driving, block: &Arc<WaitBlock>, engines: u8, deadline: Option<Instant>) {
    match engines_in(engines).next() {
        Some(engine) => driving.sleep(engine, block, deadline),
        None => {
            block.park(deadline);
        }
    }
}

/// Hands what the engines in `engines` have completed to its notifications, without blocking.
pub(crate) fn collect(engines: u8) {
    for engine in engines_in(engines) {
        engine.collect();
    }
}

fn engines_in(engines: u8) -> impl Iterator<Item = &'static engine::Engine> {
    (0..8).filter(move |i| engines & (1 << i) != 0).filter_map(engine::by_index)
}

/// The engines whose operations signal the events of a wait.
fn engines_of<E: Borrow<Event>>(objects: &Objects<'_, E>) -> u8 {
    objects.iter().fold(0, |m, e| m | e.engines())
}

/// Locks every event (in address order), and if all are signalled consumes them together.
/// Otherwise registers `block` with each, if given. Closed events fail the wait.
fn take_all_signaled<E: Borrow<Event>>(
    objects: &Objects<'_, E>,
    order: &[usize],
    block: Option<&Arc<WaitBlock>>,
) -> Result<bool, Error> {
    let mut locked: Vec<Locked<'_>> = order.iter().map(|&i| objects.get(i).lock()).collect();
    for l in &locked {
        l.check_open()?;
    }
    if locked.iter().all(Locked::is_signaled) {
        locked.iter_mut().for_each(Locked::consume);
        return Ok(true);
    }
    if let Some(b) = block {
        locked.iter_mut().for_each(|l| l.register(b));
    }
    Ok(false)
}

fn unregister<E: Borrow<Event>>(objects: &Objects<'_, E>, block: &Arc<WaitBlock>) {
    for obj in objects.iter() {
        obj.lock().unregister(block);
    }
}

/// Indices of `objects` sorted by address (the lock order for waiting for all); the same event
/// twice is invalid (WE-2).
fn address_order<E: Borrow<Event>>(objects: &Objects<'_, E>) -> Result<Vec<usize>, Error> {
    let mut order: Vec<usize> = (0..objects.0.len()).collect();
    order.sort_by_key(|&i| std::ptr::from_ref(objects.get(i)) as usize);
    let dup = order.windows(2).any(|w| std::ptr::eq(objects.get(w[0]), objects.get(w[1])));
    if dup {
        return Err(Error::new(ErrorKind::InvalidArgument));
    }
    if objects.iter().any(EventObject::is_closed) {
        return Err(Error::new(ErrorKind::InvalidHandle));
    }
    Ok(order)
}
