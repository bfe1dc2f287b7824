//! The system calls of the readiness backend: the epoll instance, and performing each
//! operation step once without blocking, returning the result the way io_uring reports it (a
//! count or descriptor, or a negated errno).
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::op::machine::Step;
use crate::sys::{self, errno};

/// Events for a socket, registered once, edge-triggered: every edge is a chance to retry the
/// operations waiting on the socket, which run until they would block again.
const SOCKET_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

pub(super) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: `epoll_create1` takes no pointers; a non-negative result is a new descriptor.
    let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(sys::fd_from_kernel(fd)) }
}

/// Adds `fd` to the epoll set with `token` as its user data: sockets edge-triggered for both
/// directions, or (`level_in`) a wake-up descriptor, level-triggered for reading.
pub(super) fn epoll_add(epfd: &OwnedFd, fd: RawFd, token: u64, level_in: bool) -> io::Result<()> {
    let events = if level_in { libc::EPOLLIN as u32 } else { SOCKET_EVENTS };
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid event for the duration of the call.
    let res = unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    if res < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

pub(super) fn epoll_del(epfd: &OwnedFd, fd: RawFd) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: `ev` is valid for the call (ignored by DEL, required by old kernels).
    unsafe { libc::epoll_ctl(epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
}

/// The empty event array `epoll_wait` fills.
pub(super) fn no_events<const N: usize>() -> [MaybeUninit<libc::epoll_event>; N] {
    [MaybeUninit::uninit(); N]
}

/// Waits for events, at most `timeout` (`None`: no limit), and returns the ones the kernel
/// wrote (a prefix of `events`, which need not be initialised beforehand). The system call is
/// made directly (`epoll_pwait` without a signal mask, which every architecture has), not
/// through libc's cancellation-point wrapper.
pub(super) fn epoll_wait<'a>(
    epfd: &OwnedFd,
    events: &'a mut [MaybeUninit<libc::epoll_event>],
    timeout: Option<Duration>,
) -> &'a [libc::epoll_event] {
    let ms = match timeout {
        None => -1,
        Some(t) if t.is_zero() => 0,
        // Round up, so a short timeout does not become a busy poll.
        Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
    };
    let max = i32::try_from(events.len()).unwrap_or(i32::MAX);
    // SAFETY: `events` is valid for writes of `max` entries for the duration of the call; a
    // null signal mask leaves the thread's mask alone.
    let n = unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait,
            epfd.as_raw_fd(),
            events.as_mut_ptr(),
            max,
            ms,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    let n = usize::try_from(n).unwrap_or(0).min(events.len());
    // SAFETY: the kernel initialised the first `n` entries (it reports how many it wrote, at
    // most `max`), and `MaybeUninit<T>` has the layout of `T`.
    unsafe { std::slice::from_raw_parts(events.as_ptr().cast::<libc::epoll_event>(), n) }
}

/// What one attempt at a step did.
pub(super) enum Attempt {
    /// Finished with this result.
    Done(i32),
    /// Would block: wait for the socket to become readable or writable.
    WouldBlock,
    /// A connect is under way: wait until writable, then call `connect` again for its outcome
    /// (as io_uring does: `EISCONN` means connected; a failure also resets the socket so that
    /// it may connect again, CX-3).
    Connecting,
}

/// Performs `step` once without blocking.
pub(super) fn attempt(step: &Step) -> Attempt {
    let res = match *step {
        Step::Accept { fd, addr, len } => accept(fd.fd, addr, len),
        Step::Connect { fd, addr, len } => return connect(fd.fd, addr, len),
        Step::Shutdown { fd, how } => {
            // SAFETY: `shutdown` takes no pointers.
            let r = unsafe { libc::shutdown(fd.fd, how) };
            if r < 0 { -errno() } else { 0 }
        }
        _ => sys::perform_nonblocking(step),
    };
    if res == -libc::EAGAIN { Attempt::WouldBlock } else { Attempt::Done(res) }
}

/// `accept4` without waiting, also on a listener in blocking mode (switched to non-blocking
/// for the call).
fn accept(fd: RawFd, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) -> i32 {
    with_nonblocking(fd, || {
        // SAFETY: `addr`/`len` point into the live operation record (an address area and its
        // length, set up by `next_step`).
        let r = unsafe { libc::accept4(fd, addr, len, libc::SOCK_CLOEXEC) };
        if r < 0 { -errno() } else { r }
    })
}

fn connect(fd: RawFd, addr: *const libc::sockaddr, len: libc::socklen_t) -> Attempt {
    let res = with_nonblocking(fd, || {
        // SAFETY: `addr` points to `len` bytes of a socket address in the live record.
        let r = unsafe { libc::connect(fd, addr, len) };
        if r < 0 { -errno() } else { 0 }
    });
    match -res {
        libc::EINPROGRESS | libc::EALREADY | libc::EAGAIN => Attempt::Connecting,
        _ => Attempt::Done(res),
    }
}

/// Runs `f` with `fd` in non-blocking mode, restoring blocking mode afterwards if it had it.
fn with_nonblocking(fd: RawFd, f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: `fcntl(F_GETFL)` takes no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return -errno();
    }
    if flags & libc::O_NONBLOCK != 0 {
        return f();
    }
    // SAFETY: `fcntl(F_SETFL)` takes no pointers.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) };
    let res = f();
    // SAFETY: as above.
    unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    res
}
