//! `orch checklist PLAN`: the plan as a Markdown release checklist with live
//! state, ready to paste into a release review.

use std::fmt::Write;

use crate::cli::Context;
use crate::engine::plan_status::{PhaseStatus, PlanStatus, plan_events, plan_statuses};
use crate::error::Result;
use crate::migration::held_locks::{self, HeldLock};
use crate::plan::kinds;
use crate::plan::records::EventRecord;
use crate::plan::{AuditAction, PhaseState};
use crate::timefmt;

pub async fn run(ctx: &Context, plan: &str) -> Result<()> {
    let workspace = ctx.workspace("checklist").await?;
    let statuses = plan_statuses(&workspace, Some(plan)).await?;
    let Some(status) = statuses.into_iter().next() else {
        return Err(workspace.unknown_plan(plan).await?);
    };
    let events = plan_events(&workspace, plan).await?;
    print!("{}", render(&status, &events));
    Ok(())
}

/// Render the checklist.
pub fn render(s: &PlanStatus, events: &[EventRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Release checklist: {}\n", s.plan);
    if let Some(description) = &s.description {
        let _ = writeln!(out, "{}\n", description.trim());
    }
    if let Some(file) = &s.file {
        let _ = write!(out, "- Plan file: `{file}`");
        if let Some(note) = &s.file_note {
            let _ = write!(out, " ({note})");
        }
        out.push('\n');
    }
    match (s.started_at, &s.started_by) {
        (Some(at), Some(by)) => {
            let _ = writeln!(out, "- Started: {} by {by}", timefmt::utc(&at));
        }
        _ => out.push_str("- Started: not yet\n"),
    }
    let position = match s.current {
        Some(k) => format!(
            "phase {k} of {} (`{}`), {}",
            s.total,
            s.phases[k - 1].id,
            s.state
        ),
        None => format!("{} (all {} phases confirmed)", s.state, s.total),
    };
    let _ = writeln!(out, "- Now: {position}");
    let _ = writeln!(out, "- Waiting on: {}\n", s.waiting_on);
    out.push_str("## Phases\n\n");
    for p in &s.phases {
        phase(&mut out, s, p, events);
    }
    let signoffs: Vec<&EventRecord> = events
        .iter()
        .filter(|e| e.action == AuditAction::Confirmed)
        .collect();
    if !events.is_empty() {
        let _ = writeln!(out, "\n## Log\n");
        for e in events {
            let phase = e
                .phase
                .as_deref()
                .map(|p| format!(" `{p}`"))
                .unwrap_or_default();
            let note = e
                .detail
                .get("note")
                .and_then(|n| n.as_str())
                .map(|n| format!(": \"{n}\""))
                .unwrap_or_default();
            // A confirmation names who confirmed; the session that typed it
            // may be someone else's shell.
            let session = e
                .detail
                .get("session")
                .and_then(|n| n.as_str())
                .filter(|session| *session != e.actor)
                .map(|session| format!(" (session {session})"))
                .unwrap_or_default();
            // A forced rollback undid an irreversible phase: the log says so.
            let forced = if e.detail.get("forced").and_then(|f| f.as_bool()) == Some(true) {
                " (**forced**: irreversible)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "- {} {}{phase}{forced} by {}{session}{note}",
                timefmt::utc(&e.at),
                e.action.words(),
                e.actor
            );
        }
        let _ = writeln!(out, "\n{} confirmation(s) recorded.", signoffs.len());
    }
    out
}

/// What the migration a done (or confirmed) phase applied held, from its
/// `migration_applied` audit entry: `ACCESS EXCLUSIVE on posts for 3.1 ms
/// (line 4); ...`. None for other phases, and for entries written before orch
/// recorded locks.
fn locks_held(p: &PhaseStatus, events: &[EventRecord]) -> Option<String> {
    if !matches!(p.state, PhaseState::Done | PhaseState::Confirmed) {
        return None;
    }
    let applied = events.iter().rev().find(|e| {
        e.action == AuditAction::MigrationApplied && e.phase.as_deref() == Some(p.id.as_str())
    })?;
    let locks: Vec<HeldLock> = serde_json::from_value(applied.detail.get("locks")?.clone()).ok()?;
    Some(match locks.is_empty() {
        true => "no lock on a relation that existed before it".to_string(),
        false => held_locks::listing(&locks, 3),
    })
}

fn phase(out: &mut String, s: &PlanStatus, p: &PhaseStatus, events: &[EventRecord]) {
    let done = p.state == PhaseState::Confirmed;
    let rules = kinds::rules(p.kind);
    let mut kind = rules.label().to_string();
    if let Some(role) = &p.role {
        kind.push_str(&format!(", {role}"));
    }
    if !p.reversible {
        kind.push_str(", irreversible");
    }
    let _ = writeln!(
        out,
        "- [{}] **{}. {}** ({kind}): {} — *{}*",
        if done { "x" } else { " " },
        p.position,
        p.id,
        p.title,
        p.state.name()
    );
    if let Some(migration) = &p.migration {
        let _ = writeln!(out, "  - migration: `{migration}`");
    }
    if let Some(loses) = &p.rollback_loses {
        let _ = writeln!(out, "  - cannot be undone: {}", loses.trim());
    }
    if let Some(r) = &p.record {
        if let (Some(by), Some(at)) = (&r.ran_by, r.started_at) {
            let verb = if rules.is_gate() {
                "gate opened"
            } else {
                "ran"
            };
            let finished = r
                .finished_at
                .map(|f| format!(", finished {}", timefmt::utc(&f)))
                .unwrap_or_default();
            let _ = writeln!(out, "  - {verb} by {by} at {}{finished}", timefmt::utc(&at));
        }
        if let Some(locks) = locks_held(p, events) {
            let _ = writeln!(out, "  - held {locks}");
        }
        if let (Some(by), Some(at)) = (&r.confirmed_by, r.confirmed_at) {
            let note = r
                .note
                .as_ref()
                .map(|n| format!(": \"{n}\""))
                .unwrap_or_default();
            let _ = writeln!(out, "  - confirmed by {by} at {}{note}", timefmt::utc(&at));
        }
        if let Some(result) = &r.result
            && rules.shows_result()
        {
            let _ = writeln!(out, "  - result: `{result}`");
        }
        if p.state == PhaseState::Failed
            && let Some(error) = &r.error
        {
            let _ = writeln!(
                out,
                "  - **failed**: {}",
                error.lines().next().unwrap_or_default()
            );
        }
    }
    if let Some(progress) = &p.progress
        && p.state != PhaseState::Pending
    {
        let _ = writeln!(out, "  - progress: {}", progress.describe());
    }
    let gate_open = p.state == PhaseState::Open;
    if (gate_open || (rules.is_gate() && s.current == Some(p.position)))
        && let Some(instructions) = &p.instructions
    {
        let _ = writeln!(out, "  - instructions:");
        for line in instructions.trim_end().lines() {
            let _ = writeln!(out, "    > {line}");
        }
    }
    for c in &p.checks {
        let result = match &c.last {
            Some(r) if r.passed => format!(
                "passed at {} ({})",
                timefmt::utc(&r.evaluated_at),
                r.evaluated_by
            ),
            Some(r) => format!(
                "**FAILED** at {} ({}): {}",
                timefmt::utc(&r.evaluated_at),
                r.evaluated_by,
                r.detail.as_deref().unwrap_or("did not pass")
            ),
            None => "not evaluated yet".to_string(),
        };
        let _ = writeln!(out, "  - {} `{}`: {result}", c.purpose, c.name);
        let _ = writeln!(out, "    ```sql");
        for line in c.sql.lines() {
            let _ = writeln!(out, "    {line}");
        }
        let _ = writeln!(out, "    ```");
    }
}
