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

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Engine;
use crate::port::worker;
use crate::wait::block::WaitBlock;

/// The leader id of the helper thread.
const HELPER: u64 = u64::MAX;

thread_local! {
    /// The engine this thread led last (its index plus one; 0: none): a hint, not cleared
    /// when leadership is taken away, used only to let receives wait for the next wait.
    static LED: Cell<usize> = const { Cell::new(0) };
}

/// Whether this thread was the last to lead engine `index` (a hint: see `Engine::submit`).
pub(crate) fn led_last(index: usize) -> bool {
    LED.try_with(Cell::get).unwrap_or(0) == index + 1
}

fn set_led(led: Option<usize>) {
    let _ = LED.try_with(|l| l.set(led.map_or(0, |i| i + 1)));
}

#[derive(Default)]
pub(crate) struct LeadState {
    /// The thread leading, by [`worker::id`].
    leader: Option<u64>,
    /// The leader is blocked in the backend, about to be, or was handed the backend and has
    /// not woken yet: nobody else may enter.
    in_backend: bool,
    /// The leader, blocked in the backend, is asked to leave it to the most recent follower
    /// (it is the helper, or it sat there idle while others waited).
    takeover: bool,
    /// Threads waiting while another leads, most recent last, with whether each let the
    /// backend go because it reaped only for others (those come last in line).
    followers: Vec<Follower>,
}

struct Follower {
    id: u64,
    block: Arc<WaitBlock>,
    yielded: bool,
}

impl LeadState {
    pub(crate) fn has_leader_in_backend(&self) -> bool {
        self.leader.is_some() && self.in_backend
    }

    /// Takes follower `me` off the list. If it was handed the backend, it now leads from
    /// outside it (it enters again at once if its wait goes on); if nobody leads, the most
    /// recent follower left is handed the backend.
    fn remove_follower(&mut self, me: u64) {
        if let Some(at) = self.followers.iter().rposition(|f| f.id == me) {
            self.followers.remove(at);
        }
        if self.leader == Some(me) {
            self.in_backend = false;
        }
        if self.leader.is_none() {
            self.hand_over(false);
        }
    }

    /// Hands the backend to the most recent follower (reserved for it until it wakes), or
    /// leaves nobody leading. Followers that let the backend go are passed over unless
    /// `any`: the thread they reaped for is expected back (the helper hands it to them if it
    /// does not come).
    fn hand_over(&mut self, any: bool) {
        self.takeover = false;
        let next = self.followers.iter().rev().find(|f| any || !f.yielded);
        match next {
            Some(f) => {
                self.leader = Some(f.id);
                self.in_backend = true;
                f.block.notify();
            }
            None => {
                self.leader = None;
                self.in_backend = false;
            }
        }
    }
}

/// One wait's part in driving engines: the engine it drove, whose submissions made while
/// reaping go to the kernel when the wait ends.
pub(crate) struct Driving {
    drove: Option<&'static Engine>,
    /// The last time in the backend reaped only for followers: the wait lets the backend go
    /// and waits as the least recent follower.
    yielded: bool,
}

impl Driving {
    pub(crate) fn new() -> Self {
        Self { drove: None, yielded: false }
    }

    /// Sleeps until `block` is notified or `deadline` passes, leading `engine` (blocking in its
    /// backend and reaping its completions) if nobody else does, following otherwise. The
    /// caller re-checks what it waits for and calls again.
    pub(crate) fn sleep(&mut self, engine: &'static Engine, block: &Arc<WaitBlock>, deadline: Option<Instant>) {
        let me = worker::id();
        if !engine.enter_backend(me, block, std::mem::take(&mut self.yielded)) {
            set_led(None);
            block.park(deadline);
            engine.lead.lock().remove_follower(me);
            return;
        }
        self.drove = Some(engine);
        set_led(Some(engine.index));
        block.enter_engine(engine.index);
        // Dekker with `WaitBlock::notify`: the block names the engine before it reads its
        // notification, so a notification either is seen here or wakes the backend.
        if !block.is_notified() {
            engine.drive(deadline.map(|d| d.saturating_duration_since(Instant::now())));
        }
        block.leave_engine();
        self.yielded = engine.leave_backend(me, block.is_notified());
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
    /// leads, asks it to step down). A thread that `yielded` the backend joins the followers
    /// as the least recent one.
    fn enter_backend(&self, me: u64, block: &Arc<WaitBlock>, yielded: bool) -> bool {
        let mut st = self.lead.lock();
        let free = match st.leader {
            None => !yielded,
            Some(l) => l == me || (l != HELPER && !st.in_backend && !yielded),
        };
        if free {
            st.leader = Some(me);
            st.in_backend = true;
            return true;
        }
        let follower = Follower { id: me, block: Arc::clone(block), yielded };
        if yielded {
            st.followers.insert(0, follower);
            return false;
        }
        st.followers.push(follower);
        let ask_helper = st.leader == Some(HELPER) && !std::mem::replace(&mut st.takeover, true);
        drop(st);
        if ask_helper {
            self.driver.wake();
        }
        false
    }

    /// The leader is back from the backend. It stays the leader, unless it was asked to leave
    /// or completions wait while a follower sleeps: then the most recent follower takes over.
    /// If what it reaped woke followers but not itself (`notified`), it lets the backend go,
    /// so that the thread the completions are for leads when it waits again; returns whether
    /// it did.
    fn leave_backend(&self, me: u64, notified: bool) -> bool {
        let mut st = self.lead.lock();
        if st.leader != Some(me) {
            return false;
        }
        st.in_backend = false;
        if st.followers.is_empty() {
            return false;
        }
        if !notified && st.followers.iter().any(|f| f.block.is_notified()) {
            st.leader = None;
            st.takeover = false;
            return true;
        }
        if st.takeover || self.driver.has_completions() {
            st.hand_over(false);
        }
        false
    }

    /// Called by the helper thread at every tick; nothing here if a thread drove the engine
    /// since the last look. Otherwise: a leader sitting in the backend while others wait is
    /// asked to hand it over; a leader away from it loses it to the most recent follower (or
    /// to nobody); and with no leader, no follower and operations in flight, the helper reaps
    /// itself for up to `wait` (or until a waiting thread takes over). Returns whether it
    /// reaped.
    pub(super) fn rescue_if_abandoned(&self, wait: Duration) -> bool {
        {
            let mut st = self.lead.lock();
            let drives = self.drives.load(Ordering::Relaxed);
            if self.drives_seen.swap(drives, Ordering::Relaxed) != drives {
                return false;
            }
            // Receives a leader left for its next wait go now (`Engine::submit`).
            self.driver.flush();
            match st.leader {
                Some(_) if st.in_backend => {
                    if !st.followers.is_empty() && !std::mem::replace(&mut st.takeover, true) {
                        drop(st);
                        self.driver.wake();
                    }
                    return false;
                }
                Some(_) | None if !st.followers.is_empty() => {
                    st.hand_over(true);
                    return false;
                }
                Some(_) => {
                    st.leader = None;
                    st.in_backend = false;
                    return false;
                }
                None if self.in_flight() == 0 => return false,
                None => {
                    st.leader = Some(HELPER);
                    st.in_backend = true;
                    st.takeover = false;
                }
            }
        }
        // Not counted in `drives`: the engine stays abandoned until a waiting thread drives it.
        self.reap(|on_complete| self.driver.wait(Some(wait), on_complete));
        self.driver.flush();
        let mut st = self.lead.lock();
        st.hand_over(true);
        true
    }
}
