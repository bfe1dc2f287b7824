//! The io_uring backend: one ring per completion port.
//!
//! - Submission: operations push SQEs under the submission lock; the system call that hands
//!   them to the kernel is batched (the port decides when: at once for threads that are not
//!   the port's running workers, otherwise at the worker's next wait).
//! - Completion: there is no reaper thread. The thread that waits on the port (the poller)
//!   blocks in `io_uring_enter` and reaps the CQEs itself, so a completion reaches a worker
//!   without a hop through another thread.
//! - Ownership: each SQE's user data is a [`RawOp`] handed over by
//!   [`RawOp::into_user_data`]; it comes back exactly once, with the CQE of that request. Two
//!   reserved user-data values mark internal requests (wake-up NOPs and cancellations), which
//!   are never record addresses (records are aligned and non-null).
//! - Teardown: closing cancels everything in the ring and reaps until no operation is in
//!   flight, so every buffer is freed only after the kernel is done with it. A record whose
//!   CQE never comes is leaked, never freed early.
#![allow(unsafe_code)]

mod prep;

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use io_uring::types::{CancelBuilder, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, opcode, squeue};

use crate::lock::{Lock, LockGuard};
use crate::op::RawOp;
use crate::op::machine;

const WAKE: u64 = 0;
const CANCEL: u64 = 1;
const RING_ENTRIES: u32 = 1024;
/// Slots in the ring's table of registered files (sockets beyond it use plain descriptors).
const FIXED_FILES: u32 = 16 * 1024;

/// Free slots of the registered-file table.
struct FileSlots {
    free: Vec<u32>,
    next: u32,
}

/// An io_uring instance shared by the threads of one completion port.
pub(crate) struct UringDriver {
    ring: IoUring,
    /// Short sections only (pushing an entry, reading the tail).
    sq_lock: Lock<()>,
    /// Held while reaping, across the callbacks: one thread reads the completion queue at a
    /// time.
    cq_lock: Lock<()>,
    in_flight: AtomicUsize,
    closed: AtomicBool,
    /// `None` if the kernel refused a sparse file table.
    files: Option<Lock<FileSlots>>,
}

impl UringDriver {
    /// Sets up a ring and probes what the library needs: every opcode it uses, timed waits
    /// (`IORING_FEAT_EXT_ARG`) and cancel-any (`IORING_ASYNC_CANCEL_ANY`, Linux 5.19).
    pub(crate) fn new() -> io::Result<Self> {
        let ring = IoUring::builder().setup_clamp().setup_cqsize(RING_ENTRIES * 4).build(RING_ENTRIES)?;
        if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
            return Err(unsupported("the kernel lacks IORING_FEAT_EXT_ARG or IORING_FEAT_NODROP"));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if let Some((_, name)) = prep::REQUIRED_OPCODES.iter().find(|(code, _)| !probe.is_supported(*code)) {
            return Err(unsupported(&format!("the kernel lacks IORING_OP_{name}")));
        }
        let files = ring.submitter().register_files_sparse(FIXED_FILES).ok();
        let driver = Self {
            ring,
            sq_lock: Lock::new(()),
            cq_lock: Lock::new(()),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            files: files.map(|()| Lock::new(FileSlots { free: Vec::new(), next: 0 })),
        };
        driver.probe_cancel_any()?;
        Ok(driver)
    }

    fn probe_cancel_any(&self) -> io::Result<()> {
        let entry = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(CANCEL);
        self.push(&entry);
        self.ring.submitter().submit_and_wait(1)?;
        let _cq = self.cq_lock.lock();
        // SAFETY: `cq_lock` is held, so this is the only view of the completion queue.
        let cq = unsafe { self.ring.completion_shared() };
        let res = cq.map(|cqe| cqe.result()).next().unwrap_or(-libc::ENOENT);
        if res == -libc::EINVAL {
            return Err(unsupported("the kernel lacks IORING_ASYNC_CANCEL_ANY"));
        }
        Ok(())
    }

