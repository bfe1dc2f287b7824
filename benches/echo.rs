//! Echo benchmark: the lecture's IOCP echo server on an `overlapped` completion port, against a
//! tokio echo server, a monoio echo server (a thread-per-core io_uring runtime: the state of the
//! art for completion I/O in Rust), a raw io_uring echo server and a raw epoll echo server (the
//! ceilings of completion and of readiness I/O: no library at all), all driven by one
//! in-process load generator.
//!
//! How to run it (the intended way: servers and load generator pinned to the same core, so
//! `available_parallelism` is 1, the port's concurrency is 1 and tokio has 1 worker):
//!
//! ```text
//! taskset -c 0 cargo bench --bench echo
//! taskset -c 0 cargo bench --bench echo -- --rounds 7 --secs 2
//! cargo bench --bench echo -- --quick          # smoke test: 1 round of 0.3 s per cell
//! ```
//!
//! Options (after `--`): `--rounds N` (default 5, env `ECHO_ROUNDS`), `--secs S` (measured
//! seconds per cell, default 2, env `ECHO_SECS`), `--warmup S` (default 0.3), `--conns 64,512`
//! (the scenarios), `--servers port,tokio` (a subset), `--quick`. Without `--bench` on the
//! command line (that is, not started by `cargo bench`, e.g. by `cargo test --benches`) it runs
//! the quick mode.
//!
//! What it does: it starts every server in [`SERVERS`] on 127.0.0.1 port 0, then for each round
//! and each scenario (N connections) it measures each server in turn (the order rotates every
//! round): N connections ping-pong 64-byte messages (send 64 bytes, read 64 back, verify, repeat),
//! all driven by a single thread with its own io_uring, for a short warm-up and then a fixed
//! measured time. Every load loop is bounded by time and by a request count. It reports per cell
//! the requests per second and latency percentiles (hdrhistogram), and per scenario the median
//! over rounds of the per-round ratios subject/baseline (`port/tokio`, `port/monoio`,
//! `port/raw_uring`, `port/raw_epoll`):
//! absolute numbers are noisy on a shared machine, the ratios are what matter. It also checks that
//! the process's descriptor count returns to its starting value after each cell (a server that
//! does not close its side of a finished connection shows up there).
//!
//! Adding a server is one more entry in [`SERVERS`].
#![allow(unsafe_code)] // the raw servers call the kernel directly; the load generator hands buffers to a ring.

#[path = "../examples/event_echo_server.rs"]
#[allow(dead_code)]
mod event_echo_server;

#[path = "../examples/routine_echo_server.rs"]
#[allow(dead_code)]
mod routine_echo_server;

#[path = "../examples/iocp_echo_server.rs"]
#[allow(dead_code)]
mod iocp_echo_server;

#[path = "servers/raw_epoll.rs"]
mod raw_epoll;

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{IoUring, opcode, squeue, types};

/// Size of one request (and of its echo).
const MSG: usize = 64;
/// Receive buffer size of the tokio and raw io_uring servers (the port server's is also 4 KiB).
const SERVER_BUF: usize = 4096;
/// A cell ends early if it completes this many requests (warm-up included).
const MAX_REQUESTS_PER_CELL: u64 = 200_000_000;
/// No completion at all for this long during a cell: the server is reported as stalled.
const STALL: Duration = Duration::from_secs(5);
/// How long the load generator's ring waits before it looks at the clock again.
const TICK: Duration = Duration::from_millis(50);
/// How long a cell waits for the server to close its side of the cell's connections.
const FD_SETTLE: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// Servers
// ---------------------------------------------------------------------------------------------

/// Whether a server is measured (a subject) or is what subjects are compared with (a baseline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Subject,
    Baseline,
}

/// One server the benchmark knows how to start.
struct ServerKind {
    name: &'static str,
    role: Role,
    start: fn() -> Result<Box<dyn EchoImpl>, String>,
}

/// The servers, in their round-0 order. Ratios are reported for every subject against every
/// baseline. To add a server, add an entry.
const SERVERS: &[ServerKind] = &[
    ServerKind { name: "port", role: Role::Subject, start: start_port },
    ServerKind { name: "port_epoll", role: Role::Subject, start: start_port_epoll },
    ServerKind { name: "event", role: Role::Subject, start: start_event },
    ServerKind { name: "routine", role: Role::Subject, start: start_routine },
    ServerKind { name: "tokio", role: Role::Baseline, start: start_tokio },
    ServerKind { name: "raw_uring", role: Role::Baseline, start: start_raw_uring },
    ServerKind { name: "raw_epoll", role: Role::Baseline, start: start_raw_epoll },
    ServerKind { name: "monoio", role: Role::Baseline, start: start_monoio },
];

