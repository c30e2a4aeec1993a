//! `orch advance PLAN`: run exactly the next phase, if the one before it is
//! confirmed: open a gate, apply a migration, evaluate checks, or run a
//! backfill, recording the phase's new state with the work.
//! `--dry-run` is a mode of the same verb: it finds the same next phase and
//! says what it would do, changing nothing.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::engine::checks::{self, BoundCheck};
use crate::engine::phases::{self, DryRun, Step};
use crate::engine::plan_backfill::earlier_backfill;
use crate::engine::plan_runner::{PlanEngine, confirm_command, fresh_phases};
use crate::engine::plan_sync::Drift;
use crate::error::{Error, Result};
use crate::events::{Event, NamedSql};
use crate::identity;
use crate::plan::audit::Verb;
use crate::plan::kinds;
use crate::plan::records::{PhaseRecord, PlanRecord};
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::plan::{AuditAction, LoadedPlan};

impl PlanEngine<'_> {
    /// `orch advance PLAN`: run exactly the next phase (in a dry run, say
    /// what it would do).
    pub async fn advance(&self, name: &str) -> Result<()> {
        if self.options.dry_run {
            return self.advance_dry_run(name).await;
        }
        self.once(name, Verb::Advance, None, self.advance_locked(name))
            .await
    }

    async fn advance_locked(&self, name: &str) -> Result<()> {
        let plan = self.plan(name)?;
        if self.store.plan_state(name).await?.is_none() {
            phases::migration::lint_first_phase(self, plan).await?;
        }
        self.store.ensure_schema().await?;
        let (record, phases) = self
            .sync(plan, true)
            .await?
            .expect("created on first advance");
        let Some(Next {
            index,
            state: next,
            resumed,
        }) = next_phase(plan, &phases)?
        else {
            self.reporter.report(complete(name, phases.len()));
            return Ok(());
        };
        let current = &phases[index];
        let spec = &plan.spec.phases[index];
        let total = phases.len();
        let recheck = self.guard(plan, &record, &phases, index).await?;
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

    /// `orch advance PLAN --dry-run`: the phase `advance` would run and what
    /// it would do, its guard evaluated now; refused where `advance` would
    /// refuse. Reads only: no schema, lock, row or event is created.
    async fn advance_dry_run(&self, name: &str) -> Result<()> {
        let plan = self.plan(name)?;
        let mut notes = Vec::new();
        let (record, phases) = match self.recorded(plan).await? {
            None => {
                notes.push(format!(
                    "plan {name} has not started: this advance would start it (creating orch's schema first if the database has none)"
                ));
                (None, fresh_phases(plan, 0))
            }
            Some((record, phases, Drift::Unchanged)) => (Some(record), phases),
            Some((
                record,
                mut phases,
                Drift::AcceptEdit {
                    first_pending,
                    changed,
                },
            )) => {
                let from = first_pending as usize - 1;
                phases.truncate(from);
                phases.extend(fresh_phases(plan, from));
                notes.push(format!(
                    "{} changed since it was last used: this advance would first update the phases that have not run{}",
                    plan.path.display(),
                    if changed.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", changed.join(", "))
                    }
                ));
                (Some(record), phases)
            }
        };
        let Some(Next { index, resumed, .. }) = next_phase(plan, &phases)? else {
            self.reporter.report(complete(name, phases.len()));
            return Ok(());
        };
        let spec = &plan.spec.phases[index];
        if let Some(pid) = self.store.plan_lock_holder(name).await? {
            notes.push(format!(
                "another orch holds the plan's lock now (its server session is pid {pid}): this advance would wait for it (--lock-wait), then act on the plan as that one leaves it"
            ));
        }
        if resumed || phases[index].state == PhaseState::Failed {
            notes.push(format!(
                "phase {} is {}: this advance would {} it",
                index + 1,
                phases[index].state.name(),
                if resumed { "resume" } else { "retry" }
            ));
        }
        let times = record
            .as_ref()
            .map(|r| self.times(r, &phases, index))
            .unwrap_or_default();
        let guard = checks::evaluate_unrecorded(self.store, &spec.guard, &times).await?;
        let dry = DryRun { plan, index, times };
        let work = phases::work(spec.kind).dry_run(self, &dry).await?;
        let failures = checks::describe_failures(&guard);
        self.reporter.report(Event::PhaseWouldRun {
            plan: name.to_string(),
            position: index + 1,
            total: phases.len(),
            id: spec.id.clone(),
            kind: spec.kind,
            title: spec.title.clone(),
            notes,
            guard,
            work,
            instructions: spec.instructions.clone(),
            checks: spec
                .checks
                .iter()
                .map(|c| NamedSql {
                    name: c.name.clone(),
                    sql: c.sql.trim().to_string(),
                })
                .collect(),
        });
        match failures {
            None => Ok(()),
            Some(failures) => Err(Error::check_failed(
                format!(
                    "`orch advance {name}` would refuse to run phase {} ({}): its guard does not hold now\n  {failures}",
                    index + 1,
                    spec.id
                ),
                Some(format!(
                    "make the guard hold, then run `orch advance {name}`"
                )),
            )),
        }
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

/// The phase `advance` runs next: its 0-based index, the state it moves
/// to, and whether it resumes one that started before.
struct Next {
    index: usize,
    state: PhaseState,
    resumed: bool,
}

/// The phase `advance` runs next, from the recorded phases; None when every
/// phase is confirmed. Refused when the phase before waits for its
/// confirmation, or the current one may not start from its state.
fn next_phase(plan: &LoadedPlan, phases: &[PhaseRecord]) -> Result<Option<Next>> {
    let name = plan.name();
    let Some(index) = phases.iter().position(|p| p.state != PhaseState::Confirmed) else {
        return Ok(None);
    };
    let current = &phases[index];
    let spec = &plan.spec.phases[index];
    if current.state.awaits_confirmation() {
        return Err(not_confirmed(name, index, phases.len(), current));
    }
    let state = transition(spec.kind, current.state, PhaseCommand::Start).map_err(|e| {
        Error::refused(
            format!("phase {} ({}) of plan {name}: {e}", index + 1, current.id),
            None,
        )
    })?;
    Ok(Some(Next {
        index,
        state,
        resumed: matches!(current.state, PhaseState::Running | PhaseState::Paused),
    }))
}

/// What `advance` says of a plan whose phases are all confirmed.
fn complete(name: &str, total: usize) -> Event {
    Event::Info {
        message: format!(
            "plan {name} is complete: all {total} phases are confirmed; nothing to advance"
        ),
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
