//! Sockets: creation and options (like `socket`/`bind`/`listen`), and the overlapped
//! operations of the lecture (in `ops.rs`).

pub(crate) mod inner;
mod ops;
mod sync_io;

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

pub use socket2::{Domain, Protocol, Type};

use crate::error::{Error, ErrorKind};
use inner::SocketInner;
pub use ops::{Issued, Rejected};

/// A socket handle (`SOCKET`).
///
/// Cloning copies the handle value (both clones name one socket, as two copies of a `SOCKET`
/// do). [`Socket::close`] closes it for every clone (`closesocket`); dropping the last clone
/// closes it too. Closing cancels the socket's pending operations; each still completes, once,
/// with the status the spec gives (CN-5), and the descriptor is closed when the last of them
/// has come back from the kernel.
#[derive(Clone)]
pub struct Socket {
    handle: Arc<Handle>,
}

struct Handle {
    inner: Arc<SocketInner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.close();
    }
}

/// How to shut a socket down (`SD_RECEIVE`, `SD_SEND`, `SD_BOTH`).
pub use std::net::Shutdown;

/// Message flags of sends and receives (`MSG_*`), and the flags a receive reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MsgFlags(i32);

impl MsgFlags {
    /// No flags.
    pub const NONE: Self = Self(0);
    /// `MSG_OOB`: out-of-band data.
    pub const OOB: Self = Self(libc::MSG_OOB);
    /// `MSG_PEEK`: look at data without consuming it.
    pub const PEEK: Self = Self(libc::MSG_PEEK);
    /// `MSG_DONTROUTE`.
    pub const DONTROUTE: Self = Self(libc::MSG_DONTROUTE);
    /// `MSG_WAITALL`: a stream receive completes only when the buffers are full (RV-5).
    pub const WAITALL: Self = Self(libc::MSG_WAITALL);
    /// Reported: the datagram was truncated (`MSG_TRUNC`; Winsock `MSG_PARTIAL`-like, RV-3).
    pub const TRUNC: Self = Self(libc::MSG_TRUNC);
    /// Reported: control data was truncated (`MSG_CTRUNC`).
    pub const CTRUNC: Self = Self(libc::MSG_CTRUNC);

    /// The flags of these raw `MSG_*` bits.
    pub const fn from_bits(bits: i32) -> Self {
        Self(bits)
    }

    /// The raw `MSG_*` bits.
    pub const fn bits(self) -> i32 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for MsgFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// What a completed accept (`AcceptEx`) produced: the new connected socket, and its addresses
/// (`GetAcceptExSockaddrs`). On Linux the accepted socket already has its full state, so
/// `SO_UPDATE_ACCEPT_CONTEXT` is not needed (spec §8.4.8).
#[derive(Debug)]
pub struct Accepted {
    /// The accepted connection, not associated with any port yet.
    pub socket: Socket,
    /// The local address of the connection.
    pub local_addr: SocketAddr,
    /// The peer's address.
    pub remote_addr: SocketAddr,
}

impl Accepted {
    /// The accepted socket inherits the listener's choice of backend.
    pub(crate) fn from_fd(
        fd: OwnedFd,
        remote: Option<SocketAddr>,
        backend: Option<crate::Backend>,
    ) -> Result<Self, Error> {
        let sock = socket2::SockRef::from(&fd);
        let local_addr = sock_addr(sock.local_addr())?;
        let remote_addr = match remote {
            Some(a) => a,
            None => sock_addr(sock.peer_addr())?,
        };
        Ok(Self { socket: Socket::with_backend(fd, true, backend), local_addr, remote_addr })
    }
}

fn sock_addr(addr: std::io::Result<socket2::SockAddr>) -> Result<SocketAddr, Error> {
    addr?.as_socket().ok_or(Error::new(ErrorKind::InvalidArgument))
}

impl Socket {
    /// `socket(domain, type, protocol)` / `WSASocket(..., WSA_FLAG_OVERLAPPED)`: a new socket
    /// (close-on-exec). Every socket of this library supports overlapped operations.
    pub fn new(domain: Domain, ty: Type, protocol: Option<Protocol>) -> Result<Self, Error> {
        let s = socket2::Socket::new(domain, ty, protocol)?;
        let stream = ty == Type::STREAM;
        Ok(Self::from_owned(s.into(), stream))
    }

    /// A TCP socket of the address family of `addr` (not bound).
    pub fn tcp_for(addr: &SocketAddr) -> Result<Self, Error> {
        Self::new(Domain::for_address(*addr), Type::STREAM, Some(Protocol::TCP))
    }

    /// A UDP socket of the address family of `addr` (not bound).
    pub fn udp_for(addr: &SocketAddr) -> Result<Self, Error> {
        Self::new(Domain::for_address(*addr), Type::DGRAM, Some(Protocol::UDP))
    }

