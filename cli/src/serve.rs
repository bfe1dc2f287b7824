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
    check_backend()?;
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

/// Explains a backend problem in words before anything starts: an unknown
/// `OVERLAPPED_BACKEND`, or a forced backend that cannot run here (no silent fallback).
fn check_backend() -> Result<(), Box<dyn Error>> {
    let forced = std::env::var("OVERLAPPED_BACKEND").ok().filter(|v| !v.is_empty());
    let backend = overlapped::Backend::detect().map_err(|_| {
        format!("OVERLAPPED_BACKEND={:?} is not a backend: use io_uring or epoll", forced.as_deref().unwrap_or(""))
    })?;
    backend.probe().map_err(|e| match forced {
        Some(_) => format!("the {backend} backend (forced by OVERLAPPED_BACKEND) cannot run here: {e}"),
        None => format!("the {backend} backend cannot run here: {e}"),
    })?;
    Ok(())
}
