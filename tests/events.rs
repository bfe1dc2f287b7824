//! Event objects, `wait_for_events` and alertable waits (spec §3: EV-1, WE-1..WE-6; §4: AP-1..AP-3,
//! AP-6, AP-10): manual and auto reset, wait any / wait all, timeouts, more than 64 events, and user
//! APCs queued with `ThreadHandle::queue_user_apc`. Every wait is bounded, so a bug fails a test
//! instead of hanging it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use overlapped::{Error, ErrorKind, Event, MAXIMUM_WAIT_EVENTS, ThreadHandle, Wait, sleep_ex, wait_for_events};

/// How long a test waits for something that must happen.
const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure something does not happen.
const QUIET: Duration = Duration::from_millis(100);
/// The timeout of a wait that must be ended early by something else (a set, a close, an APC).
const LONG: Duration = Duration::from_secs(10);
/// A zero timeout: a poll.
const POLL: Option<Duration> = Some(Duration::ZERO);

/// Runs `f` on a new thread and hands back a receiver for its result.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Runs `wait` on `n` new threads, released together by a barrier; returns once all are about
/// to wait, plus a little time for them to block.
fn spawn_waiters(
    n: usize,
    wait: impl Fn() -> Result<Wait, Error> + Send + Sync + 'static,
) -> Receiver<Result<Wait, Error>> {
    let (tx, rx) = mpsc::channel();
    let wait = Arc::new(wait);
    let barrier = Arc::new(Barrier::new(n + 1));
    for _ in 0..n {
        let (tx, wait, barrier) = (tx.clone(), Arc::clone(&wait), Arc::clone(&barrier));
        thread::spawn(move || {
            barrier.wait();
            let _ = tx.send(wait());
        });
    }
    barrier.wait();
    thread::sleep(QUIET);
    rx
}

/// The next result, which must come within [`WAIT`].
#[track_caller]
fn must_get<T>(rx: &Receiver<T>) -> T {
    rx.recv_timeout(WAIT).expect("a waiter should have returned")
}

/// No result comes within [`QUIET`] (and the sending threads are still alive).
#[track_caller]
fn must_stay_quiet<T: std::fmt::Debug>(rx: &Receiver<T>) {
    match rx.recv_timeout(QUIET) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("expected no waiter to return, got {other:?}"),
    }
}

/// The error kind of a call that must fail.
#[track_caller]
fn err_kind<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

/// One form of wait, to run the same check on each.
type WaitFn<'a> = Box<dyn Fn() -> Wait + 'a>;

/// A log of APC runs shared with the APCs.
type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().unwrap().clone()
}

/// Queues APCs pushing `items` (in order) to `log`, from a new thread (joined before returning).
fn queue_from_other_thread(target: &ThreadHandle, log: &Log<u32>, items: impl IntoIterator<Item = u32>) {
    let (target, log) = (target.clone(), Arc::clone(log));
    let items: Vec<u32> = items.into_iter().collect();
    thread::spawn(move || {
        for i in items {
            let log = Arc::clone(&log);
            target.queue_user_apc(move || log.lock().unwrap().push(i)).expect("queue an APC to a live thread");
        }
    })
    .join()
    .unwrap();
}

/// Queues APCs pushing `items` (in order) to `log`, to the calling thread.
fn queue_to_self(log: &Log<u32>, items: impl IntoIterator<Item = u32>) {
    let me = ThreadHandle::current();
    for i in items {
        let log = Arc::clone(log);
        me.queue_user_apc(move || log.lock().unwrap().push(i)).expect("queue an APC to the calling thread");
    }
}

