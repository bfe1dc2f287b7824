//! Sends written together: plain stream sends queued by `submit` are written at the next flush,
//! many per `io_submit` when that pays (see `aio.rs` for why, and [`SendPolicy`] for when).

use std::sync::atomic::Ordering;

use super::EpollDriver;
use super::aio::{self, AioContext};
use crate::op::RawOp;
use crate::op::machine;

/// The sends being written, their results and the ones to retry (vectors whose capacity is
/// reused), and the AIO context that writes them (`None`: unavailable, each is then tried on
/// its own).
pub(super) struct Writing {
    batch: Vec<RawOp>,
    results: Vec<i32>,
    /// Sends that would block, to be started the ordinary way.
    again: Vec<RawOp>,
    aio: Option<AioContext>,
    policy: SendPolicy,
}

/// Whether to write batches with AIO, learned from how often the flushing thread is preempted
/// while it sends one by one: AIO costs more per write than `send`, and pays only where single
/// sends keep handing the core to the peers they wake. It starts with AIO; every
/// [`SendPolicy::PROBE_EVERY`]th batch is sent one by one and measured.
struct SendPolicy {
    use_aio: bool,
    /// Batches since the last batch sent one by one (which measures again).
    since_probe: u32,
}

impl Default for SendPolicy {
    fn default() -> Self {
        Self { use_aio: true, since_probe: 0 }
    }
}

impl SendPolicy {
    /// Batches written with AIO between two measured batches.
    const PROBE_EVERY: u32 = 64;

    /// Whether the next batch should go through AIO.
    fn next_uses_aio(&mut self) -> bool {
        self.since_probe += 1;
        self.use_aio && self.since_probe < Self::PROBE_EVERY
    }

    /// Learns from a batch of `sends` sent one by one, during which the thread was preempted
    /// `preempted` times: AIO from now on if that happened for more than one send in 16.
    fn measured(&mut self, sends: usize, preempted: i64) {
        self.since_probe = 0;
        self.use_aio = preempted.saturating_mul(16) > sends as i64;
    }
}

impl Writing {
    pub(super) fn new() -> Self {
        Self {
            batch: Vec::new(),
            results: Vec::new(),
            again: Vec::new(),
            aio: AioContext::new(),
            policy: SendPolicy::default(),
        }
    }
}

impl EpollDriver {
    /// Writes the queued sends: in one `io_submit` per [`aio::DEPTH`] if there are several and
    /// AIO may be used, else each tried on its own. A send that would block (or that AIO
    /// refused) is started the ordinary way, which queues it on its socket.
    pub(super) fn write_sends(&self) {
        if self.sends.lock().is_empty() {
            return;
        }
        let mut writing = self.writing.lock();
        let Writing { batch, results, again, aio, policy } = &mut *writing;
        {
            let mut sends = self.sends.lock();
            std::mem::swap(batch, &mut *sends);
            if batch.is_empty() {
                return;
            }
            // Counted by `in_flight` from here on (see there).
            self.in_flight.fetch_add(batch.len(), Ordering::Relaxed);
        }
        // The policy first: `SIGPIPE` is checked (a system call) only for a batch AIO would
        // write, and preemptions are counted (another) only around a probe batch.
        let aio = aio.as_mut().filter(|_| batch.len() > 1);
        let probe = aio.is_some() && !policy.next_uses_aio();
        let Some(aio) = aio.filter(|_| !probe && aio::sigpipe_ignored()) else {
            let (sends, before) = (batch.len(), probe.then(aio::preemptions));
            self.start_each(batch);
            if let Some(before) = before {
                policy.measured(sends, aio::preemptions() - before);
            }
            return;
        };
        results.clear();
        results.resize(batch.len(), -libc::EAGAIN);
        let mut done = 0;
        while done < batch.len() {
            done += aio.write_batch(&mut batch[done..], &mut results[done..]);
        }
        // The finished ones go to the ready queue under one lock; the others start afresh.
        {
            let mut ready = self.ready.lock();
            for (op, res) in batch.drain(..).zip(results.drain(..)) {
                if res == -libc::EAGAIN { again.push(op) } else { ready.push_back((op, res)) }
            }
            if !ready.is_empty() {
                self.has_ready.store(true, Ordering::SeqCst);
            }
        }
        self.start_each(again);
    }

    /// Starts each of `ops` the ordinary way (tried now, queued on its socket if it would
    /// block), leaving the vector empty with its capacity.
    fn start_each(&self, ops: &mut Vec<RawOp>) {
        ops.drain(..).for_each(|op| self.start(op));
    }
}

/// Whether `op`'s next step is a plain send on a stream socket (no flags of the caller's, one
/// buffer): one that can be written with the others at the next flush.
pub(super) fn is_plain_stream_send(op: &RawOp) -> bool {
    let state = op.state();
    state.socket.as_ref().is_some_and(|s| s.is_stream()) && machine::next_is_plain_send(state)
}

#[cfg(test)]
mod tests {
    use super::SendPolicy;

    /// Runs `batches` batches, returning how many went through AIO; probes report `preempted`
    /// preemptions for a batch of 64 sends.
    fn run(policy: &mut SendPolicy, batches: u32, preempted: i64) -> u32 {
        let mut aio = 0;
        for _ in 0..batches {
            if policy.next_uses_aio() {
                aio += 1;
            } else {
                policy.measured(64, preempted);
            }
        }
        aio
    }

    #[test]
    fn starts_with_aio_and_probes_every_64th_batch() {
        let mut policy = SendPolicy::default();
        assert_eq!(run(&mut policy, SendPolicy::PROBE_EVERY - 1, 0), SendPolicy::PROBE_EVERY - 1);
        assert!(!policy.next_uses_aio(), "the 64th batch is sent one by one, to measure");
    }

    #[test]
    fn keeps_aio_while_single_sends_get_preempted() {
        let mut policy = SendPolicy::default();
        // 8 preemptions in 64 sends: one in 8, above the threshold of one in 16.
        let aio = run(&mut policy, 10 * SendPolicy::PROBE_EVERY, 8);
        assert_eq!(aio, 10 * (SendPolicy::PROBE_EVERY - 1));
    }

    #[test]
    fn drops_aio_when_single_sends_run_undisturbed() {
        let mut policy = SendPolicy::default();
        run(&mut policy, SendPolicy::PROBE_EVERY, 2); // one in 32: below the threshold
        assert_eq!(run(&mut policy, 100, 2), 0, "no batch uses AIO once it does not pay");
        // It goes back to AIO once a measured batch is preempted often enough.
        run(&mut policy, 1, 16);
        assert!(policy.next_uses_aio());
    }
}
