//! Completion routines and alertable waits, written from the spec (`iocp-semantics.md` §4: AP-1..AP-10;
//! 1.4, 1.5, 1.7, 1.8, GX-4, GQ-6, TE-1, §2.11, §5): where a routine runs (the issuing thread, only
//! inside one of its alertable waits), what each alertable wait returns, the arguments a routine
//! receives, what an immediate success or failure queues, and what a thread's exit does to its
//! routines. Sockets are not associated with a port unless the test is about ports. Every wait is
//! bounded ([`WAIT`] for what must happen, [`QUIET`] for what must not), so a bug fails a test
//! instead of hanging it. Every test names the rule ids it checks.

#[macro_use]
mod common;

use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use common::{QUIET, WAIT, loopback, unassociated_tcp_pair};
use overlapped::{
    Accepted, BufList, CompletionPort, Error, ErrorKind, Event, Issued, MsgFlags, Overlapped, OverlappedId, Rejected,
    Shutdown, Socket, ThreadHandle, Wait, sleep_ex, wait_for_events,
};

type IssueResult = Result<Issued<u32>, Rejected<u32>>;

/// `WAIT_IO_COMPLETION` / `WSA_WAIT_IO_COMPLETION` (0xC0, spec §0.3).
const WAIT_IO_COMPLETION: u32 = 0xC0;
/// The context a user APC logs itself with, to tell it apart from a routine's record.
const USER_APC: u32 = 1000;

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// One call of a completion routine, as the routine saw it.
#[derive(Debug)]
struct Call {
    /// The thread the routine ran on.
    thread: ThreadId,
    /// `dwError` (`None` = 0).
    error: Option<Error>,
    /// `cbTransferred`.
    bytes: usize,
    /// `dwFlags`.
    flags: MsgFlags,
    /// The record's context.
    ctx: u32,
    /// The record's identity (`lpOverlapped`).
    id: OverlappedId,
    /// The first `bytes` bytes of the record's buffers.
    data: Vec<u8>,
    /// Whether the record still carries an event (`hEvent` is free for the application, AP-7).
    has_event: bool,
    /// How many routines of this log were running on the stack when this one started (1 = not
    /// nested).
    depth: usize,
}

/// A shared log of routine (and user APC) calls, in the order they ran.
#[derive(Default)]
struct Log {
    calls: Mutex<Vec<Call>>,
    depth: AtomicUsize,
    max_depth: AtomicUsize,
}

impl Log {
    fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Call>> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.lock())
    }

    fn enter(&self) -> usize {
        let depth = self.depth.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_depth.fetch_max(depth, Ordering::SeqCst);
        depth
    }

    fn leave(&self) {
        self.depth.fetch_sub(1, Ordering::SeqCst);
    }

    fn record(&self, depth: usize, error: Option<Error>, bytes: usize, ov: &Overlapped<u32>, flags: MsgFlags) {
        let data = ov.buffers().gather(bytes.min(ov.buffers().total_len()));
        self.lock().push(Call {
            thread: thread::current().id(),
            error,
            bytes,
            flags,
            ctx: *ov.context(),
            id: ov.id(),
            data,
            has_event: ov.event().is_some(),
            depth,
        });
    }

    /// A completion routine that logs its call and frees the record.
    fn routine(self: &Arc<Self>) -> impl Fn(Option<Error>, usize, Overlapped<u32>, MsgFlags) + Send + Sync + 'static {
        let log = Arc::clone(self);
        move |error, bytes, ov, flags| {
            let depth = log.enter();
            log.record(depth, error, bytes, &ov, flags);
            log.leave();
        }
    }

    /// A user APC (`QueueUserAPC`) that logs itself with context [`USER_APC`].
    fn user_apc(self: &Arc<Self>) -> impl FnOnce() + Send + 'static {
        let log = Arc::clone(self);
        move || {
            let depth = log.enter();
            let ov = Overlapped::new(USER_APC);
            log.record(depth, None, 0, &ov, MsgFlags::NONE);
            log.leave();
        }
    }
}

/// A receive record: context `ctx`, `cap` bytes of room, `log`'s routine.
fn recv_ov(ctx: u32, cap: usize, log: &Arc<Log>) -> Overlapped<u32> {
    Overlapped::with_buffers(ctx, BufList::with_capacity(cap)).with_completion_routine(log.routine())
}

/// A send record: context `ctx`, the bytes `data`, `log`'s routine.
fn send_ov(ctx: u32, data: &[u8], log: &Arc<Log>) -> Overlapped<u32> {
    Overlapped::with_buffers(ctx, data.to_vec()).with_completion_routine(log.routine())
}

/// Bounded blocking reads and writes on a std peer.
fn timed(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// A bound UDP socket, NOT associated with any port, and a std peer connected to it.
fn udp_pair() -> (Socket, UdpSocket) {
    let sock = UdpSocket::bind(loopback()).unwrap();
    let peer = UdpSocket::bind(loopback()).unwrap();
    peer.connect(sock.local_addr().unwrap()).unwrap();
    (Socket::from(sock), peer)
}

/// Accepts one connection on a std listener within [`WAIT`].
#[track_caller]
fn accept_within(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match listener.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false).unwrap();
                return (timed(s), a);
            }
            Err(e) if e.kind() == IoErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("expected a connection within {WAIT:?}: {e}"),
        }
    }
}

/// Reads exactly `n` bytes (bounded by the read timeout).
#[track_caller]
fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("the peer receives the data within the timeout");
    buf
}

/// An address where nothing listens (a listener bound and closed again).
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind(loopback()).unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// An operation with a routine must be accepted and report `WSA_IO_PENDING`, also when it completed
/// at once (AP-5).
#[track_caller]
fn pending(r: IssueResult, what: &str) {
    match r {
        Ok(Issued::Pending) => {}
        Ok(Issued::Completed(ov)) => panic!("{what}: expected Issued::Pending, got Completed({ov:?})"),
        Ok(Issued::Event(io)) => panic!("{what}: expected Issued::Pending, got Event({io:?})"),
        Err(r) => panic!("{what}: expected Issued::Pending, rejected with {}", r.error),
    }
}

/// An operation that must fail at once (1.2, 1.5).
#[track_caller]
fn rejected(r: IssueResult, what: &str) -> Rejected<u32> {
    match r {
        Err(r) => r,
        Ok(Issued::Pending) => panic!("{what}: expected an immediate failure, got Pending"),
        Ok(Issued::Completed(ov)) => panic!("{what}: expected an immediate failure, got Completed({ov:?})"),
        Ok(Issued::Event(io)) => panic!("{what}: expected an immediate failure, got Event({io:?})"),
    }
}

#[track_caller]
fn assert_error(e: Error, kind: ErrorKind, win32: u32, wsa: u32) {
    assert_eq!(e.kind(), kind, "error kind of {e}");
    assert_eq!(e.win32_error(), win32, "GetLastError view (1.8) of {e}");
    assert_eq!(e.wsa_error(), wsa, "WSAGetLastError / dwError view (1.8) of {e}");
}

/// The routine's `dwError`, which must be non-zero.
#[track_caller]
fn routine_error(c: &Call) -> Error {
    match c.error {
        Some(e) => e,
        None => panic!("expected the routine to receive an error, it got dwError 0 with {} bytes", c.bytes),
    }
}

/// A routine call that must report success (`dwError` 0).
#[track_caller]
fn assert_success(c: &Call, bytes: usize) {
    if let Some(e) = c.error {
        panic!("expected dwError 0, the routine got {e}");
    }
    assert_eq!(c.bytes, bytes, "cbTransferred");
}

/// A non-alertable pause, so that completions that are on their way reach the APC queue; it must
/// run nothing (AP-3: `SleepEx(ms, FALSE)`).
#[track_caller]
fn settle() {
    assert_eq!(sleep_ex(Some(QUIET), false), Wait::Timeout, "AP-3: a non-alertable sleep returns 0 (timeout)");
}

