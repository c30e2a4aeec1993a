//! The batched backfill of a `backfill` phase. It walks a table in short
//! transactions (`worker`), each updating the rows of one batch with the
//! phase's `set`/`where` and moving the worker's cursor in the same
//! transaction, so a crash loses at most the batch in flight. How the table
//! is cut into ranges and walked is a `walk` (by key today). Batch sizes adapt
//! to a target duration (`sizing`); N workers take disjoint ranges; a pause
//! request or Ctrl-C stops every worker after its current batch (`halt`). The
//! ranges are fixed when the backfill first starts, so a resume covers
//! exactly what is left (`coordinator`).

mod coordinator;
pub mod halt;
pub mod health;
pub mod program;
mod progress;
pub mod sizing;
mod stats;
pub mod walk;
pub mod worker;

use std::time::Duration;

use crate::connect::ConnectionSettings;
use crate::error::Result;
use crate::events::Reporter;
pub use crate::plan::BackfillOverrides;
use crate::plan::{BackfillSpec, tuning};
use crate::stop::StopSignal;
use crate::store::Store;
use crate::store::backfill::Table;
use crate::store::locks::Fence;

pub use coordinator::run;
pub use progress::{BackfillProgress, progress};
pub use stats::BackfillStats;

/// One backfill run (start or resume).
pub struct BackfillJob<'a> {
    /// Where the table is; each worker opens its own connection.
    pub connection: &'a ConnectionSettings,
    pub plan: &'a str,
    /// Phase id and 1-based position.
    pub phase: &'a str,
    pub position: i32,
    pub spec: &'a BackfillSpec,
    pub overrides: &'a BackfillOverrides,
    /// lock_timeout of each batch (row locks held by the application).
    pub lock_timeout: Duration,
    pub reporter: &'a dyn Reporter,
    pub stop: &'a StopSignal,
    /// The locks the run works under (`Store::fences`): each batch commits
    /// only while they are held, and a lost one halts the run.
    pub fences: Vec<Fence>,
}

/// The effective tuning of one run: workers, batch sizing, throttling,
/// VACUUM and timeouts, from the phase, the command line and defaults.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub workers: u32,
    pub batch_time: Duration,
    pub min_batch: i64,
    pub max_batch: i64,
    pub pause: Duration,
    /// The ceiling for all workers together.
    pub max_rows_per_second: Option<f64>,
    pub vacuum: tuning::VacuumPace,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// Each batch's `synchronous_commit` (default off).
    pub synchronous_commit: &'static str,
    /// Wait before a batch while a standby replays further behind (None: never).
    pub max_replica_lag: Option<Duration>,
    /// Wait before a batch while the server writes more WAL per second.
    pub max_wal_rate: Option<u64>,
}

/// Defaults: 100 ms batches of 100 to 200,000 keys, one worker.
pub const DEFAULT_BATCH_TIME: Duration = Duration::from_millis(100);

impl RunSettings {
    pub fn new(
        spec: &BackfillSpec,
        overrides: &BackfillOverrides,
        lock_timeout: Duration,
    ) -> RunSettings {
        let duration = |text: &Option<String>| {
            text.as_deref()
                .and_then(|t| crate::timefmt::parse_duration(t).ok())
        };
        let batch_time = overrides
            .batch_time
            .or_else(|| duration(&spec.batch_time))
            .unwrap_or(DEFAULT_BATCH_TIME);
        let workers = overrides.workers.or(spec.workers).unwrap_or(1).clamp(1, 64);
        let max_rate = overrides.max_rows_per_second.or(spec.max_rows_per_second);
        RunSettings {
            workers,
            batch_time,
            min_batch: spec.min_batch.unwrap_or(100) as i64,
            max_batch: spec.max_batch.unwrap_or(200_000) as i64,
            pause: overrides
                .pause
                .or_else(|| duration(&spec.pause))
                .unwrap_or(Duration::ZERO),
            max_rows_per_second: max_rate.map(|r| r as f64),
            // Validated with the plan; a value that does not parse here
            // (never) means no VACUUM.
            vacuum: overrides.vacuum_every.unwrap_or_else(|| {
                spec.vacuum_every
                    .as_ref()
                    .map_or(tuning::VacuumPace::Auto, |v| {
                        tuning::vacuum_pace(v).unwrap_or(tuning::VacuumPace::Off)
                    })
            }),
            lock_timeout,
            // Far above the target: a batch this slow is split and retried.
            statement_timeout: (batch_time * 20)
                .clamp(Duration::from_secs(2), Duration::from_secs(60)),
            // Validated with the plan; a value that does not parse here
            // (never) falls back to the safe side.
            synchronous_commit: spec
                .synchronous_commit
                .as_deref()
                .map(|v| tuning::synchronous_commit(v).unwrap_or("on"))
                .unwrap_or("off"),
            max_replica_lag: match spec.max_replica_lag.as_deref() {
                None => Some(tuning::DEFAULT_MAX_REPLICA_LAG),
                Some(text) => {
                    tuning::max_replica_lag(text).unwrap_or(Some(tuning::DEFAULT_MAX_REPLICA_LAG))
                }
            },
            max_wal_rate: spec
                .max_wal_rate
                .as_deref()
                .and_then(|v| tuning::max_wal_rate(v).ok()),
        }
    }

