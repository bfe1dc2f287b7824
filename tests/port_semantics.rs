//! Conformance of the completion port itself (spec §1.4, §2 and §8): creation and association,
//! `get` / `get_many` / `post` results, the concurrency and LIFO wake-up rules with real
//! threads, FIFO ordering, skip-on-success mode, and what a closed port does.

#[macro_use]
mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::{QUIET, WAIT, assert_quiet, next, port, tcp_pair};
use overlapped::{BufList, Completion, CompletionPort, ErrorKind, Issued, MsgFlags, Overlapped, Rejected, Socket};

/// How long a test waits to be sure that a thread is *not* released.
const HOLD: Duration = Duration::from_millis(300);
/// Pause that lets a thread that announced it is entering `get` really block in it.
const SETTLE: Duration = Duration::from_millis(100);
/// Bound on any wait a worker thread makes, so a broken port cannot hang a test forever.
const WORKER_WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers local to this file.
// ---------------------------------------------------------------------------------------------

#[track_caller]
fn assert_pending<C: Send + 'static>(r: Result<Issued<C>, Rejected<C>>) {
    match r {
        Ok(Issued::Pending) => {}
        Ok(Issued::Event(_)) => panic!("an associated socket's operation reports through its port"),
        Ok(Issued::Completed(_)) => panic!("expected Issued::Pending, got Issued::Completed"),
        Err(r) => panic!("expected Issued::Pending, got {r}"),
    }
}

fn recv_ov(ctx: u32, len: usize) -> Overlapped<u32> {
    Overlapped::with_buffers(ctx, BufList::with_capacity(len))
}

/// The received bytes of a completed receive record.
fn received<C: Send + 'static>(ov: &Overlapped<C>, n: usize) -> Vec<u8> {
    ov.buffers().gather(n)
}

/// Resets a std TCP stream: `SO_LINGER {1, 0}` then close, so the peer sees an RST (CN-9).
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)).unwrap();
    drop(stream);
}

/// A context whose drop is counted, to prove a record was freed, and freed once.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the controlled worker threads do.
enum Cmd {
    /// `get` on the worker's port (bounded by [`WORKER_WAIT`]).
    Get,
    /// `get` with a zero timeout (a poll) on the worker's port.
    Poll,
    /// `get` on another port, with a zero timeout.
    PollOther(CompletionPort<u32>),
    /// Enter `overlapped::blocking` and stay there until the receiver gets a message.
    Blocking(Receiver<()>),
    /// End the thread.
    Exit,
}

/// What the controlled worker threads report.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Entering(String),
    Got { who: String, key: usize, bytes: usize },
    Failed { who: String, kind: ErrorKind },
    InBlocking(String),
    LeftBlocking(String),
}

/// A named thread that calls the port only when told to, and reports what happened.
struct Worker {
    name: String,
    cmd: Option<Sender<Cmd>>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(port: &CompletionPort<u32>, name: &str, events: &Sender<Ev>) -> Self {
        let (tx, rx) = mpsc::channel::<Cmd>();
        let port = port.clone();
        let events = events.clone();
        let handle = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let me = thread::current().name().unwrap().to_string();
                let report = |r: Result<Completion<u32>, overlapped::Error>| match r {
                    Ok(c) => Ev::Got { who: me.clone(), key: c.key, bytes: c.bytes },
                    Err(e) => Ev::Failed { who: me.clone(), kind: e.kind() },
                };
                // Bounded: the loop ends when the test drops the command sender.
                while let Ok(cmd) = rx.recv() {
                    let ev = match cmd {
                        Cmd::Get => {
                            let _ = events.send(Ev::Entering(me.clone()));
                            report(port.get(Some(WORKER_WAIT)))
                        }
                        Cmd::Poll => report(port.get(Some(Duration::ZERO))),
                        Cmd::PollOther(other) => report(other.get(Some(Duration::ZERO))),
                        Cmd::Blocking(until) => {
                            overlapped::blocking(|| {
                                let _ = events.send(Ev::InBlocking(me.clone()));
                                let _ = until.recv_timeout(WORKER_WAIT);
                            });
                            Ev::LeftBlocking(me.clone())
                        }
                        Cmd::Exit => return,
                    };
                    if events.send(ev).is_err() {
                        return;
                    }
                }
            })
            .unwrap();
        Self { name: name.to_string(), cmd: Some(tx), handle: Some(handle) }
    }

    fn send(&self, cmd: Cmd) {
        self.cmd.as_ref().unwrap().send(cmd).unwrap();
    }

    /// Tells the worker to enter `get`, and returns once it is (almost certainly) blocked there.
    #[track_caller]
    fn enter_get(&self, events: &Receiver<Ev>) {
        self.send(Cmd::Get);
        assert_eq!(expect(events), Ev::Entering(self.name.clone()));
        thread::sleep(SETTLE);
    }

    /// Ends the thread and waits for it (it must not be inside `get` any more).
    fn exit(mut self) {
        if let Some(tx) = self.cmd.take() {
            let _ = tx.send(Cmd::Exit);
        }
        if let Some(h) = self.handle.take() {
            h.join().expect("worker panicked");
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Dropping the sender ends the command loop once the worker is back from the port.
        self.cmd.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[track_caller]
fn expect(events: &Receiver<Ev>) -> Ev {
    match events.recv_timeout(WAIT) {
        Ok(ev) => ev,
        Err(e) => panic!("expected an event from a worker thread, got {e:?}"),
    }
}

#[track_caller]
fn expect_none(events: &Receiver<Ev>) {
    match events.recv_timeout(HOLD) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(ev) => panic!("expected no worker to be released, got {ev:?}"),
        Err(e) => panic!("worker channel: {e:?}"),
    }
}

fn got(who: &str, key: usize, bytes: usize) -> Ev {
    Ev::Got { who: who.to_string(), key, bytes }
}

fn closed(who: &str) -> Ev {
    Ev::Failed { who: who.to_string(), kind: ErrorKind::PortClosed }
}

/// Collects `n` events and sorts them, for checks where their order is not specified.
#[track_caller]
fn expect_set(events: &Receiver<Ev>, n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|_| format!("{:?}", expect(events))).collect();
    v.sort();
    v
}

