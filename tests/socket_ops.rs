//! Conformance of each overlapped socket operation through a completion port, written from the
//! spec (`iocp-semantics.md` §1, §2.11, §5, §6): AcceptEx, ConnectEx, WSASend/WSARecv,
//! WSASendTo/WSARecvFrom, DisconnectEx, shutdown and the non-overlapped (blocking) calls, over
//! IPv4 and IPv6 loopback. Every test names the rule ids it checks.

#[macro_use]
mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use common::{WAIT, assert_quiet, loopback, loopback_v6, next, tcp_pair_on};
use overlapped::{
    BufList, CompletionPort, Error, ErrorKind, Issued, MsgFlags, Overlapped, OverlappedId, Rejected, Shutdown, Socket,
};

type Port = CompletionPort<u32>;
type IssueResult = Result<Issued<u32>, Rejected<u32>>;

/// A long bound for the one test that moves megabytes through a slow reader.
const LONG_WAIT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

/// A finished operation taken from the port.
struct Done {
    status: Result<(), Error>,
    bytes: usize,
    ov: Overlapped<u32>,
}

impl Done {
    /// The byte count of a completion that must have succeeded.
    #[track_caller]
    fn ok(&self) -> usize {
        match self.status {
            Ok(()) => self.bytes,
            Err(e) => panic!("expected success, the operation failed with {e}"),
        }
    }

    /// The error of a completion that must have failed.
    #[track_caller]
    fn err(&self) -> Error {
        match self.status {
            Ok(()) => panic!("expected a failure, the operation succeeded with {} bytes", self.bytes),
            Err(e) => e,
        }
    }
}

fn new_port() -> Port {
    common::port(0)
}

/// Issues an operation that must pend (without skip-on-success mode every operation completes
/// through exactly one packet, 1.4) and returns the record's identity.
#[track_caller]
fn issue(ov: Overlapped<u32>, op: impl FnOnce(Overlapped<u32>) -> IssueResult) -> OverlappedId {
    let id = ov.id();
    match op(ov) {
        Ok(Issued::Pending) => {}
        Ok(Issued::Event(_)) => panic!("an associated socket's operation reports through its port"),
        Ok(Issued::Completed(ov)) => panic!("completed inline without skip-on-success mode: {ov:?}"),
        Err(r) => panic!("the operation was rejected: {}", r.error),
    }
    id
}

/// Checks a packet's record against the packet itself: the status block (`Internal`,
/// `InternalHigh`) the record reports agrees with the packet (IO-1, GQ-1/GQ-2).
#[track_caller]
fn into_done(c: overlapped::Completion<u32>) -> (usize, Done) {
    let key = c.key;
    let ov = c.overlapped.expect("an I/O packet carries its record (GQ-1/GQ-2)");
    assert!(ov.is_completed(), "the record of a dequeued packet is completed (1.1, IO-1)");
    assert_eq!(ov.bytes_transferred(), c.bytes, "InternalHigh agrees with the packet's byte count");
    match (ov.result(), c.status) {
        (Ok(n), Ok(())) => assert_eq!(n, c.bytes),
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "the record's status agrees with the packet's"),
        (a, b) => panic!("the record's status {a:?} disagrees with the packet's {b:?}"),
    }
    (key, Done { status: c.status, bytes: c.bytes, ov })
}

/// The next packet: it must carry `key` and hand back the issued record `id` with its context
/// `ctx` (CP-6: the packet's `lpOverlapped` is the exact one the call received).
#[track_caller]
fn done(port: &Port, key: usize, id: OverlappedId, ctx: u32) -> Done {
    let (got_key, d) = into_done(next(port));
    assert_eq!(got_key, key, "completion key of the socket (CP-6)");
    assert_eq!(d.ov.id(), id, "the packet hands back the record that was issued (CP-6)");
    assert_eq!(*d.ov.context(), ctx, "the record's context comes back");
    d
}

/// The next packet, from whichever of several outstanding operations; it must carry `key`.
#[track_caller]
fn done_any(port: &Port, key: usize) -> Done {
    let (got_key, d) = into_done(next(port));
    assert_eq!(got_key, key, "completion key of the socket (CP-6)");
    d
}

/// The error of an operation that must fail, either immediately (rejected: the record comes
/// back and no packet follows, 1.5) or through its packet.
#[track_caller]
fn failure(port: &Port, key: usize, ov: Overlapped<u32>, op: impl FnOnce(Overlapped<u32>) -> IssueResult) -> Error {
    let id = ov.id();
    let ctx = *ov.context();
    match op(ov) {
        Err(r) => {
            assert_eq!(r.overlapped.id(), id, "a rejected operation hands its record back");
            assert_eq!(*r.overlapped.context(), ctx);
            assert_quiet(port); // 1.5: an immediate failure never notifies
            r.error
        }
        Ok(Issued::Pending) => done(port, key, id, ctx).err(),
        Ok(Issued::Event(_)) => panic!("an associated socket's operation reports through its port"),
        Ok(Issued::Completed(ov)) => panic!("completed inline without skip-on-success mode: {ov:?}"),
    }
}

/// The error of an operation that must fail immediately, with no packet (1.2, 1.5).
#[track_caller]
fn rejected(port: &Port, ov: Overlapped<u32>, op: impl FnOnce(Overlapped<u32>) -> IssueResult) -> Error {
    let id = ov.id();
    let ctx = *ov.context();
    let lens: Vec<usize> = ov.buffers().iter().map(Vec::len).collect();
    match op(ov) {
        Err(r) => {
            assert_eq!(r.overlapped.id(), id, "a rejected operation hands its record back");
            assert_eq!(*r.overlapped.context(), ctx);
            let back: Vec<usize> = r.overlapped.buffers().iter().map(Vec::len).collect();
            assert_eq!(back, lens, "a rejected operation hands its buffers back");
            assert_quiet(port); // 1.5
            r.error
        }
        Ok(Issued::Pending) => {
            let d = next(port);
            panic!("expected an immediate failure, the operation pended and completed with {:?}", d.result())
        }
        Ok(Issued::Event(_)) => panic!("an associated socket's operation reports through its port"),
        Ok(Issued::Completed(ov)) => panic!("expected an immediate failure, it completed inline: {ov:?}"),
    }
}

#[track_caller]
fn assert_error(e: Error, kind: ErrorKind, win32: u32, wsa: u32) {
    assert_eq!(e.kind(), kind, "error kind of {e}");
    assert_eq!(e.win32_error(), win32, "GetLastError view (1.8) of {e}");
    assert_eq!(e.wsa_error(), wsa, "WSAGetLastError view (1.8) of {e}");
}

/// Bounded blocking reads on a std peer.
fn timed(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads until EOF (bounded by the read timeout).
fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read to EOF within the timeout");
    out
}

