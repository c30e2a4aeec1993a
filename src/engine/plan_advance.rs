//! `orch advance PLAN`: run exactly the next phase, if the one before it is
//! confirmed: open a gate, apply a migration, evaluate checks, or run a
//! backfill, recording the phase's new state with the work.

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::backfill::{self, BackfillEnd, BackfillJob};
use crate::engine::checks::{self, BoundCheck};
use crate::engine::migrator::{MigrationOwner, record as migration_record};
use crate::engine::section_runner::{SectionJob, SectionRunner};
use crate::error::{Error, Result};
use crate::events::{Direction, Event};
use crate::plan::LoadedPlan;
use crate::plan::format::{PhaseKind, PhaseSpec};
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::store::bookkeeping::Bookkeeping;
use crate::store::plans::{PhaseRecord, PlanRecord};
use crate::timefmt;

use crate::engine::plan_runner::{PlanEngine, confirm_command};

impl PlanEngine<'_> {
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
        let mut recheck = Vec::new();
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
            // Evaluated once more inside a migration's own transaction.
            recheck = spec
                .guard
                .iter()
                .filter_map(|check| BoundCheck::bind(check, &times).ok())
                .collect();
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
            PhaseKind::Migration => {
                self.run_migration(plan, index, started, now, &recheck)
                    .await
            }
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
    pub(super) async fn fail(
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
        recheck: &[BoundCheck],
    ) -> Result<()> {
        let spec = &plan.spec.phases[index];
        let file = self.migration_of(spec)?;
        let _history = self.migrations_lock().await?;
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
            recheck,
        };
        let runner = SectionRunner::new(self.store, &self.options.policy, self.reporter).await?;
        let result = runner
            .run(&job, |stats| {
                let mut done = running.clone();
                done.state = transition(PhaseKind::Migration, running.state, PhaseCommand::Succeed)
                    .expect("a running migration may succeed");
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

    pub(super) fn migration_of(
        &self,
        spec: &PhaseSpec,
    ) -> Result<&crate::migration::MigrationFile> {
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
        done.state = transition(PhaseKind::Check, done.state, PhaseCommand::Succeed)
            .expect("a running check may succeed");
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
            connection: self.store.settings(),
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
}
