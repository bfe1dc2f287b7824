//! Scatter/gather buffer lists: the owned equivalent of a `WSABUF` array.
#![allow(unsafe_code)]

use std::ops::{Deref, DerefMut};

/// A list of owned buffers, the `WSABUF` array of `WSASend` / `WSARecv` (lecture §1).
///
/// A send transmits every byte of every buffer (`0..len`), in order (gather). A receive writes
/// into each buffer's spare capacity (`len..capacity`, its `WSABUF`), in order, with no holes,
/// and extends the buffers' lengths by what it wrote (scatter, spec RV-1/RV-2). So an echo
/// needs no bookkeeping: receive into `Vec::with_capacity(n)`, send it back as it is, `clear()`
/// it, receive again; and nothing is zeroed. A receive whose buffers have no spare capacity is
/// the zero-byte-receive idiom (ZB-1). An empty list is refused with
/// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) (`WSAEINVAL`, RV-2).
///
/// The list dereferences to `Vec<Vec<u8>>`, so it can be reshaped freely while the
/// [`Overlapped`](crate::Overlapped) that owns it is not in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BufList {
    bufs: Vec<Vec<u8>>,
}

impl BufList {
    /// An empty list.
    pub const fn new() -> Self {
        Self { bufs: Vec::new() }
    }

    /// A list of one buffer.
    pub fn single(buf: Vec<u8>) -> Self {
        Self { bufs: vec![buf] }
    }

    /// A list of one empty buffer with room for `capacity` bytes, ready to receive into.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::single(Vec::with_capacity(capacity))
    }

    /// A list of empty buffers with these capacities (a scatter receive fills them in order).
    pub fn with_capacities(capacities: &[usize]) -> Self {
        Self { bufs: capacities.iter().map(|&c| Vec::with_capacity(c)).collect() }
    }

    /// The total length of all buffers: what a send transmits.
    pub fn total_len(&self) -> usize {
        self.bufs.iter().map(Vec::len).sum()
    }

    /// The total spare capacity of all buffers: what a receive can take.
    pub fn total_spare(&self) -> usize {
        self.bufs.iter().map(|b| b.capacity() - b.len()).sum()
    }

    /// Extends the buffers' lengths over the `n` bytes a receive wrote into their spare
    /// capacity, in order.
    ///
    /// # Safety
    /// The first `n` bytes of the spare capacities, taken in buffer order, must have been
    /// written (by the kernel, reporting `n` bytes received into exactly these regions).
    pub(crate) unsafe fn commit_received(&mut self, mut n: usize) {
        for buf in &mut self.bufs {
            let take = n.min(buf.capacity() - buf.len());
            // SAFETY: `take` bytes past `len` lie within the capacity and were written, per
            // the caller's contract, so they are initialised.
            unsafe { buf.set_len(buf.len() + take) };
            n -= take;
            if n == 0 {
                break;
            }
        }
    }

    /// The first `n` bytes of the list, gathered into one vector (e.g. what a receive that
    /// reported `n` bytes wrote).
    pub fn gather(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n.min(self.total_len()));
        for buf in &self.bufs {
            let take = (n - out.len()).min(buf.len());
            out.extend_from_slice(&buf[..take]);
            if out.len() == n {
                break;
            }
        }
        out
    }

    /// Takes the buffers out of the list.
    pub fn into_inner(self) -> Vec<Vec<u8>> {
        self.bufs
    }
}

impl From<Vec<Vec<u8>>> for BufList {
    fn from(bufs: Vec<Vec<u8>>) -> Self {
        Self { bufs }
    }
}

impl From<Vec<u8>> for BufList {
    fn from(buf: Vec<u8>) -> Self {
        Self::single(buf)
    }
}

impl Deref for BufList {
    type Target = Vec<Vec<u8>>;
    fn deref(&self) -> &Self::Target {
        &self.bufs
    }
}

impl DerefMut for BufList {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.bufs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_bytes_extend_buffers_in_order() {
        let mut list = BufList::with_capacities(&[4, 5]);
        assert_eq!(list.total_spare(), 9);
        for (i, b) in list.iter_mut().enumerate() {
            b.spare_capacity_mut().iter_mut().for_each(|x| {
                x.write(i as u8);
            });
        }
        // SAFETY: every spare byte was written just above.
        unsafe { list.commit_received(6) };
        assert_eq!(list[0], [0, 0, 0, 0]);
        assert_eq!(list[1], [1, 1]);
        assert_eq!(list.total_spare(), 3);
    }

    #[test]
    fn gather_reads_across_buffers_in_order() {
        let list = BufList::from(vec![b"dead".to_vec(), b"beefs".to_vec()]);
        assert_eq!(list.total_len(), 9);
        assert_eq!(list.gather(6), b"deadbe");
        assert_eq!(list.gather(100), b"deadbeefs");
        assert_eq!(list.gather(0), b"");
    }
}
