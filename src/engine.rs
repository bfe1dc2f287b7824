//! The process's completion engine for operations that complete without a port: those
//! notified through an event or a completion routine (spec 1.7, §8.1: the kernel side of
//! "set the event" and "queue the APC").
//!
//! It is a private completion port with its own ring, and one thread that waits on it. That
//! thread reaps each completion, writes the result into the record and hands the record to
//! its notification (the caller's [`PendingIo`](crate::PendingIo) slot and event), as the
//! Windows kernel does on I/O completion; it runs no application code. It starts with the first
//! such operation and lives as long as the process.

use std::sync::{Arc, OnceLock};

use crate::driver::Backend;
use crate::error::{Error, ErrorKind};
use crate::port::core::PortCore;

static ENGINE: OnceLock<Result<Arc<PortCore>, Error>> = OnceLock::new();

/// The engine, started on first use. Fails if no backend can be set up.
pub(crate) fn get() -> Result<&'static PortCore, Error> {
    match ENGINE.get_or_init(start) {
        Ok(core) => Ok(core),
        Err(e) => Err(*e),
    }
}

/// The backend that runs operations not tied to a completion port (the event and
/// completion-routine models), starting it if it is not running yet. A server can call this
/// at start-up to report the backend, and so that the engine's descriptors exist before it
/// counts its own.
pub fn engine_backend() -> Result<Backend, Error> {
    get().map(PortCore::backend)
}

/// The engine if it runs already (every operation on it started it).
pub(crate) fn running() -> Option<&'static PortCore> {
    ENGINE.get().and_then(|r| r.as_ref().ok()).map(|c| &**c)
}

fn start() -> Result<Arc<PortCore>, Error> {
    let core = Arc::new(PortCore::new(1, None)?);
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
