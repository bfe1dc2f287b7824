//! Conformance of overlapped socket operations notified through event objects (spec §3 EV/GR,
//! §1.4-§1.7, §2.7 NM, §2.9 IO-1, §2.11 SK, §5 cancellation and close), written from the spec.
//! The sockets here are not associated with a port unless a test is about ports: their
//! operations return `Issued::Event(PendingIo)` and complete through the record's event
//! (`WSAWaitForMultipleEvents` + `WSAGetOverlappedResult`). Every test names the rule ids it
//! checks; every wait is bounded.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    QUIET, WAIT, assert_quiet, loopback, loopback_v6, next, port, tcp_pair, unassociated_tcp_pair,
    unassociated_tcp_pair_on,
};
use overlapped::{
    BufList, CompletionPort, Error, ErrorKind, Event, Issued, MsgFlags, Overlapped, PendingIo, Rejected, Socket, Wait,
    wait_for_events,
};

type IssueResult<C> = Result<Issued<C>, Rejected<C>>;

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// A receive record with `cap` bytes of spare capacity and `event` attached.
fn recv_ov<C: Send + 'static>(ctx: C, cap: usize, event: &Event) -> Overlapped<C> {
    Overlapped::with_buffers(ctx, BufList::with_capacity(cap)).with_event(event.clone())
}

/// The handle of an operation issued on a socket that completes through its event (1.7 rows
/// 3 and 4): it must be `Issued::Event`.
#[track_caller]
fn event_io<C: Send + 'static>(r: IssueResult<C>) -> PendingIo<C> {
    match r {
        Ok(Issued::Event(io)) => io,
        Ok(Issued::Pending) => panic!("no port gets this completion, yet the call returned Issued::Pending"),
        Ok(Issued::Completed(_)) => panic!("no skip-on-success port here, yet the call returned Issued::Completed"),
        Err(r) => panic!("the operation was rejected: {}", r.error),
    }
}

/// The event must be (or become) signalled within [`WAIT`]. Consumes an auto-reset event.
#[track_caller]
fn signaled(ev: &Event, what: &str) {
    match ev.wait(Some(WAIT), false) {
        Ok(Wait::Signaled(0)) => {}
        other => panic!("{what}: expected the event to be signalled, the wait gave {other:?}"),
    }
}

/// The event must stay non-signalled for [`QUIET`].
#[track_caller]
fn stays_unset(ev: &Event, what: &str) {
    match ev.wait(Some(QUIET), false) {
        Ok(Wait::Timeout) => {}
        other => panic!("{what}: expected the event to stay non-signalled, the wait gave {other:?}"),
    }
}

/// `WSAGetOverlappedResult(fWait = FALSE)` on an operation whose event was seen signalled: the
/// status block is written before the event is set (IO-1), so the record must be there.
#[track_caller]
fn result_now<C: Send + 'static>(io: &mut PendingIo<C>, what: &str) -> Overlapped<C> {
    assert!(io.is_completed(), "{what}: the event is set, so HasOverlappedIoCompleted must be true (IO-1)");
    match io.overlapped_result(false) {
        Ok(ov) => {
            assert!(ov.is_completed(), "{what}: the record handed back is completed");
            ov
        }
        Err(e) => panic!("{what}: the event is set, yet overlapped_result(false) failed with {e} (IO-1)"),
    }
}

/// The byte count of a record whose operation must have succeeded.
#[track_caller]
fn ok_bytes<C: Send + 'static>(ov: &Overlapped<C>, what: &str) -> usize {
    match ov.result() {
        Ok(n) => {
            assert_eq!(ov.bytes_transferred(), n, "{what}: InternalHigh agrees with the result");
            n
        }
        Err(e) => panic!("{what}: expected success, the operation failed with {e}"),
    }
}

/// The error of a record whose operation must have failed.
#[track_caller]
fn op_error<C: Send + 'static>(ov: &Overlapped<C>, what: &str) -> Error {
    match ov.result() {
        Ok(n) => panic!("{what}: expected a failure, the operation succeeded with {n} bytes"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_error(e: Error, kind: ErrorKind, win32: u32, wsa: u32) {
    assert_eq!(e.kind(), kind, "error kind of {e}");
    assert_eq!(e.win32_error(), win32, "GetLastError view (1.8) of {e}");
    assert_eq!(e.wsa_error(), wsa, "WSAGetLastError view (1.8) of {e}");
}

/// A second `WSAGetOverlappedResult` after the record was taken fails with InvalidArgument.
#[track_caller]
fn assert_taken<C: Send + 'static>(io: &mut PendingIo<C>) {
    for wait in [false, true] {
        match io.overlapped_result(wait) {
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidArgument, "result taken twice (wait={wait}): {e}"),
            Ok(_) => panic!("the record was handed back twice (wait={wait})"),
        }
    }
}

/// What a background `overlapped_result(true)` call hands back, with its handle.
type Waited<C> = (PendingIo<C>, Result<Overlapped<C>, Error>);

/// Runs `overlapped_result(true)` on another thread; the test bounds the wait on the receiver.
fn wait_in_background<C: Send + 'static>(mut io: PendingIo<C>) -> Receiver<Waited<C>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = io.overlapped_result(true);
        let _ = tx.send((io, r));
    });
    rx
}

/// The background wait must still be blocked after [`QUIET`].
#[track_caller]
fn still_blocked<C: Send + 'static>(rx: &Receiver<Waited<C>>, what: &str) {
    match rx.recv_timeout(QUIET) {
        Err(RecvTimeoutError::Timeout) => {}
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the waiting thread panicked"),
        Ok((_, r)) => panic!("{what}: overlapped_result(true) returned before completion: {:?}", r.map(|o| o.result())),
    }
}

/// The background wait must return within [`WAIT`].
#[track_caller]
fn waited<C: Send + 'static>(rx: &Receiver<Waited<C>>, what: &str) -> Waited<C> {
    match rx.recv_timeout(WAIT) {
        Ok(w) => w,
        Err(RecvTimeoutError::Timeout) => panic!("{what}: overlapped_result(true) did not return"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the waiting thread panicked"),
    }
}

/// A deterministic byte pattern, distinct per `seed`.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((seed * 131 + j * 7 + j / 251) % 253) as u8).collect()
}

/// Waits until the peer's data is in this socket's receive queue, without consuming it.
fn wait_buffered(s: &Socket, n: usize) {
    let start = Instant::now();
    let mut peek = vec![0u8; n];
    loop {
        let (got, _) = s.recv_blocking(&mut [&mut peek[..]], MsgFlags::PEEK).unwrap();
        if got >= n {
            return;
        }
        assert!(start.elapsed() < WAIT, "the peer's {n} bytes did not arrive");
        thread::sleep(Duration::from_millis(5));
    }
}

/// A context that counts its drops.
#[derive(Debug)]
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls until the counter reaches `n`, for at most [`WAIT`].
#[track_caller]
fn wait_drops(c: &AtomicUsize, n: usize, what: &str) {
    let start = Instant::now();
    while c.load(Ordering::SeqCst) != n {
        assert!(
            start.elapsed() < WAIT,
            "{what}: the context was dropped {} times, expected {n}",
            c.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(10));
    }
}

// ------------------------------------------------------------------------------------------------
// EV-2, 1.4: the event is reset at issue and set on completion
// ------------------------------------------------------------------------------------------------

