//! `wait_for_any_events`: every signalled event of a wait for any, lowest index first, each
//! consumed as `WSAWaitForMultipleEvents` would consume it (WE-3), and the errors and
//! timeouts of `wait_for_events` (WE-2, WE-5).

mod common;

use std::time::Duration;

use overlapped::{ErrorKind, Event, Wait, wait_for_any_events, wait_for_events};

const N: usize = 10_000;

fn events(auto_at: &[usize]) -> Vec<Event> {
    (0..N).map(|i| if auto_at.contains(&i) { Event::auto(false) } else { Event::new() }).collect()
}

#[test]
fn we3_returns_every_signalled_event_lowest_first_and_consumes_auto_reset_ones() {
    let ev = events(&[7]);
    for i in [9_000, 3, 7] {
        ev[i].set().unwrap();
    }
    let mut out = vec![42];
    assert_eq!(wait_for_any_events(&ev, &mut out, usize::MAX, Some(Duration::ZERO), false).unwrap(), Wait::Signaled(3));
    assert_eq!(out, [42, 3, 7, 9_000], "appended, lowest first");
    assert!(!ev[7].is_set(), "the auto-reset event was consumed");
    assert!(ev[3].is_set() && ev[9_000].is_set(), "manual-reset events stay set");
    // The same set again: the manual-reset ones are still signalled.
    out.clear();
    wait_for_any_events(&ev, &mut out, usize::MAX, Some(Duration::ZERO), false).unwrap();
    assert_eq!(out, [3, 9_000]);
}

#[test]
fn we3_max_bounds_what_one_call_returns_and_leaves_the_rest_signalled() {
    let ev = events(&[1, 2, 3]);
    for e in &ev[1..4] {
        e.set().unwrap();
    }
    let mut out = Vec::new();
    wait_for_any_events(&ev, &mut out, 2, Some(Duration::ZERO), false).unwrap();
    assert_eq!(out, [1, 2]);
    assert!(ev[3].is_set(), "not taken, not consumed");
    assert_eq!(wait_for_events(&ev, false, Some(Duration::ZERO), false).unwrap(), Wait::Signaled(3));
}

#[test]
fn we3_after_a_change_of_set_the_new_events_count_and_the_old_ones_do_not() {
    let ev = events(&[]);
    let mut out = Vec::new();
    assert_eq!(wait_for_any_events(&ev, &mut out, 8, Some(Duration::ZERO), false).unwrap(), Wait::Timeout);
    let other: Vec<Event> = (0..4).map(|_| Event::new()).collect();
    ev[0].set().unwrap();
    other[2].set().unwrap();
    assert_eq!(wait_for_any_events(&other, &mut out, 8, Some(Duration::ZERO), false).unwrap(), Wait::Signaled(2));
    assert_eq!(out, [2]);
    out.clear();
    assert_eq!(wait_for_any_events(&ev, &mut out, 8, Some(Duration::ZERO), false).unwrap(), Wait::Signaled(0));
    assert_eq!(out, [0]);
}

#[test]
fn we2_a_closed_event_fails_the_wait_and_bad_arguments_are_refused() {
    let ev = events(&[]);
    let mut out = Vec::new();
    assert_eq!(
        wait_for_any_events(&ev, &mut out, 0, Some(Duration::ZERO), false).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let none: [Event; 0] = [];
    assert_eq!(
        wait_for_any_events(&none, &mut out, 1, Some(Duration::ZERO), false).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    ev[5].set().unwrap();
    ev[N - 1].close().unwrap();
    let e = wait_for_any_events(&ev, &mut out, usize::MAX, Some(Duration::ZERO), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidHandle);
    assert!(out.is_empty(), "a failed wait returns nothing");
    assert!(ev[5].is_set());
}

#[test]
fn we5_a_wait_with_a_timeout_wakes_for_a_set_from_another_thread() {
    let ev = events(&[]);
    let setter = ev[4_321].clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        setter.set().unwrap();
    });
    let mut out = Vec::new();
    let got = wait_for_any_events(&ev, &mut out, usize::MAX, Some(common::WAIT), false).unwrap();
    t.join().unwrap();
    assert_eq!(got, Wait::Signaled(4_321));
    assert_eq!(out, [4_321]);
}
