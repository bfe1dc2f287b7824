//! Errors (spec §1.8, §8.3) and bad input (spec 1.5): the Windows codes of each error kind,
//! the errno mapping, and that every call-time rejection names a clear error, hands the record
//! back with its context and buffers, and queues no packet.

#[macro_use]
mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};

use common::{WAIT, assert_quiet, loopback, next, port, tcp_pair, udp_pair};
use overlapped::{
    BufList, CompletionPort, Error, ErrorKind, Event, Issued, MsgFlags, Overlapped, Rejected, Socket, Wait,
};

// ---------------------------------------------------------------------------------------------
// §1.8: one status, three views
// ---------------------------------------------------------------------------------------------

/// The §1.8 table (NTSTATUS values from §0.3): kind, NTSTATUS, port view
/// (`GetLastError()` after GQCS / GetOverlappedResult), Winsock view (`WSAGetLastError()`).
const STATUS_TABLE: &[(ErrorKind, u32, u32, u32)] = &[
    (ErrorKind::OperationAborted, 0xC000_0120, 995, 995),
    (ErrorKind::ConnectionReset, 0xC000_020D, 64, 10054),
    (ErrorKind::ConnectionAborted, 0xC000_0241, 1236, 10053),
    (ErrorKind::ConnectionRefused, 0xC000_0236, 1225, 10061),
    (ErrorKind::TimedOut, 0xC000_00B5, 121, 10060),
    (ErrorKind::NetworkUnreachable, 0xC000_023C, 1231, 10051),
    (ErrorKind::HostUnreachable, 0xC000_023D, 1232, 10065),
    (ErrorKind::NotConnected, 0xC000_0140, 59, 10057),
    (ErrorKind::Shutdown, 0xC000_00B0, 233, 10058),
    (ErrorKind::MessageTooLong, 0x8000_0005, 234, 10040),
    (ErrorKind::BufferTooSmall, 0xC000_0023, 122, 10014),
];

backend_test! {
/// §1.8: every operation status the library maps carries its NTSTATUS and both Windows codes.
fn status_kinds_carry_the_three_views_of_the_spec_table() {
    for &(kind, nt, win32, wsa) in STATUS_TABLE {
        let e = Error::new(kind);
        assert_eq!(e.kind(), kind);
        assert_eq!(e.ntstatus(), Some(nt), "{kind:?}: NTSTATUS");
        assert_eq!(e.win32_error(), win32, "{kind:?}: port view (GetLastError)");
        assert_eq!(e.wsa_error(), wsa, "{kind:?}: Winsock view (WSAGetLastError)");
        assert_eq!(e.raw_os_error(), None, "{kind:?}: made without an errno");
    }
    // STATUS_END_OF_FILE → ERROR_HANDLE_EOF (38) (§1.8, FI-3).
    let eof = Error::new(ErrorKind::EndOfFile);
    assert_eq!((eof.ntstatus(), eof.win32_error()), (Some(0xC000_0011), 38));
}
}

backend_test! {
/// §1.8, GQ-3, GQ-4, CN-2, GR-1: the wait and lookup results have their Win32 codes:
/// `WAIT_TIMEOUT` 258, `ERROR_ABANDONED_WAIT_0` 735, `ERROR_NOT_FOUND` 1168,
/// `WSA_IO_INCOMPLETE` / `ERROR_IO_INCOMPLETE` 996 (the same code in both views). None is an
/// operation status other than `STATUS_PENDING` for the incomplete case.
fn wait_and_lookup_kinds_carry_their_win32_codes() {
    assert_eq!(Error::new(ErrorKind::Timeout).win32_error(), 258);
    assert_eq!(Error::new(ErrorKind::PortClosed).win32_error(), 735);
    assert_eq!(Error::new(ErrorKind::NotFound).win32_error(), 1168);
    let incomplete = Error::new(ErrorKind::IoIncomplete);
    assert_eq!((incomplete.win32_error(), incomplete.wsa_error()), (996, 996));
    assert!(
        matches!(incomplete.ntstatus(), None | Some(0x103)),
        "an incomplete operation's Internal is STATUS_PENDING, got {:?}",
        incomplete.ntstatus()
    );
    // Timeout (258) is not the port-closed code (735): the two GQ-3 / GQ-4 results differ.
    assert_ne!(Error::new(ErrorKind::Timeout), Error::new(ErrorKind::PortClosed));
}
}

