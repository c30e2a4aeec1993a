//! Runs one migration section against the database: the whole section in one
//! transaction together with its bookkeeping, or (`transaction:false`) one
//! statement at a time; either way under a short `lock_timeout`, retried
//! with backoff when it expires.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine::checks::{BoundCheck, describe_failures, verdict};
use crate::engine::lock_retry::LockRetryPolicy;
use crate::error::{Error, Result, dirty_note};
use crate::events::CheckOutcome;
use crate::events::LockWaitSample;
use crate::events::{Direction, Event, Reporter};
use crate::migration::Section;
use crate::migration::concurrent_index::{ConcurrentIndex, concurrent_index};
use crate::sql_text;
use crate::sql_text::{Statement, leading_words};
use crate::store::Store;
use crate::store::blockers::BlockerMonitor;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::catalog::InvalidIndex;
use crate::store::migrations::DirtyState;
use crate::store::plans::Recheck;
use crate::store::session::ScriptFailure;
use crate::timefmt;

/// Which section of which file to run.
pub struct SectionJob<'a> {
    /// The migration's version (named in the resolve command of a dirty one).
    pub version: i64,
    /// `<version>_<name>`, as shown to people.
    pub id: &'a str,
    pub path: &'a Path,
    pub section: &'a Section,
    pub direction: Direction,
    /// Checks that must still hold after the section's statements, in the
    /// same transaction (a contract phase's guard: by then the statements
    /// hold their locks, so no row written meanwhile slips past it).
    /// Not possible for a `transaction:false` section.
    pub recheck: &'a [BoundCheck],
}

/// How a section run went.
#[derive(Debug, Clone, Copy)]
pub struct RunStats {
    pub attempts: u32,
    /// Wall time including lock waits and backoff.
    pub duration: Duration,
    /// Time of the SQL of the successful attempt(s) only.
    pub execution: Duration,
}

/// How a section run ended, for the caller to say what to record: done
/// (recorded with the work, in its transaction where it has one), or a
/// `transaction:false` section stopped half-way (recorded as dirty).
#[derive(Debug, Clone, Copy)]
pub enum Ended<'a> {
    Done(&'a RunStats),
    HalfDone(&'a DirtyState),
}

/// Where a statement-by-statement section stopped.
struct Stopped {
    /// 0-based: the statement that failed (the ones before it ran).
    index: usize,
    line: usize,
    statements: usize,
}

/// How one statement of a `transaction:false` section failed.
enum StatementFailure {
    Error(Error),
    /// `CREATE INDEX CONCURRENTLY` returned but left these INVALID.
    LeftInvalid(Vec<InvalidIndex>),
}

impl StatementFailure {
    /// The error to report; `dirty`: the version now recorded as dirty.
    fn into_error(self, job: &SectionJob<'_>, at: &Stopped, dirty: Option<i64>) -> Error {
        match (self, dirty) {
            (StatementFailure::LeftInvalid(left), dirty) => {
                invalid_after(job, at.line, at.index, &left, dirty)
            }
            (StatementFailure::Error(error), Some(version)) => recorded_dirty(error, version),
            (StatementFailure::Error(error), None) => error,
        }
    }
}

/// Runs sections on a store's working connection.
pub struct SectionRunner<'a> {
    store: &'a Store,
    policy: &'a LockRetryPolicy,
    reporter: &'a dyn Reporter,
    monitor: BlockerMonitor,
    pid: i32,
}

/// What to do after a failed attempt.
enum AfterFailure {
    /// A lock timeout with retries left: try again with this lock_timeout.
    Retry(Duration),
    /// Anything else: give up with this failure.
    GiveUp(ScriptFailure),
}

impl<'a> SectionRunner<'a> {
    pub async fn new(
        store: &'a Store,
        policy: &'a LockRetryPolicy,
        reporter: &'a dyn Reporter,
    ) -> Result<Self> {
        Ok(SectionRunner {
            store,
            policy,
            reporter,
            monitor: BlockerMonitor::new(store.settings()),
            pid: store.backend_pid().await?,
        })
    }