/// Sets its flag when dropped: shows that a closure (which owns it) was freed.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// An APC that records whether it ran and whether it was dropped.
fn tracked_apc() -> (impl FnOnce() + Send + 'static, Arc<AtomicBool>, Arc<AtomicBool>) {
    let (ran, dropped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let guard = DropFlag(Arc::clone(&dropped));
    let ran2 = Arc::clone(&ran);
    let apc = move || {
        ran2.store(true, Ordering::SeqCst);
        drop(guard);
    };
    (apc, ran, dropped)
}

// ---------------------------------------------------------------------------------------------
// EV-1: creation
// ---------------------------------------------------------------------------------------------

/// EV-1: `Event::new()` (WSACreateEvent) is manual-reset and initially not signalled.
#[test]
fn ev1_new_event_is_manual_reset_and_not_signalled() {
    let ev = Event::new();
    assert!(ev.is_manual_reset());
    assert!(!ev.is_set());
    assert_eq!(ev.wait(POLL, false).unwrap(), Wait::Timeout);
    assert!(!ev.is_set());
}

/// EV-1 (CreateEvent): `Event::manual` / `Event::auto` take their reset mode and initial state;
/// a manual event stays set after a wait, an auto one is reset by it.
#[test]
fn ev1_manual_and_auto_events_take_their_initial_state() {
    let m_off = Event::manual(false);
    assert!(m_off.is_manual_reset() && !m_off.is_set());
    assert_eq!(m_off.wait(POLL, false).unwrap(), Wait::Timeout);

    let m_on = Event::manual(true);
    assert!(m_on.is_manual_reset() && m_on.is_set());
    assert_eq!(m_on.wait(POLL, false).unwrap(), Wait::Signaled(0));
    assert_eq!(m_on.wait(POLL, false).unwrap(), Wait::Signaled(0), "a manual event stays set");
    assert!(m_on.is_set());

    let a_off = Event::auto(false);
    assert!(!a_off.is_manual_reset() && !a_off.is_set());
    assert_eq!(a_off.wait(POLL, false).unwrap(), Wait::Timeout);

    let a_on = Event::auto(true);
    assert!(!a_on.is_manual_reset() && a_on.is_set());
    assert_eq!(a_on.wait(POLL, false).unwrap(), Wait::Signaled(0));
    assert!(!a_on.is_set(), "the wait consumed the auto-reset event");
    assert_eq!(a_on.wait(POLL, false).unwrap(), Wait::Timeout);
}

/// WSASetEvent / WSAResetEvent: set signals, reset clears, both are idempotent; setting an
/// auto-reset event twice with no waiter still releases one wait only.
#[test]
fn set_and_reset_change_the_state() {
    for ev in [Event::manual(false), Event::auto(false)] {
        ev.reset().unwrap();
        assert!(!ev.is_set());
        ev.set().unwrap();
        assert!(ev.is_set());
        ev.set().unwrap();
        assert!(ev.is_set());
        ev.reset().unwrap();
        assert!(!ev.is_set());
        assert_eq!(ev.wait(POLL, false).unwrap(), Wait::Timeout, "reset event must not release a wait");
    }
    let auto = Event::auto(false);
    auto.set().unwrap();
    auto.set().unwrap();
    assert_eq!(auto.wait(POLL, false).unwrap(), Wait::Signaled(0));
    assert_eq!(auto.wait(POLL, false).unwrap(), Wait::Timeout, "two sets are one signal, not two");
}

/// Clones are handles to one object: a set through one is seen (and consumed) through another.
#[test]
fn clones_share_one_event() {
    let ev = Event::auto(false);
    let other = ev.clone();
    other.set().unwrap();
    assert!(ev.is_set());
    assert_eq!(ev.wait(POLL, false).unwrap(), Wait::Signaled(0));
    assert!(!other.is_set());
}

// ---------------------------------------------------------------------------------------------
// Manual vs auto reset with several waiters
// ---------------------------------------------------------------------------------------------

/// EV-1/WE-3: a set manual-reset event releases every waiting thread and stays set.
#[test]
fn manual_event_releases_every_waiter_and_stays_set() {
    let ev = Event::manual(false);
    let e = ev.clone();
    let rx = spawn_waiters(4, move || e.wait(Some(LONG), false));
    must_stay_quiet(&rx);
    ev.set().unwrap();
    for _ in 0..4 {
        assert_eq!(must_get(&rx).unwrap(), Wait::Signaled(0));
    }
    assert!(ev.is_set(), "a manual-reset event stays set after releasing waiters");
    assert_eq!(ev.wait(POLL, false).unwrap(), Wait::Signaled(0));
}

/// EV-1/WE-3: an auto-reset event releases exactly one waiter per set, and that waiter consumes
/// it (the event is not left set, the others keep waiting).
#[test]
fn auto_event_releases_exactly_one_waiter_per_set() {
    let ev = Event::auto(false);
    let e = ev.clone();
    let rx = spawn_waiters(3, move || e.wait(Some(LONG), false));
    must_stay_quiet(&rx);
    for round in 0..3 {
        ev.set().unwrap();
        assert_eq!(must_get(&rx).unwrap(), Wait::Signaled(0), "set #{round} must release one waiter");
        if round < 2 {
            must_stay_quiet(&rx);
        } else {
            assert!(matches!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected)), "a 4th result");
        }
        assert!(!ev.is_set(), "the released waiter consumed the event (set #{round})");
    }
    assert_eq!(ev.wait(POLL, false).unwrap(), Wait::Timeout);
}