backend_test! {
/// GR-1, FI-4: a record that has never completed reports `WSA_IO_INCOMPLETE` and 0 bytes.
fn a_never_issued_record_reports_io_incomplete() {
    let ov = Overlapped::with_buffers((), vec![0u8; 8]);
    assert!(!ov.is_completed());
    let e = ov.result().expect_err("nothing completed");
    assert_eq!((e.kind(), e.win32_error(), e.wsa_error()), (ErrorKind::IoIncomplete, 996, 996));
    assert_eq!(ov.bytes_transferred(), 0);
}
}

// ---------------------------------------------------------------------------------------------
// §8.3: errno → NTSTATUS → §1.8 columns
// ---------------------------------------------------------------------------------------------

/// One §8.3 row: errno, kind, NTSTATUS if §0.3 gives it, port view if §1.8 gives it, Winsock
/// view.
type ErrnoRow = (i32, ErrorKind, Option<u32>, Option<u32>, u32);

backend_test! {
/// §8.3: errno → kind and its codes (the NTSTATUS where the spec names one), and the errno is
/// kept.
fn errno_maps_as_spec_8_3_says_and_keeps_the_errno() {
    let rows: &[ErrnoRow] = &[
        (libc::ECONNRESET, ErrorKind::ConnectionReset, Some(0xC000_020D), Some(64), 10054),
        (libc::ECONNABORTED, ErrorKind::ConnectionAborted, Some(0xC000_0241), Some(1236), 10053),
        (libc::ECONNREFUSED, ErrorKind::ConnectionRefused, Some(0xC000_0236), Some(1225), 10061),
        (libc::ETIMEDOUT, ErrorKind::TimedOut, Some(0xC000_00B5), Some(121), 10060),
        (libc::ENETUNREACH, ErrorKind::NetworkUnreachable, Some(0xC000_023C), Some(1231), 10051),
        (libc::EHOSTUNREACH, ErrorKind::HostUnreachable, Some(0xC000_023D), Some(1232), 10065),
        (libc::ENOTCONN, ErrorKind::NotConnected, Some(0xC000_0140), Some(59), 10057),
        (libc::EMSGSIZE, ErrorKind::MessageTooLong, Some(0x8000_0005), Some(234), 10040),
        (libc::ECANCELED, ErrorKind::OperationAborted, Some(0xC000_0120), Some(995), 995),
        (libc::EAGAIN, ErrorKind::WouldBlock, None, None, 10035),
        (libc::EISCONN, ErrorKind::AlreadyConnected, None, None, 10056),
        (libc::EADDRINUSE, ErrorKind::AddressInUse, None, None, 10048),
        (libc::EINVAL, ErrorKind::InvalidArgument, None, Some(87), 10022),
        (libc::EBADF, ErrorKind::NotSocket, None, None, 10038),
        (libc::ENOTSOCK, ErrorKind::NotSocket, None, None, 10038),
        (libc::ENOBUFS, ErrorKind::NoBuffers, None, None, 10055),
        (libc::ENOMEM, ErrorKind::NoBuffers, None, None, 10055),
    ];
    for &(errno, kind, nt, win32, wsa) in rows {
        let e = Error::from_errno(errno);
        let name = std::io::Error::from_raw_os_error(errno);
        assert_eq!(e.kind(), kind, "errno {errno} ({name})");
        assert_eq!(ErrorKind::from_errno(errno), kind, "errno {errno} ({name})");
        assert_eq!(e.raw_os_error(), Some(errno), "errno {errno} ({name}) is kept");
        if let Some(nt) = nt {
            assert_eq!(e.ntstatus(), Some(nt), "errno {errno} ({name}): NTSTATUS");
        }
        if let Some(win32) = win32 {
            assert_eq!(e.win32_error(), win32, "errno {errno} ({name}): port view");
        }
        assert_eq!(e.wsa_error(), wsa, "errno {errno} ({name}): Winsock view");
    }
    // EPIPE is a peer reset, or a local send-side shutdown; from the errno alone either.
    let epipe = Error::from_errno(libc::EPIPE);
    assert!(matches!(epipe.kind(), ErrorKind::ConnectionReset | ErrorKind::Shutdown), "EPIPE: {epipe}");
    assert_eq!(epipe.raw_os_error(), Some(libc::EPIPE));
}
}

