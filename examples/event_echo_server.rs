//! The lecture's Overlapped(1) echo server (section 1: overlapped I/O with event objects).
//!
//! 1. An accept thread accepts clients with a plain blocking `accept`, hands each new socket to
//!    the I/O thread, and signals the I/O thread's wake-up event.
//! 2. The I/O thread keeps an array of events: index 0 is the wake-up event, index `i` the
//!    event of client `i - 1`, which every operation on that client signals (`hEvent`). It
//!    waits on the whole array (`WSAWaitForMultipleEvents`), fetches the result of each
//!    signalled client's operation (`WSAGetOverlappedResult`) and issues the next one: after a
//!    receive, a send of the same bytes; after a send, a receive. A receive of 0 bytes or an
//!    error drops the client. It serves every signalled event per wake-up
//!    (`wait_for_any_events`), so no client starves behind lower indices.
//!
//! Windows caps one wait at 64 events (`WSA_MAXIMUM_WAIT_EVENTS`), so the lecture's version
//! needs a thread per 63 clients; `overlapped` has no cap, and this one thread serves
//! thousands of clients: its waits stay registered with the events between calls and cost
//! what they return, and it reaps its own completions while it waits.
//!
//! Run it: `cargo run --example event_echo_server -- 127.0.0.1:9000`
//! (the same server runs as `overlapped serve --model event`).

use std::net::SocketAddr;
use std::sync::Arc;

use overlapped::{BufList, Error, ErrorKind, Event, Issued, MsgFlags, Overlapped, PendingIo, Socket, Wait};

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

/// A running echo server (`start`, `local_addr`, `backend`, `stop`, `join`).
pub use accept_thread::EchoServer;

impl EchoServer {
    /// Binds `addr` and starts the accept thread and the I/O thread.
    pub fn start(addr: SocketAddr) -> Result<Self, Error> {
        Self::start_with(addr, |handoff| IoThread::new(handoff).run())
    }
}

/// One client: its socket and the operation it has outstanding.
struct Client {
    socket: Socket,
    io: PendingIo<Op>,
}

/// The I/O thread's state: `events[0]` wakes it, `events[i]` belongs to `clients[i - 1]`.
struct IoThread {
    handoff: Arc<Handoff>,
    events: Vec<Event>,
    clients: Vec<Client>,
}

impl IoThread {
    fn new(handoff: Arc<Handoff>) -> Self {
        let events = vec![handoff.wake_event().clone()];
        Self { handoff, events, clients: Vec::new() }
    }

    fn run(mut self) {
        let mut ready = Vec::new();
        loop {
            // Every signalled event per wake-up (not only the lowest: WE-3 would let the low
            // indices starve the others), at a cost that follows how many there are.
            ready.clear();
            match overlapped::wait_for_any_events(&self.events, &mut ready, usize::MAX, None, false) {
                Ok(Wait::Signaled(_)) => {}
                Ok(_) => continue,
                Err(_) => return,
            }
            // Highest index first: dropping a client moves the last one into its place, which
            // is then either served already or not ready.
            for &i in ready.iter().rev().filter(|&&i| i > 0) {
                if !self.step(i - 1) {
                    self.remove(i - 1);
                }
            }
            if ready.first() == Some(&0) {
                if self.handoff.stopping() {
                    return;
                }
                self.add_new_clients();
            }
        }
    }

    /// Starts a receive on every client the accept thread handed over.
    fn add_new_clients(&mut self) {
        for socket in self.handoff.take_clients() {
            let event = Event::new(); // WSACreateEvent
            let ov = Overlapped::with_buffers(Op::Recv, BufList::with_capacity(BUF_SIZE)).with_event(event.clone());
            if let Some(io) = issue(&socket, ov) {
                self.events.push(event);
                self.clients.push(Client { socket, io });
            }
        }
    }

    /// Handles the completed operation of client `c` and issues its next one. False if the
    /// client is done.
    fn step(&mut self, c: usize) -> bool {
        let client = &mut self.clients[c];
        let mut ov = match client.io.overlapped_result(false) {
            Ok(ov) => ov,
            Err(e) => return e.kind() == ErrorKind::IoIncomplete,
        };
        match (*ov.context(), ov.result()) {
            (Op::Recv, Ok(n)) if n > 0 => {
                // The buffer holds exactly the bytes received: send them back as they are.
                *ov.context_mut() = Op::Send;
            }
            (Op::Send, Ok(_)) => {
                ov.buffers_mut()[0].clear();
                *ov.context_mut() = Op::Recv;
            }
            // 0 bytes: the client closed; an error: it reset.
            _ => return false,
        }
        match issue(&client.socket, ov) {
            Some(io) => {
                client.io = io;
                true
            }
            None => false,
        }
    }

    /// Drops client `c` (closing its socket) and its event.
    fn remove(&mut self, c: usize) {
        self.clients.swap_remove(c);
        self.events.swap_remove(c + 1);
    }
}

/// Issues the record's operation on `socket` with its event; `None` if it was refused.
fn issue(socket: &Socket, ov: Overlapped<Op>) -> Option<PendingIo<Op>> {
    let issued = match ov.context() {
        Op::Recv => socket.recv(ov, MsgFlags::NONE),
        Op::Send => socket.send(ov, MsgFlags::NONE),
    };
    match issued {
        Ok(Issued::Event(io)) => Some(io),
        _ => None,
    }
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into()).parse()?;
    let server = EchoServer::start(addr)?;
    println!("event-object echo server on {} ({} backend)", server.local_addr(), server.backend());
    server.join();
    Ok(())
}