/// EV-2 / 1.3 / IO-1: issuing a receive resets its previously signalled event; while no data has
/// come the event stays reset and the operation is not complete; data sets it, and then
/// overlapped_result(false) hands back the record with the bytes in its buffers, its context
/// and its event.
fn recv_resets_then_sets(addr: SocketAddr) {
    let (s, mut client) = unassociated_tcp_pair_on(addr);
    let ev = Event::manual(true);
    let mut io = event_io(s.recv(recv_ov(7u32, 64, &ev), MsgFlags::NONE));
    assert!(!ev.is_set(), "EV-2: starting the operation reset the event");
    stays_unset(&ev, "EV-2: no data yet");
    assert!(!io.is_completed(), "1.3: pending");

    client.write_all(b"hello event").unwrap();
    signaled(&ev, "EV-2: the completion sets the event");
    let ov = result_now(&mut io, "EV-2");
    assert_eq!(ok_bytes(&ov, "recv"), 11);
    assert_eq!(ov.buffers().gather(11), b"hello event");
    assert_eq!(*ov.context(), 7);
    assert!(ov.event().is_some(), "the record keeps its event");
    assert!(ev.is_set(), "EV-2: a manual-reset event stays signalled after the result was read");
}

backend_test! {
fn ev2_recv_resets_event_at_issue_and_sets_it_on_data_v4() {
    recv_resets_then_sets(loopback());
}
}

backend_test! {
fn ev2_recv_resets_event_at_issue_and_sets_it_on_data_v6() {
    recv_resets_then_sets(loopback_v6());
}
}

backend_test! {
/// 1.4 / EV-2: a send on a connected socket (completes at once) still signals its event; the
/// result is there with overlapped_result(false); the peer receives the bytes.
fn ev2_1_4_immediate_send_still_sets_the_event() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::new();
    let ov = Overlapped::with_buffers(3u32, vec![b"send ".to_vec(), b"now".to_vec()]).with_event(ev.clone());
    let mut io = event_io(s.send(ov, MsgFlags::NONE));
    signaled(&ev, "1.4: an immediate success still sets the event");
    let ov = result_now(&mut io, "1.4 send");
    assert_eq!(ok_bytes(&ov, "send"), 8, "WS-1: every byte of every buffer");
    assert_eq!(*ov.context(), 3);
    let mut got = [0u8; 8];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"send now");
}
}

backend_test! {
/// 1.4 / EV-2: a receive issued when data is already buffered still signals its event, and the
/// data is in the record.
fn ev2_1_4_recv_with_data_already_buffered_sets_the_event() {
    let (s, mut client) = unassociated_tcp_pair();
    client.write_all(b"ready").unwrap();
    wait_buffered(&s, 5);
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(4u32, 64, &ev), MsgFlags::NONE));
    signaled(&ev, "1.4: a receive of buffered data sets the event");
    let ov = result_now(&mut io, "1.4 recv");
    assert_eq!(ok_bytes(&ov, "recv"), 5);
    assert_eq!(ov.buffers().gather(5), b"ready");
}
}

// ------------------------------------------------------------------------------------------------
// 1.5: immediate failures notify nothing
// ------------------------------------------------------------------------------------------------

/// The record of an operation that must be rejected at issue: it comes back with its context,
/// buffers and event, and the (reset) event is not signalled (1.5).
#[track_caller]
fn rejected_quietly(ev: &Event, ctx: u32, lens: &[usize], r: IssueResult<u32>, what: &str) -> Error {
    match r {
        Err(r) => {
            assert_eq!(*r.overlapped.context(), ctx, "{what}: the record comes back with its context");
            let back: Vec<usize> = r.overlapped.buffers().iter().map(Vec::len).collect();
            assert_eq!(back, lens, "{what}: the record comes back with its buffers");
            assert!(r.overlapped.event().is_some(), "{what}: the record keeps its event");
            assert!(!r.overlapped.is_completed(), "{what}: the record was never started");
            stays_unset(ev, &format!("1.5 ({what}): an immediate failure sets nothing"));
            r.error
        }
        Ok(Issued::Event(mut io)) => {
            let r = io.overlapped_result(false).map(|o| o.result());
            panic!("{what}: expected an immediate failure, the operation started ({r:?})")
        }
        Ok(Issued::Pending) => panic!("{what}: expected an immediate failure, it returned Pending"),
        Ok(Issued::Completed(ov)) => panic!("{what}: expected an immediate failure, it completed: {ov:?}"),
    }
}

backend_test! {
/// 1.5 / RV-2: a receive with no buffers is rejected with WSAEINVAL; the reset event stays reset.
fn rule_1_5_empty_buffer_list_is_rejected_and_sets_nothing() {
    let (s, _client) = unassociated_tcp_pair();
    let ev = Event::new();
    let ov = Overlapped::with_buffers(11u32, BufList::new()).with_event(ev.clone());
    let e = rejected_quietly(&ev, 11, &[], s.recv(ov, MsgFlags::NONE), "recv with no buffers");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(e.wsa_error(), 10022, "WSAEINVAL");
    let ov = Overlapped::with_buffers(12u32, BufList::new()).with_event(ev.clone());
    let e = rejected_quietly(&ev, 12, &[], s.send(ov, MsgFlags::NONE), "send with no buffers");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}
}

backend_test! {
/// 1.5 / GR-4: operations on a closed socket are rejected with WSAENOTSOCK; nothing is signalled.
fn rule_1_5_ops_on_a_closed_socket_are_rejected_with_not_socket() {
    let (s, _client) = unassociated_tcp_pair();
    s.close().unwrap();
    let ev = Event::new();
    let e = rejected_quietly(&ev, 21, &[0], s.recv(recv_ov(21u32, 16, &ev), MsgFlags::NONE), "recv");
    assert_eq!(e.kind(), ErrorKind::NotSocket, "{e}");
    assert_eq!(e.wsa_error(), 10038, "WSAENOTSOCK");
    let ov = Overlapped::with_buffers(22u32, b"late".to_vec()).with_event(ev.clone());
    let e = rejected_quietly(&ev, 22, &[4], s.send(ov, MsgFlags::NONE), "send");
    assert_eq!(e.kind(), ErrorKind::NotSocket, "{e}");
}
}

backend_test! {
/// 1.5 / CX-1: ConnectEx on an unbound socket is rejected with WSAEINVAL; nothing is signalled
/// and nothing connects.
fn rule_1_5_connect_on_an_unbound_socket_is_rejected_and_sets_nothing() {
    let listener = TcpListener::bind(loopback()).unwrap();
    listener.set_nonblocking(true).unwrap();
    let s = Socket::tcp_for(&loopback()).unwrap();
    let ev = Event::new();
    let ov = Overlapped::with_buffers(31u32, b"data".to_vec()).with_event(ev.clone());
    let e = rejected_quietly(&ev, 31, &[4], s.connect(listener.local_addr().unwrap(), ov), "connect unbound");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert_eq!(e.wsa_error(), 10022, "WSAEINVAL");
    assert!(listener.accept().is_err(), "1.5: the rejected connect did not connect");
}
}

// ------------------------------------------------------------------------------------------------
// GR-1..GR-3: WSAGetOverlappedResult
// ------------------------------------------------------------------------------------------------

