//! Linux AIO (`io_submit`) used for one thing: performing many non-blocking socket writes in
//! one system call.
//!
//! Why: on one core, each `send` that wakes the peer is a point where the scheduler may switch
//! to it (at the return from the system call), so a server that answers 50 ready clients with
//! 50 `send` calls is preempted after almost each of them, and every switch makes the next
//! system calls run on cold caches. Written in one `io_submit` (as io_uring submits a batch in
//! one `io_uring_enter`), the peer is woken once per batch instead.
//!
//! A socket write with `RWF_NOWAIT` runs synchronously inside `io_submit` (sockets support
//! `IOCB_NOWAIT`: `sock_write_iter` turns it into `MSG_DONTWAIT`), so every event is there when
//! `io_submit` returns, and `io_getevents` collects them without waiting. AIO is allowed where
//! io_uring often is not (Docker's default seccomp profile permits it).
//!
//! Limits: a write cannot carry `MSG_NOSIGNAL`, so it is only used while `SIGPIPE` is ignored
//! (the default for Rust programs; checked before each batch), and only for plain sends.
#![allow(unsafe_code)]

use std::mem::MaybeUninit;

use crate::op::RawOp;
use crate::op::machine::{self, Step};
use crate::sys::errno;

/// Writes per `io_submit` (and the context's queue depth): a whole batch of a busy port in one
/// call (at 128 connections, 64 per call measured about 3% slower than 256).
pub(super) const DEPTH: usize = 256;

const IOCB_CMD_PWRITE: u16 = 1;
const RWF_NOWAIT: i32 = 0x0000_0008;

/// `struct iocb` of `linux/aio_abi.h` (little-endian field order of `aio_key`/`aio_rw_flags`).
#[repr(C)]
#[derive(Clone, Default)]
struct Iocb {
    aio_data: u64,
    #[cfg(target_endian = "little")]
    aio_key: u32,
    aio_rw_flags: i32,
    #[cfg(target_endian = "big")]
    aio_key: u32,
    aio_lio_opcode: u16,
    aio_reqprio: i16,
    aio_fildes: u32,
    aio_buf: u64,
    aio_nbytes: u64,
    aio_offset: i64,
    aio_reserved2: u64,
    aio_flags: u32,
    aio_resfd: u32,
}

/// `struct io_event` of `linux/aio_abi.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct IoEvent {
    data: u64,
    obj: u64,
    res: i64,
    res2: i64,
}

/// An AIO context (`io_setup`), destroyed on drop, with the arrays one `io_submit` uses
/// (allocated once: [`DEPTH`] iocbs, their addresses, and the events that come back).
pub(super) struct AioContext {
    id: libc::c_ulong,
    iocbs: Box<[Iocb]>,
    /// `struct iocb **`, as addresses (`usize` has the layout of a pointer).
    ptrs: Box<[usize]>,
    events: Box<[MaybeUninit<IoEvent>]>,
}

impl AioContext {
    /// `None` where AIO is unavailable (no kernel support, a seccomp filter, `aio-max-nr`).
    pub(super) fn new() -> Option<Self> {
        let mut id: libc::c_ulong = 0;
        // SAFETY: `id` is a valid place for the new context's id for the duration of the call.
        let r = unsafe { libc::syscall(libc::SYS_io_setup, DEPTH as libc::c_long, &mut id as *mut libc::c_ulong) };
        (r == 0).then(|| Self {
            id,
            iocbs: vec![Iocb::default(); DEPTH].into_boxed_slice(),
            ptrs: vec![0; DEPTH].into_boxed_slice(),
            events: vec![MaybeUninit::uninit(); DEPTH].into_boxed_slice(),
        })
    }

