//! The coordinator of one backfill run: finds or records the workers' ranges,
//! fans out one worker per range, follows their batches (reporting progress
//! and running the periodic VACUUM), watches for a pause request or Ctrl-C,
//! and sums the run up when it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::backfill::halt::{Halt, HaltReason};
use crate::backfill::progress::{BackfillProgress, progress_of_or_empty};
use crate::backfill::stats::{ThisRun, stats};
use crate::backfill::walk::{self, Walk};
use crate::backfill::worker::{self, WorkerContext, WorkerNews};
use crate::backfill::{BackfillEnd, BackfillJob, RunSettings, row_count};
use crate::error::Result;
use crate::events::Event;
use crate::plan::tuning::{AUTO_MIN_ROWS, AUTO_SHARE, VacuumPace};
use crate::store::Store;
use crate::store::backfill::WorkerRow;

/// Run (or resume) a backfill until it finishes, is paused, is interrupted,
/// or fails.
pub async fn run(job: BackfillJob<'_>) -> Result<BackfillEnd> {
    let started = Instant::now();
    let store = Store::open(
        job.connection,
        &format!("orch backfill {} {}", job.plan, job.phase),
    )
    .await?;
    store.adopt_fences(&job.fences);
    let mut run_settings = RunSettings::new(job.spec, job.overrides, job.lock_timeout);
    let walk = walk::open(&store, job.spec).await?;
    let walk = walk.as_ref();
    let (rows, resumed) = worker_rows(&store, &job, walk, run_settings.workers).await?;
    keep_recorded_workers(&job, walk, &rows, &mut run_settings);
    announce(&job, walk, &rows, run_settings.workers);
    let halt = Halt::default();
    let ctx = WorkerContext {
        connection: job.connection,
        plan: job.plan,
        phase: job.phase,
        walk,
        run_settings: &run_settings,
        halt: &halt,
        fences: &job.fences,
    };
    let mut this_run = ThisRun {
        started,
        resumed,
        batch_ms: Vec::new(),
        vacuums: 0,
        vacuum_time: Duration::ZERO,
    };
    let mut stages: Vec<u32> = rows.iter().map(|r| walk.stage(&r.key_columns)).collect();
    stages.sort_unstable();
    stages.dedup();
    let mut results = Vec::new();
    for stage in stages {
        if halt.is_set() || store.lost_fence().is_some() || results.iter().any(Result::is_err) {
            break;
        }
        // Each stage starts from the counts the stages before it left.
        let rows = store.backfill_workers(job.plan, job.phase).await?;
        let before = progress_of_or_empty(&rows);
        let stage_rows: Vec<WorkerRow> = rows
            .into_iter()
            .filter(|r| walk.stage(&r.key_columns) == stage && !r.done)
            .collect();
        if stage_rows.is_empty() {
            continue;
        }
        results = fan_out(&job, &store, &ctx, &stage_rows, &before, &mut this_run).await;
    }
    if let Some(fence) = store.lost_fence() {
        job.reporter.report(Event::BackfillEnded {
            outcome: "stopped".to_string(),
            rows_done: 0,
            summary: "backfill stopped after its workers' current batches: this process lost its lock on the plan; the rows done so far stay done, and whoever holds the lock next resumes after them".to_string(),
        });
        return Err(fence.error());
    }
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
    finish(&job, &store, walk, halt.reason(), &this_run).await
}

/// The workers' rows and whether they are resumed: the ranges an earlier
/// run of this phase recorded, or ranges cut and recorded now.
async fn worker_rows(
    store: &Store,
    job: &BackfillJob<'_>,
    walk: &dyn Walk,
    workers: u32,
) -> Result<(Vec<WorkerRow>, bool)> {
    let rows = store.backfill_workers(job.plan, job.phase).await?;
    if let Some(first) = rows.first() {
        walk.check_resume(&first.key_columns)?;
        store.resume_backfill_clock(job.plan, job.phase).await?;
        let rows = store.backfill_workers(job.plan, job.phase).await?;
        return Ok((rows, true));
    }
    let rows = first_rows(store, walk, workers).await?;
    store
        .create_backfill_workers(job.plan, job.phase, &rows)
        .await?;
    Ok((rows, false))
}