    /// A TCP listener bound to `addr` (`SO_REUSEADDR` set) and listening with `backlog`.
    pub fn listen_tcp(addr: SocketAddr, backlog: i32) -> Result<Self, Error> {
        let s = Self::tcp_for(&addr)?;
        s.sock_ref().set_reuse_address(true)?;
        s.bind(addr)?;
        s.listen(backlog)?;
        Ok(s)
    }

    /// A socket whose event and routine operations use this thread's default backend, if it
    /// has one ([`crate::with_default_backend`]), else the process's.
    pub(crate) fn from_owned(fd: OwnedFd, stream: bool) -> Self {
        Self::with_backend(fd, stream, crate::driver::thread_default())
    }

    pub(crate) fn with_backend(fd: OwnedFd, stream: bool, backend: Option<crate::Backend>) -> Self {
        Self { handle: Arc::new(Handle { inner: Arc::new(SocketInner::new(fd, stream, backend)) }) }
    }

    pub(crate) fn inner(&self) -> &Arc<SocketInner> {
        &self.handle.inner
    }

    /// Borrows the socket for any option of `socket2` (`setsockopt`, `getsockopt`).
    pub fn sock_ref(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(self.inner().owned_fd())
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.inner().is_closed() { Err(Error::new(ErrorKind::NotSocket)) } else { Ok(()) }
    }

    /// `bind`.
    pub fn bind(&self, addr: SocketAddr) -> Result<(), Error> {
        self.check_open()?;
        Ok(self.sock_ref().bind(&addr.into())?)
    }

    /// `listen`.
    pub fn listen(&self, backlog: i32) -> Result<(), Error> {
        self.check_open()?;
        Ok(self.sock_ref().listen(backlog)?)
    }

    /// `getsockname`.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        self.check_open()?;
        sock_addr(self.sock_ref().local_addr())
    }

    /// `getpeername`.
    pub fn peer_addr(&self) -> Result<SocketAddr, Error> {
        self.check_open()?;
        sock_addr(self.sock_ref().peer_addr())
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> Result<(), Error> {
        self.check_open()?;
        Ok(self.sock_ref().set_tcp_nodelay(on)?)
    }

    /// `SO_LINGER`; `Some(0)` makes close abortive (the peer sees a reset, CN-9).
    pub fn set_linger(&self, linger: Option<std::time::Duration>) -> Result<(), Error> {
        self.check_open()?;
        Ok(self.sock_ref().set_linger(linger)?)
    }

    /// `SetFileCompletionNotificationModes(socket, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS)`: from
    /// now on an operation that succeeds at once returns [`Issued::Completed`] and queues no
    /// packet (NM-2). The mode cannot be cleared (NM-1).
    pub fn set_skip_completion_port_on_success(&self) -> Result<(), Error> {
        self.check_open()?;
        self.inner().set_skip_on_success();
        Ok(())
    }

    /// `shutdown` (`SD_RECEIVE`, `SD_SEND`, `SD_BOTH`). Not an overlapped operation: no packet
    /// (CP-9). A receive already pending is not aborted by `SD_RECEIVE`; later receives fail
    /// with [`ErrorKind::Shutdown`] (CN-7, spec §8.4.6).
    pub fn shutdown(&self, how: Shutdown) -> Result<(), Error> {
        self.check_open()?;
        let (read, write) = match how {
            Shutdown::Read => (true, false),
            Shutdown::Write => (false, true),
            Shutdown::Both => (true, true),
        };
        let recv_pending = self.inner().mark_shutdown(read, write);
        let forward = match how {
            Shutdown::Read if recv_pending => None,
            Shutdown::Both if recv_pending => Some(Shutdown::Write),
            other => Some(other),
        };
        if let Some(how) = forward {
            self.sock_ref().shutdown(how)?;
        }
        Ok(())
    }

    /// `closesocket`: cancels every pending operation (each completes once, CN-5) and closes the
    /// handle for every clone. [`ErrorKind::NotSocket`] if already closed.
    pub fn close(&self) -> Result<(), Error> {
        if self.inner().close() { Ok(()) } else { Err(Error::new(ErrorKind::NotSocket)) }
    }

    /// Whether [`Socket::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner().is_closed()
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("fd", &self.inner().fd()).field("closed", &self.is_closed()).finish()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner().owned_fd().as_fd()
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.inner().fd()
    }
}

impl From<TcpStream> for Socket {
    fn from(s: TcpStream) -> Self {
        Self::from_owned(s.into(), true)
    }
}

impl From<TcpListener> for Socket {
    fn from(s: TcpListener) -> Self {
        Self::from_owned(s.into(), true)
    }
}

impl From<UdpSocket> for Socket {
    fn from(s: UdpSocket) -> Self {
        Self::from_owned(s.into(), false)
    }
}
