//! orch: zero-downtime schema changes for PostgreSQL.
//!
//! The top-level modules form layers; a module imports only from layers
//! below it (`src/layers.rs` lists them, and its test keeps the imports
//! true). Top to bottom:
//!
//! - `cli`: clap types, parsing, printing (the human reporter, tables,
//!   `--json` output).
//!   It calls the engine; it never talks to the database itself.
//! - `demo`: `orch demo`, a throwaway server, a simulated application and
//!   the example plan walked through the engine.
//! - `engine`: what orch decides and in which order: migrations
//!   (`migrator`), plans (`plan_advance`, `plan_confirm`, `plan_rollback`,
//!   `plan_status`), phase kinds (`phases`, one file per kind), checks and
//!   lock retries. It reports through `events`; it never prints and never
//!   formats SQL.
//! - `backfill`: the batched backfill; how a table is cut into batches is a
//!   walk (`backfill::walk`, one file per walk).
//! - `store`: every SQL statement orch itself issues, and orch's schema.
//! - `recipe` (no database): `orch plan new`'s recipes (one file each),
//!   generating a plan and its migrations from options and catalog facts.
//! - `events` (no database): what the engine emits for a reporter.
//! - `plan` (no database): the plan format, its rules (`plan::kinds`, one
//!   file per phase kind), the phase state machine, the audit log's actions
//!   and the rows of plan state.
//! - `lint` (no database): the migration lint, over squawk's parser, with
//!   orch's rules (`lint::hazards`, listed in `lint::rules`).
//! - `config` (no database): `orch.toml` (defaults and target groups) and
//!   `.env`.
//! - `migration` (no database): migration folders behind one seam
//!   (`migration::source`, one file per folder format).
//! - leaves: `sql_text`, `yaml_locate`, `identity`, `pg_server`, `stop`,
//!   `text_file`, `timefmt`, then `connect`, then `error`.
//!
//! The library's API is what the binary, the tests and the benchmarks use:
//! `cli` (the binary's entry), `connect` (connection settings as libpq
//! reads them), `pg_server` (a throwaway PostgreSQL), `Error`/`Result`, and
//! the backfill runner with what it takes (for `benches/backfill.rs`).
//! Everything else is `pub(crate)`. `docs/architecture.md` says where each
//! kind of change goes.

pub(crate) mod backfill;
pub mod cli;
pub(crate) mod config;
pub mod connect;
pub(crate) mod demo;
pub(crate) mod engine;
pub mod error;
pub(crate) mod events;
#[cfg(test)]
mod fuzz;
pub(crate) mod identity;
#[cfg(test)]
mod layers;
pub(crate) mod lint;
pub(crate) mod migration;
pub mod pg_server;
pub(crate) mod plan;
pub(crate) mod recipe;
pub(crate) mod sql_text;
pub(crate) mod stop;
pub(crate) mod store;
pub(crate) mod text_file;
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
pub use plan::{BackfillSpec, VacuumEvery, WalkKind};
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
        // Colour on a terminal unless NO_COLOR, or anywhere with CLICOLOR_FORCE.
        .with_ansi(cli::color::stderr_enabled())
        .with_target(false)
        .try_init();
}

/// Print an error with its cause chain, once, to stderr.
pub fn print_error(error: &Error) {
    // `--exit-code`'s finding is not a failure: the status was printed.
    if let Error::Waiting { summary } = error {
        eprintln!("{summary}");
        return;
    }
    let mut text = format!("error: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    eprintln!("{text}");
}
