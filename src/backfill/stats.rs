//! The figures a backfill run ends with (rows, batches, speed, the table's
//! growth), recorded in the phase's result and summed up in one line.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backfill::progress::progress_of_or_empty;
use crate::backfill::walk::Walk;
use crate::error::Result;
use crate::store::Store;
use crate::store::backfill::WorkerRow;
use crate::timefmt;

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
    /// Running time over every run and the rate over it: the same figures
    /// `orch status` shows (`BackfillProgress::running_ms`).
    pub running_ms: u64,
    pub rows_per_second: f64,
    /// This run only.
    pub rows_scanned_this_run: u64,
    /// This command's wall time, setup and the final size lookup included.
    pub elapsed_ms: u64,
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
        // A resumed backfill's figures span its runs; say what this run did.
        let this_run = if self.resumed {
            format!(
                " in all runs; this run visited {} in {}; {} of running at {:.0} rows/s",
                self.rows_scanned_this_run,
                timefmt::millis(self.elapsed_ms as i64),
                timefmt::millis(self.running_ms as i64),
                self.rows_per_second
            )
        } else {
            format!(
                ", {} at {:.0} rows/s",
                timefmt::millis(self.running_ms as i64),
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

/// What the coordinator saw of this run (start or resume).
#[derive(Debug)]
pub(crate) struct ThisRun {
    pub started: Instant,
    pub resumed: bool,
    /// (duration in ms, rows visited) of every batch of this run.
    pub batch_ms: Vec<(u64, u64)>,
    pub vacuums: u32,
    pub vacuum_time: Duration,
}

/// The figures of a run that ended, from its workers' rows (totals over
/// every run) and what the coordinator saw of this run.
pub(crate) async fn stats(
    store: &Store,
    walk: &dyn Walk,
    rows: &[WorkerRow],
    this_run: &ThisRun,
) -> Result<BackfillStats> {
    let (batch_ms, elapsed) = (&this_run.batch_ms, this_run.started.elapsed());
    let size = store.table_size(walk.table()).await?;
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
        table: walk.table().display.clone(),
        key: walk.key_columns(),
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
        running_ms: p.running_ms.max(0) as u64,
        rows_per_second: p.rows_per_second,
        rows_scanned_this_run: scanned_this_run,
        elapsed_ms: elapsed.as_millis() as u64,
        batch_ms_p50: sorted.get(sorted.len() / 2).copied().unwrap_or(0),
        resumed: this_run.resumed,
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
        vacuums: this_run.vacuums,
        vacuum_ms: this_run.vacuum_time.as_millis() as u64,
    })
}
