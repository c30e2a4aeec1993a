//! A fleet's progress: on a terminal, one bar per running target and an
//! overall bar; otherwise plain lines, each prefixed with its target's name
//! (a backfill's progress at most every two seconds per target).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::report::{Line, describe};
use crate::engine::fleet::FleetReporter;
use crate::events::{Event, Reporter};

const LOG_EVERY: Duration = Duration::from_secs(2);
/// A bar's message is the target's latest line, cut to this many characters.
const MESSAGE_WIDTH: usize = 60;

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The fleet's reporter.
pub struct FleetProgress {
    shared: Arc<Shared>,
}

struct Shared {
    /// On a terminal: the bars.
    bars: Option<Bars>,
    /// Plain mode: when each target's backfill last logged a line.
    last_line: Mutex<BTreeMap<String, Instant>>,
    /// Results to stdout (false when stdout carries JSON).
    results_to_stdout: bool,
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    targets: Mutex<BTreeMap<String, ProgressBar>>,
}

impl FleetProgress {
    pub fn new(results_to_stdout: bool) -> FleetProgress {
        let bars = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "[{elapsed_precise}] [{bar:30}] {pos}/{len} targets done",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            Bars {
                multi,
                overall,
                targets: Mutex::new(BTreeMap::new()),
            }
        });
        FleetProgress {
            shared: Arc::new(Shared {
                bars,
                last_line: Mutex::new(BTreeMap::new()),
                results_to_stdout,
            }),
        }
    }
}

impl FleetReporter for FleetProgress {
    fn target(&self, target: &str) -> Arc<dyn Reporter> {
        Arc::new(TargetReporter {
            target: target.to_string(),
            shared: self.shared.clone(),
        })
    }

    fn started(&self, target: &str) {
        if let Some(bars) = &self.shared.bars {
            let bar = bars.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg}").expect("valid template"),
            );
            bar.set_prefix(target.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bars.overall.inc_length(1);
            bars.targets.lock().unwrap().insert(target.to_string(), bar);
        }
    }

    fn ended(&self, target: &str, _ok: bool) {
        if let Some(bars) = &self.shared.bars {
            if let Some(bar) = bars.targets.lock().unwrap().remove(target) {
                bar.finish_and_clear();
                bars.multi.remove(&bar);
            }
            bars.overall.inc(1);
        }
    }
}

impl Drop for FleetProgress {
    fn drop(&mut self) {
        if let Some(bars) = &self.shared.bars {
            bars.overall.finish_and_clear();
        }
    }
}

/// One target's events.
struct TargetReporter {
    target: String,
    shared: Arc<Shared>,
}

impl TargetReporter {
    fn print(&self, text: &str, to_stdout: bool) {
        let line = format!(
            "{}: {}",
            self.target,
            text.replace('\n', &format!("\n{}: ", self.target))
        );
        let print = || {
            if to_stdout && self.shared.results_to_stdout {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            } else {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        };
        match &self.shared.bars {
            Some(bars) => bars.multi.suspend(print),
            None => print(),
        }
    }

    fn bar(&self) -> Option<ProgressBar> {
        let bars = self.shared.bars.as_ref()?;
        bars.targets.lock().unwrap().get(&self.target).cloned()
    }
}

impl Reporter for TargetReporter {
    fn report(&self, event: Event) {
        match event {
            Event::BackfillStarted { total_estimate, rows_done_before, table, .. } => {
                match self.bar() {
                    Some(bar) => {
                        bar.set_style(
                            ProgressStyle::with_template("{spinner} {prefix}: [{bar:30}] {pos}/{len} rows {msg}")
                                .expect("valid template")
                                .progress_chars("=> "),
                        );
                        bar.set_length(total_estimate.max(rows_done_before));
                        bar.set_position(rows_done_before);
                        bar.set_message(format!("backfill of {table}"));
                    }
                    None => self.print(
                        &format!("backfill of {table}: about {total_estimate} rows, {rows_done_before} done before"),
                        false,
                    ),
                }
            }
            Event::BackfillBatch { rows_done, total_estimate, .. } => match self.bar() {
                Some(bar) => {
                    if total_estimate > bar.length().unwrap_or(0) {
                        bar.set_length(total_estimate);
                    }
                    bar.set_position(rows_done);
                }
                None => {
                    let mut last = self.shared.last_line.lock().unwrap();
                    let due = last.get(&self.target).is_none_or(|t| t.elapsed() >= LOG_EVERY);
                    if due {
                        last.insert(self.target.clone(), Instant::now());
                        drop(last);
                        self.print(&format!("backfill: {rows_done}/{total_estimate} rows"), false);
                    }
                }
            },
            Event::BackfillEnded { summary, .. } => self.print(&summary, true),
            other => match describe(other) {
                Some(Line::Result(text)) => {
                    if let Some(bar) = self.bar() {
                        let first = text.lines().next().unwrap_or("");
                        bar.set_message(shorten(first, MESSAGE_WIDTH));
                    }
                    self.print(&text, true);
                }
                Some(Line::Notice(text)) => self.print(&text, false),
                None => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_is_cut_on_a_character() {
        assert_eq!(shorten("short", 10), "short");
        assert_eq!(shorten("abcdef", 3), "abc…");
        assert_eq!(shorten("ééééé", 2), "éé…");
    }
}