backend_test! {
/// GR-1: overlapped_result(false) on a pending operation fails with WSA_IO_INCOMPLETE (996), as
/// often as it is asked, and the handle stays usable: after the data comes it returns the
/// record; a further call fails with InvalidArgument (the record was taken).
fn gr1_result_without_wait_on_pending_op_is_io_incomplete() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(5u32, 32, &ev), MsgFlags::NONE));
    for _ in 0..3 {
        match io.overlapped_result(false) {
            Err(e) => assert_error(e, ErrorKind::IoIncomplete, 996, 996),
            Ok(ov) => panic!("GR-1: nothing was sent, yet the receive completed: {:?}", ov.result()),
        }
    }
    assert!(!io.is_completed());
    assert!(!ev.is_set(), "GR-1: asking does not signal anything");

    client.write_all(b"later").unwrap();
    signaled(&ev, "GR-1");
    let ov = result_now(&mut io, "GR-1");
    assert_eq!(ok_bytes(&ov, "recv"), 5);
    assert_eq!(ov.buffers().gather(5), b"later");
    assert_taken(&mut io);
}
}

backend_test! {
/// GR-2: overlapped_result(true) on a pending operation blocks until it completes: here until
/// another thread sends the data, then it returns the record with the data.
fn gr2_result_with_wait_blocks_until_another_thread_sends() {
    let (s, client) = unassociated_tcp_pair();
    let ev = Event::new();
    let io = event_io(s.recv(recv_ov(6u32, 32, &ev), MsgFlags::NONE));
    let rx = wait_in_background(io);
    still_blocked(&rx, "GR-2: nothing sent yet");
    assert!(!ev.is_set());

    let sender = thread::spawn(move || {
        let mut client = client;
        client.write_all(b"wake up").unwrap();
        client
    });
    let (mut io, r) = waited(&rx, "GR-2");
    let ov = r.expect("GR-2: the wait returns the completed record");
    assert_eq!(ok_bytes(&ov, "recv"), 7);
    assert_eq!(ov.buffers().gather(7), b"wake up");
    assert_eq!(*ov.context(), 6);
    // IO-1: the status block is written before the event is set, so the wait may return just
    // before the event is signalled: wait for it (bounded) instead of peeking.
    signaled(&ev, "EV-2: the completion sets the event");
    assert_taken(&mut io);
    drop(sender.join().unwrap());
}
}

backend_test! {
/// GR-3 / SK-2 / 1.8: a receive failed by a peer reset (SO_LINGER {1,0} close) is still handed
/// back by overlapped_result (Ok(record)), with the error in the record: WSAECONNRESET 10054 /
/// ERROR_NETNAME_DELETED 64, 0 bytes; a second call fails with InvalidArgument.
fn gr3_peer_reset_is_connection_reset_in_the_record() {
    let (s, client) = unassociated_tcp_pair();
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(8u32, 32, &ev), MsgFlags::NONE));
    stays_unset(&ev, "pending");
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client); // abortive close: RST (CN-9)
    signaled(&ev, "GR-3: a failed completion sets the event too");
    let ov = result_now(&mut io, "GR-3 reset");
    assert_error(op_error(&ov, "recv after RST"), ErrorKind::ConnectionReset, 64, 10054);
    assert_eq!(ov.bytes_transferred(), 0);
    assert_eq!(*ov.context(), 8);
    assert_taken(&mut io);
}
}

/// GR-3 / RV-3 / 1.6: a datagram larger than the receive buffer: the completion is delivered
/// through the event like a success (a warning), and the record reports WSAEMSGSIZE (10040 /
/// ERROR_MORE_DATA 234), bytes_transferred = the bytes kept (written even on failure), flags
/// with MSG_TRUNC, and the sender's address; a second call fails with InvalidArgument.
fn truncated_datagram(addr: SocketAddr) {
    let s = Socket::from(UdpSocket::bind(addr).unwrap());
    let peer = UdpSocket::bind(addr).unwrap();
    let ev = Event::new();
    let mut io = event_io(s.recv_from(recv_ov(9u32, 4, &ev), MsgFlags::NONE));
    stays_unset(&ev, "no datagram yet");
    peer.send_to(b"0123456789", s.local_addr().unwrap()).unwrap();
    signaled(&ev, "1.6: a warning completion sets the event");
    let ov = result_now(&mut io, "GR-3 truncation");
    assert_error(op_error(&ov, "truncated datagram"), ErrorKind::MessageTooLong, 234, 10040);
    assert_eq!(ov.bytes_transferred(), 4, "GR-3: the byte count is written on failure too");
    assert_eq!(ov.buffers().gather(4), b"0123", "RV-3: the buffer gets the first part");
    assert!(ov.flags().contains(MsgFlags::TRUNC), "flags contain MSG_TRUNC: {:?}", ov.flags());
    assert_eq!(ov.peer_addr(), Some(peer.local_addr().unwrap()), "lpFrom is the sender");
    assert_taken(&mut io);
}

backend_test! {
fn gr3_truncated_datagram_is_message_too_long_with_bytes_kept_v4() {
    truncated_datagram(loopback());
}
}

backend_test! {
fn gr3_truncated_datagram_is_message_too_long_with_bytes_kept_v6() {
    truncated_datagram(loopback_v6());
}
}

backend_test! {
/// UDP over the event path: send_to completes through its event and recv_from reports the
/// sender (1.4, EV-2, 1.7 row 4).
fn ev2_udp_send_to_and_recv_from_through_events() {
    let a = Socket::from(UdpSocket::bind(loopback()).unwrap());
    let b = Socket::from(UdpSocket::bind(loopback()).unwrap());
    let (ev_a, ev_b) = (Event::new(), Event::new());
    let mut rio = event_io(b.recv_from(recv_ov(1u32, 64, &ev_b), MsgFlags::NONE));
    stays_unset(&ev_b, "no datagram yet");
    let ov = Overlapped::with_buffers(2u32, b"datagram".to_vec()).with_event(ev_a.clone());
    let mut sio = event_io(a.send_to(ov, b.local_addr().unwrap(), MsgFlags::NONE));
    signaled(&ev_a, "send_to");
    assert_eq!(ok_bytes(&result_now(&mut sio, "send_to"), "send_to"), 8);
    signaled(&ev_b, "recv_from");
    let ov = result_now(&mut rio, "recv_from");
    assert_eq!(ok_bytes(&ov, "recv_from"), 8);
    assert_eq!(ov.buffers().gather(8), b"datagram");
    assert_eq!(ov.peer_addr(), Some(a.local_addr().unwrap()));
    assert!(!ov.flags().contains(MsgFlags::TRUNC));
}
}

// ------------------------------------------------------------------------------------------------
// EV-3, EV-4
// ------------------------------------------------------------------------------------------------

backend_test! {
/// EV-4 / WE-3: an auto-reset event consumed by a wait is no longer signalled, yet
/// overlapped_result(true) on the completed operation returns at once (it only waits while the
/// operation is pending).
fn ev4_auto_reset_event_consumed_then_result_with_wait_returns() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::auto(false);
    let io = event_io(s.recv(recv_ov(10u32, 32, &ev), MsgFlags::NONE));
    client.write_all(b"auto").unwrap();
    signaled(&ev, "EV-4: the completion sets the auto-reset event"); // consumes it
    assert!(!ev.is_set(), "WE-3: the wait consumed the auto-reset event");
    assert!(io.is_completed());

    let rx = wait_in_background(io);
    let (_io, r) = waited(&rx, "EV-4: overlapped_result(true) on a completed op must not wait for the event");
    let ov = r.expect("EV-4: the record");
    assert_eq!(ok_bytes(&ov, "recv"), 4);
    assert_eq!(ov.buffers().gather(4), b"auto");
    assert!(!ev.is_set(), "reading the result does not signal the event");
}
}