/// A connected pair of library sockets on `addr`'s family, associated under `key_a` / `key_b`.
fn lib_pair(port: &Port, key_a: usize, key_b: usize, addr: SocketAddr) -> (Socket, Socket) {
    let (a, b) = tcp_pair_on(port, key_a, addr);
    let b = Socket::from(b);
    port.associate(&b, key_b).expect("associate");
    (a, b)
}

/// A bound TCP socket of `addr`'s family, associated under `key` (ConnectEx needs a bound
/// socket, CX-1).
fn bound_tcp(port: &Port, key: usize, addr: SocketAddr) -> Socket {
    let s = Socket::tcp_for(&addr).unwrap();
    s.bind(addr).unwrap();
    port.associate(&s, key).expect("associate");
    s
}

/// A bound UDP socket of `addr`'s family, associated under `key`.
fn bound_udp(port: &Port, key: usize, addr: SocketAddr) -> Socket {
    let s = Socket::udp_for(&addr).unwrap();
    s.bind(addr).unwrap();
    port.associate(&s, key).expect("associate");
    s
}

/// An address of `addr`'s family where nothing listens (a listener bound and closed again).
fn closed_port(addr: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind(addr).unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A deterministic byte pattern, distinct per `seed`, so reordering or duplication shows.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((seed * 131 + j * 7 + j / 251) % 253) as u8).collect()
}

// ------------------------------------------------------------------------------------------------
// AcceptEx (§6.1)
// ------------------------------------------------------------------------------------------------

/// AX-4 (receive length 0): the accept pends until a connection arrives, then completes with 0
/// bytes; the new socket's addresses are the client's, seen from the other end (AX-10, AX-8).
fn accept_without_buffer(addr: SocketAddr) {
    let port = new_port();
    let listener = Socket::listen_tcp(addr, 16).unwrap();
    port.associate(&listener, 7).unwrap();
    let id = issue(Overlapped::new(1), |ov| listener.accept(ov));
    assert_quiet(&port); // no connection yet: no completion

    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut d = done(&port, 7, id, 1);
    assert_eq!(d.ok(), 0, "AX-4: an accept without a receive buffer completes with 0 bytes");
    let acc = d.ov.take_accepted().expect("a successful accept gives the new socket");
    assert_eq!(acc.local_addr, client.peer_addr().unwrap(), "local address of the accepted connection");
    assert_eq!(acc.remote_addr, client.local_addr().unwrap(), "remote address = the client's own address");
    assert_eq!(acc.socket.local_addr().unwrap(), client.peer_addr().unwrap(), "getsockname on the new socket");
    assert_eq!(acc.socket.peer_addr().unwrap(), client.local_addr().unwrap(), "getpeername on the new socket");
    assert!(d.ov.take_accepted().is_none(), "the accepted socket is handed out once");
    assert_quiet(&port);
}

backend_test! {
fn ax4_accept_without_buffer_completes_on_connection_with_zero_bytes_v4() {
    accept_without_buffer(loopback());
}
}

backend_test! {
fn ax4_accept_without_buffer_completes_on_connection_with_zero_bytes_v6() {
    accept_without_buffer(loopback_v6());
}
}

