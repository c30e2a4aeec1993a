//! The backfill's progress as a person sees it: an indicatif bar on a
//! terminal, else a line every few seconds (CI logs, `2> file`).

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::timefmt;

/// How often a non-terminal gets a progress line.
const LOG_EVERY: Duration = Duration::from_secs(2);

/// The progress of the backfill being reported, if one is running.
#[derive(Default)]
pub struct BackfillProgressView {
    bar: Option<ProgressBar>,
    started: Option<Instant>,
    last_line: Option<Instant>,
    rows_at_start: u64,
    /// When the last line about a wait was logged, while one lasts.
    last_wait_line: Option<Instant>,
}

impl BackfillProgressView {
    /// A backfill started (or resumed after `rows_done_before` rows).
    pub fn start(&mut self, total_estimate: u64, rows_done_before: u64, terminal: bool) {
        self.started = Some(Instant::now());
        self.last_line = None;
        self.rows_at_start = rows_done_before;
        if terminal {
            let bar = ProgressBar::new(total_estimate.max(rows_done_before));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:40}] {pos}/{len} rows, ETA {eta}: {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_position(rows_done_before);
            bar.enable_steady_tick(Duration::from_millis(200));
            self.bar = Some(bar);
        }
    }

    /// A batch committed: moves the bar, or returns a line to log when one
    /// is due.
    pub fn batch(
        &mut self,
        rows_done: u64,
        batch_ms: u64,
        batch_size: u64,
        total_estimate: u64,
        rows_rejected: u64,
    ) -> Option<String> {
        let rejected = if rows_rejected > 0 {
            format!(", {rows_rejected} rows rejected or left out by the program")
        } else {
            String::new()
        };
        let elapsed = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let rate = (rows_done - self.rows_at_start.min(rows_done)) as f64 / elapsed.max(0.001);
        if let Some(bar) = &self.bar {
            if total_estimate > bar.length().unwrap_or(0) {
                bar.set_length(total_estimate);
            }
            bar.set_position(rows_done);
            bar.set_message(format!(
                "{rate:.0} rows/s, batch {batch_size} rows in {batch_ms} ms{rejected}"
            ));
            return None;
        }
        if self.last_line.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return None;
        }
        self.last_line = Some(Instant::now());
        let pct = if total_estimate > 0 {
            rows_done as f64 * 100.0 / total_estimate as f64
        } else {
            0.0
        };
        let eta = if rate > 0.0 && total_estimate > rows_done {
            timefmt::duration(Duration::from_secs_f64(
                (total_estimate - rows_done) as f64 / rate,
            ))
        } else {
            "-".to_string()
        };
        Some(format!(
            "backfill: {rows_done}/{total_estimate} rows ({pct:.0}%), {rate:.0} rows/s, ETA {eta}, batch {batch_size} rows in {batch_ms} ms{rejected}"
        ))
    }

    /// A worker waits for the server's health (`reason`), or goes on
    /// (None): the bar's message, or a line when the wait starts, every few
    /// seconds while it lasts, and when it ends.
    pub fn waiting(&mut self, worker: u32, reason: Option<&str>) -> Option<String> {
        if let Some(bar) = &self.bar {
            bar.set_message(reason.map_or_else(String::new, |r| format!("worker {worker} {r}")));
            return None;
        }
        match reason {
            Some(reason) => {
                if self.last_wait_line.is_some_and(|t| t.elapsed() < LOG_EVERY) {
                    return None;
                }
                self.last_wait_line = Some(Instant::now());
                Some(format!("backfill: worker {worker} {reason}"))
            }
            None => self
                .last_wait_line
                .take()
                .map(|_| format!("backfill: worker {worker} goes on")),
        }
    }

    /// The backfill ended: the bar goes away.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Print `line` without tearing the bar.
    pub fn print_above(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_counts_the_rows_a_program_rejected() {
        let mut view = BackfillProgressView::default();
        view.start(1000, 0, false);
        let line = view.batch(100, 40, 100, 1000, 7).unwrap();
        assert!(
            line.ends_with("batch 100 rows in 40 ms, 7 rows rejected or left out by the program"),
            "{line}"
        );
        let mut view = BackfillProgressView::default();
        view.start(1000, 0, false);
        let line = view.batch(100, 40, 100, 1000, 0).unwrap();
        assert!(line.ends_with("batch 100 rows in 40 ms"), "{line}");
    }
}
