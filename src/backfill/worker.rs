//! One backfill worker: walks its key range in batches on its own
//! connection, adapting the batch size, retrying what may be retried, and
//! stopping between batches when asked.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::backfill::Settings;
use crate::backfill::halt::Halt;
use crate::backfill::sizing::BatchSizer;
use crate::connect::ConnectionSettings;
use crate::error::{Error, Result};
use crate::plan::BackfillSpec;
use crate::store::Store;
use crate::store::backfill::{BatchRange, TableKey, WorkerRow};

/// What a worker tells the coordinator after each committed batch.
#[derive(Debug, Clone)]
pub struct BatchReport {
    pub worker: i32,
    pub rows_scanned: i64,
    pub rows_updated: u64,
    pub took: Duration,
    pub size: i64,
}

/// Everything the workers of one run share.
pub struct WorkerContext<'a> {
    pub settings: &'a ConnectionSettings,
    pub plan: &'a str,
    pub phase: &'a str,
    pub spec: &'a BackfillSpec,
    pub key: &'a TableKey,
    pub config: &'a Settings,
    pub halt: &'a Halt,
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
    reports: UnboundedSender<BatchReport>,
) -> Result<()> {
    if row.done {
        return Ok(());
    }
    let store = Store::open(
        ctx.settings,
        &format!(
            "orch backfill {} {} worker {}",
            ctx.plan, ctx.phase, row.worker
        ),
    )
    .await?;
    let statements = store
        .prepare_batches(ctx.key, &ctx.spec.set, ctx.spec.condition.as_deref())
        .await?;
    // For messages only: each batch continues after the recorded cursor.
    let mut cursor = row.cursor.clone().or_else(|| row.range_start.clone());
    let mut sizer = BatchSizer::new(
        ctx.config.batch_time,
        ctx.config.min_batch,
        ctx.config.max_batch,
    );
    let mut retries = 0;
    let started = Instant::now();
    let mut scanned_this_run: i64 = 0;
    loop {
        if ctx.halt.is_set() {
            return Ok(());
        }
        let size = sizer.size();
        let range = BatchRange {
            plan: ctx.plan,
            phase: ctx.phase,
            worker: row.worker,
            start: row.range_start.as_deref(),
            end: &row.range_end,
        };
        let batch_started = Instant::now();
        match store
            .run_batch(
                &statements,
                &range,
                size,
                ctx.config.lock_timeout,
                ctx.config.statement_timeout,
            )
            .await
        {
            Ok(done) => {
                let took = batch_started.elapsed();
                tracing::debug!(
                    "backfill worker {}: {} keys asked, {} visited, {} updated in {} ms",
                    row.worker,
                    size,
                    done.rows_scanned,
                    done.rows_updated,
                    took.as_millis()
                );
                retries = 0;
                sizer.observe(done.rows_scanned, took);
                scanned_this_run += done.rows_scanned;
                if let Some(last) = done.last_key {
                    cursor = Some(last);
                }
                let _ = reports.send(BatchReport {
                    worker: row.worker,
                    rows_scanned: done.rows_scanned,
                    rows_updated: done.rows_updated,
                    took,
                    size,
                });
                if done.range_done {
                    return Ok(());
                }
                throttle(ctx, started, scanned_this_run).await;
            }
            Err(failure) => {
                let state = failure.sqlstate().to_string();
                let retriable = [STATEMENT_TIMEOUT, LOCK_TIMEOUT, DEADLOCK, SERIALIZATION]
                    .contains(&state.as_str());
                if !retriable || retries >= MAX_RETRIES {
                    let why = if retriable {
                        format!("still failing after {MAX_RETRIES} retries: ")
                    } else {
                        String::new()
                    };
                    let upper = match &failure.last_key {
                        Some(last) => format!("through {}", describe_key(ctx.key, Some(last))),
                        None => format!("up to {size} keys"),
                    };
                    return Err(Error::failed(format!(
                        "backfill of {} failed in the batch after key {}, {upper} (worker {}): {why}{}",
                        ctx.key.display,
                        describe_key(ctx.key, cursor.as_deref()),
                        row.worker,
                        failure.diagnostic
                    )));
                }
                retries += 1;
                match state.as_str() {
                    STATEMENT_TIMEOUT => sizer.split(),
                    LOCK_TIMEOUT => sizer.halve(),
                    _ => {}
                }
                tracing::info!(
                    "backfill worker {}: batch failed ({}), retry {retries} with {} keys",
                    row.worker,
                    failure.diagnostic.message,
                    sizer.size()
                );
                let backoff = Duration::from_millis(50 * (1u64 << retries.min(6)));
                tokio::time::sleep(backoff.mul_f64(0.5 + 0.5 * fastrand::f64())).await;
            }
        }
    }
}

/// Honour the pause between batches and the rows-per-second ceiling.
async fn throttle(ctx: &WorkerContext<'_>, started: Instant, scanned: i64) {
    let mut wait = ctx.config.pause;
    if let Some(rate) = ctx.config.rate_per_worker() {
        let due = Duration::from_secs_f64(scanned as f64 / rate);
        wait = wait.max(due.saturating_sub(started.elapsed()));
    }
    if !wait.is_zero() {
        ctx.halt.sleep(wait).await;
    }
}

/// `(id)=(41000)` or `(table start)`.
pub fn describe_key(key: &TableKey, values: Option<&[String]>) -> String {
    match values {
        None => "(table start)".to_string(),
        Some(values) => format!(
            "({})=({})",
            key.column_names().join(", "),
            values.join(", ")
        ),
    }
}
