//! Who reaps an engine: of the threads waiting on it, one *leads* (blocks in the backend and
//! reaps for everyone) and the others *follow* (sleep on their wait blocks).
//!
//! - A thread that must sleep in a wait an engine's completions can end leads if nobody does,
//!   and stays the leader until its wait returns ([`Driving`]'s drop), however often it goes
//!   back into the backend meanwhile.
//! - Otherwise it follows: it parks until its wait block is notified (its event set, an APC
//!   queued, or the leader leaving) or its deadline passes.
//! - A leader leaving hands the backend to the most recent follower by notifying it; a follower
//!   leaving while nobody leads passes that on to the next. So while anyone waits on an engine,
//!   someone leads it.
//! - A notification meant for the leader reaches it in the backend: its wait block names the
//!   engine it is blocked in, and notifying the block wakes that engine's backend.
//! - The helper thread (`helper.rs`) may lead an engine nobody waits on; a waiting thread that
//!   finds it leading asks it to step down and takes over.

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
    /// A waiting thread asked the helper, which leads, to step down.
    takeover: bool,
    /// Threads waiting while another leads, most recent last.
    followers: Vec<Arc<WaitBlock>>,
}

impl LeadState {
    pub(crate) fn has_leader(&self) -> bool {
        self.leader.is_some()
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

/// One wait's part in driving engines: the engine it leads, if any, led until the wait ends.
pub(crate) struct Driving {
    leading: Option<&'static Engine>,
}

impl Driving {
    pub(crate) fn new() -> Self {
        Self { leading: None }
    }

    /// Sleeps until `block` is notified or `deadline` passes, leading `engine` (blocking in its
    /// backend and reaping its completions) if nobody else does, following otherwise. The
    /// caller re-checks what it waits for and calls again.
    pub(crate) fn sleep(&mut self, engine: &'static Engine, block: &Arc<WaitBlock>, deadline: Option<Instant>) {
        // A thread leads at most one engine: while it leads one, it drives that one.
        let engine = self.leading.unwrap_or(engine);
        if self.leading.is_none() && !engine.try_lead(block) {
            block.park(deadline);
            engine.lead.lock().remove_follower(block);
            return;
        }
        self.leading = Some(engine);
        block.enter_engine(engine.index);
        // Dekker with `WaitBlock::notify`: the block names the engine before it reads its
        // notification, so a notification either is seen here or wakes the backend.
        if !block.is_notified() {
            engine.drive(deadline.map(|d| d.saturating_duration_since(Instant::now())));
        }
        block.leave_engine();
    }

    /// Stops leading (before the wait runs APCs, whose own waits must be able to lead).
    pub(crate) fn release(&mut self) {
        if let Some(engine) = self.leading.take() {
            engine.step_down();
        }
    }
}

impl Drop for Driving {
    fn drop(&mut self) {
        self.release();
    }
}

impl Engine {
    /// Leads if nobody does (returns true); otherwise joins the followers (and, if the helper
    /// leads, asks it to step down).
    fn try_lead(&self, block: &Arc<WaitBlock>) -> bool {
        let mut st = self.lead.lock();
        if st.leader.is_none() {
            st.leader = Some(worker::id());
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

    /// The leader's wait is over: what it deferred goes to the kernel, and the most recent
    /// follower takes over.
    fn step_down(&self) {
        self.driver.flush();
        let mut st = self.lead.lock();
        st.leader = None;
        st.hand_over();
    }

    /// Called by the helper thread: if operations are in flight and nobody has entered the
    /// backend since the helper's last look, reaps for up to `wait` (or until a waiting thread
    /// takes over). Returns whether it did.
    pub(super) fn rescue_if_abandoned(&self, wait: Duration) -> bool {
        {
            let mut st = self.lead.lock();
            let drives = self.drives.load(Ordering::Relaxed);
            let moved = self.drives_seen.swap(drives, Ordering::Relaxed) != drives;
            if st.leader.is_some() || moved || self.in_flight() == 0 {
                return false;
            }
            st.leader = Some(HELPER);
            st.takeover = false;
        }
        // Not counted in `drives`: the engine stays abandoned until a waiting thread drives it.
        self.reap(|on_complete| self.driver.wait(Some(wait), on_complete));
        self.driver.flush();
        let mut st = self.lead.lock();
        st.leader = None;
        st.takeover = false;
        st.hand_over();
        true
    }
}