/// AX-4 (receive length > 0): the accept does not complete on the connection alone, only when
/// data arrives, with that data in the buffer; the data is consumed (the accepted socket's next
/// receive gets what the client sends next).
fn accept_with_buffer(addr: SocketAddr) {
    let port = new_port();
    let listener = Socket::listen_tcp(addr, 16).unwrap();
    port.associate(&listener, 7).unwrap();
    let id = issue(Overlapped::with_buffers(2, BufList::with_capacity(64)), |ov| listener.accept(ov));

    let mut client = timed(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    assert_quiet(&port); // AX-4: connected, but no byte received yet
    client.write_all(b"first bytes").unwrap();
    let mut d = done(&port, 7, id, 2);
    assert_eq!(d.ok(), 11, "AX-4: the byte count is the data received with the connection");
    assert_eq!(d.ov.buffers().gather(11), b"first bytes");
    let acc = d.ov.take_accepted().expect("a successful accept gives the new socket");
    assert_eq!(acc.local_addr, client.peer_addr().unwrap());
    assert_eq!(acc.remote_addr, client.local_addr().unwrap());

    port.associate(&acc.socket, 9).unwrap();
    let rid = issue(Overlapped::with_buffers(3, BufList::with_capacity(64)), |ov| acc.socket.recv(ov, MsgFlags::NONE));
    client.write_all(b"second").unwrap();
    let r = done(&port, 9, rid, 3);
    assert_eq!(r.ok(), 6, "the accept consumed the first bytes; the next receive gets only the next ones");
    assert_eq!(r.ov.buffers().gather(6), b"second");
}

backend_test! {
fn ax4_accept_with_buffer_completes_only_after_data_v4() {
    accept_with_buffer(loopback());
}
}

backend_test! {
fn ax4_accept_with_buffer_completes_only_after_data_v6() {
    accept_with_buffer(loopback_v6());
}
}

backend_test! {
/// AX-4: after an accept whose first receive had to wait completes and its socket is closed,
/// the next accepted socket (which usually gets the same descriptor number) works on the same
/// port: the backend keeps nothing stale about the number.
fn a_socket_after_an_accept_with_data_works_on_the_same_port() {
    let port = new_port();
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    port.associate(&listener, 7).unwrap();
    let to = listener.local_addr().unwrap();
    for round in 0..3u32 {
        let id = issue(Overlapped::with_buffers(round, BufList::with_capacity(64)), |ov| listener.accept(ov));
        let mut first = timed(TcpStream::connect(to).unwrap());
        assert_quiet(&port); // the receive step waits for data
        first.write_all(b"hello").unwrap();
        let mut d = done(&port, 7, id, round);
        assert_eq!(d.ok(), 5);
        drop(d.ov.take_accepted().expect("accepted"));

        let id = issue(Overlapped::new(10 + round), |ov| listener.accept(ov));
        let mut second = timed(TcpStream::connect(to).unwrap());
        let mut d = done(&port, 7, id, 10 + round);
        let acc = d.ov.take_accepted().expect("accepted");
        port.associate(&acc.socket, 9).unwrap();
        let rid = issue(Overlapped::with_buffers(20 + round, BufList::with_capacity(64)), |ov| {
            acc.socket.recv(ov, MsgFlags::NONE)
        });
        second.write_all(b"again").unwrap();
        let r = done(&port, 9, rid, 20 + round);
        assert_eq!((r.ok(), r.ov.buffers().gather(5).as_slice()), (5, &b"again"[..]), "round {round}");
    }
}
}

backend_test! {
/// AX-4: a client that closes gracefully without sending completes an accept with a receive
/// buffer successfully with 0 bytes.
fn ax4_accept_with_buffer_client_closes_without_sending_gives_zero_bytes() {
    let port = new_port();
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    port.associate(&listener, 7).unwrap();
    let id = issue(Overlapped::with_buffers(4, BufList::with_capacity(64)), |ov| listener.accept(ov));

    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let client_addr = client.local_addr().unwrap();
    drop(client); // graceful close (FIN), nothing sent
    let mut d = done(&port, 7, id, 4);
    assert_eq!(d.ok(), 0, "AX-4: graceful close before any data → success with 0 bytes");
    let acc = d.ov.take_accepted().expect("the accept succeeded, so it gives the socket");
    assert_eq!(acc.remote_addr, client_addr);
}
}

backend_test! {
/// AX-5: the accept completion goes to the listener's port with the LISTENER's key, not the key
/// of the accepted socket (even when an earlier accepted socket is associated under another key).
fn ax5_accept_completion_carries_the_listeners_key() {
    let port = new_port();
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    port.associate(&listener, 125).unwrap();
    let addr = listener.local_addr().unwrap();

    let id = issue(Overlapped::new(1), |ov| listener.accept(ov));
    let _c1 = TcpStream::connect(addr).unwrap();
    let mut d = done(&port, 125, id, 1);
    assert_eq!(d.ok(), 0);
    let first = d.ov.take_accepted().unwrap();
    port.associate(&first.socket, 236).unwrap();

    // A second accept, reusing the same record, while an accepted socket has key 236.
    let id2 = issue(d.ov, |ov| listener.accept(ov));
    assert_eq!(id2, id, "a record keeps its identity across re-issues");
    let _c2 = TcpStream::connect(addr).unwrap();
    let mut d2 = done(&port, 125, id, 1);
    assert_eq!(d2.ok(), 0);
    assert!(d2.ov.take_accepted().is_some());

    // The accepted socket's own operations carry its own key.
    let rid = issue(Overlapped::with_buffers(2, BufList::with_capacity(8)), |ov| first.socket.recv(ov, MsgFlags::NONE));
    let mut c1 = _c1;
    c1.write_all(b"x").unwrap();
    let r = done(&port, 236, rid, 2);
    assert_eq!(r.ok(), 1);
}
}

backend_test! {
/// AX-11 / AX-7: several accepts outstanding on one listener each get a distinct connection.
/// (Which accept gets which connection is not specified: "assumed FIFO", Open questions.)
fn ax11_several_outstanding_accepts_each_get_a_connection() {
    const N: u32 = 4;
    let port = new_port();
    let (listener, ids) = outstanding_accepts(&port, N);
    assert_quiet(&port);

    let addr = listener.local_addr().unwrap();
    let clients: Vec<TcpStream> = (0..N).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let client_addrs: HashSet<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();

    let mut seen_ctx = HashSet::new();
    let mut seen_remote = HashSet::new();
    for _ in 0..N {
        let mut d = done_any(&port, 7);
        assert_eq!(d.ok(), 0);
        let ctx = *d.ov.context();
        assert_eq!(Some(&d.ov.id()), ids.get(&ctx), "each packet hands back its own record");
        assert!(seen_ctx.insert(ctx), "each accept completes once");
        let acc = d.ov.take_accepted().expect("accepted socket");
        assert!(seen_remote.insert(acc.remote_addr), "two accepts got the same connection");
    }
    assert_eq!(seen_remote, client_addrs, "every client was accepted by one of the accepts");
    assert_quiet(&port);
}
}

backend_test! {
/// AX-11: accepts outstanding on one listener stay outstanding while connections arrive one at
/// a time: each connection completes one accept, the others keep waiting (a readiness backend
/// that tries the waiting accepts on each connection must leave those that would block in
/// place).
fn ax11_outstanding_accepts_take_connections_arriving_one_at_a_time() {
    const N: u32 = 3;
    let port = new_port();
    let (listener, _) = outstanding_accepts(&port, N);
    let addr = listener.local_addr().unwrap();
    let mut seen_ctx = HashSet::new();
    let mut clients = Vec::new();
    for i in 0..N {
        clients.push(TcpStream::connect(addr).unwrap());
        let mut d = done_any(&port, 7);
        assert_eq!(d.ok(), 0, "connection {i}");
        assert!(seen_ctx.insert(*d.ov.context()), "each accept completes once");
        let acc = d.ov.take_accepted().expect("accepted socket");
        assert_eq!(acc.remote_addr, clients[i as usize].local_addr().unwrap(), "connection {i} was accepted");
        assert_quiet(&port);
    }
}
}

/// A listener associated with `port` under key 7 with `n` accepts outstanding, their records'
/// contexts `0..n`; returns it with each context's record id.
fn outstanding_accepts(port: &Port, n: u32) -> (Socket, HashMap<u32, OverlappedId>) {
    let listener = Socket::listen_tcp(loopback(), 16).unwrap();
    port.associate(&listener, 7).unwrap();
    let ids = (0..n).map(|ctx| (ctx, issue(Overlapped::new(ctx), |ov| listener.accept(ov)))).collect();
    (listener, ids)
}

/// AX-8 (Linux: the accepted socket already has its full state, §8.4.8): once associated, the
/// accepted socket sends and receives through the port.
fn accepted_socket_io(addr: SocketAddr) {
    let port = new_port();
    let listener = Socket::listen_tcp(addr, 16).unwrap();
    port.associate(&listener, 1).unwrap();
    let id = issue(Overlapped::new(0), |ov| listener.accept(ov));
    let mut client = timed(TcpStream::connect(listener.local_addr().unwrap()).unwrap());
    let mut d = done(&port, 1, id, 0);
    d.ok();
    let acc = d.ov.take_accepted().unwrap();
    port.associate(&acc.socket, 2).unwrap();

    let rid = issue(Overlapped::with_buffers(5, BufList::with_capacity(32)), |ov| acc.socket.recv(ov, MsgFlags::NONE));
    client.write_all(b"request").unwrap();
    let r = done(&port, 2, rid, 5);
    assert_eq!(r.ok(), 7);
    assert_eq!(r.ov.buffers().gather(7), b"request");

    let sid = issue(Overlapped::with_buffers(6, b"response".to_vec()), |ov| acc.socket.send(ov, MsgFlags::NONE));
    let s = done(&port, 2, sid, 6);
    assert_eq!(s.ok(), 8);
    let mut back = [0; 8];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"response");
}

backend_test! {
fn ax8_accepted_socket_sends_and_receives_once_associated_v4() {
    accepted_socket_io(loopback());
}
}

backend_test! {
fn ax8_accepted_socket_sends_and_receives_once_associated_v6() {
    accepted_socket_io(loopback_v6());
}
}

// ------------------------------------------------------------------------------------------------
// ConnectEx (§6.2)
// ------------------------------------------------------------------------------------------------

