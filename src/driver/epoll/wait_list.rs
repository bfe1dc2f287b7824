//! A socket's operations waiting for one direction of readiness, in issue order. Nearly always
//! there is at most one (the lanes above run receives one at a time, and sends one at a time),
//! so the first is kept inline in the socket's slot and only the rest go to a queue, which is
//! allocated when first needed: a receive that waits touches its slot's cache line and nothing
//! else.

use std::collections::VecDeque;

/// Issue-ordered waiting entries; `first` is empty only if `rest` is.
pub(super) struct WaitList<T> {
    first: Option<T>,
    rest: VecDeque<T>,
}

impl<T> Default for WaitList<T> {
    fn default() -> Self {
        Self { first: None, rest: VecDeque::new() }
    }
}

impl<T> WaitList<T> {
    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(super) fn push_back(&mut self, item: T) {
        if self.first.is_none() {
            self.first = Some(item);
        } else {
            self.rest.push_back(item);
        }
    }

    pub(super) fn front_mut(&mut self) -> Option<&mut T> {
        self.first.as_mut()
    }

    pub(super) fn pop_front(&mut self) -> Option<T> {
        let item = self.first.take()?;
        self.first = self.rest.pop_front();
        Some(item)
    }

    /// Takes out, in order, the entries `pick` selects; the others keep their order.
    pub(super) fn take_where(&mut self, mut pick: impl FnMut(&T) -> bool, out: &mut Vec<T>) {
        let mut kept = Self::default();
        while let Some(item) = self.pop_front() {
            if pick(&item) { out.push(item) } else { kept.push_back(item) }
        }
        *self = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::WaitList;

    fn drain(list: &mut WaitList<u32>) -> Vec<u32> {
        std::iter::from_fn(|| list.pop_front()).collect()
    }

    #[test]
    fn keeps_issue_order_across_the_inline_entry_and_the_queue() {
        let mut list = WaitList::default();
        assert!(list.is_empty());
        for i in 1..=4 {
            list.push_back(i);
        }
        assert_eq!(list.front_mut().copied(), Some(1));
        assert_eq!(list.pop_front(), Some(1));
        list.push_back(5);
        assert_eq!(drain(&mut list), vec![2, 3, 4, 5]);
        assert!(list.is_empty());
        assert_eq!(list.front_mut(), None);
    }

    #[test]
    fn take_where_keeps_the_others_in_order() {
        let mut list = WaitList::default();
        for i in 1..=6 {
            list.push_back(i);
        }
        let mut taken = Vec::new();
        list.take_where(|i| i % 2 == 1, &mut taken);
        assert_eq!(taken, vec![1, 3, 5]);
        assert_eq!(drain(&mut list), vec![2, 4, 6]);
    }
}
