//! The plan engine: `orch advance / confirm / rollback / pause` move a plan
//! through its phases, one confirmed step at a time (`plan_advance`,
//! `plan_confirm`, `plan_rollback`). Every state change goes through
//! `plan::state::transition` and is recorded with an event, in the same
//! transaction as the work where the work is transactional. This file holds
//! what they share: locking, reconciling the file with the recorded state,
//! recording phases, evaluating checks.

use std::time::Duration;

use serde_json::json;

use crate::engine::checks::{self, CheckTimes};
use crate::engine::lock_retry::LockRetryPolicy;
use crate::engine::orphans;
use crate::engine::plan_sync::{self, Drift};
use crate::error::{Error, Result};
use crate::events::CheckOutcome;
use crate::events::{Event, Reporter};
use crate::migration::MigrationSet;
use crate::plan::audit::Verb;
use crate::plan::format::{CheckSpec, PhaseSpec};
use crate::plan::kinds;
use crate::plan::records::{EventRecord, PhaseRecord, PlanRecord};
use crate::plan::suggest;
use crate::plan::{AuditAction, BackfillOverrides, LoadedPlan, PlanSet};
use crate::stop::StopSignal;
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::locks::{LockGuard, LockScope};
use crate::timefmt;

/// Settings of the plan commands.

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub actor: String,
    pub policy: LockRetryPolicy,
    /// How long to wait for another orch acting on the same plan.
    pub plan_lock_wait: Duration,
    /// How long to wait for the migration-history lock (migration phases).
    pub migration_lock_wait: Duration,
    pub backfill: BackfillOverrides,
    /// Cancel statements an earlier orch process left running on the plan
    /// (or the migration history) instead of waiting for them.
    pub cancel_orphans: bool,
    /// `orch advance --dry-run`: say what the next phase would do, reading
    /// the database only (no schema created, no lock taken, nothing
    /// recorded).
    pub dry_run: bool,
}

/// Drives plans against one database.
pub struct PlanEngine<'a> {
    pub store: &'a Store,
    pub plans: &'a PlanSet,
    pub migrations: &'a MigrationSet,
    pub options: &'a PlanOptions,
    pub reporter: &'a dyn Reporter,
    pub stop: &'a StopSignal,
}

/// The command that confirms a phase, as printed for the operator.
pub fn confirm_command(plan: &str, phase: &str) -> String {
    format!("orch confirm {plan} {phase} --by NAME [--note TEXT]")
}