/// EV-1: an auto-reset event set with no waiter stays set until a wait consumes it; peeking and
/// timing out waits on other events do not consume it.
#[test]
fn auto_event_stays_set_until_a_wait_consumes_it() {
    let ev = Event::auto(false);
    ev.set().unwrap();
    thread::sleep(QUIET);
    assert!(ev.is_set());
    assert!(ev.is_set(), "is_set is a peek");
    let other = Event::new();
    assert_eq!(wait_for_events(&[&other], false, Some(QUIET), false).unwrap(), Wait::Timeout);
    assert!(ev.is_set());
    let e = ev.clone();
    let rx = spawn(move || e.wait(Some(WAIT), false));
    assert_eq!(must_get(&rx).unwrap(), Wait::Signaled(0), "a later waiter takes the pending signal");
    assert!(!ev.is_set());
}

// ---------------------------------------------------------------------------------------------
// Close
// ---------------------------------------------------------------------------------------------

/// WSACloseEvent / WE-2: after close, every call on every clone fails with InvalidHandle.
#[test]
fn close_invalidates_every_clone() {
    let ev = Event::auto(true);
    let clone = ev.clone();
    ev.close().unwrap();
    for h in [&ev, &clone] {
        assert_eq!(err_kind(h.set()), ErrorKind::InvalidHandle);
        assert_eq!(err_kind(h.reset()), ErrorKind::InvalidHandle);
        assert_eq!(err_kind(h.wait(POLL, false)), ErrorKind::InvalidHandle);
        assert_eq!(err_kind(h.wait(Some(QUIET), true)), ErrorKind::InvalidHandle);
        assert_eq!(err_kind(wait_for_events(&[h], false, POLL, false)), ErrorKind::InvalidHandle);
        assert_eq!(err_kind(wait_for_events(&[h], true, POLL, false)), ErrorKind::InvalidHandle);
        assert_eq!(err_kind(h.close()), ErrorKind::InvalidHandle);
    }
}

/// WE-2: a closed (invalid) handle anywhere in the slice fails the whole wait with
/// InvalidHandle, even if a valid event at a lower index is signalled, and consumes nothing.
#[test]
fn we2_a_closed_event_anywhere_in_the_slice_fails_the_wait() {
    let ok = Event::auto(true);
    let closed = Event::new();
    closed.close().unwrap();
    assert_eq!(err_kind(wait_for_events(&[&ok, &closed], true, POLL, false)), ErrorKind::InvalidHandle);
    assert!(ok.is_set(), "a failed wait-all consumed an event");
    assert_eq!(err_kind(wait_for_events(&[&closed, &ok], false, POLL, false)), ErrorKind::InvalidHandle);
    assert!(ok.is_set(), "a failed wait-any consumed an event");
    assert_eq!(err_kind(wait_for_events(&[&ok, &closed], false, POLL, false)), ErrorKind::InvalidHandle);
    assert!(ok.is_set(), "a failed wait-any consumed an event");
}

/// Close during a wait (undefined on Windows, WE-2; defined by this library): a thread blocked
/// on the event, alone or among others, for any or all, wakes with InvalidHandle.
#[test]
fn closing_an_event_wakes_its_blocked_waiters_with_invalid_handle() {
    let ev = Event::new();
    let other = Event::new();
    let (e1, e2, o2, e3, o3) = (ev.clone(), ev.clone(), other.clone(), ev.clone(), other.clone());
    let single = spawn(move || e1.wait(Some(LONG), false));
    let any = spawn(move || wait_for_events(&[&o2, &e2], false, Some(LONG), false));
    let all = spawn(move || wait_for_events(&[&e3, &o3], true, Some(LONG), true));
    thread::sleep(QUIET);
    must_stay_quiet(&single);
    ev.close().unwrap();
    assert_eq!(err_kind(must_get(&single)), ErrorKind::InvalidHandle);
    assert_eq!(err_kind(must_get(&any)), ErrorKind::InvalidHandle);
    assert_eq!(err_kind(must_get(&all)), ErrorKind::InvalidHandle);
    other.set().unwrap();
    assert!(other.is_set());
}

// ---------------------------------------------------------------------------------------------
// WE-2 / WE-3 / WE-4: wait any, wait all, bad arguments
// ---------------------------------------------------------------------------------------------