/// A running echo server.
trait EchoImpl {
    fn addr(&self) -> SocketAddr;
    /// One line about how it runs (backend, threads).
    fn describe(&self) -> String;
    fn stop(self: Box<Self>) -> Result<(), String>;
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

// --- (a) the lecture's IOCP echo server on an `overlapped` completion port --------------------

struct PortServer(iocp_echo_server::EchoServer);

fn start_port() -> Result<Box<dyn EchoImpl>, String> {
    let server = iocp_echo_server::EchoServer::start(loopback(), 0).map_err(|e| format!("port server: {e}"))?;
    Ok(Box::new(PortServer(server)))
}

/// The same server on the epoll backend.
fn start_port_epoll() -> Result<Box<dyn EchoImpl>, String> {
    let server = overlapped::with_default_backend(overlapped::Backend::Epoll, || {
        iocp_echo_server::EchoServer::start(loopback(), 0)
    })
    .map_err(|e| format!("epoll backend: {e}"))?
    .map_err(|e| format!("port server on epoll: {e}"))?;
    Ok(Box::new(PortServer(server)))
}

impl EchoImpl for PortServer {
    fn addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
    fn describe(&self) -> String {
        format!("backend={} workers={} concurrency={}", self.0.backend(), 2 * cpus(), cpus())
    }
    fn stop(self: Box<Self>) -> Result<(), String> {
        self.0.stop().map_err(|e| format!("port server stop: {e}"))
    }
}

// --- the lecture's single-threaded event-object and completion-routine servers ----------------

struct EventServer(event_echo_server::EchoServer);

fn start_event() -> Result<Box<dyn EchoImpl>, String> {
    let server = event_echo_server::EchoServer::start(loopback()).map_err(|e| format!("event server: {e}"))?;
    Ok(Box::new(EventServer(server)))
}

impl EchoImpl for EventServer {
    fn addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
    fn describe(&self) -> String {
        format!("backend={} one I/O thread waiting on every client's event", self.0.backend())
    }
    fn stop(self: Box<Self>) -> Result<(), String> {
        self.0.stop().map_err(|e| format!("event server stop: {e}"))
    }
}

struct RoutineServer(routine_echo_server::EchoServer);

fn start_routine() -> Result<Box<dyn EchoImpl>, String> {
    let server = routine_echo_server::EchoServer::start(loopback()).map_err(|e| format!("routine server: {e}"))?;
    Ok(Box::new(RoutineServer(server)))
}

impl EchoImpl for RoutineServer {
    fn addr(&self) -> SocketAddr {
        self.0.local_addr()
    }
    fn describe(&self) -> String {
        format!("backend={} one I/O thread running completion routines", self.0.backend())
    }
    fn stop(self: Box<Self>) -> Result<(), String> {
        self.0.stop().map_err(|e| format!("routine server stop: {e}"))
    }
}

// --- (b) tokio, the way a tokio user writes it ------------------------------------------------

struct TokioServer {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
}

fn start_tokio() -> Result<Box<dyn EchoImpl>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    let listener = rt.block_on(tokio::net::TcpListener::bind(loopback())).map_err(|e| format!("tokio bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    rt.spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; SERVER_BUF];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(Box::new(TokioServer { rt, addr }))
}

impl EchoImpl for TokioServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn describe(&self) -> String {
        format!("multi-thread runtime, workers={}", self.rt.metrics().num_workers())
    }
    fn stop(self: Box<Self>) -> Result<(), String> {
        self.rt.shutdown_timeout(Duration::from_secs(2));
        Ok(())
    }
}

// --- (e) raw epoll: one thread, no library (`servers/raw_epoll.rs`) ----------------------------

fn start_raw_epoll() -> Result<Box<dyn EchoImpl>, String> {
    Ok(Box::new(raw_epoll::RawEpollServer::start(loopback(), SERVER_BUF)?))
}

impl EchoImpl for raw_epoll::RawEpollServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn describe(&self) -> String {
        "1 thread, edge-triggered epoll, recv/send".into()
    }
    fn stop(self: Box<Self>) -> Result<(), String> {
        raw_epoll::RawEpollServer::stop(*self)
    }
}

// --- (d) monoio: a thread-per-core io_uring runtime, one thread ----------------------------------

struct MonoioServer {
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<Result<(), String>>,
}

fn start_monoio() -> Result<Box<dyn EchoImpl>, String> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let stop_flag = stop.clone();
    let thread = thread::Builder::new()
        .name("monoio".into())
        .spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .build()
                .map_err(|e| format!("monoio runtime: {e}"))?;
            rt.block_on(monoio_accept_loop(addr_tx, stop_flag))
        })
        .map_err(|e| e.to_string())?;
    let addr = addr_rx.recv().map_err(|_| "monoio did not start".to_string())??;
    Ok(Box::new(MonoioServer { addr, stop, thread }))
}

