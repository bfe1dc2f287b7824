//! Who reaps completions of event and routine operations, checked from the spec (§3 EV-2, EV-4,
//! WE-2, WE-3, WE-4, GR-1, IO-1; §4 AP-1, AP-2, AP-4; TE-1): many threads waiting on disjoint
//! or shared event sets lose no wake-up and can read every result the moment its event is seen;
//! a thread that never waits still gets its results by polling; a send survives its thread's
//! exit; completion routines from many threads each run once, on their issuing thread, only
//! inside its alertable waits; a 10,000-event wait returns exactly the index set; closing an
//! event fails the waits that include it. Nothing here depends on which thread (if any) reaps
//! completions. Every wait and every loop is bounded; no test asserts a duration.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::{QUIET, WAIT, unassociated_tcp_pair};
use overlapped::{
    BufList, Error, ErrorKind, Event, Issued, MsgFlags, Overlapped, PendingIo, Rejected, Socket, Wait, sleep_ex,
    wait_for_events,
};

type IssueResult<C> = Result<Issued<C>, Rejected<C>>;

/// The timeout of a wait that something else (a close) must end early.
const LONG: Duration = Duration::from_secs(10);
/// A zero timeout: a poll.
const POLL: Option<Duration> = Some(Duration::ZERO);

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64*), so that "random" orders repeat run to run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// A deterministic byte pattern, distinct per `seed`.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((seed * 131 + j * 7 + seed / 253) % 251) as u8).collect()
}

/// A receive record with `cap` bytes of room and `event` attached.
fn recv_ov<C: Send + 'static>(ctx: C, cap: usize, event: &Event) -> Overlapped<C> {
    Overlapped::with_buffers(ctx, BufList::with_capacity(cap)).with_event(event.clone())
}

/// The handle of an operation on a socket associated with no port: it must be `Issued::Event`.
#[track_caller]
fn event_io<C: Send + 'static>(r: IssueResult<C>) -> PendingIo<C> {
    match r {
        Ok(Issued::Event(io)) => io,
        Ok(Issued::Pending) => panic!("no port gets this completion, yet the call returned Issued::Pending"),
        Ok(Issued::Completed(_)) => panic!("no skip-on-success port here, yet the call returned Issued::Completed"),
        Err(r) => panic!("the operation was rejected: {}", r.error),
    }
}

/// `WSAGetOverlappedResult(fWait = FALSE)` on an operation whose event was seen signalled: the
/// status block is written before the event is set (IO-1, EV-2), so the record must be there
/// at once (not `WSA_IO_INCOMPLETE`, GR-1).
#[track_caller]
fn result_now<C: Send + 'static>(io: &mut PendingIo<C>, what: &str) -> Overlapped<C> {
    assert!(io.is_completed(), "{what}: the event is set, so HasOverlappedIoCompleted must be true (IO-1)");
    match io.overlapped_result(false) {
        Ok(ov) => ov,
        Err(e) => panic!("{what}: the event is set, yet overlapped_result(false) failed with {e} (IO-1/GR-1)"),
    }
}

/// The bytes a record's operation transferred, which must have succeeded.
#[track_caller]
fn received<C: Send + 'static>(ov: &Overlapped<C>, what: &str) -> Vec<u8> {
    match ov.result() {
        Ok(n) => ov.buffers().gather(n),
        Err(e) => panic!("{what}: expected success, the operation failed with {e}"),
    }
}

/// Polls `overlapped_result(false)` with short sleeps and no library wait at all, until the
/// record comes back, for at most [`WAIT`]. Whenever `is_completed()` reports true the result
/// must be there (GR-1: only a pending operation is `WSA_IO_INCOMPLETE`).
#[track_caller]
fn poll_result<C: Send + 'static>(io: &mut PendingIo<C>, what: &str) -> Overlapped<C> {
    let deadline = Instant::now() + WAIT;
    loop {
        let completed = io.is_completed();
        match io.overlapped_result(false) {
            Ok(ov) => return ov,
            Err(e) if e.kind() == ErrorKind::IoIncomplete => {
                assert!(!completed, "{what}: is_completed() was true, yet the result was WSA_IO_INCOMPLETE");
            }
            Err(e) => panic!("{what}: polling the result failed with {e}"),
        }
        assert!(Instant::now() < deadline, "{what}: not completed within {WAIT:?} of polling");
        thread::sleep(Duration::from_millis(2));
    }
}

