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
mod migration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use crate::backfill::BackfillProgress;
use crate::engine::checks::BoundCheck;
use crate::engine::plan_runner::PlanEngine;
use crate::error::Result;
use crate::plan::LoadedPlan;
use crate::plan::format::{PhaseKind, PhaseSpec};
use crate::plan::records::{PhaseRecord, PlanRecord};
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;

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

/// What the engine needs of one kind of phase.
pub(crate) trait PhaseWork: Sync {
    /// `orch advance`: do the phase's work, recording its outcome.
    fn advance<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        step: Step<'a>,
    ) -> BoxFuture<'a, Result<()>>;

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

    /// `orch check --online`: what the database says of phase `index` of
    /// `plan`: a note when it is fine, an error pointing into the plan file
    /// when not, None when there is nothing to look at.
    fn check_online<'a>(
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
    }
}
