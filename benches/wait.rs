//! What a wait on many events costs (`WSAWaitForMultipleEvents` without the 64-event limit).
//!
//! Compares, side by side in interleaved rounds, waits on 64 events (the Windows maximum) and
//! on 10,000 events, in two situations:
//! - `ready`: the last event is already signalled (a manual-reset event, so it stays set): the
//!   cost of the scan;
//! - `wake`: nothing is signalled; another thread sets the last event once the waiter sleeps:
//!   the cost of registering with every event, sleeping, being woken and unregistering.
//!
//! Prints the median time per wait of each case and the ratio 10,000 / 64.
//! Run: `cargo bench --bench wait` (`-- --rounds N`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use overlapped::{Event, Wait, wait_for_events};

const SIZES: [usize; 2] = [64, 10_000];

fn ready_wait(events: &[Event], iters: u32) -> Duration {
    let last = events.len() - 1;
    events[last].set().unwrap();
    let start = Instant::now();
    for _ in 0..iters {
        let w = wait_for_events(events, false, Some(Duration::ZERO), false).unwrap();
        assert_eq!(w, Wait::Signaled(last));
    }
    let t = start.elapsed() / iters;
    events[last].reset().unwrap();
    t
}

fn wake_wait(events: &[Event], iters: u32) -> Duration {
    let last = events[events.len() - 1].clone();
    let done = Arc::new(AtomicBool::new(false));
    let setter = {
        let (last, done) = (last.clone(), done.clone());
        thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                // Give the waiter time to register and sleep, then wake it.
                thread::sleep(Duration::from_micros(200));
                let _ = last.set();
            }
        })
    };
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        last.reset().unwrap();
        let start = Instant::now();
        let w = wait_for_events(events, false, Some(Duration::from_secs(5)), false).unwrap();
        total += start.elapsed();
        assert!(matches!(w, Wait::Signaled(_)));
    }
    done.store(true, Ordering::Release);
    let _ = setter.join();
    total / iters
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize =
        std::env::args().skip_while(|a| a != "--rounds").nth(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    let sets: Vec<Vec<Event>> = SIZES.iter().map(|&n| (0..n).map(|_| Event::manual(false)).collect()).collect();
    let mut ready = vec![Vec::new(); SIZES.len()];
    let mut wake = vec![Vec::new(); SIZES.len()];
    for round in 0..rounds {
        for k in 0..SIZES.len() {
            let i = (k + round) % SIZES.len();
            ready[i].push(ready_wait(&sets[i], 2_000).as_secs_f64() * 1e6);
            wake[i].push(wake_wait(&sets[i], 200).as_secs_f64() * 1e6);
        }
    }
    println!("wait bench: {rounds} interleaved rounds, medians of per-round times per wait");
    for (i, n) in SIZES.iter().enumerate() {
        println!("  {n:>6} events   ready {:>9.2} us   wake {:>9.2} us", median(&mut ready[i]), median(&mut wake[i]));
    }
    let ratio = |v: &mut Vec<Vec<f64>>| {
        let mut r: Vec<f64> = v[1].iter().zip(&v[0]).map(|(a, b)| a / b).collect();
        median(&mut r)
    };
    println!("  10000/64 ratio   ready x{:.1}   wake x{:.2}", ratio(&mut ready), ratio(&mut wake));
    println!("  (the wake case includes the setter's ~200 us sleep, the same for both sizes)");
}
