//! The `overlapped` command-line tool: runs the lecture's echo servers.
//!
//! `overlapped serve --model port|event|routine --addr 127.0.0.1:9000 [--threads N]` runs the lecture's
//! echo server for that model until SIGINT or SIGTERM, then shuts it down (the port model's
//! workers through posted packets, `PostQueuedCompletionStatus`) and exits 0.

mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "overlapped", version, about = "Windows overlapped I/O and completion ports on Linux")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an echo server built on one of the lecture's I/O models.
    Serve {
        /// The I/O model.
        #[arg(long, value_enum, default_value_t = Model::Port)]
        model: Model,
        /// The address to listen on (port 0 picks a free port; the address is printed).
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: SocketAddr,
        /// Worker threads (0: CPUs x 2).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

/// The lecture's I/O models.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Model {
    /// I/O completion port (lecture section 3).
    Port,
    /// Overlapped I/O with event objects (lecture section 1): one I/O thread waits on every
    /// client's event; `--threads` does not apply.
    Event,
    /// Overlapped I/O with completion routines (lecture section 2): one I/O thread in an
    /// alertable wait runs every client's routines; `--threads` does not apply.
    Routine,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { model, addr, threads } => serve::run(model, addr, threads),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overlapped: {e}");
            ExitCode::FAILURE
        }
    }
}
