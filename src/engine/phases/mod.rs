//! Phase kinds, as the engine runs them: one file per kind, each
//! implementing `PhaseWork` (advance, rollback, and what `status` and
//! `check --online` ask of it). The verbs (`plan_advance`, `plan_rollback`,
//! `plan_status`) do the kind-agnostic part: locking, the state machine,
//! guards, confirmation; they call into the kind through `work`.
//! What a kind means in a plan file (its fields and rules) is in
//! `plan::kinds`.

mod backfill;
mod check;
mod deploy;
pub(crate) mod migration;
pub(crate) mod migration_preview;
mod sync;
mod sync_contract;

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::backfill::BackfillProgress;
use crate::engine::checks::{BoundCheck, CheckTimes};
use crate::engine::plan_runner::PlanEngine;
use crate::error::{Error, Result};
use crate::events::WouldDo;
use crate::migration::MigrationSet;
use crate::plan::LoadedPlan;
use crate::plan::format::{PhaseKind, PhaseSpec};
use crate::plan::records::{PhaseRecord, PlanRecord};
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::migrations::AppliedMigration;

/// A phase being advanced: its row has already moved to its new state
/// (`started`), its guard held.
pub(crate) struct Step<'a> {
    pub plan: &'a LoadedPlan,
    pub record: &'a PlanRecord,
    pub phases: &'a [PhaseRecord],
    /// 0-based.
    pub index: usize,
    pub started: PhaseRecord,
    pub now: DateTime<Utc>,
    /// The guard, bound, to evaluate again inside a migration's transaction.
    pub recheck: Vec<BoundCheck>,
    /// Started before and interrupted, paused or failed: this run resumes it.
    pub resumed: bool,
}

impl Step<'_> {
    pub fn spec(&self) -> &PhaseSpec {
        &self.plan.spec.phases[self.index]
    }
}

/// A phase being rolled back.
pub(crate) struct Undo<'a> {
    pub plan: &'a LoadedPlan,
    /// 0-based.
    pub index: usize,
    /// The phase's work ran (done or confirmed), so there is work to undo.
    pub work_done: bool,
    /// Committed together with the undo: the phase's new row, the event,
    /// the plan marked not complete.
    pub records: Vec<Bookkeeping>,
}

impl Undo<'_> {
    pub fn spec(&self) -> &PhaseSpec {
        &self.plan.spec.phases[self.index]
    }
}

/// A phase `orch advance --dry-run` describes: nothing runs, nothing is
/// recorded.
pub(crate) struct DryRun<'a> {
    pub plan: &'a LoadedPlan,
    /// 0-based.
    pub index: usize,
    /// For checks the dry run evaluates now (a check phase's).
    pub times: CheckTimes,
}

impl DryRun<'_> {
    pub fn spec(&self) -> &PhaseSpec {
        &self.plan.spec.phases[self.index]
    }
}

/// What `orch check --online`'s preview works on: one transaction, rolled
/// back at the end, in which the plan's migrations not applied yet run in
/// order (see `engine::online_check`).
pub(crate) struct Preview<'a> {
    pub store: &'a Store,
    pub plan: &'a LoadedPlan,
    pub migrations: &'a MigrationSet,
    /// orch's migration history as it is (nothing applied there runs again).
    pub applied: &'a [AppliedMigration],
    /// The preview's lock_timeout and statement_timeout.
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// The indexes that statements left out of the preview build (`CREATE
    /// INDEX CONCURRENTLY`), with the phase that builds each: a later
    /// migration that needs one (`ADD CONSTRAINT ... USING INDEX`) is
    /// deferred, not failed.
    pub left_out_indexes: std::sync::Mutex<Vec<(String, String)>>,
}

/// How a phase changes the schema in the preview.
pub(crate) enum PreviewChange {
    /// It changes no schema (not a migration).
    Nothing,
    /// Its migration is applied already: nothing runs.
    AlreadyApplied,
    /// Applied in the preview, with a note when some of it was left out.
    Applied {
        note: Option<String>,
        /// Tables (as written) of `CREATE UNIQUE INDEX CONCURRENTLY`
        /// statements left out (they cannot run in a transaction): a
        /// backfill may need such an index as its key.
        unique_indexes_left_out: Vec<String>,
    },
    /// What it would do is not known here (its lock was not available, it
    /// was too slow, it depends on data): the checks from here on are
    /// deferred, for this reason.
    Deferred(String),
    /// It cannot apply to the schema it will meet: the error points into
    /// the plan file.
    Failed(Error),
}

/// What the engine needs of one kind of phase.
pub(crate) trait PhaseWork: Sync {
    /// `orch advance`: do the phase's work, recording its outcome.
    fn advance<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        step: Step<'a>,
    ) -> BoxFuture<'a, Result<()>>;

    /// `orch advance --dry-run`: what `advance` would do, changing nothing
    /// (reading the database is fine; writing, locking or recording is not).
    fn dry_run<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        dry: &'a DryRun<'a>,
    ) -> BoxFuture<'a, Result<WouldDo>>;

    /// `orch rollback`: undo the work and commit `undo.records` with it;
    /// returns a note for the operator. By default there is nothing to undo
    /// but the state.
    fn rollback<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        undo: Undo<'a>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            engine.store.commit_bookkeeping(&undo.records).await?;
            Ok(String::new())
        })
    }

    /// `orch status`: live progress of the phase's work, if it has any.
    fn progress<'a>(
        &'a self,
        _store: &'a Store,
        _plan: &'a str,
        _phase: &'a PhaseSpec,
    ) -> BoxFuture<'a, Result<Option<BackfillProgress>>> {
        Box::pin(async { Ok(None) })
    }

    /// `orch check --online`: change the schema in the preview as the phase
    /// will when it runs. By default a phase changes no schema.
    fn change_in_preview<'a>(
        &'a self,
        _preview: &'a Preview<'a>,
        _index: usize,
    ) -> BoxFuture<'a, PreviewChange> {
        Box::pin(async { PreviewChange::Nothing })
    }

    /// `orch check --online`: what the database says of phase `index` of
    /// `plan`, inside the preview, where the schema is as it will be when
    /// the phase runs: a note when it is fine, an error pointing into the
    /// plan file when not, None when there is nothing to look at. Catalog
    /// reads and compiling only: the preview may hold the locks of earlier
    /// phases' migrations meanwhile, so the application waits while it runs.
    fn check_online<'a>(
        &'a self,
        _store: &'a Store,
        _plan: &'a LoadedPlan,
        _index: usize,
    ) -> BoxFuture<'a, Option<Result<String>>> {
        Box::pin(async { None })
    }

    /// `orch check --online`, after the preview, on the database as it is:
    /// what may take longer to find out (a backfill's row count), added to
    /// the phase's note.
    fn measure_online<'a>(
        &'a self,
        _store: &'a Store,
        _plan: &'a LoadedPlan,
        _index: usize,
    ) -> BoxFuture<'a, Option<Result<String>>> {
        Box::pin(async { None })
    }
}

/// The engine's side of a phase kind.
pub(crate) fn work(kind: PhaseKind) -> &'static dyn PhaseWork {
    match kind {
        PhaseKind::Migration => &migration::MigrationPhase,
        PhaseKind::Deploy => &deploy::DeployGate,
        PhaseKind::Backfill => &backfill::BackfillPhase,
        PhaseKind::Check => &check::CheckPhase,
        PhaseKind::Sync => &sync::SyncPhase,
    }
}