    /// Pushes an SQE, submitting first if the queue is full.
    fn push(&self, entry: &squeue::Entry) {
        let _sq = self.sq_lock.lock();
        loop {
            // SAFETY: `sq_lock` is held, so this is the only view of the submission queue; the
            // queue's tail is published when the view drops, before the lock is released.
            let mut sq = unsafe { self.ring.submission_shared() };
            // SAFETY: every pointer in `entry` refers to memory that outlives the request:
            // operation records stay alive until their CQE (module docs), and internal entries
            // carry no pointers.
            if unsafe { sq.push(entry) }.is_ok() {
                return;
            }
            drop(sq);
            // The queue is full: hand the entries to the kernel to make room.
            if let Err(e) = self.ring.submitter().submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    std::thread::yield_now();
                }
            }
        }
    }

    /// Registers `fd` in the ring's file table, so requests on it skip the descriptor lookup.
    /// `None` if the table is full or unavailable (requests then use the descriptor).
    pub(crate) fn register_file(&self, fd: RawFd) -> Option<u32> {
        let mut slots = self.files.as_ref()?.lock();
        let slot = match slots.free.pop() {
            Some(s) => s,
            None if slots.next < FIXED_FILES => {
                slots.next += 1;
                slots.next - 1
            }
            None => return None,
        };
        match self.ring.submitter().register_files_update(slot, &[fd]) {
            Ok(_) => Some(slot),
            Err(_) => {
                slots.free.push(slot);
                None
            }
        }
    }

    /// Empties a slot of the file table. Requests already issued on it keep the file until
    /// they complete; the caller must issue no new request on the slot.
    pub(crate) fn unregister_file(&self, slot: u32) {
        let Some(files) = self.files.as_ref() else { return };
        let mut slots = files.lock();
        if self.ring.submitter().register_files_update(slot, &[-1]).is_ok() {
            slots.free.push(slot);
        }
    }

    /// Starts the next step of `op`. Refused (the op comes back) once the driver is closed.
    pub(crate) fn submit(&self, mut op: RawOp) -> Result<(), RawOp> {
        if self.closed.load(Ordering::Acquire) {
            return Err(op);
        }
        let entry = prep::sqe(machine::next_step(op.state_mut()));
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let entry = entry.user_data(op.into_user_data());
        self.push(&entry);
        Ok(())
    }

    /// Hands pushed SQEs to the kernel.
    pub(crate) fn flush(&self) {
        if self.has_unsubmitted() {
            let _ = self.ring.submitter().submit();
        }
    }

    fn has_unsubmitted(&self) -> bool {
        let _sq = self.sq_lock.lock();
        // SAFETY: `sq_lock` is held, so this is the only view of the submission queue.
        !unsafe { self.ring.submission_shared() }.is_empty()
    }

    /// Asks the kernel to cancel the request of the operation with this id.
    pub(crate) fn cancel(&self, id: usize) {
        let entry = opcode::AsyncCancel::new(id as u64).build().user_data(CANCEL);
        self.push(&entry);
        let _ = self.ring.submitter().submit();
    }

    /// Makes a thread blocked in [`UringDriver::wait`] return.
    pub(crate) fn wake(&self) {
        self.push(&opcode::Nop::new().build().user_data(WAKE));
        let _ = self.ring.submitter().submit();
    }

    /// Refuses further submissions and cancels everything in flight.
    pub(crate) fn close(&self) {
        {
            let _sq = self.sq_lock.lock();
            self.closed.store(true, Ordering::Release);
        }
        self.cancel_all();
    }

    pub(crate) fn cancel_all(&self) {
        self.push(&opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(CANCEL));
        let _ = self.ring.submitter().submit();
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Submits pending SQEs, waits up to `timeout` (`None`: no limit) for at least one CQE or a
    /// wake-up, then reaps every CQE, handing each operation to `on_complete` with its result.
    /// Returns whether a wake-up (or cancellation) CQE was among them.
    pub(crate) fn wait(&self, timeout: Option<Duration>, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        let submitter = self.ring.submitter();
        let res = match timeout {
            Some(t) if t.is_zero() => submitter.submit(),
            Some(t) => {
                let ts = Timespec::from(t);
                submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
            }
            None => submitter.submit_and_wait(1),
        };
        // ETIME (timeout), EINTR (signal) and EBUSY (completions to reap first) all mean:
        // reap what is there and let the caller decide.
        let _ = res;
        self.reap(on_complete)
    }

    /// Whether CQEs are waiting to be reaped (false while another thread is reaping).
    pub(crate) fn has_completions(&self) -> bool {
        let Some(_cq) = self.cq_lock.try_lock() else { return false };
        // SAFETY: `cq_lock` is held, so this is the only view of the completion queue; the view
        // is only read (its drop stores back the head it read).
        !unsafe { self.ring.completion_shared() }.is_empty()
    }

    /// Reaps the CQEs already there, without entering the kernel, unless another thread is
    /// reaping right now.
    pub(crate) fn reap_ready(&self, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        match self.cq_lock.try_lock() {
            Some(guard) => self.reap_locked(guard, on_complete),
            None => false,
        }
    }

    fn reap(&self, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        self.reap_locked(self.cq_lock.lock(), on_complete)
    }

    /// Reaps every CQE; returns whether a wake-up or cancellation CQE was among them.
    fn reap_locked(&self, _cq: LockGuard<'_, ()>, on_complete: &mut dyn FnMut(RawOp, i32)) -> bool {
        // SAFETY: the caller holds `cq_lock` (its guard is `_cq`), so this is the only view of
        // the completion queue.
        let mut cq = unsafe { self.ring.completion_shared() };
        let mut woke = false;
        loop {
            cq.sync();
            let Some(cqe) = cq.next() else { break };
            match cqe.user_data() {
                WAKE | CANCEL => woke = true,
                user_data => {
                    self.in_flight.fetch_sub(1, Ordering::AcqRel);
                    // SAFETY: every other user data is a record handed over by `submit`, and
                    // the kernel posts exactly one CQE per request, so it is taken back once.
                    let op = unsafe { RawOp::from_user_data(user_data) };
                    on_complete(op, cqe.result());
                }
            }
        }
        woke
    }
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, format!("io_uring backend unavailable: {what}"))
}