impl PlanEngine<'_> {
    pub(super) fn plan(&self, name: &str) -> Result<&LoadedPlan> {
        self.plans.require(name)
    }

    /// Phase `reference` (id or 1-based number) of `plan`, 0-based.
    pub(super) fn phase_index(&self, plan: &LoadedPlan, reference: &str) -> Result<usize> {
        plan.find_phase(reference).ok_or_else(|| {
            let ids: Vec<&str> = plan.spec.phases.iter().map(|p| p.id.as_str()).collect();
            Error::Usage(suggest::unknown_phase(plan.name(), reference, &ids))
        })
    }

    /// Run `work` holding the plan's lock, released before returning.
    pub(super) async fn locked<T>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        self.lock(name).await?.around(work).await
    }

    /// Run a verb's `work` once: holding the plan's lock, and only if the
    /// plan is still where it was before this command waited for the lock
    /// (no other orch moved a phase meanwhile). When one did, the work does
    /// not run: a no-op, said, when it was the same verb (its outcome is
    /// what this one was asked for), else a refusal naming the move.
    pub(super) async fn once(
        &self,
        name: &str,
        verb: Verb,
        phase: Option<&str>,
        work: impl std::future::Future<Output = Result<()>>,
    ) -> Result<()> {
        let seen = self.store.latest_move(name).await?.map(|e| e.id);
        self.locked(name, async {
            self.store.upgrade_schema().await?;
            match self.store.latest_move(name).await? {
                Some(moved) if Some(moved.id) != seen => self.moved(name, verb, phase, &moved),
                _ => work.await,
            }
        })
        .await
    }

    /// The plan moved (`event`) while a `verb` waited for its lock. It did
    /// what this one was asked when it is the same verb, completed, on the
    /// phase this one names (if it names one).
    fn moved(
        &self,
        name: &str,
        verb: Verb,
        phase: Option<&str>,
        event: &EventRecord,
    ) -> Result<()> {
        let what = describe_move(event);
        let completed = !matches!(
            event.action,
            AuditAction::PhaseFailed | AuditAction::BackfillPaused
        );
        let same_phase = phase.is_none_or(|id| event.phase.as_deref() == Some(id));
        if event.action.moved_by() == Some(verb) && completed && same_phase {
            self.reporter.report(Event::Info {
                message: format!(
                    "plan {name} moved while this {} waited for its lock ({what}): another orch did it; nothing more done",
                    verb.name()
                ),
            });
            return Ok(());
        }
        Err(Error::refused(
            format!(
                "plan {name} moved while this {} waited for its lock ({what}); nothing done",
                verb.name()
            ),
            Some(format!("`orch status {name}`, then decide again")),
        ))
    }

    /// The plan's lock; then what an earlier process left running on the
    /// plan is waited for (or cancelled).
    pub(super) async fn lock(&self, name: &str) -> Result<LockGuard> {
        let scope = LockScope::Plan(name.to_string());
        let wait = self.options.plan_lock_wait;
        let guard = self.store.lock("lock", scope.clone(), wait).await?;
        self.settle(&scope, wait).await?;
        Ok(guard)
    }

    /// The migration-history lock, for phases that apply or revert a
    /// migration (the same lock `orch migrate` takes).
    pub(super) async fn migrations_lock(&self) -> Result<LockGuard> {
        let wait = self.options.migration_lock_wait;
        let guard = self
            .store
            .lock("migrations lock", LockScope::Migrations, wait)
            .await?;
        self.settle(&LockScope::Migrations, wait).await?;
        Ok(guard)
    }

    async fn settle(&self, scope: &LockScope, wait: Duration) -> Result<()> {
        orphans::settle(
            self.store,
            scope,
            wait,
            self.options.cancel_orphans,
            self.reporter,
        )
        .await
    }

    /// Load the recorded state, creating it on first advance, and reconcile
    /// it with the file (refusing edits of phases that ran).
    pub(super) async fn sync(
        &self,
        plan: &LoadedPlan,
        create: bool,
    ) -> Result<Option<(PlanRecord, Vec<PhaseRecord>)>> {
        let name = plan.name();
        let Some((record, phases, drift)) = self.recorded(plan).await? else {
            if !create {
                return Ok(None);
            }
            let record = PlanRecord {
                name: name.to_string(),
                file: plan.path.display().to_string(),
                started_checksum: plan.checksum.clone(),
                checksum: plan.checksum.clone(),
                definition: serde_json::to_value(&plan.spec).expect("a plan always serialises"),
                started_at: self.store.server_time().await?,
                started_by: self.options.actor.clone(),
                completed_at: None,
            };
            self.store
                .create_plan(&record, &fresh_phases(plan, 0))
                .await?;
            return self.store.plan_state(name).await;
        };
        match drift {
            Drift::Unchanged => Ok(Some((record, phases))),
            Drift::AcceptEdit {
                first_pending,
                changed,
            } => {
                let event = self.event(
                    name,
                    None,
                    AuditAction::PlanEdited,
                    json!({
                        "checksum_before": record.checksum,
                        "checksum_after": plan.checksum,
                        "changed_phases": changed,
                    }),
                );
                self.store
                    .replace_pending_phases(
                        name,
                        &plan.checksum,
                        &serde_json::to_value(&plan.spec).expect("a plan always serialises"),
                        first_pending,
                        &fresh_phases(plan, first_pending as usize - 1),
                        &event,
                    )
                    .await?;
                self.reporter.report(Event::Info {
                    message: format!(
                        "{} changed since it was last used; phases that have not run were updated{}",
                        plan.path.display(),
                        if changed.is_empty() { String::new() } else { format!(" ({})", changed.join(", ")) }
                    ),
                });
                self.store.plan_state(name).await
            }
        }
    }

    /// The recorded state and how the file differs from it, read without
    /// writing anything (`sync` applies the difference; a dry run only
    /// says it). Refuses edits of phases that ran, and of the migration
    /// files they applied. None when the plan has not started.
    pub(super) async fn recorded(
        &self,
        plan: &LoadedPlan,
    ) -> Result<Option<(PlanRecord, Vec<PhaseRecord>, Drift)>> {
        let name = plan.name();
        let Some((record, phases)) = self.store.plan_state(name).await? else {
            return Ok(None);
        };
        let applied = self.store.applied_migrations().await?;
        let changed = plan_sync::changed_migrations(plan, &phases, self.migrations, &applied);
        if !changed.is_empty() {
            return Err(Error::refused(
                format!(
                    "refusing to act on plan {name}: migrations of phases that ran were edited:\n  - {}\n  what a phase applied is history; its file must stay as it was",
                    changed.join("\n  - ")
                ),
                Some("restore those files (git diff shows the edit)".to_string()),
            ));
        }
        let drift = plan_sync::compare(plan, &record, &phases)?;
        Ok(Some((record, phases, drift)))
    }

    pub(super) fn event(
        &self,
        plan: &str,
        phase: Option<&str>,
        action: AuditAction,
        detail: serde_json::Value,
    ) -> Bookkeeping {
        self.event_by(&self.options.actor, plan, phase, action, detail)
    }

    /// An event done by a named person (a confirmation's `--by`) rather
    /// than this session's operator.
    pub(super) fn event_by(
        &self,
        actor: &str,
        plan: &str,
        phase: Option<&str>,
        action: AuditAction,
        detail: serde_json::Value,
    ) -> Bookkeeping {
        Bookkeeping::Event {
            plan: Some(plan.to_string()),
            phase: phase.map(str::to_string),
            actor: actor.to_string(),
            action,
            detail,
        }
    }

    /// Commit a phase's new row together with the event that explains it.
    pub(super) async fn record_phase(
        &self,
        plan: &str,
        record: PhaseRecord,
        action: AuditAction,
        detail: serde_json::Value,
    ) -> Result<()> {
        let event = self.event(plan, Some(&record.id), action, detail);
        self.store
            .commit_bookkeeping(&[Bookkeeping::Phase(Box::new(record)), event])
            .await
    }

    /// Evaluate and record `checks` of a phase, and report the outcomes.
    pub(super) async fn evaluate(
        &self,
        plan: &str,
        spec: &PhaseSpec,
        list: &[CheckSpec],
        times: &CheckTimes,
        purpose: &str,
    ) -> Result<Vec<CheckOutcome>> {
        let outcomes =
            checks::evaluate(self.store, plan, &spec.id, list, times, &self.options.actor).await?;
        if !outcomes.is_empty() {
            self.reporter.report(Event::ChecksEvaluated {
                plan: plan.to_string(),
                phase: spec.id.clone(),
                purpose: purpose.to_string(),
                outcomes: outcomes.clone(),
            });
        }
        Ok(outcomes)
    }

    pub(super) fn times(
        &self,
        record: &PlanRecord,
        phases: &[PhaseRecord],
        index: usize,
    ) -> CheckTimes {
        let gate_opened_at = phases[..=index]
            .iter()
            .rev()
            .find(|p| kinds::rules(p.kind).is_gate())
            .and_then(|p| p.gate_opened_at);
        CheckTimes {
            gate_opened_at,
            phase_started_at: phases[index].started_at,
            plan_started_at: Some(record.started_at),
        }
    }
}

/// An event that moved a phase, in words: `rolled back add-loc by alice at
/// 2026-11-26 10:49:19 UTC`.
pub(super) fn describe_move(event: &EventRecord) -> String {
    let phase = event
        .phase
        .as_deref()
        .map(|p| format!(" {p}"))
        .unwrap_or_default();
    format!(
        "{}{phase} by {} at {}",
        event.action.words(),
        event.actor,
        timefmt::utc(&event.at)
    )
}

/// Pending rows for the file's phases from 0-based `from` on.
pub(super) fn fresh_phases(plan: &LoadedPlan, from: usize) -> Vec<PhaseRecord> {
    plan.spec
        .phases
        .iter()
        .enumerate()
        .skip(from)
        .map(|(i, p)| PhaseRecord::pending(plan.name(), i as i32 + 1, &p.id, p.kind))
        .collect()
}