/// WE-3: waiting for any returns the lowest signalled index and consumes only that event: an
/// auto-reset event at a higher index stays set, a manual one at the returned index stays set.
#[test]
fn we3_wait_any_returns_the_lowest_signalled_index_and_consumes_only_it() {
    let events = [Event::manual(false), Event::auto(true), Event::manual(true), Event::auto(true)];
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Signaled(1));
    assert!(!events[1].is_set(), "the auto event at the returned index is consumed");
    assert!(events[2].is_set() && events[3].is_set(), "higher events are untouched");
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Signaled(2));
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Signaled(2));
    assert!(events[2].is_set(), "a manual event stays set");
    assert!(events[3].is_set(), "the auto event behind the manual one is never consumed");
    events[2].reset().unwrap();
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Signaled(3));
    assert!(!events[3].is_set());
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Timeout);
}

/// WE-3 (W-K32SYNC test_WaitForMultipleObjects): 64 set auto-reset events come out one per
/// wait, in index order.
#[test]
fn we3_sixty_four_auto_events_come_out_in_index_order() {
    let events: Vec<Event> = (0..MAXIMUM_WAIT_EVENTS).map(|_| Event::auto(true)).collect();
    for i in 0..MAXIMUM_WAIT_EVENTS {
        assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Signaled(i));
        assert!(events[i + 1..].iter().all(Event::is_set), "only index {i} may be consumed");
    }
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Timeout);
}

/// WE-2: duplicates are allowed when waiting for any (only wait-all forbids them).
#[test]
fn we2_duplicates_are_allowed_when_waiting_for_any() {
    let ev = Event::auto(true);
    assert_eq!(wait_for_events(&[&ev, &ev.clone()], false, POLL, false).unwrap(), Wait::Signaled(0));
    assert!(!ev.is_set());
}

/// WE-2: the same event twice with wait_all is InvalidArgument (signalled or not), and
/// consumes nothing.
#[test]
fn we2_wait_all_with_a_duplicate_event_is_invalid_argument() {
    let ev = Event::auto(true);
    let other = Event::auto(true);
    assert_eq!(err_kind(wait_for_events(&[&ev, &other, &ev.clone()], true, POLL, false)), ErrorKind::InvalidArgument);
    assert_eq!(err_kind(wait_for_events(&[&ev, &ev], true, Some(QUIET), false)), ErrorKind::InvalidArgument);
    assert!(ev.is_set() && other.is_set(), "a failed wait consumed an event");
    let unset = Event::new();
    assert_eq!(err_kind(wait_for_events(&[&unset, &unset], true, Some(QUIET), true)), ErrorKind::InvalidArgument);
}

/// WE-2: an empty slice is InvalidArgument (WSA_INVALID_PARAMETER) in every mode.
#[test]
fn we2_empty_slice_is_invalid_argument() {
    let none: &[Event] = &[];
    for wait_all in [false, true] {
        for alertable in [false, true] {
            for timeout in [POLL, Some(QUIET), None] {
                assert_eq!(
                    err_kind(wait_for_events(none, wait_all, timeout, alertable)),
                    ErrorKind::InvalidArgument,
                    "wait_all={wait_all} alertable={alertable} timeout={timeout:?}"
                );
            }
        }
    }
}

/// WE-4: waiting for all does not return while only some are signalled, and consumes none of
/// them until then.
#[test]
fn we4_wait_all_does_not_return_or_consume_while_only_some_are_signalled() {
    let events = [Event::auto(true), Event::manual(true), Event::auto(false)];
    assert_eq!(wait_for_events(&events, true, POLL, false).unwrap(), Wait::Timeout);
    assert_eq!(wait_for_events(&events, true, Some(QUIET), false).unwrap(), Wait::Timeout);
    assert!(events[0].is_set(), "an auto event was consumed by an unsatisfied wait-all");
    assert!(events[1].is_set());
    assert!(!events[2].is_set());
    assert_eq!(events[0].wait(POLL, false).unwrap(), Wait::Signaled(0), "the auto event must still be available");
}

/// WE-4: a blocked wait-all returns Signaled(0) only once all are signalled; partial sets leave
/// every event as it is; on return the auto-reset events are consumed together and the manual
/// one stays set.
#[test]
fn we4_blocked_wait_all_returns_signaled_0_once_all_are_set_and_consumes_auto_ones_together() {
    let events = vec![Event::auto(false), Event::manual(false), Event::auto(false)];
    let shared = events.clone();
    let rx = spawn(move || wait_for_events(&shared, true, Some(LONG), false));
    thread::sleep(QUIET);
    events[0].set().unwrap();
    must_stay_quiet(&rx);
    assert!(events[0].is_set(), "a partial wait-all consumed an auto event");
    events[1].set().unwrap();
    must_stay_quiet(&rx);
    assert!(events[0].is_set() && events[1].is_set(), "a partial wait-all consumed an event");
    events[2].set().unwrap();
    assert_eq!(must_get(&rx).unwrap(), Wait::Signaled(0));
    assert!(!events[0].is_set() && !events[2].is_set(), "auto events are consumed together");
    assert!(events[1].is_set(), "the manual event stays set");
}

