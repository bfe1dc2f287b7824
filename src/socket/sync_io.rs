//! Non-overlapped sends and receives: `WSASend` / `WSARecv` with neither an overlapped
//! structure nor a completion routine behave like blocking `send` / `recv` (spec 1.10).
//!
//! Their wait is alertable, as on Windows: completion routines and APCs queued to the thread
//! run while it is blocked, and the call then goes on waiting for its own data. A call that
//! completes without blocking runs none. The wait itself is `poll` on the socket and the
//! thread's wake-up descriptor; the transfer is a non-blocking system call.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::{MsgFlags, Socket};
use crate::apc;
use crate::error::{Error, ErrorKind};
use crate::port::worker;
use crate::sys;
use crate::wait::block;

impl Socket {
    /// `WSASend(..., lpOverlapped = NULL, lpCompletionRoutine = NULL)`: blocks until every byte
    /// of `bufs` is sent (gather), and returns the count. On a non-blocking socket (`FIONBIO`)
    /// it sends what fits and fails with [`ErrorKind::WouldBlock`] if nothing does. While
    /// blocked the thread runs its queued completion routines (an alertable wait, 1.10), does
    /// not count toward its completion port's concurrency, and honours `SO_SNDTIMEO`
    /// ([`ErrorKind::TimedOut`]).
    pub fn send_blocking(&self, bufs: &[&[u8]], flags: MsgFlags) -> Result<usize, Error> {
        self.check_sync(bufs.len())?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let fd = self.inner().fd();
        let mut sent = 0;
        let mut wait = Blocked::new(fd, libc::POLLOUT, libc::SO_SNDTIMEO);
        worker::blocking(|| {
            loop {
                match sys::send_vectored(fd, &remaining_slices(bufs, sent), flags.bits() | libc::MSG_DONTWAIT) {
                    Ok(n) => {
                        sent += n;
                        if sent >= total || n == 0 {
                            return Ok(sent);
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        if sent > 0 && wait.nonblocking() {
                            return Ok(sent);
                        }
                        wait.until_ready()?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }

    /// `WSARecv(..., lpOverlapped = NULL, lpCompletionRoutine = NULL)`: blocks until some data
    /// arrives (or the peer closes: 0), fills `bufs` in order (scatter) and returns the count and
    /// the reported flags. On a non-blocking socket it fails with [`ErrorKind::WouldBlock`]
    /// instead of waiting. While blocked the thread runs its queued completion routines (an
    /// alertable wait, 1.10) and honours `SO_RCVTIMEO` ([`ErrorKind::TimedOut`]).
    /// With [`MsgFlags::WAITALL`] the call waits in the kernel, not alertably.
    pub fn recv_blocking(&self, bufs: &mut [&mut [u8]], flags: MsgFlags) -> Result<(usize, MsgFlags), Error> {
        self.check_sync(bufs.len())?;
        let fd = self.inner().fd();
        let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        if flags.contains(MsgFlags::WAITALL) {
            let (n, out) = worker::blocking(|| sys::recv_vectored(fd, &mut slices, flags.bits()))?;
            return Ok((n, MsgFlags::from_bits(out)));
        }
        let mut wait = Blocked::new(fd, libc::POLLIN, libc::SO_RCVTIMEO);
        worker::blocking(|| {
            loop {
                match sys::recv_vectored(fd, &mut slices, flags.bits() | libc::MSG_DONTWAIT) {
                    Ok((n, out)) => return Ok((n, MsgFlags::from_bits(out))),
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => wait.until_ready()?,
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }

    fn check_sync(&self, nbufs: usize) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::new(ErrorKind::NotSocket));
        }
        if nbufs == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument));
        }
        Ok(())
    }
}

/// The alertable wait of one blocking call.
struct Blocked {
    fd: RawFd,
    events: i16,
    timeout_option: i32,
    /// Set the first time the call has to wait.
    deadline: Option<Option<Instant>>,
}

impl Blocked {
    fn new(fd: RawFd, events: i16, timeout_option: i32) -> Self {
        Self { fd, events, timeout_option, deadline: None }
    }

    fn nonblocking(&self) -> bool {
        sys::is_nonblocking(self.fd)
    }

    /// Waits until the socket is ready, running queued APCs meanwhile (1.10). Fails with
    /// `WouldBlock` on a non-blocking socket, `TimedOut` when the socket's timeout passes.
    fn until_ready(&mut self) -> Result<(), Error> {
        let deadline = match self.deadline {
            Some(d) => d,
            None => {
                if self.nonblocking() {
                    return Err(Error::from_errno(libc::EAGAIN));
                }
                let d = sys::socket_timeout(self.fd, self.timeout_option).and_then(|t| Instant::now().checked_add(t));
                self.deadline = Some(d);
                d
            }
        };
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining.is_some_and(|r| r.is_zero()) {
            return Err(Error::new(ErrorKind::TimedOut));
        }
        let block = block::current();
        block.arm();
        let Some(wake) = block.poll_fd() else {
            // No wake-up descriptor: wait without running APCs.
            sys::poll_ready(self.fd, self.events, -1, remaining.or(Some(Duration::from_secs(3600))));
            return Ok(());
        };
        let alert = apc::Alertable::enter(&block);
        if !alert.has_queued() {
            sys::poll_ready(self.fd, self.events, wake, remaining);
        }
        drop(alert);
        apc::run_queued();
        Ok(())
    }
}

fn remaining_slices<'a>(bufs: &[&'a [u8]], mut skip: usize) -> Vec<IoSlice<'a>> {
    let mut out = Vec::with_capacity(bufs.len());
    for b in bufs {
        if skip >= b.len() {
            skip -= b.len();
            continue;
        }
        out.push(IoSlice::new(&b[skip..]));
        skip = 0;
    }
    out
}