backend_test! {
/// EV-3 / 1.7 row 4 / GR-2: no event and no port: the operation still completes and
/// overlapped_result(true) waits for it (on the "socket handle") and returns it.
fn ev3_no_event_no_port_result_with_wait_still_waits() {
    let (s, mut client) = unassociated_tcp_pair();
    let ov = Overlapped::with_buffers(12u32, BufList::with_capacity(32));
    assert!(ov.event().is_none());
    let mut io = event_io(s.recv(ov, MsgFlags::NONE));
    match io.overlapped_result(false) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::IoIncomplete, "GR-1: {e}"),
        Ok(ov) => panic!("nothing sent, yet completed: {:?}", ov.result()),
    }
    let rx = wait_in_background(io);
    still_blocked(&rx, "EV-3: nothing sent yet");
    client.write_all(b"no event").unwrap();
    let (mut io, r) = waited(&rx, "EV-3");
    let ov = r.expect("EV-3: the wait returns the completed record");
    assert_eq!(ok_bytes(&ov, "recv"), 8);
    assert_eq!(ov.buffers().gather(8), b"no event");
    assert!(ov.event().is_none());
    assert_taken(&mut io);
}
}

// ------------------------------------------------------------------------------------------------
// SK-1, SK-3 / ZB-1
// ------------------------------------------------------------------------------------------------

backend_test! {
/// SK-1: the peer's graceful close completes a pending receive successfully with 0 bytes
/// (event set), and a receive issued afterwards (re-using the record) too.
fn sk1_peer_close_completes_pending_recv_with_zero_bytes() {
    let (s, client) = unassociated_tcp_pair();
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(13u32, 32, &ev), MsgFlags::NONE));
    stays_unset(&ev, "pending");
    client.shutdown(Shutdown::Write).unwrap();
    signaled(&ev, "SK-1");
    let ov = result_now(&mut io, "SK-1");
    assert_eq!(ok_bytes(&ov, "recv at EOF"), 0, "SK-1: graceful close → success, 0 bytes");

    let mut io = event_io(s.recv(ov, MsgFlags::NONE));
    signaled(&ev, "SK-1: subsequent receive");
    assert_eq!(ok_bytes(&result_now(&mut io, "SK-1 again"), "recv at EOF"), 0);
    drop(client);
}
}

backend_test! {
/// ZB-1 / SK-3: a zero-length receive pends until data is available, completes with 0 bytes
/// through its event without consuming the data; the follow-up normal receive gets the data.
/// After the peer's close, the zero-byte receive completes with 0 again, and the follow-up
/// normal receive's 0 is what tells EOF.
fn zb1_sk3_zero_byte_recv_idiom_on_the_event_path() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::new();
    let zero = Overlapped::with_buffers(14u32, BufList::single(Vec::new())).with_event(ev.clone());
    let mut io = event_io(s.recv(zero, MsgFlags::NONE));
    stays_unset(&ev, "ZB-1: pends until data is available");
    client.write_all(b"ping").unwrap();
    signaled(&ev, "ZB-1");
    let zero = result_now(&mut io, "ZB-1");
    assert_eq!(ok_bytes(&zero, "zero-byte recv"), 0, "ZB-1: 0 bytes");
    assert!(zero.buffers()[0].is_empty(), "the zero-length buffer comes back empty");

    let ev2 = Event::new();
    let mut io = event_io(s.recv(recv_ov(15u32, 16, &ev2), MsgFlags::NONE));
    signaled(&ev2, "ZB-1 follow-up");
    let ov = result_now(&mut io, "ZB-1 follow-up");
    assert_eq!(ok_bytes(&ov, "recv"), 4, "ZB-1: the data was not consumed");
    assert_eq!(ov.buffers().gather(4), b"ping");

    client.shutdown(Shutdown::Write).unwrap();
    let mut io = event_io(s.recv(zero, MsgFlags::NONE));
    signaled(&ev, "SK-3: zero-byte recv at EOF");
    assert_eq!(ok_bytes(&result_now(&mut io, "SK-3"), "zero-byte recv"), 0);
    let mut io = event_io(s.recv(ov, MsgFlags::NONE));
    signaled(&ev2, "SK-1: the follow-up receive");
    assert_eq!(ok_bytes(&result_now(&mut io, "SK-1"), "recv at EOF"), 0, "SK-3: the normal receive reads EOF");
}
}

// ------------------------------------------------------------------------------------------------
// Many events (WE-3)
// ------------------------------------------------------------------------------------------------

backend_test! {
/// EV-2 / WE-3 / 1.7 row 4: 100 sockets, each with a pending receive and its own event, waited
/// with wait_for_events over more than 64 events (no 64 limit in this library): each wake-up's
/// index is a signalled event whose operation is complete and belongs to that socket; every
/// completion is found exactly once and every byte checked. Data is sent in reverse order.
fn we3_many_sockets_each_with_its_own_event_over_more_than_64_events() {
    const N: usize = 100;
    const LEN: usize = 48;
    let listener = TcpListener::bind(loopback()).unwrap();
    let mut socks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..N {
        let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, _) = listener.accept().unwrap();
        c.set_write_timeout(Some(WAIT)).unwrap();
        socks.push(Socket::from(s));
        clients.push(c);
    }
    let events: Vec<Event> = (0..N).map(|_| Event::new()).collect();
    let mut ios: Vec<Option<PendingIo<usize>>> =
        (0..N).map(|i| Some(event_io(socks[i].recv(recv_ov(i, LEN, &events[i]), MsgFlags::NONE)))).collect();
    match wait_for_events(&events, false, Some(QUIET), false) {
        Ok(Wait::Timeout) => {}
        other => panic!("nothing sent yet, the wait gave {other:?}"),
    }

    for (i, c) in clients.iter_mut().enumerate().rev() {
        c.write_all(&pattern(i, LEN)).unwrap();
    }
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); N];
    let mut finished = 0;
    while finished < N {
        let i = match wait_for_events(&events, false, Some(WAIT), false) {
            Ok(Wait::Signaled(i)) => i,
            other => panic!("{finished} of {N} receives done, then the wait gave {other:?}"),
        };
        assert!(i < N, "index {i} out of range");
        assert!(events[i].is_set(), "a manual-reset event stays signalled after the wait (WE-3)");
        let mut io = ios[i].take().unwrap_or_else(|| panic!("event {i} signalled again after its operation ended"));
        let ov = result_now(&mut io, &format!("socket {i}"));
        assert_eq!(*ov.context(), i, "the operation behind event {i} is the one issued on socket {i}");
        let n = ok_bytes(&ov, &format!("socket {i}"));
        assert!(n > 0, "socket {i}: the peer did not close");
        got[i].extend_from_slice(&ov.buffers().gather(n));
        events[i].reset().unwrap();
        if got[i].len() < LEN {
            // A short receive (RV-1 allows it): re-issue the record for the rest.
            let mut ov = ov;
            ov.buffers_mut()[0].clear();
            ios[i] = Some(event_io(socks[i].recv(ov, MsgFlags::NONE)));
        } else {
            finished += 1;
        }
    }
    for (i, g) in got.iter().enumerate() {
        assert_eq!(*g, pattern(i, LEN), "socket {i}: every byte, in order");
    }
    match wait_for_events(&events, false, Some(QUIET), false) {
        Ok(Wait::Timeout) => {}
        other => panic!("all done, yet the wait gave {other:?}"),
    }
}
}

