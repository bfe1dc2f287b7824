//! The type-erased operation record: the one path by which ownership of an operation (and of
//! the buffers and addresses the kernel writes) goes to the kernel and comes back.
//!
//! A record is a `Box<Record<C>>`. While issued it is held as a [`RawOp`], a pointer to its
//! non-generic head, so that sockets, drivers and ports need not know the caller's context
//! type `C`. Invariants, upheld by every user of `RawOp`:
//! - a `RawOp` is the unique owner of its box (it is not `Clone`; dropping it frees the box);
//! - [`RawOp::into_user_data`] forgets the `RawOp` while the kernel holds the pointer, and the
//!   driver turns the user data back into a `RawOp` exactly once, on the operation's CQE;
//! - a `RawOp` turns back into `Box<Record<C>>` only for the `C` it was made from (checked by
//!   `TypeId`).
#![allow(unsafe_code)]

use std::any::TypeId;
use std::ptr::NonNull;

use super::OpState;
use crate::buf::BufList;
use crate::routine::CompletionRoutine;

/// A boxed operation record with the caller's per-operation context.
#[repr(C)]
pub(crate) struct Record<C: Send + 'static> {
    /// Must stay the first field: a `RawOp` points at it.
    head: Head,
    pub(crate) ctx: C,
    /// The completion routine the record's operations queue (`lpCompletionRoutine`).
    pub(crate) routine: Option<CompletionRoutine<C>>,
}

#[repr(C)]
struct Head {
    vtable: &'static VTable,
    state: OpState,
}

struct VTable {
    type_id: fn() -> TypeId,
    /// Frees the whole `Box<Record<C>>` given a pointer to its head.
    drop: unsafe fn(NonNull<Head>),
}

trait HasVTable {
    const VTABLE: VTable;
}

impl<C: Send + 'static> HasVTable for C {
    const VTABLE: VTable = VTable { type_id: TypeId::of::<C>, drop: drop_record::<C> };
}

/// # Safety
/// `head` must come from `Box::<Record<C>>::into_raw` for this very `C`, and must not be used
/// afterwards.
unsafe fn drop_record<C: Send + 'static>(head: NonNull<Head>) {
    // SAFETY: per the contract, `head` is the first field (offset 0, `repr(C)`) of a leaked
    // `Box<Record<C>>`, so casting back yields that box, freed exactly once here.
    drop(unsafe { Box::from_raw(head.as_ptr().cast::<Record<C>>()) });
}

impl<C: Send + 'static> Record<C> {
    pub(crate) fn new(ctx: C, bufs: BufList) -> Box<Self> {
        Box::new(Self {
            head: Head { vtable: &<C as HasVTable>::VTABLE, state: OpState::new(bufs) },
            ctx,
            routine: None,
        })
    }
}

impl<C: Send + 'static> Record<C> {
    pub(crate) fn state(&self) -> &OpState {
        &self.head.state
    }

    pub(crate) fn state_mut(&mut self) -> &mut OpState {
        &mut self.head.state
    }
}

/// The unique owner of an issued operation record, with its context type erased.
pub(crate) struct RawOp {
    head: NonNull<Head>,
}

// SAFETY: a `RawOp` is only created from `Record<C>` with `C: Send`, and owns it uniquely, so
// moving it to another thread moves a `Send` value.
unsafe impl Send for RawOp {}

impl RawOp {
    pub(crate) fn new<C: Send + 'static>(record: Box<Record<C>>) -> Self {
        let head = NonNull::from(Box::leak(record)).cast::<Head>();
        Self { head }
    }

    pub(crate) fn state(&self) -> &OpState {
        // SAFETY: `head` points to a live record uniquely owned by `self`.
        unsafe { &self.head.as_ref().state }
    }

    pub(crate) fn state_mut(&mut self) -> &mut OpState {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { &mut self.head.as_mut().state }
    }

    /// The operation's identity: the record's address, stable across re-issues of the same
    /// `Overlapped` (what `CancelIoEx(h, lpOverlapped)` matches on).
    pub(crate) fn id(&self) -> usize {
        self.head.as_ptr() as usize
    }

    /// Whether the record's context type is `C`.
    pub(crate) fn is<C: 'static>(&self) -> bool {
        // SAFETY: `head` points to a live record; the vtable is `'static`.
        let vtable = unsafe { self.head.as_ref().vtable };
        (vtable.type_id)() == TypeId::of::<C>()
    }

    /// Gives the box back if the context type is `C`.
    pub(crate) fn downcast<C: Send + 'static>(self) -> Result<Box<Record<C>>, Self> {
        if !self.is::<C>() {
            return Err(self);
        }
        let head = self.head;
        std::mem::forget(self);
        // SAFETY: the type check above proves `head` came from a `Box<Record<C>>`; `forget`
        // ends this `RawOp`'s ownership, which passes to the returned box.
        Ok(unsafe { Box::from_raw(head.as_ptr().cast::<Record<C>>()) })
    }

    /// Hands the record to the kernel: the returned value goes into the SQE's user data, and
    /// the record stays alive until [`RawOp::from_user_data`] takes it back.
    pub(crate) fn into_user_data(self) -> u64 {
        let addr = self.head.as_ptr() as u64;
        std::mem::forget(self);
        addr
    }

    /// Takes back a record handed to the kernel.
    ///
    /// # Safety
    /// `user_data` must come from [`RawOp::into_user_data`] and be taken back only once.
    pub(crate) unsafe fn from_user_data(user_data: u64) -> Self {
        let ptr = user_data as usize as *mut Head;
        // SAFETY: per the contract the address is that of a leaked, live record head, hence
        // non-null.
        Self { head: unsafe { NonNull::new_unchecked(ptr) } }
    }
}

impl Drop for RawOp {
    fn drop(&mut self) {
        // SAFETY: `head` points to a live record uniquely owned by `self`; its vtable frees it
        // as the type it was made from, once, since `self` is going away.
        unsafe {
            let drop_fn = self.head.as_ref().vtable.drop;
            drop_fn(self.head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn raw_op_frees_its_context_once_and_checks_the_type() {
        let drops = Arc::new(AtomicUsize::new(0));
        let raw = RawOp::new(Record::new(Counted(drops.clone()), BufList::with_capacity(8)));
        let raw = raw.downcast::<u32>().err().expect("wrong type is refused");
        let back = RawOp::through_kernel(raw);
        assert_eq!(back.state().bufs.total_spare(), 8);
        drop(back);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    impl RawOp {
        fn through_kernel(self) -> Self {
            let ud = self.into_user_data();
            // SAFETY: `ud` was produced just above and is taken back once.
            unsafe { Self::from_user_data(ud) }
        }
    }
}
