//! The lecture's Overlapped(2) echo server (section 2: overlapped I/O with completion routines).
//!
//! 1. An accept thread accepts clients with a plain blocking `accept`, hands each new socket to
//!    the I/O thread and signals an event.
//! 2. The I/O thread sits in an alertable wait on that event
//!    (`WSAWaitForMultipleEvents(.., fAlertable = TRUE)`). When the event is signalled it
//!    issues the new client's first `WSARecv` with a completion routine; when the wait returns
//!    `WSA_WAIT_IO_COMPLETION`, completion routines have run, and it simply waits again.
//! 3. The completion routine runs on the I/O thread, inside its alertable wait: after a receive
//!    it sends the bytes back, after a send it receives again, each time with itself as the
//!    routine. A receive of 0 bytes or an error closes the client (`closesocket`).
//!
//! Stopping: the I/O thread leaves its loop and exits; as on Windows, the operations it issued
//! are then cancelled and their routines discarded with its APC queue (TE-1, AP-6), which
//! closes the clients.
//!
//! Run it: `cargo run --example routine_echo_server -- 127.0.0.1:9000`
//! (the same server runs as `overlapped serve --model routine`).

use std::net::SocketAddr;

use overlapped::{BufList, Error, MsgFlags, Overlapped, Socket, Wait};

// The CLI and the benchmark compile both lecture servers, each with its own copy of this.
#[path = "support/accept_thread.rs"]
#[allow(clippy::duplicate_mod)]
mod accept_thread;

use accept_thread::Handoff;

/// Receive buffer size per client.
const BUF_SIZE: usize = 4096;

/// What a client's outstanding operation is: the lecture's per-I/O "operation type".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A `WSARecv`.
    Recv,
    /// A `WSASend`.
    Send,
}

/// Per-I/O data: the operation and the client it runs on.
pub struct Io {
    op: Op,
    client: Socket,
}

/// A running echo server (`start`, `local_addr`, `backend`, `stop`, `join`).
pub use accept_thread::EchoServer;

impl EchoServer {
    /// Binds `addr` and starts the accept thread and the I/O thread.
    pub fn start(addr: SocketAddr) -> Result<Self, Error> {
        Self::start_with(addr, |handoff| io_loop(&handoff))
    }
}

/// The I/O thread: an alertable wait, in which the completion routines run.
fn io_loop(handoff: &Handoff) {
    loop {
        match handoff.wake_event().wait(None, true) {
            Ok(Wait::Signaled(_)) => {
                if handoff.stopping() {
                    return;
                }
                for client in handoff.take_clients() {
                    let io = Io { op: Op::Recv, client: client.clone() };
                    let ov = Overlapped::with_buffers(io, BufList::with_capacity(BUF_SIZE))
                        .with_completion_routine(completion_routine);
                    let _ = client.recv(ov, MsgFlags::NONE);
                }
            }
            // WSA_WAIT_IO_COMPLETION: routines ran; wait again.
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// The completion routine of every operation: echo what was received, then receive again.
fn completion_routine(error: Option<Error>, bytes: usize, mut ov: Overlapped<Io>, _flags: overlapped::MsgFlags) {
    let client = ov.context().client.clone();
    if error.is_some() || (ov.context().op == Op::Recv && bytes == 0) {
        // An error, or the client closed: closesocket.
        let _ = client.close();
        return;
    }
    let issued = match ov.context().op {
        Op::Recv => {
            // The buffer holds exactly the bytes received: send them back as they are.
            ov.context_mut().op = Op::Send;
            client.send(ov, MsgFlags::NONE)
        }
        Op::Send => {
            ov.buffers_mut()[0].clear();
            ov.context_mut().op = Op::Recv;
            client.recv(ov, MsgFlags::NONE)
        }
    };
    if issued.is_err() {
        let _ = client.close();
    }
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into()).parse()?;
    let server = EchoServer::start(addr)?;
    println!("completion-routine echo server on {} ({} backend)", server.local_addr(), server.backend());
    server.join();
    Ok(())
}
