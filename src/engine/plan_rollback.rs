//! `orch rollback PLAN [PHASE] [--force]` undoes one phase, where its kind
//! allows: the one named, or the latest that ran; `orch pause PLAN` asks a
//! running backfill to stop.
//!
//! A rollback acts once. Calls are serialised by the plan's lock and each
//! re-reads the state under it; one that finds the plan moved while it
//! waited does nothing (`PlanEngine::once`). Named, a phase already pending
//! is "already rolled back" (exit 0). Inferred, the call goes back one
//! phase at most: when the plan's last move was a rollback, it does
//! nothing and names the command that would go further, so re-running a
//! rollback whose outcome looked uncertain never undoes a second phase.

use serde_json::json;

use crate::engine::phases::{self, Undo};
use crate::engine::plan_runner::describe_move;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::plan::AuditAction;
use crate::plan::audit::Verb;
use crate::plan::format::PhaseSpec;
use crate::plan::kinds;
use crate::plan::records::PhaseRecord;
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::store::backfill::rerun_key;
use crate::store::bookkeeping::Bookkeeping;
use crate::timefmt;

use crate::engine::plan_runner::PlanEngine;

/// What `orch rollback` was asked.
#[derive(Debug, Clone, Copy)]
pub struct RollbackRequest<'a> {
    /// The phase to undo (id or number); None: the latest that ran.
    pub phase: Option<&'a str>,
    /// Also undo an irreversible phase.
    pub force: bool,
    /// Who rolls back (recorded as the event's actor).
    pub by: &'a str,
    pub note: Option<&'a str>,
}

impl PlanEngine<'_> {
    /// `orch rollback PLAN [PHASE] [--force] [--by NAME] [--note TEXT]`.
    pub async fn rollback(&self, name: &str, request: RollbackRequest<'_>) -> Result<()> {
        // Bad input is said before waiting for anyone's lock.
        let plan = self.plan(name)?;
        let named = match request.phase {
            Some(reference) => Some(
                plan.spec.phases[self.phase_index(plan, reference)?]
                    .id
                    .as_str(),
            ),
            None => None,
        };
        self.once(
            name,
            Verb::Rollback,
            named,
            self.rollback_locked(name, request),
        )
        .await
    }

    async fn rollback_locked(&self, name: &str, request: RollbackRequest<'_>) -> Result<()> {
        let plan = self.plan(name)?;
        let Some((_, phases)) = self.sync(plan, false).await? else {
            self.reporter.report(Event::Info {
                message: format!("plan {name} has not started; nothing to roll back"),
            });
            return Ok(());
        };
        let Some(index) = self.rollback_target(name, &phases, request).await? else {
            return Ok(());
        };
        let current = &phases[index];
        let spec = &plan.spec.phases[index];
        let next = self.rollback_allowed(name, index, current, spec, request)?;
        let (rolled, mut note) = self.rolled_back_row(current, next).await?;
        let event = self.event_by(
            request.by,
            name,
            Some(&spec.id),
            AuditAction::RolledBack,
            json!({
                "from": current.state.name(),
                "to": next.name(),
                "forced": request.force && !spec.reversible,
                "inferred": request.phase.is_none(),
                "by": request.by,
                "session": self.options.actor,
                "note": request.note,
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
            state: next,
            note,
        });
        Ok(())
    }

    /// The 0-based phase to undo, or None when there is nothing to do (said).
    async fn rollback_target(
        &self,
        name: &str,
        phases: &[PhaseRecord],
        request: RollbackRequest<'_>,
    ) -> Result<Option<usize>> {
        let latest = phases.iter().rposition(|p| p.state.has_run());
        let Some(reference) = request.phase else {
            let Some(index) = latest else {
                self.reporter.report(Event::Info {
                    message: format!("no phase of plan {name} has run; nothing to roll back"),
                });
                return Ok(None);
            };
            if let Some(last) = self
                .store
                .latest_move(name)
                .await?
                .filter(|e| e.action == AuditAction::RolledBack)
            {
                let (id, state) = (&phases[index].id, phases[index].state.name());
                // A reopened gate is the same phase, one step further back.
                let further = if last.phase.as_deref() == Some(id) {
                    format!("roll phase {} ({id}, now {state}) back further", index + 1)
                } else {
                    format!("undo phase {} ({id}) as well", index + 1)
                };
                self.reporter.report(Event::Info {
                    message: format!(
                        "the last change to plan {name} was a rollback ({}); without a phase, `orch rollback` undoes one phase and goes no further, so nothing was done. To {further}, name it: orch rollback {name} {id}",
                        describe_move(&last),
                    ),
                });
                return Ok(None);
            }
            return Ok(Some(index));
        };
        let plan = self.plan(name)?;
        let index = self.phase_index(plan, reference)?;
        if let Some(later) = latest.filter(|&l| l > index) {
            let p = &phases[later];
            return Err(Error::refused(
                format!(
                    "phase {} ({}) of plan {name} cannot be rolled back while phase {} ({}) after it is {}",
                    index + 1,
                    phases[index].id,
                    later + 1,
                    p.id,
                    p.state.name()
                ),
                Some(format!(
                    "roll back the latest first: orch rollback {name} {}",
                    p.id
                )),
            ));
        }
        let current = &phases[index];
        if current.state.has_run() {
            return Ok(Some(index));
        }
        let events = self.store.events(name).await?;
        let message = match events.iter().rfind(|e| {
            e.action == AuditAction::RolledBack && e.phase.as_deref() == Some(&current.id)
        }) {
            Some(e) => format!(
                "phase {} ({}) of plan {name} is already rolled back (by {} at {}); nothing to do",
                index + 1,
                current.id,
                e.actor,
                timefmt::utc(&e.at)
            ),
            None => format!(
                "phase {} ({}) of plan {name} has not run; nothing to roll back",
                index + 1,
                current.id
            ),
        };
        self.reporter.report(Event::Info { message });
        Ok(None)
    }

    /// The state a rollback moves the phase to, or why it may not: an
    /// illegal move, or an irreversible phase without `--force`.
    fn rollback_allowed(
        &self,
        name: &str,
        index: usize,
        current: &PhaseRecord,
        spec: &PhaseSpec,
        request: RollbackRequest<'_>,
    ) -> Result<PhaseState> {
        let command = match request.phase {
            Some(reference) => format!("orch rollback {name} {reference}"),
            None => format!("orch rollback {name}"),
        };
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
        if !spec.reversible && work_done && !request.force {
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
                Some(format!("only if you accept that loss: {command} --force")),
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