/// The rows of a backfill's first run: the walk's ranges over the table as
/// it is now, with its size and row estimate recorded.
async fn first_rows(store: &Store, walk: &dyn Walk, workers: u32) -> Result<Vec<WorkerRow>> {
    let size = store.table_size(walk.table()).await?;
    let count = row_count(store, walk.table()).await?;
    let (estimate, source) = (count.rows, count.source());
    let ranges = walk.cut(store, workers, estimate).await?;
    Ok(ranges
        .into_iter()
        .enumerate()
        .map(|(i, range)| WorkerRow {
            worker: i as i32,
            key_columns: range.key_columns,
            range_start: range.start,
            range_end: range.end,
            cursor: None,
            rows_updated: 0,
            rows_scanned: 0,
            batches_done: 0,
            batch_ms_total: 0,
            batch_ms_max: 0,
            rows_estimate: range.rows_estimate,
            estimate_source: source.to_string(),
            table_bytes_before: size.table_bytes,
            total_bytes_before: size.total_bytes,
            done: false,
            started_at: None,
            updated_at: None,
            waiting: None,
        })
        .collect())
}

/// A resumed backfill keeps the ranges it started with: the rate ceiling is
/// shared among that many workers.
fn keep_recorded_workers(
    job: &BackfillJob<'_>,
    walk: &dyn Walk,
    rows: &[WorkerRow],
    settings: &mut RunSettings,
) {
    let recorded = widest_stage(walk, rows);
    if recorded != settings.workers {
        job.reporter.report(Event::Info {
            message: format!(
                "the backfill started with {recorded} worker range(s) and resumes with them ({} asked for now)",
                settings.workers
            ),
        });
        settings.workers = recorded;
    }
}

/// The most ranges one stage runs at once: the run's workers.
fn widest_stage(walk: &dyn Walk, rows: &[WorkerRow]) -> u32 {
    let mut stages: Vec<u32> = rows.iter().map(|r| walk.stage(&r.key_columns)).collect();
    stages.sort_unstable();
    stages
        .chunk_by(|a, b| a == b)
        .map(|same| same.len() as u32)
        .max()
        .unwrap_or(0)
}

/// Report the start, with the progress made by earlier runs.
fn announce(job: &BackfillJob<'_>, walk: &dyn Walk, rows: &[WorkerRow], workers: u32) {
    let before = progress_of_or_empty(rows);
    job.reporter.report(Event::BackfillStarted {
        table: walk.table().display.clone(),
        key: walk.key_columns(),
        workers,
        total_estimate: before.rows_estimate.max(0) as u64,
        estimate_source: rows
            .first()
            .map(|r| r.estimate_source.clone())
            .unwrap_or_default(),
        rows_done_before: before.rows_scanned.max(0) as u64,
    });
}

/// One worker per range, followed and watched until the last one returns;
/// the first to fail halts the others.
async fn fan_out(
    job: &BackfillJob<'_>,
    store: &Store,
    ctx: &WorkerContext<'_>,
    rows: &[WorkerRow],
    before: &BackfillProgress,
    this_run: &mut ThisRun,
) -> Vec<Result<()>> {
    let (sender, receiver) = unbounded_channel::<WorkerNews>();
    let finished = AtomicBool::new(false);
    let ended = Notify::new();
    let worker_runs: Vec<_> = rows
        .iter()
        .map(|row| {
            let sender = sender.clone();
            async move {
                let result = worker::work(ctx, row.clone(), sender).await;
                if result.is_err() {
                    ctx.halt.set(HaltReason::Failed);
                }
                result
            }
        })
        .collect();
    // `follow` ends when the last worker drops its sender.
    drop(sender);
    let workers = async {
        let results = join_all(worker_runs).await;
        finished.store(true, Ordering::SeqCst);
        // The watch ends now, not at its next poll.
        ended.notify_one();
        results
    };
    let (results, (), ()) = tokio::join!(
        workers,
        follow(job, store, ctx, receiver, before, this_run),
        watch(job, store, ctx.halt, &finished, &ended)
    );
    results
}

