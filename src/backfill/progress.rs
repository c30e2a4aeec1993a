//! A backfill's progress as any process sees it, from its workers' rows in
//! `orch.backfill_workers` (for `orch status` and a resumed run's start).

use serde::Serialize;

use crate::error::Result;
use crate::store::Store;
use crate::store::backfill::WorkerRow;
use crate::timefmt;

/// Progress as any process sees it (for `orch status`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillProgress {
    pub rows_updated: i64,
    pub rows_scanned: i64,
    pub batches_done: i64,
    pub rows_estimate: i64,
    pub estimate_source: String,
    pub percent: f64,
    /// Rows visited per second while it ran (see `running_ms`).
    pub rows_per_second: f64,
    /// How long the backfill has run: from when it started (its ranges were
    /// recorded, just before the first batch) to its latest committed batch,
    /// less the time it stood stopped between runs (paused, interrupted,
    /// failed). The one time base of its rate, wherever it is shown.
    pub running_ms: i64,
    pub workers: usize,
    /// Rows a command backfill's program rejected, and left out (listed by
    /// `orch status PLAN --errors`).
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_rejected: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub rows_left_out: i64,
    pub done: bool,
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why a worker waits before its next batch, while one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
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
                ", {:.0} rows/s on average while it ran",
                self.rows_per_second
            ));
        }
        if self.rows_rejected > 0 || self.rows_left_out > 0 {
            text.push_str(&format!(", {} rejected by the program", self.rows_rejected));
            if self.rows_left_out > 0 {
                text.push_str(&format!(" and {} left out", self.rows_left_out));
            }
        }
        if let Some(at) = self.updated_at {
            text.push_str(&format!(", last batch {}", timefmt::utc(&at)));
        }
        if let Some(waiting) = &self.waiting {
            text.push_str(&format!("; {waiting}"));
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
    let mut progress = progress_of(&rows);
    let (_, errors) = store.backfill_errors(plan, phase, 0).await?;
    progress.rows_rejected = errors.rejected;
    progress.rows_left_out = errors.left_out;
    Ok(Some(progress))
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn progress_of(rows: &[WorkerRow]) -> BackfillProgress {
    let sum = |f: fn(&WorkerRow) -> i64| rows.iter().map(f).sum::<i64>();
    let scanned = sum(|r| r.rows_scanned);
    let estimate = sum(|r| r.rows_estimate).max(1);
    let updated = rows.iter().filter_map(|r| r.updated_at).max();
    let running_ms = running_ms(rows);
    BackfillProgress {
        rows_updated: sum(|r| r.rows_updated),
        rows_scanned: scanned,
        batches_done: sum(|r| r.batches_done),
        rows_estimate: estimate,
        estimate_source: rows[0].estimate_source.clone(),
        percent: (scanned as f64 * 100.0 / estimate as f64).min(100.0),
        rows_per_second: rate(scanned, running_ms),
        running_ms,
        workers: rows.len(),
        rows_rejected: 0,
        rows_left_out: 0,
        done: rows.iter().all(|r| r.done),
        updated_at: updated,
        waiting: rows.iter().find_map(|r| r.waiting.clone()),
    }
}

/// The backfill's running time in ms: from the earliest `started_at` to the
/// latest batch's `updated_at`, both taken by the server's clock. A resume
/// moves `started_at` later by the time stopped (`Store::resume_backfill_clock`),
/// so this leaves out the time between runs. 0 before the first batch.
fn running_ms(rows: &[WorkerRow]) -> i64 {
    if rows.iter().all(|r| r.batches_done == 0) {
        return 0;
    }
    let started = rows.iter().filter_map(|r| r.started_at).min();
    let updated = rows.iter().filter_map(|r| r.updated_at).max();
    match (started, updated) {
        (Some(s), Some(u)) => (u - s).num_milliseconds().max(0),
        _ => 0,
    }
}

/// The one definition of a backfill's rate: rows visited per second of its
/// running time (0 when it has not run measurably long).
pub(crate) fn rate(rows_scanned: i64, running_ms: i64) -> f64 {
    if running_ms > 0 {
        rows_scanned.max(0) as f64 * 1000.0 / running_ms as f64
    } else {
        0.0
    }
}

/// Progress from the workers' rows, or nothing done when there are none.
pub(crate) fn progress_of_or_empty(rows: &[WorkerRow]) -> BackfillProgress {
    if rows.is_empty() {
        BackfillProgress::default()
    } else {
        progress_of(rows)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;

    fn row(worker: i32, scanned: i64, started_ms: i64, updated_ms: i64) -> WorkerRow {
        let at = |ms| Utc.timestamp_opt(1_700_000_000, 0).unwrap() + Duration::milliseconds(ms);
        WorkerRow {
            worker,
            key_columns: vec!["id".to_string()],
            range_start: None,
            range_end: vec!["9".to_string()],
            cursor: None,
            rows_updated: scanned,
            rows_scanned: scanned,
            batches_done: i64::from(scanned > 0),
            batch_ms_total: 0,
            batch_ms_max: 0,
            rows_estimate: 1000,
            estimate_source: "counted".to_string(),
            table_bytes_before: 0,
            total_bytes_before: 0,
            done: false,
            started_at: Some(at(started_ms)),
            updated_at: Some(at(updated_ms)),
            waiting: None,
        }
    }

    #[test]
    fn a_wait_shows_in_the_progress() {
        let mut waiting = row(1, 400, 10, 2000);
        waiting.waiting = Some("waiting for replica lag 7.2 s > 5 s".to_string());
        let p = progress_of(&[row(0, 600, 0, 1500), waiting]);
        assert!(
            p.describe()
                .ends_with("; waiting for replica lag 7.2 s > 5 s"),
            "{}",
            p.describe()
        );
        assert_eq!(progress_of(&[row(0, 600, 0, 1500)]).waiting, None);
    }

    #[test]
    fn rate_is_rows_per_second_of_running_time() {
        // Two workers: from the first start to the latest batch is 2 s.
        let p = progress_of(&[row(0, 600, 0, 1500), row(1, 400, 10, 2000)]);
        assert_eq!(p.running_ms, 2000);
        assert_eq!(p.rows_per_second, 500.0);
        assert_eq!(rate(p.rows_scanned, p.running_ms), p.rows_per_second);
        // Nothing done yet: no rate, not a division by zero.
        let p = progress_of(&[row(0, 0, 0, 0)]);
        assert_eq!((p.running_ms, p.rows_per_second), (0, 0.0));
    }
}
