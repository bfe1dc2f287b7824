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
    // Direct system calls, not libc's `recv`/`send`: those are pthread cancellation points,
    // whose bookkeeping around each call costs about as much as a small receive's own work.
    let null = std::ptr::null_mut::<libc::c_void>();
    // SAFETY: every pointer in a `Step` points into a live operation record that the caller
    // owns exclusively for the duration of this call (spec 1.9: buffers valid until
    // completion); lengths match the buffers they describe; the null address arguments mean
    // "none" to `recvfrom` and `sendto`.
    let res = unsafe {
        match *step {
            Step::Recv { fd, buf, len, flags } => {
                libc::syscall(libc::SYS_recvfrom, fd.fd, buf, len as usize, flags | dontwait, null, null)
            }
            Step::RecvMsg { fd, msg, flags } => libc::syscall(libc::SYS_recvmsg, fd.fd, msg, flags | dontwait),
            Step::Send { fd, buf, len, flags } => {
                libc::syscall(libc::SYS_sendto, fd.fd, buf, len as usize, flags | dontwait, null, 0)
            }
            Step::SendMsg { fd, msg, flags } => libc::syscall(libc::SYS_sendmsg, fd.fd, msg, flags | dontwait),
            _ => return -libc::EAGAIN,
        }
    };
    if res < 0 { -errno() } else { res.min(libc::c_long::from(i32::MAX)) as i32 }
}

/// The calling thread's `errno` after a failed system call (`EIO` if there is none).
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// Gather send with `sendmsg` (`WSASend` without an overlapped structure, spec 1.10). Returns
/// the bytes sent.
pub(crate) fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>], flags: i32) -> io::Result<usize> {
    // SAFETY: all-zero is a valid `msghdr`.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len();
    // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the slices are borrowed for the call.
    let res = unsafe { libc::sendmsg(fd, &msg, flags | libc::MSG_NOSIGNAL) };
    if res < 0 { Err(io::Error::last_os_error()) } else { Ok(res as usize) }
}

/// Scatter receive with `recvmsg` (`WSARecv` without an overlapped structure). Returns the
/// bytes received and the output flags.
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

/// A non-blocking, close-on-exec eventfd: what a thread blocked in `poll` is woken through.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: `eventfd` takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(fd_from_kernel(fd)) }
}

/// Adds one to an eventfd's counter, making it readable.
pub(crate) fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one`, which lives for the call.
    unsafe { libc::write(fd, (&raw const one).cast(), mem::size_of::<u64>()) };
}

/// Empties an eventfd's counter (it is non-blocking, so this never waits).
pub(crate) fn eventfd_drain(fd: RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads at most 8 bytes into `value`, which lives for the call.
    unsafe { libc::read(fd, (&raw mut value).cast(), mem::size_of::<u64>()) };
}

/// Waits until `fd` has one of `events` (`POLLIN`/`POLLOUT`) or `wake` is readable, at most
/// `timeout` (`None`: no limit). Returns whether `fd` is ready (an error or hang-up counts, so
/// that the next call reports it).
pub(crate) fn poll_ready(fd: RawFd, events: i16, wake: RawFd, timeout: Option<std::time::Duration>) -> bool {
    let mut fds =
        [libc::pollfd { fd, events, revents: 0 }, libc::pollfd { fd: wake, events: libc::POLLIN, revents: 0 }];
    let ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis().max(1)).unwrap_or(i32::MAX));
    // SAFETY: `fds` is a valid array of two `pollfd`s for the duration of the call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    n > 0 && fds[0].revents != 0
}

/// Whether the descriptor is in non-blocking mode (`O_NONBLOCK`, `FIONBIO`).
pub(crate) fn is_nonblocking(fd: RawFd) -> bool {
    // SAFETY: `fcntl(F_GETFL)` takes no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}

/// The socket's `SO_RCVTIMEO` or `SO_SNDTIMEO` (`None`: no timeout).
pub(crate) fn socket_timeout(fd: RawFd, option: i32) -> Option<std::time::Duration> {
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 0 };
    let mut len = mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are valid for writes of a timeval and its length.
    let res = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, option, (&raw mut tv).cast(), &mut len) };
    if res < 0 || (tv.tv_sec == 0 && tv.tv_usec == 0) {
        return None;
    }
    Some(std::time::Duration::new(tv.tv_sec as u64, (tv.tv_usec as u32) * 1000))
}