/// Waits alertably (`SleepEx(.., TRUE)`), bounded by [`WAIT`] overall, until `done()`.
#[track_caller]
fn alertable_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{what}: not done within {WAIT:?} of alertable waiting");
        sleep_ex(Some(left), true);
    }
}

/// Waits alertably until `n` calls are logged and returns exactly those calls.
#[track_caller]
fn run_routines(log: &Log, n: usize) -> Vec<Call> {
    alertable_until(|| log.len() >= n, &format!("expected {n} routine call(s)"));
    let calls = log.take();
    assert_eq!(calls.len(), n, "exactly {n} routine call(s): {calls:?}");
    calls
}

/// The one call that must come, run in an alertable wait of this thread.
#[track_caller]
fn run_one(log: &Log) -> Call {
    run_routines(log, 1).pop().unwrap()
}

/// An alertable wait with nothing due returns on its timeout and runs nothing.
#[track_caller]
fn assert_nothing_runs(log: &Log, what: &str) {
    assert_eq!(sleep_ex(Some(QUIET), true), Wait::Timeout, "{what}: nothing queued, the alertable sleep times out");
    let calls = log.take();
    assert!(calls.is_empty(), "{what}: no routine may run, got {calls:?}");
}

/// Polls `cond` (without alertable waits) until it holds, within [`WAIT`].
#[track_caller]
fn eventually(cond: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A receive with a routine whose data comes, either already before the test's wait
/// ([`Armed::queued`]) or while the test's thread is blocked in it ([`Armed::delayed`]).
struct Armed {
    _socket: Socket,
    log: Arc<Log>,
    writer: Option<JoinHandle<TcpStream>>,
    _client: Option<TcpStream>,
}

impl Armed {
    fn issue() -> (Socket, TcpStream, Arc<Log>) {
        let (s, client) = unassociated_tcp_pair();
        let log = Log::new();
        pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv with a routine");
        (s, client, log)
    }

    /// The routine is queued (data arrived, a non-alertable pause passed) before the wait.
    fn queued() -> Self {
        let (s, mut client, log) = Self::issue();
        client.write_all(b"wake").unwrap();
        settle();
        assert_eq!(log.len(), 0, "AP-1: nothing runs outside an alertable wait");
        Self { _socket: s, log, writer: None, _client: Some(client) }
    }

    /// The data comes 200 ms later, from another thread, while this thread waits.
    fn delayed() -> Self {
        let (s, mut client, log) = Self::issue();
        let writer = thread::spawn(move || {
            thread::sleep(QUIET * 2);
            client.write_all(b"wake").unwrap();
            client
        });
        Self { _socket: s, log, writer: Some(writer), _client: None }
    }

    /// The routine must have run exactly once, inside the wait just made, on this thread.
    #[track_caller]
    fn ran_once(mut self, what: &str) {
        let calls = self.log.take();
        if let Some(w) = self.writer.take() {
            self._client = Some(w.join().unwrap());
        }
        assert_eq!(calls.len(), 1, "{what}: the routine ran inside the wait, once: {calls:?}");
        assert_eq!(calls[0].thread, thread::current().id(), "{what}: on the waiting (issuing) thread");
        assert_eq!(calls[0].depth, 1, "{what}: not nested");
        assert_success(&calls[0], 4);
        assert_eq!(calls[0].data, b"wake");
    }
}

// ------------------------------------------------------------------------------------------------
// AP-1, AP-3, AP-4: where and when a routine runs
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AP-1 / AP-3 / AP-4 / WE-6: after the data arrived, non-alertable waits (`SleepEx(.., FALSE)`,
/// `WaitForSingleObjectEx(.., FALSE)`, `WSAWaitForMultipleEvents` any and all with
/// `fAlertable=FALSE`) run nothing and time out; then an alertable `SleepEx` runs the routine, on
/// the issuing thread, and returns `WAIT_IO_COMPLETION`.
fn ap1_ap4_routine_runs_on_the_issuing_thread_only_inside_an_alertable_wait() {
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    let ov = recv_ov(11, 16, &log);
    let id = ov.id();
    pending(s.recv(ov, MsgFlags::NONE), "recv with a routine");
    assert_eq!(sleep_ex(Some(Duration::ZERO), true), Wait::Timeout, "AP-3: nothing queued yet, SleepEx(0, TRUE) = 0");
    client.write_all(b"hello").unwrap();

    settle();
    let ev = Event::new();
    assert_eq!(ev.wait(Some(QUIET), false).unwrap(), Wait::Timeout, "Event::wait non-alertable times out");
    let other = Event::new();
    assert_eq!(wait_for_events(&[&ev, &other], false, Some(QUIET), false).unwrap(), Wait::Timeout);
    assert_eq!(wait_for_events(&[&ev, &other], true, Some(QUIET), false).unwrap(), Wait::Timeout);
    assert_eq!(log.len(), 0, "AP-1 / WE-6: non-alertable waits never run routines");

    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion, "AP-3: the alertable sleep ran the routine");
    let calls = log.take();
    assert_eq!(calls.len(), 1, "the routine ran once, inside that wait: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.thread, thread::current().id(), "AP-4: on the issuing thread");
    assert_success(c, 5);
    assert_eq!(c.data, b"hello");
    assert_eq!((c.ctx, c.id), (11, id), "AP-7: lpOverlapped is the issued record");
    assert_nothing_runs(&log, "AP-2: a routine runs once");
}
}

backend_test! {
/// AP-4: a routine is queued to the thread that issued the operation. Another thread waiting
/// alertably (SleepEx, WSAWaitForMultipleEvents) after the data arrived never runs it, even while
/// the issuing thread is blocked non-alertably; the issuing thread runs it at its own alertable
/// wait.
fn ap4_another_threads_alertable_wait_never_runs_the_routine() {
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    let (issued_tx, issued_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let issuer = {
        let (s, log) = (s.clone(), Arc::clone(&log));
        thread::spawn(move || {
            let r = s.recv(recv_ov(1, 16, &log), MsgFlags::NONE);
            let ok = matches!(r, Ok(Issued::Pending));
            issued_tx.send(ok).unwrap();
            // Blocked non-alertably until told to wait alertably.
            go_rx.recv_timeout(WAIT).expect("the test tells the issuer to go");
            alertable_until(|| log.len() >= 1, "the issuing thread runs its routine");
            thread::current().id()
        })
    };
    assert!(issued_rx.recv_timeout(WAIT).unwrap(), "recv with a routine returns Pending");
    client.write_all(b"data").unwrap();
    settle();

    assert_eq!(sleep_ex(Some(QUIET * 2), true), Wait::Timeout, "AP-4: this thread has nothing queued");
    let ev = Event::new();
    assert_eq!(wait_for_events(&[&ev], false, Some(QUIET), true).unwrap(), Wait::Timeout);
    let helper = {
        let log = Arc::clone(&log);
        thread::spawn(move || (sleep_ex(Some(QUIET), true), log.len()))
    };
    let (w, seen) = helper.join().unwrap();
    assert_eq!((w, seen), (Wait::Timeout, 0), "AP-4: a third thread's alertable wait runs nothing either");
    assert_eq!(log.len(), 0, "AP-4: no other thread ran the routine");

    go_tx.send(()).unwrap();
    let issuer_id = issuer.join().unwrap();
    let calls = log.take();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].thread, issuer_id, "AP-4: the routine ran on the issuing thread");
    assert_success(&calls[0], 4);
    assert_eq!(calls[0].data, b"data");
}
}

