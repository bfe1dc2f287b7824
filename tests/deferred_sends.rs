//! Submissions a running worker defers until its next wait (spec §8.4.1: a worker's requests
//! reach the kernel with its next `GetQueuedCompletionStatus`): many sends queued together all
//! complete exactly once with their own results (on epoll they are written in one batch); a
//! queued send can still be cancelled; and a worker that exits (or stops running) without
//! waiting again does not strand what it queued.

#[macro_use]
mod common;

use std::io::Read;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{WAIT, next, port, tcp_pair};
use overlapped::{BufList, ErrorKind, MsgFlags, Overlapped, Socket};

/// Key of the packet that makes a thread a running worker of the port.
const START: usize = 1000;

fn message(i: usize) -> Vec<u8> {
    (0..100 + i).map(|b| (b * 7 + i) as u8).collect()
}

fn read_exactly(peer: &mut TcpStream, len: usize) -> Vec<u8> {
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = vec![0; len];
    peer.read_exact(&mut got).expect("the peer receives the whole message");
    got
}

/// Asserts that nothing more arrives (a send performed twice would show here).
fn assert_nothing_more(peer: &mut TcpStream) {
    peer.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 64];
    match peer.read(&mut buf) {
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
        other => panic!("the peer got more than its message: {other:?}"),
    }
}

backend_test! {
    /// A worker issues 24 sends while it runs (they wait for its next `get`), one of them to a
    /// peer that has already reset: each completes once, with all its bytes or, for the reset
    /// one, with a connection error; every live peer gets exactly its message.
    fn queued_sends_complete_once_each_with_their_own_result() {
        let port = port::<usize>(1);
        let pairs: Vec<(Socket, TcpStream)> = (0..24).map(|i| tcp_pair(&port, i)).collect();
        let reset = 5;
        {
            let peer = &pairs[reset].1;
            socket2::SockRef::from(peer).set_linger(Some(Duration::ZERO)).unwrap();
            peer.shutdown(std::net::Shutdown::Both).unwrap();
        }
        let (sockets, mut peers): (Vec<Socket>, Vec<TcpStream>) = pairs.into_iter().unzip();
        drop(peers.remove(reset)); // closes with RST (linger 0)
        // Make the peer's reset arrive before the send.
        thread::sleep(Duration::from_millis(50));
        port.post(0, START, None).unwrap();
        assert_eq!(next(&port).key, START, "this thread now runs on the port");
        for (i, s) in sockets.iter().enumerate() {
            s.send(Overlapped::with_buffers(i, BufList::single(message(i))), MsgFlags::NONE).expect("issued");
        }
        let mut seen = vec![false; sockets.len()];
        for _ in 0..sockets.len() {
            let c = next(&port);
            let i = *c.overlapped.as_ref().expect("a send's record").context();
            assert_eq!(c.key, i, "the packet carries its socket's key");
            assert!(!seen[i], "send {i} completed twice");
            seen[i] = true;
            if i == reset {
                let kind = c.status.expect_err("a send to a reset peer fails").kind();
                assert!(
                    matches!(kind, ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted),
                    "send to the reset peer: {kind:?}"
                );
            } else {
                assert!(c.status.is_ok(), "send {i}: {:?}", c.status);
                assert_eq!(c.bytes, message(i).len(), "send {i} sent every byte");
            }
        }
        for (i, peer) in (0..sockets.len()).filter(|&i| i != reset).zip(peers.iter_mut()) {
            assert_eq!(read_exactly(peer, message(i).len()), message(i), "peer {i} got its message");
            assert_nothing_more(peer);
        }
    }
}

backend_test! {
    /// CN-3: a send cancelled while it is still queued completes exactly once: aborted (and the
    /// peer gets nothing) or, if it was already handed to the kernel, with all its bytes.
    fn cancelling_a_queued_send_completes_it_once() {
        let port = port::<()>(1);
        let (socket, mut peer) = tcp_pair(&port, 7);
        port.post(0, START, None).unwrap();
        assert_eq!(next(&port).key, START);
        let ov = Overlapped::with_buffers((), BufList::single(message(1)));
        let id = ov.id();
        socket.send(ov, MsgFlags::NONE).expect("issued");
        let cancelled = socket.cancel(id);
        let c = next(&port);
        assert_eq!(c.key, 7);
        match c.status {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::OperationAborted, "{e}");
                assert!(cancelled.is_ok(), "the cancel found the send it aborted");
                assert_eq!(c.bytes, 0);
                peer.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                let mut buf = [0u8; 16];
                assert!(peer.read(&mut buf).is_err(), "an aborted send sends nothing");
            }
            Ok(()) => {
                assert_eq!(c.bytes, message(1).len());
                assert_eq!(read_exactly(&mut peer, message(1).len()), message(1));
                assert_nothing_more(&mut peer);
            }
        }
        common::assert_quiet(&port);
    }
}

backend_test! {
    /// A worker issues a send while it runs and exits without calling `get` again, while
    /// another thread is already blocked in `get`: the send still goes out, and its completion
    /// reaches the waiting thread well before that thread's timeout.
    fn a_send_queued_by_an_exiting_worker_still_goes() {
        let port = port::<()>(1);
        let (socket, mut peer) = tcp_pair(&port, 9);
        port.post(0, START, None).unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let worker = {
            let (port, socket) = (port.clone(), socket.clone());
            thread::spawn(move || {
                assert_eq!(next(&port).key, START, "the worker runs on the port");
                ready_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                socket.send(Overlapped::with_buffers((), BufList::single(message(2))), MsgFlags::NONE).expect("issued");
                // Exits here, still counted as running, without waiting on the port again.
            })
        };
        ready_rx.recv().unwrap();
        let waiter = {
            let port = port.clone();
            thread::spawn(move || port.get(Some(Duration::from_secs(4))))
        };
        // Let the waiter block in the port before the worker issues its send.
        thread::sleep(Duration::from_millis(100));
        go_tx.send(()).unwrap();
        worker.join().unwrap();
        let c = waiter.join().unwrap().expect("the send's packet reaches the waiting thread");
        assert_eq!((c.key, c.bytes), (9, message(2).len()));
        assert!(c.status.is_ok(), "{:?}", c.status);
        assert_eq!(read_exactly(&mut peer, message(2).len()), message(2));
        assert_nothing_more(&mut peer);
    }
}
