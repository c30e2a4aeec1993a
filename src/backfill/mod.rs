//! The batched backfill of a `backfill` phase. It walks a table by key
//! range, in key order, in short transactions (`worker`), each updating the
//! rows of its range with the phase's `set`/`where` and moving the worker's
//! cursor in the same transaction, so a crash loses at most the batch in
//! flight. Batch sizes adapt to a target duration (`sizing`); N workers take
//! disjoint ranges; a pause request or Ctrl-C stops every worker after its
//! current batch (`halt`). The ranges are fixed when the backfill first
//! starts, so a resume covers exactly what is left.

pub mod halt;
pub mod sizing;
pub mod worker;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use crate::connect::ConnectionSettings;
use crate::error::{Error, Result};
use crate::events::{Event, Reporter};
use crate::plan::BackfillSpec;
use crate::stop::StopSignal;
use crate::store::Store;
use crate::store::backfill::{TableKey, WorkerRow};
use crate::timefmt;
use halt::{Halt, HaltReason};
use worker::{BatchReport, WorkerContext};

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
    /// lock_timeout of each batch (row locks held by the application).
    pub lock_timeout: Duration,
    pub reporter: &'a dyn Reporter,
    pub stop: &'a StopSignal,
}

/// The effective settings of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub workers: u32,
    pub batch_time: Duration,
    pub min_batch: i64,
    pub max_batch: i64,
    pub pause: Duration,
    /// The ceiling for all workers together.
    pub max_rows_per_second: Option<f64>,
    pub vacuum_every: Option<u64>,
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
}

/// Defaults: 100 ms batches of 100 to 200,000 keys, one worker.
pub const DEFAULT_BATCH_TIME: Duration = Duration::from_millis(100);

impl Settings {
    pub fn new(
        spec: &BackfillSpec,
        overrides: &BackfillOverrides,
        lock_timeout: Duration,
    ) -> Settings {
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
        Settings {
            workers,
            batch_time,
            min_batch: spec.min_batch.unwrap_or(100) as i64,
            max_batch: spec.max_batch.unwrap_or(200_000) as i64,
            pause: overrides
                .pause
                .or_else(|| duration(&spec.pause))
                .unwrap_or(Duration::ZERO),
            max_rows_per_second: max_rate.map(|r| r as f64),
            vacuum_every: overrides.vacuum_every.or(spec.vacuum_every),
            lock_timeout,
            // Far above the target: a batch this slow is split and retried.
            statement_timeout: (batch_time * 20)
                .clamp(Duration::from_secs(2), Duration::from_secs(60)),
        }
    }

    /// Each worker's share of the rows-per-second ceiling.
    pub fn rate_per_worker(&self) -> Option<f64> {
        self.max_rows_per_second
            .map(|rate| rate / f64::from(self.workers.max(1)))
    }
}

/// Figures recorded in the phase's result when a run ends.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillStats {
    pub table: String,
    pub key: Vec<String>,
    pub workers: u32,
    /// Totals over every run of this phase.
    pub rows_updated: u64,
    pub rows_scanned: u64,
    pub batches: u64,
    pub batch_ms_mean: f64,
    pub batch_ms_max: u64,
    /// This run only.
    pub rows_scanned_this_run: u64,
    pub elapsed_ms: u64,
    pub rows_per_second: f64,
    pub batch_ms_p50: u64,
    pub resumed: bool,
    pub rows_estimate: u64,
    pub estimate_source: String,
    pub table_bytes_before: i64,
    pub table_bytes_after: i64,
    pub total_bytes_before: i64,
    pub total_bytes_after: i64,
    /// Growth of the table (heap) since the backfill started.
    pub table_growth_percent: f64,
    pub vacuums: u32,
    pub vacuum_ms: u64,
}

impl BackfillStats {
    /// One line for people.
    pub fn summary(&self) -> String {
        // A resumed backfill's totals span its runs; its time and rate are
        // this run's, so say which is which.
        let this_run = if self.resumed {
            format!(
                " in all runs; this run visited {} in {} at {:.0} rows/s",
                self.rows_scanned_this_run,
                timefmt::millis(self.elapsed_ms as i64),
                self.rows_per_second
            )
        } else {
            format!(
                ", {} at {:.0} rows/s",
                timefmt::millis(self.elapsed_ms as i64),
                self.rows_per_second
            )
        };
        let mut text = format!(
            "{} rows updated ({} visited) in {} batches{this_run}; batches mean {:.0} ms, max {} ms; {} grew {} -> {} ({:+.0}%)",
            self.rows_updated,
            self.rows_scanned,
            self.batches,
            self.batch_ms_mean,
            self.batch_ms_max,
            self.table,
            bytes(self.table_bytes_before),
            bytes(self.table_bytes_after),
            self.table_growth_percent
        );
        if self.vacuums > 0 {
            text.push_str(&format!(
                "; {} VACUUM run(s) took {}",
                self.vacuums,
                timefmt::millis(self.vacuum_ms as i64)
            ));
        }
        text
    }
}

