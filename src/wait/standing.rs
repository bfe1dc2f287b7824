//! The standing registration of a thread's wait for any of many events: it stays registered
//! with the events between calls on the same set, and the events mark themselves in it when
//! they are set, so that a wait costs what it returns, not what it waits on.
//!
//! - A call compares its events with the set registered last by this thread (the `Event`
//!   handles only, a contiguous array: the event objects are not touched). The same set is
//!   reused; another set replaces it (unregistering the old events, registering the new ones:
//!   one lock each, only when the set changes).
//! - An event being set marks its index in the set ([`Marks`], under the event's lock) and
//!   notifies the thread; closing it marks the set closed (WE-2 is then reported by every wait
//!   on the set, without checking each event per call).
//! - A wait takes the lowest marked index, checks the event under its lock (consuming an
//!   auto-reset one, WE-3) and returns it; a stale mark (an event reset meanwhile, or taken by
//!   another waiter) is cleared and the next is tried. The mark is cleared under the event's
//!   lock before the check, so a set racing with it marks again.

use std::borrow::Borrow;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::block::WaitBlock;
use crate::error::{Error, ErrorKind};
use crate::event::{Event, EventObject};
use crate::lock::Lock;

/// The signalled indices of a standing set, and whether one of its events was closed.
pub(crate) struct Marks {
    state: Lock<MarkState>,
    /// The engines (a bit per index) whose operations signal events of the set.
    engines: AtomicU8,
}

struct MarkState {
    words: Vec<u64>,
    closed: bool,
}

impl Marks {
    fn new(n: usize) -> Arc<Self> {
        let state = Lock::new(MarkState { words: vec![0; n.div_ceil(64)], closed: false });
        Arc::new(Self { state, engines: AtomicU8::new(0) })
    }

    pub(crate) fn mark(&self, i: usize) {
        if let Some(w) = self.state.lock().words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    fn clear(&self, i: usize) {
        if let Some(w) = self.state.lock().words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    pub(crate) fn mark_closed(&self) {
        self.state.lock().closed = true;
    }

    pub(crate) fn note_engines(&self, engines: u8) {
        if self.engines.load(Ordering::Relaxed) & engines != engines {
            self.engines.fetch_or(engines, Ordering::AcqRel);
        }
    }

    pub(crate) fn engines(&self) -> u8 {
        self.engines.load(Ordering::Acquire)
    }

    /// The lowest marked index at or above `from`, or an error if an event of the set was
    /// closed.
    fn first_from(&self, from: usize) -> Result<Option<usize>, Error> {
        let st = self.state.lock();
        if st.closed {
            return Err(Error::new(ErrorKind::InvalidHandle));
        }
        let mut w = from / 64;
        let mut mask = !0u64 << (from % 64);
        while let Some(&word) = st.words.get(w) {
            let bits = word & mask;
            if bits != 0 {
                return Ok(Some(w * 64 + bits.trailing_zeros() as usize));
            }
            w += 1;
            mask = !0;
        }
        Ok(None)
    }
}

/// This thread's standing set.
struct Registration {
    events: Vec<Arc<EventObject>>,
    marks: Arc<Marks>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        for obj in &self.events {
            obj.lock().unregister_standing(&self.marks);
        }
    }
}

thread_local! {
    static REGISTRATION: RefCell<Option<Registration>> = const { RefCell::new(None) };
}

/// The marks of this thread's standing set for `events`, registering it if the set changed.
pub(crate) fn marks_for<E: Borrow<Event>>(events: &[E], block: &Arc<WaitBlock>) -> Arc<Marks> {
    let reused = REGISTRATION
        .try_with(|r| {
            let r = r.borrow();
            let reg = r.as_ref()?;
            let same = reg.events.len() == events.len()
                && reg.events.iter().zip(events).all(|(a, e)| Arc::ptr_eq(a, e.borrow().object_arc()));
            same.then(|| Arc::clone(&reg.marks))
        })
        .ok()
        .flatten();
    if let Some(marks) = reused {
        return marks;
    }
    let marks = Marks::new(events.len());
    let objects: Vec<Arc<EventObject>> = events.iter().map(|e| Arc::clone(e.borrow().object_arc())).collect();
    for (i, obj) in objects.iter().enumerate() {
        obj.lock().register_standing(block, &marks, i);
    }
    let old = REGISTRATION
        .try_with(|r| r.borrow_mut().replace(Registration { events: objects, marks: Arc::clone(&marks) }))
        .ok()
        .flatten();
    // Unregistered outside the borrow (its drop locks the old events).
    drop(old);
    marks
}

/// Consumes the lowest signalled event of the set (WE-3) and returns its index; `None` if no
/// event is marked signalled. Every event marked below the returned one was stale.
pub(crate) fn take_lowest<E: Borrow<Event>>(events: &[E], marks: &Marks) -> Result<Option<usize>, Error> {
    take_from(events, marks, 0)
}

/// Consumes up to `max` signalled events of the set, lowest index first, appending their
/// indices to `out`; returns how many.
pub(crate) fn take_many<E: Borrow<Event>>(
    events: &[E],
    marks: &Marks,
    out: &mut Vec<usize>,
    max: usize,
) -> Result<usize, Error> {
    let mut from = 0;
    let mut n = 0;
    while n < max {
        let Some(i) = take_from(events, marks, from)? else { break };
        out.push(i);
        n += 1;
        from = i + 1;
    }
    Ok(n)
}

/// [`take_lowest`] among the indices from `from` on.
fn take_from<E: Borrow<Event>>(events: &[E], marks: &Marks, mut from: usize) -> Result<Option<usize>, Error> {
    while let Some(i) = marks.first_from(from)? {
        let obj = events[i].borrow().object();
        let mut l = obj.lock();
        l.check_open()?;
        marks.clear(i);
        if l.is_signaled() {
            l.consume();
            // A manual-reset event stays signalled, and stays marked.
            if l.is_signaled() {
                marks.mark(i);
            }
            return Ok(Some(i));
        }
        from = i + 1;
    }
    Ok(None)
}