backend_test! {
/// §8.3: `EFAULT` → `WSAEFAULT` (10014).
fn efault_maps_to_wsaefault() {
    let e = Error::from_errno(libc::EFAULT);
    assert_eq!(e.wsa_error(), 10014, "EFAULT: {e}");
    assert_eq!(e.raw_os_error(), Some(libc::EFAULT));
}
}

// ---------------------------------------------------------------------------------------------
// Error as a Rust error
// ---------------------------------------------------------------------------------------------

fn is_std_error<E: std::error::Error + Send + Sync + 'static>(_: &E) {}

backend_test! {
/// `Error` is a `std::error::Error` (usable with `?` into `Box<dyn Error>`), and its message
/// names the Windows codes.
fn error_is_a_std_error_whose_display_names_the_codes() {
    let aborted = Error::new(ErrorKind::ConnectionAborted);
    is_std_error(&aborted);
    let text = aborted.to_string();
    assert!(text.contains("1236") && text.contains("10053"), "Display should name 1236 and 10053: {text}");

    let reset = Error::from_errno(libc::ECONNRESET);
    let text = reset.to_string();
    assert!(text.contains("64") && text.contains("10054"), "Display should name 64 and 10054: {text}");

    let timeout = Error::new(ErrorKind::Timeout).to_string();
    assert!(timeout.contains("258"), "Display should name WAIT_TIMEOUT 258: {timeout}");

    fn fails() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(Error::new(ErrorKind::PortClosed))?;
        Ok(())
    }
    let boxed = fails().unwrap_err();
    let back = boxed.downcast_ref::<Error>().expect("the boxed error is an overlapped::Error");
    assert_eq!(back.kind(), ErrorKind::PortClosed);

    let rejected = Rejected { error: Error::new(ErrorKind::NotSocket), overlapped: Overlapped::new(()) };
    is_std_error(&rejected);
    assert_eq!(Error::from(rejected).kind(), ErrorKind::NotSocket);
}
}

backend_test! {
/// `Error` converts into `std::io::Error` keeping the errno it came from (and back).
fn error_converts_to_io_error_keeping_the_errno() {
    for errno in [libc::ECONNRESET, libc::ECONNREFUSED, libc::ENOTCONN, libc::EADDRINUSE, libc::EINVAL] {
        let io: std::io::Error = Error::from_errno(errno).into();
        assert_eq!(io.raw_os_error(), Some(errno));
        let back = Error::from(io);
        assert_eq!(back.kind(), ErrorKind::from_errno(errno));
        assert_eq!(back.raw_os_error(), Some(errno));
    }
    let io: std::io::Error = Error::from_errno(libc::ECONNRESET).into();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);

    // Without an errno nothing is invented, and the message still says what happened.
    let io: std::io::Error = Error::new(ErrorKind::PortClosed).into();
    assert_eq!(io.raw_os_error(), None);
    assert!(io.to_string().contains("735"), "{io}");
}
}

// ---------------------------------------------------------------------------------------------
// Bad input (spec 1.5): a clear error, the record back, no packet
// ---------------------------------------------------------------------------------------------

const BUFS: [&[u8]; 2] = [&[1, 2, 3], &[4, 4, 4, 4, 4]];

/// A record with a recognisable context and buffers.
fn record(tag: &str) -> Overlapped<String> {
    Overlapped::with_buffers(tag.to_string(), BUFS.iter().map(|b| b.to_vec()).collect::<Vec<_>>())
}

