//! `orch status / advance / confirm / rollback / pause / backfill`: wiring the command
//! line to the plan engine, and the status screens.

use crate::cli::Context;
use crate::cli::args::{BackfillArgs, LockArgs};
use crate::cli::table;
use crate::engine::attention;
use crate::engine::plan_rollback::RollbackRequest;
use crate::engine::plan_runner::PlanOptions;
use crate::engine::plan_status::{PlanStatus, plan_statuses};
use crate::error::{Error, Result};
use crate::plan::PhaseState;
use crate::stop::StopSignal;
use crate::timefmt;

pub(crate) fn options(
    ctx: &Context,
    locks: &LockArgs,
    backfill: Option<&BackfillArgs>,
    dry_run: bool,
) -> PlanOptions {
    PlanOptions {
        actor: ctx.actor.clone(),
        policy: locks.policy(&ctx.config),
        plan_lock_wait: locks.lock_wait,
        migration_lock_wait: locks.lock_wait,
        backfill: backfill.map(BackfillArgs::overrides).unwrap_or_default(),
        cancel_orphans: locks.cancel_orphans,
        dry_run,
    }
}

/// The plan commands that change state.
pub enum Action<'a> {
    Advance {
        /// Say what the next phase would do; change nothing.
        dry_run: bool,
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
    Pause,
    /// `orch backfill PLAN PHASE`: re-run a finished backfill.
    Backfill {
        phase: &'a str,
    },
}

pub async fn act(
    ctx: &Context,
    plan: &str,
    action: Action<'_>,
    locks: &LockArgs,
    backfill: Option<&BackfillArgs>,
    check_role: Option<&str>,
) -> Result<()> {
    let command = match action {
        Action::Advance { .. } => "advance",
        Action::Confirm { .. } => "confirm",
        Action::Rollback { .. } => "rollback",
        Action::Pause => "pause",
        Action::Backfill { .. } => "backfill",
    };
    let mut workspace = ctx.workspace(&format!("{command} {plan}")).await?;
    workspace.run_checks_as(check_role);
    let dry_run = matches!(action, Action::Advance { dry_run: true });
    let options = options(ctx, locks, backfill, dry_run);
    let stop = StopSignal::new();
    if matches!(action, Action::Advance { .. } | Action::Backfill { .. }) {
        stop.on_interrupt();
    }
    let engine = workspace.plan_engine(&options, ctx.reporter.as_ref(), &stop);
    match action {
        Action::Advance { .. } => engine.advance(plan).await,
        Action::Confirm { phase, by, note } => {
            if by.trim().is_empty() {
                return Err(Error::Usage("--by NAME must not be empty".to_string()));
            }
            engine.confirm(plan, phase, by.trim(), note).await
        }
        Action::Rollback {
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
            engine.rollback(plan, request).await
        }
        Action::Pause => engine.pause(plan).await,
        Action::Backfill { phase } => engine.rerun_backfill(plan, phase).await,
    }
}

/// `orch status [PLAN] [--json]`.
pub async fn status(ctx: &Context, plan: Option<&str>, json: bool, exit_code: bool) -> Result<()> {
    let workspace = ctx.workspace("status").await?;
    if let Some(name) = plan
        && !workspace.knows_plan(name).await?
    {
        return Err(workspace.unknown_plan(name).await?);
    }
    let statuses = plan_statuses(&workspace, plan).await?;
    print_status(ctx, plan, json, &statuses)?;
    if exit_code {
        attention::plans(&workspace, &statuses).await?;
    }
    Ok(())
}

