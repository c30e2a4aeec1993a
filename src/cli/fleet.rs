//! `--targets NAME`: the plan and migration commands across a fleet
//! (engine::fleet), printed as a table target × outcome; `status` and
//! `checklist` are in `fleet_status.rs`.

use std::sync::Arc;

use crate::cli::Context;
use crate::cli::args::{BackfillArgs, FleetArgs, LockArgs};
use crate::cli::fleet_progress::FleetProgress;
use crate::cli::table;
use crate::engine::fleet::confirm as fleet_confirm;
use crate::engine::fleet::plans::{self as fleet_plans, FleetPlanJob};
use crate::engine::fleet::{
    self, FleetReporter, Outcome, ProjectFolders, Target, TargetOutcome, failures, names,
};
use crate::engine::migrator::{MigrateOptions, UpTarget};
use crate::engine::plan_rollback::RollbackRequest;
use crate::engine::plan_runner::PlanOptions;
use crate::error::{Error, Result};
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

pub(super) fn folders(ctx: &Context) -> ProjectFolders {
    ProjectFolders {
        migrations: ctx.migrations_dir.clone(),
        format: ctx.format,
        plans: ctx.plans_dir.clone(),
    }
}

pub(super) fn plan_job(
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
            fleet_confirm::confirm(&job, &targets, plan, phase, by.trim(), note, &reporters).await?
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
    crate::cli::fleet_status::unreadable(&outcomes, "migrate status")?;
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
