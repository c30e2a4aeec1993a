//! A plan across a fleet. Before acting, every target is surveyed (where
//! it stands on the plan, and the checksum of the plan definition its
//! database records); targets that recorded different definitions are
//! refused by name. Then:
//!
//! - `advance` runs the next phase on every target whose previous phase is
//!   confirmed (the engine's own rule), skipping those that wait for a
//!   confirmation or are complete; `--canary K` runs it on the first K
//!   such targets only, and the next `advance` does the rest.
//! - `rollback` undoes the phase on every target where the plan started.
//!
//! `confirm.rs` has the fleet-wide confirmation, `status.rs` the summary.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::engine::fleet::{
    FleetReporter, Outcome, ProjectFolders, Target, TargetOutcome, each, names,
};
use crate::engine::plan_rollback::RollbackRequest;
use crate::engine::plan_runner::PlanOptions;
use crate::engine::plan_status::{PlanStatus, plan_statuses};
use crate::error::{Error, Result};
use crate::events::{Reporter, Silent};
use crate::plan::PhaseState;
use crate::stop::StopSignal;

/// What every plan command across a fleet shares.
#[derive(Clone)]
pub struct FleetPlanJob {
    pub folders: ProjectFolders,
    pub options: PlanOptions,
    pub check_role: Option<String>,
    /// The command, for application_name (`advance posts-location`).
    pub application_name: String,
    pub stop: StopSignal,
    /// At most this many targets at once.
    pub parallel: usize,
    /// The group's name, for the commands an error suggests.
    pub group: String,
}

/// Where one target stands on the plan, read before acting.
#[derive(Debug, Clone)]
pub struct Standing {
    pub status: PlanStatus,
    /// The checksum of the definition its database records; None: not started.
    pub recorded_checksum: Option<String>,
}

/// Reports nothing (the survey before acting).
pub(super) struct Quiet;

impl FleetReporter for Quiet {
    fn target(&self, _target: &str) -> Arc<dyn Reporter> {
        Arc::new(Silent)
    }
    fn started(&self, _target: &str) {}
    fn ended(&self, _target: &str, _ok: bool) {}
}

impl FleetPlanJob {
    /// The plan's file checksum; the files are read and validated before
    /// any target is contacted.
    fn file_checksum(&self, plan: &str) -> Result<Option<String>> {
        let (_, plans) = self.folders.borrow().read()?;
        Ok(plans.get(plan).map(|p| p.checksum.clone()))
    }

    /// Where every target stands on `plan`.
    pub(super) async fn survey(
        &self,
        targets: &[Target],
        plan: &str,
    ) -> Vec<TargetOutcome<Standing>> {
        let quiet: Arc<dyn FleetReporter> = Arc::new(Quiet);
        each(targets, self.parallel, &quiet, |target, _| {
            let (job, plan) = (self.clone(), plan.to_string());
            async move {
                let workspace = job.folders.open(&target, &job.application_name).await?;
                if !workspace.knows_plan(&plan).await? {
                    return Err(workspace.unknown_plan(&plan).await?);
                }
                let status = plan_statuses(&workspace, Some(&plan))
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::failed(format!("no status for plan {plan}")))?;
                let recorded_checksum = workspace
                    .store
                    .plan_state(&plan)
                    .await?
                    .map(|(record, _)| record.checksum);
                Ok(Standing {
                    status,
                    recorded_checksum,
                })
            }
        })
        .await
    }

    /// The survey, refusing when targets recorded different definitions
    /// of the plan.
    pub(super) async fn surveyed(
        &self,
        targets: &[Target],
        plan: &str,
    ) -> Result<Vec<TargetOutcome<Standing>>> {
        let file = self.file_checksum(plan)?;
        let survey = self.survey(targets, plan).await;
        agree(plan, file.as_deref(), &survey)?;
        Ok(survey)
    }
}