/// `orch status PLAN --errors`: the rows its command backfills' programs
/// rejected or left out.
pub async fn status_errors(ctx: &Context, plan: &str, json: bool) -> Result<()> {
    let workspace = ctx.workspace("status").await?;
    if !workspace.knows_plan(plan).await? {
        return Err(workspace.unknown_plan(plan).await?);
    }
    let statuses = plan_statuses(&workspace, Some(plan)).await?;
    let Some(status) = statuses.first() else {
        return Err(workspace.unknown_plan(plan).await?);
    };
    let phases = crate::engine::backfill_errors::backfill_errors(&workspace, status).await?;
    if json {
        let text = serde_json::to_string_pretty(&phases)
            .map_err(|e| Error::failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    print!("{}", errors_text(plan, &phases));
    Ok(())
}

/// The rejected and left-out rows of each command backfill phase, for people.
fn errors_text(plan: &str, phases: &[crate::engine::backfill_errors::PhaseErrors]) -> String {
    use std::fmt::Write as _;
    if phases.is_empty() {
        return format!("plan {plan} has no backfill phase that runs a command\n");
    }
    let mut out = String::new();
    for phase in phases {
        let _ = writeln!(
            out,
            "phase {} {}: {} rows rejected by the program, {} left out",
            phase.position, phase.phase, phase.rejected, phase.left_out
        );
        for row in &phase.rows {
            let key = if phase.key_columns.is_empty() {
                format!("({})", row.key.join(", "))
            } else {
                format!(
                    "({})=({})",
                    phase.key_columns.join(", "),
                    row.key.join(", ")
                )
            };
            let kind = if row.kind == "left_out" {
                "left out"
            } else {
                row.kind.as_str()
            };
            let _ = writeln!(
                out,
                "  key {key}  {kind}: {}  (worker {}, {})",
                row.message,
                row.worker,
                crate::timefmt::utc(&row.recorded_at)
            );
        }
        let listed = phase.rows.len() as i64;
        if listed < phase.rejected + phase.left_out {
            let _ = writeln!(
                out,
                "  ... and {} more",
                phase.rejected + phase.left_out - listed
            );
        }
    }
    if phases.iter().any(|p| p.rejected + p.left_out > 0) {
        let _ = writeln!(
            out,
            "once the program is fixed, `orch advance {plan}` (or `orch backfill {plan} PHASE` for a finished phase) tries these rows again"
        );
    }
    out
}

fn print_status(
    ctx: &Context,
    plan: Option<&str>,
    json: bool,
    statuses: &[PlanStatus],
) -> Result<()> {
    if json {
        let text = serde_json::to_string_pretty(statuses)
            .map_err(|e| Error::failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(());
    }
    if statuses.is_empty() {
        println!(
            "no plans in {} and none recorded in the database",
            ctx.plans_dir.display()
        );
        return Ok(());
    }
    match plan {
        None => print!("{}", overview(statuses)),
        Some(_) => print!("{}", detail(&statuses[0])),
    }
    Ok(())
}

/// One line per plan.
pub fn overview(statuses: &[PlanStatus]) -> String {
    let mut rows = vec![
        ["PLAN", "PHASE", "TITLE", "STATE", "SINCE", "WAITING ON"]
            .map(String::from)
            .to_vec(),
    ];
    for s in statuses {
        let (phase, title) = match s.current {
            Some(k) => (
                format!("{k}/{} {}", s.total, s.phases[k - 1].id),
                shorten(&s.phases[k - 1].title, 40),
            ),
            None => (format!("{}/{}", s.total, s.total), String::new()),
        };
        let mut waiting = s.waiting_on.clone();
        if let Some(note) = &s.file_note {
            waiting.push_str(&format!(" [{note}]"));
        }
        rows.push(vec![
            s.plan.clone(),
            phase,
            title,
            s.state.clone(),
            s.since.map(|t| timefmt::utc(&t)).unwrap_or_default(),
            waiting,
        ]);
    }
    table::render(&rows)
}

/// `text` cut to at most `max` characters, marked with an ellipsis.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{}…", cut.trim_end())
}

/// One plan with every phase.
pub fn detail(s: &PlanStatus) -> String {
    let mut out = String::new();
    let position = match s.current {
        Some(k) => format!(
            "phase {k} of {} ({}), {}: {}",
            s.total,
            s.phases[k - 1].id,
            s.state,
            s.phases[k - 1].title
        ),
        None if s.state == "complete" => format!("complete, all {} phases confirmed", s.total),
        None => s.state.clone(),
    };
    out.push_str(&format!("plan {}: {position}\n", s.plan));
    if let Some(file) = &s.file {
        out.push_str(&format!("file: {file}"));
        if let Some(note) = &s.file_note {
            out.push_str(&format!(" ({note})"));
        }
        out.push('\n');
    } else if let Some(note) = &s.file_note {
        out.push_str(&format!("file: {note}\n"));
    }
    if let (Some(at), Some(by)) = (s.started_at, &s.started_by) {
        out.push_str(&format!("started: {} by {by}\n", timefmt::utc(&at)));
    }
    out.push('\n');
    let mut rows = vec![
        [
            "#",
            "PHASE",
            "KIND",
            "STATE",
            "SINCE",
            "RAN BY",
            "CONFIRMED BY",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in &s.phases {
        let record = p.record.as_ref();
        let confirmed = record
            .and_then(|r| {
                Some(format!(
                    "{} at {}",
                    r.confirmed_by.as_ref()?,
                    timefmt::utc(&r.confirmed_at?)
                ))
            })
            .unwrap_or_default();
        rows.push(vec![
            p.position.to_string(),
            p.id.clone(),
            p.kind.name().to_string(),
            p.state.name().to_string(),
            record
                .and_then(|r| r.updated_at)
                .map(|t| timefmt::utc(&t))
                .unwrap_or_default(),
            record.and_then(|r| r.ran_by.clone()).unwrap_or_default(),
            confirmed,
        ]);
    }
    out.push_str(&table::render(&rows));
    for p in &s.phases {
        if let Some(progress) = &p.progress
            && p.state != PhaseState::Pending
        {
            out.push_str(&format!("\nbackfill {}: {}\n", p.id, progress.describe()));
        }
        if let Some(trigger) = &p.trigger {
            out.push_str(&format!("\nsync {}: {}\n", p.id, trigger.describe()));
        }
        if let Some(error) = p.record.as_ref().and_then(|r| r.error.as_ref())
            && p.state == PhaseState::Failed
        {
            out.push_str(&format!("\nphase {} failed: {error}\n", p.id));
        }
    }
    out.push_str(&format!("\nwaiting on: {}\n", s.waiting_on));
    out
}
