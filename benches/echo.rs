//! Echo benchmark: the lecture's IOCP echo server on an `overlapped` completion port and its
//! event-object and completion-routine servers, each on io_uring and on epoll, against a tokio
//! echo server, a monoio echo server (a thread-per-core io_uring runtime: the state of the art
//! for completion I/O in Rust), a raw io_uring echo server and a raw epoll echo server (the
//! ceilings of completion and of readiness I/O: no library at all), all driven by one
//! in-process load generator.
//!
//! How to run it (the intended way: servers and load generator pinned to the same core, so
//! `available_parallelism` is 1, the port's concurrency is 1 and tokio has 1 worker):
//!
//! ```text
//! taskset -c 0 cargo bench --bench echo
//! taskset -c 0 cargo bench --bench echo -- --rounds 7 --secs 2
//! taskset -c 0 cargo bench --bench echo -- --conns 1,64,512,10000 --size 4096
//! cargo bench --bench echo -- --quick          # smoke test: 1 round of 0.3 s per cell
//! ```
//!
//! Options (after `--`):
//!
//! - `--rounds N`: rounds (default 5, env `ECHO_ROUNDS`);
//! - `--secs S`: measured seconds per cell (default 2, env `ECHO_SECS`);
//! - `--warmup S`: warm-up seconds per cell (default 0.3, at most a quarter of `--secs`);
//! - `--conns 1,64,512,10000`: the scenarios, connections per cell (default 64,512);
//! - `--size BYTES`: bytes per request and per echo, 1 to 65536 (default 64; `--size 4096`
//!   for 4 KiB messages, which the servers' 4 KiB buffers may receive and echo in pieces);
//! - `--servers port,event_epoll,raw_epoll`: a subset of [`SERVERS`];
//! - `--isolate`: every server in its own process (see below), for like-for-like comparisons
//!   with the servers that need one;
//! - `--quick`: 1 round of 0.3 s per cell. Without `--bench` on the command line (that is, not
//!   started by `cargo bench`, e.g. by `cargo test --benches`) it runs the quick mode.
//!
//! What it does: it starts every server in [`SERVERS`] on 127.0.0.1 port 0, then for each round
//! and each scenario (N connections) it measures each server in turn (the order rotates every
//! round): N connections ping-pong messages of `--size` bytes (send them, read as many back,
//! verify every byte, repeat), all driven by a single thread with its own io_uring, for a short
//! warm-up and then a fixed measured time. The connections are opened in batches of
//! [`CONNECT_BATCH`], each connection answering one verified echo before the next batch
//! connects, so that no server's accept queue (backlog 1024; 128 for raw_epoll, std's default)
//! overflows; a refused or timed-out connect is retried, and the whole set-up is bounded in
//! time ([`SETUP_LIMIT`]). Every load loop is bounded by time and by a request count, and the
//! requests in flight at the end must be answered within [`DRAIN`]. A byte that differs, a
//! connection the server drops, a stall (no completion for [`STALL`]) or a set-up that fails is
//! a failed cell: reported, and left out of the medians and ratios.
//!
//! It reports per cell the requests per second answered in the measured time and the latency
//! percentiles (p50, p99, p99.9, max; hdrhistogram) of every request answered after the warm-up,
//! the requests still in flight at the end included (a server that starves some connections
//! shows it in the tail). Per scenario it prints a table of medians over rounds, then the
//! median over rounds of the per-round ratios of every server (row) to every baseline (column:
//! tokio, raw_uring, raw_epoll, monoio), for throughput and for p99 / p99.9: absolute numbers
//! are noisy on a shared machine, the ratios are what matter. It also checks that the descriptor counts (its
//! own, and those of a server in its own process) return to their starting values after each
//! cell (a server that does not close its side of a finished connection shows up there).
//!
//! Servers in their own process: the event and routine servers' sockets get their backend
//! when the accept thread creates them, from that thread's default, which falls back to the
//! process's (`OVERLAPPED_BACKEND`, read once); `with_default_backend` around their start
//! reaches neither thread. So `event_epoll` and `routine_epoll` run in a child process (this
//! executable, started with `--serve-child NAME` and `OVERLAPPED_BACKEND=epoll`), and report
//! the io_uring and epoll instances they hold. `--isolate` runs every server that way; it is
//! also chosen by itself when the scenarios need more descriptors in one process (client and
//! server ends: 2 per connection) than `RLIMIT_NOFILE` allows. The benchmark raises its soft
//! `RLIMIT_NOFILE` to the hard limit (children inherit it) and stops with a message if even
//! the load generator's own descriptors (1 per connection) do not fit.
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