/// CX-2: a connect without data completes with 0 bytes; both ends see the right addresses.
fn connect_without_data(addr: SocketAddr) {
    let port = new_port();
    let listener = TcpListener::bind(addr).unwrap();
    let s = bound_tcp(&port, 3, addr);
    let id = issue(Overlapped::new(5), |ov| s.connect(listener.local_addr().unwrap(), ov));
    let d = done(&port, 3, id, 5);
    assert_eq!(d.ok(), 0, "CX-2: 0 bytes without a send buffer");

    let (peer, from) = listener.accept().unwrap();
    assert_eq!(from, s.local_addr().unwrap(), "the listener sees the connecting socket's address");
    assert_eq!(s.peer_addr().unwrap(), listener.local_addr().unwrap());
    let mut peer = timed(peer);

    // The connected socket is usable.
    let sid = issue(Overlapped::with_buffers(6, b"after connect".to_vec()), |ov| s.send(ov, MsgFlags::NONE));
    assert_eq!(done(&port, 3, sid, 6).ok(), 13);
    let mut back = [0; 13];
    peer.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"after connect");
}

backend_test! {
fn cx2_connect_without_data_completes_with_zero_bytes_v4() {
    connect_without_data(loopback());
}
}

backend_test! {
fn cx2_connect_without_data_completes_with_zero_bytes_v6() {
    connect_without_data(loopback_v6());
}
}

/// CX-2: with a send buffer, all of it is sent and the byte count is the bytes sent; the listener
/// side reads exactly that data.
fn connect_with_data(addr: SocketAddr) {
    let port = new_port();
    let listener = TcpListener::bind(addr).unwrap();
    let s = bound_tcp(&port, 3, addr);
    let bufs = vec![b"hello ".to_vec(), b"connect".to_vec(), b"ex".to_vec()];
    let id = issue(Overlapped::with_buffers(5, bufs), |ov| s.connect(listener.local_addr().unwrap(), ov));
    let d = done(&port, 3, id, 5);
    assert_eq!(d.ok(), 15, "CX-2: the byte count is the data sent");
    assert_eq!(d.ov.buffers().len(), 3, "the send buffers come back");

    let (peer, _) = listener.accept().unwrap();
    let mut peer = timed(peer);
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut peer), b"hello connectex", "the listener side reads exactly the data sent");
}

backend_test! {
fn cx2_connect_with_data_sends_it_and_counts_it_v4() {
    connect_with_data(loopback());
}
}

backend_test! {
fn cx2_connect_with_data_sends_it_and_counts_it_v6() {
    connect_with_data(loopback_v6());
}
}

/// CX-3: a refused connection completes (through its packet: CX-4, it pends) with
/// STATUS_CONNECTION_REFUSED: ERROR_CONNECTION_REFUSED 1225 / WSAECONNREFUSED 10061, 0 bytes; the
/// record comes back with its buffers.
fn connect_refused(addr: SocketAddr) {
    let port = new_port();
    let target = closed_port(addr);
    let s = bound_tcp(&port, 3, addr);
    let id = issue(Overlapped::with_buffers(8, b"never sent".to_vec()), |ov| s.connect(target, ov));
    let d = done(&port, 3, id, 8);
    assert_error(d.err(), ErrorKind::ConnectionRefused, 1225, 10061);
    assert_eq!(d.bytes, 0, "nothing was sent");
    assert_eq!(d.ov.buffers().gather(10), b"never sent", "the record's buffers come back on failure");
    assert_quiet(&port);
}

backend_test! {
fn cx3_connect_to_closed_port_is_refused_v4() {
    connect_refused(loopback());
}
}

backend_test! {
fn cx3_connect_to_closed_port_is_refused_v6() {
    connect_refused(loopback_v6());
}
}

backend_test! {
/// CX-3: after WSAECONNREFUSED the socket may be reused for ConnectEx.
fn cx3_socket_can_connect_again_after_refusal() {
    let port = new_port();
    let target = closed_port(loopback());
    let s = bound_tcp(&port, 3, loopback());
    let id = issue(Overlapped::new(1), |ov| s.connect(target, ov));
    let d = done(&port, 3, id, 1);
    assert_eq!(d.err().kind(), ErrorKind::ConnectionRefused);

    let listener = TcpListener::bind(loopback()).unwrap();
    let id = issue(d.ov, |ov| s.connect(listener.local_addr().unwrap(), ov));
    let d = done(&port, 3, id, 1);
    assert_eq!(d.ok(), 0, "CX-3: the refused socket connects on a second ConnectEx");
    let (_peer, from) = listener.accept().unwrap();
    assert_eq!(from, s.local_addr().unwrap());
}
}

// ------------------------------------------------------------------------------------------------
// WSARecv / WSASend (§6.6, §6.7, §2.11, §6.9)
// ------------------------------------------------------------------------------------------------

/// RV-2 / RV-1: "deadbeefs" received into buffers of 4 and 5 → "dead", "beefs", 9 bytes.
fn scatter_recv(addr: SocketAddr) {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, addr);
    let mut client = timed(client);
    let bufs = BufList::with_capacities(&[4, 5]);
    let id = issue(Overlapped::with_buffers(2, bufs), |ov| s.recv(ov, MsgFlags::NONE));
    client.write_all(b"deadbeefs").unwrap();
    let d = done(&port, 1, id, 2);
    assert_eq!(d.ok(), 9, "RV-2");
    assert_eq!(d.ov.buffers().len(), 2);
    assert_eq!(d.ov.buffers()[0], b"dead", "RV-2: the first buffer is filled first");
    assert_eq!(d.ov.buffers()[1], b"beefs", "RV-2: then the second");
}

backend_test! {
fn rv2_scatter_recv_fills_buffers_in_order_v4() {
    scatter_recv(loopback());
}
}

backend_test! {
fn rv2_scatter_recv_fills_buffers_in_order_v6() {
    scatter_recv(loopback_v6());
}
}

backend_test! {
/// WS-1 (gather): a send of several buffers transmits all of them, in array order, and counts
/// every byte.
fn ws1_gather_send_arrives_in_buffer_order() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    let bufs = vec![b"gather ".to_vec(), b"".to_vec(), b"send ".to_vec(), b"in ".to_vec(), b"order".to_vec()];
    let id = issue(Overlapped::with_buffers(3, bufs), |ov| s.send(ov, MsgFlags::NONE));
    let d = done(&port, 1, id, 3);
    assert_eq!(d.ok(), 20, "WS-1: the byte count is the total of all buffers");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut client), b"gather send in order");
}
}