/// `12.3 MB`.
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    if n >= 1e9 {
        format!("{:.1} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else {
        format!("{:.0} kB", n / 1e3)
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

/// Progress as any process sees it (for `orch status`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillProgress {
    pub rows_updated: i64,
    pub rows_scanned: i64,
    pub batches_done: i64,
    pub rows_estimate: i64,
    pub estimate_source: String,
    pub percent: f64,
    pub rows_per_second: f64,
    pub workers: usize,
    pub done: bool,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl BackfillProgress {
    /// e.g. `450000 of ~1000000 rows visited (45%), 440000 updated, 31 batches, 150000 rows/s`.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} of ~{} rows visited ({:.0}%), {} updated, {} batches",
            self.rows_scanned,
            self.rows_estimate,
            self.percent,
            self.rows_updated,
            self.batches_done
        );
        if self.rows_per_second > 0.0 {
            text.push_str(&format!(
                ", {:.0} rows/s on average since it started",
                self.rows_per_second
            ));
        }
        if let Some(at) = self.updated_at {
            text.push_str(&format!(", last batch {}", timefmt::utc(&at)));
        }
        text
    }
}

/// Progress of a backfill phase from its workers' rows (None before it starts).
pub async fn progress(store: &Store, plan: &str, phase: &str) -> Result<Option<BackfillProgress>> {
    let rows = store.backfill_workers(plan, phase).await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(progress_of(&rows)))
}

fn progress_of(rows: &[WorkerRow]) -> BackfillProgress {
    let sum = |f: fn(&WorkerRow) -> i64| rows.iter().map(f).sum::<i64>();
    let scanned = sum(|r| r.rows_scanned);
    let estimate = sum(|r| r.rows_estimate).max(1);
    let started = rows.iter().filter_map(|r| r.started_at).min();
    let updated = rows.iter().filter_map(|r| r.updated_at).max();
    let seconds = match (started, updated) {
        (Some(s), Some(u)) => (u - s).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    };
    BackfillProgress {
        rows_updated: sum(|r| r.rows_updated),
        rows_scanned: scanned,
        batches_done: sum(|r| r.batches_done),
        rows_estimate: estimate,
        estimate_source: rows[0].estimate_source.clone(),
        percent: (scanned as f64 * 100.0 / estimate as f64).min(100.0),
        rows_per_second: if seconds > 0.0 {
            scanned as f64 / seconds
        } else {
            0.0
        },
        workers: rows.len(),
        done: rows.iter().all(|r| r.done),
        updated_at: updated,
    }
}

/// For `orch check --online`: the table exists and has a usable key.
pub async fn check_table(store: &Store, spec: &BackfillSpec) -> Result<String> {
    let key = store.backfill_key(&spec.table, spec.key.as_deref()).await?;
    store
        .prepare_batches(&key, &spec.set, spec.condition.as_deref())
        .await?;
    let size = store.table_size(&key).await?;
    Ok(format!(
        "{}: key ({}), ~{} rows",
        key.display,
        key.column_names().join(", "),
        size.reltuples.max(0.0) as i64
    ))
}