// ------------------------------------------------------------------------------------------------
// AcceptEx, ConnectEx, DisconnectEx on the event path
// ------------------------------------------------------------------------------------------------

backend_test! {
/// AX-4 / AX-8 / 1.7 row 4: an accept on a listener associated with no port, with an event:
/// it pends until a client connects, then sets the event; the record gives the accepted socket
/// with the client's addresses, and that socket works for event receives too.
fn ax4_accept_on_unassociated_listener_completes_through_its_event() {
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    let ev = Event::manual(true);
    let mut io = event_io(listener.accept(Overlapped::new(16u32).with_event(ev.clone())));
    assert!(!ev.is_set(), "EV-2: the accept reset the event");
    stays_unset(&ev, "AX-4: no connection yet");

    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    client.set_write_timeout(Some(WAIT)).unwrap();
    signaled(&ev, "AX-4: the connection completes the accept");
    let mut ov = result_now(&mut io, "accept");
    assert_eq!(ok_bytes(&ov, "accept"), 0, "AX-4: no receive buffer → 0 bytes");
    assert_eq!(*ov.context(), 16);
    let acc = ov.take_accepted().expect("a successful accept gives the new socket");
    assert_eq!(acc.remote_addr, client.local_addr().unwrap());
    assert_eq!(acc.local_addr, client.peer_addr().unwrap());
    assert!(ov.take_accepted().is_none(), "handed out once");

    let ev2 = Event::new();
    let mut rio = event_io(acc.socket.recv(recv_ov(17u32, 32, &ev2), MsgFlags::NONE));
    client.write_all(b"accepted").unwrap();
    signaled(&ev2, "recv on the accepted socket");
    let r = result_now(&mut rio, "recv on the accepted socket");
    assert_eq!(ok_bytes(&r, "recv"), 8);
    assert_eq!(r.buffers().gather(8), b"accepted");
}
}

backend_test! {
/// AX-4: an accept with a receive buffer on the event path completes only once data arrives,
/// with that data.
fn ax4_accept_with_buffer_through_its_event_waits_for_data() {
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    let ev = Event::new();
    let ov = Overlapped::with_buffers(18u32, BufList::with_capacity(64)).with_event(ev.clone());
    let mut io = event_io(listener.accept(ov));
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    stays_unset(&ev, "AX-4: connected, but no byte received yet");
    client.write_all(b"first").unwrap();
    signaled(&ev, "AX-4");
    let mut ov = result_now(&mut io, "accept with data");
    assert_eq!(ok_bytes(&ov, "accept"), 5);
    assert_eq!(ov.buffers().gather(5), b"first");
    assert!(ov.take_accepted().is_some());
}
}

/// CX-2 / 1.7 row 4: ConnectEx with data on a bound socket associated with no port completes
/// through its event with the byte count sent; the listener side reads the data.
fn connect_with_data(addr: SocketAddr) {
    let listener = TcpListener::bind(addr).unwrap();
    let s = Socket::tcp_for(&addr).unwrap();
    s.bind(addr).unwrap();
    let ev = Event::manual(true);
    let bufs = vec![b"hello ".to_vec(), b"connect".to_vec(), b"ex".to_vec()];
    let mut io = event_io(
        s.connect(listener.local_addr().unwrap(), Overlapped::with_buffers(19u32, bufs).with_event(ev.clone())),
    );
    signaled(&ev, "CX-2: the connect completes");
    let ov = result_now(&mut io, "connect");
    assert_eq!(ok_bytes(&ov, "connect"), 15, "CX-2: the byte count is the data sent");
    assert_eq!(ov.buffers().len(), 3, "the send buffers come back");

    let (peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    (&peer).read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello connectex");
}

backend_test! {
fn cx2_connect_with_data_through_its_event_v4() {
    connect_with_data(loopback());
}
}

backend_test! {
fn cx2_connect_with_data_through_its_event_v6() {
    connect_with_data(loopback_v6());
}
}

backend_test! {
/// CX-3: a refused ConnectEx on the event path sets the event; the record holds
/// WSAECONNREFUSED 10061 / ERROR_CONNECTION_REFUSED 1225.
fn cx3_refused_connect_through_its_event() {
    let l = TcpListener::bind(loopback()).unwrap();
    let to = l.local_addr().unwrap();
    drop(l);
    let s = Socket::tcp_for(&to).unwrap();
    s.bind(loopback()).unwrap();
    let ev = Event::new();
    let mut io = event_io(s.connect(to, Overlapped::new(20u32).with_event(ev.clone())));
    signaled(&ev, "CX-3");
    let ov = result_now(&mut io, "refused connect");
    assert_error(op_error(&ov, "refused connect"), ErrorKind::ConnectionRefused, 1225, 10061);
}
}

backend_test! {
/// DX-2 / DX-3 / CN-8: DisconnectEx on the event path completes with 0 bytes through its event,
/// and the peer reads EOF.
fn dx2_disconnect_through_its_event_and_the_peer_reads_eof() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::manual(true);
    let mut io = event_io(s.disconnect(Overlapped::new(21u32).with_event(ev.clone())));
    signaled(&ev, "DX-2");
    let ov = result_now(&mut io, "disconnect");
    assert_eq!(ok_bytes(&ov, "disconnect"), 0, "DX-2: 0 bytes");
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "DX-3: the peer reads EOF");
}
}

// ------------------------------------------------------------------------------------------------
// Ports and events (1.7 rows 2 and 3, NM-1, NM-2, IO-1)
// ------------------------------------------------------------------------------------------------

backend_test! {
/// 1.7 row 2 / EV-2: on a socket associated with a port, a record with an event (low bit clear)
/// returns Issued::Pending; the completion queues a packet with the record AND sets the event.
fn row2_associated_socket_with_event_queues_packet_and_sets_event() {
    let p: CompletionPort<u32> = port(2);
    let (s, mut client) = tcp_pair(&p, 5);
    let ev = Event::manual(true);
    match s.recv(recv_ov(22u32, 32, &ev), MsgFlags::NONE) {
        Ok(Issued::Pending) => {}
        Ok(Issued::Event(_)) => {
            panic!("1.7 row 2: an associated socket's op (event low bit clear) reports to its port")
        }
        Ok(Issued::Completed(ov)) => panic!("no skip mode, yet completed inline: {ov:?}"),
        Err(r) => panic!("rejected: {}", r.error),
    }
    assert!(!ev.is_set(), "EV-2: issuing reset the event");
    assert_quiet(&p);
    client.write_all(b"both").unwrap();
    let c = next(&p);
    assert_eq!(c.key, 5);
    assert_eq!(c.result().unwrap(), 4);
    let ov = c.overlapped.expect("the packet carries the record");
    assert_eq!(*ov.context(), 22);
    assert_eq!(ov.buffers().gather(4), b"both");
    assert!(ov.event().is_some(), "the record keeps its event");
    signaled(&ev, "1.7 row 2: the event is set as well as the packet queued");
    assert_quiet(&p);
}
}