/// WE-4: when all are already signalled the wait-all returns at once with Signaled(0).
#[test]
fn we4_wait_all_with_all_already_signalled_returns_signaled_0() {
    let events = [Event::manual(true), Event::auto(true), Event::auto(true)];
    assert_eq!(wait_for_events(&events, true, POLL, false).unwrap(), Wait::Signaled(0));
    assert!(events[0].is_set() && !events[1].is_set() && !events[2].is_set());
    assert_eq!(wait_for_events(&events, true, POLL, false).unwrap(), Wait::Timeout);
}

/// WE-4: two wait-all threads competing for the same auto-reset events: each full set releases
/// exactly one of them (all or nothing, never half of the events each).
#[test]
fn we4_competing_wait_alls_take_all_events_atomically() {
    let events = vec![Event::auto(false), Event::auto(false)];
    let rx = {
        let shared = events.clone();
        spawn_waiters(2, move || wait_for_events(&shared, true, Some(LONG), false))
    };
    events[1].set().unwrap();
    events[0].set().unwrap();
    assert_eq!(must_get(&rx).unwrap(), Wait::Signaled(0));
    must_stay_quiet(&rx);
    assert!(!events[0].is_set() && !events[1].is_set());
    events[0].set().unwrap();
    events[1].set().unwrap();
    assert_eq!(must_get(&rx).unwrap(), Wait::Signaled(0));
}

// ---------------------------------------------------------------------------------------------
// WE-5: timeouts
// ---------------------------------------------------------------------------------------------

/// WE-5: a zero timeout polls: Timeout at once when nothing is signalled.
#[test]
fn we5_zero_timeout_polls() {
    let events = [Event::new(), Event::auto(false), Event::auto(true)];
    let start = Instant::now();
    assert_eq!(events[0].wait(POLL, false).unwrap(), Wait::Timeout);
    assert_eq!(events[0].wait(POLL, true).unwrap(), Wait::Timeout);
    assert_eq!(wait_for_events(&events[..2], false, POLL, false).unwrap(), Wait::Timeout);
    assert_eq!(wait_for_events(&events, true, POLL, true).unwrap(), Wait::Timeout);
    assert!(start.elapsed() < WAIT, "polls took {:?}", start.elapsed());
    assert!(events[2].is_set(), "a timed-out wait-all consumed an event");
}

/// WE-5: a finite timeout returns Timeout after at least that long, in every wait form.
#[test]
fn we5_finite_timeout_returns_timeout_after_at_least_that_long() {
    let ev = Event::new();
    let events = [Event::new(), Event::auto(true)];
    for timeout in [Duration::from_millis(50), Duration::from_millis(200)] {
        let forms: [(&str, WaitFn<'_>); 6] = [
            ("Event::wait", Box::new(|| ev.wait(Some(timeout), false).unwrap())),
            ("Event::wait alertable", Box::new(|| ev.wait(Some(timeout), true).unwrap())),
            ("wait any", Box::new(|| wait_for_events(&events[..1], false, Some(timeout), false).unwrap())),
            ("wait all", Box::new(|| wait_for_events(&events, true, Some(timeout), true).unwrap())),
            ("sleep_ex", Box::new(|| sleep_ex(Some(timeout), false))),
            ("sleep_ex alertable", Box::new(|| sleep_ex(Some(timeout), true))),
        ];
        for (name, wait) in forms {
            let start = Instant::now();
            assert_eq!(wait(), Wait::Timeout, "{name}");
            let elapsed = start.elapsed();
            assert!(elapsed >= timeout, "{name} returned after {elapsed:?} < {timeout:?}");
            assert!(elapsed < timeout + WAIT, "{name} took {elapsed:?}");
        }
    }
}

/// WE-5: an infinite wait (None) is woken by another thread setting the event.
#[test]
fn we5_infinite_wait_is_woken_by_another_thread_setting_the_event() {
    let ev = Event::auto(false);
    let e = ev.clone();
    let single = spawn(move || e.wait(None, false));
    must_stay_quiet(&single);
    ev.set().unwrap();
    assert_eq!(must_get(&single).unwrap(), Wait::Signaled(0));

    let events = vec![Event::new(), Event::new()];
    let (any_ev, all_ev) = (events.clone(), events.clone());
    let any = spawn(move || wait_for_events(&any_ev, false, None, true));
    let all = spawn(move || wait_for_events(&all_ev, true, None, false));
    thread::sleep(QUIET);
    events[1].set().unwrap();
    assert_eq!(must_get(&any).unwrap(), Wait::Signaled(1));
    must_stay_quiet(&all);
    events[0].set().unwrap();
    assert_eq!(must_get(&all).unwrap(), Wait::Signaled(0));
}

// ---------------------------------------------------------------------------------------------
// More than 64 events
// ---------------------------------------------------------------------------------------------

/// WE-2 (classic limit): `MAXIMUM_WAIT_EVENTS` is WSA_MAXIMUM_WAIT_EVENTS, 64.
#[test]
fn maximum_wait_events_is_64() {
    assert_eq!(MAXIMUM_WAIT_EVENTS, 64);
}

/// No 64-event limit: 65 events are accepted, for any and for all.
#[test]
fn sixty_five_events_are_accepted() {
    let events: Vec<Event> = (0..=MAXIMUM_WAIT_EVENTS).map(|_| Event::new()).collect();
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Timeout);
    events[MAXIMUM_WAIT_EVENTS].set().unwrap();
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Signaled(MAXIMUM_WAIT_EVENTS));
    events.iter().for_each(|e| e.set().unwrap());
    assert_eq!(wait_for_events(&events, true, POLL, false).unwrap(), Wait::Signaled(0));
}