/// Run (or resume) a backfill until it finishes, is paused, is interrupted,
/// or fails.
pub async fn run(job: BackfillJob<'_>) -> Result<BackfillEnd> {
    let started = Instant::now();
    let store = Store::open(
        job.settings,
        &format!("orch backfill {} {}", job.plan, job.phase),
    )
    .await?;
    let key = store
        .backfill_key(&job.spec.table, job.spec.key.as_deref())
        .await?;
    let mut config = Settings::new(job.spec, job.overrides, job.lock_timeout);
    let mut rows = store.backfill_workers(job.plan, job.phase).await?;
    let resumed = !rows.is_empty();
    if rows.is_empty() {
        rows = plan_ranges(&store, &key, config.workers).await?;
        store
            .create_backfill_workers(job.plan, job.phase, &rows)
            .await?;
    } else if rows[0].key_columns != key.column_names() {
        return Err(Error::refused(
            format!(
                "the backfill of {} started walking key ({}) but the key is now ({}); roll the phase back to start over",
                key.display,
                rows[0].key_columns.join(", "),
                key.column_names().join(", ")
            ),
            None,
        ));
    }
    // A resumed backfill keeps the ranges it started with: the rate
    // ceiling is shared among that many workers.
    let recorded = rows.len() as u32;
    if recorded != config.workers {
        job.reporter.report(Event::Info {
            message: format!(
                "the backfill started with {recorded} worker range(s) and resumes with them ({} asked for now)",
                config.workers
            ),
        });
        config.workers = recorded;
    }
    let before = progress_of_or_empty(&rows);
    let estimate = before.rows_estimate.max(0) as u64;
    job.reporter.report(Event::BackfillStarted {
        table: key.display.clone(),
        key: key.column_names(),
        workers: rows.len() as u32,
        total_estimate: estimate,
        estimate_source: rows
            .first()
            .map(|r| r.estimate_source.clone())
            .unwrap_or_default(),
        rows_done_before: before.rows_scanned.max(0) as u64,
    });

    let halt = Halt::default();
    let ctx = WorkerContext {
        settings: job.settings,
        plan: job.plan,
        phase: job.phase,
        spec: job.spec,
        key: &key,
        config: &config,
        halt: &halt,
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<BatchReport>();
    let finished = std::sync::atomic::AtomicBool::new(false);
    let worker_runs: Vec<_> = rows
        .iter()
        .map(|row| {
            let sender = sender.clone();
            let (halt, ctx) = (&halt, &ctx);
            async move {
                let result = worker::work(ctx, row.clone(), sender).await;
                if result.is_err() {
                    halt.set(HaltReason::Failed);
                }
                result
            }
        })
        .collect();
    // The progress loop below ends when the last worker drops its sender.
    drop(sender);
    let workers = async {
        let results = join_all(worker_runs).await;
        finished.store(true, std::sync::atomic::Ordering::SeqCst);
        results
    };
    // (duration in ms, keys visited) of every batch of this run.
    let mut batch_ms: Vec<(u64, u64)> = Vec::new();
    let mut vacuums = (0u32, Duration::ZERO);
    let progress = async {
        let mut done = before.rows_scanned.max(0) as u64;
        let mut batches = 0u64;
        while let Some(report) = receiver.recv().await {
            done += report.rows_scanned.max(0) as u64;
            batches += 1;
            batch_ms.push((
                report.took.as_millis() as u64,
                report.rows_scanned.max(0) as u64,
            ));
            job.reporter.report(Event::BackfillBatch {
                worker: report.worker as u32,
                rows_done: done,
                rows_in_batch: report.rows_scanned.max(0) as u64,
                batch_ms: report.took.as_millis() as u64,
                batch_size: report.size as u64,
                total_estimate: estimate.max(done),
            });
            if let Some(every) = config.vacuum_every
                && batches.is_multiple_of(every)
            {
                let t = Instant::now();
                if let Err(e) = store.vacuum(&key).await {
                    job.reporter.report(Event::Warning {
                        message: format!("VACUUM during the backfill failed: {e}"),
                    });
                }
                vacuums.0 += 1;
                vacuums.1 += t.elapsed();
            }
        }
    };
    let watch = async {
        while !finished.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::select! {
                _ = job.stop.requested(), if !halt.is_set() => halt.set(HaltReason::Interrupted),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if !halt.is_set() && store.pause_requested(job.plan, job.position).await.unwrap_or(false) {
                        halt.set(HaltReason::Paused);
                    }
                }
            }
        }
    };
    let (results, (), ()) = tokio::join!(workers, progress, watch);
    if let Some(error) = results.into_iter().find_map(|r| r.err()) {
        job.reporter.report(Event::BackfillEnded {
            outcome: "failed".to_string(),
            rows_done: 0,
            summary:
                "backfill failed; the rows done so far stay done and a retry resumes after them"
                    .to_string(),
        });
        return Err(error);
    }
    let rows = store.backfill_workers(job.plan, job.phase).await?;
    let stats = stats(
        &store,
        &key,
        &rows,
        started.elapsed(),
        &batch_ms,
        resumed,
        vacuums,
    )
    .await?;
    let (outcome, end) = match halt.reason() {
        None | Some(HaltReason::Failed) => ("finished", BackfillEnd::Finished(stats.clone())),
        Some(HaltReason::Paused) => ("paused", BackfillEnd::Paused(stats.clone())),
        Some(HaltReason::Interrupted) => ("interrupted", BackfillEnd::Interrupted(stats.clone())),
    };
    let summary = match &end {
        BackfillEnd::Finished(s) => format!("backfill finished: {}", s.summary()),
        _ => format!(
            "backfill {outcome} after {} of ~{} rows; the cursor is saved",
            stats.rows_scanned, stats.rows_estimate
        ),
    };
    job.reporter.report(Event::BackfillEnded {
        outcome: outcome.to_string(),
        rows_done: stats.rows_scanned,
        summary,
    });
    Ok(end)
}