/// Every target that started the plan must record the same definition of
/// it. All the same (the file's, or one edit the engine then applies to
/// each alike) is fine; otherwise those whose definition is not the file's
/// are named.
pub fn agree(plan: &str, file: Option<&str>, survey: &[TargetOutcome<Standing>]) -> Result<()> {
    let recorded: Vec<(&str, &str)> = survey
        .iter()
        .filter_map(|o| {
            Some((
                o.target.as_str(),
                o.result.ok()?.recorded_checksum.as_deref()?,
            ))
        })
        .collect();
    match differing(file, &recorded) {
        None => Ok(()),
        Some(differ) => Err(Error::refused(
            format!(
                "plan {plan} is not the same on every target: {} recorded another definition of it than {} ({} of {} targets differ); a fleet runs one plan, so nothing was done",
                names(differ.iter().copied()),
                if file.is_some() {
                    "the plan file"
                } else {
                    "the other targets"
                },
                differ.len(),
                survey.len()
            ),
            Some(format!(
                "compare `orch status {plan}` on each; bring the file and the targets to one definition (or act on a differing target alone with --database-url)"
            )),
        )),
    }
}

/// The targets whose recorded checksum differs, when they do not all
/// record the same one: compared with the file's, or with no file, with
/// the most common one.
fn differing<'a>(file: Option<&str>, recorded: &[(&'a str, &str)]) -> Option<Vec<&'a str>> {
    let mut distinct: Vec<&str> = recorded.iter().map(|(_, c)| *c).collect();
    distinct.sort();
    distinct.dedup();
    if distinct.len() <= 1 {
        return None;
    }
    let reference = match file {
        Some(file) => file.to_string(),
        None => {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, checksum) in recorded {
                *counts.entry(checksum).or_default() += 1;
            }
            let most = counts.values().copied().max().unwrap_or(0);
            counts
                .into_iter()
                .find(|(_, n)| *n == most)
                .map(|(c, _)| c.to_string())
                .unwrap_or_default()
        }
    };
    Some(
        recorded
            .iter()
            .filter(|(_, c)| *c != reference)
            .map(|(t, _)| *t)
            .collect(),
    )
}

/// What `advance` does with a target, from where it stands: nothing when
/// the plan is complete or its current phase waits for a confirmation
/// (said why), else it runs (None).
fn advance_step(status: &PlanStatus) -> Option<String> {
    let Some(k) = status.current else {
        return Some(format!("{}: nothing to do", status.state));
    };
    let phase = &status.phases[k - 1];
    let waits = match phase.state {
        PhaseState::Open => "gate open, waits for confirm",
        PhaseState::Done => "done, waits for confirm",
        _ => return None,
    };
    Some(format!("phase {k}/{} {}: {waits}", status.total, phase.id))
}

/// The survey's failures become the outcomes of those targets; the rest
/// are returned with where they stand.
pub(super) fn split(
    survey: Vec<TargetOutcome<Standing>>,
) -> (Vec<TargetOutcome<String>>, Vec<(String, Standing)>) {
    let (mut failed, mut standing) = (Vec::new(), Vec::new());
    for outcome in survey {
        match outcome.result {
            Outcome::Done(s) => standing.push((outcome.target, s)),
            Outcome::Failed(e) => failed.push(TargetOutcome {
                target: outcome.target,
                result: Outcome::Failed(e),
            }),
        }
    }
    (failed, standing)
}

/// Where a target stands after acting: `phase 3/5 backfill-loc: done`.
async fn after(job: &FleetPlanJob, target: &Target, plan: &str) -> Result<String> {
    let workspace = job.folders.open(target, &job.application_name).await?;
    let status = plan_statuses(&workspace, Some(plan)).await?;
    Ok(match status.first() {
        Some(s) => match s.current {
            Some(k) => format!("phase {k}/{} {}: {}", s.total, s.phases[k - 1].id, s.state),
            None => s.state.clone(),
        },
        None => "no status".to_string(),
    })
}

