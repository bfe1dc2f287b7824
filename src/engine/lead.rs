//! Who reaps an engine: of the threads waiting on it, one *leads* (blocks in the backend and
//! reaps for everyone) and the others *follow* (sleep on their wait blocks).
//!
//! - A thread that must sleep in a wait an engine's completions can end leads if nobody does,
//!   or if the leader is not in the backend right now; otherwise it follows: it parks until its
//!   wait block is notified (its event set, an APC queued, the backend handed to it) or its
//!   deadline passes.
//! - Leadership is sticky: a leader whose wait returns keeps it while it runs, so that a server
//!   thread that waits again at once leads again without waking anybody, and an idle thread
//!   that also waits on the engine stays asleep. It hands the backend to the most recent
//!   follower when it leaves the backend with completions still to reap.
//! - A leader that stays away (it runs, or blocks elsewhere) while followers wait or operations
//!   are in flight loses leadership to the helper thread (`helper.rs`) within a few ticks, which
//!   wakes the most recent follower or reaps itself. A waiting thread that finds the helper
//!   leading asks it to step down and takes over.
//! - A notification meant for the leader reaches it in the backend: its wait block names the
//!   engine it is blocked in, and notifying the block wakes that engine's backend.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Engine;
use crate::port::worker;
use crate::wait::block::WaitBlock;

/// The leader id of the helper thread.
const HELPER: u64 = u64::MAX;

#[derive(Default)]
pub(crate) struct LeadState {
    /// The thread leading, by [`worker::id`].
    leader: Option<u64>,
    /// The leader is blocked in the backend (or about to be).
    in_backend: bool,
    /// A waiting thread asked the helper, which leads, to step down.
    takeover: bool,
    /// Threads waiting while another leads, most recent last.
    followers: Vec<Arc<WaitBlock>>,
}

impl LeadState {
    pub(crate) fn has_leader_in_backend(&self) -> bool {
        self.leader.is_some() && self.in_backend
    }

    /// Takes `block` off the followers; if nobody leads, the most recent follower left is told
    /// to take over.
    fn remove_follower(&mut self, block: &Arc<WaitBlock>) {
        if let Some(at) = self.followers.iter().rposition(|f| Arc::ptr_eq(f, block)) {
            self.followers.remove(at);
        }
        if self.leader.is_none() {
            self.hand_over();
        }
    }

    /// Tells the most recent follower that nobody leads.
    fn hand_over(&self) {
        if let Some(next) = self.followers.last() {
            next.notify();
        }
    }
}

/// One wait's part in driving engines: the engine it drove, whose submissions made while
/// reaping go to the kernel when the wait ends.
pub(crate) struct Driving {
    drove: Option<&'static Engine>,
}

impl Driving {
    pub(crate) fn new() -> Self {
        Self { drove: None }
    }

    /// Sleeps until `block` is notified or `deadline` passes, leading `engine` (blocking in its
    /// backend and reaping its completions) if nobody else does, following otherwise. The
    /// caller re-checks what it waits for and calls again.
    pub(crate) fn sleep(&mut self, engine: &'static Engine, block: &Arc<WaitBlock>, deadline: Option<Instant>) {
        let me = worker::id();
        if !engine.enter_backend(me, block) {
            block.park(deadline);
            engine.lead.lock().remove_follower(block);
            return;
        }
        self.drove = Some(engine);
        block.enter_engine(engine.index);
        // Dekker with `WaitBlock::notify`: the block names the engine before it reads its
        // notification, so a notification either is seen here or wakes the backend.
        if !block.is_notified() {
            engine.drive(deadline.map(|d| d.saturating_duration_since(Instant::now())));
        }
        block.leave_engine();
        engine.leave_backend(me);
    }

    /// Hands what the wait deferred while reaping to the kernel (before it returns or runs
    /// APCs).
    pub(crate) fn release(&mut self) {
        if let Some(engine) = self.drove.take() {
            engine.driver.flush();
        }
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        self.release();
    }
}

impl Engine {
    /// Takes the backend if nobody leads, this thread leads already, or the leader is away
    /// from the backend (returns true); otherwise joins the followers (and, if the helper
    /// leads, asks it to step down).
    fn enter_backend(&self, me: u64, block: &Arc<WaitBlock>) -> bool {
        let mut st = self.lead.lock();
        let free = match st.leader {
            None => true,
            Some(l) => l == me || (l != HELPER && !st.in_backend),
        };
        if free {
            st.leader = Some(me);
            st.in_backend = true;
            return true;
        }
        st.followers.push(Arc::clone(block));
        let ask_helper = st.leader == Some(HELPER) && !std::mem::replace(&mut st.takeover, true);
        drop(st);
        if ask_helper {
            self.driver.wake();
        }
        false
    }

    /// The leader is back from the backend. It stays the leader; if completions are waiting
    /// and a follower sleeps, the follower takes the backend over.
    fn leave_backend(&self, me: u64) {
        let mut st = self.lead.lock();
        if st.leader != Some(me) {
            return;
        }
        st.in_backend = false;
        if !st.followers.is_empty() && self.driver.has_completions() {
            st.leader = None;
            st.hand_over();
        }
    }

    /// Called by the helper thread. A leader away from the backend that has not driven since
    /// the helper's last look loses leadership to the most recent follower. With no leader and
    /// no follower but operations in flight, the helper reaps itself for up to `wait` (or until
    /// a waiting thread takes over). Returns whether it reaped.
    pub(super) fn rescue_if_abandoned(&self, wait: Duration) -> bool {
        {
            let mut st = self.lead.lock();
            let drives = self.drives.load(Ordering::Relaxed);
            let moved = self.drives_seen.swap(drives, Ordering::Relaxed) != drives;
            if moved || st.in_backend {
                return false;
            }
            if st.leader.is_some() || !st.followers.is_empty() {
                st.leader = None;
                st.hand_over();
                return false;
            }
            if self.in_flight() == 0 {
                return false;
            }
            st.leader = Some(HELPER);
            st.in_backend = true;
            st.takeover = false;
        }
        // Not counted in `drives`: the engine stays abandoned until a waiting thread drives it.
        self.reap(|on_complete| self.driver.wait(Some(wait), on_complete));
        self.driver.flush();
        let mut st = self.lead.lock();
        st.leader = None;
        st.in_backend = false;
        st.takeover = false;
        st.hand_over();
        true
    }
}