fn progress_of_or_empty(rows: &[WorkerRow]) -> BackfillProgress {
    if rows.is_empty() {
        BackfillProgress::default()
    } else {
        progress_of(rows)
    }
}

/// Split the key space into `workers` disjoint ranges ending at today's
/// last key, with the table's size and row estimate recorded.
async fn plan_ranges(store: &Store, key: &TableKey, workers: u32) -> Result<Vec<WorkerRow>> {
    let size = store.table_size(key).await?;
    let (estimate, source) = if size.reltuples > 0.0 {
        (size.reltuples as i64, "estimated from pg_class.reltuples")
    } else {
        (store.count_rows(key).await?, "counted")
    };
    let Some(last) = store.key_at(key, 0, true).await? else {
        return Ok(Vec::new());
    };
    let mut bounds: Vec<Vec<String>> = Vec::new();
    for i in 1..workers as i64 {
        if let Some(split) = store
            .key_at(key, i * estimate / i64::from(workers), false)
            .await?
            && bounds.last() != Some(&split)
            && split != last
        {
            bounds.push(split);
        }
    }
    bounds.push(last);
    let count = bounds.len() as i64;
    let mut rows = Vec::new();
    let mut start: Option<Vec<String>> = None;
    for (i, end) in bounds.into_iter().enumerate() {
        rows.push(WorkerRow {
            worker: i as i32,
            key_columns: key.column_names(),
            range_start: start.clone(),
            range_end: end.clone(),
            cursor: None,
            rows_updated: 0,
            rows_scanned: 0,
            batches_done: 0,
            batch_ms_total: 0,
            batch_ms_max: 0,
            rows_estimate: estimate / count,
            estimate_source: source.to_string(),
            table_bytes_before: size.table_bytes,
            total_bytes_before: size.total_bytes,
            done: false,
            started_at: None,
            updated_at: None,
        });
        start = Some(end);
    }
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
async fn stats(
    store: &Store,
    key: &TableKey,
    rows: &[WorkerRow],
    elapsed: Duration,
    batch_ms: &[(u64, u64)],
    resumed: bool,
    vacuums: (u32, Duration),
) -> Result<BackfillStats> {
    let size = store.table_size(key).await?;
    let p = progress_of_or_empty(rows);
    let batches: i64 = rows.iter().map(|r| r.batches_done).sum();
    let ms_total: i64 = rows.iter().map(|r| r.batch_ms_total).sum();
    let before = rows
        .first()
        .map_or(size.table_bytes, |r| r.table_bytes_before);
    let mut sorted: Vec<u64> = batch_ms.iter().map(|(ms, _)| *ms).collect();
    sorted.sort_unstable();
    let scanned_this_run: u64 = batch_ms.iter().map(|(_, rows)| rows).sum();
    Ok(BackfillStats {
        table: key.display.clone(),
        key: key.column_names(),
        workers: rows.len() as u32,
        rows_updated: p.rows_updated.max(0) as u64,
        rows_scanned: p.rows_scanned.max(0) as u64,
        batches: batches.max(0) as u64,
        batch_ms_mean: if batches > 0 {
            ms_total as f64 / batches as f64
        } else {
            0.0
        },
        batch_ms_max: rows
            .iter()
            .map(|r| r.batch_ms_max.max(0) as u64)
            .max()
            .unwrap_or(0),
        rows_scanned_this_run: scanned_this_run,
        elapsed_ms: elapsed.as_millis() as u64,
        rows_per_second: scanned_this_run as f64 / elapsed.as_secs_f64().max(0.001),
        batch_ms_p50: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
        resumed,
        rows_estimate: p.rows_estimate.max(0) as u64,
        estimate_source: p.estimate_source,
        table_bytes_before: before,
        table_bytes_after: size.table_bytes,
        total_bytes_before: rows
            .first()
            .map_or(size.total_bytes, |r| r.total_bytes_before),
        total_bytes_after: size.total_bytes,
        table_growth_percent: if before > 0 {
            (size.table_bytes - before) as f64 * 100.0 / before as f64
        } else {
            0.0
        },
        vacuums: vacuums.0,
        vacuum_ms: vacuums.1.as_millis() as u64,
    })
}
