//! `orch confirm PLAN [PHASE] --by NAME`: run the phase's checks, then
//! record who confirmed it, when, and their note.

use serde_json::json;

use crate::engine::checks;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::plan::AuditAction;
use crate::plan::audit::Verb;
use crate::plan::records::PhaseRecord;
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::store::bookkeeping::Bookkeeping;
use crate::timefmt;

use crate::engine::plan_runner::{PlanEngine, confirm_command};

impl PlanEngine<'_> {
    /// `orch confirm PLAN [PHASE] --by NAME [--note TEXT]`.
    pub async fn confirm(
        &self,
        name: &str,
        phase: Option<&str>,
        by: &str,
        note: Option<&str>,
    ) -> Result<()> {
        // A phase named by number or id: its id, to tell whether a confirm
        // that ran meanwhile confirmed the same phase.
        let named = match (phase, self.plan(name)) {
            (Some(reference), Ok(plan)) => plan
                .find_phase(reference)
                .map(|i| plan.spec.phases[i].id.as_str()),
            _ => None,
        };
        self.once(
            name,
            Verb::Confirm,
            named,
            self.confirm_locked(name, phase, by, note, true),
        )
        .await
    }

    /// What `confirm` checks first, recording nothing: the phase waits for
    /// confirmation (or is already confirmed) and its checks hold now, else
    /// the error `confirm` would give. A fleet's confirmation runs this on
    /// every target before recording on any (`engine::fleet`).
    pub async fn check_confirmation(&self, name: &str, phase: Option<&str>) -> Result<()> {
        self.locked(name, self.confirm_locked(name, phase, "", None, false))
            .await
    }

    async fn confirm_locked(
        &self,
        name: &str,
        phase: Option<&str>,
        by: &str,
        note: Option<&str>,
        recording: bool,
    ) -> Result<()> {
        let plan = self.plan(name)?;

        let Some((record, phases)) = self.sync(plan, false).await? else {
            return Err(Error::refused(
                format!("plan {name} has not started; nothing to confirm"),
                Some(format!("orch advance {name}")),
            ));
        };
        let index = match phase {
            Some(reference) => self.phase_index(plan, reference)?,
            None => match phases.iter().position(|p| p.state.awaits_confirmation()) {
                Some(i) => i,
                None => return Err(nothing_to_confirm(name, &phases)),
            },
        };
        let current = &phases[index];
        let spec = &plan.spec.phases[index];
        if current.state == PhaseState::Confirmed && !recording {
            return Ok(());
        }
        if current.state == PhaseState::Confirmed {
            // A repeated confirmation changes nothing and is no mistake.
            let when = match (&current.confirmed_by, current.confirmed_at) {
                (Some(who), Some(at)) => format!(" by {who} at {}", timefmt::utc(&at)),
                _ => String::new(),
            };
            self.reporter.report(Event::Info {
                message: format!(
                    "phase {} ({}) of plan {name} is already confirmed{when}; nothing to do",
                    index + 1,
                    current.id
                ),
            });
            return Ok(());
        }
        if !current.state.awaits_confirmation() {
            return Err(Error::refused(
                format!(
                    "phase {} ({}) of plan {name} is {}, not waiting for confirmation",
                    index + 1,
                    current.id,
                    current.state.name()
                ),
                plan_next_step(name, &phases),
            ));
        }
        let next = transition(spec.kind, current.state, PhaseCommand::Confirm)
            .map_err(|e| Error::refused(e.to_string(), None))?;
        let times = self.times(&record, &phases, index);
        let outcomes = self
            .evaluate(name, spec, &spec.checks, &times, "confirm")
            .await?;
        if let Some(failures) = checks::describe_failures(&outcomes) {
            if !recording {
                return Err(Error::check_failed(
                    format!(
                        "phase {} ({}) of plan {name}: a check failed\n  {failures}",
                        index + 1,
                        spec.id
                    ),
                    None,
                ));
            }
            self.store
                .commit_bookkeeping(&[self.event_by(
                    by,
                    name,
                    Some(&spec.id),
                    AuditAction::ConfirmRefused,
                    json!({
                        "by": by,
                        "session": self.options.actor,
                        "checks": outcomes,
                    }),
                )])
                .await?;
            return Err(Error::check_failed(
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
        if !recording {
            return Ok(());
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
            self.event_by(
                by,
                name,
                Some(&spec.id),
                AuditAction::Confirmed,
                json!({ "by": by, "session": self.options.actor, "note": note, "checks": outcomes }),
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
}

fn next_step(plan: &str, phase: &PhaseRecord) -> Option<String> {
    match phase.state {
        PhaseState::Pending | PhaseState::Failed | PhaseState::Paused | PhaseState::Running => {
            Some(format!("orch advance {plan}"))
        }
        _ => None,
    }
}

/// What the operator can do next on the plan as a whole: confirm the phase
/// that waits for it, else advance the first phase not yet confirmed.
fn plan_next_step(plan: &str, phases: &[PhaseRecord]) -> Option<String> {
    match phases.iter().find(|p| p.state.awaits_confirmation()) {
        Some(waiting) => Some(confirm_command(plan, &waiting.id)),
        None => phases
            .iter()
            .find(|p| p.state != PhaseState::Confirmed)
            .and_then(|p| next_step(plan, p)),
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
