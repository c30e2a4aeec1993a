//! `--targets NAME`: the plan and migration commands across a fleet
//! (engine::fleet), printed as a table target × outcome, or one line per
//! plan for `status`.

use std::sync::Arc;

use crate::cli::Context;
use crate::cli::args::{BackfillArgs, FleetArgs, LockArgs};
use crate::cli::checklist;
use crate::cli::fleet_progress::FleetProgress;
use crate::cli::table;
use crate::engine::fleet::plans::{self as fleet_plans, FleetPlanJob, summarize};
use crate::engine::fleet::{
    self, FleetReporter, Outcome, ProjectFolders, Target, TargetOutcome, failures, names,
};
use crate::engine::migrator::{MigrateOptions, UpTarget};
use crate::engine::plan_rollback::RollbackRequest;
use crate::engine::plan_runner::PlanOptions;
use crate::engine::plan_status::{PlanStatus, file_status};
use crate::error::{Error, Result};
use crate::plan::PhaseState;
use crate::stop::StopSignal;

/// The group's targets (its query, if any, run now).
pub async fn targets(ctx: &Context, group: &str, command: &str) -> Result<Vec<Target>> {
    let group = ctx.config.target_group(group)?;
    let targets =
        fleet::resolve(&ctx.config, group, &ctx.env, &ctx.application_name(command)).await?;
    if targets.is_empty() {
        return Err(Error::Usage(format!(
            "--targets {}: the group names no database",
            group.name
        )));
    }
    Ok(targets)
}

fn folders(ctx: &Context) -> ProjectFolders {
    ProjectFolders {
        migrations: ctx.migrations_dir.clone(),
        format: ctx.format,
        plans: ctx.plans_dir.clone(),
    }
}

fn plan_job(
    ctx: &Context,
    fleet: &FleetArgs,
    group: &str,
    command: &str,
    options: PlanOptions,
    check_role: Option<&str>,
) -> FleetPlanJob {
    FleetPlanJob {
        folders: folders(ctx),
        options,
        check_role: check_role.map(str::to_string),
        application_name: ctx.application_name(command),
        stop: StopSignal::new(),
        parallel: fleet.parallel,
        group: group.to_string(),
    }
}

/// The table target × outcome; the full text of each failure after it.
fn print_outcomes(outcomes: &[TargetOutcome<String>]) {
    let mut rows = vec![vec!["TARGET".to_string(), "OUTCOME".to_string()]];
    for o in outcomes {
        let outcome = match &o.result {
            Outcome::Done(text) => text.clone(),
            Outcome::Failed(e) => {
                let first = e.to_string();
                format!("FAILED: {}", first.lines().next().unwrap_or(""))
            }
        };
        rows.push(vec![o.target.clone(), outcome]);
    }
    print!("{}", table::render(&rows));
    for o in outcomes {
        if let Outcome::Failed(e) = &o.result
            && e.to_string().contains('\n')
        {
            eprintln!("{}: {e}", o.target);
        }
    }
}

/// Each target's narration goes to stderr, prefixed with its name; stdout
/// carries the table of outcomes.
fn progress() -> Arc<dyn FleetReporter> {
    Arc::new(FleetProgress::new(false))
}

/// The plan commands that act: advance, confirm, rollback.
pub enum FleetAction<'a> {
    Advance {
        dry_run: bool,
        canary: Option<usize>,
        backfill: &'a BackfillArgs,
    },
    Confirm {
        phase: Option<&'a str>,
        by: &'a str,
        note: Option<&'a str>,
    },
    Rollback {
        phase: Option<&'a str>,
        force: bool,
        by: Option<&'a str>,
        note: Option<&'a str>,
    },
}

