//! orch: zero-downtime schema changes for PostgreSQL.
//!
//! Three layers, arrows pointing one way: `cli` (argument parsing, printing)
//! -> the engine (`engine`, reading `migration` files) -> `store`, which
//! holds every SQL statement orch itself issues.

pub(crate) mod backfill;
pub mod cli;
pub mod connect;
pub(crate) mod demo;
pub(crate) mod engine;
pub mod error;
pub(crate) mod events;
pub(crate) mod identity;
#[cfg(test)]
mod layers;
pub(crate) mod migration;
pub mod pg_server;
pub(crate) mod plan;
pub(crate) mod sql_text;
pub(crate) mod stop;
pub(crate) mod store;
pub(crate) mod timefmt;
pub(crate) mod yaml_locate;

pub use error::{Error, Result};

// The batched backfill on its own, for the backfill benchmark
// (`benches/backfill.rs`), which compares it with other ways to fill a
// column in the same process.
pub use backfill::{
    BackfillEnd, BackfillJob, BackfillOverrides, BackfillStats, run as run_backfill,
};
pub use events::{Event, Reporter, Silent};
pub use plan::BackfillSpec;
pub use stop::StopSignal;
pub use store::Store;

/// Log to stderr: `RUST_LOG` if set, else warnings (`-v` info, `-vv` debug).
pub fn init_tracing(verbosity: u8) {
    // deadpool warns of every pooled connection a stopped server closed
    // (the demo's Ctrl-C); that is expected, so only its errors show.
    let default = match verbosity {
        0 => "warn,deadpool=error",
        1 => "orch=info,warn,deadpool=error",
        _ => "orch=debug,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: CI logs and `2> file` stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// Print an error with its cause chain, once, to stderr.
pub fn print_error(error: &Error) {
    let mut text = format!("error: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    eprintln!("{text}");
}
