//! Helpers shared by the conformance tests: ports, connected socket pairs, and expectations
//! about packets. Every wait is bounded, so a missing completion fails a test instead of
//! hanging it.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use overlapped::{Backend, Completion, CompletionPort, ErrorKind, Socket};

/// Defines a test that runs its body once per backend, as `name::io_uring` and `name::epoll`:
/// ports and sockets created in the body use that backend ([`on_backend`]).
#[macro_export]
macro_rules! backend_test {
    ($(#[$attr:meta])* fn $name:ident() $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn io_uring() {
                $crate::common::on_backend(overlapped::Backend::IoUring, || $body)
            }

            #[test]
            fn epoll() {
                $crate::common::on_backend(overlapped::Backend::Epoll, || $body)
            }
        }
    };
}

/// Runs `body` with `backend` as the default of this thread (see
/// `overlapped::with_default_backend`). A backend that cannot run on this machine is reported
/// as skipped, by test name, on the terminal (past the test harness's output capture).
pub fn on_backend(backend: Backend, body: impl FnOnce()) {
    if let Err(e) = backend.probe() {
        let name = std::thread::current().name().unwrap_or("?").to_string();
        let _ = writeln!(std::io::stderr(), "SKIPPED {name}: the {backend} backend is not available here ({e})");
        return;
    }
    // The engines that run event and routine operations start with the first one and stay:
    // start every backend's now, so that a test counting descriptors never sees one appear
    // because a test on another backend started meanwhile.
    for b in Backend::ALL.into_iter().filter(|b| b.probe().is_ok()) {
        overlapped::with_default_backend(b, || overlapped::engine_backend().expect("the engine starts"))
            .expect("the backend was just probed");
    }
    overlapped::with_default_backend(backend, body).expect("the backend was just probed");
}

/// How long a test waits for a completion that must come.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure a completion does not come.
pub const QUIET: Duration = Duration::from_millis(100);

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

pub fn loopback_v6() -> SocketAddr {
    "[::1]:0".parse().unwrap()
}

/// A port with the given concurrency.
pub fn port<C: Send + 'static>(concurrency: usize) -> CompletionPort<C> {
    CompletionPort::new(concurrency).expect("create a completion port")
}

/// A connected TCP pair on `addr`'s family: the library side and a std client.
fn connected_pair(addr: SocketAddr) -> (Socket, TcpStream) {
    let listener = TcpListener::bind(addr).unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (Socket::from(server), client)
}

/// A connected TCP pair on `addr`'s family: the library side (associated with `port` under
/// `key`) and a std client.
pub fn tcp_pair_on<C: Send + 'static>(port: &CompletionPort<C>, key: usize, addr: SocketAddr) -> (Socket, TcpStream) {
    let (server, client) = connected_pair(addr);
    port.associate(&server, key).expect("associate");
    (server, client)
}

/// A connected TCP pair on `addr`'s family whose library side is associated with no port (its
/// operations complete through events or routines), and a std client whose reads and writes
/// give up after [`WAIT`].
pub fn unassociated_tcp_pair_on(addr: SocketAddr) -> (Socket, TcpStream) {
    let (server, client) = connected_pair(addr);
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.set_write_timeout(Some(WAIT)).unwrap();
    (server, client)
}

/// An IPv4 [`unassociated_tcp_pair_on`].
pub fn unassociated_tcp_pair() -> (Socket, TcpStream) {
    unassociated_tcp_pair_on(loopback())
}

/// A connected IPv4 TCP pair, see [`tcp_pair_on`].
pub fn tcp_pair<C: Send + 'static>(port: &CompletionPort<C>, key: usize) -> (Socket, TcpStream) {
    tcp_pair_on(port, key, loopback())
}

/// A bound UDP socket associated with `port`, and a std UDP peer connected to it.
pub fn udp_pair<C: Send + 'static>(port: &CompletionPort<C>, key: usize) -> (Socket, UdpSocket) {
    let std_sock = UdpSocket::bind(loopback()).unwrap();
    let peer = UdpSocket::bind(loopback()).unwrap();
    peer.connect(std_sock.local_addr().unwrap()).unwrap();
    let sock = Socket::from(std_sock);
    port.associate(&sock, key).expect("associate");
    (sock, peer)
}

/// The next packet, which must come within [`WAIT`].
#[track_caller]
pub fn next<C: Send + 'static>(port: &CompletionPort<C>) -> Completion<C> {
    match port.get(Some(WAIT)) {
        Ok(c) => c,
        Err(e) => panic!("expected a packet, got {e}"),
    }
}

/// Asserts that no packet comes within [`QUIET`].
#[track_caller]
pub fn assert_quiet<C: Send + 'static>(port: &CompletionPort<C>) {
    match port.get(Some(QUIET)) {
        Err(e) if e.kind() == ErrorKind::Timeout => {}
        Err(e) => panic!("expected a timeout, got {e}"),
        Ok(c) => panic!("expected no packet, got {c:?}"),
    }
}

/// The number of open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}