/// The operation was refused with `kind`, and its record came back untouched: same context,
/// same buffers.
#[track_caller]
fn refused(r: Result<Issued<String>, Rejected<String>>, kind: ErrorKind, tag: &str) -> Overlapped<String> {
    let ov = match r {
        Err(Rejected { error, overlapped }) => {
            assert_eq!(error.kind(), kind, "{tag}: {error}");
            overlapped
        }
        Ok(Issued::Pending) => panic!("{tag}: expected {kind:?}, the operation pends"),
        Ok(Issued::Completed(_) | Issued::Event(_)) => panic!("{tag}: expected {kind:?}, the operation completed"),
    };
    assert_eq!(ov.context(), tag, "{tag}: the context comes back");
    assert_eq!(ov.buffers().len(), BUFS.len(), "{tag}: the buffer list comes back");
    for (got, want) in ov.buffers().iter().zip(BUFS) {
        assert_eq!(got, want, "{tag}: the buffers come back untouched");
    }
    ov
}

/// Like [`refused`] for a record made with [`Overlapped::new`] (no buffers).
#[track_caller]
fn refused_bare(r: Result<Issued<String>, Rejected<String>>, kind: ErrorKind, tag: &str) -> Error {
    match r {
        Err(Rejected { error, overlapped }) => {
            assert_eq!(error.kind(), kind, "{tag}: {error}");
            assert_eq!(overlapped.context(), tag, "{tag}: the context comes back");
            error
        }
        Ok(Issued::Pending) => panic!("{tag}: expected {kind:?}, the operation pends"),
        Ok(Issued::Completed(_) | Issued::Event(_)) => panic!("{tag}: expected {kind:?}, the operation completed"),
    }
}

#[track_caller]
fn pends<C: Send + 'static>(r: Result<Issued<C>, Rejected<C>>, what: &str) {
    match r {
        Ok(Issued::Pending) => {}
        Ok(Issued::Completed(_)) => panic!("{what}: expected to pend, completed at once"),
        Ok(Issued::Event(_)) => panic!("{what}: expected a port packet, got an event-notified operation"),
        Err(r) => panic!("{what}: expected to pend: {r}"),
    }
}

fn peer_of(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().unwrap()
}

backend_test! {
/// 1.5, AX-1, CX-1, DX-1: every operation on a closed socket is refused with `WSAENOTSOCK`
/// (10038), hands its record back, and queues nothing.
fn operations_on_a_closed_socket_are_refused_with_not_socket() {
    let port = port::<String>(0);
    let (tcp, _client) = tcp_pair(&port, 1);
    let (udp, peer) = udp_pair(&port, 2);
    let listener = Socket::listen_tcp(loopback(), 4).unwrap();
    port.associate(&listener, 3).unwrap();
    let target = listener.local_addr().unwrap();
    for s in [&tcp, &udp, &listener] {
        s.close().unwrap();
        assert!(s.is_closed());
    }

    let ov = refused(tcp.recv(record("recv"), MsgFlags::NONE), ErrorKind::NotSocket, "recv");
    assert_eq!(ov.result().unwrap_err().kind(), ErrorKind::IoIncomplete, "recv: the record was never started");
    refused(tcp.send(record("send"), MsgFlags::NONE), ErrorKind::NotSocket, "send");
    refused(udp.recv_from(record("recv_from"), MsgFlags::NONE), ErrorKind::NotSocket, "recv_from");
    refused(
        udp.send_to(record("send_to"), peer.local_addr().unwrap(), MsgFlags::NONE),
        ErrorKind::NotSocket,
        "send_to",
    );
    refused(listener.accept(record("accept")), ErrorKind::NotSocket, "accept");
    refused(tcp.connect(target, record("connect")), ErrorKind::NotSocket, "connect");
    let e = refused_bare(tcp.disconnect(Overlapped::new("disconnect".into())), ErrorKind::NotSocket, "disconnect");
    assert_eq!(e.wsa_error(), 10038, "WSAENOTSOCK");
    assert_quiet(&port);
}
}

