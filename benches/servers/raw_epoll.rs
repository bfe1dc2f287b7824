//! A raw epoll echo server: one thread, one epoll instance, edge-triggered non-blocking sockets,
//! `recv` and `send` as a C programmer writes them. No library between the program and the
//! kernel: it is the ceiling of readiness-based I/O, as the raw io_uring server is the ceiling
//! of completion-based I/O, and what the port's epoll backend is judged against besides tokio.
//!
//! Per ready socket: receive until the socket would block or a receive comes back short (the
//! kernel hands over all it has, so a short read means drained, the same shortcut tokio takes),
//! echoing each chunk at once; a send that would block keeps the rest for the next writable edge.

use std::io::{self, ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};

/// epoll user data of the listener and of the stop socket (connections use their slot index).
const TOKEN_LISTENER: u64 = u64::MAX;
const TOKEN_STOP: u64 = u64::MAX - 1;
/// Events taken per `epoll_wait`.
const EVENTS: usize = 256;

/// A running raw epoll server.
pub struct RawEpollServer {
    pub addr: SocketAddr,
    stop_tx: UnixStream,
    thread: JoinHandle<Result<(), String>>,
}

impl RawEpollServer {
    /// Binds `addr` and starts the server's thread.
    pub fn start(addr: SocketAddr, buf_size: usize) -> Result<Self, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("raw_epoll bind: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (stop_tx, stop_rx) = UnixStream::pair().map_err(|e| e.to_string())?;
        let epoll = Epoll::new().map_err(|e| format!("raw_epoll epoll_create1: {e}"))?;
        epoll.add(listener.as_raw_fd(), TOKEN_LISTENER, libc::EPOLLIN as u32).map_err(|e| e.to_string())?;
        epoll.add(stop_rx.as_raw_fd(), TOKEN_STOP, libc::EPOLLIN as u32).map_err(|e| e.to_string())?;
        let mut server = EventLoop { epoll, listener, conns: Vec::new(), free: Vec::new(), buf_size };
        let thread = thread::Builder::new()
            .name("raw_epoll".into())
            .spawn(move || {
                let _stop_rx = stop_rx; // kept open (and registered) until the loop ends
                server.run()
            })
            .map_err(|e| e.to_string())?;
        Ok(Self { addr, stop_tx, thread })
    }

    /// Stops the loop; every connection closes with it.
    pub fn stop(mut self) -> Result<(), String> {
        self.stop_tx.write_all(&[1]).map_err(|e| e.to_string())?;
        self.thread.join().map_err(|_| "raw_epoll thread panicked".to_string())?
    }
}

/// An epoll instance.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: `epoll_create1` takes no pointers; a non-negative result is a new descriptor.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid event for the duration of the call.
        let r = unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    /// Waits for events; returns how many of `events` were filled.
    fn wait(&self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        // SAFETY: `events` is valid for writes of `events.len()` entries.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }
}

/// One client: its stream, and the echo not yet sent (`buf[sent..len]`).
struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    len: usize,
    sent: usize,
}

impl Conn {
    /// Sends what is pending; `Ok(false)` if the socket would block first.
    fn flush(&mut self) -> io::Result<bool> {
        while self.sent < self.len {
            match self.stream.write(&self.buf[self.sent..self.len]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Handles a readiness edge: sends what is pending, then receives and echoes until the
    /// socket is drained or would block on a send. `Ok(false)`: the client left.
    fn on_ready(&mut self) -> io::Result<bool> {
        if !self.flush()? {
            return Ok(true);
        }
        loop {
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            (self.len, self.sent) = (n, 0);
            if !self.flush()? || n < self.buf.len() {
                return Ok(true);
            }
        }
    }
}

struct EventLoop {
    epoll: Epoll,
    listener: TcpListener,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    buf_size: usize,
}

impl EventLoop {
    fn run(&mut self) -> Result<(), String> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        loop {
            let n = match self.epoll.wait(&mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("raw_epoll epoll_wait: {e}")),
            };
            for ev in &events[..n] {
                match ev.u64 {
                    TOKEN_STOP => return Ok(()),
                    TOKEN_LISTENER => self.accept_all()?,
                    idx => self.on_conn(idx as usize),
                }
            }
        }
    }

    fn accept_all(&mut self) -> Result<(), String> {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Out of descriptors or a connection reset before it was taken: not fatal.
                Err(_) => return Ok(()),
            };
            let _ = stream.set_nodelay(true);
            stream.set_nonblocking(true).map_err(|e| e.to_string())?;
            let idx = self.free.pop().unwrap_or_else(|| {
                self.conns.push(None);
                self.conns.len() - 1
            });
            let edge = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            self.epoll.add(stream.as_raw_fd(), idx as u64, edge).map_err(|e| e.to_string())?;
            let buf = vec![0; self.buf_size].into_boxed_slice();
            self.conns[idx] = Some(Conn { stream, buf, len: 0, sent: 0 });
        }
    }

    fn on_conn(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else { return };
        if !matches!(conn.on_ready(), Ok(true)) {
            // Closing the descriptor also removes it from the epoll set.
            self.conns[idx] = None;
            self.free.push(idx);
        }
    }
}
