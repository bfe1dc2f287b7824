//! The memory an operation lends the kernel besides its data buffers: the `iovec` array, the
//! `msghdr`, and one socket-address area. It lives inside the boxed operation record, so its
//! address is stable for the whole flight (spec 1.9: "must stay valid until completion").
#![allow(unsafe_code)]

use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::ptr;

use crate::buf::BufList;

/// Raw pointers the kernel reads or writes during one step of an operation.
pub(crate) struct KernelArgs {
    iovecs: Vec<libc::iovec>,
    msg: libc::msghdr,
    addr: libc::sockaddr_storage,
    addr_len: libc::socklen_t,
}

// SAFETY: the raw pointers in `iovecs` and `msg` point into the same operation record (its
// buffers and this struct), which moves between threads as one unit; they are only
// dereferenced by the kernel while the record is in flight, and never through `&KernelArgs`.
unsafe impl Send for KernelArgs {}
// SAFETY: as above; shared references never dereference the pointers.
unsafe impl Sync for KernelArgs {}

impl Default for KernelArgs {
    fn default() -> Self {
        Self {
            iovecs: Vec::new(),
            // SAFETY: `msghdr` and `sockaddr_storage` are plain C structs for which all-zero
            // bytes are a valid (empty) value.
            msg: unsafe { mem::zeroed() },
            // SAFETY: as above.
            addr: unsafe { mem::zeroed() },
            addr_len: 0,
        }
    }
}

impl KernelArgs {
    /// Forgets the vectors and flags of an earlier flight.
    pub(crate) fn clear(&mut self) {
        self.iovecs.clear();
        self.msg.msg_flags = 0;
    }

    /// Points the `iovec` array at `bufs`, skipping the first `skip` bytes (already
    /// transferred by an earlier step). Returns the number of bytes the vectors cover.
    pub(crate) fn set_iovecs(&mut self, bufs: &mut BufList, mut skip: usize) -> usize {
        self.iovecs.clear();
        let mut total = 0;
        for buf in bufs.iter_mut() {
            if skip >= buf.len() {
                skip -= buf.len();
                continue;
            }
            let part = &mut buf[skip..];
            skip = 0;
            total += part.len();
            self.iovecs.push(libc::iovec { iov_base: part.as_mut_ptr().cast(), iov_len: part.len() });
        }
        total
    }

    /// Points the `iovec` array at the spare capacity of `bufs` (where a receive writes).
    /// Returns the number of bytes the vectors cover.
    pub(crate) fn set_spare_iovecs(&mut self, bufs: &mut BufList) -> usize {
        self.iovecs.clear();
        let mut total = 0;
        for buf in bufs.iter_mut() {
            let spare = buf.spare_capacity_mut();
            if spare.is_empty() && !self.iovecs.is_empty() {
                continue;
            }
            total += spare.len();
            self.iovecs.push(libc::iovec { iov_base: spare.as_mut_ptr().cast(), iov_len: spare.len() });
        }
        total
    }

    /// Prepares the `msghdr` over the current `iovec` array; with `with_addr`, `msg_name`
    /// points at the address area (filled by [`KernelArgs::set_addr`] for a send, or left for
    /// the kernel to write for a receive).
    pub(crate) fn msghdr(&mut self, with_addr: bool, for_receive: bool) -> *mut libc::msghdr {
        // SAFETY: all-zero is a valid `msghdr`.
        self.msg = unsafe { mem::zeroed() };
        self.msg.msg_iov = self.iovecs.as_mut_ptr();
        self.msg.msg_iovlen = self.iovecs.len();
        if with_addr {
            if for_receive {
                self.addr_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            self.msg.msg_name = ptr::addr_of_mut!(self.addr).cast();
            self.msg.msg_namelen = self.addr_len;
        }
        ptr::addr_of_mut!(self.msg)
    }

    /// Output flags the kernel wrote into the `msghdr` of the last receive (`MSG_TRUNC`, ...).
    pub(crate) fn msg_flags(&self) -> i32 {
        self.msg.msg_flags
    }

    /// The address the kernel wrote into `msg_name` by the last `recvmsg`.
    pub(crate) fn received_name(&mut self) -> Option<SocketAddr> {
        self.addr_len = self.msg.msg_namelen;
        self.addr()
    }

    /// Stores `addr` in the address area (for connect and send-to).
    pub(crate) fn set_addr(&mut self, addr: &SocketAddr) {
        let sa = socket2::SockAddr::from(*addr);
        // SAFETY: `sa` holds `sa.len()` initialised bytes of a sockaddr no larger than
        // `sockaddr_storage`; the destination is our own storage of that size.
        unsafe {
            ptr::copy_nonoverlapping(
                sa.as_ptr().cast::<u8>(),
                ptr::addr_of_mut!(self.addr).cast::<u8>(),
                sa.len() as usize,
            );
        }
        self.addr_len = sa.len();
    }

    /// The address area and its length, for `connect`.
    pub(crate) fn addr_ptr(&self) -> (*const libc::sockaddr, libc::socklen_t) {
        (ptr::addr_of!(self.addr).cast(), self.addr_len)
    }

    /// The address area and a length slot for the kernel to fill (`accept`).
    pub(crate) fn addr_out(&mut self) -> (*mut libc::sockaddr, *mut libc::socklen_t) {
        self.addr_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        (ptr::addr_of_mut!(self.addr).cast(), ptr::addr_of_mut!(self.addr_len))
    }

    /// The address currently in the address area, if it is an IP address.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        storage_to_addr(&self.addr, self.addr_len)
    }

    /// The `iovec` array prepared by [`KernelArgs::set_iovecs`].
    pub(crate) fn iovecs(&self) -> &[libc::iovec] {
        &self.iovecs
    }
}

/// Converts a kernel-written socket address to a std address (IPv4 or IPv6 only).
pub(crate) fn storage_to_addr(s: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match s.ss_family as i32 {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, and `len` covers it;
            // `sockaddr_storage` is aligned for every sockaddr type.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6 = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddr::V6(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_round_trips_through_the_storage() {
        let mut args = KernelArgs::default();
        for addr in ["127.0.0.1:9000", "[::1]:443"] {
            let addr: SocketAddr = addr.parse().unwrap();
            args.set_addr(&addr);
            assert_eq!(args.addr(), Some(addr));
        }
    }

    #[test]
    fn iovecs_skip_bytes_already_sent() {
        let mut bufs = BufList::from(vec![vec![1; 4], vec![2; 5]]);
        let mut args = KernelArgs::default();
        assert_eq!(args.set_iovecs(&mut bufs, 0), 9);
        assert_eq!(args.iovecs().len(), 2);
        assert_eq!(args.set_iovecs(&mut bufs, 6), 3);
        assert_eq!(args.iovecs().len(), 1);
        assert_eq!(args.iovecs()[0].iov_len, 3);
        assert_eq!(args.set_iovecs(&mut bufs, 9), 0);
    }
}
