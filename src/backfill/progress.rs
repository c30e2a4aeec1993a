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

/// Progress from the workers' rows, or nothing done when there are none.
pub(crate) fn progress_of_or_empty(rows: &[WorkerRow]) -> BackfillProgress {
    if rows.is_empty() {
        BackfillProgress::default()
    } else {
        progress_of(rows)
    }
}
