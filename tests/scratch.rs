//! Scratch: one accept, echo and close round trip through a port.
use overlapped::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn echo_once() {
    let port: CompletionPort<&'static str> = CompletionPort::new(0).unwrap();
    let listener = Socket::listen_tcp("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = listener.local_addr().unwrap();
    port.associate(&listener, 7).unwrap();
    listener.accept(Overlapped::new("accept")).unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    let c = port.get(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(c.key, 7);
    c.status.unwrap();
    let mut ov = c.overlapped.unwrap();
    let acc = ov.take_accepted().unwrap();
    assert_eq!(acc.remote_addr, client.local_addr().unwrap());
    port.associate(&acc.socket, 9).unwrap();
    acc.socket.recv(Overlapped::with_buffers("recv", BufList::zeroed(100)), MsgFlags::NONE).unwrap();
    client.write_all(b"hello").unwrap();
    let c = port.get(Some(Duration::from_secs(5))).unwrap();
    assert_eq!((c.key, c.bytes), (9, 5));
    let mut ov = c.overlapped.unwrap();
    ov.buffers_mut()[0].truncate(5);
    acc.socket.send(ov, MsgFlags::NONE).unwrap();
    let c = port.get(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(c.bytes, 5);
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    let e = port.get(Some(Duration::from_millis(10))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    // pending recv then close socket -> connection aborted
    let ov = c.overlapped.unwrap();
    acc.socket.recv(ov, MsgFlags::NONE).unwrap();
    acc.socket.close().unwrap();
    let c = port.get(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(c.status.unwrap_err().kind(), ErrorKind::ConnectionAborted);
    port.close();
    assert_eq!(port.get(None).unwrap_err().kind(), ErrorKind::PortClosed);
}
