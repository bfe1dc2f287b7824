//! The automatic fallback really happens: `overlapped serve` started in a child process where
//! io_uring cannot be set up (a seccomp filter, installed in the child before `exec`, makes
//! `io_uring_setup` fail with `EPERM`, as Docker's default profile does) reports the epoll
//! backend and passes the end-to-end echo test; forcing io_uring there is a clear error, not
//! a silent fallback. Where Linux AIO is denied too, the epoll backend writes its batched
//! sends one by one and still serves every byte.
#![allow(unsafe_code)] // installing a seccomp filter in the child takes `pre_exec` and `prctl`

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, echo_and_stop};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// `seccomp_data` offsets: the system call number, the architecture.
const NR: u32 = 0;
const ARCH: u32 = 4;
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: JEQ_K, jt, jf, k }
}

/// A filter that fails the system calls `denied` with `EPERM` and allows everything else (on
/// this architecture; on another it allows everything, and the test notices: the server would
/// not report epoll).
fn deny(denied: &[libc::c_long]) -> Vec<libc::sock_filter> {
    let mut filter = vec![stmt(LD_W_ABS, ARCH), jump(AUDIT_ARCH, 1, 0), stmt(RET_K, libc::SECCOMP_RET_ALLOW)];
    filter.push(stmt(LD_W_ABS, NR));
    for &nr in denied {
        filter.push(jump(nr as u32, 0, 1));
        filter.push(stmt(RET_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32));
    }
    filter.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    filter
}

/// Makes `cmd` fail `io_uring_setup` in the child (a filter installed before `exec`).
fn without_io_uring(cmd: &mut Command) {
    install_in_child(cmd, deny(&[libc::SYS_io_uring_setup]));
}

/// Makes `cmd` fail `io_uring_setup` and Linux AIO's `io_setup` and `io_submit` in the child.
fn without_io_uring_or_aio(cmd: &mut Command) {
    install_in_child(cmd, deny(&[libc::SYS_io_uring_setup, libc::SYS_io_setup, libc::SYS_io_submit]));
}

/// Makes `cmd` install the seccomp `filter` in the child before `exec`.
fn install_in_child(cmd: &mut Command, filter: Vec<libc::sock_filter>) {
    // SAFETY: the closure runs in the forked child before `exec`, and only makes two `prctl`
    // calls (async-signal-safe) on memory prepared before the fork (`filter` moves in and
    // stays alive for the closure's life).
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &raw const prog) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn without_io_uring_the_server_falls_back_to_epoll_and_echoes_every_byte() {
    for model in ["port", "event", "routine"] {
        let server = Server::start_with(model, &[], without_io_uring);
        assert_eq!(server.backend, "epoll", "{model}: io_uring_setup is denied, so the backend must be epoll");
        echo_and_stop(server);
    }
}

#[test]
fn without_io_uring_or_aio_the_epoll_backend_still_echoes_every_byte() {
    let server = Server::start_with("port", &[], without_io_uring_or_aio);
    assert_eq!(server.backend, "epoll", "io_uring_setup is denied, so the backend must be epoll");
    echo_and_stop(server);
}

#[test]
fn forcing_io_uring_where_it_cannot_run_is_a_clear_error() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_overlapped"));
    cmd.args(["serve", "--model", "port", "--addr", "127.0.0.1:0"])
        .env("OVERLAPPED_BACKEND", "io_uring")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    without_io_uring(&mut cmd);
    let mut child = cmd.spawn().expect("start overlapped serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running with io_uring forced and unavailable");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success(), "forcing an unavailable backend must fail");
    assert!(err.contains("io_uring backend (forced by OVERLAPPED_BACKEND) cannot run here"), "a clear error: {err:?}");
    assert!(err.contains("Operation not permitted"), "the reason: {err:?}");
}
