//! The process's completion engine for operations that complete without a port: those
//! notified through an event or a completion routine (spec 1.7, §8.1: the kernel side of
//! "set the event" and "queue the APC").
//!
//! It is a private completion port (one per backend: io_uring, epoll) with one thread that
//! waits on it. That
//! thread reaps each completion, writes the result into the record and hands the record to
//! its notification (the caller's [`PendingIo`](crate::PendingIo) slot and event), as the
//! Windows kernel does on I/O completion; it runs no application code. It starts with the first
//! such operation and lives as long as the process.

use std::sync::{Arc, OnceLock};

use crate::driver::{self, Backend};
use crate::error::{Error, ErrorKind};
use crate::port::core::PortCore;

/// One engine per backend, so that both can serve one process (the test suite runs every
/// test on each).
static ENGINES: [OnceLock<Result<Arc<PortCore>, Error>>; Backend::ALL.len()] = [const { OnceLock::new() }; 2];

fn slot(backend: Backend) -> &'static OnceLock<Result<Arc<PortCore>, Error>> {
    let i = Backend::ALL.iter().position(|b| *b == backend).unwrap_or(0);
    &ENGINES[i]
}

/// The engine of `backend`, started on first use. Fails if the backend cannot be set up.
pub(crate) fn get(backend: Backend) -> Result<&'static PortCore, Error> {
    match slot(backend).get_or_init(|| start(backend)) {
        Ok(core) => Ok(core),
        Err(e) => Err(*e),
    }
}

/// The backend that runs operations not tied to a completion port (the event and
/// completion-routine models), starting it if it is not running yet. A server can call this
/// at start-up to report the backend, and so that the engine's descriptors exist before it
/// counts its own.
pub fn engine_backend() -> Result<Backend, Error> {
    let backend = driver::default_backend()?;
    get(backend).map(PortCore::backend)
}

/// The engine of `backend` if it runs already (every operation on it started it).
pub(crate) fn running(backend: Backend) -> Option<&'static PortCore> {
    slot(backend).get().and_then(|r| r.as_ref().ok()).map(|c| &**c)
}

fn start(backend: Backend) -> Result<Arc<PortCore>, Error> {
    let core = Arc::new(PortCore::new(1, Some(backend))?);
    let reaper = Arc::clone(&core);
    std::thread::Builder::new().name("overlapped-engine".into()).spawn(move || reap(&reaper))?;
    Ok(core)
}

/// The engine thread: waits on the engine's ring for ever. Completions are handed to their
/// notification while they are reaped (`PortCore::on_completion`), so no packet is ever queued
/// here; one that were would be handed on the same way.
fn reap(core: &Arc<PortCore>) {
    loop {
        match core.get(None, false) {
            Ok(packet) => drop(packet),
            Err(e) if e.kind() == ErrorKind::PortClosed => return,
            Err(_) => {}
        }
    }
}
