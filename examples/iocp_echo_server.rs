//! The lecture's IOCP echo server (section 3, Completion Port).
//!
//! 1. Create a completion port (`CreateIoCompletionPort`).
//! 2. Start CPUs x 2 worker threads, each taking packets with `GetQueuedCompletionStatus`.
//! 3. Accept clients through the port (`AcceptEx` on the listener, key 0), associate each new
//!    client with the port under its own key, and post its first `WSARecv`.
//! 4. On a receive, send the bytes back (`WSASend`); on a send, receive again. A receive of 0
//!    bytes means the client left: dropping its record closes the socket.
//!
//! The per-I/O data of the lecture (`OVERLAPPED` + `WSABUF` + what the operation was) is the
//! [`Overlapped`] record with an [`Io`] context; one record per client is reused for every
//! receive and send: a receive fills the buffer's spare capacity, the send sends what it
//! holds, `clear()` empties it again, so the steady state allocates and zeroes nothing.
//!
//! Run it: `cargo run --example iocp_echo_server -- 127.0.0.1:9000`
//! (the same server runs as `overlapped serve --model port`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use overlapped::{BufList, Completion, CompletionPort, Error, MsgFlags, Overlapped, Socket};

/// The listener's completion key.
const LISTENER_KEY: usize = 0;
/// The key of the packets that tell workers to exit (`PostQueuedCompletionStatus`).
const SHUTDOWN_KEY: usize = usize::MAX;
/// Receive buffer size per client.
const BUF_SIZE: usize = 4096;
/// Accepts kept outstanding on the listener.
const ACCEPTS: usize = 16;

/// What an operation was: the lecture's per-I/O "operation type" field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// An `AcceptEx` on the listener.
    Accept,
    /// A `WSARecv` on a client.
    Recv,
    /// A `WSASend` on a client.
    Send,
}

/// Per-I/O data: the operation and the client socket it runs on.
pub struct Io {
    op: Op,
    client: Option<Socket>,
}

/// A running echo server.
pub struct EchoServer {
    port: CompletionPort<Io>,
    workers: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl EchoServer {
    /// Binds `addr`, starts `threads` workers (0: CPUs x 2), and starts accepting.
    pub fn start(addr: SocketAddr, threads: usize) -> Result<Self, Error> {
        let port = CompletionPort::<Io>::new(0)?;
        let listener = Socket::listen_tcp(addr, 1024)?;
        let local_addr = listener.local_addr()?;
        port.associate(&listener, LISTENER_KEY)?;
        for _ in 0..ACCEPTS {
            listener.accept(Overlapped::new(Io { op: Op::Accept, client: None }))?;
        }
        let threads = if threads == 0 { 2 * thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
        let next_key = Arc::new(AtomicUsize::new(LISTENER_KEY + 1));
        let workers = (0..threads)
            .map(|_| {
                let (port, listener, next_key) = (port.clone(), listener.clone(), next_key.clone());
                thread::spawn(move || worker(&port, &listener, &next_key))
            })
            .collect();
        Ok(Self { port, workers, local_addr })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The backend running the server's port.
    pub fn backend(&self) -> overlapped::Backend {
        self.port.backend()
    }

    /// Shuts down the lecture's way: one posted packet per worker, then closes the port, which
    /// cancels the accepts and receives still pending and closes every client.
    pub fn stop(self) -> Result<(), Error> {
        for _ in &self.workers {
            self.port.post(0, SHUTDOWN_KEY, None).map_err(|e| e.error)?;
        }
        for w in self.workers {
            let _ = w.join();
        }
        self.port.close();
        Ok(())
    }

    /// Runs until the workers exit (they exit when the port closes).
    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// A worker: take a packet, handle it, repeat.
fn worker(port: &CompletionPort<Io>, listener: &Socket, next_key: &AtomicUsize) {
    while let Ok(done) = port.get(None) {
        if done.key == SHUTDOWN_KEY && done.overlapped.is_none() {
            return;
        }
        handle(port, listener, next_key, done);
    }
}

fn handle(port: &CompletionPort<Io>, listener: &Socket, next_key: &AtomicUsize, done: Completion<Io>) {
    let Some(mut ov) = done.overlapped else { return };
    match ov.context().op {
        Op::Accept => {
            if let (Ok(()), Some(accepted)) = (done.status, ov.take_accepted()) {
                start_client(port, accepted.socket, next_key.fetch_add(1, Ordering::Relaxed));
            }
            // Keep the accept outstanding; it fails only once the listener or port closed.
            let _ = listener.accept(ov);
        }
        Op::Recv => {
            // 0 bytes: the client closed; an error: it reset. Dropping the record closes it.
            if done.status.is_err() || done.bytes == 0 {
                return;
            }
            // The buffer now holds exactly the bytes received: send them back as they are.
            ov.context_mut().op = Op::Send;
            reissue(ov, |client, ov| client.send(ov, MsgFlags::NONE));
        }
        Op::Send => {
            if done.status.is_err() {
                return;
            }
            ov.buffers_mut()[0].clear();
            ov.context_mut().op = Op::Recv;
            reissue(ov, |client, ov| client.recv(ov, MsgFlags::NONE));
        }
    }
}

/// Associates a new client with the port under its own key and posts its first receive.
fn start_client(port: &CompletionPort<Io>, client: Socket, key: usize) {
    if port.associate(&client, key).is_err() {
        return;
    }
    let _ = client.set_nodelay(true);
    let io = Io { op: Op::Recv, client: Some(client.clone()) };
    let _ = client.recv(Overlapped::with_buffers(io, BufList::with_capacity(BUF_SIZE)), MsgFlags::NONE);
}

type Issue = fn(&Socket, Overlapped<Io>) -> Result<overlapped::Issued<Io>, overlapped::Rejected<Io>>;

fn reissue(ov: Overlapped<Io>, issue: Issue) {
    let Some(client) = ov.context().client.clone() else { return };
    // A refused operation (the client is gone) hands the record back; dropping it closes the
    // client's last handle.
    let _ = issue(&client, ov);
}

#[allow(dead_code)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into()).parse()?;
    let server = EchoServer::start(addr, 0)?;
    println!("IOCP echo server on {} ({} backend)", server.local_addr(), server.backend());
    server.join();
    Ok(())
}