backend_test! {
/// CP-4: a socket belongs to one port. A second association, with another port or the same
/// one, fails with `ERROR_INVALID_PARAMETER` (87) and leaves the first intact: packets still
/// go to the first port, with the first key.
fn a_second_association_fails_and_the_first_port_keeps_working() {
    let first = port::<String>(0);
    let second = port::<String>(0);
    let (sock, mut client) = tcp_pair(&first, 1);

    let e = second.associate(&sock, 2).expect_err("associating with a second port");
    assert_eq!((e.kind(), e.win32_error()), (ErrorKind::AlreadyAssociated, 87), "{e}");
    let e = first.associate(&sock, 3).expect_err("associating with the same port again");
    assert_eq!((e.kind(), e.win32_error()), (ErrorKind::AlreadyAssociated, 87), "{e}");
    assert_quiet(&first);
    assert_quiet(&second);

    pends(sock.recv(Overlapped::with_buffers("after".to_string(), BufList::with_capacity(16)), MsgFlags::NONE), "recv");
    client.write_all(b"hello").unwrap();
    let c = next(&first);
    assert_eq!(c.key, 1, "the first association's key");
    assert_eq!(c.result().unwrap(), 5);
    assert_eq!(c.overlapped.unwrap().context(), "after");
    assert_quiet(&second);
}
}

backend_test! {
/// RV-2, 1.5: send, recv, recv_from and send_to with no buffers at all fail with `WSAEINVAL`
/// and queue nothing; the socket is unaffected (a proper receive afterwards works).
fn empty_buffer_lists_are_invalid_for_send_and_receive() {
    let port = port::<String>(0);
    let (tcp, mut client) = tcp_pair(&port, 1);
    let (udp, peer) = udp_pair(&port, 2);
    let to = peer.local_addr().unwrap();

    for (how, make) in [
        ("Overlapped::new", (|t: &str| Overlapped::new(t.to_string())) as fn(&str) -> Overlapped<String>),
        ("empty BufList", |t: &str| Overlapped::with_buffers(t.to_string(), BufList::new())),
        ("empty Vec<Vec<u8>>", |t: &str| Overlapped::with_buffers(t.to_string(), Vec::<Vec<u8>>::new())),
    ] {
        let e = refused_bare(tcp.recv(make("recv"), MsgFlags::NONE), ErrorKind::InvalidArgument, "recv");
        assert_eq!((e.win32_error(), e.wsa_error()), (87, 10022), "{how}: WSAEINVAL");
        refused_bare(tcp.send(make("send"), MsgFlags::NONE), ErrorKind::InvalidArgument, "send");
        refused_bare(udp.recv_from(make("recv_from"), MsgFlags::NONE), ErrorKind::InvalidArgument, "recv_from");
        refused_bare(udp.send_to(make("send_to"), to, MsgFlags::NONE), ErrorKind::InvalidArgument, "send_to");
    }
    assert_quiet(&port);

    pends(tcp.recv(Overlapped::with_buffers("ok".to_string(), BufList::with_capacity(8)), MsgFlags::NONE), "recv");
    client.write_all(b"abc").unwrap();
    let c = next(&port);
    assert_eq!((c.key, c.result().unwrap()), (1, 3));
    assert_quiet(&port);
}
}

backend_test! {
/// CX-1, 1.5: connect needs a bound, unconnected, non-listening stream socket. Unbound →
/// `WSAEINVAL` (and no connection attempt is made), connected → `WSAEISCONN` (10056),
/// listening → `WSAEINVAL`; the record comes back and nothing is queued. Once bound, the same
/// socket connects.
fn connect_requires_a_bound_unconnected_socket() {
    let port = port::<String>(0);
    let target = TcpListener::bind(loopback()).unwrap();
    target.set_nonblocking(true).unwrap();
    let to = peer_of(&target);

    let unbound = Socket::tcp_for(&to).unwrap();
    port.associate(&unbound, 1).unwrap();
    let ov = refused(unbound.connect(to, record("unbound")), ErrorKind::InvalidArgument, "unbound");
    assert!(!ov.is_completed(), "1.5: a refused ConnectEx leaves the record pending-looking, not completed");
    let e = Error::new(ErrorKind::InvalidArgument);
    assert_eq!(e.wsa_error(), 10022);
    assert_quiet(&port);
    match target.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a refused connect must not have connected: {other:?}"),
    }

    let (connected, _client) = tcp_pair(&port, 2);
    let e = refused(connected.connect(to, record("connected")), ErrorKind::AlreadyConnected, "connected");
    assert!(!e.is_completed());
    let err = Error::new(ErrorKind::AlreadyConnected);
    assert_eq!(err.wsa_error(), 10056, "WSAEISCONN");

    let listening = Socket::listen_tcp(loopback(), 4).unwrap();
    port.associate(&listening, 3).unwrap();
    refused(listening.connect(to, record("listening")), ErrorKind::InvalidArgument, "listening");
    assert_quiet(&port);

    // The same socket, bound now, connects (CX-2).
    unbound.bind(loopback()).unwrap();
    pends(unbound.connect(to, Overlapped::new("bound".to_string())), "connect once bound");
    let c = next(&port);
    assert_eq!(c.key, 1);
    assert_eq!(c.result().unwrap(), 0);
    assert_eq!(c.overlapped.unwrap().context(), "bound");
}
}

