//! Runs one migration section against the database: the whole section in one
//! transaction together with its bookkeeping, or (`transaction:false`) one
//! statement at a time; either way under a short `lock_timeout`, retried
//! with backoff when it expires. A look at `pg_locks` after each statement
//! tells which relations it locked, and for how long
//! (`migration::held_locks`).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine::checks::{BoundCheck, describe_failures, verdict};
use crate::engine::lock_retry::LockRetryPolicy;
use crate::error::{Error, PgDiagnostic, Result, dirty_note};
use crate::events::CheckOutcome;
use crate::events::LockWaitSample;
use crate::events::{Direction, Event, Reporter};
use crate::migration::Section;
use crate::migration::concurrent_index::{ConcurrentIndex, concurrent_index};
use crate::migration::held_locks::{HeldLock, LockMode, LockTracker};
use crate::migration::transactional::{Unfit, unfit_for_transaction};
use crate::sql_text;
use crate::sql_text::{Statement, leading_words};
use crate::store::Store;
use crate::store::blockers::BlockerMonitor;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::catalog::InvalidIndex;
use crate::store::lock_probe::Probe;
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
    /// orch's own SQL run in the same transaction, before and after the
    /// section's statements (a contract phase drops the plan's sync
    /// triggers before its migration; rolling it back installs them again
    /// after the down section). Transactional sections only.
    pub before: Option<&'a str>,
    pub after: Option<&'a str>,
    /// For a section of orch's own SQL (a sync phase's trigger, placed in
    /// the plan file): the line every failure and lock wait is reported at,
    /// instead of a line of SQL the file does not have.
    pub place: Option<usize>,
}

/// How a section run went.
#[derive(Debug, Clone)]
pub struct RunStats {
    pub attempts: u32,
    /// Wall time including lock waits and backoff.
    pub duration: Duration,
    /// Time of the SQL of the successful attempt(s) only.
    pub execution: Duration,
    /// What the statements of the successful attempt(s) locked, and for
    /// how long (docs/migrations.md defines "held"); None when orch could
    /// not look (the migration deallocated orch's probe).
    pub locks: Option<Vec<HeldLock>>,
}

/// A statement of a `transaction:false` section that ran: how long it took
/// and what the probe after it saw (None: it ran alone, unprobed).
struct StatementRun {
    took: Duration,
    probe: Option<Probe>,
}

