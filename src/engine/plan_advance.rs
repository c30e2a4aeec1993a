//! `orch advance PLAN`: run exactly the next phase, if the one before it is
//! confirmed: open a gate, apply a migration, evaluate checks, or run a
//! backfill, recording the phase's new state with the work.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::engine::checks::{self, BoundCheck};
use crate::engine::phases::{self, Step};
use crate::engine::plan_backfill::earlier_backfill;
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::identity;
use crate::plan::audit::Verb;
use crate::plan::kinds;
use crate::plan::records::{PhaseRecord, PlanRecord};
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::plan::{AuditAction, LoadedPlan};

impl PlanEngine<'_> {
    /// `orch advance PLAN`: run exactly the next phase.
    pub async fn advance(&self, name: &str) -> Result<()> {
        self.once(name, Verb::Advance, None, self.advance_locked(name))
            .await
    }

    async fn advance_locked(&self, name: &str) -> Result<()> {
        let plan = self.plan(name)?;
        self.store.ensure_schema().await?;
        let (record, phases) = self
            .sync(plan, true)
            .await?
            .expect("created on first advance");
        let Some(index) = phases.iter().position(|p| p.state != PhaseState::Confirmed) else {
            self.reporter.report(Event::Info {
                message: format!(
                    "plan {name} is complete: all {} phases are confirmed; nothing to advance",
                    phases.len()
                ),
            });
            return Ok(());
        };
        let current = &phases[index];
        let spec = &plan.spec.phases[index];
        let total = phases.len();
        if current.state.awaits_confirmation() {
            return Err(not_confirmed(name, index, total, current));
        }
        let next = transition(spec.kind, current.state, PhaseCommand::Start).map_err(|e| {
            Error::refused(
                format!("phase {} ({}) of plan {name}: {e}", index + 1, current.id),
                None,
            )
        })?;
        let recheck = self.guard(plan, &record, &phases, index).await?;
        let resumed = matches!(current.state, PhaseState::Running | PhaseState::Paused);
        let now = self.store.server_time().await?;
        let started = self.started(plan, index, current, next, resumed, now);
        if !kinds::rules(spec.kind).is_gate() {
            self.reporter.report(Event::PhaseStarted {
                plan: name.to_string(),
                position: index + 1,
                total,
                id: spec.id.clone(),
                kind: spec.kind,
                title: spec.title.clone(),
                resumed,
            });
        }
        let step = Step {
            plan,
            record: &record,
            phases: &phases,
            index,
            started,
            now,
            recheck,
            resumed,
        };
        phases::work(spec.kind).advance(self, step).await
    }

    /// Evaluate phase `index`'s guard: refused (and audited) when it does
    /// not hold; else the guard, bound, to evaluate again inside a
    /// migration's own transaction.
    async fn guard(
        &self,
        plan: &LoadedPlan,
        record: &PlanRecord,
        phases: &[PhaseRecord],
        index: usize,
    ) -> Result<Vec<BoundCheck>> {
        let (name, spec) = (plan.name(), &plan.spec.phases[index]);
        if spec.guard.is_empty() {
            return Ok(Vec::new());
        }
        let times = self.times(record, phases, index);
        let outcomes = self
            .evaluate(name, spec, &spec.guard, &times, "guard")
            .await?;
        if let Some(failures) = checks::describe_failures(&outcomes) {
            self.store
                .commit_bookkeeping(&[self.event(
                    name,
                    Some(&spec.id),
                    AuditAction::GuardFailed,
                    json!({ "checks": outcomes }),
                )])
                .await?;
            return Err(Error::check_failed(
                format!(
                    "refusing to run phase {} ({}) of plan {name}: its guard does not hold\n  {failures}",
                    index + 1,
                    spec.id
                ),
                Some(match earlier_backfill(plan, index) {
                    // Rows an old application version wrote after the
                    // backfill are the usual culprit; re-running it fixes them.
                    Some(backfill) => format!(
                        "make the guard hold (if rows written after backfill {backfill} ran are what fails it, `orch backfill {name} {backfill}` updates them), then run `orch advance {name}` again"
                    ),
                    None => format!("make the guard hold, then run `orch advance {name}` again"),
                }),
            ));
        }
        Ok(spec
            .guard
            .iter()
            .filter_map(|check| BoundCheck::bind(check, &times).ok())
            .collect())
    }

    /// Phase `index`'s row as it starts (or resumes): its new state, who
    /// runs it and where (the heartbeat), the definition it runs with.
    fn started(
        &self,
        plan: &LoadedPlan,
        index: usize,
        current: &PhaseRecord,
        next: PhaseState,
        resumed: bool,
        now: DateTime<Utc>,
    ) -> PhaseRecord {
        let mut started = current.clone();
        started.state = next;
        started.ran_by = Some(self.options.actor.clone());
        started.definition_checksum = Some(plan.phase_checksum(index));
        started.error = None;
        started.pause_requested = false;
        // The heartbeat: who runs it, where; its time is the row's (or the
        // last batch's) update.
        started.run_pid = Some(std::process::id() as i32);
        started.run_host = Some(identity::host());
        if !resumed || started.started_at.is_none() {
            started.started_at = Some(now);
        }
        started.finished_at = None;
        started
    }

    /// Record a failure of phase `index`, then hand the error back.
    pub(crate) async fn fail(
        &self,
        plan: &LoadedPlan,
        mut record: PhaseRecord,
        error: Error,
    ) -> Error {
        let phase = record.id.clone();
        let kind = plan.spec.phases[(record.position - 1) as usize].kind;
        record.state =
            transition(kind, record.state, PhaseCommand::Fail).expect("a started phase may fail");
        record.error = Some(error.to_string());
        record.finished_at = self.store.server_time().await.ok();
        let detail = json!({ "error": error.to_string() });
        // A process that lost its lock may record nothing, its failure
        // included (the error says so already): no second message for it.
        if matches!(error, Error::LockLost { .. }) {
            return error;
        }
        if let Err(e) = self
            .record_phase(plan.name(), record, AuditAction::PhaseFailed, detail)
            .await
        {
            tracing::error!("cannot record the failure of phase {phase}: {e}");
        }
        error
    }
}

/// Why `advance` may not run the phase after `current`: it waits for the
/// operator's confirmation.
fn not_confirmed(name: &str, index: usize, total: usize, current: &PhaseRecord) -> Error {
    let what = if current.state == PhaseState::Open {
        "its gate is open: deploy as instructed, then confirm"
    } else {
        "it ran and waits for the operator's confirmation"
    };
    Error::refused(
        format!(
            "refusing to advance plan {name}: phase {} of {total} ({}) is not confirmed; {what}",
            index + 1,
            current.id
        ),
        Some(confirm_command(name, &current.id)),
    )
}
