//! `orch rollback PLAN [--force]` undoes the latest phase that ran, where its
//! kind allows; `orch pause PLAN` asks a running backfill to stop.

use serde_json::json;

use crate::engine::phases::{self, Undo};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::plan::AuditAction;
use crate::plan::format::PhaseSpec;
use crate::plan::kinds;
use crate::plan::records::PhaseRecord;
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::store::backfill::rerun_key;
use crate::store::bookkeeping::Bookkeeping;

use crate::engine::plan_runner::PlanEngine;

impl PlanEngine<'_> {
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
        let next = self.rollback_allowed(name, index, current, spec, force)?;
        let (rolled, mut note) = self.rolled_back_row(current, next).await?;
        let event = self.event(
            name,
            Some(&spec.id),
            AuditAction::RolledBack,
            json!({
                "from": current.state.name(),
                "to": next.name(),
                "forced": force && !spec.reversible,
            }),
        );
        let undo = Undo {
            plan,
            index,
            work_done: matches!(current.state, PhaseState::Done | PhaseState::Confirmed),
            records: vec![
                Bookkeeping::Phase(Box::new(rolled)),
                event,
                Bookkeeping::PlanCompleted {
                    plan: name.to_string(),
                    completed: false,
                },
            ],
        };
        let undone = phases::work(spec.kind).rollback(self, undo).await?;
        if !undone.is_empty() {
            note = undone;
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

    /// The state a rollback moves the phase to, or why it may not: an
    /// illegal move, or an irreversible phase without `--force`.
    fn rollback_allowed(
        &self,
        name: &str,
        index: usize,
        current: &PhaseRecord,
        spec: &PhaseSpec,
        force: bool,
    ) -> Result<PhaseState> {
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
        Ok(next)
    }

    /// The phase's row after the rollback, and a note: a confirmed gate is
    /// reopened (the operator confirms it again); anything else is pending.
    async fn rolled_back_row(
        &self,
        current: &PhaseRecord,
        next: PhaseState,
    ) -> Result<(PhaseRecord, String)> {
        if next != PhaseState::Open {
            let pending =
                PhaseRecord::pending(&current.plan, current.position, &current.id, current.kind);
            return Ok((pending, String::new()));
        }
        let mut reopened = current.clone();
        reopened.state = next;
        reopened.confirmed_by = None;
        reopened.confirmed_at = None;
        reopened.note = None;
        reopened.gate_opened_at = Some(self.store.server_time().await?);
        let note = "gate reopened; confirm it again once the deploy is right".to_string();
        Ok((reopened, note))
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
            .find(|p| p.state == PhaseState::Running && kinds::rules(p.kind).pauses());
        let (phase, resume) = match running {
            Some(phase) => {
                if !self.store.request_pause(name, phase.position).await? {
                    return Err(Error::refused(
                        format!("phase {} is no longer running", phase.id),
                        None,
                    ));
                }
                (phase, format!("orch advance {name}"))
            }
            None => {
                // A re-run (`orch backfill`) leaves its phase's state alone;
                // its unfinished cursor rows say it is going on.
                let Some(phase) = self.rerun_in_progress(&phases).await? else {
                    return Err(Error::refused(
                        format!(
                            "no backfill of plan {} is running; nothing to pause",
                            plan.name()
                        ),
                        None,
                    ));
                };
                self.store
                    .set_pause_request(name, phase.position, true)
                    .await?;
                (phase, format!("orch backfill {name} {}", phase.id))
            }
        };
        self.store
            .commit_bookkeeping(&[self.event(
                name,
                Some(&phase.id),
                AuditAction::PauseRequested,
                json!({}),
            )])
            .await?;
        self.reporter.report(Event::Info {
            message: format!(
                "asked backfill {} of plan {name} to pause after its current batch; `{resume}` resumes it",
                phase.id
            ),
        });
        Ok(())
    }

    /// The finished backfill phase whose re-run has cursor rows not done.
    async fn rerun_in_progress<'p>(
        &self,
        phases: &'p [PhaseRecord],
    ) -> Result<Option<&'p PhaseRecord>> {
        for phase in phases.iter().filter(|p| {
            kinds::rules(p.kind).pauses()
                && matches!(p.state, PhaseState::Done | PhaseState::Confirmed)
        }) {
            let rows = self
                .store
                .backfill_workers(&phase.plan, &rerun_key(&phase.id))
                .await?;
            if rows.iter().any(|r| !r.done) {
                return Ok(Some(phase));
            }
        }
        Ok(None)
    }
}