// ------------------------------------------------------------------------------------------------
// WAIT_IO_COMPLETION from each alertable wait (AP-1, AP-2, AP-3, WE-6, GX-4)
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AP-2 / AP-3: `SleepEx(ms, TRUE)` with a routine queued runs it and returns `WAIT_IO_COMPLETION`.
fn ap3_sleep_ex_runs_a_queued_routine_and_returns_io_completion() {
    let armed = Armed::queued();
    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion);
    armed.ran_once("SleepEx");
}
}

backend_test! {
/// AP-2 / WE-6: `WaitForSingleObjectEx(event, .., TRUE)` on an unsignalled event with a routine
/// queued runs it and returns `WAIT_IO_COMPLETION`; the event is untouched.
fn we6_event_wait_runs_a_queued_routine_and_returns_io_completion() {
    let armed = Armed::queued();
    let ev = Event::new();
    assert_eq!(ev.wait(Some(WAIT), true).unwrap(), Wait::IoCompletion);
    armed.ran_once("Event::wait");
    assert!(!ev.is_set());
}
}

backend_test! {
/// AP-2 / WE-6: `WSAWaitForMultipleEvents(fWaitAll=FALSE, fAlertable=TRUE)` with no event
/// signalled and a routine queued runs it and returns `WSA_WAIT_IO_COMPLETION`.
fn we6_wait_for_any_event_runs_a_queued_routine_and_returns_io_completion() {
    let armed = Armed::queued();
    let (a, b) = (Event::new(), Event::auto(false));
    assert_eq!(wait_for_events(&[&a, &b], false, Some(WAIT), true).unwrap(), Wait::IoCompletion);
    armed.ran_once("wait_for_events (any)");
}
}

backend_test! {
/// AP-2 / WE-6 / WE-4: `WSAWaitForMultipleEvents(fWaitAll=TRUE, fAlertable=TRUE)` with only some
/// events signalled and a routine queued runs it and returns `WSA_WAIT_IO_COMPLETION`; the
/// signalled auto-reset event is not consumed.
fn we6_wait_for_all_events_runs_a_queued_routine_and_returns_io_completion() {
    let armed = Armed::queued();
    let (set, unset) = (Event::auto(true), Event::new());
    assert_eq!(wait_for_events(&[&set, &unset], true, Some(WAIT), true).unwrap(), Wait::IoCompletion);
    armed.ran_once("wait_for_events (all)");
    assert!(set.is_set(), "WE-4: a wait-all that did not complete consumes nothing");
}
}

backend_test! {
/// GX-4: `GetQueuedCompletionStatusEx(fAlertable=TRUE)` on an empty port with a routine queued
/// runs it and fails with `WAIT_IO_COMPLETION` (0xC0).
fn gx4_get_many_alertable_on_an_empty_port_runs_the_routine_and_fails_with_io_completion() {
    let port: CompletionPort<u32> = common::port(0);
    let armed = Armed::queued();
    let mut out = Vec::new();
    let e = port.get_many_alertable(&mut out, 8, Some(WAIT)).expect_err("GX-4: no packet, APCs ran");
    assert_error(e, ErrorKind::IoCompletion, WAIT_IO_COMPLETION, WAIT_IO_COMPLETION);
    assert!(out.is_empty(), "no entry was removed: {out:?}");
    armed.ran_once("get_many_alertable");
}
}

backend_test! {
/// GX-4 / AP-10: with a packet queued on the port (posted) and a routine queued to the thread,
/// `GetQueuedCompletionStatusEx(fAlertable=TRUE)` returns the packet and does NOT run the routine;
/// the next alertable call (nothing queued on the port) runs it and fails with
/// `WAIT_IO_COMPLETION`.
fn gx4_a_queued_packet_wins_over_a_queued_routine() {
    let port: CompletionPort<u32> = common::port(0);
    let armed = Armed::queued();
    port.post(7, 42, Some(Overlapped::new(3))).unwrap();
    let mut out = Vec::new();
    let n = port.get_many_alertable(&mut out, 8, Some(WAIT)).expect("GX-4: the packet is returned");
    assert_eq!(n, 1);
    assert_eq!((out[0].key, out[0].bytes), (42, 7));
    assert_eq!(out[0].overlapped.as_ref().map(|o| *o.context()), Some(3));
    assert_eq!(armed.log.len(), 0, "GX-4: packets available -> queued APCs are not run");

    let e = port.get_many_alertable(&mut out, 8, Some(WAIT)).expect_err("GX-4: now the APCs run");
    assert_error(e, ErrorKind::IoCompletion, WAIT_IO_COMPLETION, WAIT_IO_COMPLETION);
    assert_eq!(out.len(), 1, "no further entry");
    armed.ran_once("the next get_many_alertable");
}
}

backend_test! {
/// GQ-6 / GX-4: `GetQueuedCompletionStatus` and non-alertable `GetQueuedCompletionStatusEx` never
/// run routines: with a routine queued they time out on an empty port, and return posted packets,
/// without running it; an alertable wait then does.
fn gq6_get_and_get_many_never_run_routines() {
    let port: CompletionPort<u32> = common::port(0);
    let armed = Armed::queued();
    let e = port.get(Some(QUIET)).expect_err("an empty port times out");
    assert_eq!(e.kind(), ErrorKind::Timeout, "GQ-3, not IoCompletion: {e}");
    let mut out = Vec::new();
    let e = port.get_many(&mut out, 8, Some(QUIET)).expect_err("an empty port times out");
    assert_eq!(e.kind(), ErrorKind::Timeout, "GX-3, not IoCompletion: {e}");
    port.post(1, 5, None).unwrap();
    let c = port.get(Some(WAIT)).expect("the posted packet");
    assert_eq!((c.key, c.bytes), (5, 1));
    port.post(2, 6, None).unwrap();
    assert_eq!(port.get_many(&mut out, 8, Some(WAIT)).expect("the posted packet"), 1);
    assert_eq!(armed.log.len(), 0, "GQ-6: get / get_many ran no routine");

    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion);
    armed.ran_once("SleepEx after get / get_many");
}
}

backend_test! {
/// AP-10 / WE-3: an event already signalled when an alertable wait starts wins over a queued
/// routine: the wait returns the event and the routine stays queued for the next alertable wait.
fn ap10_a_signalled_event_wins_over_a_queued_routine() {
    let armed = Armed::queued();
    let ev = Event::manual(true);
    assert_eq!(ev.wait(Some(WAIT), true).unwrap(), Wait::Signaled(0));
    assert_eq!(wait_for_events(&[&ev], false, Some(WAIT), true).unwrap(), Wait::Signaled(0));
    assert_eq!(armed.log.len(), 0, "AP-2 / AP-10: the satisfied wait ran no routine");
    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion, "the routine stayed queued");
    armed.ran_once("the next alertable wait");
}
}

backend_test! {
/// 1.10 / AP-1 / §8.4.4: the internal wait of a blocking (non-overlapped) receive is alertable: a
/// routine that completes while the thread is blocked in it runs inside the call, on this thread,
/// and the call then still returns its own data.
fn r1_10_a_blocking_receive_runs_routines_while_it_blocks() {
    let (a, ca) = unassociated_tcp_pair();
    let (b, cb) = unassociated_tcp_pair();
    let log = Log::new();
    pending(a.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv with a routine");
    let feeder = thread::spawn(move || {
        let (mut ca, mut cb) = (ca, cb);
        thread::sleep(QUIET);
        ca.write_all(b"apc").unwrap();
        thread::sleep(QUIET * 3);
        cb.write_all(b"sync").unwrap();
        (ca, cb)
    });
    let mut buf = [0u8; 16];
    let (n, _) = b.recv_blocking(&mut [&mut buf[..]], MsgFlags::NONE).expect("the blocking receive");
    let calls = log.take();
    let _peers = feeder.join().unwrap();
    assert_eq!(&buf[..n], b"sync", "the blocking call returns its own data");
    assert_eq!(calls.len(), 1, "1.10: the routine ran while the blocking receive waited: {calls:?}");
    assert_eq!(calls[0].thread, thread::current().id());
    assert_eq!(calls[0].data, b"apc");
}
}

backend_test! {
/// 1.10: a blocking receive that finds its data already there does not wait, so it runs no
/// queued routine; the routine stays queued for the next alertable wait.
fn r1_10_a_blocking_receive_that_does_not_block_runs_no_routine() {
    let armed = Armed::queued();
    let (b, mut cb) = unassociated_tcp_pair();
    cb.write_all(b"ready").unwrap();
    settle();
    let mut buf = [0u8; 16];
    let (n, _) = b.recv_blocking(&mut [&mut buf[..]], MsgFlags::NONE).expect("data already there");
    assert_eq!(&buf[..n], b"ready");
    assert_eq!(armed.log.len(), 0, "1.10: no wait, no APC delivery");
    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion);
    armed.ran_once("the next alertable wait");
}
}

