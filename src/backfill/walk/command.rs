//! The command walk: the keyset walk's ranges and cursor, but each batch's
//! values come from the team's program. A batch is read without locks,
//! handed to the program, and written in one short transaction with the
//! cursor, each row only if its `reads` columns still hold what the program
//! was given; rows that changed meanwhile are queued and visited again after
//! the walk, pass after pass, until none is left or a pass makes no progress.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Mutex;

use crate::backfill::program::{Columns, Program, ProgramError};
use crate::backfill::walk::keyset::{KeysetWalk, describe_key};
use crate::backfill::walk::{Walk, WorkerRange, WorkerWalk};
use crate::error::{Error, PgDiagnostic, Result};
use crate::plan::BackfillSpec;
use crate::store::Store;
use crate::store::backfill::{BatchFailure, BatchLimits, BatchRange, BatchResult, Table};
use crate::store::command::{BatchSource, CommandShape, CommandStatements, ReadBatch, command_sql};
use crate::store::keyset::{KeyColumn, TableKey};

/// Starts of the program for one batch before the phase fails.
const STARTS_PER_BATCH: u32 = 3;
/// Batches in a row over the time limit before the phase fails.
const TIMEOUTS_IN_A_ROW: u32 = 3;
/// The SQLSTATE the worker splits and retries a batch on (a statement
/// timeout's): a program over its time limit is treated the same way.
const TOO_SLOW: &str = "57014";
/// orch's own code for a failure of the program or of its rows (class O is
/// never PostgreSQL's); the worker does not retry it.
const PROGRAM_FAILED: &str = "OR002";
/// Rejected rows shown in the message of a phase over `max_errors`.
const ERRORS_SHOWN: i64 = 3;

/// The time limit of a batch when the plan sets none: ten times the batch
/// target, at least 5 s.
pub fn default_timeout(batch_time: Duration) -> Duration {
    (batch_time * 10).max(Duration::from_secs(5))
}

/// A backfill whose values come from a program.
pub struct CommandWalk {
    keyset: KeysetWalk,
    settings: Arc<CommandSettings>,
}

/// What every worker of a command walk shares.
struct CommandSettings {
    shape: CommandShape,
    argv: Vec<String>,
    reads: Vec<String>,
    writes: Vec<String>,
    max_errors: u64,
    timeout: Duration,
}

impl CommandWalk {
    /// Find the table, its key and the `reads` and `writes` columns.
    pub async fn open(store: &Store, spec: &BackfillSpec) -> Result<CommandWalk> {
        let keyset = KeysetWalk::open(store, spec).await?;
        let key = store.backfill_key(&spec.table, spec.key.as_deref()).await?;
        let columns = store.table_columns(&key.table).await?;
        let reads = spec.reads.clone().unwrap_or_default();
        let writes = spec.writes.clone().unwrap_or_default();
        let shape = CommandShape {
            reads: find_columns(&key, &columns, "reads", &reads)?,
            writes: find_columns(&key, &columns, "writes", &writes)?,
            key,
            condition: spec.condition.clone(),
        };
        if let Some(column) = writes.iter().find(|w| shape.key.column_names().contains(w)) {
            return Err(Error::failed(format!(
                "writes names {column}, a column of the key the backfill walks ({}): a backfill cannot change its key",
                shape.key.column_names().join(", ")
            )));
        }
        let batch_time = spec
            .batch_time
            .as_deref()
            .and_then(|t| crate::timefmt::parse_duration(t).ok())
            .unwrap_or(crate::backfill::DEFAULT_BATCH_TIME);
        let timeout = spec
            .command_timeout
            .as_deref()
            .and_then(|t| crate::timefmt::parse_duration(t).ok())
            .unwrap_or_else(|| default_timeout(batch_time));
        Ok(CommandWalk {
            keyset,
            settings: Arc::new(CommandSettings {
                shape,
                argv: spec.command.clone().unwrap_or_default(),
                reads,
                writes,
                max_errors: spec.max_errors.unwrap_or(0),
                timeout,
            }),
        })
    }
}

/// The table's columns named in `field`, each with its type; an error
/// naming the first the table lacks.
fn find_columns(
    key: &TableKey,
    columns: &[KeyColumn],
    field: &str,
    names: &[String],
) -> Result<Vec<KeyColumn>> {
    names
        .iter()
        .map(|name| {
            columns
                .iter()
                .find(|c| &c.name == name)
                .cloned()
                .ok_or_else(|| {
                    Error::failed(format!(
                        "{field} names column {name}, which {} does not have",
                        key.table.display
                    ))
                })
        })
        .collect()
}

impl Walk for CommandWalk {
    fn table(&self) -> &Table {
        self.keyset.table()
    }

