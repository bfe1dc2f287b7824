//! The few direct system calls the library makes outside the ring: performing one operation
//! step synchronously (the skip-on-success fast path and the readiness backend), blocking
//! scatter/gather I/O, and taking ownership of a descriptor the kernel returned.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::mem;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::op::machine::Step;

/// Takes ownership of a new descriptor returned by the kernel (by `accept`).
pub(crate) fn fd_from_kernel(fd: i32) -> OwnedFd {
    assert!(fd >= 0, "the kernel returned a negative descriptor");
    // SAFETY: `fd` is a descriptor the kernel just created for us (an accept result) and that
    // nothing else owns yet.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Performs `step` with one non-blocking system call. Returns the kernel's result the way
/// io_uring reports it: a count or descriptor, or a negated errno.
///
/// Only data steps are supported (receive and send); others return `-EAGAIN` so the caller
/// falls back to the asynchronous path.
pub(crate) fn perform_nonblocking(step: &Step) -> i32 {
    let dontwait = libc::MSG_DONTWAIT;
    // SAFETY: every pointer in a `Step` points into a live operation record that the caller
    // owns exclusively for the duration of this call (spec 1.9: buffers valid until
    // completion); lengths match the buffers they describe.
    let res = unsafe {
        match *step {
            Step::Recv { fd, buf, len, flags } => libc::recv(fd.fd, buf.cast(), len as usize, flags | dontwait),
            Step::RecvMsg { fd, msg, flags } => libc::recvmsg(fd.fd, msg, flags | dontwait),
            Step::Send { fd, buf, len, flags } => libc::send(fd.fd, buf.cast(), len as usize, flags | dontwait),
            Step::SendMsg { fd, msg, flags } => libc::sendmsg(fd.fd, msg, flags | dontwait),
            _ => return -libc::EAGAIN,
        }
    };
    if res < 0 { -errno() } else { res.min(i32::MAX as isize) as i32 }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Blocking gather send (`WSASend` without an overlapped structure, spec 1.10). Returns the
/// bytes sent; a blocking stream socket sends everything unless an error interrupts it.
pub(crate) fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>], flags: i32) -> io::Result<usize> {
    // SAFETY: all-zero is a valid `msghdr`.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len();
    // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the slices are borrowed for the call.
    let res = unsafe { libc::sendmsg(fd, &msg, flags | libc::MSG_NOSIGNAL) };
    if res < 0 { Err(io::Error::last_os_error()) } else { Ok(res as usize) }
}

/// Blocking scatter receive (`WSARecv` without an overlapped structure). Returns the bytes
/// received and the output flags.
pub(crate) fn recv_vectored(fd: RawFd, bufs: &mut [IoSliceMut<'_>], flags: i32) -> io::Result<(usize, i32)> {
    // SAFETY: all-zero is a valid `msghdr`.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = bufs.as_mut_ptr().cast();
    msg.msg_iovlen = bufs.len();
    // SAFETY: `IoSliceMut` is ABI-compatible with `iovec`; the slices are borrowed mutably for
    // the call, so the kernel may write them.
    let res = unsafe { libc::recvmsg(fd, &mut msg, flags) };
    if res < 0 { Err(io::Error::last_os_error()) } else { Ok((res as usize, msg.msg_flags)) }
}

/// Whether the socket is listening (`SO_ACCEPTCONN`).
pub(crate) fn is_listening(fd: RawFd) -> io::Result<bool> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of an int and its length.
    let res = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN, (&raw mut value).cast(), &mut len) };
    if res < 0 { Err(io::Error::last_os_error()) } else { Ok(value != 0) }
}

/// Releases the open file behind `fd` while keeping the number allocated: `fd` is atomically
/// replaced by a descriptor of `/dev/null` (`dup3`). Used by `closesocket`, whose handle
/// values may still be held by other clones: the number must not be reused under them (I/O
/// safety); it is closed with its owner.
pub(crate) fn retire_fd(fd: RawFd) {
    use std::os::fd::AsRawFd;
    match std::fs::File::open("/dev/null") {
        // SAFETY: both descriptors are open and owned by this process; `dup3` only changes
        // what `fd` refers to, and `fd` stays owned by its `OwnedFd`.
        Ok(null) => unsafe {
            libc::dup3(null.as_raw_fd(), fd, libc::O_CLOEXEC);
        },
        // No placeholder: at least end the connection (the number closes with its owner).
        // SAFETY: `shutdown` takes no pointers.
        Err(_) => unsafe {
            libc::shutdown(fd, libc::SHUT_RDWR);
        },
    }
}
