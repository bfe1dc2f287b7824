//! Non-overlapped sends and receives: `WSASend` / `WSARecv` with neither an overlapped
//! structure nor a completion routine behave like blocking `send` / `recv` (spec 1.10).

use std::io::{IoSlice, IoSliceMut};

use super::{MsgFlags, Socket};
use crate::error::{Error, ErrorKind};
use crate::port::worker;
use crate::sys;

impl Socket {
    /// `WSASend(..., lpOverlapped = NULL, lpCompletionRoutine = NULL)`: blocks until every byte
    /// of `bufs` is sent (gather), and returns the count. While blocked the thread does not count
    /// toward its completion port's concurrency.
    pub fn send_blocking(&self, bufs: &[&[u8]], flags: MsgFlags) -> Result<usize, Error> {
        self.check_sync(bufs.len())?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let fd = self.inner().fd();
        let mut sent = 0;
        worker::blocking(|| {
            loop {
                let n = sys::send_vectored(fd, &remaining_slices(bufs, sent), flags.bits())?;
                sent += n;
                if sent >= total || n == 0 {
                    return Ok(sent);
                }
            }
        })
    }

    /// `WSARecv(..., lpOverlapped = NULL, lpCompletionRoutine = NULL)`: blocks until some data
    /// arrives (or the peer closes: 0), fills `bufs` in order (scatter) and returns the count and
    /// the reported flags.
    pub fn recv_blocking(&self, bufs: &mut [&mut [u8]], flags: MsgFlags) -> Result<(usize, MsgFlags), Error> {
        self.check_sync(bufs.len())?;
        let fd = self.inner().fd();
        let mut slices: Vec<IoSliceMut<'_>> = bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
        let (n, out) = worker::blocking(|| sys::recv_vectored(fd, &mut slices, flags.bits()))?;
        Ok((n, MsgFlags::from_bits(out)))
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
