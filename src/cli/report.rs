//! The human reporter: turns engine events into short lines. Results go to
//! stdout; waits, retries and warnings to stderr; the backfill's progress is
//! an indicatif bar on a terminal and a periodic line otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::events::{Direction, Event, Reporter};
use crate::timefmt;

/// Prints events for a person at a terminal (or a CI log).
pub struct HumanReporter {
    progress: Mutex<Progress>,
    terminal: bool,
    /// False when stdout is reserved for machine-readable output.
    results_to_stdout: bool,
}

#[derive(Default)]
struct Progress {
    bar: Option<ProgressBar>,
    started: Option<Instant>,
    last_line: Option<Instant>,
    rows_at_start: u64,
    rows_done: u64,
}

/// How often a non-terminal gets a progress line.
const LOG_EVERY: Duration = Duration::from_secs(2);

impl HumanReporter {
    pub fn new() -> HumanReporter {
        HumanReporter {
            progress: Mutex::new(Progress::default()),
            terminal: std::io::stderr().is_terminal(),
            results_to_stdout: true,
        }
    }

    /// Everything to stderr (stdout carries JSON).
    pub fn on_stderr() -> HumanReporter {
        HumanReporter {
            results_to_stdout: false,
            ..HumanReporter::new()
        }
    }

    /// Print above the progress bar if one is showing.
    fn out(&self, line: &str) {
        let print = |line: &str| {
            if self.results_to_stdout {
                out(line)
            } else {
                err(line)
            }
        };
        let progress = self.progress.lock().unwrap();
        match &progress.bar {
            Some(bar) => bar.suspend(|| print(line)),
            None => print(line),
        }
    }

    fn err(&self, line: &str) {
        let progress = self.progress.lock().unwrap();
        match &progress.bar {
            Some(bar) => bar.suspend(|| err(line)),
            None => err(line),
        }
    }
}