use std::io::{self, BufRead as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{IoUring, opcode, squeue, types};

/// Default size of one request (and of its echo).
const DEFAULT_MSG: usize = 64;
/// Largest `--size`: well below what a loopback connection buffers each way, so that a client
/// that sends a whole request before it reads the echo cannot deadlock with the server.
const MAX_MSG: usize = 65536;
/// Receive buffer size of the tokio and raw io_uring servers (the port server's is also 4 KiB).
const SERVER_BUF: usize = 4096;
/// A cell ends early if it completes this many requests (warm-up included).
const MAX_REQUESTS_PER_CELL: u64 = 200_000_000;
/// No completion at all for this long during a cell: the server is reported as stalled.
const STALL: Duration = Duration::from_secs(5);
/// The requests in flight when the measured time ends must be answered within this.
const DRAIN: Duration = Duration::from_secs(5);
/// How long the load generator's ring waits before it looks at the clock again.
const TICK: Duration = Duration::from_millis(50);
/// How long a cell waits for the server to close its side of the cell's connections.
const FD_SETTLE: Duration = Duration::from_secs(3);
/// Connections opened before they each answer one echo. Below every server's listen backlog
/// (1024; std's 128 for raw_epoll), so no accept queue overflows (an overflowing queue drops
/// the SYN, which the client resends only after a second).
const CONNECT_BATCH: usize = 128;
/// One connect attempt gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per connection (refused, timed out, no local port free: retried after a pause).
const CONNECT_TRIES: u32 = 4;
/// Opening a cell's connections, with their first echoes, must take at most this long.
const SETUP_LIMIT: Duration = Duration::from_secs(30);
/// Descriptors a process needs besides one per connection end (rings, epoll instances,
/// eventfds, listeners, the standard streams), per server it hosts and for itself.
const FDS_PER_SERVER: u64 = 32;
const FDS_BASE: u64 = 64;
/// The hidden option that makes this executable serve one server for a parent benchmark.
const CHILD_ARG: &str = "--serve-child";
/// How long a parent waits for a child server to start, or to stop.
const CHILD_WAIT: Duration = Duration::from_secs(10);

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
    /// For a server whose backend can only be chosen per process: the `OVERLAPPED_BACKEND` of
    /// the child process it always runs in.
    process_backend: Option<&'static str>,
}

/// The servers, in their round-0 order. Ratios are reported for every server against every
/// baseline. To add a server, add an entry.
const SERVERS: &[ServerKind] = &[
    ServerKind { name: "port", role: Role::Subject, start: start_port, process_backend: None },
    ServerKind { name: "port_epoll", role: Role::Subject, start: start_port_epoll, process_backend: None },
    ServerKind { name: "event", role: Role::Subject, start: start_event, process_backend: None },
    ServerKind { name: "event_epoll", role: Role::Subject, start: start_event, process_backend: Some("epoll") },
    ServerKind { name: "routine", role: Role::Subject, start: start_routine, process_backend: None },
    ServerKind { name: "routine_epoll", role: Role::Subject, start: start_routine, process_backend: Some("epoll") },
    ServerKind { name: "tokio", role: Role::Baseline, start: start_tokio, process_backend: None },
    ServerKind { name: "raw_uring", role: Role::Baseline, start: start_raw_uring, process_backend: None },
    ServerKind { name: "raw_epoll", role: Role::Baseline, start: start_raw_epoll, process_backend: None },
    ServerKind { name: "monoio", role: Role::Baseline, start: start_monoio, process_backend: None },
];

/// A running echo server.
trait EchoImpl {
    fn addr(&self) -> SocketAddr;
    /// One line about how it runs (backend, threads).
    fn describe(&self) -> String;
    /// The server's process, if it is not this one.
    fn pid(&self) -> Option<u32> {
        None
    }
    fn stop(self: Box<Self>) -> Result<(), String>;
}

/// Starts `kind` in this process, or in a child process if it needs one or `isolate`.
fn launch(kind: &ServerKind, isolate: bool) -> Result<Box<dyn EchoImpl>, String> {
    if isolate || kind.process_backend.is_some() { Ok(Box::new(ChildServer::start(kind)?)) } else { (kind.start)() }
}

// --- a server in its own process ----------------------------------------------------------------

/// A server run by a child process: this executable with [`CHILD_ARG`] and the server's name.
/// The child starts the server, writes `ready\t<addr>\t<description>` on its standard output,
/// serves until its standard input has a line or ends, stops the server and writes
/// `stopped\tok` (or `stopped\t<error>`).
struct ChildServer {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
    description: String,
}