pub async fn act(
    ctx: &Context,
    plan: &str,
    action: FleetAction<'_>,
    locks: &LockArgs,
    fleet: &FleetArgs,
    group: &str,
    check_role: Option<&str>,
) -> Result<()> {
    let (command, backfill, dry_run) = match &action {
        FleetAction::Advance {
            dry_run, backfill, ..
        } => ("advance", Some(*backfill), *dry_run),
        FleetAction::Confirm { .. } => ("confirm", None, false),
        FleetAction::Rollback { .. } => ("rollback", None, false),
    };
    let command = format!("{command} {plan}");
    let options = super::plans::options(ctx, locks, backfill, dry_run);
    let job = plan_job(ctx, fleet, group, &command, options, check_role);
    if matches!(action, FleetAction::Advance { .. }) {
        job.stop.on_interrupt();
    }
    let targets = targets(ctx, group, &command).await?;
    let reporters = progress();
    let outcomes = match action {
        FleetAction::Advance { canary, .. } => {
            fleet_plans::advance(&job, &targets, plan, canary, &reporters).await?
        }
        FleetAction::Confirm { phase, by, note } => {
            if by.trim().is_empty() {
                return Err(Error::Usage("--by NAME must not be empty".to_string()));
            }
            fleet_plans::confirm(&job, &targets, plan, phase, by.trim(), note, &reporters).await?
        }
        FleetAction::Rollback {
            phase,
            force,
            by,
            note,
        } => {
            let by = match by {
                Some(by) if by.trim().is_empty() => {
                    return Err(Error::Usage("--by NAME must not be empty".to_string()));
                }
                Some(by) => by.trim(),
                None => ctx.actor.as_str(),
            };
            let request = RollbackRequest {
                phase,
                force,
                by,
                note,
            };
            fleet_plans::rollback(&job, &targets, plan, &request, &reporters).await?
        }
    };
    drop(reporters);
    print_outcomes(&outcomes);
    failures(&outcomes, &command)
}

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
    let outcomes = fleet_plans::statuses(&job, &targets, plan).await;
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
fn unreadable<T>(outcomes: &[TargetOutcome<T>], what: &str) -> Result<()> {
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
pub fn overview(
    summaries: &[fleet_plans::PlanSummary],
    outcomes: &[TargetOutcome<Vec<PlanStatus>>],
) -> String {
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
    let outcomes = fleet_plans::statuses(&job, &targets, Some(plan)).await;
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

/// `orch migrate up --targets NAME`.
pub async fn migrate_up(
    ctx: &Context,
    options: &MigrateOptions,
    target: UpTarget,
    fleet: &FleetArgs,
    group: &str,
) -> Result<()> {
    let targets = targets(ctx, group, "migrate up").await?;
    let reporters = progress();
    let outcomes = fleet::migrations::up(
        &folders(ctx),
        &targets,
        options,
        target,
        &ctx.application_name("migrate up"),
        fleet.parallel,
        &reporters,
    )
    .await;
    drop(reporters);
    print_outcomes(&outcomes);
    failures(&outcomes, "migrate up")
}

/// `orch migrate status --targets NAME [--json] [--exit-code]`.
pub async fn migrate_status(
    ctx: &Context,
    json: bool,
    exit_code: bool,
    fleet: &FleetArgs,
    group: &str,
) -> Result<()> {
    let targets = targets(ctx, group, "migrate status").await?;
    let reporters = progress();
    let outcomes = fleet::migrations::status(
        &folders(ctx),
        &targets,
        &ctx.application_name("migrate status"),
        fleet.parallel,
        &reporters,
    )
    .await;
    drop(reporters);
    if json {
        let text = serde_json::to_string_pretty(&outcomes)
            .map_err(|e| Error::failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        let lines: Vec<TargetOutcome<String>> = outcomes
            .iter()
            .map(|o| TargetOutcome {
                target: o.target.clone(),
                result: match &o.result {
                    Outcome::Done(counts) => Outcome::Done(counts.describe()),
                    Outcome::Failed(e) => Outcome::Failed(Error::failed(e.to_string())),
                },
            })
            .collect();
        print_outcomes(&lines);
    }
    unreadable(&outcomes, "migrate status")?;
    let waiting: Vec<&str> = outcomes
        .iter()
        .filter(|o| o.result.ok().is_some_and(|c| c.needs_attention()))
        .map(|o| o.target.as_str())
        .collect();
    if exit_code && !waiting.is_empty() {
        return Err(Error::Waiting {
            summary: format!(
                "migrations not up to date on {} of {} targets: {}",
                waiting.len(),
                outcomes.len(),
                names(waiting.into_iter())
            ),
        });
    }
    Ok(())
}
