//! Errors as values: which socket error, its Windows codes, and the Linux errno behind it.
//!
//! Windows reports one completion status in three views (spec §1.8): the NTSTATUS stored in
//! `OVERLAPPED.Internal`, the Win32 code `GetQueuedCompletionStatus` / `GetOverlappedResult`
//! leave in `GetLastError()` (the *port view*), and the Winsock code `WSAGetOverlappedResult`,
//! completion routines and immediate failures report (the *Winsock view*). [`Error`] carries
//! all three, derived from one [`ErrorKind`], plus the Linux `errno` it came from, if any.

use std::fmt;
use std::io;
use std::num::NonZeroI32;

use crate::win32;

/// What went wrong, as a caller matches it.
///
/// Each kind names the NTSTATUS it stands for and its two Windows codes (spec §1.8, §8.3).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
// Four bytes, like the errno beside it in `Error`: an error then has no padding, so copies of
// a completion packet are whole aligned words (a copy that includes padding is done with
// overlapping odd-offset moves, which stall the loads that follow).
#[repr(u32)]
pub enum ErrorKind {
    /// The operation was cancelled (`STATUS_CANCELLED`; `ERROR_OPERATION_ABORTED` 995 /
    /// `WSA_OPERATION_ABORTED` 995). Also what a pending accept gets when its socket closes (CN-5).
    OperationAborted,
    /// The peer reset the connection (`STATUS_CONNECTION_RESET`; `ERROR_NETNAME_DELETED` 64 /
    /// `WSAECONNRESET` 10054).
    ConnectionReset,
    /// The connection was aborted locally, e.g. by closing a socket with a receive pending
    /// (`STATUS_CONNECTION_ABORTED`; `ERROR_CONNECTION_ABORTED` 1236 / `WSAECONNABORTED` 10053).
    ConnectionAborted,
    /// The peer refused the connection (`STATUS_CONNECTION_REFUSED`;
    /// `ERROR_CONNECTION_REFUSED` 1225 / `WSAECONNREFUSED` 10061).
    ConnectionRefused,
    /// The network operation timed out (`STATUS_IO_TIMEOUT`; `ERROR_SEM_TIMEOUT` 121 /
    /// `WSAETIMEDOUT` 10060).
    TimedOut,
    /// No route to the network (`STATUS_NETWORK_UNREACHABLE`; 1231 / `WSAENETUNREACH` 10051).
    NetworkUnreachable,
    /// No route to the host (`STATUS_HOST_UNREACHABLE`; 1232 / `WSAEHOSTUNREACH` 10065).
    HostUnreachable,
    /// The socket is not connected (`STATUS_INVALID_CONNECTION`; `ERROR_UNEXP_NET_ERR` 59 /
    /// `WSAENOTCONN` 10057).
    NotConnected,
    /// The socket was shut down in this direction (`STATUS_PIPE_DISCONNECTED`;
    /// `ERROR_PIPE_NOT_CONNECTED` 233 / `WSAESHUTDOWN` 10058).
    Shutdown,
    /// A datagram was larger than the buffers and was truncated (`STATUS_BUFFER_OVERFLOW`, a
    /// warning; `ERROR_MORE_DATA` 234 / `WSAEMSGSIZE` 10040). The byte count says what was kept.
    MessageTooLong,
    /// An address area was too small (`STATUS_BUFFER_TOO_SMALL`; `ERROR_INSUFFICIENT_BUFFER` 122
    /// / `WSAEFAULT` 10014).
    BufferTooSmall,
    /// A file read started at or past the end of the file (`STATUS_END_OF_FILE`;
    /// `ERROR_HANDLE_EOF` 38).
    EndOfFile,
    /// The call would block (`STATUS_DEVICE_NOT_READY`; `ERROR_NOT_READY` 21 /
    /// `WSAEWOULDBLOCK` 10035).
    WouldBlock,
    /// The socket is already connected (`STATUS_CONNECTION_ACTIVE`; 1230 / `WSAEISCONN` 10056).
    AlreadyConnected,
    /// The address is in use (`STATUS_ADDRESS_ALREADY_EXISTS`; `ERROR_DUP_NAME` 52 /
    /// `WSAEADDRINUSE` 10048).
    AddressInUse,
    /// The address is not available here (`STATUS_INVALID_ADDRESS_COMPONENT`; 1214 /
    /// `WSAEADDRNOTAVAIL` 10049).
    AddressNotAvailable,
    /// An argument is invalid: an empty buffer list, an unbound socket for connect, a socket
    /// that is not listening for accept, ... (`STATUS_INVALID_PARAMETER`;
    /// `ERROR_INVALID_PARAMETER` 87 / `WSAEINVAL` 10022).
    InvalidArgument,
    /// The socket handle is closed or not a socket (`STATUS_INVALID_HANDLE`;
    /// `ERROR_INVALID_HANDLE` 6 / `WSAENOTSOCK` 10038).
    NotSocket,
    /// No buffer space or memory (`STATUS_INSUFFICIENT_RESOURCES`; 1450 / `WSAENOBUFS` 10055).
    NoBuffers,
    /// The operation is not supported on this socket (`STATUS_NOT_SUPPORTED`;
    /// `ERROR_NOT_SUPPORTED` 50 / `WSAEOPNOTSUPP` 10045).
    Unsupported,
    /// A buffer or address pointer was invalid (`STATUS_ACCESS_VIOLATION`; `ERROR_NOACCESS` 998
    /// / `WSAEFAULT` 10014).
    Fault,
    /// Permission denied (`STATUS_ACCESS_DENIED`; `ERROR_ACCESS_DENIED` 5 / `WSAEACCES` 10013).
    PermissionDenied,
    /// A wait timed out (`WAIT_TIMEOUT` 258). Distinct from [`ErrorKind::PortClosed`] (GQ-3).
    Timeout,
    /// The completion port was closed while or before waiting (`ERROR_ABANDONED_WAIT_0` 735, GQ-4).
    PortClosed,
    /// The port or object handle is closed or invalid (`ERROR_INVALID_HANDLE` 6).
    InvalidHandle,
    /// The handle is already associated with a completion port (`ERROR_INVALID_PARAMETER` 87,
    /// CP-4).
    AlreadyAssociated,
    /// Nothing was found to cancel (`ERROR_NOT_FOUND` 1168, CN-2).
    NotFound,
    /// The operation is still pending (`WSA_IO_INCOMPLETE` / `ERROR_IO_INCOMPLETE` 996, GR-1).
    IoIncomplete,
    /// An alertable wait ended because completion routines or APCs ran (`WAIT_IO_COMPLETION`
    /// 0xC0; GX-4 for [`CompletionPort::get_many_alertable`](crate::CompletionPort::get_many_alertable)).
    IoCompletion,
    /// The target thread has exited, so its APC queue is gone (`QueueUserAPC` fails with
    /// `ERROR_GEN_FAILURE` 31, AP-6).
    ThreadExited,
    /// Any other operating-system error; see [`Error::raw_os_error`].
    Other,
}

