//! Cancellation and close (spec §5, §2.6, §8.4.5): CancelIoEx / CancelIo, closesocket and port
//! close with operations in flight; every operation completes exactly once, with the status
//! the spec gives, and every descriptor is really closed afterwards.
//!
//! Every test here takes one process-wide lock: several of them compare the process's open
//! descriptor count, which other tests running in parallel would disturb.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::{QUIET, WAIT, assert_quiet, loopback, next, open_fds, port, tcp_pair};
use overlapped::{BufList, Completion, CompletionPort, Error, ErrorKind, Issued, MsgFlags, Overlapped, Socket};

/// `STATUS_CANCELLED` (spec §0.3).
const STATUS_CANCELLED: u32 = 0xC000_0120;
/// `STATUS_CONNECTION_ABORTED` (spec §0.3).
const STATUS_CONNECTION_ABORTED: u32 = 0xC000_0241;
/// A send this large cannot be absorbed by a 4 KiB send buffer and a 4 KiB receive buffer on
/// the peer that does not read, so it stays pending (WS-1).
const BIG: usize = 8 << 20;

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs the test alone among the tests of this file (see the module docs).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `cond` until it holds, for at most [`WAIT`] (never asserts how long it took).
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the process has exactly `n` open descriptors.
#[track_caller]
fn wait_for_fds(n: usize, what: &str) {
    let start = Instant::now();
    loop {
        let now = open_fds();
        if now == n {
            return;
        }
        assert!(start.elapsed() < WAIT, "{what}: {now} descriptors open, expected {n}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until descriptor `fd` no longer refers to a socket: `closesocket` released the
/// socket. The number itself stays reserved while a clone of the handle exists, so that it
/// cannot be reused under a stale handle (I/O safety); it is closed with the last clone.
#[track_caller]
fn wait_until_released(fd: RawFd, what: &str) {
    let start = Instant::now();
    loop {
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.display().to_string());
        match target {
            Ok(t) if t.starts_with("socket:") => {}
            _ => return,
        }
        assert!(start.elapsed() < WAIT, "{what}: descriptor {fd} still refers to a socket");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f` on another thread and fails the test if it does not return within [`WAIT`].
#[track_caller]
fn returns_within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WAIT).unwrap_or_else(|_| panic!("{what} did not return"))
}

/// A per-operation context that counts its drops, so a test can see each record handed back
/// or dropped exactly once.
struct Tracked {
    id: usize,
    drops: Arc<Vec<AtomicUsize>>,
}

impl Tracked {
    fn new(id: usize, drops: &Arc<Vec<AtomicUsize>>) -> Self {
        Self { id, drops: drops.clone() }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

fn drop_counters(n: usize) -> Arc<Vec<AtomicUsize>> {
    Arc::new((0..n).map(|_| AtomicUsize::new(0)).collect())
}

#[track_caller]
fn assert_each_dropped_once(drops: &[AtomicUsize]) {
    for (id, d) in drops.iter().enumerate() {
        assert_eq!(d.load(Ordering::SeqCst), 1, "record {id} dropped {} times", d.load(Ordering::SeqCst));
    }
}

fn recv_record<C: Send + 'static>(ctx: C) -> Overlapped<C> {
    Overlapped::with_buffers(ctx, BufList::with_capacity(64))
}

#[track_caller]
fn pending<C: Send + 'static>(issued: Result<Issued<C>, overlapped::Rejected<C>>) {
    match issued {
        Ok(Issued::Pending) => {}
        Ok(Issued::Event(_)) => panic!("an associated socket's operation reports through its port"),
        Ok(Issued::Completed(_)) => panic!("expected the operation to pend, it completed at once"),
        Err(r) => panic!("expected the operation to pend: {r}"),
    }
}

/// Shrinks the buffers so that a [`BIG`] send from `sock` to `client` (which does not read)
/// blocks.
fn shrink_buffers(sock: &Socket, client: &TcpStream) {
    sock.sock_ref().set_send_buffer_size(4096).unwrap();
    socket2::SockRef::from(client).set_recv_buffer_size(4096).unwrap();
}

/// The error of a completion that must have failed.
#[track_caller]
fn failed<C: Send + 'static>(c: &Completion<C>) -> Error {
    match c.status {
        Err(e) => e,
        Ok(()) => panic!("expected a failed completion, got {c:?}"),
    }
}

/// CN-3: the status of a cancelled operation in its three views.
#[track_caller]
fn assert_cancelled<C: Send + 'static>(c: &Completion<C>) {
    let e = failed(c);
    assert_eq!(e.kind(), ErrorKind::OperationAborted, "{e}");
    assert_eq!((e.win32_error(), e.wsa_error()), (995, 995), "ERROR_OPERATION_ABORTED / WSA_OPERATION_ABORTED");
    assert_eq!(e.ntstatus(), Some(STATUS_CANCELLED));
    assert_eq!(c.bytes, 0, "a cancelled operation transferred 0 bytes (CN-3)");
    let ov = c.overlapped.as_ref().expect("the record comes back with the packet");
    assert!(ov.is_completed());
    assert_eq!(ov.result().map_err(|e| e.kind()), Err(ErrorKind::OperationAborted));
    assert_eq!(ov.bytes_transferred(), 0);
}

/// CN-5: a pending receive or send on a connected TCP socket that is closed.
#[track_caller]
fn assert_connection_aborted<C: Send + 'static>(c: &Completion<C>) {
    let e = failed(c);
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted, "{e}");
    assert_eq!((e.win32_error(), e.wsa_error()), (1236, 10053), "ERROR_CONNECTION_ABORTED / WSAECONNABORTED");
    assert_eq!(e.ntstatus(), Some(STATUS_CONNECTION_ABORTED));
    let ov = c.overlapped.as_ref().expect("the record comes back with the packet");
    assert_eq!(ov.result().map_err(|e| e.kind()), Err(ErrorKind::ConnectionAborted));
}

#[track_caller]
fn assert_not_found(r: Result<(), Error>, what: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::NotFound, "{what}: {e}");
            assert_eq!(e.win32_error(), 1168, "{what}: ERROR_NOT_FOUND");
        }
        Ok(()) => panic!("{what}: expected ERROR_NOT_FOUND, something was cancelled"),
    }
}

/// The peer of a closed socket reads EOF or a reset: the descriptor was really closed, not
/// kept alive by a request in the kernel (spec §8.4.5).
#[track_caller]
fn assert_peer_sees_close(client: &mut TcpStream) {
    client.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 16];
    match client.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the peer should see EOF or a reset after close, got {other:?}"),
    }
}

fn ctx(c: &Completion<usize>) -> usize {
    *c.overlapped.as_ref().expect("an I/O packet").context()
}

// ---------------------------------------------------------------------------------------------
// CancelIoEx / CancelIo
// ---------------------------------------------------------------------------------------------

backend_test! {
/// CN-2, CN-3: `CancelIoEx(h, ov)` cancels only the operation issued with that record; it
/// completes with 995, 0 bytes, and the record comes back; the other operations on the socket
/// survive and later complete normally, in issue order (OR-2). Nothing pending → 1168.
fn cancel_by_record_cancels_only_that_operation() {
    let _g = serial();
    let port = port::<usize>(0);
    let (sock, mut client) = tcp_pair(&port, 11);
    let (other, _other_client) = tcp_pair(&port, 12);

    assert_not_found(sock.cancel(recv_record(99).id()), "cancel with nothing pending");
    assert_not_found(sock.cancel_all(), "cancel_all with nothing pending");
    assert_not_found(sock.cancel_io(), "cancel_io with nothing pending");

    let (a, b, c) = (recv_record(0usize), recv_record(1usize), recv_record(2usize));
    let (a_id, b_id) = (a.id(), b.id());
    pending(sock.recv(a, MsgFlags::NONE));
    pending(sock.recv(b, MsgFlags::NONE));
    pending(sock.recv(c, MsgFlags::NONE));
    assert_quiet(&port);

    // CN-2: the record is matched on this handle only.
    assert_not_found(other.cancel(b_id), "cancelling a record of another socket");
    assert_quiet(&port);

    sock.cancel(b_id).expect("CancelIoEx(socket, b)");
    let done = next(&port);
    assert_eq!(done.key, 11);
    assert_eq!(ctx(&done), 1, "only the cancelled record completes");
    assert_cancelled(&done);
    let back = done.overlapped.unwrap();
    assert_eq!(back.buffers().len(), 1);
    assert_eq!(back.buffers()[0].capacity(), 64, "the buffers come back with the record");
    assert!(back.buffers()[0].is_empty(), "a cancelled receive wrote nothing");
    assert_quiet(&port);
    assert_not_found(sock.cancel(b_id), "cancelling a record that already completed");

    // The survivors complete normally, in the order they were issued.
    client.write_all(b"first").unwrap();
    let first = next(&port);
    assert_eq!((first.key, ctx(&first)), (11, 0));
    assert_eq!(first.result().unwrap(), 5);
    assert_eq!(first.overlapped.as_ref().unwrap().buffers().gather(5), b"first");
    client.write_all(b"second").unwrap();
    let second = next(&port);
    assert_eq!((second.key, ctx(&second)), (11, 2));
    assert_eq!(second.result().unwrap(), 6);
    assert_eq!(second.overlapped.as_ref().unwrap().buffers().gather(6), b"second");
    assert_quiet(&port);

    assert_not_found(sock.cancel(a_id), "cancel after everything completed");
    assert_not_found(sock.cancel_all(), "cancel_all after everything completed");
    assert_not_found(sock.cancel_io(), "cancel_io after everything completed");
}
}

backend_test! {
/// CN-2, CN-3: `CancelIoEx(h, NULL)` cancels every pending operation on the socket, whoever
/// issued it — a pending receive, receives queued behind it, and a send blocked on a full
/// send buffer — each exactly once with 995, and nothing more follows.
fn cancel_all_cancels_every_pending_operation_exactly_once() {
    let _g = serial();
    let port = port::<usize>(0);
    let (sock, client) = tcp_pair(&port, 21);
    shrink_buffers(&sock, &client);

    for id in 0..4usize {
        pending(sock.recv(recv_record(id), MsgFlags::NONE));
    }
    // The send is issued by another thread: CancelIoEx cancels operations of every thread.
    let s = sock.clone();
    thread::spawn(move || pending(s.send(Overlapped::with_buffers(4usize, vec![7u8; BIG]), MsgFlags::NONE)))
        .join()
        .unwrap();
    assert_quiet(&port); // all five pend: no data comes in, the peer reads nothing

    sock.cancel_all().expect("CancelIoEx(socket, NULL)");
    let mut seen = HashSet::new();
    for _ in 0..5 {
        let c = next(&port);
        assert_eq!(c.key, 21);
        let id = ctx(&c);
        assert!(seen.insert(id), "record {id} completed twice");
        if id == 4 {
            // The blocked send: its status is the cancellation (CN-3).
            let e = failed(&c);
            assert_eq!(e.kind(), ErrorKind::OperationAborted, "the send: {e}");
            assert_eq!((e.win32_error(), e.wsa_error()), (995, 995));
        } else {
            assert_cancelled(&c);
        }
    }
    assert_eq!(seen, (0..5).collect::<HashSet<_>>());
    assert_quiet(&port);
    assert_not_found(sock.cancel_all(), "cancel_all after everything was cancelled");
}
}

backend_test! {
/// CN-1: `CancelIo(h)` cancels only the operations the calling thread issued on the socket.
/// The main thread issues a receive, thread Y a (blocked) send on the same socket; a thread
/// that issued nothing finds nothing to cancel.
fn cancel_io_cancels_only_the_calling_threads_operations() {
    let _g = serial();
    let port = port::<usize>(0);
    let (sock, client) = tcp_pair(&port, 31);
    shrink_buffers(&sock, &client);

    pending(sock.recv(recv_record(0usize), MsgFlags::NONE));

    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (issued_tx, issued_rx) = mpsc::channel::<bool>();
    let s = sock.clone();
    let y = thread::spawn(move || {
        let issued = s.send(Overlapped::with_buffers(1usize, vec![7u8; BIG]), MsgFlags::NONE);
        issued_tx.send(matches!(issued, Ok(Issued::Pending))).unwrap();
        go_rx.recv_timeout(WAIT).expect("told to cancel");
        s.cancel_io()
    });
    assert!(issued_rx.recv_timeout(WAIT).unwrap(), "thread Y's send should pend");
    assert_quiet(&port);

    let s = sock.clone();
    let bystander = thread::spawn(move || s.cancel_io()).join().unwrap();
    assert_not_found(bystander, "CancelIo from a thread that issued nothing");
    assert_quiet(&port);

    sock.cancel_io().expect("CancelIo from the main thread");
    let c = next(&port);
    assert_eq!((c.key, ctx(&c)), (31, 0), "only the main thread's receive is cancelled");
    assert_cancelled(&c);
    assert_quiet(&port); // thread Y's send survives
    assert_not_found(sock.cancel_io(), "the main thread has nothing left to cancel");

    go_tx.send(()).unwrap();
    y.join().unwrap().expect("CancelIo from thread Y");
    let c = next(&port);
    assert_eq!((c.key, ctx(&c)), (31, 1), "thread Y's send is cancelled by thread Y");
    let e = failed(&c);
    assert_eq!(e.kind(), ErrorKind::OperationAborted, "{e}");
    assert_quiet(&port);
}
}

backend_test! {
/// CN-4 (and AX-5): an accept is an operation on the listening socket. Cancelling on another
/// socket does not touch it; each of CancelIoEx(listener, ov), CancelIoEx(listener, NULL) and
/// CancelIo(listener) cancels it (995, on the listener's key). The listener keeps working: a
/// connection that arrives later is accepted by the next accept.
fn cancelling_on_the_listener_cancels_a_pending_accept() {
    let _g = serial();
    let port = port::<usize>(0);
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    port.associate(&listener, 41).unwrap();
    let (other, _other_client) = tcp_pair(&port, 42);

    for way in 0..3usize {
        let ov = Overlapped::new(way);
        let id = ov.id();
        pending(listener.accept(ov));
        assert_not_found(other.cancel(id), "cancel(accept record) on another socket");
        assert_not_found(other.cancel_all(), "cancel_all on another socket");
        assert_not_found(other.cancel_io(), "cancel_io on another socket");
        assert_quiet(&port);
        match way {
            0 => listener.cancel(id),
            1 => listener.cancel_all(),
            _ => listener.cancel_io(),
        }
        .unwrap_or_else(|e| panic!("cancel way {way} on the listener: {e}"));
        let mut c = next(&port);
        assert_eq!((c.key, ctx(&c)), (41, way), "the accept completes on the listener's key");
        assert_cancelled(&c);
        assert!(c.overlapped.as_mut().unwrap().take_accepted().is_none(), "a cancelled accept accepted nothing");
        assert_quiet(&port);
    }

    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    pending(listener.accept(Overlapped::new(9usize)));
    let mut c = next(&port);
    assert_eq!((c.key, ctx(&c)), (41, 9));
    assert_eq!(c.result().unwrap(), 0);
    let accepted = c.overlapped.as_mut().unwrap().take_accepted().expect("the accepted socket");
    assert_eq!(accepted.remote_addr, client.local_addr().unwrap());
}
}

// ---------------------------------------------------------------------------------------------
// closesocket (CN-5, spec §8.4.5)
// ---------------------------------------------------------------------------------------------

backend_test! {
/// CN-5, §8.4.5, §8.4.11: closing a connected TCP socket with a receive pending (issued by
/// another thread) completes the receive once with `STATUS_CONNECTION_ABORTED`
/// (1236 / 10053), 0 bytes; the descriptor is really closed (the peer sees EOF or a reset, the
/// process's descriptor count drops), and a second close fails.
fn closing_a_socket_with_a_pending_recv_completes_it_with_connection_aborted() {
    let _g = serial();
    let before = open_fds();
    let port = port::<usize>(0);
    let (sock, mut client) = tcp_pair(&port, 51);

    let s = sock.clone();
    thread::spawn(move || pending(s.recv(recv_record(1usize), MsgFlags::NONE))).join().unwrap();
    assert_quiet(&port);

    let fd = sock.as_raw_fd();
    sock.close().expect("closesocket");
    let c = next(&port);
    assert_eq!((c.key, ctx(&c)), (51, 1));
    assert_connection_aborted(&c);
    assert_eq!(c.bytes, 0);
    assert_quiet(&port);

    assert_peer_sees_close(&mut client);
    wait_until_released(fd, "the socket after close");
    assert_eq!(sock.close().map_err(|e| e.kind()), Err(ErrorKind::NotSocket), "closing twice");

    drop((sock, client, c, port));
    wait_for_fds(before, "after dropping everything");
}
}

backend_test! {
/// CN-5, CN-9: `closesocket` closes the handle for every copy of it. With nothing pending the
/// descriptor is closed at once, although the application still holds the (now invalid)
/// handle value: the peer sees EOF, the descriptor count drops, and the handle refuses
/// operations.
fn closing_an_idle_socket_closes_its_descriptor_while_the_handle_is_held() {
    let _g = serial();
    let port = port::<usize>(0);
    let (sock, mut client) = tcp_pair(&port, 50);
    let copy = sock.clone();
    let fd = sock.as_raw_fd();
    sock.close().expect("closesocket");
    assert!(copy.is_closed(), "closed for every copy of the handle");
    wait_until_released(fd, "the socket after close");
    assert_peer_sees_close(&mut client);
    match copy.recv(recv_record(0usize), MsgFlags::NONE) {
        Err(r) => assert_eq!(r.error.kind(), ErrorKind::NotSocket, "{r}"),
        Ok(_) => panic!("an operation on a closed socket was accepted"),
    }
    assert_quiet(&port);
}
}

backend_test! {
/// CN-5 (as decided for this library: recv and send alike): closing a connected socket with
/// a receive and a blocked send pending completes each exactly once with
/// `STATUS_CONNECTION_ABORTED`.
fn closing_a_socket_aborts_a_pending_send_and_recv_alike() {
    let _g = serial();
    let before = open_fds();
    let port = port::<usize>(0);
    let (sock, client) = tcp_pair(&port, 52);
    shrink_buffers(&sock, &client);

    pending(sock.recv(recv_record(0usize), MsgFlags::NONE));
    pending(sock.send(Overlapped::with_buffers(1usize, vec![7u8; BIG]), MsgFlags::NONE));
    assert_quiet(&port);

    sock.close().expect("closesocket");
    let mut seen = HashSet::new();
    for _ in 0..2 {
        let c = next(&port);
        assert_eq!(c.key, 52);
        assert!(seen.insert(ctx(&c)), "a record completed twice");
        assert_connection_aborted(&c);
    }
    assert_quiet(&port);

    drop((sock, client, port));
    wait_for_fds(before, "after dropping everything");
}
}

backend_test! {
/// CN-5, AX-9: closing the listener completes its pending accept once with 995, accepting
/// nothing; the listening descriptor is really closed (a new connection is refused).
fn closing_the_listener_completes_a_pending_accept_with_operation_aborted() {
    let _g = serial();
    let before = open_fds();
    let port = port::<usize>(0);
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    let addr = listener.local_addr().unwrap();
    port.associate(&listener, 53).unwrap();
    pending(listener.accept(Overlapped::new(3usize)));
    assert_quiet(&port);

    let fd = listener.as_raw_fd();
    listener.close().expect("closesocket(listener)");
    let mut c = next(&port);
    assert_eq!((c.key, ctx(&c)), (53, 3));
    assert_cancelled(&c);
    assert!(c.overlapped.as_mut().unwrap().take_accepted().is_none());
    assert_quiet(&port);

    wait_until_released(fd, "the listener after close");
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("the closed listener still accepts connections"),
    }

    drop((listener, c, port));
    wait_for_fds(before, "after dropping everything");
}
}

backend_test! {
/// CN-5: a worker blocked in `get` is woken by the completion of a receive (issued by a third
/// thread) when another thread closes the socket.
fn closing_from_another_thread_wakes_a_worker_waiting_in_get() {
    let _g = serial();
    let port = port::<usize>(0);
    let (sock, mut client) = tcp_pair(&port, 54);

    let s = sock.clone();
    thread::spawn(move || pending(s.recv(recv_record(5usize), MsgFlags::NONE))).join().unwrap();

    let p = port.clone();
    let worker = thread::spawn(move || p.get(Some(WAIT)).map(|c| (c.key, ctx(&c), c.status, c.bytes)));
    thread::sleep(QUIET); // only to let the worker block in get first
    let s = sock.clone();
    thread::spawn(move || s.close().expect("closesocket from another thread")).join().unwrap();

    let (key, id, status, bytes) = worker.join().unwrap().expect("the worker gets the aborted receive");
    assert_eq!((key, id, bytes), (54, 5, 0));
    let e = status.expect_err("the receive fails");
    assert_eq!(e.kind(), ErrorKind::ConnectionAborted, "{e}");
    assert_eq!((e.win32_error(), e.wsa_error()), (1236, 10053));
    assert_quiet(&port);
    assert_peer_sees_close(&mut client);
}
}

backend_test! {
/// CN-5, CN-6: the socket's clones are copies of one handle. Dropping one clone leaves a
/// pending receive alone; dropping the last one closes the socket, which completes the
/// receive with `STATUS_CONNECTION_ABORTED` and closes the descriptor.
fn dropping_the_last_clone_with_a_pending_recv_behaves_like_close() {
    let _g = serial();
    let before = open_fds();
    let port = port::<usize>(0);
    let (sock, mut client) = tcp_pair(&port, 55);
    let clone = sock.clone();
    pending(clone.recv(recv_record(6usize), MsgFlags::NONE));

    drop(clone);
    assert_quiet(&port); // the handle is still open through `sock`

    let with_socket = open_fds();
    drop(sock);
    let c = next(&port);
    assert_eq!((c.key, ctx(&c)), (55, 6));
    assert_connection_aborted(&c);
    assert_quiet(&port);
    assert_peer_sees_close(&mut client);
    wait_for_fds(with_socket - 1, "the socket's descriptor after the last clone dropped");

    drop((client, c, port));
    wait_for_fds(before, "after dropping everything");
}
}

// ---------------------------------------------------------------------------------------------
// Port close (CL-1, GQ-4)
// ---------------------------------------------------------------------------------------------

backend_test! {
/// CL-1, GQ-4: closing a port with operations in flight on several associated sockets (TCP
/// receives, a blocked send, an accept, a UDP receive) returns, wakes every waiter with
/// `ERROR_ABANDONED_WAIT_0` (735), and drops every in-flight record exactly once (their
/// completions go nowhere observable). New operations are refused with the record handed back.
/// Once the sockets are dropped, every descriptor is closed.
fn closing_the_port_drops_in_flight_records_once_and_wakes_waiters() {
    let _g = serial();
    let before = open_fds();
    const IN_FLIGHT: usize = 9;
    let drops = drop_counters(IN_FLIGHT + 1);
    let port: CompletionPort<Tracked> = port(2);

    let mut sockets = Vec::new();
    let mut clients = Vec::new();
    for k in 0..3 {
        let (sock, client) = tcp_pair(&port, k);
        for j in 0..2 {
            pending(sock.recv(recv_record(Tracked::new(2 * k + j, &drops)), MsgFlags::NONE));
        }
        sockets.push(sock);
        clients.push(client);
    }
    shrink_buffers(&sockets[0], &clients[0]);
    pending(sockets[0].send(Overlapped::with_buffers(Tracked::new(6, &drops), vec![7u8; BIG]), MsgFlags::NONE));
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    port.associate(&listener, 10).unwrap();
    pending(listener.accept(Overlapped::new(Tracked::new(7, &drops))));
    let (udp, udp_peer) = common::udp_pair(&port, 11);
    pending(udp.recv_from(recv_record(Tracked::new(8, &drops)), MsgFlags::NONE));
    sockets.push(listener);
    sockets.push(udp);
    assert_quiet(&port);

    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let p = port.clone();
            thread::spawn(move || p.get(Some(WAIT)).map(|c| c.key).map_err(|e| (e.kind(), e.win32_error())))
        })
        .collect();
    thread::sleep(QUIET); // only to let the waiters block first

    let p = port.clone();
    returns_within("CompletionPort::close", move || p.close());
    for w in waiters {
        assert_eq!(w.join().unwrap(), Err((ErrorKind::PortClosed, 735)), "a waiter wakes with ERROR_ABANDONED_WAIT_0");
    }
    match port.get(Some(Duration::ZERO)) {
        Err(e) => assert_eq!((e.kind(), e.win32_error()), (ErrorKind::PortClosed, 735)),
        Ok(c) => panic!("a packet after close: {c:?}"),
    }

    wait_until("every in-flight record is dropped", || {
        drops[..IN_FLIGHT].iter().all(|d| d.load(Ordering::SeqCst) >= 1)
    });

    // A new operation on an associated socket is refused, and its record comes back.
    match sockets[1].recv(recv_record(Tracked::new(IN_FLIGHT, &drops)), MsgFlags::NONE) {
        Err(r) => {
            assert_eq!(r.error.kind(), ErrorKind::InvalidHandle, "{r}");
            assert_eq!(r.overlapped.context().id, IN_FLIGHT);
            assert_eq!(drops[IN_FLIGHT].load(Ordering::SeqCst), 0, "the refused record is handed back alive");
        }
        Ok(_) => panic!("an operation on a socket of a closed port was accepted"),
    }

    drop((sockets, clients, udp_peer, port));
    wait_for_fds(before, "after dropping the sockets and the port");
    assert_each_dropped_once(&drops);
}
}

backend_test! {
/// CL-1, GQ-4: packets still queued when the port closes (posted ones, and a receive that
/// completed but was never dequeued) are never delivered — `get` reports 735 — and their
/// records are dropped exactly once. A post after close is refused with the record handed
/// back.
fn closing_the_port_drops_queued_packets_once() {
    let _g = serial();
    let before = open_fds();
    let drops = drop_counters(4);
    let port: CompletionPort<Tracked> = port(0);
    let (sock, mut client) = tcp_pair(&port, 1);

    for id in 0..2 {
        port.post(id, 100 + id, Some(Overlapped::new(Tracked::new(id, &drops)))).expect("post");
    }
    pending(sock.recv(recv_record(Tracked::new(2, &drops)), MsgFlags::NONE));
    client.write_all(b"data").unwrap();
    thread::sleep(QUIET); // only to let the receive complete before the close

    let p = port.clone();
    returns_within("CompletionPort::close", move || p.close());
    match port.get(Some(Duration::ZERO)) {
        Err(e) => assert_eq!((e.kind(), e.win32_error()), (ErrorKind::PortClosed, 735)),
        Ok(c) => panic!("a queued packet was delivered after close: {c:?}"),
    }
    wait_until("the queued records are dropped", || drops[..3].iter().all(|d| d.load(Ordering::SeqCst) >= 1));

    match port.post(0, 0, Some(Overlapped::new(Tracked::new(3, &drops)))) {
        Err(e) => {
            assert_eq!(e.error.kind(), ErrorKind::InvalidHandle, "{e:?}");
            let ov = e.overlapped.expect("the record comes back");
            assert_eq!(ov.context().id, 3);
            assert_eq!(drops[3].load(Ordering::SeqCst), 0, "handed back alive");
        }
        Ok(()) => panic!("a post to a closed port was accepted"),
    }

    drop((sock, client, port));
    wait_for_fds(before, "after dropping the socket and the port");
    assert_each_dropped_once(&drops);
}
}

// ---------------------------------------------------------------------------------------------
// Races, repeated (bounded)
// ---------------------------------------------------------------------------------------------

backend_test! {
/// CN-3, CN-5: 200 cycles of issue-receive / close, mixed with data racing the close, a
/// cancel just before the close, and dropping instead of closing. Each receive completes
/// exactly once: with `STATUS_CONNECTION_ABORTED`, or normally when data won the race, or
/// (after a cancel) with 995. Every record is dropped once; every descriptor is closed.
fn repeated_recv_then_close_completes_every_receive_exactly_once() {
    let _g = serial();
    const N: usize = 200;
    let before = open_fds();
    let drops = drop_counters(N);
    let port: CompletionPort<Tracked> = port(0);
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();

    for i in 0..N {
        let mut client = TcpStream::connect(addr).unwrap();
        let sock = Socket::from(listener.accept().unwrap().0);
        port.associate(&sock, i).unwrap();
        pending(sock.recv(recv_record(Tracked::new(i, &drops)), MsgFlags::NONE));
        let case = i % 4;
        match case {
            0 => sock.close().unwrap(),
            1 => {
                client.write_all(b"x").unwrap();
                sock.close().unwrap();
            }
            2 => {
                sock.cancel_all().expect("the receive is pending");
                sock.close().unwrap();
            }
            _ => drop(sock),
        }
        let c = next(&port);
        assert_eq!(c.key, i, "cycle {i}: a packet of another cycle");
        assert_eq!(c.overlapped.as_ref().unwrap().context().id, i);
        match c.status {
            Ok(()) => assert!(case == 1 && c.bytes == 1, "cycle {i}: completed normally without data: {c:?}"),
            Err(e) => match (case, e.kind()) {
                (_, ErrorKind::ConnectionAborted) | (2, ErrorKind::OperationAborted) => {}
                _ => panic!("cycle {i} (case {case}): unexpected status {e}"),
            },
        }
        drop(c);
        assert_eq!(drops[i].load(Ordering::SeqCst), 1, "cycle {i}: the record is dropped with its packet");
    }
    assert_quiet(&port);
    drop((listener, port));
    wait_for_fds(before, "after the cycles");
    assert_each_dropped_once(&drops);
}
}

backend_test! {
/// CN-2, CN-3, CN-4: 200 cycles of issue-accept / cancel, with a connection racing the cancel
/// in every other cycle. Each accept completes exactly once: cancelled (995, nothing
/// accepted), or successfully with a connection; when the cancel found nothing (1168) the
/// accept must already have completed successfully.
fn repeated_accept_then_cancel_completes_every_accept_exactly_once() {
    let _g = serial();
    const N: usize = 200;
    let before = open_fds();
    let drops = drop_counters(N);
    let port: CompletionPort<Tracked> = port(0);
    let listener = Socket::listen_tcp(loopback(), 256).unwrap();
    let addr = listener.local_addr().unwrap();
    port.associate(&listener, 7).unwrap();
    let mut clients = Vec::new();
    let mut accepted = 0;

    for i in 0..N {
        let ov = Overlapped::new(Tracked::new(i, &drops));
        let id = ov.id();
        pending(listener.accept(ov));
        if i % 2 == 1 {
            clients.push(TcpStream::connect(addr).unwrap());
        }
        let cancel = listener.cancel(id);
        let mut c = next(&port);
        assert_eq!(c.key, 7);
        assert_eq!(c.overlapped.as_ref().unwrap().context().id, i, "cycle {i}: a packet of another cycle");
        let got = c.overlapped.as_mut().unwrap().take_accepted();
        match (&cancel, c.status) {
            (_, Ok(())) => {
                assert!(got.is_some(), "cycle {i}: a successful accept without a socket");
                accepted += 1;
            }
            (Ok(()), Err(e)) => {
                assert_eq!(e.kind(), ErrorKind::OperationAborted, "cycle {i}: {e}");
                assert!(got.is_none(), "cycle {i}: a cancelled accept produced a socket");
            }
            (Err(_), Err(e)) => panic!("cycle {i}: cancel found nothing ({cancel:?}) but the accept failed: {e}"),
        }
        if let Err(e) = cancel {
            assert_eq!(e.kind(), ErrorKind::NotFound, "cycle {i}: {e}");
        }
        drop((c, got));
        assert_eq!(drops[i].load(Ordering::SeqCst), 1, "cycle {i}: the record is dropped with its packet");
    }
    assert!(accepted <= clients.len(), "{accepted} accepted from {} connections", clients.len());
    assert_quiet(&port);
    drop((listener, clients, port));
    wait_for_fds(before, "after the cycles");
    assert_each_dropped_once(&drops);
}
}

backend_test! {
/// CN-5, AX-9: 50 cycles of issue-accept / close-listener, with a connection racing the close
/// in every other cycle: each accept completes exactly once, with 995 or (only when a client
/// connected) successfully.
fn repeated_accept_then_close_listener_completes_every_accept_exactly_once() {
    let _g = serial();
    const N: usize = 50;
    let before = open_fds();
    let drops = drop_counters(N);
    let port: CompletionPort<Tracked> = port(0);

    for i in 0..N {
        let listener = Socket::listen_tcp(loopback(), 16).unwrap();
        port.associate(&listener, i).unwrap();
        pending(listener.accept(Overlapped::new(Tracked::new(i, &drops))));
        let client = if i % 2 == 1 { Some(TcpStream::connect(listener.local_addr().unwrap()).unwrap()) } else { None };
        listener.close().unwrap();
        let mut c = next(&port);
        assert_eq!(c.key, i, "cycle {i}: a packet of another cycle");
        let got = c.overlapped.as_mut().unwrap().take_accepted();
        match c.status {
            Ok(()) => assert!(client.is_some() && got.is_some(), "cycle {i}: accepted without a client"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::OperationAborted, "cycle {i}: {e}");
                assert!(got.is_none());
            }
        }
        drop((c, got, client, listener));
        assert_eq!(drops[i].load(Ordering::SeqCst), 1, "cycle {i}: the record is dropped with its packet");
    }
    assert_quiet(&port);
    drop(port);
    wait_for_fds(before, "after the cycles");
    assert_each_dropped_once(&drops);
}
}

backend_test! {
/// CN-5, 1.5: 100 cycles of a thread issuing receives while another closes the socket. Each
/// call either pends — and then completes exactly once with `STATUS_CONNECTION_ABORTED` — or
/// is refused because the socket is closed (`WSAENOTSOCK`), handing its record back and
/// queuing nothing.
fn receives_racing_close_complete_exactly_once_or_are_refused() {
    let _g = serial();
    const N: usize = 100;
    const PER: usize = 4;
    let before = open_fds();
    let drops = drop_counters(N * PER);
    let port: CompletionPort<Tracked> = port(0);
    let listener = TcpListener::bind(loopback()).unwrap();
    let addr = listener.local_addr().unwrap();

    for i in 0..N {
        let client = TcpStream::connect(addr).unwrap();
        let sock = Socket::from(listener.accept().unwrap().0);
        port.associate(&sock, i).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let (s, b, d) = (sock.clone(), barrier.clone(), drops.clone());
        let issuer = thread::spawn(move || {
            b.wait();
            let mut n_pending = 0;
            for k in 0..PER {
                match s.recv(recv_record(Tracked::new(i * PER + k, &d)), MsgFlags::NONE) {
                    Ok(Issued::Pending) => n_pending += 1,
                    Ok(Issued::Event(_)) => panic!("an associated socket's operation reports through its port"),
                    Ok(Issued::Completed(_)) => panic!("a receive without data completed at once"),
                    Err(r) => {
                        assert_eq!(r.error.kind(), ErrorKind::NotSocket, "{r}");
                        assert_eq!(r.overlapped.context().id, i * PER + k, "the refused record comes back");
                    }
                }
            }
            n_pending
        });
        barrier.wait();
        sock.close().unwrap();
        let pending = issuer.join().unwrap();
        for _ in 0..pending {
            let c = next(&port);
            assert_eq!(c.key, i, "cycle {i}: a packet of another cycle");
            assert_connection_aborted(&c);
        }
        drop((sock, client));
    }
    assert_quiet(&port);
    drop((listener, port));
    wait_for_fds(before, "after the cycles");
    assert_each_dropped_once(&drops);
}
}
