//! One backfill worker: runs its range's batches on its own connection,
//! adapting the batch size, retrying what may be retried, and stopping
//! between batches when asked. How a batch walks is its `Walk`'s business.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::backfill::RunSettings;
use crate::backfill::halt::{Halt, HaltReason};
use crate::backfill::health::{HealthGate, RECHECK};
use crate::backfill::sizing::BatchSizer;
use crate::backfill::walk::Walk;
use crate::connect::ConnectionSettings;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::backfill::{
    BatchDone, BatchFailure, BatchLimits, BatchRange, LOCK_LOST, WorkerRow,
};
use crate::store::locks::Fence;

/// What a worker tells the coordinator.
#[derive(Debug, Clone)]
pub enum WorkerNews {
    /// A batch committed.
    Batch(BatchReport),
    /// The worker waits for the server's health (Some: why), or goes on (None).
    Waiting { worker: i32, reason: Option<String> },
}

/// What a worker tells the coordinator after each committed batch.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub worker: i32,
    pub rows_scanned: i64,
    pub took: Duration,
    pub size: i64,
}

/// Everything the workers of one run share.
pub struct WorkerContext<'a> {
    pub connection: &'a ConnectionSettings,
    pub plan: &'a str,
    pub phase: &'a str,
    pub walk: &'a dyn Walk,
    pub run_settings: &'a RunSettings,
    pub halt: &'a Halt,
    /// The locks each batch checks it still holds before it commits.
    pub fences: &'a [Fence],
}

/// SQLSTATEs worth retrying.
const STATEMENT_TIMEOUT: &str = "57014";
const LOCK_TIMEOUT: &str = "55P03";
const DEADLOCK: &str = "40P01";
const SERIALIZATION: &str = "40001";
/// Retries of one batch before the phase fails.
const MAX_RETRIES: u32 = 20;

/// Walk `row`'s range to its end (or until halted).
pub async fn work(
    ctx: &WorkerContext<'_>,
    row: WorkerRow,
    reports: UnboundedSender<WorkerNews>,
) -> Result<()> {
    if row.done {
        return Ok(());
    }
    let store = Store::open(
        ctx.connection,
        &format!(
            "orch backfill {} {} worker {}",
            ctx.plan, ctx.phase, row.worker
        ),
    )
    .await?;
    store.adopt_fences(ctx.fences);
    let batches = ctx.walk.prepare(&store).await?;
    let range = BatchRange {
        plan: ctx.plan,
        phase: ctx.phase,
        worker: row.worker,
        start: row.range_start.as_deref(),
        end: &row.range_end,
        key_columns: &row.key_columns,
    };
    let limits = BatchLimits {
        lock_timeout: ctx.run_settings.lock_timeout,
        statement_timeout: ctx.run_settings.statement_timeout,
        synchronous_commit: ctx.run_settings.synchronous_commit,
    };
    let mut walker = Walker::new(ctx, &row);
    if row.waiting.is_some() {
        // A wait an earlier run recorded and did not clear (it was killed).
        let _ = store
            .record_backfill_wait(ctx.plan, ctx.phase, row.worker, None)
            .await;
    }
    loop {
        walker.wait_until_healthy(&store, &reports).await;
        if ctx.halt.is_set() {
            return Ok(());
        }
        let size = walker.sizer.size();
        let batch_started = Instant::now();
        match batches.run_batch(&store, &range, size, limits).await {
            Ok(done) => {
                if walker.committed(done, size, batch_started.elapsed(), &reports) {
                    return Ok(());
                }
                walker.throttle().await;
            }
            Err(failure) => walker.retry_or_fail(failure, size).await?,
        }
    }
}

/// One worker's state over its batches.
struct Walker<'c, 'a> {
    ctx: &'c WorkerContext<'a>,
    worker: i32,
    /// What the range's bounds and cursor hold, for messages.
    key_columns: Vec<String>,
    /// For messages only: each batch continues after the recorded cursor.
    cursor: Option<Vec<String>>,
    sizer: BatchSizer,
    /// Consecutive failures of the current batch.
    retries: u32,
    started: Instant,
    scanned_this_run: i64,
    health: HealthGate,
    /// The server's health could not be read (said once, then not watched).
    health_unreadable: bool,
}

impl<'c, 'a> Walker<'c, 'a> {
    fn new(ctx: &'c WorkerContext<'a>, row: &WorkerRow) -> Self {
        let settings = ctx.run_settings;
        Walker {
            ctx,
            worker: row.worker,
            key_columns: row.key_columns.clone(),
            cursor: row.cursor.clone().or_else(|| row.range_start.clone()),
            sizer: BatchSizer::new(settings.batch_time, settings.min_batch, settings.max_batch),
            retries: 0,
            started: Instant::now(),
            scanned_this_run: 0,
            health: HealthGate::new(settings),
            health_unreadable: false,
        }
    }

