//! `orch checklist PLAN`: the plan as a Markdown release checklist with live
//! state, ready to paste into a release review. Every phase shows what it
//! does (its migration's SQL, its backfill, its instructions, its checks),
//! so the checklist also works before the plan starts, and without a
//! database when none is configured.

use std::fmt::Write;

use crate::cli::Context;
use crate::engine::plan_status::{
    PhaseStatus, PlanStatus, file_status, plan_events, plan_statuses,
};
use crate::engine::workspace::Folders;
use crate::error::{Error, Result};
use crate::migration::MigrationSet;
use crate::migration::held_locks::{self, HeldLock};
use crate::plan::kinds;
use crate::plan::records::EventRecord;
use crate::plan::{AuditAction, PhaseState};
use crate::timefmt;

pub async fn run(ctx: &Context, plan: &str) -> Result<()> {
    let configured = ctx.connection()?.is_configured();
    let workspace = match ctx.workspace("checklist").await {
        Ok(workspace) => workspace,
        // Nothing named a database and none answered at libpq's defaults:
        // the plan as its file says, its state not read. A database that
        // was named but cannot be reached stays an error: a checklist
        // silently without its state would read as "nothing done yet".
        Err(Error::Connect { .. }) if !configured => {
            let folders = Folders {
                migrations: &ctx.migrations_dir,
                format: ctx.format,
                plans: &ctx.plans_dir,
            };
            let (migrations, plans) = folders.read()?;
            let status = file_status(&plans, plan)?;
            let not_read = "not read: no database is configured (--database-url, DATABASE_URL or PGHOST/PGDATABASE) and none answered at libpq's default sockets, so every phase is shown unticked";
            print!("{}", render(&status, &[], &migrations, Some(not_read)));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let statuses = plan_statuses(&workspace, Some(plan)).await?;
    let Some(status) = statuses.into_iter().next() else {
        return Err(workspace.unknown_plan(plan).await?);
    };
    let events = plan_events(&workspace, plan).await?;
    print!("{}", render(&status, &events, &workspace.migrations, None));
    Ok(())
}

/// Render the checklist; `not_read` says why the state is missing when it
/// was not read (every phase then shows unticked, with no state).
pub fn render(
    s: &PlanStatus,
    events: &[EventRecord],
    migrations: &MigrationSet,
    not_read: Option<&str>,
) -> String {
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
    if let Some(why) = not_read {
        let _ = writeln!(out, "- State: {why}\n");
    } else {
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
    }
    out.push_str("## Phases\n\n");
    for p in &s.phases {
        phase(&mut out, p, migrations, not_read.is_none(), events);
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

/// One phase: its heading (ticked once confirmed), what it does, what
/// happened to it, and its guard and checks with their latest results.
fn phase(
    out: &mut String,
    p: &PhaseStatus,
    migrations: &MigrationSet,
    state_read: bool,
    events: &[EventRecord],
) {
    let done = p.state == PhaseState::Confirmed;
    let rules = kinds::rules(p.kind);
    let mut kind = rules.label().to_string();
    if let Some(role) = &p.role {
        kind.push_str(&format!(", {role}"));
    }
    if !p.reversible {
        kind.push_str(", irreversible");
    }
    let state = if state_read {
        format!(" — *{}*", p.state.name())
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "- [{}] **{}. {}** ({kind}): {}{state}",
        if done { "x" } else { " " },
        p.position,
        p.id,
        p.title,
    );
    if let Some(migration) = &p.migration {
        migration_lines(out, migration, migrations);
    }
    if let Some(backfill) = &p.backfill {
        let _ = writeln!(out, "  - backfill of `{}`:", backfill.table);
        if let Some(key) = &backfill.key {
            let _ = writeln!(out, "    - key: `({})`", key.join(", "));
        }
        match &backfill.command {
            None => {
                let _ = writeln!(out, "    - set: `{}`", one_line(&backfill.set));
            }
            Some(command) => {
                let list = |c: &Option<Vec<String>>| c.clone().unwrap_or_default().join(", ");
                let _ = writeln!(out, "    - command: `{}`", one_line(&command.join(" ")));
                let _ = writeln!(
                    out,
                    "    - reads `{}`, writes `{}`, at most {} rejected rows",
                    list(&backfill.reads),
                    list(&backfill.writes),
                    backfill.max_errors.unwrap_or(0)
                );
            }
        }
        match &backfill.condition {
            Some(condition) => {
                let _ = writeln!(out, "    - where: `{}`", one_line(condition));
            }
            None => out.push_str("    - where: every row\n"),
        }
    }
    if let Some(sync) = &p.sync {
        let _ = writeln!(
            out,
            "  - sync trigger on `{}`: the old version writes `{}`, the new one `{}`",
            sync.table,
            sync.old.join(", "),
            sync.new.join(", ")
        );
        for (column, expression) in &sync.up {
            let _ = writeln!(out, "    - up: `{column} = {}`", one_line(expression));
        }
        match &sync.down {
            Some(down) => {
                for (column, expression) in down {
                    let _ = writeln!(out, "    - down: `{column} = {}`", one_line(expression));
                }
            }
            None => out.push_str("    - down: none (writes of the new columns alone leave the old ones as they are)\n"),
        }
    }
    if let Some(trigger) = &p.trigger {
        let _ = writeln!(out, "  - {}", trigger.describe());
    }
    if let Some(instructions) = p.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        let _ = writeln!(out, "  - instructions:");
        for line in instructions.trim_end().lines() {
            let _ = writeln!(out, "    > {line}");
        }
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
    for c in &p.checks {
        let result = match &c.last {
            Some(r) if r.passed => format!(
                ": passed at {} ({})",
                timefmt::utc(&r.evaluated_at),
                r.evaluated_by
            ),
            Some(r) => format!(
                ": **FAILED** at {} ({}): {}",
                timefmt::utc(&r.evaluated_at),
                r.evaluated_by,
                r.detail.as_deref().unwrap_or("did not pass")
            ),
            None if state_read => ": not evaluated yet".to_string(),
            None => String::new(),
        };
        let _ = writeln!(out, "  - {} `{}`{result}", c.purpose, c.name);
        sql_block(out, &c.sql);
    }
}

/// A migration phase's migration: its name, file and up section's SQL.
fn migration_lines(out: &mut String, name: &str, migrations: &MigrationSet) {
    let Some(file) = migrations.by_reference(name) else {
        let _ = writeln!(
            out,
            "  - migration: `{name}` (no such file in the migrations folder)"
        );
        return;
    };
    let how = if file.up.transactional {
        ""
    } else {
        ", run statement by statement outside a transaction"
    };
    let _ = writeln!(
        out,
        "  - migration: `{name}` (`{}`{how})",
        file.path.display()
    );
    sql_block(out, &file.up.sql);
}

/// SQL in a fenced block, indented under a list item.
fn sql_block(out: &mut String, sql: &str) {
    let _ = writeln!(out, "    ```sql");
    for line in sql.trim().lines() {
        let _ = writeln!(out, "    {line}");
    }
    let _ = writeln!(out, "    ```");
}

/// A fragment on one line, for inline code.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
