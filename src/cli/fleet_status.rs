//! `status --targets` and `checklist --targets`: one line per plan with how
//! many targets stand where, naming those that need someone; the checklist
//! with each phase's state across the targets.

use crate::cli::Context;
use crate::cli::args::{FleetArgs, LockArgs};
use crate::cli::checklist;
use crate::cli::fleet::{folders, plan_job, targets};
use crate::engine::fleet::status::{self as fleet_status, PlanSummary, summarize};
use crate::engine::fleet::{Outcome, TargetOutcome, names};
use crate::engine::plan_status::{PlanStatus, file_status};
use crate::error::{Error, Result};
use crate::plan::PhaseState;

/// `orch status [PLAN] --targets NAME [--json]`.
pub async fn status(
    ctx: &Context,
    plan: Option<&str>,
    json: bool,
    fleet: &FleetArgs,
    group: &str,
) -> Result<()> {
    let job = plan_job(
        ctx,
        fleet,
        group,
        "status",
        super::plans::options(ctx, &LockArgs::defaults(), None, false),
        None,
    );
    let targets = targets(ctx, group, "status").await?;
    let outcomes = fleet_status::statuses(&job, &targets, plan).await;
    let summaries = summarize(&outcomes);
    if json {
        let per_target: Vec<serde_json::Value> = outcomes
            .iter()
            .map(|o| match &o.result {
                Outcome::Done(plans) => serde_json::json!({ "target": o.target, "plans": plans }),
                Outcome::Failed(e) => {
                    serde_json::json!({ "target": o.target, "error": e.to_string() })
                }
            })
            .collect();
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "group": group,
            "plans": summaries,
            "targets": per_target,
        }))
        .map_err(|e| Error::failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", overview(&summaries, &outcomes));
    }
    unreadable(&outcomes, "status")
}

/// The error for targets that could not be read (already printed).
pub(super) fn unreadable<T>(outcomes: &[TargetOutcome<T>], what: &str) -> Result<()> {
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.ok().is_none())
        .map(|o| o.target.as_str())
        .collect();
    let code = outcomes.iter().find_map(|o| match &o.result {
        Outcome::Failed(e) => Some(e.code()),
        Outcome::Done(_) => None,
    });
    match code {
        None => Ok(()),
        Some(code) => Err(Error::Targets {
            message: format!(
                "{what}: {} of {} targets could not be read: {}",
                failed.len(),
                outcomes.len(),
                names(failed.into_iter())
            ),
            code,
        }),
    }
}

/// States whose targets are named in the overview: they need someone.
fn names_targets(state: &str) -> bool {
    matches!(state, "failed" | "interrupted" | "paused")
}

/// One line per plan: `posts-location: 3/5 backfill-loc: 21 done, 1 failed: shard_b`;
/// then the targets that could not be read, with their errors.
pub fn overview(summaries: &[PlanSummary], outcomes: &[TargetOutcome<Vec<PlanStatus>>]) -> String {
    let mut out = String::new();
    let read = outcomes.iter().filter(|o| o.result.ok().is_some()).count();
    for summary in summaries {
        let mut phases: Vec<(String, Vec<String>)> = Vec::new();
        for group in &summary.groups {
            let mut part = format!("{} {}", group.targets.len(), group.state);
            if names_targets(&group.state) {
                part.push_str(&format!(
                    ": {}",
                    names(group.targets.iter().map(String::as_str))
                ));
            }
            let phase = if group.phase.is_empty() {
                String::new()
            } else {
                group.phase.clone()
            };
            match phases.iter_mut().find(|(p, _)| *p == phase) {
                Some((_, parts)) => parts.push(part),
                None => phases.push((phase, vec![part])),
            }
        }
        phases.sort_by_key(|(p, _)| {
            p.split('/')
                .next()
                .and_then(|k| k.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        let text: Vec<String> = phases
            .into_iter()
            .map(|(phase, parts)| match phase.is_empty() {
                true => parts.join(", "),
                false => format!("{phase}: {}", parts.join(", ")),
            })
            .collect();
        out.push_str(&format!("{}: {}\n", summary.plan, text.join("; ")));
    }
    // A failed phase says why, on each target where it failed.
    for o in outcomes {
        for s in o.result.ok().into_iter().flatten() {
            if let Some(k) = s.current
                && s.state == "failed"
            {
                let phase = &s.phases[k - 1];
                let error = phase.record.as_ref().and_then(|r| r.error.as_deref());
                out.push_str(&format!(
                    "  {}: {} phase {k} {} failed: {}\n",
                    o.target,
                    s.plan,
                    phase.id,
                    error.unwrap_or("(no error recorded)")
                ));
            }
        }
    }
    if summaries.is_empty() && read > 0 {
        out.push_str("no plans in the files or on any target\n");
    }
    let failed: Vec<&TargetOutcome<Vec<PlanStatus>>> = outcomes
        .iter()
        .filter(|o| o.result.ok().is_none())
        .collect();
    if !failed.is_empty() {
        out.push_str(&format!(
            "not read: {} of {} targets\n",
            failed.len(),
            outcomes.len()
        ));
        for o in failed {
            if let Outcome::Failed(e) = &o.result {
                out.push_str(&format!("  {}: {e}\n", o.target));
            }
        }
    }
    out
}

/// `orch checklist PLAN --targets NAME`: the checklist from the plan file,
/// each phase ticked when every target confirmed it, with the targets'
/// states per phase.
pub async fn checklist(ctx: &Context, plan: &str, fleet: &FleetArgs, group: &str) -> Result<()> {
    let (migrations, plans) = folders(ctx).borrow().read()?;
    let status = file_status(&plans, plan)?;
    let job = plan_job(
        ctx,
        fleet,
        group,
        "checklist",
        super::plans::options(ctx, &LockArgs::defaults(), None, false),
        None,
    );
    let targets = targets(ctx, group, "checklist").await?;
    let outcomes = fleet_status::statuses(&job, &targets, Some(plan)).await;
    let note = format!("read from each target of group {group}: see Targets below");
    let mut text = checklist::render(&status, &[], &migrations, Some(&note));
    text.push_str(&format!(
        "\n## Targets ({group}, {} databases)\n\n",
        targets.len()
    ));
    for phase in &status.phases {
        let mut counts: Vec<(String, Vec<String>)> = Vec::new();
        let mut all_confirmed = true;
        for o in &outcomes {
            let state = match o.result.ok().and_then(|s| s.first()) {
                Some(s) => s
                    .phases
                    .iter()
                    .find(|p| p.id == phase.id)
                    .map_or("not in its plan".to_string(), |p| {
                        p.state.name().to_string()
                    }),
                None => "not read".to_string(),
            };
            all_confirmed &= state == PhaseState::Confirmed.name();
            match counts.iter_mut().find(|(s, _)| *s == state) {
                Some((_, t)) => t.push(o.target.clone()),
                None => counts.push((state, vec![o.target.clone()])),
            }
        }
        let parts: Vec<String> = counts
            .iter()
            .map(
                |(state, t)| match names_targets(state) || state == "not read" {
                    true => format!(
                        "{} {state}: {}",
                        t.len(),
                        names(t.iter().map(String::as_str))
                    ),
                    false => format!("{} {state}", t.len()),
                },
            )
            .collect();
        text.push_str(&format!(
            "- [{}] {} {}: {}\n",
            if all_confirmed { "x" } else { " " },
            phase.position,
            phase.id,
            parts.join(", ")
        ));
    }
    print!("{text}");
    unreadable(&outcomes, "checklist")
}
