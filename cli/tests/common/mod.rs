//! What the end-to-end tests of `overlapped serve` share: starting the server in a child
//! process, driving it with real TCP clients, checking its descriptors, and stopping it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
const MESSAGES: usize = 8;
const MAX_MESSAGE: usize = 64 * 1024;

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub backend: String,
}

impl Server {
    /// Starts `overlapped serve --model model` on a free loopback port.
    pub fn start(model: &str) -> Server {
        Self::start_with(model, &[], |_| {})
    }

    /// Like [`Server::start`], with extra environment variables, and `prepare` applied to the
    /// command before it runs.
    pub fn start_with(model: &str, env: &[(&str, &str)], prepare: impl FnOnce(&mut Command)) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_overlapped"));
        cmd.args(["serve", "--model", model, "--addr", "127.0.0.1:0"]).stdout(Stdio::piped());
        cmd.env_remove("OVERLAPPED_BACKEND");
        for (k, v) in env {
            cmd.env(k, v);
        }
        prepare(&mut cmd);
        let mut child = cmd.spawn().expect("start overlapped serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("read the announce line");
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .to_string()
        };
        let addr = field("addr=").parse().expect("an address");
        let backend = field("backend=");
        Server { child, addr, backend }
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).expect("server fds").count()
    }

    /// Sends `signal` and waits (bounded) for the exit status.
    pub fn stop(self, signal: i32) -> i32 {
        let mut server = self;
        server.signal_and_wait(signal)
    }

    fn signal_and_wait(&mut self, signal: i32) -> i32 {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.child.id().to_string()).status();
        assert!(status.expect("run kill").success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                return status.code().expect("exited, not killed");
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the server did not exit after signal {signal}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    /// A failing test must not leave its server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub fn client(addr: SocketAddr, seed: u64, start: &Barrier) {
    let mut rng = XorShift(seed | 1);
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    start.wait();
    let mut back = vec![0u8; MAX_MESSAGE];
    for _ in 0..MESSAGES {
        let len = 1 + (rng.next() as usize % MAX_MESSAGE);
        let msg: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        stream.write_all(&msg).expect("send");
        stream.read_exact(&mut back[..len]).expect("echo");
        assert!(back[..len] == msg[..], "client {seed}: the echo differs from what was sent");
    }
}

pub fn run_clients(addr: SocketAddr) {
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let start = start.clone();
            thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || client(addr, 0x9E37_79B9 + i as u64, &start))
                .unwrap()
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
}

/// Waits (bounded) until the server's descriptor count is back to `baseline`.
pub fn fds_return_to(server: &Server, baseline: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = server.open_fds();
        if now <= baseline || Instant::now() > deadline {
            return now;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the end-to-end echo check against `model` on `backend` (skipped, and said so, if the
/// backend cannot run here): the server reports the backend, echoes every byte for every
/// client, gets back to its baseline of descriptors, and exits 0 on SIGINT.
pub fn echo_end_to_end(model: &str, backend: overlapped::Backend) {
    if let Err(e) = backend.probe() {
        let _ = writeln!(std::io::stderr(), "SKIPPED {model} on {backend}: not available here ({e})");
        return;
    }
    let server = Server::start_with(model, &[("OVERLAPPED_BACKEND", backend.name())], |_| {});
    assert_eq!(server.backend, backend.name(), "the server reports the backend it was asked for");
    echo_and_stop(server);
}

/// Drives `server` with the clients, checks its descriptors, stops it with SIGINT.
pub fn echo_and_stop(server: Server) {
    let baseline = server.open_fds();
    run_clients(server.addr);
    let after = fds_return_to(&server, baseline);
    assert_eq!(after, baseline, "the server keeps descriptors of clients that left");
    assert_eq!(server.stop(SIGINT), 0, "serve exits 0 on SIGINT");
}

pub const SIGINT: i32 = 2;
pub const SIGTERM: i32 = 15;
