//! Event objects (`WSACreateEvent` / `CreateEvent`, spec §3): manual- or auto-reset, set by the
//! application or by the completion of an overlapped operation, waited on by
//! [`wait_for_events`](crate::wait_for_events).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::{Error, ErrorKind};
use crate::wait::block::WaitBlock;
use crate::wait::standing::Marks;
use crate::wait::{Wait, wait_for_events};

/// An event object (`WSAEVENT` / a kernel event `HANDLE`).
///
/// A manual-reset event stays signalled until it is reset; an auto-reset event is reset by the
/// one wait it releases. Cloning copies the handle: every clone refers to the same event, and
/// [`Event::close`] closes it for all of them.
///
/// An event given to an overlapped operation ([`Overlapped::set_event`](crate::Overlapped::set_event))
/// is reset when the operation is issued and set when it completes (EV-2).
#[derive(Clone)]
pub struct Event {
    obj: Arc<EventObject>,
}

/// The object behind every handle of one event.
pub(crate) struct EventObject {
    manual: bool,
    /// Written only under `waiters`' lock, so that a lock holder sees a stable value; read
    /// without it for quick scans.
    signaled: AtomicBool,
    closed: AtomicBool,
    /// The engines (a bit per engine index) that ran an operation signalling this event: the
    /// ones a wait on it drives, and a non-blocking look collects from.
    engines: AtomicU8,
    /// The wait blocks of the threads waiting on this event.
    waiters: Mutex<Vec<Registered>>,
}

/// A wait block registered with an event: for one wait (waiting for all), or standing, with
/// the index the event has in that thread's wait-for-any set and the marks to set at it.
pub(crate) struct Registered {
    block: Arc<WaitBlock>,
    marks: Option<(Arc<Marks>, usize)>,
}

/// An event's state, locked: consuming it is atomic with the check.
pub(crate) struct Locked<'a> {
    obj: &'a EventObject,
    waiters: MutexGuard<'a, Vec<Registered>>,
}

impl Event {
    /// `WSACreateEvent`: a manual-reset event, initially not signalled (EV-1).
    pub fn new() -> Self {
        Self::manual(false)
    }

    /// `CreateEvent(NULL, TRUE, initially_set, NULL)`: a manual-reset event.
    pub fn manual(initially_set: bool) -> Self {
        Self::create(true, initially_set)
    }

    /// `CreateEvent(NULL, FALSE, initially_set, NULL)`: an auto-reset event, reset by the wait
    /// it releases.
    pub fn auto(initially_set: bool) -> Self {
        Self::create(false, initially_set)
    }

    fn create(manual: bool, initially_set: bool) -> Self {
        let obj = EventObject {
            manual,
            signaled: AtomicBool::new(initially_set),
            closed: AtomicBool::new(false),
            engines: AtomicU8::new(0),
            waiters: Mutex::new(Vec::new()),
        };
        Self { obj: Arc::new(obj) }
    }

    pub(crate) fn object(&self) -> &EventObject {
        &self.obj
    }

    /// The shared object, as a handle that keeps it alive.
    pub(crate) fn object_arc(&self) -> &Arc<EventObject> {
        &self.obj
    }

    /// Whether this is a manual-reset event.
    pub fn is_manual_reset(&self) -> bool {
        self.obj.manual
    }

    /// Whether the event is signalled right now (a peek: consumes nothing). Operations that
    /// signal it and have completed are collected first, so a thread that never waits sees
    /// their completion here.
    pub fn is_set(&self) -> bool {
        if self.obj.signaled.load(Ordering::Acquire) {
            return true;
        }
        crate::wait::collect(self.obj.engines());
        self.obj.signaled.load(Ordering::Acquire)
    }

    /// `WSASetEvent` / `SetEvent`: signals the event and wakes its waiters. A manual-reset event
    /// releases every waiter; an auto-reset one the first waiter that takes it.
    /// [`ErrorKind::InvalidHandle`] once closed.
    pub fn set(&self) -> Result<(), Error> {
        let mut st = self.obj.lock();
        st.check_open()?;
        st.set();
        Ok(())
    }

    /// `WSAResetEvent` / `ResetEvent`. [`ErrorKind::InvalidHandle`] once closed.
    pub fn reset(&self) -> Result<(), Error> {
        let st = self.obj.lock();
        st.check_open()?;
        self.obj.signaled.store(false, Ordering::Release);
        Ok(())
    }