backend_test! {
/// WS-1: a large stream send (8 MiB, small send buffer, a peer that reads slowly) completes once,
/// with the full count, and the peer receives every byte in order (short kernel sends are resumed,
/// §8.4.7).
fn ws1_large_send_completes_once_with_the_full_count() {
    const TOTAL: usize = 8 << 20;
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    s.sock_ref().set_send_buffer_size(32 * 1024).unwrap();
    let client = socket2::Socket::from(client);
    client.set_recv_buffer_size(32 * 1024).unwrap();
    client.set_read_timeout(Some(LONG_WAIT)).unwrap();
    let mut client = TcpStream::from(client);

    let data = pattern(1, TOTAL);
    let reader = thread::spawn(move || {
        let mut got = Vec::with_capacity(TOTAL);
        let mut chunk = vec![0u8; 64 * 1024];
        // Bounded: every read returns at least one byte or ends the loop.
        for i in 0..TOTAL {
            if got.len() == TOTAL {
                break;
            }
            let n = client.read(&mut chunk).expect("read within the timeout");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            if i % 8 == 0 {
                thread::sleep(Duration::from_millis(1)); // read slowly so the sender must wait
            }
        }
        got
    });

    let id = issue(Overlapped::with_buffers(9, data.clone()), |ov| s.send(ov, MsgFlags::NONE));
    let c = port.get(Some(LONG_WAIT)).expect("the large send completes");
    let (key, d) = into_done(c);
    assert_eq!(key, 1);
    assert_eq!(d.ov.id(), id);
    assert_eq!(d.ok(), TOTAL, "WS-1: one completion with the full count");
    assert_eq!(d.ov.buffers().total_len(), TOTAL, "the send buffer comes back whole");
    assert_quiet(&port); // exactly one packet for the operation

    let got = reader.join().unwrap();
    assert_eq!(got.len(), TOTAL, "the peer received every byte");
    assert!(got == data, "the peer received the bytes in order, without duplicates");
}
}

/// SK-1: after the peer's graceful close, a pending receive completes successfully with 0 bytes,
/// and so does a receive issued afterwards.
fn recv_after_graceful_close(addr: SocketAddr) {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, addr);
    let id = issue(Overlapped::with_buffers(1, BufList::with_capacity(16)), |ov| s.recv(ov, MsgFlags::NONE));
    assert_quiet(&port);
    client.shutdown(Shutdown::Write).unwrap();
    let d = done(&port, 1, id, 1);
    assert_eq!(d.ok(), 0, "SK-1: pending receive → success, 0 bytes");

    let id = issue(d.ov, |ov| s.recv(ov, MsgFlags::NONE));
    let d = done(&port, 1, id, 1);
    assert_eq!(d.ok(), 0, "SK-1: subsequent receive → success, 0 bytes");
    drop(client);
}

backend_test! {
fn sk1_recv_completes_with_zero_bytes_after_graceful_close_v4() {
    recv_after_graceful_close(loopback());
}
}

backend_test! {
fn sk1_recv_completes_with_zero_bytes_after_graceful_close_v6() {
    recv_after_graceful_close(loopback_v6());
}
}

backend_test! {
/// ZB-1 / SK-3: a receive with one zero-length buffer pends until data arrives, completes with 0
/// bytes, and does NOT consume the data: the following normal receive gets it.
fn zb1_zero_byte_recv_signals_data_without_consuming_it() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    let id = issue(Overlapped::with_buffers(1, BufList::single(Vec::new())), |ov| s.recv(ov, MsgFlags::NONE));
    assert_quiet(&port); // ZB-1: it pends until data is available
    client.write_all(b"ping").unwrap();
    let d = done(&port, 1, id, 1);
    assert_eq!(d.ok(), 0, "ZB-1: completes successfully with 0 bytes");
    assert_eq!(d.ov.buffers().len(), 1);
    assert!(d.ov.buffers()[0].is_empty(), "the zero-length buffer comes back zero-length");

    let id = issue(Overlapped::with_buffers(2, BufList::with_capacity(16)), |ov| s.recv(ov, MsgFlags::NONE));
    let d = done(&port, 1, id, 2);
    assert_eq!(d.ok(), 4, "ZB-1: the data is still there for the normal receive");
    assert_eq!(d.ov.buffers().gather(4), b"ping");
}
}

backend_test! {
/// ZB-1: with data already buffered, the zero-byte receive completes with 0 bytes (here, without
/// skip mode, through its packet) and still leaves the data in place.
fn zb1_zero_byte_recv_with_data_already_buffered() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    client.write_all(b"ready").unwrap();
    // Make sure the data has arrived, without consuming it (MSG_PEEK on a blocking call, RV-5).
    let mut peek = [0u8; 5];
    let (n, _) = s.recv_blocking(&mut [&mut peek[..]], MsgFlags::PEEK).unwrap();
    assert!(n > 0);

    let id = issue(Overlapped::with_buffers(1, BufList::single(Vec::new())), |ov| s.recv(ov, MsgFlags::NONE));
    let d = done(&port, 1, id, 1);
    assert_eq!(d.ok(), 0, "ZB-1");

    let id = issue(Overlapped::with_buffers(2, BufList::with_capacity(16)), |ov| s.recv(ov, MsgFlags::NONE));
    let d = done(&port, 1, id, 2);
    assert_eq!(d.ok(), 5);
    assert_eq!(d.ov.buffers().gather(5), b"ready");
}
}

backend_test! {
/// OR-2: several receives posted on one socket are filled in the order they were posted: the
/// first gets the first bytes (whatever order their packets come in). Repeated a few rounds.
fn or2_several_recvs_are_filled_in_posting_order() {
    const RECVS: usize = 8;
    const LEN: usize = 4;
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    for round in 0..10u32 {
        let mut ids = HashMap::new();
        for k in 0..RECVS as u32 {
            let ctx = round * 100 + k;
            ids.insert(
                ctx,
                issue(Overlapped::with_buffers(ctx, BufList::with_capacity(LEN)), |ov| s.recv(ov, MsgFlags::NONE)),
            );
        }
        let data = pattern(round as usize, RECVS * LEN);
        client.write_all(&data).unwrap();
        let mut got = HashMap::new();
        for _ in 0..RECVS {
            let d = done_any(&port, 1);
            let ctx = *d.ov.context();
            assert_eq!(ids.get(&ctx), Some(&d.ov.id()));
            let n = d.ok();
            assert!(got.insert(ctx, d.ov.buffers().gather(n)).is_none(), "each receive completes once");
        }
        for k in 0..RECVS {
            let ctx = round * 100 + k as u32;
            assert_eq!(
                got[&ctx],
                data[k * LEN..(k + 1) * LEN],
                "OR-2: receive #{k} (posted #{k}) got bytes {}..{} in round {round}",
                k * LEN,
                (k + 1) * LEN
            );
        }
    }
    assert_quiet(&port);
}
}