    /// Performs the next steps of a prefix of `ops` (at most [`DEPTH`], each a plain send) in
    /// one `io_submit`, writing each one's result (a byte count or a negated errno) into
    /// `results`. Returns the prefix length: all of them, or fewer if the kernel refused one at
    /// submission (its error is its result) or one is not a plain send (`EAGAIN`: the caller
    /// starts it the ordinary way).
    pub(super) fn write_batch(&mut self, ops: &mut [RawOp], results: &mut [i32]) -> usize {
        let Self { id, iocbs, ptrs, events } = self;
        let mut n = 0;
        for op in ops.iter_mut().take(DEPTH.min(results.len())) {
            let Step::Send { fd, buf, len, .. } = machine::next_step(op.state_mut()) else { break };
            iocbs[n] = Iocb {
                aio_data: n as u64,
                aio_rw_flags: RWF_NOWAIT,
                aio_lio_opcode: IOCB_CMD_PWRITE,
                aio_fildes: fd.fd as u32,
                aio_buf: buf as u64,
                aio_nbytes: u64::from(len),
                ..Iocb::default()
            };
            ptrs[n] = &raw mut iocbs[n] as usize;
            n += 1;
        }
        if n == 0 {
            results[0] = -libc::EAGAIN;
            return 1;
        }
        // SAFETY: `ptrs[..n]` point to initialised iocbs that outlive the call. Each buffer is
        // the unsent part of a send's buffer inside its record, which the caller owns for the
        // whole call (`RawOp`), so it stays valid and unmoved. Socket writes with RWF_NOWAIT
        // complete inside the call, so the kernel keeps no pointer after it returns.
        let submitted = unsafe { libc::syscall(libc::SYS_io_submit, *id, n as libc::c_long, ptrs.as_mut_ptr()) };
        if submitted <= 0 {
            results[0] = if submitted == 0 { -libc::EAGAIN } else { -errno() };
            return 1;
        }
        let submitted = submitted as usize;
        // A write whose event cannot be collected (never expected) fails with EIO rather than
        // being written again by the caller's fallback.
        results[..submitted].fill(-libc::EIO);
        let mut got = 0;
        while got < submitted {
            let want = (submitted - got) as libc::c_long;
            // SAFETY: `events[got..]` has room for `want` events; a null timeout waits, but the
            // events are already there (the writes completed inside `io_submit`).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_getevents,
                    *id,
                    want,
                    want,
                    events[got..].as_mut_ptr(),
                    std::ptr::null_mut::<libc::timespec>(),
                )
            };
            if r < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                break;
            }
            for ev in &events[got..got + r as usize] {
                // SAFETY: the kernel initialised the `r` events it reported.
                let ev = unsafe { ev.assume_init() };
                if let Some(slot) = results.get_mut(ev.data as usize) {
                    *slot = ev.res.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
                }
            }
            got += r as usize;
        }
        submitted
    }
}

impl Drop for AioContext {
    fn drop(&mut self) {
        // SAFETY: `io_destroy` takes the context id only; nothing is in flight (every write
        // completed inside its `io_submit`).
        unsafe { libc::syscall(libc::SYS_io_destroy, self.id) };
    }
}

/// Whether `SIGPIPE` is ignored in this process, so that a write to a reset connection fails
/// with `EPIPE` instead of killing the process (`MSG_NOSIGNAL` cannot be passed to a write).
pub(super) fn sigpipe_ignored() -> bool {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is valid for writes.
    let r = unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), old.as_mut_ptr()) };
    // SAFETY: `sigaction` filled `old` when it succeeded (and it is zeroed otherwise).
    r == 0 && unsafe { old.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// Involuntary context switches of the calling thread so far (`getrusage(RUSAGE_THREAD)`):
/// how often the scheduler preempted it.
#[allow(clippy::useless_conversion)] // `c_long` is `i32` on 32-bit targets
pub(super) fn preemptions() -> i64 {
    let mut usage = MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is valid for writes for the duration of the call.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    // SAFETY: `getrusage` filled `usage` when it succeeded (and it is zeroed otherwise).
    if r == 0 { i64::from(unsafe { usage.assume_init() }.ru_nivcsw) } else { 0 }
}