/// No 64-event limit: a thread blocked on 10,000 events is woken by a set of index 9,999, then
/// (waiting again) of index 5,000, and gets that index.
#[test]
fn wait_on_ten_thousand_events_returns_the_one_set_from_another_thread() {
    let events: Vec<Event> = (0..10_000).map(|_| Event::auto(false)).collect();
    for target in [9_999, 5_000] {
        let shared = events.clone();
        let rx = spawn(move || wait_for_events(&shared, false, Some(Duration::from_secs(30)), false));
        must_stay_quiet(&rx);
        events[target].set().unwrap();
        let got = rx.recv_timeout(Duration::from_secs(30)).expect("the 10,000-event waiter returned");
        assert_eq!(got.unwrap(), Wait::Signaled(target));
        assert!(!events[target].is_set(), "the waiter consumed event {target}");
    }
}

// ---------------------------------------------------------------------------------------------
// Alertable waits and APCs (WE-6, AP-1..AP-3, AP-6, AP-10)
// ---------------------------------------------------------------------------------------------

/// AP-1/WE-6/AP-3: an APC queued from another thread does not run in the target's
/// non-alertable waits (sleep_ex, Event::wait, wait any, wait all), nor in the queuing thread's
/// alertable wait; it runs on the target thread at its next alertable wait.
#[test]
fn ap1_apc_runs_on_the_target_thread_only_in_an_alertable_wait() {
    let (to_main, from_target) = mpsc::channel();
    let (to_target, from_main) = mpsc::channel::<()>();
    let ran_on: Log<ThreadId> = log();
    let seen = Arc::clone(&ran_on);
    let target = spawn(move || {
        to_main.send((ThreadHandle::current(), thread::current().id())).unwrap();
        from_main.recv_timeout(WAIT).expect("the APC was queued");
        let ev = Event::new();
        let set = Event::manual(true);
        let non_alertable = [
            sleep_ex(Some(QUIET), false),
            sleep_ex(Some(Duration::ZERO), false),
            ev.wait(Some(QUIET), false).unwrap(),
            wait_for_events(&[&ev, &set], false, Some(QUIET), false).unwrap(),
            wait_for_events(&[&ev, &set], true, Some(QUIET), false).unwrap(),
        ];
        thread::sleep(QUIET);
        let before = entries(&seen);
        let alertable = sleep_ex(Some(WAIT), true);
        (non_alertable, before, alertable, entries(&seen))
    });
    let (handle, target_id) = from_target.recv_timeout(WAIT).expect("the target thread started");
    let log = Arc::clone(&ran_on);
    handle.queue_user_apc(move || log.lock().unwrap().push(thread::current().id())).unwrap();
    assert_eq!(sleep_ex(Some(QUIET), true), Wait::Timeout, "another thread's APC ran in this thread's wait");
    assert!(entries(&ran_on).is_empty());
    to_target.send(()).unwrap();
    let (non_alertable, before, alertable, after) = must_get(&target);
    assert_eq!(
        non_alertable,
        [Wait::Timeout, Wait::Timeout, Wait::Timeout, Wait::Signaled(1), Wait::Timeout],
        "non-alertable waits must not report IoCompletion"
    );
    assert!(before.is_empty(), "the APC ran outside an alertable wait");
    assert_eq!(alertable, Wait::IoCompletion);
    assert_eq!(after, [target_id], "the APC runs once, on the target thread");
    assert_ne!(target_id, thread::current().id());
}