    fn key_columns(&self) -> Vec<String> {
        self.keyset.key_columns()
    }

    fn describe(&self) -> String {
        let settings = &self.settings;
        format!(
            "{}, values from `{}` (reads {}; writes {})",
            self.keyset.describe(),
            settings.argv.join(" "),
            settings.reads.join(", "),
            settings.writes.join(", ")
        )
    }

    fn check_resume(&self, recorded: &[String]) -> Result<()> {
        self.keyset.check_resume(recorded)
    }

    fn cut<'a>(
        &'a self,
        store: &'a Store,
        workers: u32,
        rows_estimate: i64,
    ) -> BoxFuture<'a, Result<Vec<WorkerRange>>> {
        self.keyset.cut(store, workers, rows_estimate)
    }

    fn prepare<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<Box<dyn WorkerWalk>>> {
        async move {
            let statements = store.prepare_command(&self.settings.shape).await?;
            Ok(Box::new(CommandBatches {
                walk: Arc::clone(&self.settings),
                statements,
                state: Mutex::new(None),
            }) as Box<dyn WorkerWalk>)
        }
        .boxed()
    }

    fn update_sql(&self) -> String {
        command_sql(&self.settings.shape).write
    }

    fn describe_batch(
        &self,
        key_columns: &[String],
        after: Option<&[String]>,
        end: Option<&[String]>,
        size: i64,
    ) -> String {
        self.keyset.describe_batch(key_columns, after, end, size)
    }
}

/// A worker's batches: its statements and its program.
struct CommandBatches {
    walk: Arc<CommandSettings>,
    statements: CommandStatements,
    /// Started with the worker's first batch (the worker is known then).
    state: Mutex<Option<WorkerProgram>>,
}

/// A worker's program and what it has done lately.
struct WorkerProgram {
    program: Program,
    timeouts_in_a_row: u32,
    /// The queue's pass being worked on, and whether any of its rows was
    /// done (written, rejected, or no longer matching `where`).
    pass: Option<(i32, bool)>,
}

impl WorkerWalk for CommandBatches {
    fn run_batch<'a>(
        &'a self,
        store: &'a Store,
        range: &'a BatchRange<'a>,
        size: i64,
        limits: BatchLimits,
    ) -> BoxFuture<'a, BatchResult> {
        self.batch(store, range, size, limits).boxed()
    }
}

impl CommandBatches {
    async fn batch(
        &self,
        store: &Store,
        range: &BatchRange<'_>,
        size: i64,
        limits: BatchLimits,
    ) -> BatchResult {
        let started = Instant::now();
        let walk = &self.walk;
        let mut state = self.state.lock().await;
        let state = state.get_or_insert_with(|| WorkerProgram {
            program: Program::new(walk.argv.clone(), range.worker, walk.timeout),
            timeouts_in_a_row: 0,
            pass: None,
        });
        let batch = store
            .read_command_batch(&self.statements, range, size)
            .await?;
        if let BatchSource::Queue { pass, .. } = &batch.source {
            self.check_progress(store, range, state, *pass).await?;
        }
        let answers = if batch.rows.is_empty() {
            Vec::new()
        } else {
            self.answers(state, &batch, range).await?
        };
        let outcome = store
            .write_command_batch(&self.statements, range, &batch, &answers, limits, started)
            .await?;
        if let BatchSource::Queue { pass, .. } = &batch.source
            && let Some((current, progressed)) = &mut state.pass
            && current == pass
        {
            *progressed |= outcome.requeued.len() as i64 != batch.visited;
        }
        if !outcome.requeued.is_empty() {
            tracing::info!(
                "backfill worker {}: {} rows changed while the program ran; queued for another pass",
                range.worker,
                outcome.requeued.len()
            );
        }
        let left_out = answers
            .iter()
            .filter(|a| matches!(a, crate::store::command::Answer::LeftOut))
            .count();
        if left_out > 0 {
            tracing::warn!(
                "backfill worker {}: the program left out {left_out} rows of the batch; they are left alone and listed by `orch status {} --errors`",
                range.worker,
                range.plan
            );
        }
        if outcome.rejected_total > walk.max_errors as i64 {
            return Err(self
                .over_max_errors(store, range, outcome.rejected_total)
                .await);
        }
        Ok(outcome.done)
    }