impl ChildServer {
    fn start(kind: &ServerKind) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("{}: this executable: {e}", kind.name))?;
        let mut cmd = Command::new(exe);
        cmd.arg(CHILD_ARG).arg(kind.name).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        if let Some(backend) = kind.process_backend {
            cmd.env("OVERLAPPED_BACKEND", backend);
        }
        let mut child = cmd.spawn().map_err(|e| format!("{}: starting its process: {e}", kind.name))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name(format!("{}-stdout", kind.name))
            .spawn(move || {
                for line in io::BufReader::new(stdout).lines() {
                    let Ok(line) = line else { return };
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        let mut server = Self { name: kind.name, child, stdin, lines, addr: loopback(), description: String::new() };
        let ready = server.expect_line("ready");
        let parsed = ready.as_ref().ok().and_then(|l| l.split_once('\t')).and_then(|(addr, description)| {
            addr.parse::<SocketAddr>().ok().map(|addr| (addr, description.to_string()))
        });
        match parsed {
            Some((addr, description)) => {
                server.addr = addr;
                server.description = description;
                Ok(server)
            }
            None => {
                let why = match ready {
                    Ok(l) => format!("unexpected answer {l:?}"),
                    Err(e) => e,
                };
                server.kill();
                Err(format!("{}: its process did not start the server: {why}", kind.name))
            }
        }
    }

    /// The rest of the next line that starts with `what\t`, within [`CHILD_WAIT`]. Other lines
    /// (a server that prints) are passed on; an `error\t` line ends the wait.
    fn expect_line(&self, what: &str) -> Result<String, String> {
        let deadline = Instant::now() + CHILD_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(l) => l,
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(format!("no {what:?} within {CHILD_WAIT:?}")),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the process ended".into()),
            };
            if let Some(rest) = line.strip_prefix(what).and_then(|l| l.strip_prefix('\t')) {
                return Ok(rest.to_string());
            }
            if let Some(e) = line.strip_prefix("error\t") {
                return Err(e.to_string());
            }
            println!("    [{}] {line}", self.name);
        }
    }

    /// Kills the child (it is ours: `Child::kill` signals its pid) and reaps it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl EchoImpl for ChildServer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn describe(&self) -> String {
        let pid = self.child.id();
        let (rings, epolls) = fd_kinds(pid);
        let env = std::env::var("OVERLAPPED_BACKEND").ok().filter(|v| !v.is_empty());
        let env =
            SERVERS.iter().find(|k| k.name == self.name).and_then(|k| k.process_backend.map(str::to_string)).or(env);
        format!(
            "{}  [own process {pid}{}: {rings} io_uring, {epolls} epoll instance(s)]",
            self.description,
            env.map_or(String::new(), |b| format!(", OVERLAPPED_BACKEND={b}"))
        )
    }
    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
    fn stop(mut self: Box<Self>) -> Result<(), String> {
        // A line, then the end of the input: either stops the child.
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let answer = self.expect_line("stopped");
        // A child that did not answer gets a moment to exit before it is killed.
        let deadline = Instant::now() + if answer.is_ok() { CHILD_WAIT } else { Duration::from_secs(1) };
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    self.kill();
                    break Err("its process did not exit; killed".to_string());
                }
                Err(e) => break Err(e.to_string()),
            }
        };
        match (answer, status) {
            (Ok(a), Ok(s)) if a == "ok" && s.success() => Ok(()),
            (Ok(a), Ok(s)) if a == "ok" => Err(format!("its process exited with {s}")),
            (Ok(a), _) => Err(a),
            (Err(e), Ok(s)) => Err(format!("{e} (exit {s})")),
            (Err(e), Err(f)) => Err(format!("{e}; {f}")),
        }
    }
}

/// The child side: serves `name` until told to stop (see [`ChildServer`]).
fn serve_child(name: &str) -> Result<(), String> {
    let kind = SERVERS.iter().find(|k| k.name == name).ok_or_else(|| format!("no server {name:?}"))?;
    let env = std::env::var("OVERLAPPED_BACKEND").unwrap_or_default();
    if let Some(b) = kind.process_backend.filter(|b| *b != env) {
        let e = format!("{name} needs OVERLAPPED_BACKEND={b} (has {env:?})");
        println!("error\t{e}");
        return Err(e);
    }
    let server = match (kind.start)() {
        Ok(s) => s,
        Err(e) => {
            println!("error\t{e}");
            return Err(e);
        }
    };
    println!("ready\t{}\t{}", server.addr(), server.describe());
    let mut line = String::new();
    let _ = io::stdin().read_line(&mut line);
    let stopped = server.stop();
    match &stopped {
        Ok(()) => println!("stopped\tok"),
        Err(e) => println!("stopped\t{e}"),
    }
    stopped
}

/// How many io_uring instances and epoll instances process `pid` holds.
fn fd_kinds(pid: u32) -> (usize, usize) {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return (0, 0) };
    dir.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).fold((0, 0), |(u, p), link| match link.to_str() {
        Some("anon_inode:[io_uring]") => (u + 1, p),
        Some("anon_inode:[eventpoll]") => (u, p + 1),
        _ => (u, p),
    })
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

/// Where a client is. A client has an operation in flight exactly while it is `Sending` or
/// `Receiving`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    Sending,
    Receiving,
    Idle,
    Dead,
}

struct Client {
    stream: TcpStream,
    /// The current request and its echo; boxed, so a client can move while its operation is
    /// in flight. Leaked, not freed, if the generator gives up with the operation in flight.
    tx: Box<[u8]>,
    rx: Box<[u8]>,
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
    /// Time taken to open the connections (and answer their first echoes).
    setup: Duration,
}