/// One row of the spec's §1.8 table: the NTSTATUS and its port and Winsock views.
struct Codes {
    ntstatus: Option<u32>,
    win32: u32,
    wsa: u32,
}

const fn codes(ntstatus: u32, win32: u32, wsa: u32) -> Codes {
    Codes { ntstatus: Some(ntstatus), win32, wsa }
}

const fn plain(win32: u32, wsa: u32) -> Codes {
    Codes { ntstatus: None, win32, wsa }
}

impl ErrorKind {
    fn codes(self) -> Codes {
        use win32::*;
        match self {
            Self::OperationAborted => codes(STATUS_CANCELLED, 995, 995),
            Self::ConnectionReset => codes(STATUS_CONNECTION_RESET, 64, 10054),
            Self::ConnectionAborted => codes(STATUS_CONNECTION_ABORTED, 1236, 10053),
            Self::ConnectionRefused => codes(STATUS_CONNECTION_REFUSED, 1225, 10061),
            Self::TimedOut => codes(STATUS_IO_TIMEOUT, 121, 10060),
            Self::NetworkUnreachable => codes(STATUS_NETWORK_UNREACHABLE, 1231, 10051),
            Self::HostUnreachable => codes(STATUS_HOST_UNREACHABLE, 1232, 10065),
            Self::NotConnected => codes(STATUS_INVALID_CONNECTION, 59, 10057),
            Self::Shutdown => codes(STATUS_PIPE_DISCONNECTED, 233, 10058),
            Self::MessageTooLong => codes(STATUS_BUFFER_OVERFLOW, 234, 10040),
            Self::BufferTooSmall => codes(STATUS_BUFFER_TOO_SMALL, 122, 10014),
            Self::EndOfFile => codes(STATUS_END_OF_FILE, 38, 10022),
            Self::WouldBlock => codes(STATUS_DEVICE_NOT_READY, 21, 10035),
            Self::AlreadyConnected => codes(STATUS_CONNECTION_ACTIVE, 1230, 10056),
            Self::AddressInUse => codes(STATUS_ADDRESS_ALREADY_EXISTS, 52, 10048),
            Self::AddressNotAvailable => codes(STATUS_INVALID_ADDRESS_COMPONENT, 1214, 10049),
            Self::InvalidArgument => codes(STATUS_INVALID_PARAMETER, 87, 10022),
            Self::NotSocket => codes(STATUS_INVALID_HANDLE, 6, 10038),
            Self::NoBuffers => codes(STATUS_INSUFFICIENT_RESOURCES, 1450, 10055),
            Self::Unsupported => codes(STATUS_NOT_SUPPORTED, 50, 10045),
            Self::PermissionDenied => codes(STATUS_ACCESS_DENIED, 5, 10013),
            Self::Fault => codes(STATUS_ACCESS_VIOLATION, 998, 10014),
            Self::Timeout => plain(WAIT_TIMEOUT, WAIT_TIMEOUT),
            Self::PortClosed => plain(ERROR_ABANDONED_WAIT_0, ERROR_ABANDONED_WAIT_0),
            Self::InvalidHandle => plain(ERROR_INVALID_HANDLE, ERROR_INVALID_HANDLE),
            Self::AlreadyAssociated => plain(ERROR_INVALID_PARAMETER, WSAEINVAL),
            Self::NotFound => plain(ERROR_NOT_FOUND, ERROR_NOT_FOUND),
            Self::IoIncomplete => plain(WSA_IO_INCOMPLETE, WSA_IO_INCOMPLETE),
            Self::IoCompletion => plain(WAIT_IO_COMPLETION, WAIT_IO_COMPLETION),
            Self::ThreadExited => plain(ERROR_GEN_FAILURE, ERROR_GEN_FAILURE),
            Self::Other => plain(ERROR_GEN_FAILURE, WSAEINVAL),
        }
    }

