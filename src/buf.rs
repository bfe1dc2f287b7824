//! Scatter/gather buffer lists: the owned equivalent of a `WSABUF` array.

use std::ops::{Deref, DerefMut};

/// A list of owned buffers, the `WSABUF` array of `WSASend` / `WSARecv` (lecture §1).
///
/// Each buffer's length is its `WSABUF.len`: a send transmits every byte of every buffer, in
/// order (gather); a receive fills the buffers in order, each up to its length, with no holes
/// (scatter, spec RV-1/RV-2). A receive into a list whose only buffer is empty is the
/// zero-byte-receive idiom (ZB-1). An empty list is refused with
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

    /// A list of one zeroed buffer of `len` bytes, ready to receive into.
    pub fn zeroed(len: usize) -> Self {
        Self::single(vec![0; len])
    }

    /// The total length of all buffers (what a send transmits, what a receive can take).
    pub fn total_len(&self) -> usize {
        self.bufs.iter().map(Vec::len).sum()
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
    fn gather_reads_across_buffers_in_order() {
        let list = BufList::from(vec![b"dead".to_vec(), b"beefs".to_vec()]);
        assert_eq!(list.total_len(), 9);
        assert_eq!(list.gather(6), b"deadbe");
        assert_eq!(list.gather(100), b"deadbeefs");
        assert_eq!(list.gather(0), b"");
    }
}