/// Runs `wait` after queuing five APCs from another thread: it must run all of them, in FIFO
/// order, before returning IoCompletion; the next alertable wait finds the queue empty.
fn check_alertable_wait_drains_fifo(name: &str, wait: impl Fn(Duration) -> Wait) {
    let log = log();
    queue_from_other_thread(&ThreadHandle::current(), &log, 0..5);
    assert!(entries(&log).is_empty(), "{name}: APCs ran before any alertable wait");
    assert_eq!(wait(LONG), Wait::IoCompletion, "{name}");
    assert_eq!(entries(&log), [0, 1, 2, 3, 4], "{name}: all APCs in FIFO order");
    assert_eq!(wait(QUIET), Wait::Timeout, "{name}: the queue was drained");
    assert_eq!(entries(&log).len(), 5, "{name}: APCs ran twice");
}

/// AP-2/WE-6: an alertable wait_for_events (any and all), Event::wait and sleep_ex entered with
/// queued APCs runs all of them in FIFO order and returns IoCompletion, with the events still
/// unsignalled.
#[test]
fn ap2_alertable_wait_with_queued_apcs_runs_all_in_fifo_order() {
    let ev = Event::auto(false);
    let pair = [Event::auto(true), Event::new()];
    check_alertable_wait_drains_fifo("Event::wait", |t| ev.wait(Some(t), true).unwrap());
    check_alertable_wait_drains_fifo("wait any", |t| wait_for_events(&[&ev], false, Some(t), true).unwrap());
    check_alertable_wait_drains_fifo("wait all", |t| wait_for_events(&pair, true, Some(t), true).unwrap());
    check_alertable_wait_drains_fifo("sleep_ex", |t| sleep_ex(Some(t), true));
    assert!(pair[0].is_set(), "an unsatisfied alertable wait-all consumed an event");
}