    /// The kind a Linux `errno` maps to (spec §8.3).
    pub fn from_errno(errno: i32) -> Self {
        match errno {
            libc::ECANCELED => Self::OperationAborted,
            libc::ECONNRESET | libc::EPIPE => Self::ConnectionReset,
            libc::ECONNABORTED => Self::ConnectionAborted,
            libc::ECONNREFUSED => Self::ConnectionRefused,
            libc::ETIMEDOUT => Self::TimedOut,
            libc::ENETUNREACH | libc::ENETDOWN => Self::NetworkUnreachable,
            libc::EHOSTUNREACH | libc::EHOSTDOWN => Self::HostUnreachable,
            libc::ENOTCONN => Self::NotConnected,
            libc::EMSGSIZE => Self::MessageTooLong,
            libc::EAGAIN => Self::WouldBlock,
            libc::EISCONN => Self::AlreadyConnected,
            libc::EADDRINUSE => Self::AddressInUse,
            libc::EADDRNOTAVAIL => Self::AddressNotAvailable,
            libc::EINVAL | libc::EDESTADDRREQ | libc::EAFNOSUPPORT => Self::InvalidArgument,
            libc::EBADF | libc::ENOTSOCK => Self::NotSocket,
            libc::ENOBUFS | libc::ENOMEM => Self::NoBuffers,
            libc::EOPNOTSUPP | libc::EPROTONOSUPPORT | libc::ENOPROTOOPT => Self::Unsupported,
            libc::EACCES | libc::EPERM => Self::PermissionDenied,
            libc::EFAULT => Self::Fault,
            libc::ETIME => Self::Timeout,
            _ => Self::Other,
        }
    }
}

/// An error from any `overlapped` call or completion.
///
/// Match on [`Error::kind`]; read the Windows codes with [`Error::win32_error`] (what
/// `GetLastError()` holds after `GetQueuedCompletionStatus`), [`Error::wsa_error`] (what
/// `WSAGetLastError()` / a completion routine's `dwError` holds) and [`Error::ntstatus`]; the
/// Linux error behind it with [`Error::raw_os_error`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Error {
    kind: ErrorKind,
    /// Never 0 (no call fails with errno 0), so that the whole error is 8 bytes: a completion
    /// packet, which holds one, is then copied in aligned words.
    errno: Option<NonZeroI32>,
}