/// Report each committed batch, and VACUUM at the run's pace.
async fn follow(
    job: &BackfillJob<'_>,
    store: &Store,
    ctx: &WorkerContext<'_>,
    mut receiver: UnboundedReceiver<WorkerNews>,
    before: &BackfillProgress,
    this_run: &mut ThisRun,
) {
    let estimate = before.rows_estimate.max(0) as u64;
    let mut done = before.rows_scanned.max(0) as u64;
    let mut batches = 0u64;
    // Rows visited since the last VACUUM (`vacuum_every: auto`).
    let mut since_vacuum = 0u64;
    // VACUUM runs on a connection of its own: the watch for `orch pause`
    // shares the coordinator's, and a VACUUM may take seconds.
    let mut vacuum_store: Option<Store> = None;
    let mut rejected = RejectedCount::new(job);
    while let Some(news) = receiver.recv().await {
        let report = match news {
            WorkerNews::Batch(report) => report,
            WorkerNews::Waiting { worker, reason } => {
                job.reporter.report(Event::BackfillWaiting {
                    worker: worker as u32,
                    reason,
                });
                continue;
            }
        };
        let (rows, ms) = (
            report.rows_scanned.max(0) as u64,
            report.took.as_millis() as u64,
        );
        done += rows;
        batches += 1;
        this_run.batch_ms.push((ms, rows));
        job.reporter.report(Event::BackfillBatch {
            worker: report.worker as u32,
            rows_done: done,
            rows_in_batch: rows,
            batch_ms: ms,
            batch_size: report.size as u64,
            total_estimate: estimate.max(done),
            rows_rejected: rejected.now(store).await,
        });
        since_vacuum += rows;
        let due = match ctx.run_settings.vacuum {
            VacuumPace::Off => false,
            VacuumPace::Batches(every) => batches.is_multiple_of(every),
            VacuumPace::Auto => {
                estimate >= AUTO_MIN_ROWS && since_vacuum as f64 >= AUTO_SHARE * estimate as f64
            }
        };
        if due {
            since_vacuum = 0;
            vacuum(job, &mut vacuum_store, ctx.walk, this_run).await;
        }
    }
}

/// A command backfill's rejected and left-out rows for the progress line,
/// recounted at most once a second (always 0 for a `set` backfill).
struct RejectedCount<'j> {
    job: Option<&'j BackfillJob<'j>>,
    count: u64,
    counted: Option<Instant>,
}

impl<'j> RejectedCount<'j> {
    fn new(job: &'j BackfillJob<'j>) -> Self {
        RejectedCount {
            job: job.spec.command.as_ref().map(|_| job),
            count: 0,
            counted: None,
        }
    }

    async fn now(&mut self, store: &Store) -> u64 {
        let Some(job) = self.job else { return 0 };
        if self
            .counted
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.counted = Some(Instant::now());
            if let Ok((_, counts)) = store.backfill_errors(job.plan, job.phase, 0).await {
                self.count = (counts.rejected + counts.left_out).max(0) as u64;
            }
        }
        self.count
    }
}

/// VACUUM the table between batches, on its own connection (opened at the
/// first); a failure is only a warning.
async fn vacuum(
    job: &BackfillJob<'_>,
    connection: &mut Option<Store>,
    walk: &dyn Walk,
    this_run: &mut ThisRun,
) {
    let t = Instant::now();
    if connection.is_none() {
        let name = format!("orch backfill {} {} vacuum", job.plan, job.phase);
        match Store::open(job.connection, &name).await {
            Ok(store) => *connection = Some(store),
            Err(e) => job.reporter.report(Event::Warning {
                message: format!("VACUUM during the backfill: cannot connect: {e}"),
            }),
        }
    }
    let Some(store) = connection.as_ref() else {
        return;
    };
    if let Err(e) = store.vacuum(walk.table()).await {
        job.reporter.report(Event::Warning {
            message: format!("VACUUM during the backfill failed: {e}"),
        });
    }
    this_run.vacuums += 1;
    this_run.vacuum_time += t.elapsed();
}

/// Until the workers have finished: halt them on Ctrl-C, when an operator
/// asks to pause (`orch pause`, polled every 200 ms), or when the plan's
/// lock is lost (its watcher says so; seen within 200 ms).
async fn watch(
    job: &BackfillJob<'_>,
    store: &Store,
    halt: &Halt,
    finished: &AtomicBool,
    ended: &Notify,
) {
    while !finished.load(Ordering::SeqCst) {
        tokio::select! {
            () = ended.notified() => {}
            _ = job.stop.requested(), if !halt.is_set() => halt.set(HaltReason::Interrupted),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if store.lost_fence().is_some() {
                    halt.set(HaltReason::LockLost);
                }
                if !halt.is_set() && store.pause_requested(job.plan, job.position).await.unwrap_or(false) {
                    halt.set(HaltReason::Paused);
                }
            }
        }
    }
}

/// Sum the run up, report its end, and say how it ended.
async fn finish(
    job: &BackfillJob<'_>,
    store: &Store,
    walk: &dyn Walk,
    reason: Option<HaltReason>,
    this_run: &ThisRun,
) -> Result<BackfillEnd> {
    let rows = store.backfill_workers(job.plan, job.phase).await?;
    let stats = stats(store, walk, &rows, this_run).await?;
    let (outcome, end) = match reason {
        None | Some(HaltReason::Failed) => ("finished", BackfillEnd::Finished(stats.clone())),
        // Returned as an error before the run is summed up.
        Some(HaltReason::LockLost) => ("stopped", BackfillEnd::Interrupted(stats.clone())),
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
