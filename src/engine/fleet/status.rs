//! `status --targets`: every target's plans, summed up per plan, phase
//! and state.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::engine::fleet::plans::{FleetPlanJob, Quiet};
use crate::engine::fleet::{FleetReporter, Target, TargetOutcome, each};
use crate::engine::plan_status::{PlanStatus, plan_statuses};

/// `orch status --targets NAME`: every target's plans.
pub async fn statuses(
    job: &FleetPlanJob,
    targets: &[Target],
    only: Option<&str>,
) -> Vec<TargetOutcome<Vec<PlanStatus>>> {
    let quiet: Arc<dyn FleetReporter> = Arc::new(Quiet);
    each(targets, job.parallel, &quiet, |target, _| {
        let (job, only) = (job.clone(), only.map(str::to_string));
        async move {
            let workspace = job.folders.open(&target, &job.application_name).await?;
            if let Some(name) = &only
                && !workspace.knows_plan(name).await?
            {
                return Err(workspace.unknown_plan(name).await?);
            }
            plan_statuses(&workspace, only.as_deref()).await
        }
    })
    .await
}

/// One plan across the fleet: how many targets stand where.
#[derive(Debug, Serialize)]
pub struct PlanSummary {
    pub plan: String,
    pub groups: Vec<StandingGroup>,
}

/// Targets at the same phase in the same state.
#[derive(Debug, Serialize)]
pub struct StandingGroup {
    /// `3/5 backfill-loc`, or empty for a plan complete or not started.
    pub phase: String,
    pub state: String,
    pub targets: Vec<String>,
}

/// Sum up the targets' statuses per plan (targets that could not be read
/// are left to the caller, which names them with their errors).
pub fn summarize(outcomes: &[TargetOutcome<Vec<PlanStatus>>]) -> Vec<PlanSummary> {
    let mut plans: BTreeMap<String, Vec<StandingGroup>> = BTreeMap::new();
    for outcome in outcomes {
        let Some(statuses) = outcome.result.ok() else {
            continue;
        };
        for s in statuses {
            let phase = match s.current {
                Some(k) => format!("{k}/{} {}", s.total, s.phases[k - 1].id),
                None => String::new(),
            };
            let groups = plans.entry(s.plan.clone()).or_default();
            match groups
                .iter_mut()
                .find(|g| g.phase == phase && g.state == s.state)
            {
                Some(group) => group.targets.push(outcome.target.clone()),
                None => groups.push(StandingGroup {
                    phase,
                    state: s.state.clone(),
                    targets: vec![outcome.target.clone()],
                }),
            }
        }
    }
    plans
        .into_iter()
        .map(|(plan, groups)| PlanSummary { plan, groups })
        .collect()
}
