//! `confirm --targets`: one fleet-wide event, like the deploy it records.
//! Every target must wait for the confirmation of the same phase (or have
//! it already); its checks run on all of them first, recording nothing, and
//! only if all hold is the confirmation recorded on each. A target that
//! fails while recording (its server went away) is named; the others stay
//! confirmed, and a rerun records the rest (confirming a confirmed phase is
//! a no-op).

use std::sync::Arc;

use crate::engine::fleet::plans::{FleetPlanJob, Quiet, Standing, in_target_order, split};
use crate::engine::fleet::{FleetReporter, Outcome, Target, TargetOutcome, each, names};
use crate::error::{Error, Result};
use crate::plan::PhaseState;

/// `orch confirm PLAN [PHASE] --targets NAME --by WHO`: checks on every
/// target, then the confirmation on every target, or nothing anywhere.
pub async fn confirm(
    job: &FleetPlanJob,
    targets: &[Target],
    plan: &str,
    phase: Option<&str>,
    by: &str,
    note: Option<&str>,
    reporters: &Arc<dyn FleetReporter>,
) -> Result<Vec<TargetOutcome<String>>> {
    let survey = job.surveyed(targets, plan).await?;
    let (unreachable, standing) = split(survey);
    if let Some(first) = unreachable.first() {
        let code = match &first.result {
            Outcome::Failed(e) => e.code(),
            Outcome::Done(_) => 1,
        };
        let errors: Vec<String> = unreachable
            .iter()
            .filter_map(|o| match &o.result {
                Outcome::Failed(e) => Some(format!("  {}: {e}", o.target)),
                Outcome::Done(_) => None,
            })
            .collect();
        return Err(Error::Targets {
            message: format!(
                "not confirming plan {plan}: a gate is confirmed on every target or on none, and {} cannot be read; nothing was recorded\n{}",
                names(unreachable.iter().map(|o| o.target.as_str())),
                errors.join("\n")
            ),
            code,
        });
    }
    let phase_id = which_phase(plan, phase, &standing, &job.group)?;
    let mut waiting = Vec::new();
    let mut outcomes = Vec::new();
    for (label, s) in &standing {
        let state = s
            .status
            .phases
            .iter()
            .find(|p| p.id == phase_id)
            .map(|p| p.state);
        if state == Some(PhaseState::Confirmed) {
            outcomes.push(TargetOutcome {
                target: label.clone(),
                result: Outcome::Done(format!("{phase_id}: already confirmed")),
            });
        } else {
            waiting.push(label.clone());
        }
    }
    let waiting: Vec<Target> = targets
        .iter()
        .filter(|t| waiting.contains(&t.label))
        .cloned()
        .collect();
    let quiet: Arc<dyn FleetReporter> = Arc::new(Quiet);
    let checked = each(&waiting, job.parallel, &quiet, |target, reporter| {
        let (job, plan, phase) = (job.clone(), plan.to_string(), phase_id.clone());
        async move {
            let mut workspace = job.folders.open(&target, &job.application_name).await?;
            workspace.run_checks_as(job.check_role.as_deref());
            let engine = workspace.plan_engine(&job.options, reporter.as_ref(), &job.stop);
            engine.check_confirmation(&plan, Some(&phase)).await
        }
    })
    .await;
    let failing: Vec<String> = checked
        .iter()
        .filter_map(|o| match &o.result {
            Outcome::Failed(e) => Some(format!("  {}: {e}", o.target)),
            Outcome::Done(()) => None,
        })
        .collect();
    if !failing.is_empty() {
        let first = checked.iter().find_map(|o| match &o.result {
            Outcome::Failed(e) => Some(e.code()),
            Outcome::Done(()) => None,
        });
        return Err(Error::Targets {
            message: format!(
                "not confirming phase {phase_id} of plan {plan} on any target: it does not hold on {} of {} ({}); nothing was recorded\n{}",
                failing.len(),
                standing.len(),
                names(
                    checked
                        .iter()
                        .filter(|o| o.result.ok().is_none())
                        .map(|o| o.target.as_str())
                ),
                failing.join("\n")
            ),
            code: first.unwrap_or(8),
        });
    }
    let recorded = each(&waiting, job.parallel, reporters, |target, reporter| {
        let (job, plan, phase) = (job.clone(), plan.to_string(), phase_id.clone());
        let (by, note) = (by.to_string(), note.map(str::to_string));
        async move {
            let mut workspace = job.folders.open(&target, &job.application_name).await?;
            workspace.run_checks_as(job.check_role.as_deref());
            let engine = workspace.plan_engine(&job.options, reporter.as_ref(), &job.stop);
            engine
                .confirm(&plan, Some(&phase), &by, note.as_deref())
                .await?;
            Ok(format!("{phase}: confirmed by {by}"))
        }
    })
    .await;
    outcomes.extend(recorded);
    Ok(in_target_order(targets, outcomes))
}

/// The phase a fleet confirms: the one named, else the one the targets
/// wait on, which must be the same everywhere; every target must wait on
/// it or have confirmed it already.
fn which_phase(
    plan: &str,
    named: Option<&str>,
    standing: &[(String, Standing)],
    group: &str,
) -> Result<String> {
    let waits_on = |s: &Standing| {
        s.status
            .phases
            .iter()
            .find(|p| p.state.awaits_confirmation())
            .map(|p| p.id.clone())
    };
    let phase = match named {
        Some(reference) => {
            let first = &standing
                .first()
                .ok_or_else(|| Error::Usage("the target group is empty".to_string()))?
                .1
                .status;
            first
                .phases
                .iter()
                .find(|p| p.id == reference || p.position.to_string() == reference)
                .map(|p| p.id.clone())
                .ok_or_else(|| Error::Usage(format!("plan {plan} has no phase {reference:?}")))?
        }
        None => {
            let mut ids: Vec<String> = standing.iter().filter_map(|(_, s)| waits_on(s)).collect();
            ids.sort();
            ids.dedup();
            match ids.len() {
                1 => ids.remove(0),
                0 => {
                    return Err(Error::refused(
                        format!("no phase of plan {plan} waits for confirmation on any target"),
                        Some(format!("orch status --targets {group}")),
                    ));
                }
                _ => {
                    return Err(Error::refused(
                        format!(
                            "the targets wait on different phases of plan {plan} ({}); name the phase to confirm",
                            ids.join(", ")
                        ),
                        Some(format!("orch status --targets {group}")),
                    ));
                }
            }
        }
    };
    let behind: Vec<String> = standing
        .iter()
        .filter_map(|(label, s)| {
            let p = s.status.phases.iter().find(|p| p.id == phase)?;
            match p.state {
                PhaseState::Confirmed => None,
                state if state.awaits_confirmation() => None,
                state => Some(format!("{label} ({})", state.name())),
            }
        })
        .collect();
    if !behind.is_empty() {
        return Err(Error::refused(
            format!(
                "not confirming phase {phase} of plan {plan}: a gate is confirmed on every target at once, and it does not wait for confirmation on {} of {} targets: {}; nothing was recorded",
                behind.len(),
                standing.len(),
                names(behind.iter().map(String::as_str))
            ),
            Some(format!("orch advance {plan} --targets {group}")),
        ));
    }
    Ok(phase)
}