// ------------------------------------------------------------------------------------------------
// AP-2: a routine arriving during an alertable wait wakes it
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AP-2 / AP-3: a routine completing while the thread is blocked in `SleepEx(long, TRUE)` wakes it;
/// the sleep returns `WAIT_IO_COMPLETION`.
fn ap2_a_routine_arriving_during_sleep_ex_wakes_it() {
    let armed = Armed::delayed();
    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion, "AP-2: woken by the routine, not the timeout");
    armed.ran_once("SleepEx woken");
}
}

backend_test! {
/// AP-2 / WE-6: a routine completing while the thread is blocked in an alertable
/// `WaitForSingleObjectEx` on an unsignalled event wakes it with `WAIT_IO_COMPLETION`.
fn ap2_a_routine_arriving_during_event_wait_wakes_it() {
    let armed = Armed::delayed();
    let ev = Event::new();
    assert_eq!(ev.wait(Some(WAIT), true).unwrap(), Wait::IoCompletion);
    armed.ran_once("Event::wait woken");
}
}

backend_test! {
/// AP-2 / WE-6: a routine completing while the thread is blocked in an alertable
/// `WSAWaitForMultipleEvents` (any and all) wakes it with `WSA_WAIT_IO_COMPLETION`.
fn ap2_a_routine_arriving_during_wait_for_events_wakes_it() {
    let (a, b) = (Event::new(), Event::manual(true));
    let armed = Armed::delayed();
    assert_eq!(wait_for_events(&[&a], false, Some(WAIT), true).unwrap(), Wait::IoCompletion);
    armed.ran_once("wait_for_events (any) woken");
    let armed = Armed::delayed();
    assert_eq!(wait_for_events(&[&a, &b], true, Some(WAIT), true).unwrap(), Wait::IoCompletion);
    armed.ran_once("wait_for_events (all) woken");
}
}

backend_test! {
/// AP-2 / GX-4: a routine completing while the thread is blocked in an alertable
/// `GetQueuedCompletionStatusEx` on an empty port wakes it: `WAIT_IO_COMPLETION`.
fn ap2_a_routine_arriving_during_get_many_alertable_wakes_it() {
    let port: CompletionPort<u32> = common::port(0);
    let armed = Armed::delayed();
    let mut out = Vec::new();
    let e = port.get_many_alertable(&mut out, 8, Some(WAIT)).expect_err("woken by the routine, not a packet");
    assert_error(e, ErrorKind::IoCompletion, WAIT_IO_COMPLETION, WAIT_IO_COMPLETION);
    armed.ran_once("get_many_alertable woken");
}
}

// ------------------------------------------------------------------------------------------------
// AP-2 / AP-1: several routines, FIFO order, user APCs
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AP-2 / AP-1: several receives complete (on three UDP sockets, in the order 2, 0, 1, not the
/// order they were issued); one alertable wait runs all their routines, in completion (FIFO)
/// order, then returns `WAIT_IO_COMPLETION`.
fn ap2_all_queued_routines_run_in_one_wait_in_completion_order() {
    let socks: Vec<Socket> = (0..3).map(|_| Socket::from(UdpSocket::bind(loopback()).unwrap())).collect();
    let peer = UdpSocket::bind(loopback()).unwrap();
    let log = Log::new();
    for (i, s) in socks.iter().enumerate() {
        pending(s.recv_from(recv_ov(i as u32, 16, &log), MsgFlags::NONE), "recv_from with a routine");
    }
    for i in [2usize, 0, 1] {
        peer.send_to(format!("to {i}").as_bytes(), socks[i].local_addr().unwrap()).unwrap();
        settle();
    }
    assert_eq!(log.len(), 0, "AP-1: nothing ran before the alertable wait");
    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion);
    let calls = log.take();
    let order: Vec<u32> = calls.iter().map(|c| c.ctx).collect();
    assert_eq!(order, [2, 0, 1], "AP-2: all queued routines ran in one wait, FIFO (completion order)");
    for c in &calls {
        assert_success(c, 4);
        assert_eq!(c.data, format!("to {}", c.ctx).as_bytes());
        assert_eq!(c.thread, thread::current().id());
    }
    assert_nothing_runs(&log, "all ran already");
}
}

backend_test! {
/// AP-2 / AP-5 / OR-2: three sends issued in a row (each completes at once) queue their routines
/// in that order; one alertable wait runs all three in order; the bytes go out in call order.
fn ap2_routines_of_several_sends_run_in_one_wait_in_order() {
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    for (i, d) in [&b"one,"[..], b"two,", b"three"].into_iter().enumerate() {
        pending(s.send(send_ov(i as u32, d, &log), MsgFlags::NONE), "send with a routine");
    }
    assert_eq!(read_n(&mut client, 13), b"one,two,three", "OR-2: sent in call order");
    settle();
    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion);
    let calls = log.take();
    assert_eq!(calls.iter().map(|c| c.ctx).collect::<Vec<_>>(), [0, 1, 2], "AP-2: FIFO, one wait: {calls:?}");
    assert_eq!(calls.iter().map(|c| c.bytes).collect::<Vec<_>>(), [4, 4, 5]);
}
}

backend_test! {
/// AP-1 / AP-2 / AP-4: completion routines and `QueueUserAPC` (from another thread) share one
/// FIFO queue per thread: routine A (completed first), the user APC, routine B (completed after
/// the APC was queued) run in that order, in one alertable wait, on this thread.
fn ap1_user_apcs_and_routines_share_one_fifo_queue() {
    let (s1, mut c1) = unassociated_tcp_pair();
    let (s2, mut c2) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s1.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv A");
    pending(s2.recv(recv_ov(2, 16, &log), MsgFlags::NONE), "recv B");
    c1.write_all(b"A").unwrap();
    settle();
    let me = ThreadHandle::current();
    let apc = log.user_apc();
    thread::spawn(move || me.queue_user_apc(apc)).join().unwrap().expect("QueueUserAPC to a live thread");
    c2.write_all(b"B").unwrap();
    settle();
    assert_eq!(log.len(), 0, "AP-1: nothing ran yet");
    assert_eq!(sleep_ex(Some(WAIT), true), Wait::IoCompletion);
    let calls = log.take();
    assert_eq!(calls.iter().map(|c| c.ctx).collect::<Vec<_>>(), [1, USER_APC, 2], "AP-2 FIFO: {calls:?}");
    assert!(calls.iter().all(|c| c.thread == thread::current().id()), "AP-4: all on this thread");
}
}