impl CellResult {
    fn new() -> Self {
        Self {
            requests: 0,
            elapsed: Duration::ZERO,
            hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
            errors: 0,
            first_error: None,
            stalled: false,
            fd_leak: None,
            setup: Duration::ZERO,
        }
    }
    fn fail(&mut self, msg: String) {
        self.errors += 1;
        self.first_error.get_or_insert(msg);
    }
    /// A cell with an error, a stall or nothing measured: left out of medians and ratios.
    fn failed(&self) -> bool {
        self.errors > 0 || self.stalled || self.requests == 0
    }
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

/// A message that differs per connection and per request in every 8-byte word, and along the
/// message (`pattern`), so crossed, stale or shifted echoes show.
fn fill(buf: &mut [u8], pattern: &[u8], conn: usize, seq: u64) {
    let mix = splitmix(((conn as u64) << 40) ^ seq).to_le_bytes();
    for (dst, src) in buf.chunks_mut(8).zip(pattern.chunks(8)) {
        for ((d, s), m) in dst.iter_mut().zip(src).zip(mix) {
            *d = s ^ m;
        }
    }
}

/// What a completion did to its client.
enum Step {
    /// The client's next operation (the rest of the request, or of the echo) is in flight.
    Pending,
    /// The echo is complete and equals the request; the client is idle.
    Answered,
    /// The client is dead (or the completion was unexpected): why.
    Failed(String),
}

struct LoadGen {
    // The ring drops first; a generator that gives up with operations in flight leaks their
    // buffers (see `close`).
    ring: IoUring,
    clients: Vec<Client>,
    in_flight: usize,
    size: usize,
    pattern: Box<[u8]>,
}

impl LoadGen {
    fn new(n: usize, size: usize) -> Result<Self, String> {
        let entries = n.next_power_of_two().max(8) as u32;
        let ring = IoUring::builder()
            .setup_cqsize(2 * entries)
            .build(entries)
            .map_err(|e| format!("load generator ring ({entries} entries): {e}"))?;
        let mut pattern = vec![0u8; size].into_boxed_slice();
        let mut x = 0x5EED;
        for chunk in pattern.chunks_mut(8) {
            x = splitmix(x);
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        Ok(Self { ring, clients: Vec::with_capacity(n), in_flight: 0, size, pattern })
    }

    /// Opens `n` connections to `addr` in batches of [`CONNECT_BATCH`]; every connection of a
    /// batch answers one verified echo before the next batch connects, so a server's accept
    /// queue never holds more than a batch. Bounded by [`SETUP_LIMIT`] and [`STALL`].
    fn open(&mut self, addr: SocketAddr, n: usize) -> Result<(), String> {
        let deadline = Instant::now() + SETUP_LIMIT;
        while self.clients.len() < n {
            let first = self.clients.len();
            let batch = CONNECT_BATCH.min(n - first);
            for i in first..first + batch {
                let stream = connect_retrying(addr, i, deadline)?;
                self.clients.push(Client {
                    stream,
                    tx: vec![0; self.size].into_boxed_slice(),
                    rx: vec![0; self.size].into_boxed_slice(),
                    done: 0,
                    state: ClientState::Idle,
                    seq: 0,
                    started: Instant::now(),
                });
            }
            self.first_echoes(first, batch, deadline).map_err(|e| {
                format!("connection set-up ({first} of {n} connections open and answering before this batch): {e}")
            })?;
        }
        Ok(())
    }

    /// One request on each of `clients[first..first + count]`, all answered and verified.
    fn first_echoes(&mut self, first: usize, count: usize, deadline: Instant) -> Result<(), String> {
        let start = Instant::now();
        for i in first..first + count {
            self.start_request(i, start).map_err(|e| format!("submit: {e}"))?;
        }
        let (mut answered, mut last_progress) = (0, start);
        let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(count);
        while answered < count {
            submit_wait(&self.ring, Some(TICK)).map_err(|e| format!("load generator submit: {e}"))?;
            let now = Instant::now();
            cqes.clear();
            cqes.extend(self.ring.completion().map(|c| (c.user_data(), c.result())));
            if !cqes.is_empty() {
                last_progress = now;
            }
            for &(ud, r) in &cqes {
                match self.step(ud as usize, r).map_err(|e| format!("load generator submit: {e}"))? {
                    Step::Pending => {}
                    Step::Answered => answered += 1,
                    Step::Failed(e) => return Err(e),
                }
            }
            let quiet = now.saturating_duration_since(last_progress);
            if answered < count && (quiet > STALL || now > deadline) {
                let why = if quiet > STALL { format!("no completion for {STALL:?}") } else { "too slow".into() };
                return Err(format!(
                    "stalled: {answered} of a batch of {count} new connections answered their first echo; {why} \
                     (set-up limit {SETUP_LIMIT:?})"
                ));
            }
        }
        Ok(())
    }

    fn post_send(&mut self, i: usize) -> io::Result<()> {
        let c = &mut self.clients[i];
        c.state = ClientState::Sending;
        let rest = &c.tx[c.done..];
        let e = opcode::Send::new(types::Fd(c.stream.as_raw_fd()), rest.as_ptr(), rest.len() as u32)
            .build()
            .user_data(i as u64);
        // SAFETY: `tx` is boxed, and neither freed nor otherwise used while the operation is in
        // flight (a generator that gives up leaks it, see `close`); one operation per client.
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
        fill(&mut c.tx, &self.pattern, i, c.seq);
        c.done = 0;
        c.started = now;
        self.in_flight += 1;
        self.post_send(i)
    }

    /// Handles the completion `r` of client `i`'s operation. An error is a failed submission
    /// (the ring is unusable).
    fn step(&mut self, i: usize, r: i32) -> io::Result<Step> {
        let size = self.size;
        let Some(c) = self.clients.get_mut(i) else { return Ok(Step::Failed(format!("completion for no client {i}"))) };
        match c.state {
            ClientState::Sending if r > 0 => {
                c.done += r as usize;
                if c.done < size {
                    self.post_send(i)?;
                } else {
                    c.done = 0;
                    self.post_recv(i)?;
                }
                Ok(Step::Pending)
            }
            ClientState::Receiving if r > 0 => {
                c.done += r as usize;
                if c.done < size {
                    self.post_recv(i)?;
                    return Ok(Step::Pending);
                }
                self.in_flight -= 1;
                if c.rx == c.tx {
                    c.state = ClientState::Idle;
                    return Ok(Step::Answered);
                }
                c.state = ClientState::Dead;
                let _ = c.stream.shutdown(Shutdown::Both);
                let at = c.rx.iter().zip(c.tx.iter()).position(|(a, b)| a != b).unwrap_or(0);
                Ok(Step::Failed(format!(
                    "conn {i} request {}: echo differs from the request at byte {at} of {size}",
                    c.seq
                )))
            }
            ClientState::Sending | ClientState::Receiving => {
                let what = if c.state == ClientState::Sending { "send" } else { "recv" };
                c.state = ClientState::Dead;
                self.in_flight -= 1;
                let why = if r == 0 {
                    "connection closed by the server".to_string()
                } else {
                    io::Error::from_raw_os_error(-r).to_string()
                };
                Ok(Step::Failed(format!("conn {i} request {}: {what}: {why}", c.seq)))
            }
            ClientState::Idle | ClientState::Dead => Ok(Step::Failed(format!("conn {i}: unexpected completion {r}"))),
        }
    }

    /// Runs the ping-pong for `warmup` (not recorded) then `secs` (recorded), then lets the
    /// requests in flight finish (within [`DRAIN`]; their latencies are recorded too). Ends after `max_requests` answers at the
    /// latest, or at the first stall.
    fn run(&mut self, res: &mut CellResult, warmup: Duration, secs: Duration, max_requests: u64) {
        let start = Instant::now();
        let mark = start + warmup;
        let end = mark + secs;
        for i in 0..self.clients.len() {
            if let Err(e) = self.start_request(i, start) {
                res.fail(format!("submit: {e}"));
                return;
            }
        }
        let mut total: u64 = 0;
        let mut stop_at: Option<Instant> = None;
        let mut last_progress = start;
        let mut cqes: Vec<(u64, i32)> = Vec::with_capacity(self.clients.len());
        loop {
            if let Err(e) = submit_wait(&self.ring, Some(TICK)) {
                res.fail(format!("load generator submit: {e}"));
                return;
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
                let step = match self.step(i, r) {
                    Ok(s) => s,
                    Err(e) => {
                        res.fail(format!("load generator submit: {e}"));
                        return;
                    }
                };
                match step {
                    Step::Pending => {}
                    Step::Failed(e) => res.fail(e),
                    Step::Answered => {
                        total += 1;
                        // Latency: of every answer after the warm-up, also of those that come
                        // after the measured time (a starved connection shows in the tail).
                        if now >= mark {
                            let started = self.clients[i].started;
                            res.hist.saturating_record(now.saturating_duration_since(started).as_nanos() as u64);
                        }
                        // Throughput: answers within the measured time. After it, an answered
                        // client stays idle.
                        if stop_at.is_some() {
                            continue;
                        }
                        if now >= mark {
                            res.requests += 1;
                        }
                        if let Err(e) = self.start_request(i, now) {
                            res.fail(format!("load generator submit: {e}"));
                            return;
                        }
                    }
                }
            }
            if let Some(t) = stop_at {
                if self.in_flight == 0 {
                    return;
                }
                if now.saturating_duration_since(t) > DRAIN {
                    res.stalled = true;
                    res.fail(format!(
                        "stalled: {} requests still unanswered {DRAIN:?} after the measured time",
                        self.in_flight
                    ));
                    return;
                }
            }
            if now.saturating_duration_since(last_progress) > STALL {
                res.stalled = true;
                if stop_at.is_none() {
                    res.elapsed = now.saturating_duration_since(mark);
                }
                let (sending, receiving) = self.clients.iter().fold((0, 0), |(s, r), c| match c.state {
                    ClientState::Sending => (s + 1, r),
                    ClientState::Receiving => (s, r + 1),
                    _ => (s, r),
                });
                res.fail(format!(
                    "stalled: no completion for {STALL:?}; {} requests in flight ({sending} sending, {receiving} awaiting the echo)",
                    self.in_flight
                ));
                return;
            }
        }
    }

    /// Closes every connection. Operations still in flight (after a failure) are ended by
    /// shutting their sockets down and reaped for up to a second; the buffers of any that still
    /// do not complete are leaked, never freed, as the kernel may yet write them.
    fn close(mut self) {
        let busy = |c: &Client| matches!(c.state, ClientState::Sending | ClientState::Receiving);
        let mut pending = self.clients.iter().filter(|c| busy(c)).count();
        if pending > 0 {
            for c in self.clients.iter().filter(|c| busy(c)) {
                let _ = c.stream.shutdown(Shutdown::Both);
            }
            let deadline = Instant::now() + Duration::from_secs(1);
            while pending > 0 && Instant::now() < deadline {
                if submit_wait(&self.ring, Some(TICK)).is_err() {
                    break;
                }
                let done: Vec<u64> = self.ring.completion().map(|c| c.user_data()).collect();
                for ud in done {
                    if let Some(c) = self.clients.get_mut(ud as usize).filter(|c| busy(c)) {
                        c.state = ClientState::Dead;
                        pending -= 1;
                    }
                }
            }
            for c in self.clients.iter_mut().filter(|c| busy(c)) {
                std::mem::forget(std::mem::take(&mut c.tx));
                std::mem::forget(std::mem::take(&mut c.rx));
            }
        }
        // Drops the ring, then closes the sockets and frees the remaining buffers.
    }
}

/// Connects to `addr` (connection `i` of a cell), retrying what a busy listener or a short
/// supply of local ports may refuse, until `deadline`.
fn connect_retrying(addr: SocketAddr, i: usize, deadline: Instant) -> Result<TcpStream, String> {
    let mut attempt = 1;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("connect {addr} (connection {i}): set-up took longer than {SETUP_LIMIT:?}"));
        }
        match TcpStream::connect_timeout(&addr, left.min(CONNECT_TIMEOUT)) {
            Ok(s) => {
                s.set_nodelay(true).map_err(|e| format!("connection {i}: TCP_NODELAY: {e}"))?;
                return Ok(s);
            }
            Err(e)
                if attempt < CONNECT_TRIES
                    && matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionReset
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::Interrupted
                            | io::ErrorKind::AddrNotAvailable
                    ) =>
            {
                thread::sleep(Duration::from_millis(10 << attempt));
                attempt += 1;
            }
            Err(e) => {
                return Err(format!("connect {addr} (connection {i}, attempt {attempt} of {CONNECT_TRIES}): {e}"));
            }
        }
    }
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn count_fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A started server and the descriptor count of its own process, if it has one.
struct Running {
    kind: &'static ServerKind,
    server: Box<dyn EchoImpl>,
    fds_before: Option<usize>,
}

