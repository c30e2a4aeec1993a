//! `orch rollback PLAN [--force]` undoes the latest phase that ran, where its
//! kind allows; `orch pause PLAN` asks a running backfill to stop.

use serde_json::json;

use crate::engine::section_runner::{SectionJob, SectionRunner};
use crate::error::{Error, Result};
use crate::events::{Direction, Event};
use crate::plan::format::PhaseKind;
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::store::bookkeeping::Bookkeeping;
use crate::store::plans::PhaseRecord;

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
            rolled.state = next;
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
                let _history = self.migrations_lock().await?;
                let id = file.id();
                let job = SectionJob {
                    id: &id,
                    path: &down.path,
                    section: down,
                    direction: Direction::Down,
                    recheck: &[],
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