/// `orch advance PLAN --targets NAME [--canary K]`.
pub async fn advance(
    job: &FleetPlanJob,
    targets: &[Target],
    plan: &str,
    canary: Option<usize>,
    reporters: &Arc<dyn FleetReporter>,
) -> Result<Vec<TargetOutcome<String>>> {
    let survey = job.surveyed(targets, plan).await?;
    let (mut outcomes, standing) = split(survey);
    let mut to_run = Vec::new();
    for (label, s) in standing {
        match advance_step(&s.status) {
            Some(why) => outcomes.push(TargetOutcome {
                target: label,
                result: Outcome::Done(why),
            }),
            None => to_run.push(label),
        }
    }
    if let Some(k) = canary {
        for label in to_run.split_off(k.min(to_run.len())) {
            outcomes.push(TargetOutcome {
                target: label,
                result: Outcome::Done(format!(
                    "held back by --canary {k}: the next advance runs it"
                )),
            });
        }
    }
    let running: Vec<Target> = targets
        .iter()
        .filter(|t| to_run.contains(&t.label))
        .cloned()
        .collect();
    let ran = each(&running, job.parallel, reporters, |target, reporter| {
        let (job, plan) = (job.clone(), plan.to_string());
        async move {
            let mut workspace = job.folders.open(&target, &job.application_name).await?;
            workspace.run_checks_as(job.check_role.as_deref());
            let engine = workspace.plan_engine(&job.options, reporter.as_ref(), &job.stop);
            engine.advance(&plan).await?;
            drop(workspace);
            after(&job, &target, &plan).await
        }
    })
    .await;
    outcomes.extend(ran);
    Ok(in_target_order(targets, outcomes))
}

pub(super) fn in_target_order<T>(
    targets: &[Target],
    mut outcomes: Vec<TargetOutcome<T>>,
) -> Vec<TargetOutcome<T>> {
    let position = |label: &str| {
        targets
            .iter()
            .position(|t| t.label == label)
            .unwrap_or(usize::MAX)
    };
    outcomes.sort_by_key(|o| position(&o.target));
    outcomes
}

/// `orch rollback PLAN [PHASE] --targets NAME`.
pub async fn rollback(
    job: &FleetPlanJob,
    targets: &[Target],
    plan: &str,
    request: &RollbackRequest<'_>,
    reporters: &Arc<dyn FleetReporter>,
) -> Result<Vec<TargetOutcome<String>>> {
    let survey = job.surveyed(targets, plan).await?;
    let (mut outcomes, standing) = split(survey);
    let mut started = Vec::new();
    for (label, s) in &standing {
        if s.recorded_checksum.is_none() {
            outcomes.push(TargetOutcome {
                target: label.clone(),
                result: Outcome::Done("not started: nothing to roll back".to_string()),
            });
        } else {
            started.push(label.clone());
        }
    }
    let started: Vec<Target> = targets
        .iter()
        .filter(|t| started.contains(&t.label))
        .cloned()
        .collect();
    let (phase, force, by, note) = (
        request.phase.map(str::to_string),
        request.force,
        request.by.to_string(),
        request.note.map(str::to_string),
    );
    let done = each(&started, job.parallel, reporters, |target, reporter| {
        let (job, plan) = (job.clone(), plan.to_string());
        let (phase, by, note) = (phase.clone(), by.clone(), note.clone());
        async move {
            let workspace = job.folders.open(&target, &job.application_name).await?;
            let engine = workspace.plan_engine(&job.options, reporter.as_ref(), &job.stop);
            let request = RollbackRequest {
                phase: phase.as_deref(),
                force,
                by: &by,
                note: note.as_deref(),
            };
            engine.rollback(&plan, request).await?;
            drop(workspace);
            after(&job, &target, &plan).await
        }
    })
    .await;
    outcomes.extend(done);
    Ok(in_target_order(targets, outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which targets a fleet refuses for their recorded plan definition.
    #[test]
    fn targets_recording_another_definition_are_named() {
        for (file, recorded, expected) in [
            // Nobody started it, or everyone records the file's.
            (Some("f"), vec![], None),
            (Some("f"), vec![("a", "f"), ("b", "f")], None),
            // One edit recorded everywhere alike: the engine applies it to each.
            (Some("f"), vec![("a", "e"), ("b", "e")], None),
            // Some record the file's, one another: that one.
            (
                Some("f"),
                vec![("a", "f"), ("b", "x"), ("c", "f")],
                Some(vec!["b"]),
            ),
            // Two differing from the file and from each other: both.
            (
                Some("f"),
                vec![("a", "x"), ("b", "y")],
                Some(vec!["a", "b"]),
            ),
            // No file: those not recording the most common one.
            (
                None,
                vec![("a", "x"), ("b", "y"), ("c", "x")],
                Some(vec!["b"]),
            ),
        ] {
            assert_eq!(
                differing(file, &recorded),
                expected,
                "{file:?} {recorded:?}"
            );
        }
    }
}