fn sorted(evs: Vec<Ev>) -> Vec<String> {
    let mut v: Vec<String> = evs.into_iter().map(|e| format!("{e:?}")).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// 2.1 Creation and association
// ---------------------------------------------------------------------------------------------

backend_test! {
/// CP-5: a concurrency value of 0 means the number of processors (spec §8.4.2: the
/// process's available parallelism), both as reported and in how many threads run at once.
fn cp5_concurrency_zero_is_number_of_cpus() {
    let cpus = thread::available_parallelism().unwrap().get();
    let p: CompletionPort<u32> = CompletionPort::new(0).unwrap();
    assert_eq!(p.concurrency(), cpus);
    let b: CompletionPort<u32> = CompletionPort::<u32>::builder().concurrency(0).build().unwrap();
    assert_eq!(b.concurrency(), cpus);
    let three: CompletionPort<u32> = CompletionPort::new(3).unwrap();
    assert_eq!(three.concurrency(), 3);

    // Behaviour: with cpus + 1 waiting threads and cpus + 1 packets, exactly `cpus` threads run.
    let (etx, events) = mpsc::channel();
    let workers: Vec<Worker> = (0..=cpus).map(|i| Worker::spawn(&p, &format!("w{i}"), &etx)).collect();
    for w in &workers {
        w.enter_get(&events);
    }
    for k in 0..=cpus {
        p.post(k, 100 + k, None).unwrap();
    }
    let mut released = Vec::new();
    for _ in 0..cpus {
        match expect(&events) {
            Ev::Got { who, .. } => released.push(who),
            other => panic!("expected a released worker, got {other:?}"),
        }
    }
    expect_none(&events); // CC-7: the last packet waits although a thread is waiting
    released.sort();
    released.dedup();
    assert_eq!(released.len(), cpus, "one packet per released thread");
    p.close();
    // The one thread still waiting wakes with PortClosed.
    match expect(&events) {
        Ev::Failed { who, kind: ErrorKind::PortClosed } => assert!(!released.contains(&who)),
        other => panic!("expected the last waiter to see PortClosed, got {other:?}"),
    }
    drop(workers);
}
}

backend_test! {
/// CP-4: a socket can be associated with one port only; a second association, with the same
/// or another port, fails (`ERROR_INVALID_PARAMETER`) and leaves the first one in force, key
/// included.
fn cp4_second_association_fails_and_first_stays() {
    let p1: CompletionPort<u32> = port(4);
    let p2: CompletionPort<u32> = port(4);
    let (server, mut client) = tcp_pair(&p1, 11);

    let again = p1.associate(&server, 22).expect_err("second association on the same port");
    assert_eq!(again.kind(), ErrorKind::AlreadyAssociated);
    assert_eq!(again.win32_error(), 87);
    let other = p2.associate(&server, 33).expect_err("second association on another port");
    assert_eq!(other.kind(), ErrorKind::AlreadyAssociated);
    assert_eq!(other.win32_error(), 87);

    // Also through a clone of the handle: it is the same socket.
    let clone = server.clone();
    assert_eq!(p2.associate(&clone, 44).unwrap_err().kind(), ErrorKind::AlreadyAssociated);

    assert_pending(server.recv(recv_ov(1, 16), MsgFlags::NONE));
    client.write_all(b"first").unwrap();
    let c = next(&p1);
    assert_eq!(c.key, 11, "the first association's key");
    assert_eq!(c.result().unwrap(), 5);
    assert_eq!(received(c.overlapped.as_ref().unwrap(), 5), b"first");
    assert_quiet(&p2);
    assert_quiet(&p1);
}
}

backend_test! {
/// CP-6: the key fixed at association accompanies every packet of that socket, and the record
/// in the packet is exactly the one the operation was issued with.
fn cp6_key_and_record_accompany_every_packet() {
    let p: CompletionPort<u32> = port(4);
    let (a, mut a_peer) = tcp_pair(&p, 7);
    let (b, mut b_peer) = tcp_pair(&p, usize::MAX);

    let mut ids = std::collections::HashMap::new();
    for (ctx, sock) in [(1u32, &a), (2, &b)] {
        let ov = recv_ov(ctx, 8);
        ids.insert(ctx, ov.id());
        assert_pending(sock.recv(ov, MsgFlags::NONE));
    }
    for (ctx, sock) in [(3u32, &a), (4, &b)] {
        let ov = Overlapped::with_buffers(ctx, b"ping".to_vec());
        ids.insert(ctx, ov.id());
        assert_pending(sock.send(ov, MsgFlags::NONE));
    }
    a_peer.write_all(b"to-a").unwrap();
    b_peer.write_all(b"to-b").unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        let c = next(&p);
        let ov = c.overlapped.as_ref().expect("an I/O packet carries its record");
        let ctx = *ov.context();
        assert_eq!(Some(&ov.id()), ids.get(&ctx), "the packet carries the issued record");
        let want_key = if ctx % 2 == 1 { 7 } else { usize::MAX };
        assert_eq!(c.key, want_key, "key of the packet for context {ctx}");
        assert_eq!(c.result().unwrap(), 4, "context {ctx}");
        if ctx <= 2 {
            let want: &[u8] = if ctx == 1 { b"to-a" } else { b"to-b" };
            assert_eq!(received(ov, 4), want);
        }
        seen.push(ctx);
    }
    seen.sort();
    assert_eq!(seen, [1, 2, 3, 4]);
    assert_quiet(&p);
}
}