impl Default for HumanReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for HumanReporter {
    fn report(&self, event: Event) {
        match event {
            Event::MigrationWouldRun {
                id,
                direction,
                transactional,
                sql,
            } => {
                let mode = if transactional {
                    "in one transaction with its bookkeeping row"
                } else {
                    "statement by statement, outside a transaction"
                };
                self.out(&format!(
                    "-- would run {id} ({direction}), {mode}:\n{sql}\n"
                ));
            }
            Event::MigrationStarted { .. } => {}
            Event::MigrationDone {
                id,
                direction,
                duration_ms,
                attempts,
            } => {
                let verb = match direction {
                    Direction::Up => "applied",
                    Direction::Down => "reverted",
                };
                let retries = if attempts > 1 {
                    format!(", {attempts} attempts")
                } else {
                    String::new()
                };
                self.out(&format!(
                    "{verb} {id} ({}{retries})",
                    timefmt::millis(duration_ms as i64)
                ));
            }
            Event::LockRetry {
                target,
                attempt,
                attempts,
                lock_timeout_ms,
                retry_in_ms,
                next_lock_timeout_ms,
                wait,
                note,
            } => {
                let mut text = format!(
                    "lock timeout ({}) at {target}, attempt {attempt}/{attempts}",
                    timefmt::millis(lock_timeout_ms as i64)
                );
                if let Some(wait) = wait {
                    text.push_str(&format!("; waiting for {}", wait.waiting_for));
                    for b in &wait.blockers {
                        text.push_str(&format!("\n    held by {}", b.describe()));
                    }
                }
                if let Some(note) = note {
                    text.push_str(&format!("\n    {note}"));
                }
                text.push_str(&format!(
                    "\n    retrying in {} with lock_timeout {}",
                    timefmt::millis(retry_in_ms as i64),
                    timefmt::millis(next_lock_timeout_ms as i64)
                ));
                self.err(&text);
            }
            Event::PhaseStarted {
                plan,
                position,
                total,
                id,
                kind,
                title,
                resumed,
            } => {
                let verb = if resumed { "resuming" } else { "running" };
                self.out(&format!(
                    "{plan}: {verb} phase {position}/{total} {id} ({kind}): {title}"
                ));
            }
            Event::GateOpened {
                plan,
                position,
                total,
                id,
                title,
                instructions,
                confirm_command,
            } => {
                let mut text = format!("{plan}: gate {position}/{total} {id} is open: {title}");
                if !instructions.trim().is_empty() {
                    text.push_str("\n\n");
                    for line in instructions.trim_end().lines() {
                        text.push_str(&format!("    {line}\n"));
                    }
                }
                text.push_str(&format!("\nwhen that is done: {confirm_command}"));
                self.out(&text);
            }
            Event::PhaseDone {
                plan,
                position,
                id,
                summary,
                confirm_command,
            } => {
                self.out(&format!(
                    "{plan}: phase {position} {id} done: {summary}\nreview it, then: {confirm_command}"
                ));
            }
            Event::ChecksEvaluated {
                plan: _,
                phase,
                purpose,
                outcomes,
            } => {
                for o in outcomes {
                    let mark = if o.passed { "ok  " } else { "FAIL" };
                    let detail = o.detail.map(|d| format!(" ({d})")).unwrap_or_default();
                    self.out(&format!(
                        "  [{mark}] {phase} {purpose} check {:?}{detail}",
                        o.name
                    ));
                }
            }
            Event::PhaseConfirmed {
                plan,
                position,
                id,
                by,
                next,
            } => {
                self.out(&format!(
                    "{plan}: phase {position} {id} confirmed by {by}; {next}"
                ));
            }
            Event::RolledBack {
                plan,
                position,
                id,
                state,
                note,
            } => {
                let note = if note.is_empty() {
                    String::new()
                } else {
                    format!(" ({note})")
                };
                self.out(&format!(
                    "{plan}: rolled back phase {position} {id}; it is {state} now{note}"
                ));
            }
            Event::BackfillStarted {
                table,
                key,
                workers,
                total_estimate,
                estimate_source,
                rows_done_before,
            } => {
                let resumed = if rows_done_before > 0 {
                    format!(", resuming after {rows_done_before} rows")
                } else {
                    String::new()
                };
                self.out(&format!(
                    "backfill of {table} by ({}) with {workers} worker(s): about {total_estimate} rows to visit ({estimate_source}){resumed}",
                    key.join(", ")
                ));
                let mut progress = self.progress.lock().unwrap();
                progress.started = Some(Instant::now());
                progress.rows_at_start = rows_done_before;
                progress.rows_done = rows_done_before;
                if self.terminal {
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
                    progress.bar = Some(bar);
                }
            }
            Event::BackfillBatch {
                worker: _,
                rows_done,
                rows_in_batch: _,
                batch_ms,
                batch_size,
                total_estimate,
            } => {
                let mut progress = self.progress.lock().unwrap();
                progress.rows_done = rows_done;
                let elapsed = progress.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
                let rate =
                    (rows_done - progress.rows_at_start.min(rows_done)) as f64 / elapsed.max(0.001);
                if let Some(bar) = &progress.bar {
                    if total_estimate > bar.length().unwrap_or(0) {
                        bar.set_length(total_estimate);
                    }
                    bar.set_position(rows_done);
                    bar.set_message(format!(
                        "{rate:.0} rows/s, batch {batch_size} rows in {batch_ms} ms"
                    ));
                } else if progress.last_line.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    progress.last_line = Some(Instant::now());
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
                    err(&format!(
                        "backfill: {rows_done}/{total_estimate} rows ({pct:.0}%), {rate:.0} rows/s, ETA {eta}, batch {batch_size} rows in {batch_ms} ms"
                    ));
                }
            }
            Event::BackfillEnded {
                outcome: _,
                rows_done: _,
                summary,
            } => {
                let bar = self.progress.lock().unwrap().bar.take();
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                self.out(&summary);
            }
            Event::Info { message } => self.out(&message),
            Event::Warning { message } => self.err(&format!("warning: {message}")),
        }
    }
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

fn err(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}