backend_test! {
/// 1.7 row 3 / IO-1: set_event_only (hEvent low bit set) on an associated socket: the op
/// returns Issued::Event, the completion sets the event and queues NO packet; the result comes
/// through overlapped_result.
fn row3_set_event_only_on_associated_socket_sets_event_and_queues_no_packet() {
    let p: CompletionPort<u32> = port(2);
    let (s, mut client) = tcp_pair(&p, 6);
    let ev = Event::manual(true);
    let mut ov = Overlapped::with_buffers(23u32, BufList::with_capacity(32));
    ov.set_event_only(ev.clone());
    assert!(ov.event().is_some());
    let mut io = event_io(s.recv(ov, MsgFlags::NONE));
    assert!(!ev.is_set(), "EV-2: issuing reset the event");
    client.write_all(b"no packet").unwrap();
    signaled(&ev, "1.7 row 3");
    let ov = result_now(&mut io, "1.7 row 3");
    assert_eq!(ok_bytes(&ov, "recv"), 9);
    assert_eq!(ov.buffers().gather(9), b"no packet");
    assert_quiet(&p); // 1.7 row 3: no packet

    // The immediate-success path (a send) follows the same rule.
    let mut io = event_io(s.send(ov_with_bytes_event_only(24, b"out", &ev), MsgFlags::NONE));
    signaled(&ev, "1.7 row 3 / 1.4: immediate send");
    assert_eq!(ok_bytes(&result_now(&mut io, "send"), "send"), 3);
    assert_quiet(&p);
}
}

fn ov_with_bytes_event_only(ctx: u32, data: &[u8], ev: &Event) -> Overlapped<u32> {
    let mut ov = Overlapped::with_buffers(ctx, data.to_vec());
    ov.set_event_only(ev.clone());
    ov
}

backend_test! {
/// NM-2 / NM-1 / 1.4: skip-on-success mode (set before association, and again: flags
/// accumulate) on an associated socket with an event: an immediately successful send returns
/// Issued::Completed, queues no packet, and still sets the event; a pending receive still
/// queues its packet and sets its event.
fn nm2_skip_mode_immediate_send_returns_completed_and_sets_event() {
    let p: CompletionPort<u32> = port(2);
    let (s, mut client) = unassociated_tcp_pair();
    s.set_skip_completion_port_on_success().expect("NM-1: set before association");
    p.associate(&s, 7).unwrap();
    s.set_skip_completion_port_on_success().expect("NM-1: setting it again succeeds");

    let ev = Event::new();
    let ov = Overlapped::with_buffers(25u32, b"inline".to_vec()).with_event(ev.clone());
    match s.send(ov, MsgFlags::NONE) {
        Ok(Issued::Completed(ov)) => {
            assert_eq!(ok_bytes(&ov, "send"), 6);
            assert_eq!(*ov.context(), 25);
        }
        Ok(Issued::Pending) => panic!("NM-2: a small send on a fresh connection completes at once"),
        Ok(Issued::Event(_)) => panic!("an associated socket's op without set_event_only reports to its port"),
        Err(r) => panic!("rejected: {}", r.error),
    }
    signaled(&ev, "NM-2: events are still signalled in skip mode");
    assert_quiet(&p); // NM-2: no packet
    let mut got = [0u8; 6];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"inline");

    let ev2 = Event::manual(true);
    match s.recv(recv_ov(26u32, 32, &ev2), MsgFlags::NONE) {
        Ok(Issued::Pending) => {}
        other => panic!("NM-2: nothing buffered, the receive must pend: {:?}", other.map(|i| i.is_pending())),
    }
    assert!(!ev2.is_set(), "EV-2");
    client.write_all(b"later").unwrap();
    let c = next(&p);
    assert_eq!((c.key, c.result().unwrap()), (7, 5), "NM-2: a pending op still queues its packet");
    signaled(&ev2, "NM-2: and sets its event");
    assert_quiet(&p);
}
}

// ------------------------------------------------------------------------------------------------
// Cancellation and close (§5)
// ------------------------------------------------------------------------------------------------

backend_test! {
/// CN-2 / CN-3: CancelIoEx(socket, ov) on a pending event receive: the event is set and the
/// record holds WSA_OPERATION_ABORTED (995), 0 bytes; cancelling it again finds nothing
/// (ERROR_NOT_FOUND 1168).
fn cn3_cancel_pending_event_recv_sets_event_with_operation_aborted() {
    let (s, _client) = unassociated_tcp_pair();
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(27u32, 32, &ev), MsgFlags::NONE));
    stays_unset(&ev, "pending");
    s.cancel(io.id()).expect("CN-2: the pending receive is found");
    signaled(&ev, "CN-3: a cancelled operation sets its event");
    let ov = result_now(&mut io, "cancelled recv");
    assert_error(op_error(&ov, "cancelled recv"), ErrorKind::OperationAborted, 995, 995);
    assert_eq!(ov.bytes_transferred(), 0, "CN-3: InternalHigh = 0");
    assert_eq!(*ov.context(), 27);
    match s.cancel(ov.id()) {
        Err(e) => assert_eq!((e.kind(), e.win32_error()), (ErrorKind::NotFound, 1168), "CN-2: {e}"),
        Ok(()) => panic!("CN-2: nothing pending any more, yet something was cancelled"),
    }
}
}

backend_test! {
/// CN-2: CancelIoEx(socket, NULL) cancels every pending event operation of the socket; each
/// event is set and each record holds WSA_OPERATION_ABORTED.
fn cn2_cancel_all_cancels_every_pending_event_op() {
    let (s, _client) = unassociated_tcp_pair();
    let events: Vec<Event> = (0..3).map(|_| Event::new()).collect();
    let mut ios: Vec<_> = events.iter().map(|ev| event_io(s.recv(recv_ov(28u32, 8, ev), MsgFlags::NONE))).collect();
    s.cancel_all().expect("CN-2");
    match wait_for_events(&events, true, Some(WAIT), false) {
        Ok(Wait::Signaled(_)) => {}
        other => panic!("CN-3: every cancelled op sets its event; the wait gave {other:?}"),
    }
    for io in &mut ios {
        let ov = result_now(io, "cancel_all");
        assert_eq!(op_error(&ov, "cancel_all").kind(), ErrorKind::OperationAborted);
    }
}
}

backend_test! {
/// CN-5: closing a connected TCP socket with a pending event receive completes it: the event is
/// set and the record holds WSAECONNABORTED 10053 / ERROR_CONNECTION_ABORTED 1236.
fn cn5_close_with_pending_event_recv_is_connection_aborted() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(29u32, 32, &ev), MsgFlags::NONE));
    stays_unset(&ev, "pending");
    s.close().unwrap();
    signaled(&ev, "CN-5: closesocket performs the notifications");
    let ov = result_now(&mut io, "recv of a closed socket");
    assert_error(op_error(&ov, "recv of a closed socket"), ErrorKind::ConnectionAborted, 1236, 10053);
    // §8.4.5: the descriptor was really closed: the peer sees EOF or a reset.
    let mut buf = [0u8; 8];
    match client.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the peer should see the close, got {other:?}"),
    }
}
}

