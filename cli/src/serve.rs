//! `overlapped serve`: starts the chosen model's echo server, waits for SIGINT or SIGTERM,
//! then stops it.

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::Model;

#[path = "../../examples/iocp_echo_server.rs"]
#[allow(dead_code)]
mod iocp_echo_server;

#[path = "../../examples/event_echo_server.rs"]
#[allow(dead_code)]
mod event_echo_server;

#[path = "../../examples/routine_echo_server.rs"]
#[allow(dead_code)]
mod routine_echo_server;

pub(crate) fn run(model: Model, addr: SocketAddr, threads: usize) -> Result<(), Box<dyn Error>> {
    // Install the handlers before the server starts, so a signal can never kill it half-way.
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    match model {
        Model::Port => {
            let server = iocp_echo_server::EchoServer::start(addr, threads)?;
            announce("port", server.local_addr(), &server.backend().to_string())?;
            let _ = signals.forever().next();
            server.stop()?;
        }
        Model::Event => {
            let server = event_echo_server::EchoServer::start(addr)?;
            announce("event", server.local_addr(), &server.backend().to_string())?;
            let _ = signals.forever().next();
            server.stop()?;
        }
        Model::Routine => {
            let server = routine_echo_server::EchoServer::start(addr)?;
            announce("routine", server.local_addr(), &server.backend().to_string())?;
            let _ = signals.forever().next();
            server.stop()?;
        }
    }
    Ok(())
}

/// Prints the line tests and scripts read to find the server.
fn announce(model: &str, addr: SocketAddr, backend: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "overlapped: serving model={model} addr={addr} backend={backend}")?;
    out.flush()
}