/// AP-2/WE-6: an APC queued while the thread is blocked in an alertable wait wakes it: the wait
/// returns IoCompletion after the APC ran on the waiting thread.
#[test]
fn ap2_apc_queued_during_a_blocked_alertable_wait_wakes_it() {
    let ev = Event::new();
    let pair = [Event::manual(true), Event::new()];
    let forms: [(&str, WaitFn<'_>); 4] = [
        ("Event::wait", Box::new(|| ev.wait(Some(LONG), true).unwrap())),
        ("wait any", Box::new(|| wait_for_events(&[&ev], false, Some(LONG), true).unwrap())),
        ("wait all", Box::new(|| wait_for_events(&pair, true, Some(LONG), true).unwrap())),
        ("sleep_ex", Box::new(|| sleep_ex(Some(LONG), true))),
    ];
    let me = thread::current().id();
    for (name, wait) in forms {
        let ran_on: Log<ThreadId> = log();
        let (handle, log) = (ThreadHandle::current(), Arc::clone(&ran_on));
        let queuer = thread::spawn(move || {
            thread::sleep(QUIET);
            handle.queue_user_apc(move || log.lock().unwrap().push(thread::current().id())).unwrap();
        });
        let start = Instant::now();
        assert_eq!(wait(), Wait::IoCompletion, "{name}");
        assert!(start.elapsed() < LONG, "{name}: woke only at the timeout");
        assert_eq!(entries(&ran_on), [me], "{name}: the APC ran on the waiting thread before the wait returned");
        queuer.join().unwrap();
    }
}

/// AP-10/AP-2: with an event already signalled on entry and APCs queued, an alertable wait
/// returns the event (consuming it), runs no APC, and the APCs stay queued for the next
/// alertable wait.
#[test]
fn ap10_signalled_event_on_entry_wins_over_queued_apcs() {
    let log = log();
    queue_to_self(&log, [1, 2]);
    let manual = Event::manual(true);
    let auto = Event::auto(true);
    assert_eq!(manual.wait(Some(WAIT), true).unwrap(), Wait::Signaled(0));
    assert_eq!(wait_for_events(&[&Event::new(), &auto], false, Some(WAIT), true).unwrap(), Wait::Signaled(1));
    assert!(!auto.is_set(), "the alertable wait consumed the auto event");
    auto.set().unwrap();
    assert_eq!(wait_for_events(&[&manual, &auto], true, Some(WAIT), true).unwrap(), Wait::Signaled(0));
    assert!(entries(&log).is_empty(), "APCs ran although the wait was satisfied on entry");
    assert_eq!(auto.wait(Some(WAIT), true).unwrap(), Wait::IoCompletion, "the APCs stayed queued");
    assert_eq!(entries(&log), [1, 2]);
}

/// AP-3: `sleep_ex(Some(ZERO), true)` just drains the queue (IoCompletion if something ran,
/// Timeout otherwise); `sleep_ex(Some(ZERO), false)` runs nothing.
#[test]
fn ap3_sleep_ex_zero_alertable_just_drains_the_queue() {
    let log = log();
    assert_eq!(sleep_ex(Some(Duration::ZERO), true), Wait::Timeout, "nothing queued");
    queue_to_self(&log, 0..3);
    assert_eq!(sleep_ex(Some(Duration::ZERO), false), Wait::Timeout);
    assert!(entries(&log).is_empty(), "a non-alertable sleep ran APCs");
    let start = Instant::now();
    assert_eq!(sleep_ex(Some(Duration::ZERO), true), Wait::IoCompletion);
    assert!(start.elapsed() < WAIT);
    assert_eq!(entries(&log), [0, 1, 2]);
    assert_eq!(sleep_ex(Some(Duration::ZERO), true), Wait::Timeout, "the queue was drained");
}

/// WE-6: an alertable wait with nothing queued behaves like a normal one.
#[test]
fn we6_alertable_wait_with_nothing_queued_is_a_normal_wait() {
    let ev = Event::auto(true);
    assert_eq!(ev.wait(Some(WAIT), true).unwrap(), Wait::Signaled(0));
    assert_eq!(ev.wait(Some(QUIET), true).unwrap(), Wait::Timeout);
    let e = ev.clone();
    let setter = thread::spawn(move || {
        thread::sleep(QUIET);
        e.set().unwrap();
    });
    assert_eq!(wait_for_events(&[&Event::new(), &ev], false, Some(LONG), true).unwrap(), Wait::Signaled(1));
    setter.join().unwrap();
}

/// AP-6: QueueUserAPC to an exited thread fails (ThreadExited, ERROR_GEN_FAILURE) and the
/// closure is dropped without running.
#[test]
fn ap6_queue_user_apc_to_an_exited_thread_fails_and_drops_the_closure() {
    let handle = thread::spawn(ThreadHandle::current).join().unwrap();
    assert!(!handle.is_alive());
    let (apc, ran, dropped) = tracked_apc();
    assert_eq!(err_kind(handle.queue_user_apc(apc)), ErrorKind::ThreadExited);
    assert!(!ran.load(Ordering::SeqCst), "the APC ran");
    assert!(dropped.load(Ordering::SeqCst), "the rejected closure was not dropped");
}

/// AP-6: APCs still queued when their thread exits (it never waited alertably) are dropped
/// without running; later queuing fails.
#[test]
fn ap6_apcs_still_queued_at_thread_exit_are_dropped_unrun() {
    let (to_main, from_target) = mpsc::channel();
    let (to_target, from_main) = mpsc::channel::<()>();
    let target = thread::spawn(move || {
        to_main.send(ThreadHandle::current()).unwrap();
        from_main.recv_timeout(WAIT).expect("the APCs were queued");
        sleep_ex(Some(QUIET), false);
    });
    let handle = from_target.recv_timeout(WAIT).unwrap();
    assert!(handle.is_alive());
    let (a, ran_a, dropped_a) = tracked_apc();
    let (b, ran_b, dropped_b) = tracked_apc();
    handle.queue_user_apc(a).unwrap();
    handle.queue_user_apc(b).unwrap();
    assert!(!dropped_a.load(Ordering::SeqCst), "a queued APC was dropped while its thread lives");
    to_target.send(()).unwrap();
    target.join().unwrap();
    let deadline = Instant::now() + WAIT;
    while !(dropped_a.load(Ordering::SeqCst) && dropped_b.load(Ordering::SeqCst)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    assert!(dropped_a.load(Ordering::SeqCst) && dropped_b.load(Ordering::SeqCst), "queued APCs were not freed");
    assert!(!ran_a.load(Ordering::SeqCst) && !ran_b.load(Ordering::SeqCst), "APCs ran in a non-alertable thread");
    assert!(!handle.is_alive());
    assert_eq!(err_kind(handle.queue_user_apc(|| {})), ErrorKind::ThreadExited);
}

/// The handles are shareable: Event and ThreadHandle are Send + Sync + Clone (compile-time);
/// Wait is a plain value.
#[test]
fn handles_are_send_sync_clone() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    fn plain<T: Copy + Eq + std::fmt::Debug + Send + Sync>() {}
    shareable::<Event>();
    shareable::<ThreadHandle>();
    plain::<Wait>();
    let handle = ThreadHandle::current();
    assert!(handle.clone().is_alive());
}