// ------------------------------------------------------------------------------------------------
// 1.7 / AP-8: notification selection
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AP-8 / 1.7 / EV-2: with a routine on the record, the record's event is ignored: issuing does not
/// reset it (a set event stays set) and the completion does not signal it (an unset event stays
/// unset); the routine runs and receives the record with its event still attached.
fn ap8_routine_takes_priority_over_the_event() {
    let (s1, mut c1) = unassociated_tcp_pair();
    let (s2, mut c2) = unassociated_tcp_pair();
    let log = Log::new();
    let unset = Event::new();
    let set = Event::manual(true);
    pending(s1.recv(recv_ov(1, 16, &log).with_event(unset.clone()), MsgFlags::NONE), "recv, routine + unset event");
    pending(s2.recv(recv_ov(2, 16, &log).with_event(set.clone()), MsgFlags::NONE), "recv, routine + set event");
    assert!(set.is_set(), "AP-8: issuing with a routine does not reset hEvent");
    c1.write_all(b"one").unwrap();
    c2.write_all(b"two").unwrap();
    let mut calls = run_routines(&log, 2);
    calls.sort_by_key(|c| c.ctx);
    assert_eq!(calls[0].data, b"one");
    assert_eq!(calls[1].data, b"two");
    assert!(calls.iter().all(|c| c.has_event), "AP-7: hEvent stays in the record, free for the application");
    assert!(!unset.is_set(), "AP-8: the completion did not signal hEvent");
    assert_eq!(unset.wait(Some(QUIET), false).unwrap(), Wait::Timeout);
    assert!(set.is_set(), "AP-8: the completion did not reset hEvent either");
}
}

backend_test! {
/// 1.7 / CP-10 / 1.5: a record with a routine on a port-associated socket is refused at once with
/// `WSAEINVAL` (Rejected, InvalidArgument 87 / 10022), the record comes back with its context,
/// buffers and routine, nothing ever runs, no packet is queued, and the data is left for the next
/// (port-notified) receive.
fn r1_7_routine_on_a_port_associated_socket_is_rejected() {
    let port: CompletionPort<u32> = common::port(0);
    let (s, mut client) = common::tcp_pair(&port, 9);
    let log = Log::new();
    let rej = rejected(s.recv(recv_ov(3, 16, &log), MsgFlags::NONE), "recv with a routine on an associated socket");
    assert_error(rej.error, ErrorKind::InvalidArgument, 87, 10022);
    let mut ov = rej.overlapped;
    assert_eq!(*ov.context(), 3, "the record comes back with its context");
    assert_eq!((ov.buffers().len(), ov.buffers().total_spare()), (1, 16), "and its buffers");
    assert!(ov.completion_routine().is_some(), "and its routine");
    let rej = rejected(s.send(send_ov(4, b"x", &log), MsgFlags::NONE), "send with a routine on an associated socket");
    assert_error(rej.error, ErrorKind::InvalidArgument, 87, 10022);
    assert_eq!(rej.overlapped.buffers().gather(1), b"x");

    client.write_all(b"data").unwrap();
    assert_nothing_runs(&log, "1.7: the routine never runs");
    common::assert_quiet(&port);

    ov.set_completion_routine(None);
    match s.recv(ov, MsgFlags::NONE) {
        Ok(Issued::Pending) => {}
        other => panic!("a port-notified recv pends: {other:?}"),
    }
    let c = common::next(&port);
    assert_eq!((c.key, c.result().expect("recv")), (9, 4));
    assert_eq!(c.overlapped.expect("the record").buffers().gather(4), b"data", "nothing consumed the data before");
    assert_eq!(log.len(), 0);
}
}

backend_test! {
/// CP-8: an operation with a routine issued before its socket was associated with a port still
/// completes through its routine (AP-4) and queues no packet; operations with a routine issued
/// after the association are refused (1.7).
fn cp8_routine_op_issued_before_association_still_runs_its_routine_and_queues_no_packet() {
    let port: CompletionPort<u32> = common::port(0);
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.recv(recv_ov(5, 16, &log), MsgFlags::NONE), "recv with a routine before association");
    port.associate(&s, 3).expect("associate with a receive pending");
    client.write_all(b"late").unwrap();
    let c = run_one(&log);
    assert_success(&c, 4);
    assert_eq!((c.ctx, c.data.as_slice()), (5, &b"late"[..]));
    common::assert_quiet(&port);
    let rej = rejected(s.recv(recv_ov(6, 16, &log), MsgFlags::NONE), "after association");
    assert_eq!(rej.error.kind(), ErrorKind::InvalidArgument);
}
}

// ------------------------------------------------------------------------------------------------
// 1.4 / AP-5 / 1.5: immediate success and immediate failure
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AP-5 / 1.4: a send that completes at once (room in the socket buffer) still returns
/// `WSA_IO_PENDING` (Issued::Pending) and queues its routine, which does not run until the next
/// alertable wait, where it gets dwError 0, all bytes and no flags.
fn ap5_an_immediately_successful_send_still_queues_its_routine() {
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.send(send_ov(8, b"at once", &log), MsgFlags::NONE), "AP-5: an immediate success");
    assert_eq!(read_n(&mut client, 7), b"at once", "the send happened");
    assert_eq!(log.len(), 0, "AP-1: not run outside an alertable wait");
    settle();
    assert_eq!(log.len(), 0, "AP-1: not run in a non-alertable wait");
    assert_eq!(sleep_ex(Some(Duration::ZERO), true), Wait::IoCompletion, "AP-3: SleepEx(0, TRUE) drains the queue");
    let calls = log.take();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_success(c, 7);
    assert_eq!(c.flags, MsgFlags::NONE, "AP-7: dwFlags is 0 for a send");
    assert_eq!(c.thread, thread::current().id());
    assert_nothing_runs(&log, "queued once");
}
}

backend_test! {
/// AP-5 / 1.4: a receive whose data is already there returns Pending and queues its routine with
/// the data.
fn ap5_a_receive_with_data_already_there_still_queues_its_routine() {
    let (s, mut client) = unassociated_tcp_pair();
    client.write_all(b"waiting").unwrap();
    settle();
    let log = Log::new();
    pending(s.recv(recv_ov(9, 64, &log), MsgFlags::NONE), "recv with data buffered");
    let c = run_one(&log);
    assert_success(&c, 7);
    assert_eq!(c.data, b"waiting");
}
}

backend_test! {
/// 1.5 / AP-5 / RV-2 / CN-7: immediate failures queue nothing: an empty buffer list (WSAEINVAL),
/// a send after `shutdown(SD_SEND)` (WSAESHUTDOWN), operations on a closed socket (WSAENOTSOCK);
/// each hands the record back, and no routine ever runs.
fn r1_5_immediate_failures_queue_no_routine() {
    let (s, _client) = unassociated_tcp_pair();
    let log = Log::new();
    let empty = || Overlapped::with_buffers(1u32, BufList::new()).with_completion_routine(log.routine());
    let rej = rejected(s.recv(empty(), MsgFlags::NONE), "recv with no buffers");
    assert_error(rej.error, ErrorKind::InvalidArgument, 87, 10022);
    assert!(rej.overlapped.completion_routine().is_some());
    let rej = rejected(s.send(empty(), MsgFlags::NONE), "send with no buffers");
    assert_error(rej.error, ErrorKind::InvalidArgument, 87, 10022);

    s.shutdown(Shutdown::Write).unwrap();
    let rej = rejected(s.send(send_ov(2, b"x", &log), MsgFlags::NONE), "send after shutdown(SD_SEND)");
    assert_eq!(rej.error.wsa_error(), 10058, "WSAESHUTDOWN: {}", rej.error);

    s.close().unwrap();
    let rej = rejected(s.recv(recv_ov(3, 16, &log), MsgFlags::NONE), "recv on a closed socket");
    assert_error(rej.error, ErrorKind::NotSocket, 6, 10038);
    assert_eq!(*rej.overlapped.context(), 3);
    let rej = rejected(s.send(send_ov(4, b"y", &log), MsgFlags::NONE), "send on a closed socket");
    assert_eq!(rej.error.kind(), ErrorKind::NotSocket);

    assert_nothing_runs(&log, "1.5: an immediate failure never notifies");
}
}