/// SQLSTATE active_sql_transaction: a statement PostgreSQL refuses inside
/// a transaction block, which a statement sent with its probe is in.
const ACTIVE_SQL_TRANSACTION: &str = "25001";

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
        store.prepare_lock_probe().await?;
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
        let ends: Vec<usize> = statements.iter().map(|s| s.offset + s.text.len()).collect();
        let mut probing = true;
        let mut lock_timeout = self.policy.scheduled_timeout(0);
        let mut attempt = 0;
        loop {
            self.still_locked()?;
            self.store
                .begin_with_timeouts(lock_timeout, self.policy.statement_timeout)
                .await?;
            let execution_started = Instant::now();
            let watch = self.monitor.watch(self.pid, poll_interval(lock_timeout));
            let probes_at = if probing { ends.as_slice() } else { &[] };
            let result = self.run_around(job, sql, probes_at).await;
            let script_ended = Instant::now();
            let wait = watch.stop();
            match result {
                Ok(probes) => {
                    if let Err(e) = self.recheck(job, lock_timeout).await {
                        self.store.rollback().await;
                        return Err(e);
                    }
                    if let Err(e) = self.store.check_fences().await {
                        self.store.rollback().await;
                        return Err(e);
                    }
                    // Up to now, as the bookkeeping row is written and the
                    // transaction committed: no lock is held longer than
                    // the migration's duration says.
                    let locks = probing.then(|| {
                        transaction_locks(job.section, &statements, &probes, script_ended.elapsed())
                    });
                    let stats = RunStats {
                        attempts: attempt + 1,
                        duration: started.elapsed(),
                        execution: execution_started.elapsed(),
                        locks,
                    };
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
                Err(failure) if probing && failure.lost_lock_probe() => {
                    // The section deallocates the probe: again without it.
                    self.store.rollback().await;
                    self.store.prepare_lock_probe().await?;
                    probing = false;
                }
                Err(failure) => {
                    self.store.rollback().await;
                    let place = match job.place {
                        Some(line) => (line, None),
                        None => failing_place(job.section, &statements, &failure),
                    };
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

    /// The section's statements (probed at `probes_at`), with the job's own
    /// SQL before and after them. A failure of orch's SQL is placed at the
    /// section's start (its `completed` is 0).
    async fn run_around(
        &self,
        job: &SectionJob<'_>,
        sql: &str,
        probes_at: &[usize],
    ) -> std::result::Result<Vec<Probe>, ScriptFailure> {
        let own = |failure: ScriptFailure| ScriptFailure {
            completed: 0,
            diagnostic: PgDiagnostic {
                position: None,
                ..failure.diagnostic
            },
        };
        if let Some(before) = job.before {
            self.store.run_script(before).await.map_err(own)?;
        }
        let probes = self.store.run_probed(sql, probes_at).await?;
        if let Some(after) = job.after {
            self.store.run_script(after).await.map_err(own)?;
        }
        Ok(probes)
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
        let mut locks = LockTracker::default();
        let statements = sql_text::split_statements(&job.section.sql);
        for (index, statement) in statements.iter().enumerate() {
            let line = job.section.file_line(statement.offset);
            let ran = self
                .run_statement(job, index, statement, &mut retries)
                .await;
            self.store.reset_session_timeouts().await;
            match ran {
                Ok(run) => {
                    execution += run.took;
                    self.note_locks(&mut locks, index, line, statement.text, &run)
                        .await;
                }
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
            locks: Some(locks.finish(0.0)),
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

    /// What statement `index` of a `transaction:false` section locked: what
    /// its probe saw, held for the statement's own transaction; for a
    /// `CREATE INDEX CONCURRENTLY` (which runs alone, unprobed) the SHARE
    /// UPDATE EXCLUSIVE lock PostgreSQL documents on its table, held for as
    /// long as it ran. Other statements that run alone go unrecorded.
    async fn note_locks(
        &self,
        locks: &mut LockTracker,
        index: usize,
        line: usize,
        text: &str,
        run: &StatementRun,
    ) {
        if let Some(probe) = &run.probe {
            let held_us = probe.at_us - probe.script_started_us;
            locks.after_statement(index + 1, line, 0.0, &probe.locks);
            locks.transaction_ended(held_us as f64 / 1000.0);
            return;
        }
        let Some(built) = concurrent_index(text) else {
            return;
        };
        let name = match self.store.relation_name(&built.table).await {
            Ok(Some(name)) => name,
            _ => built.table.clone(),
        };
        locks.known(index + 1, line, 0.0, LockMode::ShareUpdateExclusive, &name);
        locks.transaction_ended(run.took.as_secs_f64() * 1000.0);
    }

    /// Run statement `index` of a `transaction:false` section on its own
    /// (with a probe of its locks in the same implicit transaction, unless
    /// PostgreSQL refuses it in a transaction block), retrying lock
    /// timeouts: how its successful attempt went, or how it failed.
    async fn run_statement(
        &self,
        job: &SectionJob<'_>,
        index: usize,
        statement: &Statement<'_>,
        retries: &mut u32,
    ) -> std::result::Result<StatementRun, StatementFailure> {
        let text = statement.text;
        let line = job.section.file_line(statement.offset);
        let quiet = StatementFailure::Error;
        let mut probed = !unfit_for_transaction(text).is_some_and(Unfit::needs_no_transaction);
        let mut lost_probe = false;
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
            let result = if probed {
                let ends = [text.len()];
                self.store
                    .run_probed(text, &ends)
                    .await
                    .map(|probes| probes.into_iter().next())
            } else {
                self.store.run_script(text).await.map(|()| None)
            };
            let wait = watch.stop();
            if probed && let Err(failure) = &result {
                // Refused in the implicit transaction its probe makes, so
                // nothing of it ran: again alone, unprobed. Or it
                // deallocated the probe: again alone, then the probe is
                // prepared again for the statements after it.
                let lost = failure.lost_lock_probe();
                if lost || failure.diagnostic.sqlstate == ACTIVE_SQL_TRANSACTION {
                    probed = false;
                    lost_probe |= lost;
                    continue;
                }
            }
            let left_invalid = match &index_built {
                Some(built) => self.invalid_left(built, invalid_before.as_deref()).await,
                None => Ok(Vec::new()),
            };
            match result {
                Ok(probe) => {
                    let took = execution_started.elapsed();
                    let left = left_invalid.map_err(quiet)?;
                    if !left.is_empty() {
                        return Err(StatementFailure::LeftInvalid(left));
                    }
                    if lost_probe {
                        self.store.prepare_lock_probe().await.map_err(quiet)?;
                    }
                    return Ok(StatementRun { took, probe });
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
/// where the failing statement starts, the one after the last whose probe
/// ran.
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

/// What a transactional section's statements locked: each lock from the
/// start of the statement that took it (the previous probe's time; the
/// script's arrival for the first) until now, `since_script` after the
/// script ended, on the server's clock. The part after the script (guard,
/// bookkeeping) is timed by orch, the statements by the server.
fn transaction_locks(
    section: &Section,
    statements: &[Statement<'_>],
    probes: &[Probe],
    since_script: Duration,
) -> Vec<HeldLock> {
    let (Some(first), Some(last)) = (probes.first(), probes.last()) else {
        return Vec::new();
    };
    let ms = |us: i64| (us - first.script_started_us) as f64 / 1000.0;
    let mut tracker = LockTracker::default();
    let mut statement_started = first.script_started_us;
    for probe in probes {
        let line = statements
            .get(probe.statement)
            .map_or(section.marker_line, |s| section.file_line(s.offset));
        tracker.after_statement(
            probe.statement + 1,
            line,
            ms(statement_started),
            &probe.locks,
        );
        statement_started = probe.at_us;
    }
    tracker.finish(ms(last.at_us) + since_script.as_secs_f64() * 1000.0)
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