    /// The program's answers for the batch: a program that exits or breaks
    /// the protocol is started again for the same batch, up to
    /// `STARTS_PER_BATCH` times; a batch over its time limit is given back
    /// to the worker to split.
    async fn answers(
        &self,
        state: &mut WorkerProgram,
        batch: &ReadBatch,
        range: &BatchRange<'_>,
    ) -> std::result::Result<Vec<crate::store::command::Answer>, BatchFailure> {
        let columns = Columns {
            reads: &self.walk.reads,
            writes: &self.walk.writes,
        };
        let mut failures = Vec::new();
        loop {
            match state.program.answer(&batch.rows, &columns).await {
                Ok(answers) => {
                    state.timeouts_in_a_row = 0;
                    return Ok(answers);
                }
                Err(ProgramError::Timeout(limit)) => {
                    state.timeouts_in_a_row += 1;
                    let rows = batch.rows.len();
                    if state.timeouts_in_a_row >= TIMEOUTS_IN_A_ROW {
                        return Err(program_failure(format!(
                            "the program `{}` did not answer within {} (command_timeout) for {TIMEOUTS_IN_A_ROW} batches in a row, the last of {rows} rows; it was stopped{}",
                            state.program.command_line(),
                            crate::timefmt::duration(limit),
                            stderr_part(&state.program)
                        )));
                    }
                    tracing::warn!(
                        "backfill worker {}: the program did not answer a batch of {rows} rows within {}; stopped, and the batch is retried smaller",
                        range.worker,
                        crate::timefmt::duration(limit)
                    );
                    return Err(BatchFailure {
                        diagnostic: PgDiagnostic {
                            sqlstate: TOO_SLOW.to_string(),
                            message: format!(
                                "the program did not answer within {}",
                                crate::timefmt::duration(limit)
                            ),
                            ..PgDiagnostic::default()
                        },
                        last: None,
                    });
                }
                Err(ProgramError::Failed(why)) => {
                    failures.push(why);
                    if failures.len() as u32 >= STARTS_PER_BATCH {
                        return Err(program_failure(format!(
                            "the program `{}` failed {} times in a row on this batch: {}{}",
                            state.program.command_line(),
                            failures.len(),
                            failures.join("; then "),
                            stderr_part(&state.program)
                        )));
                    }
                    tracing::warn!(
                        "backfill worker {}: the program failed ({}); starting it again for the same batch",
                        range.worker,
                        failures.last().map(String::as_str).unwrap_or_default()
                    );
                }
            }
        }
    }

    /// Before a batch of queued rows: a pass of the queue that did nothing
    /// (each of its rows changed again while the program ran) fails the
    /// phase, naming rows, instead of going round forever.
    async fn check_progress(
        &self,
        store: &Store,
        range: &BatchRange<'_>,
        state: &mut WorkerProgram,
        pass: i32,
    ) -> std::result::Result<(), BatchFailure> {
        match state.pass {
            Some((current, _)) if current == pass => Ok(()),
            Some((current, false)) if pass > current => {
                let keys = store
                    .queued_keys(range.plan, range.phase, range.worker, 5)
                    .await
                    .unwrap_or_default();
                let described: Vec<String> = keys
                    .iter()
                    .map(|k| describe_key(&self.walk.shape.key, Some(k)))
                    .collect();
                Err(program_failure(format!(
                    "pass {current} over the rows that changed while the program ran made no progress: each changed again before its write (the live application keeps writing them); rows: {}; `orch advance {}` tries again",
                    described.join(", "),
                    range.plan
                )))
            }
            _ => {
                state.pass = Some((pass, false));
                Ok(())
            }
        }
    }

    /// The phase is over `max_errors`: how many, and the first few.
    async fn over_max_errors(
        &self,
        store: &Store,
        range: &BatchRange<'_>,
        total: i64,
    ) -> BatchFailure {
        let first = store
            .backfill_errors(range.plan, range.phase, ERRORS_SHOWN)
            .await
            .map(|(errors, _)| errors)
            .unwrap_or_default();
        let shown: Vec<String> = first
            .iter()
            .filter(|e| e.kind == "rejected")
            .map(|e| {
                format!(
                    "{}: {}",
                    describe_key(&self.walk.shape.key, Some(&e.key)),
                    e.message
                )
            })
            .collect();
        program_failure(format!(
            "the program rejected {total} rows, more than max_errors ({}); the first: {}; `orch status {} --errors` lists them all, and once the program is fixed `orch advance {}` tries them again",
            self.walk.max_errors,
            shown.join("; "),
            range.plan,
            range.plan
        ))
    }
}

fn stderr_part(program: &Program) -> String {
    let tail = program.stderr_tail();
    if tail.is_empty() {
        "; it wrote nothing to stderr".to_string()
    } else {
        format!("; its stderr ended with:\n{tail}")
    }
}

fn program_failure(message: String) -> BatchFailure {
    BatchFailure {
        diagnostic: PgDiagnostic {
            sqlstate: PROGRAM_FAILED.to_string(),
            message,
            ..PgDiagnostic::default()
        },
        last: None,
    }
}