backend_test! {
/// AX-2, 1.5: accept on a socket that is not listening (fresh, bound, or connected) fails
/// with `WSAEINVAL`, hands the record back and queues nothing; after `listen` it pends.
fn accept_requires_a_listening_socket() {
    let port = port::<String>(0);
    let fresh = Socket::tcp_for(&loopback()).unwrap();
    port.associate(&fresh, 1).unwrap();
    let ov = refused(fresh.accept(record("fresh")), ErrorKind::InvalidArgument, "fresh");
    assert!(!ov.is_completed(), "1.5: a refused AcceptEx leaves the record pending-looking, not completed");

    let bound = Socket::tcp_for(&loopback()).unwrap();
    bound.bind(loopback()).unwrap();
    port.associate(&bound, 2).unwrap();
    refused(bound.accept(record("bound")), ErrorKind::InvalidArgument, "bound");

    let (connected, _client) = tcp_pair(&port, 3);
    refused(connected.accept(record("connected")), ErrorKind::InvalidArgument, "connected");
    assert_quiet(&port);

    bound.listen(4).unwrap();
    let ov = Overlapped::new("listening".to_string());
    let id = ov.id();
    pends(bound.accept(ov), "accept once listening");
    bound.cancel(id).unwrap();
    let c = next(&port);
    assert_eq!(c.key, 2);
    assert_eq!(c.status.unwrap_err().kind(), ErrorKind::OperationAborted);
}
}

backend_test! {
/// DX-1, 1.5: disconnect on a socket that is not connected (fresh, bound, listening) fails
/// with `WSAENOTCONN` (10057), hands the record back and queues nothing. A UDP socket is
/// refused too (stream sockets only). On a connected socket it pends and completes with 0
/// bytes (DX-2).
fn disconnect_requires_a_connected_socket() {
    let port = port::<String>(0);
    let fresh = Socket::tcp_for(&loopback()).unwrap();
    port.associate(&fresh, 1).unwrap();
    let e = refused_bare(fresh.disconnect(Overlapped::new("fresh".into())), ErrorKind::NotConnected, "fresh");
    assert_eq!((e.win32_error(), e.wsa_error()), (59, 10057), "ERROR_UNEXP_NET_ERR / WSAENOTCONN");

    let bound = Socket::tcp_for(&loopback()).unwrap();
    bound.bind(loopback()).unwrap();
    port.associate(&bound, 2).unwrap();
    refused_bare(bound.disconnect(Overlapped::new("bound".into())), ErrorKind::NotConnected, "bound");

    let listening = Socket::listen_tcp(loopback(), 4).unwrap();
    port.associate(&listening, 3).unwrap();
    refused_bare(listening.disconnect(Overlapped::new("listening".into())), ErrorKind::NotConnected, "listening");

    let (udp, _peer) = udp_pair(&port, 4);
    match udp.disconnect(Overlapped::new("udp".to_string())) {
        Err(r) => assert_eq!(r.overlapped.context(), "udp"),
        Ok(_) => panic!("disconnect on a UDP socket should be refused (stream sockets only)"),
    }
    assert_quiet(&port);

    let (connected, _client) = tcp_pair(&port, 5);
    pends(connected.disconnect(Overlapped::new("connected".to_string())), "disconnect a connected socket");
    let c = next(&port);
    assert_eq!((c.key, c.result().unwrap()), (5, 0));
}
}