backend_test! {
/// 1.9 / CN-3 / CN-5: dropping the PendingIo of a pending operation is safe: the record (which
/// the kernel may still write) lives on; closing the socket then completes the operation and
/// frees the record (its context's Drop runs exactly once), without a crash.
fn dropped_pending_io_then_close_frees_the_record() {
    let (s, _client) = unassociated_tcp_pair();
    let drops = Arc::new(AtomicUsize::new(0));
    let ev = Event::new();
    let io = event_io(s.recv(recv_ov(DropCount(drops.clone()), 64, &ev), MsgFlags::NONE));
    drop(io);
    stays_unset(&ev, "still pending after the handle was dropped");
    assert_eq!(drops.load(Ordering::SeqCst), 0, "1.9: the record of a pending op must outlive its handle");
    s.close().unwrap();
    signaled(&ev, "CN-5: the close still notifies through the event");
    wait_drops(&drops, 1, "after close");
    drop(s);
    thread::sleep(QUIET);
    assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped exactly once");
}
}

backend_test! {
/// 1.9 / EV-2: dropping the PendingIo of a pending operation that then completes normally: the
/// data is consumed by the operation, its event set, and its record freed.
fn dropped_pending_io_then_completion_frees_the_record() {
    let (s, mut client) = unassociated_tcp_pair();
    let drops = Arc::new(AtomicUsize::new(0));
    let ev = Event::new();
    drop(event_io(s.recv(recv_ov(DropCount(drops.clone()), 64, &ev), MsgFlags::NONE)));
    client.write_all(b"orphan").unwrap();
    signaled(&ev, "the orphaned receive completes");
    wait_drops(&drops, 1, "after completion");

    // The socket stays usable.
    let ev2 = Event::new();
    let mut io = event_io(s.recv(recv_ov(DropCount(drops.clone()), 64, &ev2), MsgFlags::NONE));
    client.write_all(b"next").unwrap();
    signaled(&ev2, "next receive");
    let ov = result_now(&mut io, "next receive");
    assert_eq!(ov.buffers().gather(ok_bytes(&ov, "recv")), b"next", "the orphaned op consumed its own data only");
    drop(ov);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
}
}

// ------------------------------------------------------------------------------------------------
// Re-issuing a record with its event
// ------------------------------------------------------------------------------------------------

backend_test! {
/// EV-2 / 1.9: a completed record keeps its event (like hEvent in the OVERLAPPED) and its
/// identity; re-issued (as a receive, then as a send), the same event is reset at issue and set
/// at completion each time.
fn ev2_record_with_its_event_can_be_reissued() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::new();
    let ov = recv_ov(30u32, 16, &ev);
    let id = ov.id();
    let mut io = event_io(s.recv(ov, MsgFlags::NONE));
    assert_eq!(io.id(), id, "the handle names the record issued");
    client.write_all(b"one").unwrap();
    signaled(&ev, "first");
    let mut ov = result_now(&mut io, "first");
    assert_eq!(ov.buffers().gather(ok_bytes(&ov, "first")), b"one");
    let attached = ov.event().expect("the event stays attached").clone();
    attached.reset().unwrap();
    assert!(!ev.is_set(), "the attached event is the same object as the one given");
    attached.set().unwrap();

    ov.buffers_mut()[0].clear();
    let mut io = event_io(s.recv(ov, MsgFlags::NONE));
    assert_eq!(io.id(), id, "the record keeps its identity");
    assert!(!ev.is_set(), "EV-2: re-issuing reset the (signalled) event");
    stays_unset(&ev, "second receive pending");
    client.write_all(b"two").unwrap();
    signaled(&ev, "second");
    let mut ov = result_now(&mut io, "second");
    assert_eq!(ov.buffers().gather(ok_bytes(&ov, "second")), b"two");
    assert!(ov.event().is_some());

    *ov.buffers_mut() = BufList::single(b"three".to_vec());
    let mut io = event_io(s.send(ov, MsgFlags::NONE));
    signaled(&ev, "third (send)");
    let ov = result_now(&mut io, "third");
    assert_eq!(ok_bytes(&ov, "third"), 5);
    assert!(ov.event().is_some());
    let mut got = [0u8; 5];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"three");
}
}

backend_test! {
/// set_event(None) detaches the event: the next operation neither resets nor sets it (EV-3:
/// no event), yet completes and is fetched with overlapped_result(true).
fn ev3_set_event_none_detaches_the_event() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::manual(true);
    let mut ov = recv_ov(31u32, 16, &ev);
    ov.set_event(None);
    assert!(ov.event().is_none());
    let io = event_io(s.recv(ov, MsgFlags::NONE));
    assert!(ev.is_set(), "a detached event is not reset at issue");
    ev.reset().unwrap();
    client.write_all(b"bare").unwrap();
    let rx = wait_in_background(io);
    let (_io, r) = waited(&rx, "EV-3");
    let ov = r.expect("EV-3");
    assert_eq!(ov.buffers().gather(ok_bytes(&ov, "recv")), b"bare");
    stays_unset(&ev, "a detached event is not set at completion");
}
}

// ------------------------------------------------------------------------------------------------
// More of §1 and §5 on the event path
// ------------------------------------------------------------------------------------------------

backend_test! {
/// 1.11: on an overlapped socket with FIONBIO set, an overlapped receive still pends (never
/// WSAEWOULDBLOCK) and completes through its event when data comes.
fn rule_1_11_nonblocking_socket_overlapped_recv_still_pends() {
    let (s, mut client) = unassociated_tcp_pair();
    s.sock_ref().set_nonblocking(true).unwrap();
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(40u32, 16, &ev), MsgFlags::NONE));
    stays_unset(&ev, "1.11: pending, not WSAEWOULDBLOCK");
    match io.overlapped_result(false) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::IoIncomplete, "{e}"),
        Ok(ov) => panic!("1.11: nothing sent, yet completed: {:?}", ov.result()),
    }
    client.write_all(b"nb").unwrap();
    signaled(&ev, "1.11");
    let ov = result_now(&mut io, "1.11");
    assert_eq!(ov.buffers().gather(ok_bytes(&ov, "recv")), b"nb");
}
}

backend_test! {
/// 1.12: SO_RCVTIMEO does not apply to an overlapped receive: it stays pending past the
/// timeout and then completes with the data.
fn rule_1_12_receive_timeout_does_not_apply_to_overlapped_recv() {
    let (s, mut client) = unassociated_tcp_pair();
    s.sock_ref().set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(41u32, 16, &ev), MsgFlags::NONE));
    stays_unset(&ev, "1.12: still pending well past SO_RCVTIMEO");
    assert!(!io.is_completed(), "1.12: not timed out");
    client.write_all(b"late").unwrap();
    signaled(&ev, "1.12");
    let ov = result_now(&mut io, "1.12");
    assert_eq!(ov.buffers().gather(ok_bytes(&ov, "recv")), b"late", "1.12: success, not WSAETIMEDOUT");
}
}

backend_test! {
/// CN-4 / CN-3: a pending event accept is cancelled through the listener; AX-9 / CN-5: closing
/// the listener completes another pending accept with WSA_OPERATION_ABORTED (995); both set
/// their events.
fn cn4_cn5_pending_event_accept_cancelled_or_listener_closed_is_operation_aborted() {
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    let ev = Event::new();
    let mut io = event_io(listener.accept(Overlapped::new(42u32).with_event(ev.clone())));
    stays_unset(&ev, "no connection");
    listener.cancel(io.id()).expect("CN-4: the accept is an operation on the listener");
    signaled(&ev, "CN-3: the cancelled accept sets its event");
    let mut ov = result_now(&mut io, "cancelled accept");
    assert_error(op_error(&ov, "cancelled accept"), ErrorKind::OperationAborted, 995, 995);
    assert!(ov.take_accepted().is_none(), "a cancelled accept gives no socket");

    let mut io = event_io(listener.accept(ov));
    assert!(!ev.is_set(), "EV-2: re-issuing reset the event");
    listener.close().unwrap();
    signaled(&ev, "CN-5: closing the listener notifies");
    let mut ov = result_now(&mut io, "accept of a closed listener");
    assert_error(op_error(&ov, "accept of a closed listener"), ErrorKind::OperationAborted, 995, 995);
    assert!(ov.take_accepted().is_none());
}
}