// ---------------------------------------------------------------------------------------------
// 2.3 GetQueuedCompletionStatus results
// ---------------------------------------------------------------------------------------------

backend_test! {
/// GQ-1: a successful packet: status Ok, the byte count, the key and the record with the data.
fn gq1_success_packet() {
    let p: CompletionPort<u32> = port(2);
    let (server, mut client) = tcp_pair(&p, 5);
    assert_pending(server.recv(recv_ov(99, 32), MsgFlags::NONE));
    client.write_all(b"hello").unwrap();
    let c = next(&p);
    assert!(c.status.is_ok(), "{:?}", c.status);
    assert_eq!(c.key, 5);
    assert_eq!(c.bytes, 5);
    assert_eq!(c.result().unwrap(), 5);
    let ov = c.overlapped.expect("the record");
    assert_eq!(*ov.context(), 99);
    assert!(ov.is_completed());
    assert_eq!(ov.result().unwrap(), 5);
    assert_eq!(ov.bytes_transferred(), 5);
    assert_eq!(received(&ov, 5), b"hello");
    assert_eq!(ov.buffers().total_len(), 5, "the receive extended the buffer by what it wrote");
    assert_eq!(ov.buffers()[0].capacity(), 32, "the buffers come back whole");
}
}

backend_test! {
/// GQ-2: a failed operation comes back as a packet with its error (port view 64
/// `ERROR_NETNAME_DELETED`, Winsock view 10054 `WSAECONNRESET` for a reset), its key, and its
/// record with the buffers.
fn gq2_failed_operation_returns_error_and_record() {
    let p: CompletionPort<u32> = port(2);
    let (server, client) = tcp_pair(&p, 6);
    assert_pending(server.recv(recv_ov(42, 64), MsgFlags::NONE));
    thread::sleep(SETTLE); // the receive is pending before the reset arrives
    reset(client);
    let c = next(&p);
    assert_eq!(c.key, 6);
    let err = c.status.expect_err("the receive fails");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert_eq!(err.win32_error(), 64);
    assert_eq!(err.wsa_error(), 10054);
    assert_eq!(c.bytes, 0);
    assert_eq!(c.result().unwrap_err().kind(), ErrorKind::ConnectionReset);
    let ov = c.overlapped.expect("a failed operation still returns its record");
    assert_eq!(*ov.context(), 42);
    assert_eq!(ov.buffers().total_len(), 0, "a failed receive wrote nothing");
    assert_eq!(ov.buffers().total_spare(), 64, "the buffers come back whole");
    assert_eq!(ov.result().unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_quiet(&p);
}
}

backend_test! {
/// GQ-3 (and GX-3): a zero timeout polls and a finite one expires, both with `Timeout`
/// (`WAIT_TIMEOUT` 258), which is distinct from `PortClosed`.
fn gq3_timeouts_zero_and_finite() {
    let p: CompletionPort<u32> = port(2);
    let e = p.get(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert_eq!(e.win32_error(), 258);
    let e = p.get(Some(Duration::from_millis(50))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);

    // GX-3: the batch form times out the same way and adds nothing.
    let mut out = Vec::new();
    assert_eq!(p.get_many(&mut out, 8, Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(p.get_many(&mut out, 8, Some(Duration::from_millis(50))).unwrap_err().kind(), ErrorKind::Timeout);
    assert!(out.is_empty());

    // A packet posted before a zero-timeout poll is returned by it.
    p.post(1, 2, None).unwrap();
    let c = p.get(Some(Duration::ZERO)).expect("a queued packet is taken by a poll");
    assert_eq!((c.key, c.bytes), (2, 1));

    p.close();
    let e = p.get(Some(Duration::ZERO)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PortClosed, "a closed port is not a timeout");
    assert_eq!(e.win32_error(), 735);
}
}

backend_test! {
/// GQ-3: an infinite wait never times out; a post from another thread wakes it.
fn gq3_infinite_wait_woken_by_post_from_another_thread() {
    let p: CompletionPort<u32> = port(2);
    let (tx, rx) = mpsc::channel();
    let waiter = {
        let p = p.clone();
        thread::spawn(move || {
            let r = p.get(None).map(|c| (c.key, c.bytes, c.overlapped.map(|o| *o.context())));
            tx.send(r.map_err(|e| e.kind())).unwrap();
        })
    };
    thread::sleep(HOLD);
    assert!(matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)), "an infinite wait returned early");
    let poster = {
        let p = p.clone();
        thread::spawn(move || p.post(17, 23, Some(Overlapped::new(31))).unwrap())
    };
    poster.join().unwrap();
    let r = rx.recv_timeout(WAIT);
    if r.is_err() {
        p.close(); // release the waiter before failing
    }
    assert_eq!(r.expect("the waiter is woken"), Ok((23, 17, Some(31))));
    waiter.join().unwrap();
}
}

backend_test! {
/// GQ-4 / CL-1 / GX-5: closing the port wakes every waiter (single and batch) with
/// `PortClosed` (`ERROR_ABANDONED_WAIT_0` 735); later calls get the same.
fn gq4_close_wakes_every_waiter_with_port_closed() {
    let p: CompletionPort<u32> = port(2);
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for i in 0..5 {
        let p = p.clone();
        let tx = tx.clone();
        threads.push(thread::spawn(move || {
            let r = if i == 4 {
                let mut out = Vec::new();
                p.get_many(&mut out, 4, Some(WORKER_WAIT)).map(|_| out.len())
            } else {
                p.get(Some(WORKER_WAIT)).map(|c| c.key)
            };
            tx.send(r.map_err(|e| (e.kind(), e.win32_error()))).unwrap();
        }));
    }
    thread::sleep(HOLD);
    assert!(matches!(rx.try_recv(), Err(mpsc::TryRecvError::Empty)), "a waiter returned before the close");
    p.close();
    assert!(p.is_closed());
    for _ in 0..5 {
        let r = rx.recv_timeout(WAIT).expect("every waiter wakes");
        assert_eq!(r, Err((ErrorKind::PortClosed, 735)));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(p.get(None).unwrap_err().kind(), ErrorKind::PortClosed);
    assert_eq!(p.get_many(&mut Vec::new(), 4, None).unwrap_err().kind(), ErrorKind::PortClosed);
}
}

backend_test! {
/// GQ-5: a packet posted without a record returns Ok with no overlapped, not a timeout.
fn gq5_posted_packet_without_overlapped() {
    let p: CompletionPort<u32> = port(2);
    p.post(0, 0, None).unwrap();
    let c = p.get(Some(WAIT)).expect("a posted packet, not a timeout");
    assert!(c.status.is_ok());
    assert!(c.overlapped.is_none());
    assert_eq!((c.key, c.bytes), (0, 0));
    assert_eq!(c.result().unwrap(), 0);
}
}

// ---------------------------------------------------------------------------------------------
// 2.4 GetQueuedCompletionStatusEx
// ---------------------------------------------------------------------------------------------

backend_test! {
/// GX-1: the batch form removes up to `max` packets, in FIFO order, each with its key, bytes,
/// record and a success status for posted packets.
fn gx1_get_many_fifo_up_to_max() {
    let p: CompletionPort<u32> = port(2);
    for k in 1..=5usize {
        p.post(k * 10, k, Some(Overlapped::new(k as u32 + 100))).unwrap();
    }
    let mut out = Vec::new();
    assert_eq!(p.get_many(&mut out, 3, Some(WAIT)).unwrap(), 3);
    assert_eq!(out.len(), 3);
    let mut more = Vec::new();
    assert_eq!(p.get_many(&mut more, 10, Some(WAIT)).unwrap(), 2);
    assert_eq!(more.len(), 2);
    out.append(&mut more);
    for (i, c) in out.iter().enumerate() {
        let k = i + 1;
        assert_eq!((c.key, c.bytes), (k, k * 10), "entry {i}");
        assert!(c.status.is_ok(), "posted packets succeed");
        assert_eq!(*c.overlapped.as_ref().unwrap().context(), k as u32 + 100);
    }
    assert_eq!(p.get_many(&mut more, 10, Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::Timeout);
}
}

backend_test! {
/// GX-2: success of the batch call does not mean every entry succeeded: each entry carries its
/// own status.
fn gx2_get_many_reports_status_per_entry() {
    let p: CompletionPort<u32> = port(2);
    let (ok_sock, mut ok_peer) = tcp_pair(&p, 1);
    let (bad_sock, bad_peer) = tcp_pair(&p, 2);
    assert_pending(ok_sock.recv(recv_ov(1, 16), MsgFlags::NONE));
    assert_pending(bad_sock.recv(recv_ov(2, 16), MsgFlags::NONE));
    thread::sleep(SETTLE);
    ok_peer.write_all(b"fine").unwrap();
    reset(bad_peer);
    p.post(0, 3, None).unwrap();

    let mut out = Vec::new();
    for _ in 0..10 {
        if out.len() >= 3 {
            break;
        }
        p.get_many(&mut out, 8, Some(WAIT)).expect("packets come");
    }
    assert_eq!(out.len(), 3);
    out.sort_by_key(|c| c.key);
    assert_eq!(out[0].result().unwrap(), 4);
    assert_eq!(received(out[0].overlapped.as_ref().unwrap(), 4), b"fine");
    assert_eq!(out[1].status.unwrap_err().kind(), ErrorKind::ConnectionReset);
    assert_eq!(*out[1].overlapped.as_ref().unwrap().context(), 2);
    assert!(out[2].status.is_ok());
    assert!(out[2].overlapped.is_none());
}
}

// ---------------------------------------------------------------------------------------------
// 2.5 PostQueuedCompletionStatus
// ---------------------------------------------------------------------------------------------

backend_test! {
/// PQ-1: a posted packet carries exactly the bytes, key and record given, with a success
/// status; nothing is validated (extreme values, a record that was never issued).
fn pq1_post_carries_exact_values() {
    let p: CompletionPort<u32> = port(2);
    let ov = Overlapped::with_buffers(0xDEAD, vec![vec![1u8, 2, 3], vec![4, 5]]);
    let id = ov.id();
    p.post(usize::MAX, usize::MAX - 1, Some(ov)).unwrap();
    p.post(0, 0, Some(Overlapped::new(7))).unwrap();
    let c = next(&p);
    assert_eq!(c.bytes, usize::MAX);
    assert_eq!(c.key, usize::MAX - 1);
    assert!(c.status.is_ok());
    let ov = c.overlapped.unwrap();
    assert_eq!(ov.id(), id, "the very record that was posted");
    assert_eq!(*ov.context(), 0xDEAD);
    assert_eq!(**ov.buffers(), vec![vec![1u8, 2, 3], vec![4, 5]]);
    let c = next(&p);
    assert_eq!((c.bytes, c.key), (0, 0));
    assert_eq!(*c.overlapped.unwrap().context(), 7);
}
}

backend_test! {
/// PQ-2 / OR-1: posted packets share one FIFO queue with I/O packets: an I/O completion that
/// happened between two posts is dequeued between them.
fn pq2_posted_and_io_packets_share_the_fifo() {
    let p: CompletionPort<u32> = port(2);
    let (server, mut client) = tcp_pair(&p, 50);
    assert_pending(server.recv(recv_ov(9, 16), MsgFlags::NONE));
    thread::sleep(SETTLE);
    p.post(1, 1, None).unwrap();
    client.write_all(b"io").unwrap();
    thread::sleep(HOLD); // the receive has completed: its packet is queued now (Windows)
    p.post(2, 2, None).unwrap();

    let keys: Vec<usize> = (0..3).map(|_| next(&p).key).collect();
    assert_eq!(keys, [1, 50, 2], "single consumer sees packets in the order they were queued");
}
}

backend_test! {
/// PQ-3 (a): the worker-shutdown idiom: each of N workers exits on a sentinel packet, after
/// the work queued before the sentinels has been taken; all join.
fn pq3_sentinel_per_worker_shuts_the_pool_down() {
    const WORKERS: usize = 4;
    const WORK: usize = 40;
    const SENTINEL: usize = usize::MAX;
    let p: CompletionPort<u32> = port(2);
    let (tx, rx) = mpsc::channel();
    let pool: Vec<JoinHandle<Vec<usize>>> = (0..WORKERS)
        .map(|_| {
            let p = p.clone();
            let tx = tx.clone();
            thread::spawn(move || {
                let mut done = Vec::new();
                for _ in 0..=WORK {
                    let c = p.get(Some(WORKER_WAIT)).expect("a packet before the sentinel");
                    if c.key == SENTINEL {
                        tx.send(()).unwrap();
                        return done;
                    }
                    done.push(c.key);
                }
                panic!("no sentinel");
            })
        })
        .collect();
    for k in 0..WORK {
        p.post(0, k, None).unwrap();
    }
    for _ in 0..WORKERS {
        p.post(0, SENTINEL, None).unwrap();
    }
    for i in 0..WORKERS {
        rx.recv_timeout(WAIT).unwrap_or_else(|e| panic!("worker {i} did not see its sentinel: {e:?}"));
    }
    let mut all: Vec<usize> = pool.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort();
    assert_eq!(all, (0..WORK).collect::<Vec<_>>(), "every work packet taken exactly once");
    assert_eq!(p.get(Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::Timeout, "one sentinel each");
}
}

// ---------------------------------------------------------------------------------------------
// 2.2 Concurrency, with real threads
// ---------------------------------------------------------------------------------------------

backend_test! {
/// CC-1 / CC-5 / CC-7: with concurrency 1 and three waiting threads, three packets release
/// one thread only (the most recent waiter, with the oldest packet); the others stay blocked
/// although packets are queued; the running thread, calling `get` again, takes the next
/// packet itself.
fn cc1_cc7_concurrency_one_runs_one_thread_at_a_time() {
    let p: CompletionPort<u32> = port(1);
    let (etx, events) = mpsc::channel();
    let a = Worker::spawn(&p, "A", &etx);
    let b = Worker::spawn(&p, "B", &etx);
    let c = Worker::spawn(&p, "C", &etx);
    a.enter_get(&events);
    b.enter_get(&events);
    c.enter_get(&events);
    for k in 1..=3 {
        p.post(k, k, None).unwrap();
    }
    assert_eq!(expect(&events), got("C", 1, 1));
    expect_none(&events);
    c.send(Cmd::Get);
    assert_eq!(expect(&events), Ev::Entering("C".into()));
    assert_eq!(expect(&events), got("C", 2, 2), "CC-5: the re-entering thread takes the next packet");
    expect_none(&events);
    c.send(Cmd::Get);
    assert_eq!(expect(&events), Ev::Entering("C".into()));
    assert_eq!(expect(&events), got("C", 3, 3));
    expect_none(&events);
    c.send(Cmd::Get);
    assert_eq!(expect(&events), Ev::Entering("C".into()));
    thread::sleep(SETTLE);
    p.close();
    assert_eq!(expect_set(&events, 3), sorted(vec![closed("A"), closed("B"), closed("C")]));
}
}

backend_test! {
/// CC-5 / CC-7: a running thread that calls `get` again while packets are queued takes the
/// oldest one at once, even with a zero timeout, before a thread that has waited longer; a
/// thread entering `get` while the running one holds the only slot blocks.
fn cc5_reentering_thread_takes_queued_packet_before_older_waiter() {
    let p: CompletionPort<u32> = port(1);
    let (etx, events) = mpsc::channel();
    let old = Worker::spawn(&p, "old", &etx);
    let run = Worker::spawn(&p, "run", &etx);
    old.enter_get(&events);
    run.enter_get(&events);
    p.post(1, 1, None).unwrap();
    assert_eq!(expect(&events), got("run", 1, 1), "CC-4: most recent waiter");
    p.post(2, 2, None).unwrap();
    p.post(3, 3, None).unwrap();
    expect_none(&events); // CC-7: "old" stays blocked
    // CC-7: a thread newly entering `get` while `run` runs blocks too, packets queued or not.
    let late = Worker::spawn(&p, "late", &etx);
    late.enter_get(&events);
    expect_none(&events);
    run.send(Cmd::Poll);
    assert_eq!(expect(&events), got("run", 2, 2));
    run.send(Cmd::Poll);
    assert_eq!(expect(&events), got("run", 3, 3));
    run.send(Cmd::Poll);
    assert_eq!(expect(&events), Ev::Failed { who: "run".into(), kind: ErrorKind::Timeout });
    expect_none(&events);
    p.close();
    assert_eq!(expect_set(&events, 2), sorted(vec![closed("late"), closed("old")]));
}
}

backend_test! {
/// CC-4: waiters are released LIFO, one per packet: A, B, C wait in that order; packets go to
/// C, then B, then A.
fn cc4_lifo_wake_for_posted_packets() {
    let p: CompletionPort<u32> = port(4);
    let (etx, events) = mpsc::channel();
    let workers: Vec<Worker> = ["A", "B", "C"].iter().map(|n| Worker::spawn(&p, n, &etx)).collect();
    for w in &workers {
        w.enter_get(&events);
    }
    p.post(10, 1, None).unwrap();
    assert_eq!(expect(&events), got("C", 1, 10));
    expect_none(&events); // one packet, one thread
    p.post(20, 2, None).unwrap();
    assert_eq!(expect(&events), got("B", 2, 20));
    expect_none(&events);
    p.post(30, 3, None).unwrap();
    assert_eq!(expect(&events), got("A", 3, 30));
    expect_none(&events);
    p.close();
    drop(workers);
}
}

backend_test! {
/// CC-4 with a real I/O completion: data arriving for a pending receive releases the most
/// recent waiter, and only it.
fn cc4_lifo_wake_for_io_completion() {
    let p: CompletionPort<u32> = port(4);
    let (server, mut client) = tcp_pair(&p, 77);
    assert_pending(server.recv(recv_ov(1, 16), MsgFlags::NONE));
    let (etx, events) = mpsc::channel();
    let workers: Vec<Worker> = ["A", "B", "C"].iter().map(|n| Worker::spawn(&p, n, &etx)).collect();
    for w in &workers {
        w.enter_get(&events);
    }
    client.write_all(b"lifo!").unwrap();
    assert_eq!(expect(&events), got("C", 77, 5));
    expect_none(&events);
    // The other two are still waiting, in order: the next packet goes to B.
    p.post(0, 1, None).unwrap();
    assert_eq!(expect(&events), got("B", 1, 0));
    expect_none(&events);
    p.close();
    assert_eq!(expect(&events), closed("A"));
    drop(workers);
}
}

backend_test! {
/// CC-3 / CC-6: a running thread inside `overlapped::blocking` leaves the active count, so a
/// waiter is released with the queued packet; when it comes back `active` exceeds `max` and
/// no thread is released until it falls below `max` again.
fn cc3_cc6_blocking_section_releases_another_waiter() {
    let p: CompletionPort<u32> = port(1);
    let (etx, events) = mpsc::channel();
    let w1 = Worker::spawn(&p, "W1", &etx);
    let r = Worker::spawn(&p, "R", &etx);
    let w2 = Worker::spawn(&p, "W2", &etx);
    w1.enter_get(&events);
    r.enter_get(&events);
    p.post(1, 1, None).unwrap();
    assert_eq!(expect(&events), got("R", 1, 1));
    p.post(2, 2, None).unwrap();
    expect_none(&events); // R runs: the packet waits (CC-7)

    let (unblock, until) = mpsc::channel();
    r.send(Cmd::Blocking(until));
    assert_eq!(expect_set(&events, 2), sorted(vec![Ev::InBlocking("R".into()), got("W1", 2, 2)]));
    expect_none(&events);

    unblock.send(()).unwrap();
    assert_eq!(expect(&events), Ev::LeftBlocking("R".into()));
    // Now R and W1 both run: active 2 > max 1.
    w2.enter_get(&events);
    p.post(3, 3, None).unwrap();
    expect_none(&events); // CC-6: nobody released while active >= max
    r.enter_get(&events); // R waits again: active 1 == max, still nobody runs
    expect_none(&events);
    w1.send(Cmd::Get); // active 0: W1 takes the queued packet itself (CC-5)
    assert_eq!(expect(&events), Ev::Entering("W1".into()));
    assert_eq!(expect(&events), got("W1", 3, 3));
    expect_none(&events);
    p.close();
    assert_eq!(expect_set(&events, 2), sorted(vec![closed("R"), closed("W2")]));
}
}

backend_test! {
/// CC-2 / CC-3: a running thread that exits stops counting toward the concurrency: a waiter is
/// released with the queued packet.
fn cc3_thread_exit_releases_a_waiter() {
    let p: CompletionPort<u32> = port(1);
    let (etx, events) = mpsc::channel();
    let w = Worker::spawn(&p, "W", &etx);
    let r = Worker::spawn(&p, "R", &etx);
    w.enter_get(&events);
    r.enter_get(&events);
    p.post(1, 1, None).unwrap();
    assert_eq!(expect(&events), got("R", 1, 1));
    p.post(2, 2, None).unwrap();
    expect_none(&events);
    r.exit();
    assert_eq!(expect(&events), got("W", 2, 2));
    p.close();
}
}

backend_test! {
/// CC-2 / CC-3: a running thread that calls `get` on another port leaves this port's active
/// count: a waiter here is released.
fn cc3_get_on_another_port_releases_a_waiter() {
    let p: CompletionPort<u32> = port(1);
    let other: CompletionPort<u32> = port(1);
    let (etx, events) = mpsc::channel();
    let w = Worker::spawn(&p, "W", &etx);
    let r = Worker::spawn(&p, "R", &etx);
    w.enter_get(&events);
    r.enter_get(&events);
    p.post(1, 1, None).unwrap();
    assert_eq!(expect(&events), got("R", 1, 1));
    p.post(2, 2, None).unwrap();
    expect_none(&events);
    r.send(Cmd::PollOther(other.clone()));
    assert_eq!(
        expect_set(&events, 2),
        sorted(vec![Ev::Failed { who: "R".into(), kind: ErrorKind::Timeout }, got("W", 2, 2)])
    );
    p.close();
}
}

// ---------------------------------------------------------------------------------------------
// 2.8 Ordering
// ---------------------------------------------------------------------------------------------

backend_test! {
/// OR-1: a single consumer sees posted packets in FIFO order.
fn or1_single_consumer_sees_fifo_order() {
    let p: CompletionPort<u32> = port(2);
    for k in 0..200usize {
        let ov = if k % 2 == 0 { Some(Overlapped::new(k as u32)) } else { None };
        p.post(k * 3, k, ov).unwrap();
    }
    for k in 0..100usize {
        let c = next(&p);
        assert_eq!((c.key, c.bytes), (k, k * 3));
        assert_eq!(c.overlapped.map(|o| *o.context()), if k % 2 == 0 { Some(k as u32) } else { None });
    }
    let mut out = Vec::new();
    for _ in 0..200 {
        if out.len() >= 100 {
            break;
        }
        p.get_many(&mut out, 7, Some(WAIT)).unwrap();
    }
    let keys: Vec<usize> = out.iter().map(|c| c.key).collect();
    assert_eq!(keys, (100..200).collect::<Vec<_>>());
    assert_quiet(&p);
}
}

// ---------------------------------------------------------------------------------------------
// 1.4 / 2.7 Immediate completion and skip-on-success mode
// ---------------------------------------------------------------------------------------------

backend_test! {
/// 1.4: without skip mode, a receive issued when data is already buffered still completes
/// through exactly one packet (and returns Pending).
fn immediate_success_without_skip_mode_still_queues_one_packet() {
    let p: CompletionPort<u32> = port(2);
    let (server, mut client) = tcp_pair(&p, 3);
    client.write_all(b"already").unwrap();
    thread::sleep(SETTLE); // the data is buffered before the receive is issued
    assert_pending(server.recv(recv_ov(1, 32), MsgFlags::NONE));
    let c = next(&p);
    assert_eq!(c.key, 3);
    assert_eq!(c.result().unwrap(), 7);
    assert_eq!(received(c.overlapped.as_ref().unwrap(), 7), b"already");
    assert_quiet(&p);
}
}

backend_test! {
/// NM-2: in skip-on-success mode a receive that finds data buffered completes inline with the
/// bytes and queues no packet; a receive with nothing buffered still pends and queues one.
fn nm2_skip_mode_immediate_recv_queues_no_packet() {
    let p: CompletionPort<u32> = port(2);
    let (server, mut client) = tcp_pair(&p, 4);
    server.set_skip_completion_port_on_success().unwrap();
    client.write_all(b"inline").unwrap();
    thread::sleep(SETTLE);
    match server.recv(recv_ov(1, 32), MsgFlags::NONE) {
        Ok(Issued::Event(_)) => panic!("an associated socket's operation reports through its port"),
        Ok(Issued::Completed(ov)) => {
            assert_eq!(*ov.context(), 1);
            assert!(ov.is_completed());
            assert_eq!(ov.result().unwrap(), 6);
            assert_eq!(received(&ov, 6), b"inline");
        }
        Ok(Issued::Pending) => panic!("data was buffered: the receive must complete inline"),
        Err(r) => panic!("{r}"),
    }
    assert_quiet(&p);

    assert_pending(server.recv(recv_ov(2, 32), MsgFlags::NONE));
    assert_quiet(&p);
    client.write_all(b"later").unwrap();
    let c = next(&p);
    assert_eq!(c.key, 4);
    assert_eq!(c.result().unwrap(), 5);
    let ov = c.overlapped.unwrap();
    assert_eq!(*ov.context(), 2);
    assert_eq!(received(&ov, 5), b"later");
    assert_quiet(&p);
}
}

backend_test! {
/// NM-2: in skip-on-success mode a send notifies exactly once: either inline (no packet) or
/// through one packet.
fn nm2_skip_mode_send_notifies_exactly_once() {
    let p: CompletionPort<u32> = port(2);
    let (server, client) = tcp_pair(&p, 8);
    server.set_skip_completion_port_on_success().unwrap();
    let r = server.send(Overlapped::with_buffers(5u32, b"small".to_vec()), MsgFlags::NONE);
    match r {
        Ok(Issued::Event(_)) => panic!("an associated socket's operation reports through its port"),
        Ok(Issued::Completed(ov)) => {
            assert_eq!(ov.result().unwrap(), 5);
            assert_quiet(&p);
        }
        Ok(Issued::Pending) => {
            let c = next(&p);
            assert_eq!((c.key, c.result().unwrap()), (8, 5));
            assert_quiet(&p);
        }
        Err(r) => panic!("{r}"),
    }
    drop(client);
}
}

backend_test! {
/// CX-4 / DX-2 (NM-2): connect, accept and disconnect always pend and queue a packet, even in
/// skip-on-success mode, also when the accept finds a connection already waiting.
fn cx4_dx2_connect_accept_disconnect_queue_packets_in_skip_mode() {
    let p: CompletionPort<u32> = port(2);
    let listener = Socket::listen_tcp(common::loopback(), 16).unwrap();
    let addr = listener.local_addr().unwrap();
    p.associate(&listener, 1).unwrap();
    listener.set_skip_completion_port_on_success().unwrap();
    let client = Socket::tcp_for(&addr).unwrap();
    client.bind(common::loopback()).unwrap();
    p.associate(&client, 2).unwrap();
    client.set_skip_completion_port_on_success().unwrap();

    assert_pending(listener.accept(Overlapped::new(10u32)));
    assert_pending(client.connect(addr, Overlapped::new(20u32)));
    let mut got_keys = Vec::new();
    for _ in 0..2 {
        let mut c = next(&p);
        assert!(c.status.is_ok(), "{:?}", c.status);
        let ov = c.overlapped.as_mut().unwrap();
        match c.key {
            1 => {
                assert_eq!(*ov.context(), 10);
                let acc = ov.take_accepted().expect("the accepted socket");
                assert_eq!(acc.remote_addr, client.local_addr().unwrap());
            }
            2 => assert_eq!(*ov.context(), 20),
            k => panic!("unexpected key {k}"),
        }
        got_keys.push(c.key);
    }
    got_keys.sort();
    assert_eq!(got_keys, [1, 2]);
    assert_quiet(&p);

    // A connection already waiting in the backlog: the accept still pends.
    let waiting = TcpStream::connect(addr).unwrap();
    thread::sleep(SETTLE);
    assert_pending(listener.accept(Overlapped::new(11u32)));
    let mut c = next(&p);
    assert_eq!(c.key, 1);
    assert!(c.status.is_ok());
    let acc = c.overlapped.as_mut().unwrap().take_accepted().unwrap();
    assert_eq!(acc.remote_addr, waiting.local_addr().unwrap());
    assert_quiet(&p);

    // DX-2: a disconnect pends and completes through a packet with 0 bytes.
    assert_pending(client.disconnect(Overlapped::new(30u32)));
    let c = next(&p);
    assert_eq!(c.key, 2);
    assert_eq!(c.result().unwrap(), 0);
    assert_eq!(*c.overlapped.unwrap().context(), 30);
    assert_quiet(&p);
}
}

// ---------------------------------------------------------------------------------------------
// 2.6 Closing the port
// ---------------------------------------------------------------------------------------------

backend_test! {
/// PostQueuedCompletionStatus on a closed port fails with `ERROR_INVALID_HANDLE` (6) and hands
/// the record back untouched.
fn cl_post_on_closed_port_returns_the_record() {
    let p: CompletionPort<u32> = port(2);
    let clone = p.clone();
    p.close();
    assert!(clone.is_closed());
    let ov = Overlapped::with_buffers(77, b"keep me".to_vec());
    let id = ov.id();
    let e = clone.post(1, 2, Some(ov)).expect_err("posting to a closed port");
    assert_eq!(e.error.kind(), ErrorKind::InvalidHandle);
    assert_eq!(e.error.win32_error(), 6);
    let back = e.overlapped.expect("the record comes back");
    assert_eq!(back.id(), id);
    assert_eq!(*back.context(), 77);
    assert_eq!(back.buffers().gather(7), b"keep me");
    let e = p.post(0, 0, None).expect_err("posting to a closed port");
    assert_eq!(e.error.kind(), ErrorKind::InvalidHandle);
    assert!(e.overlapped.is_none());
}
}

backend_test! {
/// Associating a socket with a closed port fails with `ERROR_INVALID_HANDLE`.
fn cl_associate_with_closed_port_fails() {
    let p: CompletionPort<u32> = port(2);
    p.close();
    let s = Socket::listen_tcp(common::loopback(), 4).unwrap();
    let e = p.associate(&s, 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidHandle);
    assert_eq!(e.win32_error(), 6);
}
}

backend_test! {
/// An operation issued on a socket whose port is closed is rejected with `InvalidHandle`,
/// never notifies, and hands the record back.
fn cl_issue_on_socket_of_closed_port_is_rejected() {
    let p: CompletionPort<u32> = port(2);
    let (server, _client) = tcp_pair(&p, 1);
    p.close();
    let ov = recv_ov(5, 16);
    let id = ov.id();
    match server.recv(ov, MsgFlags::NONE) {
        Err(Rejected { error, overlapped }) => {
            assert_eq!(error.kind(), ErrorKind::InvalidHandle);
            assert_eq!(overlapped.id(), id);
            assert_eq!(*overlapped.context(), 5);
            assert_eq!(overlapped.buffers().total_spare(), 16);
        }
        Ok(_) => panic!("an operation on a closed port's socket must be rejected"),
    }
    match server.send(Overlapped::with_buffers(6u32, b"x".to_vec()), MsgFlags::NONE) {
        Err(r) => {
            assert_eq!(r.error.kind(), ErrorKind::InvalidHandle);
            assert_eq!(*r.overlapped.context(), 6);
        }
        Ok(_) => panic!("an operation on a closed port's socket must be rejected"),
    }
    assert_eq!(p.get(Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::PortClosed);
}
}

backend_test! {
/// CL-1: closing the port frees the records of operations in flight and of packets still
/// queued, each exactly once.
fn cl1_close_frees_in_flight_and_queued_records_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let p: CompletionPort<Counted> = port(2);
    let (server, client) = tcp_pair(&p, 1);
    let listener = Socket::listen_tcp(common::loopback(), 4).unwrap();
    p.associate(&listener, 2).unwrap();
    assert_pending(
        server.recv(Overlapped::with_buffers(Counted(drops.clone()), BufList::with_capacity(16)), MsgFlags::NONE),
    );
    assert_pending(listener.accept(Overlapped::new(Counted(drops.clone()))));
    p.post(0, 3, Some(Overlapped::new(Counted(drops.clone())))).unwrap();
    thread::sleep(SETTLE);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "nothing freed while the port is open");

    p.close();
    for _ in 0..100 {
        if drops.load(Ordering::SeqCst) >= 3 {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(drops.load(Ordering::SeqCst), 3, "the two in-flight records and the queued one are freed");
    assert_eq!(p.get(Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::PortClosed);

    drop(server);
    drop(listener);
    drop(client);
    drop(p);
    thread::sleep(QUIET);
    assert_eq!(drops.load(Ordering::SeqCst), 3, "each record freed exactly once");
}
}
