//! # overlapped
//!
//! Windows completion-based socket I/O on Linux, at io_uring speed: overlapped operations
//! notified through event objects, completion routines, or I/O completion ports with their
//! concurrency and last-in first-out wake-up rules, following the behaviour of Windows rule by
//! rule (the spec: `iocp-semantics.md`; rule ids such as CP-4
//! are cited in the docs).
//!
//! ## The completion-port model (lecture §3)
//! ```no_run
//! use overlapped::{BufList, CompletionPort, MsgFlags, Overlapped, Socket};
//!
//! # fn main() -> Result<(), overlapped::Error> {
//! let port: CompletionPort<u32> = CompletionPort::new(0)?; // CreateIoCompletionPort
//! let listener = Socket::listen_tcp("127.0.0.1:9000".parse().unwrap(), 128)?;
//! port.associate(&listener, 0)?; // CreateIoCompletionPort(listener, port, 0, 0)
//! listener.accept(Overlapped::new(0))?; // AcceptEx
//! loop {
//!     let done = port.get(None)?; // GetQueuedCompletionStatus
//!     let mut ov = done.overlapped.expect("an I/O packet");
//!     if let Some(accepted) = ov.take_accepted() {
//!         port.associate(&accepted.socket, 1)?;
//!         accepted.socket.recv(Overlapped::with_buffers(1, BufList::with_capacity(4096)), MsgFlags::NONE)?;
//!         listener.accept(ov)?;
//!     }
//! #   break;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Overlapped I/O with event objects (lecture §1)
//! ```no_run
//! use overlapped::{BufList, Event, MsgFlags, Overlapped, Socket, Wait, wait_for_events};
//!
//! # fn main() -> Result<(), overlapped::Error> {
//! # let client: Socket = todo!();
//! let event = Event::new(); // WSACreateEvent
//! let ov = Overlapped::with_buffers((), BufList::with_capacity(4096)).with_event(event.clone());
//! let mut io = client.recv(ov, MsgFlags::NONE)?.into_pending_io().expect("no port"); // WSARecv
//! if let Wait::Signaled(0) = wait_for_events(&[event], false, None, false)? {
//!     let ov = io.overlapped_result(false)?; // WSAGetOverlappedResult
//!     println!("{} bytes", ov.result()?);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Overlapped I/O with completion routines (lecture §2)
//! ```no_run
//! use overlapped::{BufList, MsgFlags, Overlapped, Socket, sleep_ex};
//!
//! # fn main() -> Result<(), overlapped::Error> {
//! # let client: Socket = todo!();
//! let ov = Overlapped::with_buffers((), BufList::with_capacity(4096))
//!     .with_completion_routine(|error, bytes, _ov, _flags| println!("{bytes} bytes, {error:?}"));
//! client.recv(ov, MsgFlags::NONE)?; // WSARecv with lpCompletionRoutine
//! sleep_ex(None, true); // SleepEx(INFINITE, TRUE): the routine runs here, on this thread
//! # Ok(())
//! # }
//! ```
//!
//! ## Backends
//! io_uring when it can be set up, epoll otherwise, chosen at run time; forced with
//! `OVERLAPPED_BACKEND=io_uring|epoll`, [`PortBuilder::backend`] or [`with_default_backend`].
//! The API and the behaviour are the same on both ([`Backend`]).
//!
//! ## Safety
//! The public API is safe: an operation owns its buffers from the call until its completion
//! hands them back, so dropping or closing a socket or a port mid-operation cannot free memory
//! the kernel still writes. `unsafe` code lives in the few modules that touch the ring, raw
//! buffers, and system calls, each block with a `SAFETY` comment.

pub mod win32;

mod apc;
mod buf;
mod driver;
mod engine;
mod error;
mod event;
mod lock;
mod op;
mod overlapped;
mod pending;
mod port;
mod routine;
mod socket;
mod sys;
mod wait;

pub use apc::{ThreadHandle, sleep_ex};
pub use buf::BufList;
pub use driver::{Backend, with_default_backend};
pub use engine::engine_backend;
pub use error::{Error, ErrorKind, Result};
pub use event::Event;
pub use overlapped::{Overlapped, OverlappedId};
pub use pending::PendingIo;
pub use port::{Completion, CompletionPort, PortBuilder, PostError};
pub use routine::CompletionRoutine;
pub use socket::{Accepted, Domain, Issued, MsgFlags, Protocol, Rejected, Shutdown, Socket, Type};
pub use wait::{MAXIMUM_WAIT_EVENTS, Wait, wait_for_any_events, wait_for_events};

/// Runs `f` as a blocking section: while it runs, the calling thread does not count toward the
/// concurrency of the completion port it is running for, so the port may release another
/// waiting thread (CC-3, CC-6). Linux cannot tell a library when a thread blocks in foreign
/// code; wrap long blocking calls in this so the port knows (spec §8.4.1).
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    port::worker::blocking(f)
}
