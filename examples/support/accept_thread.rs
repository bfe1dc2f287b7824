//! The two threads of the lecture's Overlapped(1) and Overlapped(2) echo servers: the accept
//! thread, a plain blocking `accept` loop that hands each new client to the I/O thread and
//! signals the event the I/O thread waits on; and the I/O thread, whose loop each server
//! supplies.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use overlapped::{Backend, Error, Event, Socket};

/// A running echo server: its accept thread and its I/O thread.
pub struct EchoServer {
    acceptor: AcceptThread,
    backend: Backend,
    io_thread: JoinHandle<()>,
}

impl EchoServer {
    /// Binds `addr`, starts the accept thread, and runs `io_loop` on the I/O thread.
    pub fn start_with(addr: SocketAddr, io_loop: impl FnOnce(Arc<Handoff>) + Send + 'static) -> Result<Self, Error> {
        // Starts the engine that runs the servers' operations, and names its backend.
        let backend = overlapped::engine_backend()?;
        let acceptor = AcceptThread::start(addr)?;
        let handoff = acceptor.handoff.clone();
        let io_thread = thread::spawn(move || io_loop(handoff));
        Ok(Self { acceptor, backend, io_thread })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.acceptor.local_addr
    }

    /// The backend running the server's operations.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Stops both threads; the I/O thread closes its clients on its way out (or its exit
    /// cancels their operations, TE-1).
    pub fn stop(self) -> Result<(), Error> {
        let stopped = self.acceptor.stop();
        let _ = self.io_thread.join();
        stopped
    }

    /// Runs until the server is stopped from elsewhere.
    pub fn join(self) {
        let _ = self.acceptor.thread.join();
        let _ = self.io_thread.join();
    }
}

/// What the accept thread shares with the I/O thread.
pub struct Handoff {
    new_clients: Mutex<Vec<Socket>>,
    wake: Event,
    stop: AtomicBool,
}

impl Handoff {
    /// The auto-reset event the I/O thread waits on: set when clients arrive, or to stop.
    pub fn wake_event(&self) -> &Event {
        &self.wake
    }

    /// Whether the server is stopping.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The clients accepted since the last call.
    pub fn take_clients(&self) -> Vec<Socket> {
        std::mem::take(&mut *self.new_clients.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The listener and its accept thread.
struct AcceptThread {
    handoff: Arc<Handoff>,
    listener: Socket,
    local_addr: SocketAddr,
    thread: JoinHandle<()>,
}

impl AcceptThread {
    /// Binds `addr` and starts accepting.
    fn start(addr: SocketAddr) -> Result<Self, Error> {
        let listener = Socket::listen_tcp(addr, 1024)?;
        let local_addr = listener.local_addr()?;
        let handoff = Arc::new(Handoff {
            new_clients: Mutex::new(Vec::new()),
            wake: Event::auto(false),
            stop: AtomicBool::new(false),
        });
        let thread = {
            let (handoff, listener) = (handoff.clone(), listener.clone());
            thread::spawn(move || accept_loop(&listener, &handoff))
        };
        Ok(Self { handoff, listener, local_addr, thread })
    }

    /// Stops accepting, tells the I/O thread to stop (through its event), and closes the
    /// listener.
    fn stop(self) -> Result<(), Error> {
        self.handoff.stop.store(true, Ordering::Release);
        // Wakes the accept thread out of `accept` (Linux fails it once the listener is shut).
        let _ = self.listener.shutdown(std::net::Shutdown::Read);
        self.handoff.wake.set()?;
        let _ = self.thread.join();
        self.listener.close()
    }
}

/// Blocking `accept`, then hand the client over and signal the I/O thread.
fn accept_loop(listener: &Socket, handoff: &Handoff) {
    while !handoff.stopping() {
        match listener.sock_ref().accept() {
            Ok((client, _)) => {
                let client = Socket::from(TcpStream::from(client));
                let _ = client.set_nodelay(true);
                handoff.new_clients.lock().unwrap_or_else(|e| e.into_inner()).push(client);
                let _ = handoff.wake.set();
            }
            // A signal, or a client that left before it was accepted: keep accepting.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::ConnectionAborted) => {}
            Err(_) => return,
        }
    }
}