/// Accepts until stopped (the stopper connects once to wake the accept); each client gets a task
/// that echoes with owned buffers, the way a monoio user writes it.
async fn monoio_accept_loop(
    addr_tx: std::sync::mpsc::Sender<Result<SocketAddr, String>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<(), String> {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

    let listener = match monoio::net::TcpListener::bind(loopback()).and_then(|l| Ok((l.local_addr()?, l))) {
        Ok((addr, l)) => {
            let _ = addr_tx.send(Ok(addr));
            l
        }
        Err(e) => {
            let _ = addr_tx.send(Err(format!("monoio bind: {e}")));
            return Err(e.to_string());
        }
    };
    loop {
        let Ok((mut stream, _)) = listener.accept().await else { return Ok(()) };
        if stop.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let _ = stream.set_nodelay(true);
        monoio::spawn(async move {
            let mut buf = Vec::with_capacity(SERVER_BUF);
            loop {
                let (res, b) = stream.read(buf).await;
                match res {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let (res, mut b) = stream.write_all(b).await;
                if res.is_err() {
                    return;
                }
                b.clear();
                buf = b;
            }
        });
    }
}

impl EchoImpl for MonoioServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn describe(&self) -> String {
        "1 thread, io_uring driver".into()
    }
    fn stop(self: Box<Self>) -> Result<(), String> {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        // Wakes the accept, which then sees the flag; the runtime's drop closes what is left.
        let _ = TcpStream::connect(self.addr);
        self.thread.join().map_err(|_| "monoio thread panicked".to_string())?
    }
}

// --- (c) raw io_uring: one thread, one ring ---------------------------------------------------

/// `user_data` of the listener's accept.
const UD_ACCEPT: u64 = u64::MAX;
/// `user_data` of the read on the stop socket.
const UD_STOP: u64 = u64::MAX - 1;
/// `user_data` of the cancellation of the accept.
const UD_CANCEL: u64 = u64::MAX - 2;

struct RawUringServer {
    addr: SocketAddr,
    stop_tx: UnixStream,
    thread: JoinHandle<Result<(), String>>,
}

fn start_raw_uring() -> Result<Box<dyn EchoImpl>, String> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).map_err(|e| e.to_string())?;
    sock.set_reuse_address(true).map_err(|e| e.to_string())?;
    sock.bind(&loopback().into()).map_err(|e| e.to_string())?;
    sock.listen(1024).map_err(|e| e.to_string())?;
    let listener: TcpListener = sock.into();
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = UnixStream::pair().map_err(|e| e.to_string())?;
    let ring = IoUring::builder().setup_cqsize(8192).build(1024).map_err(|e| format!("raw_uring ring: {e}"))?;
    let thread = thread::Builder::new()
        .name("raw_uring".into())
        .spawn(move || RawLoop::new(ring, listener, stop_rx).run())
        .map_err(|e| e.to_string())?;
    Ok(Box::new(RawUringServer { addr, stop_tx, thread }))
}

impl EchoImpl for RawUringServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn describe(&self) -> String {
        "1 thread, 1 ring".into()
    }
    fn stop(mut self: Box<Self>) -> Result<(), String> {
        self.stop_tx.write_all(&[1]).map_err(|e| e.to_string())?;
        self.thread.join().map_err(|_| "raw_uring thread panicked".to_string())?
    }
}

/// One client of the raw server. It has at most one operation in flight, on `buf`.
struct RawConn {
    stream: TcpStream,
    buf: Box<[u8; SERVER_BUF]>,
    /// Bytes received (while sending: bytes to send).
    len: usize,
    /// Bytes sent so far.
    sent: usize,
    sending: bool,
}

struct RawLoop {
    // Fields drop in order: the ring goes first. Buffers of operations still in flight when the
    // loop gives up are leaked instead (see `run`).
    ring: IoUring,
    listener: TcpListener,
    stop_rx: UnixStream,
    stop_buf: Box<[u8; 8]>,
    conns: Vec<Option<RawConn>>,
    free: Vec<usize>,
    live: usize,
}

/// Pushes `entry`, submitting first if the submission queue is full.
///
/// # Safety
/// Every buffer `entry` points at must stay valid, unmoved and otherwise unused until the
/// operation's completion has been reaped.
unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: the caller keeps the entry's buffers valid until its completion.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