backend_test! {
/// CN-1: CancelIo cancels only the operations the calling thread issued on the socket: a
/// receive issued by another (still running) thread stays pending until that thread cancels.
fn cn1_cancel_io_cancels_only_this_threads_event_ops() {
    let (s, _client) = unassociated_tcp_pair();
    let (ev_main, ev_other) = (Event::new(), Event::new());
    let mut mine = event_io(s.recv(recv_ov(43u32, 8, &ev_main), MsgFlags::NONE));

    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (io_tx, io_rx) = mpsc::channel();
    let other = {
        let (s, ev) = (s.clone(), ev_other.clone());
        thread::spawn(move || {
            let io = event_io(s.recv(recv_ov(44u32, 8, &ev), MsgFlags::NONE));
            io_tx.send(io).unwrap();
            // Stay alive (TE-1) until told to cancel this thread's operations.
            go_rx.recv_timeout(WAIT).expect("the test tells this thread to cancel");
            s.cancel_io()
        })
    };
    let mut theirs = io_rx.recv_timeout(WAIT).expect("the other thread issued its receive");

    s.cancel_io().expect("CN-1: this thread's receive is found");
    signaled(&ev_main, "CN-1: this thread's receive is cancelled");
    let ov = result_now(&mut mine, "CancelIo");
    assert_eq!(op_error(&ov, "CancelIo").kind(), ErrorKind::OperationAborted);
    stays_unset(&ev_other, "CN-1: the other thread's receive is untouched");
    assert!(!theirs.is_completed());

    go_tx.send(()).unwrap();
    other.join().unwrap().expect("CN-1: the other thread cancels its own receive");
    signaled(&ev_other, "CN-1: cancelled by its own thread");
    let ov = result_now(&mut theirs, "CancelIo on the other thread");
    assert_eq!(op_error(&ov, "CancelIo").kind(), ErrorKind::OperationAborted);
}
}

backend_test! {
/// CN-7: shutdown(SD_RECEIVE) does not abort an event receive already pending: it completes
/// with data sent later; a new receive is rejected with WSAESHUTDOWN (10058) and signals
/// nothing (1.5).
fn cn7_shutdown_read_keeps_the_pending_event_recv() {
    let (s, mut client) = unassociated_tcp_pair();
    let ev = Event::new();
    let mut io = event_io(s.recv(recv_ov(45u32, 16, &ev), MsgFlags::NONE));
    s.shutdown(Shutdown::Read).unwrap();
    stays_unset(&ev, "CN-7: the pending receive is not aborted");

    let ev2 = Event::new();
    let e = rejected_quietly(&ev2, 46, &[0], s.recv(recv_ov(46u32, 16, &ev2), MsgFlags::NONE), "recv after SD_RECEIVE");
    assert_eq!((e.kind(), e.wsa_error()), (ErrorKind::Shutdown, 10058), "CN-7: {e}");

    client.write_all(b"after").unwrap();
    signaled(&ev, "CN-7: completes with later data");
    let ov = result_now(&mut io, "CN-7");
    assert_eq!(ov.buffers().gather(ok_bytes(&ov, "recv")), b"after");
}
}

// ------------------------------------------------------------------------------------------------
// Thread exit (TE-1)
// ------------------------------------------------------------------------------------------------

backend_test! {
/// TE-1: an event operation (no port) still pending when its issuing thread exits is cancelled:
/// its event is set and the record holds WSA_OPERATION_ABORTED; the handle, passed to another
/// thread, still gives the result.
fn te1_event_op_of_an_exited_thread_is_cancelled_and_notified() {
    let (s, _client) = unassociated_tcp_pair();
    let ev = Event::new();
    let issuer = {
        let (s, ev) = (s.clone(), ev.clone());
        thread::spawn(move || event_io(s.recv(recv_ov(50u32, 16, &ev), MsgFlags::NONE)))
    };
    let mut io = issuer.join().expect("the issuing thread");
    signaled(&ev, "TE-1: the cancelled operation's event is set");
    let ov = result_now(&mut io, "TE-1");
    assert_error(op_error(&ov, "TE-1"), ErrorKind::OperationAborted, 995, 995);
    assert_eq!(*ov.context(), 50);
}
}

backend_test! {
/// TE-1 / 1.7 row 2: on a port-associated socket, an operation WITH an event (low bit clear)
/// still pending when its issuing thread exits is cancelled: its packet comes with
/// WSA_OPERATION_ABORTED (995) and its event is set. (Only port operations with no event
/// survive thread exit.)
fn te1_port_op_with_event_is_cancelled_at_thread_exit() {
    let p: CompletionPort<u32> = port(2);
    let (s, _client) = tcp_pair(&p, 9);
    let ev = Event::new();
    let issued = {
        let (s, ev) = (s.clone(), ev.clone());
        thread::spawn(move || {
            s.recv(recv_ov(51u32, 16, &ev), MsgFlags::NONE).map(|i| i.is_pending()).map_err(|r| r.error)
        })
        .join()
        .expect("the issuing thread")
    };
    assert_eq!(issued, Ok(true), "the receive pends (Issued::Pending, 1.7 row 2)");
    let c = next(&p);
    assert_eq!(c.key, 9);
    assert_eq!(c.status.map_err(|e| e.kind()), Err(ErrorKind::OperationAborted), "TE-1: cancelled at thread exit");
    let ov = c.overlapped.expect("the packet carries the record");
    assert_eq!(*ov.context(), 51);
    signaled(&ev, "TE-1: its event is set too");
    assert_quiet(&p);
}
}

backend_test! {
/// TE-1: on a port-associated socket, an operation with no event survives its issuing thread's
/// exit and completes with its data through the port.
fn te1_port_op_without_event_survives_thread_exit() {
    let p: CompletionPort<u32> = port(2);
    let (s, mut client) = tcp_pair(&p, 10);
    let issued = {
        let s = s.clone();
        thread::spawn(move || {
            let ov = Overlapped::with_buffers(52u32, BufList::with_capacity(16));
            s.recv(ov, MsgFlags::NONE).map(|i| i.is_pending()).map_err(|r| r.error)
        })
        .join()
        .expect("the issuing thread")
    };
    assert_eq!(issued, Ok(true), "the receive pends (Issued::Pending)");
    assert_quiet(&p); // TE-1: not cancelled by the thread's exit

    client.write_all(b"survivor").unwrap();
    let c = next(&p);
    assert_eq!(c.key, 10);
    assert_eq!(c.result().map_err(|e| e.kind()), Ok(8), "TE-1: the surviving receive gets the data");
    let ov = c.overlapped.expect("the packet carries the record");
    assert_eq!(*ov.context(), 52);
    assert_eq!(ov.buffers().gather(8), b"survivor");
}
}