backend_test! {
/// 1.7 row 4: a socket associated with no port completes through the record's event and the
/// caller's handle, not a port. Associating it afterwards brings no stale packet for those
/// operations, and later operations go to the port.
fn operations_on_an_unassociated_socket_complete_through_their_handle() {
    let port = port::<String>(0);
    let listener = TcpListener::bind(loopback()).unwrap();
    let mut client = std::net::TcpStream::connect(peer_of(&listener)).unwrap();
    let sock = Socket::from(listener.accept().unwrap().0);

    let event = Event::new();
    let ov = Overlapped::with_buffers("recv".to_string(), BufList::with_capacity(8)).with_event(event.clone());
    let issued = sock.recv(ov, MsgFlags::NONE).expect("recv starts");
    let mut io = issued.into_pending_io().expect("an unassociated socket's operation has a handle");
    port.associate(&sock, 9).unwrap();
    client.write_all(b"x").unwrap();
    assert_eq!(event.wait(Some(WAIT), false).unwrap(), Wait::Signaled(0), "the event is signalled");
    let ov = io.overlapped_result(false).expect("completed");
    assert_eq!((ov.context().as_str(), ov.result().unwrap()), ("recv", 1));
    assert_quiet(&port);

    pends(sock.recv(Overlapped::with_buffers("ok".to_string(), BufList::with_capacity(8)), MsgFlags::NONE), "recv");
    client.write_all(b"y").unwrap();
    let c = next(&port);
    assert_eq!((c.key, c.result().unwrap()), (9, 1));
}
}

backend_test! {
/// Library decision: a port carries one context type; an operation whose record has another
/// context type on a socket of that port is refused with `WSAEINVAL`, and its record (with its
/// own context and buffers) comes back. Nothing is queued and the socket keeps working.
fn operations_with_another_context_type_than_the_port_are_refused() {
    let port = port::<String>(0);
    let (sock, mut client) = tcp_pair(&port, 4);

    match sock.recv(Overlapped::with_buffers(7u64, vec![9u8; 8]), MsgFlags::NONE) {
        Err(r) => {
            assert_eq!(r.error.kind(), ErrorKind::InvalidArgument, "{r}");
            assert_eq!(*r.overlapped.context(), 7u64);
            assert_eq!(r.overlapped.buffers()[0], vec![9u8; 8]);
        }
        Ok(_) => panic!("a record of the wrong context type was accepted"),
    }
    match sock.send(Overlapped::with_buffers((), vec![1u8; 4]), MsgFlags::NONE) {
        Err(r) => assert_eq!(r.error.kind(), ErrorKind::InvalidArgument, "{r}"),
        Ok(_) => panic!("a record of the wrong context type was accepted"),
    }
    assert_quiet(&port);

    pends(sock.recv(Overlapped::with_buffers("ok".to_string(), BufList::with_capacity(8)), MsgFlags::NONE), "recv");
    client.write_all(b"x").unwrap();
    let c = next(&port);
    assert_eq!((c.key, c.result().unwrap()), (4, 1));
}
}

backend_test! {
/// CX-1, 1.5, GQ-2: connect from a bound IPv4 socket to an IPv6 address fails cleanly — either
/// refused at the call (record back, no packet), or one failed completion — with an error,
/// never a panic.
fn connect_to_an_address_of_the_wrong_family_fails_cleanly() {
    let port: CompletionPort<String> = port(0);
    let sock = Socket::tcp_for(&loopback()).unwrap();
    sock.bind(loopback()).unwrap();
    port.associate(&sock, 6).unwrap();
    let v6: SocketAddr = "[::1]:9".parse().unwrap();

    match sock.connect(v6, record("v6")) {
        Err(Rejected { error, overlapped }) => {
            assert_eq!(overlapped.context(), "v6", "refused ({error}): the record comes back");
            assert_eq!(overlapped.buffers().len(), BUFS.len());
            assert_quiet(&port);
        }
        Ok(Issued::Pending) => {
            let c = next(&port);
            assert_eq!(c.key, 6);
            assert!(c.status.is_err(), "a connect to the wrong family cannot succeed: {c:?}");
            assert_eq!(c.overlapped.unwrap().context(), "v6");
            assert_quiet(&port);
        }
        Ok(Issued::Completed(_) | Issued::Event(_)) => panic!("connect never completes at once (CX-4)"),
    }
}
}