    /// Run the section; `bookkeeping` says what to record: in the same
    /// transaction once the section's SQL succeeded, or, for a
    /// `transaction:false` section stopped half-way, its dirty state.
    pub async fn run(
        &self,
        job: &SectionJob<'_>,
        bookkeeping: impl FnOnce(Ended<'_>) -> Vec<Bookkeeping>,
    ) -> Result<RunStats> {
        if job.section.transactional {
            self.run_transactional(job, bookkeeping).await
        } else {
            self.run_statements(job, bookkeeping).await
        }
    }

    async fn run_transactional(
        &self,
        job: &SectionJob<'_>,
        bookkeeping: impl FnOnce(Ended<'_>) -> Vec<Bookkeeping>,
    ) -> Result<RunStats> {
        let started = Instant::now();
        let sql = job.section.sql.as_str();
        let statements = sql_text::split_statements(sql);
        let mut lock_timeout = self.policy.scheduled_timeout(0);
        let mut attempt = 0;
        loop {
            self.still_locked()?;
            self.store
                .begin_with_timeouts(lock_timeout, self.policy.statement_timeout)
                .await?;
            let execution_started = Instant::now();
            let watch = self.monitor.watch(self.pid, poll_interval(lock_timeout));
            let result = self.store.run_script(sql).await;
            let wait = watch.stop();
            match result {
                Ok(()) => {
                    if let Err(e) = self.recheck(job, lock_timeout).await {
                        self.store.rollback().await;
                        return Err(e);
                    }
                    let stats = RunStats {
                        attempts: attempt + 1,
                        duration: started.elapsed(),
                        execution: execution_started.elapsed(),
                    };
                    if let Err(e) = self.store.check_fences().await {
                        self.store.rollback().await;
                        return Err(e);
                    }
                    if let Err(e) = self
                        .store
                        .write_bookkeeping(&bookkeeping(Ended::Done(&stats)))
                        .await
                    {
                        self.store.rollback().await;
                        return Err(Error::db(format!("cannot record migration {}", job.id), e));
                    }
                    if let Err(failure) = self.store.commit().await {
                        self.store.rollback().await;
                        let place = (job.section.marker_line, None);
                        return Err(failed(job, place, failure, 0));
                    }
                    return Ok(stats);
                }
                Err(failure) => {
                    self.store.rollback().await;
                    let place = failing_place(job.section, &statements, &failure);
                    lock_timeout = match self
                        .after_failure(job, place.0, attempt, lock_timeout, failure, wait)
                        .await?
                    {
                        AfterFailure::Retry(next) => next,
                        AfterFailure::GiveUp(failure) => {
                            return Err(failed(job, place, failure, 0));
                        }
                    };
                    attempt += 1;
                }
            }
        }
    }

    /// Before each statement or attempt: a lock the watcher saw lost stops
    /// the section (what a statement in flight did is then not recorded).
    fn still_locked(&self) -> Result<()> {
        match self.store.lost_fence() {
            Some(fence) => Err(fence.error()),
            None => Ok(()),
        }
    }

    /// Evaluate the job's guard again inside its transaction, after its
    /// statements took their locks: so a row written since the guard's
    /// first evaluation cannot slip past it. While it runs the application
    /// waits on those locks, so it gets the attempt's lock_timeout as its
    /// budget, the stall a lock wait may cause; a guard slower than that
    /// (no index for its condition on a big table) is skipped with a
    /// warning, having held at its first evaluation.
    async fn recheck(&self, job: &SectionJob<'_>, budget: Duration) -> Result<()> {
        if job.recheck.is_empty() {
            return Ok(());
        }
        let checks: Vec<(&str, &[_])> = job
            .recheck
            .iter()
            .map(|c| (c.sql.as_str(), c.params.as_slice()))
            .collect();
        let outcome = self
            .store
            .checks_within(&checks, budget, self.policy.statement_timeout.as_millis())
            .await?;
        match outcome {
            Recheck::Values(values) => {
                let outcomes: Vec<CheckOutcome> = job
                    .recheck
                    .iter()
                    .zip(values)
                    .map(|(check, value)| {
                        let (passed, detail) = verdict(value);
                        CheckOutcome {
                            name: check.name.clone(),
                            sql: check.written.clone(),
                            passed,
                            detail,
                        }
                    })
                    .collect();
                let Some(failures) = describe_failures(&outcomes) else {
                    return Ok(());
                };
                Err(Error::check_failed(
                    format!(
                        "{} was rolled back: its guard no longer holds once its statements ran (rows changed after the guard was first evaluated)\n  {}",
                        job.id, failures
                    ),
                    Some("make the guard hold, then run the same `orch advance` again".to_string()),
                ))
            }
            Recheck::TooSlow => {
                self.reporter.report(Event::Warning {
                    message: format!(
                        "{}: the guard was not evaluated again under the table's lock: there it takes longer than {} ms, which would stall the application (it held when evaluated just before); an index for its condition makes it fast enough to be checked under the lock",
                        job.id,
                        budget.as_millis()
                    ),
                });
                Ok(())
            }
        }
    }

    async fn run_statements(
        &self,
        job: &SectionJob<'_>,
        bookkeeping: impl FnOnce(Ended<'_>) -> Vec<Bookkeeping>,
    ) -> Result<RunStats> {
        let started = Instant::now();
        let mut execution = Duration::ZERO;
        // Retries over all statements: a section of two statements that
        // never waited for a lock took one attempt, not two.
        let mut retries = 0;
        let statements = sql_text::split_statements(&job.section.sql);
        for (index, statement) in statements.iter().enumerate() {
            let line = job.section.file_line(statement.offset);
            let ran = self
                .run_statement(job, index, statement, &mut retries)
                .await;
            self.store.reset_session_timeouts().await;
            match ran {
                Ok(took) => execution += took,
                Err(failure) => {
                    let stopped = Stopped {
                        index,
                        line,
                        statements: statements.len(),
                    };
                    return Err(self.stopped(job, stopped, failure, bookkeeping).await);
                }
            }
        }
        let stats = RunStats {
            attempts: retries + 1,
            duration: started.elapsed(),
            execution,
        };
        self.store
            .begin_with_timeouts(self.policy.lock_timeout, self.policy.statement_timeout)
            .await?;
        if let Err(e) = self.store.check_fences().await {
            self.store.rollback().await;
            return Err(e);
        }
        if let Err(e) = self
            .store
            .write_bookkeeping(&bookkeeping(Ended::Done(&stats)))
            .await
        {
            self.store.rollback().await;
            return Err(Error::db(format!("cannot record migration {}", job.id), e));
        }
        if let Err(failure) = self.store.commit().await {
            return Err(failed(
                job,
                (job.section.marker_line, None),
                failure,
                statements.len(),
            ));
        }
        Ok(stats)
    }

    /// Run statement `index` of a `transaction:false` section on its own,
    /// retrying lock timeouts: how long its successful attempt took, or how
    /// it failed.
    async fn run_statement(
        &self,
        job: &SectionJob<'_>,
        index: usize,
        statement: &Statement<'_>,
        retries: &mut u32,
    ) -> std::result::Result<Duration, StatementFailure> {
        let text = statement.text;
        let line = job.section.file_line(statement.offset);
        let quiet = StatementFailure::Error;
        // CONCURRENTLY takes SHARE UPDATE EXCLUSIVE, which never blocks
        // the application; a timeout would only leave an INVALID index.
        let concurrent = leading_words(text, 4).iter().any(|w| w == "concurrently");
        let index_built = concurrent_index(text);
        let invalid_before = match &index_built {
            Some(built) => {
                let before = self
                    .store
                    .invalid_indexes(&built.table)
                    .await
                    .map_err(quiet)?;
                refuse_invalid_existing(job, line, index, built, before.as_deref())
                    .map_err(quiet)?;
                before
            }
            None => None,
        };
        let mut lock_timeout = self.policy.scheduled_timeout(0);
        let mut attempt = 0;
        loop {
            self.still_locked().map_err(quiet)?;
            let timeouts = if concurrent {
                (Duration::ZERO, Duration::ZERO)
            } else {
                (lock_timeout, self.policy.statement_timeout)
            };
            self.store
                .set_session_timeouts(timeouts.0, timeouts.1)
                .await
                .map_err(quiet)?;
            let execution_started = Instant::now();
            let watch = self.monitor.watch(self.pid, poll_interval(lock_timeout));
            let result = self.store.run_script(text).await;
            let wait = watch.stop();
            let left_invalid = match &index_built {
                Some(built) => self.invalid_left(built, invalid_before.as_deref()).await,
                None => Ok(Vec::new()),
            };
            match result {
                Ok(()) => {
                    let took = execution_started.elapsed();
                    let left = left_invalid.map_err(quiet)?;
                    if !left.is_empty() {
                        return Err(StatementFailure::LeftInvalid(left));
                    }
                    return Ok(took);
                }
                Err(failure) => {
                    let outcome = self
                        .after_failure(job, line, attempt, lock_timeout, failure, wait)
                        .await
                        .map_err(quiet)?;
                    match outcome {
                        AfterFailure::Retry(next) => {
                            lock_timeout = next;
                            *retries += 1;
                        }
                        AfterFailure::GiveUp(failure) => {
                            let left = left_invalid.unwrap_or_default();
                            if !left.is_empty() {
                                self.reporter.report(Event::Warning {
                                    message: format!(
                                        "the failed CREATE INDEX CONCURRENTLY left INVALID index(es) behind; before running {} again: {}",
                                        job.id,
                                        drop_commands(&left)
                                    ),
                                });
                            }
                            let place = statement_place(job.section, statement, &failure);
                            return Err(quiet(failed(job, place, failure, index)));
                        }
                    }
                }
            }
            attempt += 1;
        }
    }

    /// A `transaction:false` section stopped at a statement: when statements
    /// before it ran (and stay applied), the migration is recorded as dirty,
    /// so orch refuses to go on until the operator resolves it, and the
    /// error says so. A first statement that fails changed nothing (an
    /// INVALID index it leaves is named with its fix, as before); a process
    /// that lost its lock records nothing (its error says that).
    async fn stopped(
        &self,
        job: &SectionJob<'_>,
        stopped: Stopped,
        failure: StatementFailure,
        bookkeeping: impl FnOnce(Ended<'_>) -> Vec<Bookkeeping>,
    ) -> Error {
        let lost_lock = matches!(failure, StatementFailure::Error(Error::LockLost { .. }));
        if stopped.index == 0 || lost_lock {
            return failure.into_error(job, &stopped, None);
        }
        let (why, sqlstate) = match &failure {
            StatementFailure::Error(Error::MigrationFailed { diagnostic, .. }) => {
                (diagnostic.to_string(), Some(diagnostic.sqlstate.clone()))
            }
            StatementFailure::Error(other) => (other.to_string(), None),
            StatementFailure::LeftInvalid(left) => (
                format!(
                    "CREATE INDEX CONCURRENTLY returned but left index {} INVALID",
                    names(left)
                ),
                None,
            ),
        };
        let dirty = DirtyState {
            direction: job.direction.to_string(),
            file: job.path.display().to_string(),
            line: stopped.line,
            statement: stopped.index + 1,
            statements: stopped.statements,
            completed: stopped.index,
            error: why,
            sqlstate,
        };
        match self
            .store
            .commit_bookkeeping(&bookkeeping(Ended::HalfDone(&dirty)))
            .await
        {
            Ok(()) => failure.into_error(job, &stopped, Some(job.version)),
            Err(e) => {
                tracing::error!("cannot record migration {} as dirty: {e}", job.id);
                failure.into_error(job, &stopped, None)
            }
        }
    }

    /// The INVALID indexes a `CREATE INDEX CONCURRENTLY` left: the one it
    /// names, or (unnamed) those that were not INVALID before it.
    async fn invalid_left(
        &self,
        built: &ConcurrentIndex,
        before: Option<&[InvalidIndex]>,
    ) -> Result<Vec<InvalidIndex>> {
        let Some(after) = self.store.invalid_indexes(&built.table).await? else {
            return Ok(Vec::new());
        };
        Ok(after
            .into_iter()
            .filter(|i| match &built.name {
                Some(name) => &i.name == name,
                None => !before.unwrap_or_default().contains(i),
            })
            .collect())
    }

    /// After a failed attempt: a lock timeout with retries left is
    /// reported, backed off from, and retried; exhausted retries become a
    /// `LockTimeout` error naming the blocker; anything else is given up.
    async fn after_failure(
        &self,
        job: &SectionJob<'_>,
        line: usize,
        attempt: u32,
        lock_timeout: Duration,
        failure: ScriptFailure,
        wait: Option<LockWaitSample>,
    ) -> Result<AfterFailure> {
        if !failure.is_lock_timeout() {
            return Ok(AfterFailure::GiveUp(failure));
        }
        let attempts = self.policy.attempts();
        if attempt + 1 >= attempts {
            return Err(lock_timeout_error(
                job,
                line,
                attempts,
                lock_timeout,
                wait.as_ref(),
            ));
        }
        let deadlock_timeout = match &wait {
            Some(w) if w.blockers.iter().any(|b| b.is_autovacuum()) => self
                .store
                .deadlock_timeout_ms()
                .await
                .ok()
                .map(Duration::from_millis),
            _ => None,
        };
        let (next, note) = self
            .policy
            .next_timeout(attempt + 1, wait.as_ref(), deadlock_timeout);
        let sleep = self.policy.backoff(attempt + 1, fastrand::f64());
        self.reporter.report(Event::LockRetry {
            target: format!("{}:{} ({})", job.path.display(), line, job.id),
            attempt: attempt + 1,
            attempts,
            lock_timeout_ms: lock_timeout.as_millis() as u64,
            retry_in_ms: sleep.as_millis() as u64,
            next_lock_timeout_ms: next.as_millis() as u64,
            wait,
            note,
        });
        tokio::time::sleep(sleep).await;
        Ok(AfterFailure::Retry(next))
    }
}

/// `DROP INDEX CONCURRENTLY x;`, for each index.
fn drop_commands(indexes: &[InvalidIndex]) -> String {
    indexes
        .iter()
        .map(|i| format!("`DROP INDEX CONCURRENTLY {};`", i.qualified))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` over an index of that name that
/// is INVALID would do nothing and be recorded: refused with the fix. orch
/// does not drop it itself: it may still be building for someone else.
fn refuse_invalid_existing(
    job: &SectionJob<'_>,
    line: usize,
    statement: usize,
    built: &ConcurrentIndex,
    before: Option<&[InvalidIndex]>,
) -> Result<()> {
    let (Some(name), Some(before)) = (&built.name, before) else {
        return Ok(());
    };
    let Some(found) = before.iter().find(|i| &i.name == name) else {
        return Ok(());
    };
    if !built.if_not_exists {
        return Ok(());
    }
    let ran = match statement {
        0 => String::new(),
        n => format!(" (its first {n} statement(s) did run and stay applied)"),
    };
    Err(Error::refused(
        format!(
            "{}:{line}: refusing to run migration {} ({}){ran}: index {} exists but is INVALID (a CREATE INDEX CONCURRENTLY that failed, was cancelled or was killed left it); IF NOT EXISTS would skip it and the migration would be recorded as applied without a usable index",
            job.path.display(),
            job.id,
            job.direction,
            found.qualified
        ),
        Some(format!(
            "run `DROP INDEX CONCURRENTLY {};` (once nothing builds it: pg_stat_progress_create_index), then the same command again",
            found.qualified
        )),
    ))
}

/// A `CREATE INDEX CONCURRENTLY` that returned but left its index INVALID;
/// `dirty`: the version recorded as dirty (statements before it ran).
fn invalid_after(
    job: &SectionJob<'_>,
    line: usize,
    statement: usize,
    left: &[InvalidIndex],
    dirty: Option<i64>,
) -> Error {
    let ran = match statement {
        0 => String::new(),
        n => format!("; its first {n} statement(s) did run and stay applied"),
    };
    let (recorded, then) = match dirty {
        Some(version) => (
            format!("{ran}{}", dirty_note(version)),
            "as part of that fix".to_string(),
        ),
        None => (
            format!("; the migration is NOT recorded{ran}"),
            "then the same command again".to_string(),
        ),
    };
    Error::failed(format!(
        "{}:{line}: migration {} ({}) failed: CREATE INDEX CONCURRENTLY returned but left index {} INVALID (PostgreSQL does not use it){recorded}\n  next: {}, {then}",
        job.path.display(),
        job.id,
        job.direction,
        names(left),
        drop_commands(left)
    ))
}

/// The indexes' qualified names, for messages.
fn names(indexes: &[InvalidIndex]) -> String {
    let names: Vec<&str> = indexes.iter().map(|i| i.qualified.as_str()).collect();
    names.join(", ")
}

/// Sample the lock wait often enough to see it before the timeout fires.
fn poll_interval(lock_timeout: Duration) -> Duration {
    (lock_timeout / 3).clamp(Duration::from_millis(20), Duration::from_millis(200))
}

/// Where in the file a section sent whole failed: where PostgreSQL's error
/// position points (line and column), when it gave one (a syntax error
/// anywhere in the script fails it before any statement ran); else the line
/// where the failing statement starts, the one after the last completed.
fn failing_place(
    section: &Section,
    statements: &[Statement<'_>],
    failure: &ScriptFailure,
) -> (usize, Option<usize>) {
    if let Some(offset) = failure
        .diagnostic
        .position
        .and_then(|p| sql_text::char_to_byte_offset(&section.sql, p as usize))
    {
        return section.file_position(offset);
    }
    match statements.get(failure.completed) {
        Some(statement) => (section.file_line(statement.offset), None),
        None => (section.marker_line, None),
    }
}

/// Where in the file a statement sent on its own failed: its error
/// position, else the line where it starts.
fn statement_place(
    section: &Section,
    statement: &Statement<'_>,
    failure: &ScriptFailure,
) -> (usize, Option<usize>) {
    match failure
        .diagnostic
        .position
        .and_then(|p| sql_text::char_to_byte_offset(statement.text, p as usize))
    {
        Some(offset) => section.file_position(statement.offset + offset),
        None => (section.file_line(statement.offset), None),
    }
}

fn failed(
    job: &SectionJob<'_>,
    (line, column): (usize, Option<usize>),
    failure: ScriptFailure,
    applied_before_failure: usize,
) -> Error {
    Error::MigrationFailed {
        path: job.path.to_path_buf(),
        name: format!("{} ({})", job.id, job.direction),
        line,
        column,
        diagnostic: Box::new(failure.diagnostic),
        applied_before_failure,
        recorded_dirty: None,
    }
}

/// `error`, saying that migration `version` is now recorded as dirty.
fn recorded_dirty(error: Error, version: i64) -> Error {
    match error {
        Error::MigrationFailed {
            path,
            name,
            line,
            column,
            diagnostic,
            applied_before_failure,
            recorded_dirty: _,
        } => Error::MigrationFailed {
            path,
            name,
            line,
            column,
            diagnostic,
            applied_before_failure,
            recorded_dirty: Some(version),
        },
        Error::LockTimeout { message } => Error::LockTimeout {
            message: format!(
                "{message}\n  note: statements before it ran and stay applied{}",
                dirty_note(version)
            ),
        },
        Error::Refused { message, next } => Error::Refused {
            message: format!("{message}{}", dirty_note(version)),
            next,
        },
        other => other,
    }
}

fn lock_timeout_error(
    job: &SectionJob<'_>,
    line: usize,
    attempts: u32,
    lock_timeout: Duration,
    wait: Option<&LockWaitSample>,
) -> Error {
    let mut message = format!(
        "{}:{}: migration {} ({}) gave up after {} attempts: each timed out waiting for a lock (lock_timeout {}); nothing of it was applied",
        job.path.display(),
        line,
        job.id,
        job.direction,
        attempts,
        timefmt::duration(lock_timeout)
    );
    match wait {
        Some(wait) => {
            message.push_str(&format!("\n  it waited for {}, held by:", wait.waiting_for));
            for b in &wait.blockers {
                message.push_str(&format!("\n    {}", b.describe()));
            }
        }
        None => message.push_str(
            "\n  the holder could not be identified (the wait ended before it was sampled)",
        ),
    }
    message.push_str(
        "\n  next: retry when that session is done, or allow more with --lock-retries / --lock-timeout-max",
    );
    Error::LockTimeout { message }
}