/// Polls (without any library wait) until `cond` holds, for at most [`WAIT`].
#[track_caller]
fn eventually(cond: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The next message, which must come within [`WAIT`].
#[track_caller]
fn must_get<T>(rx: &Receiver<T>, what: &str) -> T {
    match rx.recv_timeout(WAIT) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: nothing within {WAIT:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the other thread ended (panicked?)"),
    }
}

/// The error kind of a call that must fail.
#[track_caller]
fn err_kind<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) -> ErrorKind {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

/// `n` connected pairs whose library sides are associated with no port (made on this thread,
/// so they use the backend under test).
fn pairs(n: usize) -> (Vec<Socket>, Vec<TcpStream>) {
    (0..n).map(|_| unassociated_tcp_pair()).unzip()
}

/// Writes `data` to each client in `order`, with a short pause now and then so that the
/// completions spread over time instead of arriving in one burst.
fn write_in_order(clients: &mut [TcpStream], order: &[usize], data: impl Fn(usize) -> Vec<u8>) {
    for (n, &i) in order.iter().enumerate() {
        clients[i].write_all(&data(i)).expect("the peer writes");
        if n % 5 == 4 {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

// ------------------------------------------------------------------------------------------------
// 1. Many threads waiting on disjoint event sets
// ------------------------------------------------------------------------------------------------

const DISJOINT_WAITERS: usize = 6;
const DISJOINT_PER: usize = 8;
const DISJOINT_ROUNDS: usize = 3;
const DISJOINT_LEN: usize = 24;

/// The bytes the peer of waiter `w`'s `k`-th socket writes in `round`.
fn disjoint_data(round: usize, w: usize, k: usize) -> Vec<u8> {
    pattern(round * 1000 + w * DISJOINT_PER + k, DISJOINT_LEN)
}

/// Waiter `w` of the disjoint test: waits with `wait_for_events` on its own events (only those
/// whose receive is still open), reads each result as soon as its event is seen, re-issues a
/// short receive for the rest, and re-issues every receive for the next round itself.
fn disjoint_waiter(
    w: usize,
    socks: Vec<Socket>,
    events: Vec<Event>,
    mut ios: Vec<Option<PendingIo<usize>>>,
    ready: Sender<usize>,
) -> usize {
    let mut seen = 0;
    for round in 0..DISJOINT_ROUNDS {
        if round > 0 {
            for (k, s) in socks.iter().enumerate() {
                ios[k] = Some(event_io(s.recv(recv_ov(k, DISJOINT_LEN, &events[k]), MsgFlags::NONE)));
            }
        }
        for (k, e) in events.iter().enumerate() {
            assert!(!e.is_set(), "waiter {w} round {round} socket {k}: EV-2: issuing resets the event, no data yet");
        }
        ready.send(w).expect("the test is listening");
        let mut got: Vec<Vec<u8>> = vec![Vec::new(); DISJOINT_PER];
        let mut open: Vec<usize> = (0..DISJOINT_PER).collect();
        // Each receive needs one wake-up, a few more only if the stream splits its bytes.
        for _ in 0..DISJOINT_PER * DISJOINT_LEN {
            if open.is_empty() {
                break;
            }
            let waited: Vec<&Event> = open.iter().map(|&k| &events[k]).collect();
            let j = match wait_for_events(&waited, false, Some(WAIT), false) {
                Ok(Wait::Signaled(j)) => j,
                other => panic!(
                    "waiter {w} round {round}: {} of {DISJOINT_PER} receives still open, the wait gave {other:?} \
                     (a lost wake-up?)",
                    open.len()
                ),
            };
            assert!(j < open.len(), "waiter {w}: index {j} out of range");
            let k = open[j];
            let what = format!("waiter {w} round {round} socket {k}");
            let mut io = ios[k].take().unwrap_or_else(|| panic!("{what}: signalled with no operation pending"));
            let mut ov = result_now(&mut io, &what);
            assert_eq!(*ov.context(), k, "{what}: the record behind the event is this socket's");
            let bytes = received(&ov, &what);
            assert!(!bytes.is_empty(), "{what}: the peer did not close");
            if events[k].is_manual_reset() {
                assert!(events[k].is_set(), "{what}: a manual-reset event stays set after the wait (WE-3)");
            } else {
                assert!(!events[k].is_set(), "{what}: the wait consumed the auto-reset event (WE-3)");
            }
            got[k].extend_from_slice(&bytes);
            seen += 1;
            if got[k].len() < DISJOINT_LEN {
                // RV-1: a stream receive may complete with part of the bytes; take the rest.
                ov.buffers_mut()[0].clear();
                ios[k] = Some(event_io(socks[k].recv(ov, MsgFlags::NONE)));
            } else {
                open.swap_remove(j);
            }
        }
        assert!(open.is_empty(), "waiter {w} round {round}: receives {open:?} never completed");
        for (k, g) in got.iter().enumerate() {
            assert_eq!(*g, disjoint_data(round, w, k), "waiter {w} round {round} socket {k}: every byte, in order");
        }
    }
    seen
}

backend_test! {
/// EV-2 / IO-1 / GR-1 / WE-3: six threads each wait with `wait_for_events` on their own eight
/// events (manual and auto reset), each attached to a pending receive on its own socket; the
/// peers write in a shuffled order, three rounds (the first round's receives issued by the test's
/// thread, the later ones by each waiter). Every waiter gets every one of its events (no lost
/// wake-up), and on `Signaled(i)` the result of that operation is readable at once with the
/// right bytes.
fn ev2_many_waiters_on_disjoint_event_sets_lose_no_wake_up() {
    let n = DISJOINT_WAITERS * DISJOINT_PER;
    let (socks, mut clients) = pairs(n);
    let events: Vec<Event> =
        (0..n).map(|i| if i % 2 == 0 { Event::manual(false) } else { Event::auto(false) }).collect();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut waiters = Vec::new();
    for w in 0..DISJOINT_WAITERS {
        let range = w * DISJOINT_PER..(w + 1) * DISJOINT_PER;
        let my_socks: Vec<Socket> = socks[range.clone()].to_vec();
        let my_events: Vec<Event> = events[range].to_vec();
        let ios: Vec<Option<PendingIo<usize>>> = my_socks
            .iter()
            .enumerate()
            .map(|(k, s)| Some(event_io(s.recv(recv_ov(k, DISJOINT_LEN, &my_events[k]), MsgFlags::NONE))))
            .collect();
        let ready = ready_tx.clone();
        waiters.push(thread::spawn(move || disjoint_waiter(w, my_socks, my_events, ios, ready)));
    }
    let mut rng = Rng::new(0x5eed_0001);
    for round in 0..DISJOINT_ROUNDS {
        for _ in 0..DISJOINT_WAITERS {
            must_get(&ready_rx, &format!("round {round}: a waiter is ready"));
        }
        if round == 0 {
            // Let the waiters block before the first byte comes.
            thread::sleep(Duration::from_millis(20));
        }
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        write_in_order(&mut clients, &order, |i| disjoint_data(round, i / DISJOINT_PER, i % DISJOINT_PER));
    }
    for (w, h) in waiters.into_iter().enumerate() {
        let seen = h.join().unwrap_or_else(|_| panic!("waiter {w} failed"));
        assert!(seen >= DISJOINT_PER * DISJOINT_ROUNDS, "waiter {w} saw {seen} completions");
    }
}
}

// ------------------------------------------------------------------------------------------------
// 2. Many threads waiting on overlapping event sets
// ------------------------------------------------------------------------------------------------

const SHARED_EVENTS: usize = 12;
const SHARED_WAITERS: usize = 6;
const SHARED_SET: usize = 6;
const SHARED_LEN: usize = 20;

/// One shared operation: its handle until some thread takes the record, then the bytes it got.
#[derive(Default)]
struct SharedOp {
    io: Option<PendingIo<usize>>,
    bytes: Option<Vec<u8>>,
}

/// The events thread `t` waits on: six consecutive ones from `2t` (so each event is in three
/// threads' sets).
fn shared_set(t: usize) -> Vec<usize> {
    (0..SHARED_SET).map(|j| (2 * t + j) % SHARED_EVENTS).collect()
}

/// Thread `t` saw event `e` signalled: the operation must be complete; the first thread there
/// takes the record (which must be readable at once), the others find the bytes it got.
#[track_caller]
fn check_shared(ops: &[Mutex<SharedOp>], events: &[Event], t: usize, e: usize) {
    let what = format!("thread {t} event {e}");
    assert!(events[e].is_set(), "{what}: a manual-reset event stays set (EV-2/WE-3)");
    let mut op = ops[e].lock().unwrap();
    if let Some(mut io) = op.io.take() {
        let ov = result_now(&mut io, &what);
        assert_eq!(*ov.context(), e, "{what}: the record behind the event is this socket's");
        op.bytes = Some(received(&ov, &what));
    }
    assert_eq!(op.bytes.as_deref(), Some(&pattern(e, SHARED_LEN)[..]), "{what}: the bytes of one peer write");
}

backend_test! {
/// EV-2 / WE-3 / WE-4 / IO-1: six threads wait on overlapping sets of twelve manual-reset
/// events (each event in three sets), each event attached to a pending receive; a seventh thread
/// waits for all twelve at once. The peers write in a shuffled order: every thread sees each of
/// its events signalled, and the result behind each is complete and readable at once; the
/// wait-all returns only when every operation is complete.
fn ev2_many_waiters_on_overlapping_event_sets_all_see_every_event() {
    let (socks, mut clients) = pairs(SHARED_EVENTS);
    let events: Vec<Event> = (0..SHARED_EVENTS).map(|_| Event::manual(false)).collect();
    let ops: Arc<Vec<Mutex<SharedOp>>> = Arc::new(
        socks
            .iter()
            .enumerate()
            .map(|(e, s)| {
                let io = event_io(s.recv(recv_ov(e, SHARED_LEN, &events[e]), MsgFlags::NONE));
                Mutex::new(SharedOp { io: Some(io), bytes: None })
            })
            .collect(),
    );
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut waiters = Vec::new();
    for t in 0..SHARED_WAITERS {
        let (events, ops, ready) = (events.clone(), Arc::clone(&ops), ready_tx.clone());
        waiters.push(thread::spawn(move || {
            let mut open = shared_set(t);
            ready.send(()).unwrap();
            let mut seen = Vec::new();
            for _ in 0..SHARED_SET {
                let waited: Vec<&Event> = open.iter().map(|&e| &events[e]).collect();
                let j = match wait_for_events(&waited, false, Some(WAIT), false) {
                    Ok(Wait::Signaled(j)) if j < open.len() => j,
                    other => panic!("thread {t}: events {open:?} still unseen, the wait gave {other:?}"),
                };
                let e = open.remove(j);
                check_shared(&ops, &events, t, e);
                seen.push(e);
            }
            assert!(open.is_empty(), "thread {t}: events {open:?} never seen");
            seen.sort_unstable();
            seen
        }));
    }
    let all = {
        let (events, ops, ready) = (events.clone(), Arc::clone(&ops), ready_tx.clone());
        thread::spawn(move || {
            ready.send(()).unwrap();
            let w = wait_for_events(&events, true, Some(WAIT), false);
            assert_eq!(w.unwrap(), Wait::Signaled(0), "WE-4: the wait-all returns once all are set");
            for e in 0..SHARED_EVENTS {
                check_shared(&ops, &events, SHARED_WAITERS, e);
            }
        })
    };
    for _ in 0..=SHARED_WAITERS {
        must_get(&ready_rx, "a waiter started");
    }
    thread::sleep(Duration::from_millis(20));
    let mut order: Vec<usize> = (0..SHARED_EVENTS).collect();
    Rng::new(0x5eed_0002).shuffle(&mut order);
    write_in_order(&mut clients, &order, |e| pattern(e, SHARED_LEN));

    for (t, h) in waiters.into_iter().enumerate() {
        let seen = h.join().unwrap_or_else(|_| panic!("waiter {t} failed"));
        let mut want = shared_set(t);
        want.sort_unstable();
        assert_eq!(seen, want, "thread {t} saw each of its events once");
    }
    all.join().expect("the wait-all thread");
    for (e, op) in ops.iter().enumerate() {
        let op = op.lock().unwrap();
        assert!(op.io.is_none() && op.bytes.is_some(), "event {e}: its result was read");
    }
}
}

// ------------------------------------------------------------------------------------------------
// 3. A thread that never waits; a send whose thread exits at once
// ------------------------------------------------------------------------------------------------

backend_test! {
/// GR-1 / EV-2 / IO-1: a thread issues a receive and a send (each with an event) and never
/// calls a library wait: it only polls `is_completed()` and `overlapped_result(false)` with short
/// sleeps. The test's thread plays the peer with plain std calls (no library wait either). Both
/// results come within the bound with the right bytes, and both events end up set.
fn gr1_a_thread_that_never_waits_gets_its_results_by_polling() {
    let (s, mut client) = unassociated_tcp_pair();
    let out = pattern(31, 700);
    let inbound = pattern(32, 16);
    let (issued_tx, issued_rx) = mpsc::channel();
    let poller = {
        let out = out.clone();
        thread::spawn(move || {
            let (ev_r, ev_s) = (Event::new(), Event::new());
            let mut rio = event_io(s.recv(recv_ov(1u32, 64, &ev_r), MsgFlags::NONE));
            let mut sio = event_io(s.send(Overlapped::with_buffers(2u32, out).with_event(ev_s.clone()), MsgFlags::NONE));
            issued_tx.send(()).unwrap();
            let sent = poll_result(&mut sio, "the polled send");
            let got = poll_result(&mut rio, "the polled receive");
            eventually(|| ev_r.is_set() && ev_s.is_set(), "EV-2: both completions set their events");
            (sent.result().map_err(|e| e.kind()), *sent.context(), received(&got, "the polled receive"), *got.context())
        })
    };
    must_get(&issued_rx, "the poller issued its operations");
    let mut echoed = vec![0; out.len()];
    client.read_exact(&mut echoed).expect("the peer receives the send within the timeout");
    assert_eq!(echoed, out, "the peer got every byte of the send");
    client.write_all(&inbound).unwrap();
    let (sent, sctx, got, rctx) = poller.join().expect("the polling thread");
    assert_eq!(sent, Ok(out.len()), "WS-1: the send completes with all its bytes");
    assert_eq!((sctx, rctx), (2, 1));
    assert_eq!(got, inbound, "the receive got the peer's bytes");
}
}

backend_test! {
/// TE-1 / 1.4: a small send on an idle connection, issued by a thread that exits right after
/// the call (once dropping its handle, once handing it back), still reaches the peer, in issue
/// order, and its result is success with every byte.
fn te1_a_send_whose_thread_exits_at_once_still_reaches_the_peer() {
    let (s, mut client) = unassociated_tcp_pair();
    let first = pattern(41, 1000);
    let second = pattern(42, 1000);
    {
        let (s, data) = (s.clone(), first.clone());
        thread::spawn(move || {
            let ov = Overlapped::with_buffers(1u32, data).with_event(Event::new());
            drop(event_io(s.send(ov, MsgFlags::NONE)));
        })
        .join()
        .expect("the first sending thread");
    }
    let mut got = vec![0; first.len()];
    client.read_exact(&mut got).expect("the dropped send reaches the peer");
    assert_eq!(got, first);

    let ev = Event::new();
    let mut io = {
        let (s, data, ev) = (s.clone(), second.clone(), ev.clone());
        thread::spawn(move || event_io(s.send(Overlapped::with_buffers(2u32, data).with_event(ev), MsgFlags::NONE)))
            .join()
            .expect("the second sending thread")
    };
    let mut got = vec![0; second.len()];
    client.read_exact(&mut got).expect("the send of an exited thread reaches the peer");
    assert_eq!(got, second);
    assert_eq!(ev.wait(Some(WAIT), false).unwrap(), Wait::Signaled(0), "EV-2: its event is set");
    let ov = result_now(&mut io, "the exited thread's send");
    assert_eq!(ov.result().map_err(|e| e.kind()), Ok(second.len()), "the send succeeded with every byte");
    assert_eq!(*ov.context(), 2);
}
}

// ------------------------------------------------------------------------------------------------
// 4. Completion routines from many threads
// ------------------------------------------------------------------------------------------------

const ROUTINE_THREADS: usize = 8;
const ROUTINE_SOCKS: usize = 2;
const ROUTINE_ROUNDS: usize = 3;
const ROUTINE_LEN: usize = 20;

/// One routine call, as the routine saw it.
#[derive(Debug)]
struct Run {
    thread: ThreadId,
    ctx: usize,
    error: Option<Error>,
    data: Vec<u8>,
}

type RunLog = Arc<Mutex<Vec<Run>>>;

/// The context of thread `t`'s receive on its `k`-th socket in `round`.
fn routine_ctx(t: usize, k: usize, round: usize) -> usize {
    (t * ROUTINE_SOCKS + k) * ROUTINE_ROUNDS + round
}

fn routine_runs(log: &RunLog, t: usize, round: usize) -> usize {
    let log = log.lock().unwrap();
    log.iter().filter(|r| (0..ROUTINE_SOCKS).any(|k| r.ctx == routine_ctx(t, k, round))).count()
}

/// Thread `t` of the routine test: per round, issues a receive with a routine on each of its
/// sockets, waits (non-alertably) for the test to write, checks nothing ran, then waits
/// alertably (SleepEx, WSAWaitForMultipleEvents, WaitForSingleObjectEx in turn) until its
/// routines ran.
fn routine_thread(t: usize, socks: Vec<Socket>, log: RunLog, issued: Sender<(usize, ThreadId)>, go: Receiver<()>) {
    let never = Event::new();
    for round in 0..ROUTINE_ROUNDS {
        for (k, s) in socks.iter().enumerate() {
            let log = Arc::clone(&log);
            let ov = Overlapped::with_buffers(routine_ctx(t, k, round), BufList::with_capacity(64))
                .with_completion_routine(move |error, bytes, ov, _flags| {
                    let data = ov.buffers().gather(bytes.min(ov.buffers().total_len()));
                    log.lock().unwrap().push(Run { thread: thread::current().id(), ctx: *ov.context(), error, data });
                });
            match s.recv(ov, MsgFlags::NONE) {
                Ok(Issued::Pending) => {}
                Ok(other) => panic!("thread {t}: a receive with a routine returns Pending, got {other:?}"),
                Err(r) => panic!("thread {t}: the receive was rejected: {}", r.error),
            }
        }
        issued.send((t, thread::current().id())).unwrap();
        must_get(&go, &format!("thread {t} round {round}: the data was written"));
        // AP-1: the data is there, but nothing runs outside an alertable wait.
        assert_eq!(sleep_ex(Some(QUIET / 2), false), Wait::Timeout);
        assert_eq!(wait_for_events(&[&never], false, Some(Duration::from_millis(10)), false).unwrap(), Wait::Timeout);
        thread::sleep(Duration::from_millis(10));
        assert_eq!(
            routine_runs(&log, t, round),
            0,
            "thread {t} round {round}: a routine ran outside an alertable wait"
        );

        let deadline = Instant::now() + WAIT;
        let mut form = t + round;
        while routine_runs(&log, t, round) < ROUTINE_SOCKS {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "thread {t} round {round}: its routines did not run within {WAIT:?}");
            let w = match form % 3 {
                0 => sleep_ex(Some(left), true),
                1 => wait_for_events(&[&never], false, Some(left), true).unwrap(),
                _ => never.wait(Some(left), true).unwrap(),
            };
            assert!(matches!(w, Wait::IoCompletion | Wait::Timeout), "thread {t}: an alertable wait gave {w:?}");
            form += 1;
        }
        assert_eq!(routine_runs(&log, t, round), ROUTINE_SOCKS, "thread {t} round {round}: each routine ran once");
    }
    assert_eq!(sleep_ex(Some(QUIET), true), Wait::Timeout, "thread {t}: nothing more is queued to it");
}

backend_test! {
/// AP-1 / AP-2 / AP-4 / AP-7: eight threads each issue receives with a completion routine on
/// their own two sockets, three rounds; the peers write in a shuffled order. Nothing runs
/// while a thread waits non-alertably; in its alertable waits each thread runs exactly its own
/// routines, each once, with the right bytes; no routine runs on another thread (the test's
/// thread waits alertably too and runs none).
fn ap4_routines_from_eight_threads_run_once_each_on_their_issuer() {
    let n = ROUTINE_THREADS * ROUTINE_SOCKS;
    let (socks, mut clients) = pairs(n);
    let log: RunLog = Arc::default();
    let (issued_tx, issued_rx) = mpsc::channel();
    let mut gos = Vec::new();
    let mut threads = Vec::new();
    for t in 0..ROUTINE_THREADS {
        let (go_tx, go_rx) = mpsc::channel();
        gos.push(go_tx);
        let my_socks = socks[t * ROUTINE_SOCKS..(t + 1) * ROUTINE_SOCKS].to_vec();
        let (log, issued) = (Arc::clone(&log), issued_tx.clone());
        threads.push(thread::spawn(move || routine_thread(t, my_socks, log, issued, go_rx)));
    }
    let mut issuers: Vec<Option<ThreadId>> = vec![None; ROUTINE_THREADS];
    let mut rng = Rng::new(0x5eed_0004);
    let data = |i: usize, round: usize| pattern(routine_ctx(i / ROUTINE_SOCKS, i % ROUTINE_SOCKS, round), ROUTINE_LEN);
    for round in 0..ROUTINE_ROUNDS {
        for _ in 0..ROUTINE_THREADS {
            let (t, id) = must_get(&issued_rx, &format!("round {round}: a thread issued its receives"));
            assert_eq!(*issuers[t].get_or_insert(id), id);
        }
        let mut order: Vec<usize> = (0..n).collect();
        rng.shuffle(&mut order);
        write_in_order(&mut clients, &order, |i| data(i, round));
        for go in &gos {
            go.send(()).unwrap();
        }
        assert_eq!(sleep_ex(Some(Duration::from_millis(20)), true), Wait::Timeout, "AP-4: none is queued here");
    }
    for (t, h) in threads.into_iter().enumerate() {
        h.join().unwrap_or_else(|_| panic!("routine thread {t} failed"));
    }
    let me = thread::current().id();
    let runs = std::mem::take(&mut *log.lock().unwrap());
    assert_eq!(runs.len(), n * ROUTINE_ROUNDS, "one routine call per receive");
    let mut seen = vec![false; n * ROUTINE_ROUNDS];
    for r in &runs {
        let (i, round) = (r.ctx / ROUTINE_ROUNDS, r.ctx % ROUTINE_ROUNDS);
        let t = i / ROUTINE_SOCKS;
        assert!(!std::mem::replace(&mut seen[r.ctx], true), "the routine of {} ran twice", r.ctx);
        assert_ne!(r.thread, me, "AP-4: a routine ran on the test's thread");
        assert_eq!(Some(r.thread), issuers[t], "AP-4: the routine of {} ran on its issuing thread", r.ctx);
        assert!(r.error.is_none(), "routine {}: dwError {:?}", r.ctx, r.error);
        assert_eq!(r.data, data(i, round), "routine {}: the peer's bytes", r.ctx);
    }
}
}

// ------------------------------------------------------------------------------------------------
// 5. One wait over 10,000 events
// ------------------------------------------------------------------------------------------------

const HUGE: usize = 10_000;
const HUGE_LOOPS: usize = 2_000;

/// 10,000 events, manual-reset except every thousandth (from 500), which is auto-reset.
fn huge_events() -> Vec<Event> {
    (0..HUGE).map(|i| if i % 1000 == 500 { Event::auto(false) } else { Event::manual(false) }).collect()
}

backend_test! {
/// WE-3: one thread waits 2,000 times on the same 10,000 events, one of them set at a time (by
/// the waiting thread before the wait, or by another thread around it): each wait returns
/// exactly the index set; a manual-reset event stays set until reset, an auto-reset one is
/// consumed by the wait; nothing else is ever reported.
fn we3_wait_over_ten_thousand_events_returns_exactly_the_one_set() {
    let events = huge_events();
    let (set_tx, set_rx) = mpsc::channel::<usize>();
    let setter = {
        let events = events.clone();
        thread::spawn(move || {
            while let Ok(i) = set_rx.recv_timeout(WAIT) {
                events[i].set().unwrap();
            }
        })
    };
    let mut rng = Rng::new(0x5eed_0005);
    for n in 0..HUGE_LOOPS {
        let i = if n % 50 == 0 { rng.below(HUGE / 1000) * 1000 + 500 } else { rng.below(HUGE) };
        if n % 2 == 0 {
            events[i].set().unwrap();
        } else {
            set_tx.send(i).unwrap();
        }
        match wait_for_events(&events, false, Some(WAIT), false) {
            Ok(Wait::Signaled(got)) => assert_eq!(got, i, "wait #{n}: the index set"),
            other => panic!("wait #{n}: event {i} was set, the wait gave {other:?}"),
        }
        if events[i].is_manual_reset() {
            assert!(events[i].is_set(), "wait #{n}: a manual-reset event stays set");
            events[i].reset().unwrap();
        } else {
            assert!(!events[i].is_set(), "wait #{n}: the wait consumed the auto-reset event");
        }
        if n % 100 == 99 {
            assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Timeout, "after wait #{n}");
        }
    }
    drop(set_tx);
    setter.join().expect("the setting thread");
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Timeout);
}
}

backend_test! {
/// WE-3: over 10,000 events, with two set at once the wait returns the lower index (also when
/// the higher was set first), consuming only an auto-reset event at that index; the next wait
/// returns the other one, which stayed set.
fn we3_over_ten_thousand_events_the_lowest_set_index_wins() {
    let events = huge_events();
    // Two manual-reset events: both stay set.
    events[7_123].set().unwrap();
    events[311].set().unwrap();
    assert_eq!(wait_for_events(&events, false, Some(WAIT), false).unwrap(), Wait::Signaled(311));
    assert!(events[311].is_set() && events[7_123].is_set(), "manual-reset events stay set");
    events[311].reset().unwrap();
    assert_eq!(wait_for_events(&events, false, Some(WAIT), false).unwrap(), Wait::Signaled(7_123));
    events[7_123].reset().unwrap();

    // An auto-reset event below a manual and an auto one: only it is consumed.
    events[9_999].set().unwrap();
    events[1_500].set().unwrap();
    events[500].set().unwrap();
    assert_eq!(wait_for_events(&events, false, Some(WAIT), false).unwrap(), Wait::Signaled(500));
    assert!(!events[500].is_set(), "the wait consumed the auto-reset event it returned");
    assert!(events[1_500].is_set() && events[9_999].is_set(), "the others stay set");
    assert_eq!(wait_for_events(&events, false, Some(WAIT), false).unwrap(), Wait::Signaled(1_500));
    assert!(!events[1_500].is_set());
    assert_eq!(wait_for_events(&events, false, Some(WAIT), false).unwrap(), Wait::Signaled(9_999));
    assert_eq!(wait_for_events(&events, false, Some(WAIT), false).unwrap(), Wait::Signaled(9_999));
    events[9_999].reset().unwrap();

    // Set from another thread, both before this thread waits.
    {
        let events = events.clone();
        thread::spawn(move || {
            events[8_500].set().unwrap();
            events[2_000].set().unwrap();
        })
        .join()
        .unwrap();
    }
    assert_eq!(wait_for_events(&events, false, Some(WAIT), false).unwrap(), Wait::Signaled(2_000));
    assert!(events[2_000].is_set(), "a manual-reset event stays set");
    assert!(events[8_500].is_set(), "the auto-reset event at the higher index is untouched");
    events[2_000].reset().unwrap();
    assert_eq!(wait_for_events(&events, false, Some(WAIT), false).unwrap(), Wait::Signaled(8_500));
    assert!(!events[8_500].is_set());
    assert_eq!(wait_for_events(&events, false, POLL, false).unwrap(), Wait::Timeout);
}
}

// ------------------------------------------------------------------------------------------------
// 6. Closing an event that a thread waits on
// ------------------------------------------------------------------------------------------------

backend_test! {
/// WE-2 (as this library defines the case Windows leaves undefined): threads blocked in
/// `wait_for_events` (any, all, alertable) on sets that include an event, some attached to
/// pending receives, wake with InvalidHandle when that event is closed; a second wait on the
/// same slice fails the same way, also once a valid event in it is set. The receives go on:
/// their results come with the right bytes, and the one whose record holds the closed event
/// completes too.
fn we2_closing_an_event_fails_every_wait_that_includes_it() {
    let (socks, mut clients) = pairs(3);
    let (a, b, doomed, c) = (Event::new(), Event::auto(false), Event::new(), Event::new());
    let mut io_a = event_io(socks[0].recv(recv_ov(0u32, 32, &a), MsgFlags::NONE));
    let mut io_doomed = event_io(socks[1].recv(recv_ov(1u32, 32, &doomed), MsgFlags::NONE));
    let mut io_c = event_io(socks[2].recv(recv_ov(2u32, 32, &c), MsgFlags::NONE));
    let set = vec![a.clone(), b.clone(), doomed.clone(), c.clone()];

    let (tx, rx) = mpsc::channel();
    for (name, wait_all, alertable) in [("any", false, false), ("all", true, false), ("any alertable", false, true)] {
        let (set, tx) = (set.clone(), tx.clone());
        thread::spawn(move || {
            let _ = tx.send((name, wait_for_events(&set, wait_all, Some(LONG), alertable)));
        });
    }
    drop(tx);
    match rx.recv_timeout(QUIET) {
        Err(RecvTimeoutError::Timeout) => {}
        other => panic!("nothing is set, yet a wait returned: {other:?}"),
    }
    doomed.close().unwrap();
    for _ in 0..3 {
        let (name, r) = must_get(&rx, "a waiter woke after the close");
        assert_eq!(err_kind(r, name), ErrorKind::InvalidHandle, "wait {name}: the closed event fails the wait");
    }

    for (wait_all, alertable) in [(false, false), (true, false), (false, true)] {
        let r = wait_for_events(&set, wait_all, Some(QUIET), alertable);
        assert_eq!(err_kind(r, "second wait"), ErrorKind::InvalidHandle, "wait_all={wait_all}: after the close");
    }
    clients[0].write_all(b"to a").unwrap();
    assert_eq!(a.wait(Some(WAIT), false).unwrap(), Wait::Signaled(0), "EV-2: a's receive completes");
    assert_eq!(err_kind(wait_for_events(&set, false, POLL, false), "wait with a set"), ErrorKind::InvalidHandle);
    assert_eq!(err_kind(wait_for_events(&set, true, Some(QUIET), false), "wait-all"), ErrorKind::InvalidHandle);
    assert!(a.is_set(), "a failed wait consumed nothing");
    let ov = result_now(&mut io_a, "a");
    assert_eq!(received(&ov, "a"), b"to a");

    clients[1].write_all(b"to doomed").unwrap();
    let ov = poll_result(&mut io_doomed, "the receive holding the closed event");
    assert_eq!(received(&ov, "doomed"), b"to doomed", "the operation completes normally");
    assert_eq!(err_kind(doomed.wait(POLL, false), "closed"), ErrorKind::InvalidHandle);

    clients[2].write_all(b"to c").unwrap();
    let rest = [&b, &c];
    assert_eq!(wait_for_events(&rest, false, Some(WAIT), false).unwrap(), Wait::Signaled(1), "c still works");
    assert_eq!(received(&result_now(&mut io_c, "c"), "c"), b"to c");
    assert_eq!(*ov.context(), 1);
}
}
