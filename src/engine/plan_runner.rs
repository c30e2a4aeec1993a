//! `orch advance / confirm / rollback / pause`: moving a plan through its
//! phases, one confirmed step at a time. Every state change goes through
//! `plan::state::transition` and is recorded with an event, in the same
//! transaction as the work where the work is transactional.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::backfill::{self, BackfillEnd, BackfillJob, BackfillOverrides};
use crate::engine::checks::{self, CheckOutcome, CheckTimes};
use crate::engine::lock_retry::LockRetryPolicy;
use crate::engine::migrator::{MigrationOwner, record as migration_record};
use crate::engine::plan_sync::{self, Sync};
use crate::engine::section_runner::{SectionJob, SectionRunner};
use crate::error::{Error, Result};
use crate::events::{Direction, Event, Reporter};
use crate::migration::MigrationSet;
use crate::plan::format::{CheckSpec, PhaseKind, PhaseSpec};
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::plan::{LoadedPlan, PlanSet};
use crate::stop::StopSignal;
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::locks::{self, LockGuard, LockScope};
use crate::store::plans::{PhaseRecord, PlanRecord};
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
    fn plan(&self, name: &str) -> Result<&LoadedPlan> {
        self.plans.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.plans.plans.iter().map(|p| p.name()).collect();
            Error::Usage(format!(
                "no plan named {name:?} in {} (plans: {})",
                self.plans.dir.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// Run `work` holding the plan's lock, and release the lock before
    /// returning (not just when the connection closes), so a command that
    /// follows at once never finds it still held.
    async fn locked<T>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let lock = self.lock(name).await?;
        let result = work.await;
        lock.release().await;
        result
    }

    async fn lock(&self, name: &str) -> Result<LockGuard> {
        locks::acquire(
            self.store.settings(),
            &format!("{} (lock)", self.store.application_name()),
            LockScope::Plan(name.to_string()),
            self.options.plan_lock_wait,
        )
        .await
    }

    /// Load the recorded state, creating it on first advance, and reconcile
    /// it with the file (refusing edits of phases that ran).
    async fn sync(
        &self,
        plan: &LoadedPlan,
        create: bool,
    ) -> Result<Option<(PlanRecord, Vec<PhaseRecord>)>> {
        let name = plan.name();
        let Some((record, phases)) = self.store.plan_state(name).await? else {
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
        match plan_sync::compare(plan, &record, &phases)? {
            Sync::Unchanged => Ok(Some((record, phases))),
            Sync::AcceptEdit {
                first_pending,
                changed,
            } => {
                let event = self.event(
                    name,
                    None,
                    "plan_edited",
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

    fn event(
        &self,
        plan: &str,
        phase: Option<&str>,
        action: &str,
        detail: serde_json::Value,
    ) -> Bookkeeping {
        Bookkeeping::Event {
            plan: plan.to_string(),
            phase: phase.map(str::to_string),
            actor: self.options.actor.clone(),
            action: action.to_string(),
            detail,
        }
    }

    /// Commit a phase's new row together with the event that explains it.
    async fn record_phase(
        &self,
        plan: &str,
        record: PhaseRecord,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let event = self.event(plan, Some(&record.id), action, detail);
        self.store
            .commit_bookkeeping(&[Bookkeeping::Phase(Box::new(record)), event])
            .await
    }

    /// Evaluate and record `checks` of a phase, and report the outcomes.
    async fn evaluate(
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

    fn times(&self, record: &PlanRecord, phases: &[PhaseRecord], index: usize) -> CheckTimes {
        let gate_opened_at = phases[..=index]
            .iter()
            .rev()
            .find(|p| p.kind == PhaseKind::Deploy.name())
            .and_then(|p| p.gate_opened_at);
        CheckTimes {
            gate_opened_at,
            phase_started_at: phases[index].started_at,
            plan_started_at: Some(record.started_at),
        }
    }

    /// `orch advance PLAN`: run exactly the next phase.
    pub async fn advance(&self, name: &str) -> Result<()> {
        self.locked(name, self.advance_locked(name)).await
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
            let what = if current.state == PhaseState::Open {
                "its gate is open: deploy as instructed, then confirm"
            } else {
                "it ran and waits for the operator's confirmation"
            };
            return Err(Error::refused(
                format!(
                    "refusing to advance plan {name}: phase {} of {total} ({}) is not confirmed; {what}",
                    index + 1,
                    current.id
                ),
                Some(confirm_command(name, &current.id)),
            ));
        }
        let next = transition(spec.kind, current.state, PhaseCommand::Start).map_err(|e| {
            Error::refused(
                format!("phase {} ({}) of plan {name}: {e}", index + 1, current.id),
                None,
            )
        })?;
        if !spec.guard.is_empty() {
            let times = self.times(&record, &phases, index);
            let outcomes = self
                .evaluate(name, spec, &spec.guard, &times, "guard")
                .await?;
            if let Some(failures) = checks::describe_failures(&outcomes) {
                self.store
                    .commit_bookkeeping(&[self.event(
                        name,
                        Some(&spec.id),
                        "guard_failed",
                        json!({ "checks": outcomes }),
                    )])
                    .await?;
                return Err(Error::refused(
                    format!(
                        "refusing to run phase {} ({}) of plan {name}: its guard does not hold\n  {failures}",
                        index + 1,
                        spec.id
                    ),
                    Some(format!(
                        "make the guard hold, then run `orch advance {name}` again"
                    )),
                ));
            }
        }
        let resumed = matches!(current.state, PhaseState::Running | PhaseState::Paused);
        let now = self.store.server_time().await?;
        let mut started = current.clone();
        started.state = next;
        started.ran_by = Some(self.options.actor.clone());
        started.definition_checksum = Some(plan.phase_checksum(index));
        started.error = None;
        started.pause_requested = false;
        if !resumed || started.started_at.is_none() {
            started.started_at = Some(now);
        }
        started.finished_at = None;
        if spec.kind != PhaseKind::Deploy {
            self.reporter.report(Event::PhaseStarted {
                plan: name.to_string(),
                position: index + 1,
                total,
                id: spec.id.clone(),
                kind: spec.kind.name().to_string(),
                title: spec.title.clone(),
                resumed,
            });
        }
        match spec.kind {
            PhaseKind::Deploy => self.open_gate(plan, index, started, now).await,
            PhaseKind::Migration => self.run_migration(plan, index, started, now).await,
            PhaseKind::Check => {
                self.run_checks(plan, &record, &phases, index, started)
                    .await
            }
            PhaseKind::Backfill => self.run_backfill(plan, index, started, resumed).await,
        }
    }

    async fn open_gate(
        &self,
        plan: &LoadedPlan,
        index: usize,
        mut open: PhaseRecord,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let spec = &plan.spec.phases[index];
        open.gate_opened_at = Some(now);
        self.record_phase(
            plan.name(),
            open,
            "gate_opened",
            json!({ "opened_at": now }),
        )
        .await?;
        self.reporter.report(Event::GateOpened {
            plan: plan.name().to_string(),
            position: index + 1,
            total: plan.spec.phases.len(),
            id: spec.id.clone(),
            title: spec.title.clone(),
            instructions: spec.instructions.clone().unwrap_or_default(),
            confirm_command: confirm_command(plan.name(), &spec.id),
        });
        Ok(())
    }

    /// Record a failure of phase `index`, then hand the error back.
    async fn fail(&self, plan: &LoadedPlan, mut record: PhaseRecord, error: Error) -> Error {
        let phase = record.id.clone();
        record.state = PhaseState::Failed;
        record.error = Some(error.to_string());
        record.finished_at = self.store.server_time().await.ok();
        let detail = json!({ "error": error.to_string() });
        if let Err(e) = self
            .record_phase(plan.name(), record, "phase_failed", detail)
            .await
        {
            tracing::error!("cannot record the failure of phase {phase}: {e}");
        }
        error
    }

    async fn run_migration(
        &self,
        plan: &LoadedPlan,
        index: usize,
        running: PhaseRecord,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let spec = &plan.spec.phases[index];
        let file = self.migration_of(spec)?;
        let _history = locks::acquire(
            self.store.settings(),
            &format!("{} (migrations lock)", self.store.application_name()),
            LockScope::Migrations,
            self.options.migration_lock_wait,
        )
        .await?;
        if let Some(applied) = self
            .store
            .applied_migrations()
            .await?
            .iter()
            .find(|a| a.version == file.version)
        {
            return Err(Error::refused(
                format!(
                    "phase {} ({}) applies {}, but it is already applied (on {} by {}); it was applied outside the plan",
                    index + 1,
                    spec.id,
                    file.id(),
                    timefmt::utc(&applied.applied_at),
                    applied.applied_by
                ),
                Some(format!(
                    "revert it with `orch migrate down` first, or remove phase {} from the plan",
                    spec.id
                )),
            ));
        }
        if !file.up.transactional {
            // Statements run one by one: record that the phase is running first.
            self.store
                .commit_bookkeeping(&[Bookkeeping::Phase(Box::new(running.clone()))])
                .await?;
        }
        let owner = MigrationOwner {
            plan: plan.name().to_string(),
            position: index + 1,
            phase: spec.id.clone(),
        };
        let id = file.id();
        let job = SectionJob {
            id: &id,
            path: &file.path,
            section: &file.up,
            direction: Direction::Up,
        };
        let runner = SectionRunner::new(self.store, &self.options.policy, self.reporter).await?;
        let result = runner
            .run(&job, |stats| {
                let mut done = running.clone();
                done.state = PhaseState::Done;
                done.finished_at =
                    Some(now + chrono::Duration::from_std(stats.duration).unwrap_or_default());
                done.result = Some(json!({
                    "migration": id,
                    "duration_ms": stats.duration.as_millis() as u64,
                    "execution_ms": stats.execution.as_millis() as u64,
                    "attempts": stats.attempts,
                }));
                vec![
                    migration_record(
                        file,
                        Direction::Up,
                        &self.options.actor,
                        stats,
                        Some(&owner),
                    ),
                    Bookkeeping::Phase(Box::new(done)),
                    self.event(
                        plan.name(),
                        Some(&spec.id),
                        "migration_applied",
                        json!({
                            "migration": id,
                            "duration_ms": stats.duration.as_millis() as u64,
                            "attempts": stats.attempts,
                        }),
                    ),
                ]
            })
            .await;
        match result {
            Ok(stats) => {
                self.reporter.report(Event::PhaseDone {
                    plan: plan.name().to_string(),
                    position: index + 1,
                    id: spec.id.clone(),
                    summary: format!(
                        "applied {} in {}{}",
                        file.id(),
                        timefmt::duration(stats.duration),
                        if stats.attempts > 1 {
                            format!(" ({} attempts)", stats.attempts)
                        } else {
                            String::new()
                        }
                    ),
                    confirm_command: confirm_command(plan.name(), &spec.id),
                });
                Ok(())
            }
            Err(e) => Err(self.fail(plan, running, e).await),
        }
    }

    fn migration_of(&self, spec: &PhaseSpec) -> Result<&crate::migration::MigrationFile> {
        let name = spec.migration.as_deref().unwrap_or_default();
        self.migrations.by_name(name).ok_or_else(|| {
            Error::refused(
                format!("phase {}: migration {name:?} is missing", spec.id),
                None,
            )
        })
    }

    async fn run_checks(
        &self,
        plan: &LoadedPlan,
        record: &PlanRecord,
        phases: &[PhaseRecord],
        index: usize,
        running: PhaseRecord,
    ) -> Result<()> {
        let spec = &plan.spec.phases[index];
        let mut times = self.times(record, phases, index);
        times.phase_started_at = running.started_at;
        let outcomes = self
            .evaluate(plan.name(), spec, &spec.checks, &times, "check phase")
            .await?;
        if let Some(failures) = checks::describe_failures(&outcomes) {
            let error = Error::failed(format!(
                "phase {} ({}) of plan {} failed:\n  {failures}",
                index + 1,
                spec.id,
                plan.name()
            ));
            return Err(self.fail(plan, running, error).await);
        }
        let mut done = running;
        done.state = PhaseState::Done;
        done.finished_at = Some(self.store.server_time().await?);
        done.result = Some(json!({ "checks": outcomes }));
        self.record_phase(
            plan.name(),
            done,
            "checks_passed",
            json!({ "checks": outcomes }),
        )
        .await?;
        self.reporter.report(Event::PhaseDone {
            plan: plan.name().to_string(),
            position: index + 1,
            id: spec.id.clone(),
            summary: format!("all {} checks passed", outcomes.len()),
            confirm_command: confirm_command(plan.name(), &spec.id),
        });
        Ok(())
    }

    async fn run_backfill(
        &self,
        plan: &LoadedPlan,
        index: usize,
        running: PhaseRecord,
        resumed: bool,
    ) -> Result<()> {
        let spec = &plan.spec.phases[index];
        let backfill_spec = spec
            .backfill
            .as_ref()
            .expect("validated: backfill phases have a backfill");
        let action = if resumed {
            "backfill_resumed"
        } else {
            "backfill_started"
        };
        self.record_phase(plan.name(), running.clone(), action, json!({}))
            .await?;
        let job = BackfillJob {
            settings: self.store.settings(),
            plan: plan.name(),
            phase: &spec.id,
            position: index as i32 + 1,
            spec: backfill_spec,
            overrides: &self.options.backfill,
            lock_timeout: self.options.policy.lock_timeout,
            reporter: self.reporter,
            stop: self.stop,
        };
        let end = match backfill::run(job).await {
            Ok(end) => end,
            Err(e) => return Err(self.fail(plan, running, e).await),
        };
        let now = self.store.server_time().await?;
        let mut record = running;
        let (action, stats) = match &end {
            BackfillEnd::Finished(stats) => {
                record.state = transition(
                    PhaseKind::Backfill,
                    PhaseState::Running,
                    PhaseCommand::Succeed,
                )
                .expect("running backfills may succeed");
                record.finished_at = Some(now);
                ("backfill_finished", stats)
            }
            BackfillEnd::Paused(stats) | BackfillEnd::Interrupted(stats) => {
                record.state = transition(
                    PhaseKind::Backfill,
                    PhaseState::Running,
                    PhaseCommand::Pause,
                )
                .expect("running backfills may pause");
                ("backfill_paused", stats)
            }
        };
        record.pause_requested = false;
        let stats_json = serde_json::to_value(stats).unwrap_or_default();
        record.result = Some(stats_json.clone());
        self.record_phase(plan.name(), record, action, stats_json)
            .await?;
        let resume = format!(
            "resume with `orch advance {}` (it continues from the saved cursor)",
            plan.name()
        );
        match end {
            BackfillEnd::Finished(stats) => {
                self.reporter.report(Event::PhaseDone {
                    plan: plan.name().to_string(),
                    position: index + 1,
                    id: spec.id.clone(),
                    summary: format!(
                        "backfill finished: {} rows updated in {} batches, {}",
                        stats.rows_updated,
                        stats.batches,
                        timefmt::millis(stats.elapsed_ms as i64)
                    ),
                    confirm_command: confirm_command(plan.name(), &spec.id),
                });
                Ok(())
            }
            BackfillEnd::Paused(_) => {
                self.reporter.report(Event::Info {
                    message: format!("backfill paused on request; {resume}"),
                });
                Ok(())
            }
            BackfillEnd::Interrupted(_) => Err(Error::Interrupted { resume }),
        }
    }

    /// `orch confirm PLAN [PHASE] --by NAME [--note TEXT]`.
    pub async fn confirm(
        &self,
        name: &str,
        phase: Option<&str>,
        by: &str,
        note: Option<&str>,
    ) -> Result<()> {
        self.locked(name, self.confirm_locked(name, phase, by, note))
            .await
    }

    async fn confirm_locked(
        &self,
        name: &str,
        phase: Option<&str>,
        by: &str,
        note: Option<&str>,
    ) -> Result<()> {
        let plan = self.plan(name)?;

        let Some((record, phases)) = self.sync(plan, false).await? else {
            return Err(Error::refused(
                format!("plan {name} has not started; nothing to confirm"),
                Some(format!("orch advance {name}")),
            ));
        };
        let index = match phase {
            Some(reference) => plan.find_phase(reference).ok_or_else(|| {
                let ids: Vec<&str> = plan.spec.phases.iter().map(|p| p.id.as_str()).collect();
                Error::Usage(format!(
                    "plan {name} has no phase {reference:?} (phases: {})",
                    ids.join(", ")
                ))
            })?,
            None => match phases.iter().position(|p| p.state.awaits_confirmation()) {
                Some(i) => i,
                None => return Err(nothing_to_confirm(name, &phases)),
            },
        };
        let current = &phases[index];
        let spec = &plan.spec.phases[index];
        if !current.state.awaits_confirmation() {
            return Err(Error::refused(
                format!(
                    "phase {} ({}) of plan {name} is {}, not waiting for confirmation",
                    index + 1,
                    current.id,
                    current.state.name()
                ),
                next_step(name, current),
            ));
        }
        let next = transition(spec.kind, current.state, PhaseCommand::Confirm)
            .map_err(|e| Error::refused(e.to_string(), None))?;
        let times = self.times(&record, &phases, index);
        let outcomes = self
            .evaluate(name, spec, &spec.checks, &times, "confirm")
            .await?;
        if let Some(failures) = checks::describe_failures(&outcomes) {
            self.store
                .commit_bookkeeping(&[self.event(
                    name,
                    Some(&spec.id),
                    "confirm_refused",
                    json!({
                        "by": by,
                        "checks": outcomes,
                    }),
                )])
                .await?;
            return Err(Error::refused(
                format!(
                    "not confirming phase {} ({}) of plan {name}: a check failed\n  {failures}",
                    index + 1,
                    spec.id
                ),
                Some(format!(
                    "make the check pass, then run `{}` again",
                    confirm_command(name, &spec.id)
                )),
            ));
        }
        let now = self.store.server_time().await?;
        let mut confirmed = current.clone();
        confirmed.state = next;
        confirmed.confirmed_by = Some(by.to_string());
        confirmed.confirmed_at = Some(now);
        confirmed.note = note.map(str::to_string);
        let last = index + 1 == phases.len();
        let mut records = vec![
            Bookkeeping::Phase(Box::new(confirmed)),
            self.event(
                name,
                Some(&spec.id),
                "confirmed",
                json!({ "by": by, "note": note, "checks": outcomes }),
            ),
        ];
        if last {
            records.push(Bookkeeping::PlanCompleted {
                plan: name.to_string(),
                completed: true,
            });
        }
        self.store.commit_bookkeeping(&records).await?;
        let next = if last {
            format!("plan {name} is complete")
        } else {
            let following = &plan.spec.phases[index + 1];
            format!(
                "next: `orch advance {name}` runs phase {} of {} ({}: {})",
                index + 2,
                phases.len(),
                following.id,
                following.title
            )
        };
        self.reporter.report(Event::PhaseConfirmed {
            plan: name.to_string(),
            position: index + 1,
            id: spec.id.clone(),
            by: by.to_string(),
            next,
        });
        Ok(())
    }

    /// `orch rollback PLAN [--force]`: undo the latest phase that ran.
    pub async fn rollback(&self, name: &str, force: bool) -> Result<()> {
        self.locked(name, self.rollback_locked(name, force)).await
    }

    async fn rollback_locked(&self, name: &str, force: bool) -> Result<()> {
        let plan = self.plan(name)?;
        let Some((_, phases)) = self.sync(plan, false).await? else {
            self.reporter.report(Event::Info {
                message: format!("plan {name} has not started; nothing to roll back"),
            });
            return Ok(());
        };
        let Some(index) = phases.iter().rposition(|p| p.state.has_run()) else {
            self.reporter.report(Event::Info {
                message: format!("no phase of plan {name} has run; nothing to roll back"),
            });
            return Ok(());
        };
        let current = &phases[index];
        let spec = &plan.spec.phases[index];
        let next = transition(spec.kind, current.state, PhaseCommand::Rollback).map_err(|e| {
            let hint = match current.state {
                PhaseState::Running => format!(
                    "it is running (or was interrupted): pause it with `orch pause {name}` or resume it with `orch advance {name}` first"
                ),
                _ => String::new(),
            };
            Error::refused(format!("phase {} ({}) of plan {name}: {e}. {hint}", index + 1, current.id), None)
        })?;
        let work_done = matches!(current.state, PhaseState::Done | PhaseState::Confirmed);
        if !spec.reversible && work_done && !force {
            let loses = spec
                .rollback_loses
                .clone()
                .unwrap_or_else(|| "what it removed cannot be restored by orch".to_string());
            return Err(Error::refused(
                format!(
                    "phase {} ({}) of plan {name} is irreversible: {loses}",
                    index + 1,
                    spec.id
                ),
                Some(format!(
                    "only if you accept that loss: orch rollback {name} --force"
                )),
            ));
        }
        let mut rolled = PhaseRecord::pending(name, current.position, &current.id, &current.kind);
        let mut note = String::new();
        if next == PhaseState::Open {
            // A confirmed gate is reopened: the operator confirms it again.
            rolled = current.clone();
            rolled.state = PhaseState::Open;
            rolled.confirmed_by = None;
            rolled.confirmed_at = None;
            rolled.note = None;
            rolled.gate_opened_at = Some(self.store.server_time().await?);
            note = "gate reopened; confirm it again once the deploy is right".to_string();
        }
        let event = self.event(
            name,
            Some(&spec.id),
            "rolled_back",
            json!({
                "from": current.state.name(),
                "to": next.name(),
                "forced": force && !spec.reversible,
            }),
        );
        let not_complete = Bookkeeping::PlanCompleted {
            plan: name.to_string(),
            completed: false,
        };
        match spec.kind {
            PhaseKind::Migration if work_done => {
                let file = self.migration_of(spec)?;
                let down = file.down.as_ref().filter(|d| !d.is_empty()).ok_or_else(|| {
                    Error::refused(
                        format!(
                            "phase {} ({}): {} has no down section, so it cannot be rolled back",
                            index + 1,
                            spec.id,
                            file.path.display()
                        ),
                        None,
                    )
                })?;
                let _history = locks::acquire(
                    self.store.settings(),
                    &format!("{} (migrations lock)", self.store.application_name()),
                    LockScope::Migrations,
                    self.options.migration_lock_wait,
                )
                .await?;
                let id = file.id();
                let job = SectionJob {
                    id: &id,
                    path: &file.path,
                    section: down,
                    direction: Direction::Down,
                };
                let runner =
                    SectionRunner::new(self.store, &self.options.policy, self.reporter).await?;
                runner
                    .run(&job, |_| {
                        vec![
                            Bookkeeping::MigrationReverted {
                                version: file.version,
                            },
                            Bookkeeping::Phase(Box::new(rolled.clone())),
                            event.clone(),
                            not_complete.clone(),
                        ]
                    })
                    .await?;
                note = format!("reverted {id}");
            }
            PhaseKind::Backfill => {
                self.store
                    .commit_bookkeeping(&[
                        Bookkeeping::Phase(Box::new(rolled)),
                        Bookkeeping::ClearBackfill {
                            plan: name.to_string(),
                            phase: spec.id.clone(),
                        },
                        event,
                        not_complete,
                    ])
                    .await?;
                note = "cursor cleared; rows already updated keep their new values".to_string();
            }
            _ => {
                self.store
                    .commit_bookkeeping(&[
                        Bookkeeping::Phase(Box::new(rolled)),
                        event,
                        not_complete,
                    ])
                    .await?;
            }
        }
        self.reporter.report(Event::RolledBack {
            plan: name.to_string(),
            position: index + 1,
            id: spec.id.clone(),
            state: next.name().to_string(),
            note,
        });
        Ok(())
    }

    /// `orch pause PLAN`: ask the running backfill to stop after its batch.
    pub async fn pause(&self, name: &str) -> Result<()> {
        let plan = self.plan(name)?;
        let phases = match self.store.plan_state(name).await? {
            Some((_, phases)) => phases,
            None => Vec::new(),
        };
        let running = phases
            .iter()
            .find(|p| p.state == PhaseState::Running && p.kind == PhaseKind::Backfill.name());
        let Some(phase) = running else {
            return Err(Error::refused(
                format!(
                    "no backfill of plan {} is running; nothing to pause",
                    plan.name()
                ),
                None,
            ));
        };
        if !self.store.request_pause(name, phase.position).await? {
            return Err(Error::refused(
                format!("phase {} is no longer running", phase.id),
                None,
            ));
        }
        self.store
            .commit_bookkeeping(&[self.event(name, Some(&phase.id), "pause_requested", json!({}))])
            .await?;
        self.reporter.report(Event::Info {
            message: format!(
                "asked backfill {} of plan {name} to pause after its current batch; `orch advance {name}` resumes it",
                phase.id
            ),
        });
        Ok(())
    }
}

/// Pending rows for the file's phases from 0-based `from` on.
fn fresh_phases(plan: &LoadedPlan, from: usize) -> Vec<PhaseRecord> {
    plan.spec
        .phases
        .iter()
        .enumerate()
        .skip(from)
        .map(|(i, p)| PhaseRecord::pending(plan.name(), i as i32 + 1, &p.id, p.kind.name()))
        .collect()
}

fn next_step(plan: &str, phase: &PhaseRecord) -> Option<String> {
    match phase.state {
        PhaseState::Pending | PhaseState::Failed | PhaseState::Paused | PhaseState::Running => {
            Some(format!("orch advance {plan}"))
        }
        _ => None,
    }
}

fn nothing_to_confirm(plan: &str, phases: &[PhaseRecord]) -> Error {
    match phases.iter().find(|p| p.state != PhaseState::Confirmed) {
        None => Error::refused(format!("plan {plan} is complete; nothing to confirm"), None),
        Some(p) => Error::refused(
            format!(
                "no phase of plan {plan} is waiting for confirmation: phase {} ({}) is {}",
                p.position,
                p.id,
                p.state.name()
            ),
            next_step(plan, p),
        ),
    }
}
