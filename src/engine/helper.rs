//! The helper thread: reaps an engine that has operations in flight and nobody waiting on it
//! (a thread that never waits, a routine whose thread waits on a port, the next step of a
//! multi-step operation nobody waits for), so that every operation completes and frees its
//! record and descriptor. It looks every [`TICK`] while operations are in flight and sleeps
//! otherwise; a waiting thread takes an engine over from it (`lead.rs`). It is never on the path
//! of a thread that waits: nobody wakes it but the first submission after it went idle.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// How often the helper looks at the engines while operations are in flight: the longest an
/// operation nobody waits for waits to be reaped, about twice this.
pub(crate) const TICK: Duration = Duration::from_millis(5);
/// How long the helper sleeps when nothing was in flight at its last look (a submission wakes
/// it sooner).
const IDLE: Duration = Duration::from_secs(1);

static HELPER: OnceLock<Option<Thread>> = OnceLock::new();
/// The helper sleeps because nothing was in flight.
static SLEEPING: AtomicBool = AtomicBool::new(false);

/// Starts the helper thread, once per process. If it cannot be started, operations nobody waits
/// for are reaped by the next thread that waits or observes.
pub(crate) fn ensure_started() {
    HELPER.get_or_init(|| {
        std::thread::Builder::new().name("overlapped-helper".into()).spawn(run).ok().map(|h| h.thread().clone())
    });
}

/// An operation was submitted: wake the helper if it sleeps for want of work.
pub(crate) fn note_busy() {
    if SLEEPING.load(Ordering::Relaxed) && SLEEPING.swap(false, Ordering::AcqRel) {
        if let Some(Some(t)) = HELPER.get() {
            t.unpark();
        }
    }
}

fn run() {
    loop {
        let busy = super::all().any(|e| e.in_flight() > 0);
        if busy {
            // Reaping an abandoned engine blocks in it for up to a tick; with none, just wait.
            let mut rescued = false;
            for engine in super::all() {
                rescued |= engine.rescue_if_abandoned(TICK);
            }
            if !rescued {
                std::thread::park_timeout(TICK);
            }
        } else {
            SLEEPING.store(true, Ordering::Release);
            std::thread::park_timeout(IDLE);
            SLEEPING.store(false, Ordering::Release);
        }
    }
}
