//! The human reporter: turns engine events into short lines. Results go to
//! stdout; waits, retries and warnings to stderr; the backfill's progress is
//! an indicatif bar on a terminal and a periodic line otherwise.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use crate::cli::progress::BackfillProgressView;
use crate::events::{Direction, Event, Reporter};
use crate::timefmt;

/// Prints events for a person at a terminal (or a CI log).
pub struct HumanReporter {
    progress: Mutex<BackfillProgressView>,
    terminal: bool,
    /// False when stdout is reserved for machine-readable output.
    results_to_stdout: bool,
}

impl HumanReporter {
    pub fn new() -> HumanReporter {
        HumanReporter {
            progress: Mutex::new(BackfillProgressView::default()),
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
        self.progress.lock().unwrap().print_above(|| print(line));
    }

    fn err(&self, line: &str) {
        self.progress.lock().unwrap().print_above(|| err(line));
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
                progress.start(total_estimate, rows_done_before, self.terminal);
            }
            Event::BackfillBatch {
                rows_done,
                batch_ms,
                batch_size,
                total_estimate,
                rows_rejected,
                ..
            } => {
                let mut progress = self.progress.lock().unwrap();
                if let Some(line) = progress.batch(
                    rows_done,
                    batch_ms,
                    batch_size,
                    total_estimate,
                    rows_rejected,
                ) {
                    err(&line);
                }
            }
            Event::BackfillWaiting { worker, reason } => {
                let mut progress = self.progress.lock().unwrap();
                if let Some(line) = progress.waiting(worker, reason.as_deref()) {
                    err(&line);
                }
            }
            Event::BackfillEnded { summary, .. } => {
                self.progress.lock().unwrap().finish();
                self.out(&summary);
            }
            other => match describe(other) {
                Some(Line::Result(text)) => self.out(&text),
                Some(Line::Notice(text)) => self.err(&text),
                None => {}
            },
        }
    }
}

/// Where a line goes: results to stdout, waits and warnings to stderr.
pub(crate) enum Line {
    Result(String),
    Notice(String),
}

/// The line for an event other than the backfill's progress.
pub(crate) fn describe(event: Event) -> Option<Line> {
    match event {
        Event::MigrationWouldRun { .. }
        | Event::MigrationStarted { .. }
        | Event::MigrationDone { .. }
        | Event::LockRetry { .. } => migration_line(event),
        Event::PhaseWouldRun { .. } => would_run(event).map(Line::Result),
        Event::Info { message } => Some(Line::Result(message)),
        Event::Warning { message } => Some(Line::Notice(format!("warning: {message}"))),
        other => plan_line(other).map(Line::Result),
    }
}

/// Migrations: what would run, what ran, lock retries.
fn migration_line(event: Event) -> Option<Line> {
    let line = match event {
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
            Line::Result(format!("-- would run {id} ({direction}), {mode}:\n{sql}\n"))
        }
        Event::MigrationStarted { .. } => return None,
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
            Line::Result(format!(
                "{verb} {id} ({}{retries})",
                timefmt::millis(duration_ms as i64)
            ))
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
            Line::Notice(text)
        }
        _ => return None,
    };
    Some(line)
}

/// `orch advance --dry-run`: the phase, what it would do, its SQL, its
/// guard (evaluated now) and its checks, indented under one heading.
fn would_run(event: Event) -> Option<String> {
    let Event::PhaseWouldRun {
        plan,
        position,
        total,
        id,
        kind,
        title,
        notes,
        guard,
        work,
        instructions,
        checks,
    } = event
    else {
        return None;
    };
    let indent = |text: &str, by: &str| -> String {
        text.trim_end()
            .lines()
            .map(|l| format!("{by}{l}\n"))
            .collect()
    };
    let mut text = format!(
        "dry run: nothing was changed\n{plan}: advance would run phase {position}/{total} {id} ({}): {title}\n",
        kind.name()
    );
    for note in notes {
        text.push_str(&format!("  note: {note}\n"));
    }
    if guard.is_empty() {
        text.push_str("  guard: none\n");
    } else {
        text.push_str("  guard (evaluated now, read-only, not recorded):\n");
        for o in &guard {
            let mark = if o.passed { "ok  " } else { "FAIL" };
            let detail = o
                .detail
                .as_ref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            text.push_str(&format!("    [{mark}] {:?}{detail}\n", o.name));
            text.push_str(&indent(&o.sql, "        "));
        }
    }
    text.push_str(&format!("  would: {}\n", work.what));
    for (name, value) in &work.facts {
        text.push_str(&format!("    {name}: {value}\n"));
    }
    if let Some(sql) = &work.sql {
        text.push_str(&format!("  sql, {}:\n", sql.name));
        text.push_str(&indent(&sql.sql, "    "));
    }
    if let Some(instructions) = instructions.filter(|i| !i.trim().is_empty()) {
        text.push_str("  instructions:\n");
        text.push_str(&indent(&instructions, "    "));
    }
    if checks.is_empty() {
        text.push_str("  checks before `orch confirm`: none\n");
    } else {
        text.push_str("  checks before `orch confirm`:\n");
        for c in &checks {
            text.push_str(&format!("    {:?}:\n", c.name));
            text.push_str(&indent(&c.sql, "        "));
        }
    }
    Some(text.trim_end().to_string())
}

/// Plans: phases started, gates opened, checks, confirmations, rollbacks.
fn plan_line(event: Event) -> Option<String> {
    let line = match event {
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
            format!(
                "{plan}: {verb} phase {position}/{total} {id} ({}): {title}",
                kind.name()
            )
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
            text
        }
        Event::PhaseDone {
            plan,
            position,
            id,
            summary,
            confirm_command,
        } => {
            format!(
                "{plan}: phase {position} {id} done: {summary}\nreview it, then: {confirm_command}"
            )
        }
        Event::ChecksEvaluated {
            plan: _,
            phase,
            purpose,
            outcomes,
        } => {
            if outcomes.is_empty() {
                return None;
            }
            let lines: Vec<String> = outcomes
                .into_iter()
                .map(|o| {
                    let mark = if o.passed { "ok  " } else { "FAIL" };
                    let detail = o.detail.map(|d| format!(" ({d})")).unwrap_or_default();
                    format!("  [{mark}] {phase} {purpose} check {:?}{detail}", o.name)
                })
                .collect();
            lines.join("\n")
        }
        Event::PhaseConfirmed {
            plan,
            position,
            id,
            by,
            next,
        } => {
            format!("{plan}: phase {position} {id} confirmed by {by}; {next}")
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
            format!(
                "{plan}: rolled back phase {position} {id}; it is {} now{note}",
                state.name()
            )
        }
        _ => return None,
    };
    Some(line)
}

fn out(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
}

fn err(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}