/// One cell: connect `conns` clients to the server, warm up, measure, disconnect, and check
/// that the descriptor counts return to `fds_before` (this process) and to the server's own.
fn run_cell(server: &Running, conns: usize, cfg: &Config, fds_before: usize) -> CellResult {
    let mut res = CellResult::new();
    let mut lg = match LoadGen::new(conns, cfg.size) {
        Ok(lg) => lg,
        Err(e) => {
            res.fail(e);
            return res;
        }
    };
    let setup = Instant::now();
    match lg.open(server.server.addr(), conns) {
        Ok(()) => {
            res.setup = setup.elapsed();
            lg.run(&mut res, cfg.warmup, cfg.secs, MAX_REQUESTS_PER_CELL);
        }
        Err(e) => {
            res.setup = setup.elapsed();
            res.stalled = true;
            res.fail(e);
        }
    }
    lg.close();
    let pid = server.server.pid();
    let deadline = Instant::now() + FD_SETTLE;
    loop {
        let mine = count_fds().saturating_sub(fds_before);
        let theirs = match (pid, server.fds_before) {
            (Some(p), Some(before)) => count_fds_of(p).saturating_sub(before),
            _ => 0,
        };
        if mine == 0 && theirs == 0 {
            break;
        }
        if Instant::now() >= deadline {
            let (what, n) = if pid.is_some() && theirs > 0 {
                ("in the server's process", theirs)
            } else {
                ("in this process", mine)
            };
            res.fd_leak = Some(format!("{n} descriptors still open {what} {FD_SETTLE:?} after the cell"));
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    res
}

// ---------------------------------------------------------------------------------------------
// Descriptor limit
// ---------------------------------------------------------------------------------------------

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (capped at `fs.nr_open`). Returns the
/// previous soft limit and the new one.
fn raise_nofile() -> Result<(u64, u64), String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `getrlimit` writes one `rlimit` through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit(RLIMIT_NOFILE): {}", io::Error::last_os_error()));
    }
    let old = lim.rlim_cur;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = lim.rlim_max.min(nr_open);
    if lim.rlim_cur < target {
        lim.rlim_cur = target;
        // SAFETY: `setrlimit` reads one `rlimit` through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(format!("setrlimit(RLIMIT_NOFILE, {target}): {}", io::Error::last_os_error()));
        }
    }
    Ok((old, lim.rlim_cur.max(old)))
}