/// Submits what is queued and waits for at least one completion (at most `timeout`, if given).
/// A timeout or an interruption is not an error.
fn submit_wait(ring: &IoUring, timeout: Option<Duration>) -> io::Result<()> {
    let r = match timeout {
        None => ring.submit_and_wait(1),
        Some(t) => {
            let ts = types::Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
            ring.submitter().submit_with_args(1, &types::SubmitArgs::new().timespec(&ts))
        }
    };
    match r {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR | libc::EBUSY)) => Ok(()),
        Err(e) => Err(e),
    }
}

impl RawLoop {
    fn new(ring: IoUring, listener: TcpListener, stop_rx: UnixStream) -> Self {
        Self { ring, listener, stop_rx, stop_buf: Box::new([0; 8]), conns: Vec::new(), free: Vec::new(), live: 0 }
    }

    /// Runs until stopped. If it gives up with operations in flight, it leaks itself so that no
    /// buffer the kernel may still write is freed.
    fn run(mut self) -> Result<(), String> {
        match self.serve() {
            Ok(()) => Ok(()),
            Err(e) => {
                std::mem::forget(self);
                Err(e)
            }
        }
    }

    fn serve(&mut self) -> Result<(), String> {
        let lfd = types::Fd(self.listener.as_raw_fd());
        let accept = opcode::Accept::new(lfd, std::ptr::null_mut(), std::ptr::null_mut()).build().user_data(UD_ACCEPT);
        let stop = opcode::Read::new(types::Fd(self.stop_rx.as_raw_fd()), self.stop_buf.as_mut_ptr(), 8)
            .build()
            .user_data(UD_STOP);
        // SAFETY: the accept has no buffer; `stop_buf` lives in `self` until the read completes
        // (or forever, if the loop gives up: `run` leaks `self`).
        unsafe {
            push(&mut self.ring, &accept).map_err(|e| e.to_string())?;
            push(&mut self.ring, &stop).map_err(|e| e.to_string())?;
        }
        let mut accept_armed = true;
        let mut stopping: Option<Instant> = None;
        let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(1024);
        loop {
            if let Some(since) = stopping {
                if self.live == 0 && !accept_armed {
                    return Ok(());
                }
                if since.elapsed() > Duration::from_secs(3) {
                    return Err(format!("raw_uring: {} connections did not close at stop", self.live));
                }
            }
            let timeout = stopping.map(|_| TICK);
            submit_wait(&self.ring, timeout).map_err(|e| format!("raw_uring submit: {e}"))?;
            cqes.clear();
            cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            for &(ud, res) in &cqes {
                match ud {
                    UD_ACCEPT => {
                        if res >= 0 {
                            // SAFETY: `res` is a descriptor the accept just created; nothing else
                            // owns it.
                            let stream = unsafe { TcpStream::from_raw_fd(res) };
                            if stopping.is_some() {
                                continue; // dropped: closed
                            }
                            let _ = stream.set_nodelay(true);
                            self.add_conn(stream)?;
                        }
                        if stopping.is_some() {
                            accept_armed = false;
                        } else {
                            // SAFETY: the accept has no buffer.
                            unsafe { push(&mut self.ring, &accept) }.map_err(|e| e.to_string())?;
                        }
                    }
                    UD_STOP => {
                        stopping = Some(Instant::now());
                        let cancel = opcode::AsyncCancel::new(UD_ACCEPT).build().user_data(UD_CANCEL);
                        // SAFETY: a cancellation has no buffer.
                        unsafe { push(&mut self.ring, &cancel) }.map_err(|e| e.to_string())?;
                        // A shut-down socket completes its pending receive with 0 (or its send
                        // with an error), which closes it below.
                        for c in self.conns.iter().flatten() {
                            let _ = c.stream.shutdown(Shutdown::Both);
                        }
                    }
                    UD_CANCEL => {}
                    idx => self.on_conn(idx as usize, res, stopping.is_some())?,
                }
            }
        }
    }

    fn add_conn(&mut self, stream: TcpStream) -> Result<(), String> {
        let conn = RawConn { stream, buf: Box::new([0; SERVER_BUF]), len: 0, sent: 0, sending: false };
        let idx = match self.free.pop() {
            Some(i) => {
                self.conns[i] = Some(conn);
                i
            }
            None => {
                self.conns.push(Some(conn));
                self.conns.len() - 1
            }
        };
        self.live += 1;
        self.post_recv(idx)
    }

    fn close(&mut self, idx: usize) {
        if self.conns[idx].take().is_some() {
            self.free.push(idx);
            self.live -= 1;
        }
    }

    fn post_recv(&mut self, idx: usize) -> Result<(), String> {
        let c = self.conns[idx].as_mut().expect("live connection");
        c.sending = false;
        let e = opcode::Recv::new(types::Fd(c.stream.as_raw_fd()), c.buf.as_mut_ptr(), SERVER_BUF as u32)
            .build()
            .user_data(idx as u64);
        // SAFETY: `buf` is boxed in the connection's slot, which is not emptied before this
        // operation's completion (a connection has one operation in flight at a time).
        unsafe { push(&mut self.ring, &e) }.map_err(|e| e.to_string())
    }

