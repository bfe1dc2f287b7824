//! I/O completion ports (lecture §3, spec §2).

pub(crate) mod core;
mod state;
pub(crate) mod worker;

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::core::{Packet, PortCore};
use crate::driver::Backend;
use crate::error::{Error, ErrorKind};
use crate::op::RawOp;
use crate::overlapped::Overlapped;
use crate::socket::Socket;
use crate::socket::inner::Association;

/// An I/O completion port (`CreateIoCompletionPort`), carrying records of context type `C`.
///
/// Sockets are associated with the port and a completion key ([`CompletionPort::associate`]);
/// their overlapped operations complete as packets that worker threads take with
/// [`CompletionPort::get`] (`GetQueuedCompletionStatus`). At most `concurrency` threads run at
/// once (a thread runs from taking a packet until its next `get` on this port); waiting threads
/// are released last-in first-out (CC-4).
///
/// Cloning copies the handle. [`CompletionPort::close`], or dropping the last clone, closes
/// the port (`CloseHandle`): every waiter wakes with [`ErrorKind::PortClosed`], queued packets
/// are dropped, and operations in flight on associated sockets are cancelled; their records
/// are freed once the kernel has returned them.
///
/// # Implementation notes
/// On io_uring, each port owns one ring. There is no reaper thread: a waiting worker blocks in
/// the ring and reaps completions itself (spec §8.1). Operations issued by a worker between two
/// `get` calls are submitted together with its next wait, in one system call. A thread counts
/// as blocked (outside `active`) only inside this library's waits and [`crate::blocking`]
/// sections; blocking elsewhere is invisible to the port (spec §8.4.1).
pub struct CompletionPort<C: Send + 'static = ()> {
    handle: Arc<PortHandle>,
    _context: PhantomData<fn(C) -> C>,
}

struct PortHandle {
    core: Arc<PortCore>,
}

impl Drop for PortHandle {
    fn drop(&mut self) {
        self.core.close();
    }
}

impl<C: Send + 'static> Clone for CompletionPort<C> {
    fn clone(&self) -> Self {
        Self { handle: self.handle.clone(), _context: PhantomData }
    }
}

/// A completion packet, as `GetQueuedCompletionStatus` returns it.
pub struct Completion<C: Send + 'static> {
    /// `lpCompletionKey`: the key the socket was associated with, or the posted key.
    pub key: usize,
    /// `lpNumberOfBytes`: bytes transferred (may be partial on failure, GQ-2), or the posted
    /// count.
    pub bytes: usize,
    /// The operation's status: `Ok` where GQCS returns TRUE; the error where it returns FALSE
    /// with a non-NULL overlapped (GQ-2), including a truncated datagram (a warning, 1.6).
    pub status: Result<(), Error>,
    /// `lpOverlapped`: the operation's record, with its buffers and context; `None` for a
    /// packet posted without one (GQ-5).
    pub overlapped: Option<Overlapped<C>>,
}

impl<C: Send + 'static> Completion<C> {
    /// The bytes transferred, or the operation's error.
    pub fn result(&self) -> Result<usize, Error> {
        self.status.map(|()| self.bytes)
    }
}

impl<C: Send + 'static> fmt::Debug for Completion<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("key", &self.key)
            .field("bytes", &self.bytes)
            .field("status", &self.status)
            .field("overlapped", &self.overlapped.as_ref().map(Overlapped::id))
            .finish()
    }
}

/// A packet that could not be posted, with its record handed back.
pub struct PostError<C: Send + 'static> {
    /// Why (the port is closed: [`ErrorKind::InvalidHandle`]).
    pub error: Error,
    /// The record that was to be posted.
    pub overlapped: Option<Overlapped<C>>,
}

impl<C: Send + 'static> fmt::Debug for PostError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostError").field("error", &self.error).finish_non_exhaustive()
    }
}

/// Options for a new port.
#[derive(Clone, Debug, Default)]
pub struct PortBuilder {
    concurrency: usize,
    backend: Option<Backend>,
}

impl PortBuilder {
    /// `NumberOfConcurrentThreads`: how many threads may run at once; 0 (the default) means the
    /// number of CPUs this process may run on (CP-5, spec §8.4.2).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Forces a backend instead of choosing one.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// `CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, concurrency)`.
    pub fn build<C: Send + 'static>(self) -> Result<CompletionPort<C>, Error> {
        let core = PortCore::new(self.concurrency, self.backend)?;
        Ok(CompletionPort { handle: Arc::new(PortHandle { core: Arc::new(core) }), _context: PhantomData })
    }
}

/// When a wait of `timeout` ends; `None` (no deadline) also for a timeout too long to represent.
fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| Instant::now().checked_add(t))
}