backend_test! {
/// OR-2: several sends posted on one socket without waiting are transmitted in call order (each
/// large enough, with a small send buffer, that the kernel sends them in pieces).
fn or2_several_sends_are_transmitted_in_call_order() {
    const SENDS: usize = 16;
    const LEN: usize = 256 * 1024;
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    s.sock_ref().set_send_buffer_size(32 * 1024).unwrap();
    client.set_read_timeout(Some(LONG_WAIT)).unwrap();
    let mut client = client;
    let reader = thread::spawn(move || {
        let mut got = vec![0u8; SENDS * LEN];
        client.read_exact(&mut got).expect("all sends arrive");
        got
    });

    let mut ids = HashMap::new();
    let mut expected = Vec::with_capacity(SENDS * LEN);
    for k in 0..SENDS {
        let data = pattern(k + 10, LEN);
        expected.extend_from_slice(&data);
        ids.insert(k as u32, issue(Overlapped::with_buffers(k as u32, data), |ov| s.send(ov, MsgFlags::NONE)));
    }
    let mut seen = HashSet::new();
    for _ in 0..SENDS {
        let c = port.get(Some(LONG_WAIT)).expect("every send completes");
        let (key, d) = into_done(c);
        assert_eq!(key, 1);
        let ctx = *d.ov.context();
        assert_eq!(ids.get(&ctx), Some(&d.ov.id()));
        assert_eq!(d.ok(), LEN, "WS-1: each send completes with its full count");
        assert!(seen.insert(ctx));
    }
    let got = reader.join().unwrap();
    for k in 0..SENDS {
        assert!(
            got[k * LEN..(k + 1) * LEN] == expected[k * LEN..(k + 1) * LEN],
            "OR-2: send #{k} arrived out of order"
        );
    }
}
}

backend_test! {
/// RV-5: a MSG_WAITALL receive completes only when its buffers are full.
fn rv5_waitall_recv_completes_only_when_full() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    client.set_nodelay(true).unwrap();
    let bufs = BufList::with_capacities(&[4, 6]);
    let id = issue(Overlapped::with_buffers(1, bufs), |ov| s.recv(ov, MsgFlags::WAITALL));
    client.write_all(b"abc").unwrap();
    assert_quiet(&port); // RV-5: 3 of 10 bytes is not enough
    client.write_all(b"defg").unwrap();
    assert_quiet(&port); // 7 of 10
    client.write_all(b"hij").unwrap();
    let d = done(&port, 1, id, 1);
    assert_eq!(d.ok(), 10, "RV-5: completes when the buffers are full");
    assert_eq!(d.ov.buffers()[0], b"abcd");
    assert_eq!(d.ov.buffers()[1], b"efghij");
}
}

backend_test! {
/// RV-5: a MSG_WAITALL receive also completes when the connection closes, with what it got.
fn rv5_waitall_recv_completes_short_when_the_peer_closes() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    let id = issue(Overlapped::with_buffers(1, BufList::with_capacity(10)), |ov| s.recv(ov, MsgFlags::WAITALL));
    client.write_all(b"abc").unwrap();
    assert_quiet(&port);
    client.shutdown(Shutdown::Write).unwrap();
    let d = done(&port, 1, id, 1);
    assert_eq!(d.ok(), 3, "RV-5: the connection closed → completes with the bytes received");
    assert_eq!(d.ov.buffers().gather(3), b"abc");
}
}

// ------------------------------------------------------------------------------------------------
// WSASendTo / WSARecvFrom (UDP)
// ------------------------------------------------------------------------------------------------

/// RV-1 (datagram: one whole message per operation): a datagram round trip; WSARecvFrom reports
/// the sender; a gathered WSASendTo goes out as one datagram from the socket's address.
fn udp_round_trip(addr: SocketAddr) {
    let port = new_port();
    let s = bound_udp(&port, 4, addr);
    let peer = UdpSocket::bind(addr).unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let s_addr = s.local_addr().unwrap();

    let id = issue(Overlapped::with_buffers(1, BufList::with_capacity(64)), |ov| s.recv_from(ov, MsgFlags::NONE));
    peer.send_to(b"datagram", s_addr).unwrap();
    let d = done(&port, 4, id, 1);
    assert_eq!(d.ok(), 8);
    assert_eq!(d.ov.buffers().gather(8), b"datagram");
    assert_eq!(d.ov.peer_addr(), Some(peer.local_addr().unwrap()), "lpFrom = the sender's address");
    assert!(!d.ov.flags().contains(MsgFlags::TRUNC), "a datagram that fits is not truncated");

    let bufs = vec![b"gath".to_vec(), b"ered ".to_vec(), b"reply".to_vec()];
    let id = issue(Overlapped::with_buffers(2, bufs), |ov| s.send_to(ov, peer.local_addr().unwrap(), MsgFlags::NONE));
    let d = done(&port, 4, id, 2);
    assert_eq!(d.ok(), 14);
    let mut back = [0u8; 64];
    let (n, from) = peer.recv_from(&mut back).unwrap();
    assert_eq!(&back[..n], b"gathered reply", "the gathered buffers form one datagram");
    assert_eq!(from, s_addr);
}

backend_test! {
fn udp_send_to_recv_from_round_trip_reports_the_sender_v4() {
    udp_round_trip(loopback());
}
}

backend_test! {
fn udp_send_to_recv_from_round_trip_reports_the_sender_v6() {
    udp_round_trip(loopback_v6());
}
}

/// RV-3 / 1.6 / 1.8: a datagram larger than the buffers: the buffers get its first part, the
/// operation fails with WSAEMSGSIZE (ERROR_MORE_DATA 234 / WSAEMSGSIZE 10040) but is still
/// delivered through a packet (a warning), bytes = what was kept, flags contain MSG_TRUNC; the
/// rest of the datagram is discarded (the next receive gets the next datagram).
fn udp_truncation(addr: SocketAddr) {
    let port = new_port();
    let s = bound_udp(&port, 4, addr);
    let peer = UdpSocket::bind(addr).unwrap();
    let s_addr = s.local_addr().unwrap();

    let id = issue(Overlapped::with_buffers(1, BufList::with_capacity(4)), |ov| s.recv_from(ov, MsgFlags::NONE));
    peer.send_to(b"0123456789", s_addr).unwrap();
    peer.send_to(b"next", s_addr).unwrap();
    let d = done(&port, 4, id, 1);
    assert_error(d.err(), ErrorKind::MessageTooLong, 234, 10040);
    assert_eq!(d.bytes, 4, "RV-3: the byte count is what the buffers kept");
    assert_eq!(d.ov.bytes_transferred(), 4);
    assert_eq!(d.ov.buffers().gather(4), b"0123", "RV-3: the buffers get the first part");
    assert!(d.ov.flags().contains(MsgFlags::TRUNC), "the reported flags contain MSG_TRUNC: {:?}", d.ov.flags());
    assert_eq!(d.ov.peer_addr(), Some(peer.local_addr().unwrap()));

    let id = issue(Overlapped::with_buffers(2, BufList::with_capacity(64)), |ov| s.recv_from(ov, MsgFlags::NONE));
    let d = done(&port, 4, id, 2);
    assert_eq!(d.ok(), 4, "RV-3: the rest of the truncated datagram was discarded");
    assert_eq!(d.ov.buffers().gather(4), b"next");
    assert!(!d.ov.flags().contains(MsgFlags::TRUNC));
}