    fn post_send(&mut self, idx: usize) -> Result<(), String> {
        let c = self.conns[idx].as_mut().expect("live connection");
        c.sending = true;
        let rest = &c.buf[c.sent..c.len];
        let e = opcode::Send::new(types::Fd(c.stream.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(idx as u64);
        // SAFETY: as in `post_recv`.
        unsafe { push(&mut self.ring, &e) }.map_err(|e| e.to_string())
    }

    fn on_conn(&mut self, idx: usize, res: i32, stopping: bool) -> Result<(), String> {
        let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) else { return Ok(()) };
        if res <= 0 && !(c.sending && res == 0) {
            // A receive of 0 (the client left) or an error.
            self.close(idx);
            return Ok(());
        }
        if stopping {
            self.close(idx);
            return Ok(());
        }
        if c.sending {
            c.sent += res as usize;
            if c.sent < c.len { self.post_send(idx) } else { self.post_recv(idx) }
        } else {
            c.len = res as usize;
            c.sent = 0;
            self.post_send(idx)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Load generator: one thread, one io_uring, N connections doing request/response ping-pong.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Sending,
    Receiving,
    Idle,
    Dead,
}

struct Client {
    stream: TcpStream,
    tx: [u8; MSG],
    rx: [u8; MSG],
    /// Bytes of the current request sent, or of its echo received.
    done: usize,
    state: ClientState,
    seq: u64,
    started: Instant,
}

/// What one cell (one server, one scenario, one round) measured.
struct CellResult {
    requests: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    stalled: bool,
    fd_leak: Option<String>,
}

impl CellResult {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    fn p_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A message that differs per connection and per request, so crossed or stale echoes show.
fn fill(buf: &mut [u8; MSG], conn: usize, seq: u64) {
    let mut x = ((conn as u64) << 40) ^ seq;
    for chunk in buf.chunks_exact_mut(8) {
        x = splitmix(x);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
}

struct LoadGen {
    // The ring drops first; a stalled run leaks the whole generator (see `run_cell`).
    ring: IoUring,
    clients: Box<[Client]>,
    in_flight: usize,
}

impl LoadGen {
    fn connect(addr: SocketAddr, n: usize) -> Result<Self, String> {
        let entries = n.next_power_of_two().max(8) as u32;
        let ring = IoUring::builder()
            .setup_cqsize(2 * entries)
            .build(entries)
            .map_err(|e| format!("load generator ring: {e}"))?;
        let now = Instant::now();
        let clients = (0..n)
            .map(|_| {
                let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
                stream.set_nodelay(true).map_err(|e| e.to_string())?;
                Ok(Client {
                    stream,
                    tx: [0; MSG],
                    rx: [0; MSG],
                    done: 0,
                    state: ClientState::Idle,
                    seq: 0,
                    started: now,
                })
            })
            .collect::<Result<Vec<_>, String>>()?
            .into_boxed_slice();
        Ok(Self { ring, clients, in_flight: 0 })
    }

    fn post_send(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.clients[i];
        c.state = ClientState::Sending;
        let rest = &c.tx[c.done..];
        let e = opcode::Send::new(types::Fd(c.stream.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(i as u64);
        // SAFETY: `tx` lives in the boxed client slice, which is neither moved nor freed while
        // an operation is in flight (a stalled generator is leaked); one operation per client.
        unsafe { push(&mut self.ring, &e) }
    }

    fn post_recv(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.clients[i];
        c.state = ClientState::Receiving;
        let rest = &mut c.rx[c.done..];
        let e = opcode::Recv::new(types::Fd(c.stream.as_raw_fd()), rest.as_mut_ptr(), rest.len() as u32)
            .build()
            .user_data(i as u64);
        // SAFETY: as in `post_send`, for `rx`.
        unsafe { push(&mut self.ring, &e) }
    }

    fn start_request(&mut self, i: usize, now: Instant) -> io::Result<()> {
        let c = &mut self.clients[i];
        c.seq += 1;
        fill(&mut c.tx, i, c.seq);
        c.done = 0;
        c.started = now;
        self.post_send(i)
    }

    /// Runs the ping-pong for `warmup` (not recorded) then `secs` (recorded), then lets the
    /// requests in flight finish. Returns the result and whether the generator is clean (no
    /// operation in flight); an unclean generator must be leaked, not dropped.
    fn run(&mut self, warmup: Duration, secs: Duration, max_requests: u64) -> (CellResult, bool) {
        let mut res = CellResult {
            requests: 0,
            elapsed: Duration::ZERO,
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            errors: 0,
            first_error: None,
            stalled: false,
            fd_leak: None,
        };
        let fail = |res: &mut CellResult, msg: String| {
            res.errors += 1;
            res.first_error.get_or_insert(msg);
        };
        let start = Instant::now();
        let mark = start + warmup;
        let end = mark + secs;
        for i in 0..self.clients.len() {
            if let Err(e) = self.start_request(i, start) {
                fail(&mut res, format!("submit: {e}"));
                return (res, self.in_flight == 0);
            }
            self.in_flight += 1;
        }
        let mut total: u64 = 0;
        let mut stop_at: Option<Instant> = None;
        let mut last_progress = start;
        let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(self.clients.len());
        loop {
            if let Err(e) = submit_wait(&self.ring, Some(TICK)) {
                fail(&mut res, format!("load generator submit: {e}"));
                return (res, false);
            }
            let now = Instant::now();
            if stop_at.is_none() && (now >= end || total >= max_requests) {
                stop_at = Some(now);
                res.elapsed = now.min(end).saturating_duration_since(mark);
            }
            cqes.clear();
            cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            if !cqes.is_empty() {
                last_progress = now;
            }
            for &(ud, r) in &cqes {
                let i = ud as usize;
                let state = self.clients[i].state;
                let step = match state {
                    ClientState::Sending if r > 0 => {
                        let c = &mut self.clients[i];
                        c.done += r as usize;
                        if c.done < MSG {
                            self.post_send(i)
                        } else {
                            c.done = 0;
                            self.post_recv(i)
                        }
                    }
                    ClientState::Receiving if r > 0 => {
                        let c = &mut self.clients[i];
                        c.done += r as usize;
                        if c.done < MSG {
                            self.post_recv(i)
                        } else if c.rx != c.tx {
                            c.state = ClientState::Dead;
                            self.in_flight -= 1;
                            let _ = c.stream.shutdown(Shutdown::Both);
                            fail(&mut res, format!("conn {i} request {}: echo differs from request", c.seq));
                            Ok(())
                        } else {
                            total += 1;
                            if now >= mark && stop_at.is_none() {
                                res.requests += 1;
                                res.hist.saturating_record(now.saturating_duration_since(c.started).as_nanos() as u64);
                            }
                            if stop_at.is_none() {
                                self.start_request(i, now)
                            } else {
                                c.state = ClientState::Idle;
                                self.in_flight -= 1;
                                Ok(())
                            }
                        }
                    }
                    ClientState::Sending | ClientState::Receiving => {
                        let c = &mut self.clients[i];
                        c.state = ClientState::Dead;
                        self.in_flight -= 1;
                        let what = if state == ClientState::Sending { "send" } else { "recv" };
                        let why = if r == 0 {
                            "connection closed by the server".to_string()
                        } else {
                            io::Error::from_raw_os_error(-r).to_string()
                        };
                        fail(&mut res, format!("conn {i} request {}: {what}: {why}", c.seq));
                        Ok(())
                    }
                    ClientState::Idle | ClientState::Dead => {
                        fail(&mut res, format!("conn {i}: unexpected completion {r}"));
                        Ok(())
                    }
                };
                if let Err(e) = step {
                    fail(&mut res, format!("load generator submit: {e}"));
                    return (res, false);
                }
            }
            if stop_at.is_some() && self.in_flight == 0 {
                return (res, true);
            }
            if now.saturating_duration_since(last_progress) > STALL {
                res.stalled = true;
                if stop_at.is_none() {
                    res.elapsed = now.saturating_duration_since(mark);
                }
                let waiting =
                    self.clients.iter().filter(|c| matches!(c.state, ClientState::Sending | ClientState::Receiving));
                let (sending, receiving) = waiting
                    .fold((0, 0), |(s, r), c| if c.state == ClientState::Sending { (s + 1, r) } else { (s, r + 1) });
                fail(
                    &mut res,
                    format!(
                        "stalled: no completion for {STALL:?}; {} requests in flight ({sending} sending, {receiving} awaiting the echo)",
                        self.in_flight
                    ),
                );
                return (res, false);
            }
        }
    }
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// One cell: connect `conns` clients to `addr`, warm up, measure, disconnect, and check that
/// the descriptor count returns to `fds_before`.
fn run_cell(addr: SocketAddr, conns: usize, cfg: &Config, fds_before: usize) -> Result<CellResult, String> {
    let mut lg = LoadGen::connect(addr, conns)?;
    let (mut res, clean) = lg.run(cfg.warmup, cfg.secs, MAX_REQUESTS_PER_CELL);
    if clean {
        drop(lg);
    } else {
        // Operations may still be in flight on the clients' buffers: never free them.
        std::mem::forget(lg);
        return Ok(res);
    }
    let deadline = Instant::now() + FD_SETTLE;
    loop {
        let fds = count_fds();
        if fds <= fds_before {
            break;
        }
        if Instant::now() >= deadline {
            res.fd_leak = Some(format!("{} descriptors still open {FD_SETTLE:?} after the cell", fds - fds_before));
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Configuration, rounds, report
// ---------------------------------------------------------------------------------------------

struct Config {
    rounds: usize,
    secs: Duration,
    warmup: Duration,
    conns: Vec<usize>,
    servers: Option<Vec<String>>,
}

fn parse_args() -> Result<Config, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick") || !bench_mode;
    let mut cfg = if quick {
        Config {
            rounds: 1,
            secs: Duration::from_millis(300),
            warmup: Duration::from_millis(50),
            conns: vec![64, 512],
            servers: None,
        }
    } else {
        Config {
            rounds: 5,
            secs: Duration::from_secs(2),
            warmup: Duration::from_millis(300),
            conns: vec![64, 512],
            servers: None,
        }
    };
    let secs = |s: &str| -> Result<Duration, String> {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("bad duration {s:?}"))
    };
    let mut warmup_given = false;
    if let Ok(v) = std::env::var("ECHO_ROUNDS") {
        cfg.rounds = v.parse().map_err(|_| format!("bad ECHO_ROUNDS {v:?}"))?;
    }
    if let Ok(v) = std::env::var("ECHO_SECS") {
        cfg.secs = secs(&v)?;
    }
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--bench" | "--quick" => {}
            "--rounds" => cfg.rounds = value()?.parse().map_err(|_| "bad --rounds".to_string())?,
            "--secs" => cfg.secs = secs(&value()?)?,
            "--warmup" => {
                cfg.warmup = secs(&value()?)?;
                warmup_given = true;
            }
            "--conns" => {
                cfg.conns = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<usize>().ok().filter(|&n| n > 0))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("bad --conns")?;
            }
            "--servers" => cfg.servers = Some(value()?.split(',').map(|s| s.trim().to_string()).collect()),
            other => eprintln!("echo bench: ignoring argument {other:?}"),
        }
    }
    if !warmup_given {
        cfg.warmup = cfg.warmup.min(cfg.secs / 4);
    }
    if cfg.rounds == 0 || cfg.conns.is_empty() {
        return Err("nothing to run (0 rounds or no scenario)".into());
    }
    Ok(cfg)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Per (round, scenario, server): (requests/s, p99 µs), or `None` if the cell failed.
type Table = Vec<Vec<Vec<Option<(f64, f64)>>>>;

fn main() {
    if let Err(e) = real_main() {
        eprintln!("echo bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let cfg = parse_args()?;
    let kinds: Vec<&ServerKind> =
        SERVERS.iter().filter(|k| cfg.servers.as_ref().is_none_or(|names| names.iter().any(|n| n == k.name))).collect();
    if kinds.is_empty() {
        return Err("no server selected".into());
    }
    println!(
        "echo bench: {} round(s), {:?} measured + {:?} warm-up per cell, {MSG}-byte ping-pong, scenarios {:?} connections, available_parallelism={}",
        cfg.rounds,
        cfg.secs,
        cfg.warmup,
        cfg.conns,
        cpus()
    );
    let mut servers = Vec::new();
    for k in &kinds {
        let s = (k.start)()?;
        println!("  {:<10} {} on {}", k.name, s.describe(), s.addr());
        servers.push(s);
    }
    let fds_before = count_fds();

    let ns = kinds.len();
    let mut table: Table = vec![vec![vec![None; ns]; cfg.conns.len()]; cfg.rounds];
    let mut problems: Vec<String> = Vec::new();
    for (round, row) in table.iter_mut().enumerate() {
        println!("\nround {}/{}", round + 1, cfg.rounds);
        for (si, &conns) in cfg.conns.iter().enumerate() {
            for k in 0..ns {
                let s = (k + round) % ns;
                let name = kinds[s].name;
                let cell = run_cell(servers[s].addr(), conns, &cfg, fds_before);
                match cell {
                    Ok(r) => {
                        println!(
                            "  {conns:>4} conns  {name:<10} {:>10.0} req/s   p50 {:>8.1} us   p99 {:>8.1} us   p99.9 {:>8.1} us   max {:>9.1} us{}",
                            r.rps(),
                            r.p_us(0.50),
                            r.p_us(0.99),
                            r.p_us(0.999),
                            r.hist.max() as f64 / 1000.0,
                            if r.errors > 0 { format!("   ERRORS {}", r.errors) } else { String::new() },
                        );
                        if let Some(e) = &r.first_error {
                            let p =
                                format!("round {} {conns} conns {name}: {} error(s), first: {e}", round + 1, r.errors);
                            println!("    !! {p}");
                            problems.push(p);
                        }
                        if let Some(l) = &r.fd_leak {
                            let p = format!("round {} {conns} conns {name}: {l}", round + 1);
                            println!("    !! {p}");
                            problems.push(p);
                        }
                        if r.requests > 0 && !r.stalled {
                            row[si][s] = Some((r.rps(), r.p_us(0.99)));
                        }
                    }
                    Err(e) => {
                        let p = format!("round {} {conns} conns {name}: {e}", round + 1);
                        println!("    !! {p}");
                        problems.push(p);
                    }
                }
            }
            for (subj, base, thr, p99) in round_ratios(&kinds, &row[si]) {
                println!("        {subj}/{base}: throughput x{thr:.3}, p99 x{p99:.3}");
            }
        }
    }

    println!("\nsummary (medians over {} round(s))", cfg.rounds);
    for (si, &conns) in cfg.conns.iter().enumerate() {
        for (s, k) in kinds.iter().enumerate() {
            let mut rps: Vec<f64> = table.iter().filter_map(|r| r[si][s].map(|c| c.0)).collect();
            let mut p99: Vec<f64> = table.iter().filter_map(|r| r[si][s].map(|c| c.1)).collect();
            let (lo, hi) = (rps.iter().copied().fold(f64::INFINITY, f64::min), rps.iter().copied().fold(0.0, f64::max));
            println!(
                "  {conns:>4} conns  {:<10} {:>10.0} req/s  (min {:.0}, max {:.0})   p99 {:>8.1} us   [{} good round(s)]",
                k.name,
                median(&mut rps),
                lo,
                hi,
                median(&mut p99),
                rps.len()
            );
        }
        let mut per_pair: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
        for round in &table {
            for (subj, base, thr, p99) in round_ratios(&kinds, &round[si]) {
                let key = format!("{subj}/{base}");
                match per_pair.iter_mut().find(|p| p.0 == key) {
                    Some(p) => {
                        p.1.push(thr);
                        p.2.push(p99);
                    }
                    None => per_pair.push((key, vec![thr], vec![p99])),
                }
            }
        }
        for (key, mut thr, mut p99) in per_pair {
            let (lo, hi) = (thr.iter().copied().fold(f64::INFINITY, f64::min), thr.iter().copied().fold(0.0, f64::max));
            println!(
                "  {conns:>4} conns  {key:<18} throughput ratio x{:.3} (min {lo:.3}, max {hi:.3})   p99 ratio x{:.3}   [{} round(s)]",
                median(&mut thr),
                median(&mut p99),
                thr.len()
            );
        }
    }

    for (s, k) in servers.into_iter().zip(&kinds) {
        if let Err(e) = s.stop() {
            let p = format!("stopping {}: {e}", k.name);
            println!("!! {p}");
            problems.push(p);
        }
    }
    if problems.is_empty() {
        println!("\nno errors, no stalls, no descriptor left open");
        Ok(())
    } else {
        println!("\n{} problem(s):", problems.len());
        for p in &problems {
            println!("  {p}");
        }
        Err(format!("{} problem(s) observed", problems.len()))
    }
}

/// For one round and scenario: (subject, baseline, throughput ratio, p99 ratio) for every
/// subject/baseline pair that both have a result, then every other baseline against the first
/// one (`raw_uring/tokio`, `monoio/tokio`: how far above tokio the state of the art gets on this
/// machine, which is what a target relative to tokio must be read against).
fn round_ratios(kinds: &[&ServerKind], cells: &[Option<(f64, f64)>]) -> Vec<(&'static str, &'static str, f64, f64)> {
    let mut out = Vec::new();
    let baselines: Vec<usize> = (0..kinds.len()).filter(|&j| kinds[j].role == Role::Baseline).collect();
    for (i, subj) in kinds.iter().enumerate().filter(|(_, k)| k.role == Role::Subject) {
        for &j in &baselines {
            if let (Some(a), Some(b)) = (cells[i], cells[j]) {
                out.push((subj.name, kinds[j].name, a.0 / b.0, a.1 / b.1));
            }
        }
    }
    if let Some((&first, others)) = baselines.split_first() {
        for &j in others {
            if let (Some(a), Some(b)) = (cells[j], cells[first]) {
                out.push((kinds[j].name, kinds[first].name, a.0 / b.0, a.1 / b.1));
            }
        }
    }
    out
}

#[allow(dead_code)]
fn _assert_read_trait_used(mut s: UnixStream) {
    let _ = s.read(&mut [0u8; 1]);
}