    /// `WSACloseEvent` / `CloseHandle`: closes the event for every handle. Later calls on any
    /// clone fail with [`ErrorKind::InvalidHandle`]; threads waiting on it wake with that error
    /// (Windows leaves this case undefined, WE-2). An operation still holding the event in its
    /// record completes normally and signals nothing.
    pub fn close(&self) -> Result<(), Error> {
        let st = self.obj.lock();
        st.check_open()?;
        self.obj.closed.store(true, Ordering::Release);
        for w in st.waiters.iter() {
            if let Some((marks, _)) = &w.marks {
                marks.mark_closed();
            }
            w.block.notify();
        }
        Ok(())
    }

    /// `WaitForSingleObjectEx`: waits until the event is signalled ([`Wait::Signaled`]`(0)`,
    /// consuming an auto-reset event), the timeout passes ([`Wait::Timeout`]; `None` waits
    /// forever), or, if `alertable`, completion routines ran ([`Wait::IoCompletion`]).
    pub fn wait(&self, timeout: Option<Duration>, alertable: bool) -> Result<Wait, Error> {
        wait_for_events(std::slice::from_ref(self), false, timeout, alertable)
    }

    /// Signals the event from an operation's completion; a closed event is left alone.
    pub(crate) fn signal(&self) {
        let _ = self.set();
    }

    /// Resets the event as an operation is issued (EV-2); a closed event is left alone.
    pub(crate) fn reset_for_issue(&self) {
        let _ = self.reset();
    }
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("manual_reset", &self.obj.manual)
            .field("set", &self.is_set())
            .field("closed", &self.obj.closed.load(Ordering::Acquire))
            .finish()
    }
}

impl EventObject {
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked { obj: self, waiters: self.waiters.lock().unwrap_or_else(|e| e.into_inner()) }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Notes that an operation signalling this event runs on engine `index` (standing waits on
    /// it learn that they must drive that engine too).
    pub(crate) fn note_engine(&self, index: usize) {
        let bit = 1u8 << index;
        if self.engines.load(Ordering::Relaxed) & bit == 0 {
            let st = self.lock();
            self.engines.fetch_or(bit, Ordering::AcqRel);
            for w in st.waiters.iter() {
                if let Some((marks, _)) = &w.marks {
                    marks.note_engines(bit);
                }
            }
        }
    }

    /// The engines that ran operations signalling this event (a bit per engine index).
    pub(crate) fn engines(&self) -> u8 {
        self.engines.load(Ordering::Acquire)
    }
}

impl Locked<'_> {
    pub(crate) fn check_open(&self) -> Result<(), Error> {
        if self.obj.closed.load(Ordering::Acquire) { Err(Error::new(ErrorKind::InvalidHandle)) } else { Ok(()) }
    }

    pub(crate) fn is_signaled(&self) -> bool {
        self.obj.signaled.load(Ordering::Acquire)
    }

    /// Takes the signal for a released waiter: an auto-reset event is reset (WE-3).
    pub(crate) fn consume(&mut self) {
        if !self.obj.manual {
            self.obj.signaled.store(false, Ordering::Release);
        }
    }

    fn set(&mut self) {
        self.obj.signaled.store(true, Ordering::Release);
        for w in self.waiters.iter() {
            if let Some((marks, i)) = &w.marks {
                marks.mark(*i);
            }
            w.block.notify();
        }
    }

    /// Registers `block` for one wait.
    pub(crate) fn register(&mut self, block: &Arc<WaitBlock>) {
        self.waiters.push(Registered { block: Arc::clone(block), marks: None });
    }

    /// Undoes [`Locked::register`].
    pub(crate) fn unregister(&mut self, block: &Arc<WaitBlock>) {
        let at = self.waiters.iter().position(|w| w.marks.is_none() && Arc::ptr_eq(&w.block, block));
        if let Some(at) = at {
            self.waiters.swap_remove(at);
        }
    }

    /// Registers a standing wait-for-any set: setting the event marks index `i` of `marks`
    /// (and closing it marks the set closed), then notifies `block`. Marks what is already
    /// true.
    pub(crate) fn register_standing(&mut self, block: &Arc<WaitBlock>, marks: &Arc<Marks>, i: usize) {
        if self.is_signaled() {
            marks.mark(i);
        }
        if self.obj.is_closed() {
            marks.mark_closed();
        }
        marks.note_engines(self.obj.engines());
        self.waiters.push(Registered { block: Arc::clone(block), marks: Some((Arc::clone(marks), i)) });
    }

    /// Undoes every [`Locked::register_standing`] with `marks`.
    pub(crate) fn unregister_standing(&mut self, marks: &Arc<Marks>) {
        self.waiters.retain(|w| !w.marks.as_ref().is_some_and(|(m, _)| Arc::ptr_eq(m, marks)));
    }
}