    /// Each worker's share of the rows-per-second ceiling.
    pub fn rate_per_worker(&self) -> Option<f64> {
        self.max_rows_per_second
            .map(|rate| rate / f64::from(self.workers.max(1)))
    }
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

/// How many rows a table has, and how orch knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RowCount {
    pub rows: i64,
    /// From `pg_class.reltuples` (the table was analysed), else counted.
    pub estimated: bool,
    /// `reltuples` is -1: never analysed (or vacuumed) since it was created
    /// (PostgreSQL 14 and later; earlier versions say 0).
    pub never_analysed: bool,
}

impl RowCount {
    /// What `backfill_workers.estimate_source` records.
    pub fn source(&self) -> &'static str {
        if self.estimated {
            "estimated from pg_class.reltuples"
        } else {
            "counted"
        }
    }

    /// For people: `~1200 rows (estimated from pg_class.reltuples)`,
    /// `20030 rows (counted: never analysed)`.
    pub fn describe(&self) -> String {
        match (self.estimated, self.never_analysed) {
            (true, _) => format!("~{} rows ({})", self.rows, self.source()),
            (false, true) => format!("{} rows (counted: never analysed)", self.rows),
            (false, false) => format!("{} rows (counted)", self.rows),
        }
    }
}

/// The table's rows: `reltuples` when statistics say there are some, an
/// exact count when they are missing (-1, never analysed) or say none (0:
/// empty when analysed, or unknown before PostgreSQL 14), where a count is
/// cheap or necessary.
pub(crate) async fn row_count(store: &Store, table: &Table) -> Result<RowCount> {
    let size = store.table_size(table).await?;
    if size.reltuples > 0.0 {
        return Ok(RowCount {
            rows: size.reltuples as i64,
            estimated: true,
            never_analysed: false,
        });
    }
    Ok(RowCount {
        rows: store.count_rows(table).await?,
        estimated: false,
        never_analysed: size.reltuples < 0.0,
    })
}

/// A table this size or smaller is counted when its statistics say nothing
/// (`row_estimate`): a count of it is quick.
const SMALL_TABLE_BYTES: i64 = 32 * 1024 * 1024;

/// The table's rows for `orch advance --dry-run`: `reltuples`, else a count
/// when the table is small; None when it has no statistics and is too big
/// to count on the spot.
pub(crate) async fn row_estimate(store: &Store, table: &Table) -> Result<Option<RowCount>> {
    let size = store.table_size(table).await?;
    if size.reltuples <= 0.0 && size.table_bytes > SMALL_TABLE_BYTES {
        return Ok(None);
    }
    Ok(Some(row_count(store, table).await?))
}

/// For `orch check --online`, inside its preview transaction (the schema as
/// it will be when the phase runs): the table exists, has a key to walk, and
/// the batch statements compile. Catalog reads and compiling only: the
/// preview may hold the locks of earlier phases' migrations meanwhile.
pub async fn check_table(store: &Store, spec: &BackfillSpec) -> Result<String> {
    let walk = walk::open(store, spec).await?;
    walk.prepare(store).await?;
    Ok(format!("{}: {}", walk.table().display, walk.describe()))
}

/// For `orch check --online`, after its preview, on the database as it is:
/// how many rows the table holds (this may count them). None when the table
/// does not exist yet (an earlier phase creates it).
pub async fn measure_table(store: &Store, spec: &BackfillSpec) -> Result<Option<RowCount>> {
    let Ok(table) = store.backfill_table(&spec.table).await else {
        return Ok(None);
    };
    Ok(Some(row_count(store, &table).await?))
}

/// A `reads` or `writes` column a command backfill's table lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingColumn {
    /// `reads` or `writes`.
    pub field: &'static str,
    /// Its place in that list.
    pub index: usize,
    pub message: String,
}

/// For `orch check --online`: the first `reads` or `writes` column of a
/// command backfill that its table does not have (None for a `set`
/// backfill, or when all are there).
pub async fn missing_command_column(
    store: &Store,
    spec: &BackfillSpec,
) -> Result<Option<MissingColumn>> {
    if spec.command.is_none() {
        return Ok(None);
    }
    let table = store.backfill_table(&spec.table).await?;
    let columns = store.table_columns(&table).await?;
    for (field, names) in [("reads", &spec.reads), ("writes", &spec.writes)] {
        for (index, name) in names.iter().flatten().enumerate() {
            if !columns.iter().any(|c| &c.name == name) {
                return Ok(Some(MissingColumn {
                    field,
                    index,
                    message: format!(
                        "{field} names column {name}, which {} does not have",
                        table.display
                    ),
                }));
            }
        }
    }
    Ok(None)
}