backend_test! {
fn rv3_truncated_datagram_is_message_too_long_and_the_rest_is_discarded_v4() {
    udp_truncation(loopback());
}
}

backend_test! {
fn rv3_truncated_datagram_is_message_too_long_and_the_rest_is_discarded_v6() {
    udp_truncation(loopback_v6());
}
}

backend_test! {
/// WS-3: a datagram larger than the provider maximum fails with WSAEMSGSIZE (234 / 10040) and
/// nothing is sent; the record comes back.
fn ws3_oversized_datagram_fails_with_message_too_long() {
    let port = new_port();
    let s = bound_udp(&port, 4, loopback());
    let peer = UdpSocket::bind(loopback()).unwrap();
    peer.set_read_timeout(Some(common::QUIET)).unwrap();
    let to = peer.local_addr().unwrap();
    let e = failure(&port, 4, Overlapped::with_buffers(1, vec![7u8; 70_000]), |ov| s.send_to(ov, to, MsgFlags::NONE));
    assert_error(e, ErrorKind::MessageTooLong, 234, 10040);
    let mut buf = [0u8; 16];
    assert!(peer.recv_from(&mut buf).is_err(), "WS-3: nothing was sent");
}
}

// ------------------------------------------------------------------------------------------------
// DisconnectEx (§6.3)
// ------------------------------------------------------------------------------------------------

/// DX-2 / CN-8: DisconnectEx completes with 0 bytes through a packet; the peer reads EOF.
fn disconnect_completes(addr: SocketAddr) {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, addr);
    let mut client = timed(client);
    let id = issue(Overlapped::new(4), |ov| s.disconnect(ov));
    let d = done(&port, 1, id, 4);
    assert_eq!(d.ok(), 0, "DX-2: 0 bytes");
    assert_eq!(read_to_eof(&mut client), b"", "DX-3: the peer reads EOF");
    assert_quiet(&port);
}

backend_test! {
fn dx2_disconnect_completes_with_zero_bytes_and_the_peer_reads_eof_v4() {
    disconnect_completes(loopback());
}
}

backend_test! {
fn dx2_disconnect_completes_with_zero_bytes_and_the_peer_reads_eof_v6() {
    disconnect_completes(loopback_v6());
}
}

backend_test! {
/// DX-3: after DisconnectEx (no TF_REUSE_SOCKET) sends fail with WSAESHUTDOWN (10058; port view
/// 233), while receiving and getpeername keep working.
fn dx3_after_disconnect_sends_fail_with_shutdown_but_receiving_works() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    let id = issue(Overlapped::new(4), |ov| s.disconnect(ov));
    assert_eq!(done(&port, 1, id, 4).ok(), 0);

    let e = failure(&port, 1, Overlapped::with_buffers(5, b"late".to_vec()), |ov| s.send(ov, MsgFlags::NONE));
    assert_error(e, ErrorKind::Shutdown, 233, 10058);
    assert_eq!(s.peer_addr().unwrap(), client.local_addr().unwrap(), "DX-3: getpeername keeps working");

    let id = issue(Overlapped::with_buffers(6, BufList::with_capacity(32)), |ov| s.recv(ov, MsgFlags::NONE));
    client.write_all(b"still open").unwrap();
    let d = done(&port, 1, id, 6);
    assert_eq!(d.ok(), 10, "DX-3: receiving still works");
    assert_eq!(d.ov.buffers().gather(10), b"still open");
    assert_eq!(read_to_eof(&mut client), b"", "the failed send sent nothing");
}
}

// ------------------------------------------------------------------------------------------------
// shutdown (§5, CP-9)
// ------------------------------------------------------------------------------------------------

backend_test! {
/// CN-8 / CP-9: shutdown(SD_SEND) queues no packet of its own; the peer's pending receive
/// completes with success and 0 bytes; further sends on the shut side fail with WSAESHUTDOWN;
/// receiving on it still works.
fn cn8_shutdown_write_gives_no_packet_and_the_peers_pending_recv_gets_eof() {
    let port = new_port();
    let (a, b) = lib_pair(&port, 1, 2, loopback());
    let bid = issue(Overlapped::with_buffers(20, BufList::with_capacity(16)), |ov| b.recv(ov, MsgFlags::NONE));
    assert_quiet(&port);

    a.shutdown(Shutdown::Write).unwrap();
    let d = done(&port, 2, bid, 20);
    assert_eq!(d.ok(), 0, "CN-8: the peer's pending receive completes with success, 0 bytes");
    assert_quiet(&port); // CP-9: shutdown itself never produces a packet

    let e = failure(&port, 1, Overlapped::with_buffers(10, b"after".to_vec()), |ov| a.send(ov, MsgFlags::NONE));
    assert_error(e, ErrorKind::Shutdown, 233, 10058);

    let aid = issue(Overlapped::with_buffers(11, BufList::with_capacity(16)), |ov| a.recv(ov, MsgFlags::NONE));
    let sid = issue(Overlapped::with_buffers(21, b"reply".to_vec()), |ov| b.send(ov, MsgFlags::NONE));
    let mut by_key = HashMap::new();
    for _ in 0..2 {
        let (key, d) = into_done(next(&port));
        assert!(by_key.insert(key, d).is_none(), "one packet per operation");
    }
    let r = &by_key[&1];
    assert_eq!((r.ov.id(), *r.ov.context()), (aid, 11));
    assert_eq!(r.ok(), 5, "CN-8: receiving still works on the shut side");
    assert_eq!(r.ov.buffers().gather(5), b"reply");
    let s = &by_key[&2];
    assert_eq!((s.ov.id(), s.ok()), (sid, 5));
}
}

backend_test! {
/// CN-7 / CP-9 / §8.4.6: shutdown(SD_RECEIVE) does not abort a receive already pending (no
/// packet), data arriving later still completes it; a new receive after it fails immediately
/// with WSAESHUTDOWN.
fn cn7_shutdown_read_keeps_the_pending_recv_and_rejects_new_ones() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    let id = issue(Overlapped::with_buffers(1, BufList::with_capacity(16)), |ov| s.recv(ov, MsgFlags::NONE));

    s.shutdown(Shutdown::Read).unwrap();
    assert_quiet(&port); // neither a packet for the shutdown (CP-9) nor the receive aborted (CN-7)

    let e = rejected(&port, Overlapped::with_buffers(2, BufList::with_capacity(16)), |ov| s.recv(ov, MsgFlags::NONE));
    assert_error(e, ErrorKind::Shutdown, 233, 10058);

    client.write_all(b"late").unwrap();
    let d = done(&port, 1, id, 1);
    assert_eq!(d.ok(), 4, "CN-7: the pending receive completes with the data that arrived later");
    assert_eq!(d.ov.buffers().gather(4), b"late");
    assert_quiet(&port);
}
}

