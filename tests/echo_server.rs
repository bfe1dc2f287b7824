//! The lecture's IOCP echo server (examples/iocp_echo_server.rs) in-process: it echoes, and
//! after it stops every descriptor it opened (port, listener, clients) is closed again.

#[macro_use]
mod common;

#[path = "../examples/iocp_echo_server.rs"]
#[allow(dead_code)]
mod iocp_echo_server;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;

use iocp_echo_server::EchoServer;

/// The backends' runs of this test count the process's descriptors: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

backend_test! {
fn descriptors_return_to_their_starting_count_after_shutdown() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = common::open_fds();
    let server = EchoServer::start(common::loopback(), 4).unwrap();
    let addr = server.local_addr();
    let clients: Vec<_> = (0..32)
        .map(|i| {
            thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let msg = vec![i as u8; 1000 + i * 100];
                let mut back = vec![0; msg.len()];
                for _ in 0..4 {
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg);
                }
                s // keep the connection open until shutdown
            })
        })
        .collect();
    let open: Vec<TcpStream> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(common::open_fds() >= before + 2 * open.len(), "the server holds its clients");
    server.stop().unwrap();
    drop(open);
    let deadline = std::time::Instant::now() + common::WAIT;
    while common::open_fds() != before && std::time::Instant::now() < deadline {
        thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(common::open_fds(), before, "descriptors leaked by the server");
}
}