// ------------------------------------------------------------------------------------------------
// AP-7: routine arguments
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AP-7: a successful receive: dwError 0, cbTransferred = bytes, the record (same identity and
/// context) with the data in its buffers, dwFlags 0.
fn ap7_recv_routine_gets_bytes_data_and_no_flags() {
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    let ov = Overlapped::with_buffers(21u32, BufList::with_capacities(&[3, 16])).with_completion_routine(log.routine());
    let id = ov.id();
    pending(s.recv(ov, MsgFlags::NONE), "recv");
    client.write_all(b"scattered").unwrap();
    let c = run_one(&log);
    assert_success(&c, 9);
    assert_eq!(c.data, b"scattered", "RV-1: the buffers hold the data, filled in order");
    assert_eq!(c.flags, MsgFlags::NONE);
    assert_eq!((c.ctx, c.id), (21, id), "lpOverlapped is the issued record");
}
}

backend_test! {
/// AP-7 / SK-1: a graceful peer close completes a pending receive with dwError 0 and 0 bytes.
fn ap7_sk1_peer_close_gives_the_routine_zero_bytes_and_no_error() {
    let (s, client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv");
    drop(client);
    let c = run_one(&log);
    assert_success(&c, 0);
    assert_eq!(c.flags, MsgFlags::NONE);
}
}

backend_test! {
/// AP-7 / SK-2 / 1.8: a peer reset (SO_LINGER {1,0} close, RST) gives the routine
/// `WSAECONNRESET` (10054), 0 bytes.
fn ap7_sk2_peer_reset_gives_the_routine_wsaeconnreset() {
    let (s, client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv");
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);
    let c = run_one(&log);
    assert_error(routine_error(&c), ErrorKind::ConnectionReset, 64, 10054);
    assert_eq!(c.bytes, 0);
}
}

backend_test! {
/// SK-2 / 1.5 / AP-5: after a reset was reported (to a receive's routine), new receives and sends
/// fail at once with `WSAECONNRESET` (10054): Rejected, the record handed back, and no routine is
/// ever queued for them.
fn sk2_operations_after_a_reset_fail_at_once_and_queue_no_routine() {
    let (s, client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv");
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);
    assert_eq!(routine_error(&run_one(&log)).wsa_error(), 10054, "the reset reached the pending receive");

    let rej = rejected(s.send(send_ov(2, b"x", &log), MsgFlags::NONE), "SK-2: send after the reset");
    assert_error(rej.error, ErrorKind::ConnectionReset, 64, 10054);
    let r = s.recv(recv_ov(3, 16, &log), MsgFlags::NONE);
    let late = log.take();
    let outcome = match r {
        Err(rej) => format!("Rejected({})", rej.error),
        Ok(_) => {
            alertable_until(|| log.len() >= 1, "the routine of the accepted receive");
            let c = log.take().pop().unwrap();
            format!("Pending, then routine(dwError {:?}, {} bytes)", c.error.map(|e| e.wsa_error()), c.bytes)
        }
    };
    assert!(late.is_empty(), "{late:?}");
    assert!(
        outcome.starts_with("Rejected(ConnectionReset"),
        "SK-2: recv after a reset fails at once with WSAECONNRESET; got {outcome}"
    );
    assert_nothing_runs(&log, "1.5: immediate failures queue nothing");
}
}

backend_test! {
/// AP-7 / CN-2 / CN-3: `CancelIoEx(s, ov)` completes the receive with `WSA_OPERATION_ABORTED`
/// (995), 0 bytes, through its routine; a second cancel finds nothing (ERROR_NOT_FOUND).
fn ap7_cn3_cancel_by_record_gives_the_routine_operation_aborted() {
    let (s, _client) = unassociated_tcp_pair();
    let log = Log::new();
    let ov = recv_ov(1, 16, &log);
    let id = ov.id();
    pending(s.recv(ov, MsgFlags::NONE), "recv");
    s.cancel(id).expect("CN-2: the pending receive is found");
    let c = run_one(&log);
    assert_error(routine_error(&c), ErrorKind::OperationAborted, 995, 995);
    assert_eq!((c.bytes, c.id), (0, id));
    let e = s.cancel(id).expect_err("CN-2: nothing pending any more");
    assert_eq!((e.kind(), e.win32_error()), (ErrorKind::NotFound, 1168));
}
}

backend_test! {
/// AP-7 / AP-4 / CN-2 / CN-3: `CancelIoEx(s, NULL)` from another thread cancels this thread's
/// receive; its routine still runs on this (issuing) thread, with `WSA_OPERATION_ABORTED` (995).
fn ap7_cn2_cancel_all_from_another_thread_runs_the_routine_on_the_issuer() {
    let (s, _client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv");
    let other = s.clone();
    thread::spawn(move || other.cancel_all()).join().unwrap().expect("CN-2: found from any thread");
    let c = run_one(&log);
    assert_error(routine_error(&c), ErrorKind::OperationAborted, 995, 995);
    assert_eq!(c.thread, thread::current().id(), "AP-4: still the issuing thread");
}
}

backend_test! {
/// AP-7 / CN-1: `CancelIo(s)` cancels only the calling thread's operations: from another thread it
/// finds nothing (ERROR_NOT_FOUND); from the issuing thread it cancels the receive, whose routine
/// gets 995.
fn ap7_cn1_cancel_io_only_from_the_issuing_thread() {
    let (s, _client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv");
    let other = s.clone();
    let e = thread::spawn(move || other.cancel_io()).join().unwrap().expect_err("CN-1: not that thread's I/O");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_nothing_runs(&log, "still pending");
    s.cancel_io().expect("CN-1: this thread's receive");
    let c = run_one(&log);
    assert_error(routine_error(&c), ErrorKind::OperationAborted, 995, 995);
}
}

backend_test! {
/// AP-7 / 1.6 / RV-3: a datagram larger than the buffer: the routine gets `WSAEMSGSIZE` (10040),
/// cbTransferred = the bytes kept, the first bytes in the buffer, dwFlags with MSG_TRUNC.
fn ap7_truncated_datagram_gives_the_routine_wsaemsgsize_and_trunc() {
    let (s, peer) = udp_pair();
    let log = Log::new();
    pending(s.recv_from(recv_ov(1, 4, &log), MsgFlags::NONE), "recv_from into 4 bytes");
    peer.send(b"0123456789").unwrap();
    let c = run_one(&log);
    assert_error(routine_error(&c), ErrorKind::MessageTooLong, 234, 10040);
    assert_eq!(c.bytes, 4, "AP-7: cbTransferred = the bytes kept");
    assert_eq!(c.data, b"0123");
    assert!(c.flags.contains(MsgFlags::TRUNC), "dwFlags reports the truncation: {:?}", c.flags);
}
}

backend_test! {
/// AP-7: a send's routine gets dwError 0, the byte count, and dwFlags 0 (always 0 for sends), also
/// for a gathered send of several buffers.
fn ap7_send_routine_gets_bytes_and_no_flags() {
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    let bufs = BufList::from(vec![b"gat".to_vec(), b"hered".to_vec()]);
    pending(
        s.send(Overlapped::with_buffers(2u32, bufs).with_completion_routine(log.routine()), MsgFlags::NONE),
        "send",
    );
    assert_eq!(read_n(&mut client, 8), b"gathered");
    let c = run_one(&log);
    assert_success(&c, 8);
    assert_eq!(c.flags, MsgFlags::NONE, "AP-7: always 0 for sends");
    assert_eq!(c.ctx, 2);
}
}

backend_test! {
/// AP-7 / CN-5: closing a connected socket with a receive pending completes it through its routine
/// (at the next alertable wait) with `WSAECONNABORTED` (10053), 0 bytes.
fn cn5_closing_the_socket_runs_the_routine_with_connection_aborted() {
    let (s, _client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv");
    s.close().unwrap();
    let c = run_one(&log);
    assert_error(routine_error(&c), ErrorKind::ConnectionAborted, 1236, 10053);
    assert_eq!(c.bytes, 0);
    assert_eq!(c.thread, thread::current().id());
}
}

backend_test! {
/// CN-5 / AP-7: dropping the last handle of a connected socket closes it (closesocket): a pending
/// receive's routine runs at the next alertable wait with `WSAECONNABORTED` (10053).
fn cn5_dropping_the_last_handle_runs_the_routine_with_connection_aborted() {
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "recv");
    drop(s);
    let c = run_one(&log);
    assert_error(routine_error(&c), ErrorKind::ConnectionAborted, 1236, 10053);
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("the peer sees the close (EOF) within the timeout");
}
}

// ------------------------------------------------------------------------------------------------
// AP-9: routines that issue new operations
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AP-9 / AP-4 / OR-2: a routine that re-issues its record (receive after receive, three datagrams
/// already waiting) is never entered while another routine runs (depth stays 1), even though the
/// new receive completes while the routine is still running; the new routines run later on the
/// same thread, and the buffers are filled in posting order.
fn ap9_a_routine_that_reissues_is_not_nested_and_the_new_routine_runs_later() {
    let (s, peer) = udp_pair();
    for d in [b"d1", b"d2", b"d3"] {
        peer.send(d).unwrap();
    }
    let log = Log::new();
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let routine = {
        let (log, failures, sock) = (Arc::clone(&log), Arc::clone(&failures), s.clone());
        move |error: Option<Error>, bytes: usize, mut ov: Overlapped<u32>, flags: MsgFlags| {
            let depth = log.enter();
            log.record(depth, error, bytes, &ov, flags);
            if log.len() < 3 {
                ov.buffers_mut()[0].clear();
                *ov.context_mut() += 1;
                match sock.recv_from(ov, MsgFlags::NONE) {
                    Ok(Issued::Pending) => {}
                    Ok(_) => failures.lock().unwrap().push("the re-issued receive did not return Pending".into()),
                    Err(r) => failures.lock().unwrap().push(format!("the re-issued receive was rejected: {}", r.error)),
                }
                // Its datagram is already there: give it time to complete while this routine runs.
                thread::sleep(Duration::from_millis(30));
            }
            log.leave();
        }
    };
    let ov = Overlapped::with_buffers(0u32, BufList::with_capacity(16)).with_completion_routine(routine);
    pending(s.recv_from(ov, MsgFlags::NONE), "the first receive");
    alertable_until(|| log.len() >= 3, "three chained routines");
    let calls = log.take();
    assert!(failures.lock().unwrap().is_empty(), "{:?}", failures.lock().unwrap());
    assert_eq!(log.max_depth.load(Ordering::SeqCst), 1, "AP-9: routines are not nested: {calls:?}");
    assert!(calls.iter().all(|c| c.depth == 1), "AP-9: each routine started with no other running: {calls:?}");
    assert_eq!(calls.iter().map(|c| c.ctx).collect::<Vec<_>>(), [0, 1, 2]);
    let data: Vec<&[u8]> = calls.iter().map(|c| c.data.as_slice()).collect();
    assert_eq!(data, [&b"d1"[..], b"d2", b"d3"], "buffers filled in posting order");
    assert!(calls.iter().all(|c| c.thread == thread::current().id() && c.error.is_none()), "{calls:?}");
    assert_nothing_runs(&log, "the chain ended");
}
}

// ------------------------------------------------------------------------------------------------
// AcceptEx, ConnectEx, DisconnectEx with routines
// ------------------------------------------------------------------------------------------------

/// What an accept routine saw.
type AcceptCall = (ThreadId, Option<Error>, usize, u32, Vec<u8>, Option<Accepted>);

fn accept_ov(ctx: u32, bufs: BufList, got: &Arc<Mutex<Vec<AcceptCall>>>) -> Overlapped<u32> {
    let got = Arc::clone(got);
    Overlapped::with_buffers(ctx, bufs).with_completion_routine(move |error, bytes, mut ov, _| {
        let data = ov.buffers().gather(bytes.min(ov.buffers().total_len()));
        let accepted = ov.take_accepted();
        got.lock().unwrap().push((thread::current().id(), error, bytes, *ov.context(), data, accepted));
    })
}

backend_test! {
/// AX-4 / AX-8 / AP-4: `AcceptEx` (no receive buffer) with a routine pends until a client connects;
/// the routine runs on the issuing thread with dwError 0, 0 bytes, and the accepted socket
/// (`take_accepted`) with the client's address; the new socket works (a routine-notified send).
fn ax_accept_with_a_routine_hands_the_connection_to_the_routine() {
    let listener = Socket::listen_tcp(loopback(), 8).unwrap();
    let laddr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    pending(listener.accept(accept_ov(5, BufList::new(), &got)), "AcceptEx with a routine");
    sleep_ex(Some(QUIET), true);
    assert!(got.lock().unwrap().is_empty(), "no connection yet: the accept pends");
    let mut client = timed(TcpStream::connect(laddr).unwrap());
    alertable_until(|| !got.lock().unwrap().is_empty(), "the accept routine");
    let (tid, error, bytes, ctx, _, accepted) = got.lock().unwrap().pop().unwrap();
    assert_eq!(tid, thread::current().id(), "AP-4");
    assert!(error.is_none(), "dwError 0, got {error:?}");
    assert_eq!((bytes, ctx), (0, 5));
    let acc = accepted.expect("AcceptEx output in the routine's record");
    assert_eq!(acc.remote_addr, client.local_addr().unwrap(), "AX-8: the client's address");
    assert_eq!(acc.local_addr, laddr);

    let log = Log::new();
    pending(acc.socket.send(send_ov(6, b"welcome", &log), MsgFlags::NONE), "send on the accepted socket");
    assert_eq!(read_n(&mut client, 7), b"welcome");
    assert_success(&run_one(&log), 7);
}
}

backend_test! {
/// AX-4: `AcceptEx` with a receive buffer and a routine completes when the first data arrives; the
/// routine gets the bytes and the data with the accepted socket.
fn ax_accept_with_a_buffer_and_a_routine_delivers_the_first_data() {
    let listener = Socket::listen_tcp(loopback(), 8).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    pending(listener.accept(accept_ov(7, BufList::with_capacity(64), &got)), "AcceptEx with a buffer");
    let mut client = timed(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    client.write_all(b"first words").unwrap();
    alertable_until(|| !got.lock().unwrap().is_empty(), "the accept routine");
    let (_, error, bytes, ctx, data, accepted) = got.lock().unwrap().pop().unwrap();
    assert!(error.is_none(), "dwError 0, got {error:?}");
    assert_eq!((bytes, ctx), (11, 7));
    assert_eq!(data, b"first words");
    assert!(accepted.is_some(), "the accepted socket");
}
}

backend_test! {
/// CX-2 / AP-7: `ConnectEx` with a send buffer and a routine: connects, sends the buffer, and the
/// routine gets dwError 0 and the bytes sent; the socket is connected to the listener.
fn cx_connect_with_a_routine_connects_and_sends() {
    let server = TcpListener::bind(loopback()).unwrap();
    let laddr = server.local_addr().unwrap();
    let s = Socket::tcp_for(&laddr).unwrap();
    s.bind(loopback()).unwrap();
    let log = Log::new();
    pending(s.connect(laddr, send_ov(7, b"hello", &log)), "ConnectEx with a routine");
    let (mut conn, peer) = accept_within(&server);
    assert_eq!(read_n(&mut conn, 5), b"hello");
    let c = run_one(&log);
    assert_success(&c, 5);
    assert_eq!((c.ctx, c.data.as_slice(), c.flags), (7, &b"hello"[..], MsgFlags::NONE));
    assert_eq!(c.thread, thread::current().id());
    assert_eq!(s.peer_addr().unwrap(), laddr);
    assert_eq!(peer, s.local_addr().unwrap());
}
}

backend_test! {
/// CX / AP-7 / 1.8: a refused `ConnectEx` pends, then its routine gets `WSAECONNREFUSED` (10061).
fn cx_refused_connect_gives_the_routine_wsaeconnrefused() {
    let to = closed_port();
    let s = Socket::tcp_for(&to).unwrap();
    s.bind(loopback()).unwrap();
    let log = Log::new();
    let ov = Overlapped::new(8u32).with_completion_routine(log.routine());
    pending(s.connect(to, ov), "ConnectEx to a closed port");
    let c = run_one(&log);
    assert_error(routine_error(&c), ErrorKind::ConnectionRefused, 1225, 10061);
}
}

backend_test! {
/// DX-2 / CN-8 / AP-7: `DisconnectEx` with a routine: the peer sees EOF, the routine gets dwError
/// 0 and 0 bytes.
fn dx_disconnect_with_a_routine() {
    let (s, mut client) = unassociated_tcp_pair();
    let log = Log::new();
    pending(s.disconnect(Overlapped::new(9u32).with_completion_routine(log.routine())), "DisconnectEx");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("EOF within the timeout");
    assert!(rest.is_empty());
    let c = run_one(&log);
    assert_success(&c, 0);
    assert_eq!(c.ctx, 9);
}
}

// ------------------------------------------------------------------------------------------------
// TE-1 / AP-6: thread exit
// ------------------------------------------------------------------------------------------------

/// A context that shows when its record is freed.
struct Tracked(Arc<AtomicBool>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

backend_test! {
/// TE-1 / AP-6: a thread that issues a receive with a routine and exits without an alertable wait:
/// the receive is cancelled with the thread, its routine never runs (not even after data arrives,
/// nor on another thread), its record is freed (the context's Drop runs and its Arc is released),
/// QueueUserAPC to the thread fails with ERROR_GEN_FAILURE (31); the socket and the peer go on
/// working (the data is there for a new receive; another connection works).
fn te1_ap6_routine_of_an_exited_thread_never_runs_and_its_record_is_freed() {
    let listener = TcpListener::bind(loopback()).unwrap();
    let mut client = timed(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    let s = Socket::from(listener.accept().unwrap().0);
    let dropped = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicBool::new(false));
    let (issued, handle) = {
        let (s, dropped, ran) = (s.clone(), Arc::clone(&dropped), Arc::clone(&ran));
        thread::spawn(move || {
            let ov = Overlapped::with_buffers(Tracked(dropped), BufList::with_capacity(16))
                .with_completion_routine(move |_, _, _, _| ran.store(true, Ordering::SeqCst));
            let issued = matches!(s.recv(ov, MsgFlags::NONE), Ok(Issued::Pending));
            (issued, ThreadHandle::current())
        })
        .join()
        .unwrap()
    };
    assert!(issued, "recv with a routine returns Pending");
    eventually(|| dropped.load(Ordering::SeqCst), "TE-1: the exited thread's record is freed");
    eventually(|| Arc::strong_count(&dropped) == 1, "the record's context released its Arc");
    assert_eq!(Arc::strong_count(&ran), 1, "the routine (owning the other Arc) was freed too");

    client.write_all(b"too late").unwrap();
    settle();
    assert_eq!(sleep_ex(Some(QUIET), true), Wait::Timeout, "AP-4: not queued to this thread");
    assert!(!ran.load(Ordering::SeqCst), "AP-6: the routine of an exited thread never runs");

    assert!(!handle.is_alive());
    let e = handle.queue_user_apc(|| {}).expect_err("AP-6: QueueUserAPC to an exited thread fails");
    assert_eq!((e.kind(), e.win32_error()), (ErrorKind::ThreadExited, 31));

    let log = Log::new();
    pending(s.recv(recv_ov(1, 16, &log), MsgFlags::NONE), "a new receive on the same socket");
    let c = run_one(&log);
    assert_success(&c, 8);
    assert_eq!(c.data, b"too late", "the cancelled receive took none of the data");

    let mut client2 = timed(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    let s2 = Socket::from(listener.accept().unwrap().0);
    pending(s2.recv(recv_ov(2, 16, &log), MsgFlags::NONE), "a receive on another connection");
    client2.write_all(b"still here").unwrap();
    assert_eq!(run_one(&log).data, b"still here");
}
}

backend_test! {
/// AP-6 / TE-1: a routine already queued (its receive completed) when its thread exits without an
/// alertable wait is discarded with the thread's APC queue: it never runs, and its record is freed.
fn ap6_a_queued_routine_is_discarded_when_its_thread_exits() {
    let (s, mut client) = unassociated_tcp_pair();
    let dropped = Arc::new(AtomicBool::new(false));
    let ran = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let exiting = {
        let (s, dropped, ran) = (s.clone(), Arc::clone(&dropped), Arc::clone(&ran));
        thread::spawn(move || {
            let ov = Overlapped::with_buffers(Tracked(dropped), BufList::with_capacity(16))
                .with_completion_routine(move |_, _, _, _| ran.store(true, Ordering::SeqCst));
            ready_tx.send(matches!(s.recv(ov, MsgFlags::NONE), Ok(Issued::Pending))).unwrap();
            // Blocked non-alertably while the data arrives and the routine is queued.
            let _ = go_rx.recv_timeout(WAIT);
        })
    };
    assert!(ready_rx.recv_timeout(WAIT).unwrap(), "recv with a routine returns Pending");
    client.write_all(b"queued").unwrap();
    settle();
    assert!(!dropped.load(Ordering::SeqCst), "the completed record waits in the thread's APC queue");
    go_tx.send(()).unwrap();
    exiting.join().unwrap();
    eventually(|| dropped.load(Ordering::SeqCst), "AP-6: the discarded routine's record is freed");
    assert_eq!(sleep_ex(Some(QUIET), true), Wait::Timeout, "AP-4: nothing moved to this thread");
    assert!(!ran.load(Ordering::SeqCst), "AP-6: a queued routine of an exited thread never runs");
}
}

backend_test! {
/// TE-1: an event-notified receive issued by a thread that exits (its PendingIo handed to another
/// thread first) is cancelled with the thread: it completes with `WSA_OPERATION_ABORTED` (995),
/// 0 bytes, and its event is set.
fn te1_event_notified_recv_of_an_exited_thread_completes_aborted_and_sets_its_event() {
    let (s, _client) = unassociated_tcp_pair();
    let ev = Event::new();
    let (tx, rx) = mpsc::channel();
    {
        let (s, ev) = (s.clone(), ev.clone());
        thread::spawn(move || {
            let ov = Overlapped::with_buffers(4u32, BufList::with_capacity(16)).with_event(ev);
            let io = s.recv(ov, MsgFlags::NONE).ok().and_then(Issued::into_pending_io);
            tx.send(io).unwrap();
        })
        .join()
        .unwrap();
    }
    let mut io = rx.recv_timeout(WAIT).unwrap().expect("an event-notified receive returns Issued::Event");
    assert_eq!(ev.wait(Some(WAIT), false).unwrap(), Wait::Signaled(0), "TE-1: the notification still occurs");
    let ov = io.overlapped_result(false).expect("completed");
    assert_error(ov.result().expect_err("cancelled"), ErrorKind::OperationAborted, 995, 995);
    assert_eq!((ov.bytes_transferred(), *ov.context()), (0, 4));
}
}