backend_test! {
/// CN-7: with no receive pending, a receive after shutdown(SD_RECEIVE) fails immediately with
/// WSAESHUTDOWN and produces no packet (1.5); sending still works.
fn cn7_recv_after_shutdown_read_is_rejected_with_shutdown() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);
    s.shutdown(Shutdown::Read).unwrap();
    assert_quiet(&port); // CP-9

    let e = rejected(&port, Overlapped::with_buffers(2, BufList::with_capacity(16)), |ov| s.recv(ov, MsgFlags::NONE));
    assert_error(e, ErrorKind::Shutdown, 233, 10058);

    let id = issue(Overlapped::with_buffers(3, b"out".to_vec()), |ov| s.send(ov, MsgFlags::NONE));
    assert_eq!(done(&port, 1, id, 3).ok(), 3, "the send side is not shut");
    let mut back = [0u8; 3];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"out");
}
}

// ------------------------------------------------------------------------------------------------
// Non-overlapped (blocking) calls (1.10)
// ------------------------------------------------------------------------------------------------

backend_test! {
/// 1.10 / WS-2: WSASend / WSARecv without an OVERLAPPED behave like blocking send / recv,
/// gather and scatter included, and never produce a packet, even on an associated socket.
fn blocking_send_and_recv_scatter_gather_without_packets() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);

    let n = s.send_blocking(&[b"dead", b"", b"beefs"], MsgFlags::NONE).unwrap();
    assert_eq!(n, 9, "WS-2: a blocking send sends everything");
    let mut back = [0u8; 9];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"deadbeefs");

    client.write_all(b"deadbeefs").unwrap();
    let (mut a, mut b) = ([0u8; 4], [0u8; 5]);
    let (n, flags) = s.recv_blocking(&mut [&mut a[..], &mut b[..]], MsgFlags::NONE).unwrap();
    assert_eq!(n, 9, "RV-2 semantics for the blocking receive");
    assert_eq!((&a, &b), (b"dead", b"beefs"));
    assert!(!flags.contains(MsgFlags::TRUNC));

    // A blocking receive blocks until data arrives (the sleep only orders the write after it).
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        client.write_all(b"later").unwrap();
        client
    });
    let mut buf = [0u8; 16];
    let (n, _) = s.recv_blocking(&mut [&mut buf[..]], MsgFlags::NONE).unwrap();
    assert_eq!(&buf[..n], &b"later"[..n]);
    assert!(n > 0);
    let client = writer.join().unwrap();
    let mut rest = n;
    for _ in 0..5 {
        if rest == 5 {
            break;
        }
        let (m, _) = s.recv_blocking(&mut [&mut buf[rest..5]], MsgFlags::NONE).unwrap();
        rest += m;
    }
    assert_eq!(&buf[..5], b"later");

    // SK-1 for the blocking call: 0 after the peer's graceful close.
    client.shutdown(Shutdown::Write).unwrap();
    let (n, _) = s.recv_blocking(&mut [&mut buf[..]], MsgFlags::NONE).unwrap();
    assert_eq!(n, 0);

    assert_quiet(&port); // 1.7: no overlapped → no packet
}
}

// ------------------------------------------------------------------------------------------------
// The record comes back (CP-6, 1.5, 1.9)
// ------------------------------------------------------------------------------------------------

backend_test! {
/// CP-6 / 1.9: every completion hands back the very record that was issued (same identity,
/// context and buffers), on success and on failure (here a reset, SK-2: ConnectionReset 64 /
/// 10054), and a record can be reused; a rejected operation hands it back too (1.5).
fn cp6_completion_hands_back_the_same_record_on_success_and_failure() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let mut client = timed(client);

    let ov = Overlapped::with_buffers(42, BufList::with_capacities(&[8, 8]));
    let id = issue(ov, |ov| s.recv(ov, MsgFlags::NONE));
    client.write_all(b"0123456789").unwrap();
    let d = done(&port, 1, id, 42);
    assert_eq!(d.ok(), 10);
    let lens: Vec<usize> = d.ov.buffers().iter().map(Vec::len).collect();
    assert_eq!(lens, [8, 2], "the receive extended the buffers by what it wrote, in order");
    assert_eq!(d.ov.buffers().gather(10), b"0123456789");

    // Reuse the same record; it keeps its identity (CN-2 matches on it).
    let mut ov = d.ov;
    *ov.context_mut() = 43;
    let id2 = issue(ov, |ov| s.recv(ov, MsgFlags::NONE));
    assert_eq!(id2, id);
    // Abortive close of the std peer (SO_LINGER {1,0}): this end sees a reset (CN-9, SK-2).
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);
    let d = done(&port, 1, id, 43);
    assert_error(d.err(), ErrorKind::ConnectionReset, 64, 10054);
    assert_eq!(d.bytes, 0);
    let lens: Vec<usize> = d.ov.buffers().iter().map(Vec::len).collect();
    assert_eq!(lens, [8, 2], "the buffers come back, unchanged, on failure too");

    // An operation that cannot start hands the record back without a packet (1.5).
    let e = rejected(&port, Overlapped::with_buffers(44, BufList::new()), |ov| s.recv(ov, MsgFlags::NONE));
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "RV-2: no buffers → WSAEINVAL");
}
}

backend_test! {
/// CN-9 / SK-2 / CN-5: `closesocket` on a socket with `SO_LINGER {1,0}` is abortive: the peer's
/// pending receive fails with a reset (ERROR_NETNAME_DELETED 64 / WSAECONNRESET 10054) as soon as
/// the socket is closed, even though the closing program still holds its (now closed) handle
/// value.
fn cn9_close_with_zero_linger_resets_the_peer() {
    let port = new_port();
    let (s, client) = tcp_pair_on(&port, 1, loopback());
    let id = issue(Overlapped::with_buffers(1, BufList::with_capacity(8)), |ov| s.recv(ov, MsgFlags::NONE));
    let client = Socket::from(client);
    client.set_linger(Some(Duration::ZERO)).unwrap();
    client.close().unwrap();
    assert!(client.is_closed());
    let d = done(&port, 1, id, 1);
    assert_error(d.err(), ErrorKind::ConnectionReset, 64, 10054);
    assert_eq!(d.bytes, 0);
    drop(client);
}
}