    /// Before a batch: wait while a standby lags or the WAL rate is over
    /// the limits, recording why for `orch status` and telling the
    /// coordinator; return once the server is healthy or the run halts.
    async fn wait_until_healthy(&mut self, store: &Store, news: &UnboundedSender<WorkerNews>) {
        if !self.health.active() || self.health_unreadable {
            return;
        }
        let ctx = self.ctx;
        let mut waited = false;
        loop {
            let health = match store.server_health().await {
                Ok(health) => health,
                Err(e) => {
                    tracing::warn!(
                        "backfill worker {}: not watching the server's health: {e}",
                        self.worker
                    );
                    self.health_unreadable = true;
                    break;
                }
            };
            let Some(reason) = self.health.verdict(health, Instant::now()) else {
                break;
            };
            if !waited {
                tracing::info!("backfill worker {}: {reason}", self.worker);
            }
            waited = true;
            let _ = store
                .record_backfill_wait(ctx.plan, ctx.phase, self.worker, Some(&reason))
                .await;
            let _ = news.send(WorkerNews::Waiting {
                worker: self.worker,
                reason: Some(reason),
            });
            ctx.halt.sleep(RECHECK).await;
            if ctx.halt.is_set() {
                break;
            }
        }
        if waited {
            let _ = store
                .record_backfill_wait(ctx.plan, ctx.phase, self.worker, None)
                .await;
            let _ = news.send(WorkerNews::Waiting {
                worker: self.worker,
                reason: None,
            });
        }
    }

    /// Learn from a committed batch and report it; true when the range is done.
    fn committed(
        &mut self,
        done: BatchDone,
        size: i64,
        took: Duration,
        reports: &UnboundedSender<WorkerNews>,
    ) -> bool {
        tracing::debug!(
            "backfill worker {}: {} keys asked, {} visited, {} updated in {} ms",
            self.worker,
            size,
            done.rows_scanned,
            done.rows_updated,
            took.as_millis()
        );
        self.retries = 0;
        self.sizer.observe(done.walked, took);
        self.scanned_this_run += done.rows_scanned;
        if let Some(last) = done.last {
            self.cursor = Some(last);
        }
        let _ = reports.send(WorkerNews::Batch(BatchReport {
            worker: self.worker,
            rows_scanned: done.rows_scanned,
            took,
            size,
        }));
        done.range_done
    }

    /// Honour the pause between batches and the rows-per-second ceiling.
    async fn throttle(&self) {
        let settings = self.ctx.run_settings;
        let mut wait = settings.pause;
        if let Some(rate) = settings.rate_per_worker() {
            let due = Duration::from_secs_f64(self.scanned_this_run as f64 / rate);
            wait = wait.max(due.saturating_sub(self.started.elapsed()));
        }
        if !wait.is_zero() {
            self.ctx.halt.sleep(wait).await;
        }
    }

    /// Back off and shrink the next batch for a failure worth retrying;
    /// otherwise, or once retries run out, fail the worker.
    async fn retry_or_fail(&mut self, failure: BatchFailure, size: i64) -> Result<()> {
        let state = failure.sqlstate().to_string();
        if state == LOCK_LOST {
            self.ctx.halt.set(HaltReason::LockLost);
            return Err(Error::failed(failure.diagnostic.message));
        }
        let retriable =
            [STATEMENT_TIMEOUT, LOCK_TIMEOUT, DEADLOCK, SERIALIZATION].contains(&state.as_str());
        if !retriable || self.retries >= MAX_RETRIES {
            return Err(self.failed(&failure, size, retriable));
        }
        self.retries += 1;
        match state.as_str() {
            STATEMENT_TIMEOUT => self.sizer.split(),
            LOCK_TIMEOUT => self.sizer.halve(),
            _ => {}
        }
        tracing::info!(
            "backfill worker {}: batch failed ({}), retry {} with {} keys",
            self.worker,
            failure.diagnostic.message,
            self.retries,
            self.sizer.size()
        );
        let backoff = Duration::from_millis(50 * (1u64 << self.retries.min(6)));
        tokio::time::sleep(backoff.mul_f64(0.5 + 0.5 * fastrand::f64())).await;
        Ok(())
    }

    /// The error a failed batch fails the phase with: which batch, and why.
    fn failed(&self, failure: &BatchFailure, size: i64, retriable: bool) -> Error {
        let why = if retriable {
            format!("still failing after {MAX_RETRIES} retries: ")
        } else {
            String::new()
        };
        let walk = self.ctx.walk;
        Error::failed(format!(
            "backfill of {} failed in the batch {} (worker {}): {why}{}",
            walk.table().display,
            walk.describe_batch(
                &self.key_columns,
                self.cursor.as_deref(),
                failure.last.as_deref(),
                size
            ),
            self.worker,
            failure.diagnostic
        ))
    }
}
