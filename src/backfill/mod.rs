//! The batched backfill of a `backfill` phase: walks a table by key range in
//! short transactions, persisting its cursor with every batch.
//!
//! INTERFACE ONLY: the engine is being written; `run` refuses until then.

use std::time::Duration;

use serde::Serialize;

use crate::connect::ConnectionSettings;
use crate::error::{Error, Result};
use crate::events::Reporter;
use crate::plan::BackfillSpec;
use crate::stop::StopSignal;
use crate::store::Store;

/// Command-line overrides of a phase's backfill settings.
#[derive(Debug, Clone, Default)]
pub struct BackfillOverrides {
    pub workers: Option<u32>,
    pub batch_time: Option<Duration>,
    pub pause: Option<Duration>,
    pub max_rows_per_second: Option<u64>,
    pub vacuum_every: Option<u64>,
}

/// One backfill run (start or resume).
pub struct BackfillJob<'a> {
    pub settings: &'a ConnectionSettings,
    pub plan: &'a str,
    /// Phase id and 1-based position.
    pub phase: &'a str,
    pub position: i32,
    pub spec: &'a BackfillSpec,
    pub overrides: &'a BackfillOverrides,
    pub lock_timeout: Duration,
    pub reporter: &'a dyn Reporter,
    pub stop: &'a StopSignal,
}

/// Figures recorded when a backfill ends.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillStats {
    pub rows_updated: u64,
    pub batches: u64,
    pub elapsed_ms: u64,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub enum BackfillEnd {
    Finished(BackfillStats),
    /// An operator asked to pause (`orch pause`).
    Paused(BackfillStats),
    /// Ctrl-C / SIGTERM.
    Interrupted(BackfillStats),
}

/// Progress as other processes see it (for `orch status`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillProgress {
    pub rows_done: i64,
    pub batches_done: i64,
}

impl BackfillProgress {
    /// e.g. `450000 of ~1000000 rows (45%), 90 batches`.
    pub fn describe(&self) -> String {
        format!("{} rows, {} batches", self.rows_done, self.batches_done)
    }
}

pub async fn run(_job: BackfillJob<'_>) -> Result<BackfillEnd> {
    Err(Error::failed("the backfill engine is not built yet"))
}

pub async fn progress(
    _store: &Store,
    _plan: &str,
    _phase: &str,
) -> Result<Option<BackfillProgress>> {
    Ok(None)
}

/// For `orch check --online`: does the table exist and have a usable key?
pub async fn check_table(_store: &Store, _spec: &BackfillSpec) -> Result<String> {
    Err(Error::failed("the backfill engine is not built yet"))
}