impl Error {
    /// An error of this kind with no errno behind it.
    pub const fn new(kind: ErrorKind) -> Self {
        Self { kind, errno: None }
    }

    /// The error a Linux `errno` stands for (0, which no failing call sets, is kept as no
    /// errno: [`Error::raw_os_error`] is then `None`).
    pub fn from_errno(errno: i32) -> Self {
        Self { kind: ErrorKind::from_errno(errno), errno: NonZeroI32::new(errno) }
    }

    /// An error of `kind` that came from `errno` (the kind overrides the default mapping, as
    /// for `EPIPE` after a local shutdown, spec §8.3). An `errno` of 0 is kept as none.
    pub const fn with_errno(kind: ErrorKind, errno: i32) -> Self {
        Self { kind, errno: NonZeroI32::new(errno) }
    }

    /// What went wrong.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The NTSTATUS a completion with this error carries in `OVERLAPPED.Internal`, if the
    /// error is an operation status (`None` for wait and handle errors).
    pub fn ntstatus(&self) -> Option<u32> {
        self.kind.codes().ntstatus
    }

    /// The port view (spec §1.8): the Win32 code `GetLastError()` returns after
    /// `GetQueuedCompletionStatus` or `GetOverlappedResult` (e.g. 64 `ERROR_NETNAME_DELETED`
    /// for a reset connection, 258 `WAIT_TIMEOUT`, 735 `ERROR_ABANDONED_WAIT_0`).
    pub fn win32_error(&self) -> u32 {
        self.kind.codes().win32
    }

    /// The Winsock view (spec §1.8): the code `WSAGetLastError()` returns after
    /// `WSAGetOverlappedResult`, or a completion routine receives (e.g. 10054 `WSAECONNRESET`).
    pub fn wsa_error(&self) -> u32 {
        self.kind.codes().wsa
    }

    /// The Linux `errno` this error came from, if it came from one.
    pub const fn raw_os_error(&self) -> Option<i32> {
        match self.errno {
            Some(errno) => Some(errno.get()),
            None => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => Self::from_errno(errno),
            None => Self::new(match e.kind() {
                io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
                io::ErrorKind::TimedOut => ErrorKind::Timeout,
                io::ErrorKind::Unsupported => ErrorKind::Unsupported,
                _ => ErrorKind::Other,
            }),
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e.raw_os_error() {
            Some(errno) => io::Error::from_raw_os_error(errno),
            None => io::Error::other(e),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("win32", &self.win32_error())
            .field("wsa", &self.wsa_error())
            .field("errno", &self.raw_os_error())
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (Win32 {}, WSA {}", self.kind, self.win32_error(), self.wsa_error())?;
        if let Some(errno) = self.raw_os_error() {
            write!(f, ", {}", io::Error::from_raw_os_error(errno))?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for Error {}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_winsock_views_differ_as_the_spec_table_says() {
        let reset = Error::from_errno(libc::ECONNRESET);
        assert_eq!(reset.kind(), ErrorKind::ConnectionReset);
        assert_eq!(reset.win32_error(), 64);
        assert_eq!(reset.wsa_error(), 10054);
        assert_eq!(reset.ntstatus(), Some(0xC000_020D));
        let aborted = Error::new(ErrorKind::ConnectionAborted);
        assert_eq!((aborted.win32_error(), aborted.wsa_error()), (1236, 10053));
        let cancelled = Error::from_errno(libc::ECANCELED);
        assert_eq!((cancelled.win32_error(), cancelled.wsa_error()), (995, 995));
        let truncated = Error::from_errno(libc::EMSGSIZE);
        assert_eq!((truncated.win32_error(), truncated.wsa_error()), (234, 10040));
    }

    #[test]
    fn an_error_and_a_status_fit_in_one_word() {
        assert_eq!(std::mem::size_of::<Error>(), 8);
        assert_eq!(std::mem::size_of::<Result<(), Error>>(), 8);
        assert_eq!(Error::with_errno(ErrorKind::Other, 0).raw_os_error(), None, "errno 0 is no errno");
    }

    #[test]
    fn io_error_round_trip_keeps_errno() {
        let e: io::Error = Error::from_errno(libc::ECONNREFUSED).into();
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
        let back = Error::from(e);
        assert_eq!(back.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(back.win32_error(), 1225);
    }
}
