//! orch's integration tests: the real binary against a real PostgreSQL, one
//! fresh database per test (see `support`).

mod support;

mod adopt_formats;
mod backfill;
mod backfill_command;
mod bad_files;
mod check;
mod cli;
mod config;
mod connect;
mod error_places;
mod faults;
mod first_hour;
mod fleet;
mod formats;
mod formats_b;
mod history;
mod lint;
mod locks_held;
mod migrations;
mod plans;
mod preview;
mod real_folders;
mod recipes;
mod safety;
mod snapshots;
mod sync;
mod tls;
mod verbs;
mod zero_downtime;
