//! End to end: `overlapped serve` runs each model's echo server on each backend; 200
//! concurrent real TCP clients send random messages of up to 64 KiB and get every byte back,
//! the server's descriptors return to their baseline once the clients leave, and SIGINT/SIGTERM
//! stop it with exit status 0.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{SIGTERM, Server, echo_end_to_end};
use overlapped::Backend;

#[test]
fn port_model_echoes_every_byte_for_200_concurrent_clients_on_io_uring() {
    echo_end_to_end("port", Backend::IoUring);
}

#[test]
fn port_model_echoes_every_byte_for_200_concurrent_clients_on_epoll() {
    echo_end_to_end("port", Backend::Epoll);
}

#[test]
fn event_model_echoes_every_byte_for_200_concurrent_clients_on_io_uring() {
    echo_end_to_end("event", Backend::IoUring);
}

#[test]
fn event_model_echoes_every_byte_for_200_concurrent_clients_on_epoll() {
    echo_end_to_end("event", Backend::Epoll);
}

#[test]
fn routine_model_echoes_every_byte_for_200_concurrent_clients_on_io_uring() {
    echo_end_to_end("routine", Backend::IoUring);
}

#[test]
fn routine_model_echoes_every_byte_for_200_concurrent_clients_on_epoll() {
    echo_end_to_end("routine", Backend::Epoll);
}

#[test]
fn routine_model_stops_on_sigterm_with_clients_connected() {
    stops_on_sigterm_with_clients_connected("routine");
}

#[test]
fn port_model_stops_on_sigterm_with_clients_connected() {
    stops_on_sigterm_with_clients_connected("port");
}

#[test]
fn event_model_stops_on_sigterm_with_clients_connected() {
    stops_on_sigterm_with_clients_connected("event");
}

fn stops_on_sigterm_with_clients_connected(model: &str) {
    let server = Server::start(model);
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    idle.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    assert_eq!(server.stop(SIGTERM), 0, "serve exits 0 on SIGTERM");
    // The server closed the connection on its way out.
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(idle.read(&mut buf).unwrap_or(0), 0);
}