impl<C: Send + 'static> CompletionPort<C> {
    /// `CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, concurrency)`: a new port; a
    /// `concurrency` of 0 means the number of CPUs (CP-5).
    pub fn new(concurrency: usize) -> Result<Self, Error> {
        PortBuilder::default().concurrency(concurrency).build()
    }

    /// Options for a new port.
    pub fn builder() -> PortBuilder {
        PortBuilder::default()
    }

    fn core(&self) -> &Arc<PortCore> {
        &self.handle.core
    }

    /// The concurrency value in effect.
    pub fn concurrency(&self) -> usize {
        self.core().concurrency()
    }

    /// The backend running this port's operations.
    pub fn backend(&self) -> Backend {
        self.core().backend()
    }

    /// `CreateIoCompletionPort(socket, port, key, 0)`: from now on the socket's overlapped
    /// operations complete to this port with `key` (CP-6). A socket belongs to one port for
    /// its whole life: a second association fails with [`ErrorKind::AlreadyAssociated`]
    /// (`ERROR_INVALID_PARAMETER`) and leaves the first intact (CP-4). A closed socket gives
    /// [`ErrorKind::NotSocket`], a closed port [`ErrorKind::InvalidHandle`].
    pub fn associate(&self, socket: &Socket, key: usize) -> Result<(), Error> {
        if self.core().is_closed() {
            return Err(Error::new(ErrorKind::InvalidHandle));
        }
        socket.inner().associate(Association { port: self.core().clone(), key, context_type: TypeId::of::<C>() })
    }

    /// `GetQueuedCompletionStatus(port, &bytes, &key, &overlapped, timeout)`: waits for a packet.
    /// `timeout`: `None` waits forever (`INFINITE`), `Some(Duration::ZERO)` polls.
    ///
    /// A packet comes back as a [`Completion`], whatever its operation's status (GQ-1, GQ-2).
    /// Errors: [`ErrorKind::Timeout`] (`WAIT_TIMEOUT`, GQ-3); [`ErrorKind::PortClosed`]
    /// (`ERROR_ABANDONED_WAIT_0`) if the port is closed before or during the wait (GQ-4). The
    /// wait is not alertable (GQ-6).
    pub fn get(&self, timeout: Option<Duration>) -> Result<Completion<C>, Error> {
        let packet = self.core().get(deadline(timeout), false)?;
        Ok(self.completion(packet))
    }

    /// `GetQueuedCompletionStatusEx`: waits like [`CompletionPort::get`] for the first packet,
    /// then takes up to `max - 1` more that are already queued, in FIFO order, appending them
    /// to `out` (GX-1, GX-5). Returns how many were added. Each entry has its own status (GX-2).
    pub fn get_many(
        &self,
        out: &mut Vec<Completion<C>>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        self.get_many_ex(out, max, timeout, false)
    }

    /// `GetQueuedCompletionStatusEx` with `fAlertable = TRUE`: like
    /// [`CompletionPort::get_many`], but while no packet is there, completion routines and APCs
    /// queued to this thread run, and the call then fails with [`ErrorKind::IoCompletion`]
    /// (`WAIT_IO_COMPLETION`). Packets win: when one can be taken it is returned and the APCs
    /// stay queued (GX-4).
    pub fn get_many_alertable(
        &self,
        out: &mut Vec<Completion<C>>,
        max: usize,
        timeout: Option<Duration>,
    ) -> Result<usize, Error> {
        self.get_many_ex(out, max, timeout, true)
    }

    fn get_many_ex(
        &self,
        out: &mut Vec<Completion<C>>,
        max: usize,
        timeout: Option<Duration>,
        alertable: bool,
    ) -> Result<usize, Error> {
        if max == 0 {
            return Err(Error::new(ErrorKind::InvalidArgument));
        }
        let first = self.core().get(deadline(timeout), alertable)?;
        out.push(self.completion(first));
        let mut n = 1;
        self.core().take_extra(max - 1, |p| {
            out.push(self.completion(p));
            n += 1;
        });
        Ok(n)
    }

    /// `PostQueuedCompletionStatus(port, bytes, key, overlapped)`: queues a packet carrying
    /// exactly these values with a success status (PQ-1); it shares the queue and the
    /// concurrency rules with I/O packets (PQ-2). The lecture's worker-shutdown idiom posts one
    /// such packet per worker (PQ-3). A closed port refuses it ([`ErrorKind::InvalidHandle`]),
    /// handing the record back.
    pub fn post(&self, bytes: usize, key: usize, overlapped: Option<Overlapped<C>>) -> Result<(), PostError<C>> {
        let op = overlapped.map(|ov| RawOp::new(ov.into_record()));
        let packet = Packet { key, bytes, status: Ok(()), op };
        self.core().reap_before_post();
        self.core().post(packet).map_err(|p| PostError {
            error: Error::new(ErrorKind::InvalidHandle),
            overlapped: p.op.map(Overlapped::from_raw),
        })
    }

    /// `CloseHandle(port)`: see the type's docs (CL-1). Further calls on any clone fail with
    /// [`ErrorKind::PortClosed`] or [`ErrorKind::InvalidHandle`].
    pub fn close(&self) {
        self.core().close();
    }

    /// Whether the port was closed.
    pub fn is_closed(&self) -> bool {
        self.core().is_closed()
    }

    fn completion(&self, p: Packet) -> Completion<C> {
        Completion { key: p.key, bytes: p.bytes, status: p.status, overlapped: p.op.map(Overlapped::from_raw) }
    }
}

impl<C: Send + 'static> fmt::Debug for CompletionPort<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompletionPort")
            .field("concurrency", &self.concurrency())
            .field("backend", &self.backend())
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_too_long_to_represent_waits_forever_instead_of_panicking() {
        assert_eq!(deadline(Some(Duration::MAX)), None);
        assert_eq!(deadline(None), None);
        let soon = deadline(Some(Duration::from_millis(5))).expect("a finite deadline");
        assert!(soon > Instant::now() - Duration::from_secs(1));
    }
}
