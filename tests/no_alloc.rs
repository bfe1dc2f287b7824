//! Steady-state echo through a completion port allocates nothing on the heap per operation:
//! the record and its buffers are reused, and the port's queues keep their capacity. Counted
//! with a global allocator wrapper, after a warm-up, on the test's own thread, which is the
//! only thread the port's work runs on here (the test harness's main thread allocates while it
//! starts tests, and is not counted).

#![allow(unsafe_code)] // a counting global allocator needs `unsafe impl GlobalAlloc`
#[macro_use]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};

use overlapped::{BufList, Issued, MsgFlags, Overlapped};

struct Counting;

thread_local! {
    /// Set on the thread whose allocations are counted.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    /// That thread's allocations.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    if COUNTED.with(Cell::get) {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as ours, forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One echo round trip: the server issues a receive, the client sends, the receive completes
/// (`complete` waits for it and hands the record back), the server sends the bytes back with
/// the same record, the send completes, the client reads them.
fn round_trip(
    server: &overlapped::Socket,
    client: &mut std::net::TcpStream,
    ov: Overlapped<u8>,
    msg: &[u8],
    back: &mut [u8],
    mut complete: impl FnMut(Issued<u8>) -> Overlapped<u8>,
) -> Overlapped<u8> {
    let issued = server.recv(ov, MsgFlags::NONE).unwrap();
    client.write_all(msg).unwrap();
    let ov = complete(issued);
    assert_eq!(ov.result().unwrap(), msg.len());
    assert_eq!(ov.buffers()[0].len(), msg.len());
    let mut ov = complete(server.send(ov, MsgFlags::NONE).unwrap());
    client.read_exact(back).unwrap();
    ov.buffers_mut()[0].clear();
    ov
}

/// Completion through the port: the next packet's record.
fn from_port(port: &overlapped::CompletionPort<u8>) -> impl FnMut(Issued<u8>) -> Overlapped<u8> + '_ {
    |_| port.get(Some(common::WAIT)).unwrap().overlapped.unwrap()
}

/// Completion through the record's event: `overlapped_result` on the operation's handle.
fn from_event(issued: Issued<u8>) -> Overlapped<u8> {
    issued.into_pending_io().expect("no port").overlapped_result(true).unwrap()
}

/// Counts the heap allocations this thread makes in 1000 echo round trips (2000 operations),
/// after 200 to warm up. `echo` does one round trip with the record and gives it back.
fn allocations_in_steady_state(
    mut ov: Overlapped<u8>,
    mut echo: impl FnMut(Overlapped<u8>) -> Overlapped<u8>,
) -> usize {
    COUNTED.with(|c| c.set(true));
    for _ in 0..200 {
        ov = echo(ov);
    }
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..1000 {
        ov = echo(ov);
    }
    ALLOCATIONS.with(Cell::get) - before
}

backend_test! {
fn steady_state_echo_allocates_nothing_per_operation() {
    let port = common::port::<u8>(1);
    let (server, mut client) = common::tcp_pair(&port, 1);
    let (msg, mut back) = ([7u8; 64], [0u8; 64]);
    let ov = Overlapped::with_buffers(0u8, BufList::with_capacity(4096));
    let allocated =
        allocations_in_steady_state(ov, |ov| round_trip(&server, &mut client, ov, &msg, &mut back, from_port(&port)));
    assert_eq!(back, msg);
    assert_eq!(allocated, 0, "{allocated} heap allocations in 2000 steady-state operations");
}
}

backend_test! {
/// The event path reuses each record's result slot: the issuing thread allocates nothing per
/// operation once warm (the engine's own thread is not counted).
fn steady_state_event_echo_allocates_nothing_on_the_issuing_thread() {
    let (server, mut client) = common::unassociated_tcp_pair();
    let (msg, mut back) = ([9u8; 64], [0u8; 64]);
    let ov = Overlapped::with_buffers(0u8, BufList::with_capacity(4096)).with_event(overlapped::Event::new());
    let allocated =
        allocations_in_steady_state(ov, |ov| round_trip(&server, &mut client, ov, &msg, &mut back, from_event));
    assert_eq!(back, msg);
    assert_eq!(allocated, 0, "{allocated} heap allocations in 2000 steady-state event operations");
}
}