// ---------------------------------------------------------------------------------------------
// Configuration, rounds, report
// ---------------------------------------------------------------------------------------------

struct Config {
    rounds: usize,
    secs: Duration,
    warmup: Duration,
    conns: Vec<usize>,
    size: usize,
    servers: Option<Vec<String>>,
    isolate: bool,
}

fn parse_args() -> Result<Config, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick") || !bench_mode;
    let mut cfg = Config {
        rounds: if quick { 1 } else { 5 },
        secs: if quick { Duration::from_millis(300) } else { Duration::from_secs(2) },
        warmup: if quick { Duration::from_millis(50) } else { Duration::from_millis(300) },
        conns: vec![64, 512],
        size: DEFAULT_MSG,
        servers: None,
        isolate: false,
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
            "--isolate" => cfg.isolate = true,
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
            "--size" => {
                cfg.size = value()?
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_MSG).contains(n))
                    .ok_or_else(|| format!("bad --size: bytes per message, 1 to {MAX_MSG}"))?;
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
    if let Some(names) = &cfg.servers {
        if let Some(bad) = names.iter().find(|n| !SERVERS.iter().any(|k| k.name == n.as_str())) {
            let known: Vec<&str> = SERVERS.iter().map(|k| k.name).collect();
            return Err(format!("no server {bad:?} (known: {})", known.join(",")));
        }
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

/// A latency in µs: one decimal below 10 ms, none above (so that seconds fit the columns).
fn us(v: f64) -> String {
    if v < 10_000.0 { format!("{v:.1}") } else { format!("{v:.0}") }
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// What one good cell measured (latencies in µs).
#[derive(Debug, Clone, Copy)]
struct Measured {
    rps: f64,
    p50: f64,
    p99: f64,
    p999: f64,
}

/// One cell of the table: its measurements if it succeeded, its error count, whether it ran.
#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    good: Option<Measured>,
    errors: u64,
    ran: bool,
}

/// The per-round ratios of one (server, baseline) pair in one scenario.
#[derive(Debug, Clone, Default)]
struct PairRatios {
    thr: Vec<f64>,
    p99: Vec<f64>,
    p999: Vec<f64>,
}

/// Per (round, scenario, server).
type Table = Vec<Vec<Vec<Cell>>>;

/// One ratio of a round and scenario: row server, column baseline, and the ratios of
/// throughput, p99 and p99.9 (row / column).
type Ratio = (usize, usize, f64, f64, f64);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(CHILD_ARG) {
        let name = args.get(2).map_or("", String::as_str);
        if let Err(e) = serve_child(name) {
            eprintln!("echo bench child {name}: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = real_main() {
        eprintln!("echo bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let cfg = parse_args()?;
    let kinds: Vec<&'static ServerKind> =
        SERVERS.iter().filter(|k| cfg.servers.as_ref().is_none_or(|names| names.iter().any(|n| n == k.name))).collect();
    if kinds.is_empty() {
        return Err("no server selected".into());
    }

    // Descriptors: 1 per connection for the load generator, 1 more for a server in this process.
    let (old_limit, limit) = raise_nofile()?;
    let max_conns = cfg.conns.iter().copied().max().unwrap_or(0) as u64;
    let base = count_fds() as u64 + FDS_BASE;
    let need_alone = base + max_conns + FDS_PER_SERVER;
    if need_alone > limit {
        return Err(format!(
            "{max_conns} connections need about {need_alone} descriptors in one process, but the hard RLIMIT_NOFILE \
             is {limit}: raise it (e.g. `ulimit -Hn {}` as root, or LimitNOFILE= / limits.conf) or use fewer connections",
            need_alone.next_power_of_two()
        ));
    }
    let in_process = if cfg.isolate { 0 } else { kinds.iter().filter(|k| k.process_backend.is_none()).count() as u64 };
    let need_shared = base + 2 * max_conns + FDS_PER_SERVER * in_process;
    let isolate = cfg.isolate || (in_process > 0 && need_shared > limit);

    println!(
        "echo bench: {} round(s), {:?} measured + {:?} warm-up per cell, {}-byte ping-pong, scenarios {:?} connections, \
         available_parallelism={}, RLIMIT_NOFILE {limit}{}",
        cfg.rounds,
        cfg.secs,
        cfg.warmup,
        cfg.size,
        cfg.conns,
        cpus(),
        if old_limit < limit { format!(" (raised from {old_limit})") } else { String::new() }
    );
    if isolate && !cfg.isolate {
        println!(
            "  note: {max_conns} connections with the servers in this process need about {need_shared} descriptors \
             (client and server ends) > RLIMIT_NOFILE {limit}: every server runs in its own process (--isolate)"
        );
    } else if !isolate && kinds.iter().any(|k| k.process_backend.is_some()) {
        println!(
            "  note: event_epoll and routine_epoll run in their own process, the others in this one; \
             --isolate runs every server in its own process"
        );
    }
    let mut servers: Vec<Running> = Vec::new();
    for &kind in &kinds {
        let server = match launch(kind, isolate) {
            Ok(s) => s,
            Err(e) => {
                for r in servers {
                    let _ = r.server.stop();
                }
                return Err(e);
            }
        };
        println!("  {:<13} {} on {}", kind.name, server.describe(), server.addr());
        servers.push(Running { kind, server, fds_before: None });
    }
    let fds_before = count_fds();
    for r in &mut servers {
        r.fds_before = r.server.pid().map(count_fds_of);
    }

    let ns = kinds.len();
    let mut table: Table = vec![vec![vec![Cell::default(); ns]; cfg.conns.len()]; cfg.rounds];
    let mut problems: Vec<String> = Vec::new();
    for (round, row) in table.iter_mut().enumerate() {
        println!("\nround {}/{}", round + 1, cfg.rounds);
        for (si, &conns) in cfg.conns.iter().enumerate() {
            for k in 0..ns {
                let s = (k + round) % ns;
                let name = kinds[s].name;
                let r = run_cell(&servers[s], conns, &cfg, fds_before);
                let setup = if r.setup >= Duration::from_millis(100) {
                    format!("   set-up {:.2} s", r.setup.as_secs_f64())
                } else {
                    String::new()
                };
                println!(
                    "  {conns:>5} conns  {name:<13} {:>9.0} req/s   p50 {:>8}   p99 {:>8}   p99.9 {:>8}   max {:>8} us{setup}{}",
                    r.rps(),
                    us(r.p_us(0.50)),
                    us(r.p_us(0.99)),
                    us(r.p_us(0.999)),
                    us(r.hist.max() as f64 / 1000.0),
                    if r.failed() { format!("   FAILED ({} error(s))", r.errors) } else { String::new() },
                );
                if let Some(e) = &r.first_error {
                    let p = format!("round {} {conns} conns {name}: {} error(s), first: {e}", round + 1, r.errors);
                    println!("    !! {p}");
                    problems.push(p);
                }
                if let Some(l) = &r.fd_leak {
                    let p = format!("round {} {conns} conns {name}: {l}", round + 1);
                    println!("    !! {p}");
                    problems.push(p);
                }
                let good = (!r.failed()).then(|| Measured {
                    rps: r.rps(),
                    p50: r.p_us(0.50),
                    p99: r.p_us(0.99),
                    p999: r.p_us(0.999),
                });
                row[si][s] = Cell { good, errors: r.errors.max(u64::from(r.failed())), ran: true };
            }
            let ratios = round_ratios(&kinds, &row[si]);
            for (i, kind) in kinds.iter().enumerate() {
                let line: Vec<String> = ratios
                    .iter()
                    .filter(|r| r.0 == i)
                    .map(|&(_, j, thr, _, _)| format!("{} {thr:.3}", kinds[j].name))
                    .collect();
                if !line.is_empty() {
                    println!("        {:<13} x  {}", kind.name, line.join("   "));
                }
            }
        }
    }

    println!("\nsummary: medians over {} round(s)", cfg.rounds);
    for (si, &conns) in cfg.conns.iter().enumerate() {
        summarize(&kinds, &table, si, conns, cfg.size);
    }

    for r in servers {
        if let Err(e) = r.server.stop() {
            let p = format!("stopping {}: {e}", r.kind.name);
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

/// The table of scenario `si`: each server's medians, then the ratio matrices (rows: every
/// server; columns: the baselines).
fn summarize(kinds: &[&ServerKind], table: &Table, si: usize, conns: usize, size: usize) {
    let rounds = table.len();
    println!("\n{conns} connections, {size}-byte messages");
    println!(
        "  {:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>6} {:>7}",
        "server", "req/s", "min", "max", "p50 us", "p99 us", "p99.9 us", "good", "errors"
    );
    for (s, k) in kinds.iter().enumerate() {
        let good: Vec<Measured> = table.iter().filter_map(|r| r[si][s].good).collect();
        let ran = table.iter().filter(|r| r[si][s].ran).count();
        let errors: u64 = table.iter().map(|r| r[si][s].errors).sum();
        let pick = |f: fn(&Measured) -> f64| median(&mut good.iter().map(f).collect::<Vec<_>>());
        let (lo, hi) = min_max(&good.iter().map(|m| m.rps).collect::<Vec<_>>());
        let good_of = format!("{}/{ran}", good.len());
        if good.is_empty() {
            println!(
                "  {:<13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {good_of:>6} {errors:>7}",
                k.name, "-", "-", "-", "-", "-", "-"
            );
        } else {
            println!(
                "  {:<13} {:>9.0} {lo:>9.0} {hi:>9.0} {:>9} {:>9} {:>9} {good_of:>6} {errors:>7}",
                k.name,
                pick(|m| m.rps),
                us(pick(|m| m.p50)),
                us(pick(|m| m.p99)),
                us(pick(|m| m.p999)),
            );
        }
    }

    let baselines: Vec<usize> = (0..kinds.len()).filter(|&j| kinds[j].role == Role::Baseline).collect();
    if !(0..kinds.len()).any(|i| baselines.iter().any(|&j| j != i)) {
        return; // nothing to compare
    }
    // Per (row, column): the per-round ratios.
    let mut per_pair: Vec<Vec<PairRatios>> = vec![vec![PairRatios::default(); kinds.len()]; kinds.len()];
    for round in table {
        for (i, j, thr, p99, p999) in round_ratios(kinds, &round[si]) {
            let p = &mut per_pair[i][j];
            p.thr.push(thr);
            p.p99.push(p99);
            p.p999.push(p999);
        }
    }
    let spread = rounds > 1;
    let width = if spread { 21 } else { 11 };
    let title = format!(
        "throughput ratio, row / column (median of the per-round ratios{}; higher is better)",
        if spread { ", [min-max]" } else { "" }
    );
    print_matrix(kinds, &baselines, &title, width, |i, j| {
        let mut v = per_pair[i][j].thr.clone();
        if v.is_empty() {
            return None;
        }
        let (lo, hi) = min_max(&v);
        let m = median(&mut v);
        Some(if spread { format!("{m:.3} [{lo:.2}-{hi:.2}]") } else { format!("{m:.3}") })
    });
    let title = "p99 / p99.9 ratio, row / column (medians of the per-round ratios; lower is better)";
    print_matrix(kinds, &baselines, title, 18, |i, j| {
        let (mut a, mut b) = (per_pair[i][j].p99.clone(), per_pair[i][j].p999.clone());
        (!a.is_empty()).then(|| format!("{:.3} / {:.3}", median(&mut a), median(&mut b)))
    });
}

/// A matrix of rows (every server with a value) by columns (`baselines`), if it has a value.
fn print_matrix(
    kinds: &[&ServerKind],
    baselines: &[usize],
    title: &str,
    width: usize,
    cell: impl Fn(usize, usize) -> Option<String>,
) {
    let rows: Vec<String> = (0..kinds.len())
        .filter_map(|i| {
            let cells: Vec<Option<String>> = baselines.iter().map(|&j| cell(i, j)).collect();
            cells.iter().any(Option::is_some).then(|| {
                let cells: String =
                    cells.into_iter().map(|c| format!("{:>width$}", c.unwrap_or_else(|| "-".into()))).collect();
                format!("  {:<13}{cells}", kinds[i].name)
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let header: String = baselines.iter().map(|&j| format!("{:>width$}", kinds[j].name)).collect();
    println!("  {title}");
    println!("  {:<13}{header}", "");
    for r in rows {
        println!("{r}");
    }
}

/// For one round and scenario, every (server, baseline) pair of distinct servers that both have
/// a good cell: (server, baseline, throughput ratio, p99 ratio, p99.9 ratio). Baselines are
/// rows too (`raw_uring/tokio`, `raw_epoll/raw_uring`: how far apart the ceilings are on this
/// machine, which is what a target relative to one of them must be read against).
fn round_ratios(kinds: &[&ServerKind], cells: &[Cell]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for i in 0..kinds.len() {
        for j in (0..kinds.len()).filter(|&j| j != i && kinds[j].role == Role::Baseline) {
            if let (Some(a), Some(b)) = (cells[i].good, cells[j].good) {
                out.push((i, j, a.rps / b.rps, a.p99 / b.p99, a.p999 / b.p999));
            }
        }
    }
    out
}
