//! A dirty migration: a `transaction:false` section that stopped half-way,
//! so the database is partly changed. orch records it (`Ended::HalfDone`)
//! and refuses every command that would run or record migrations until
//! the operator fixed the database by hand and said how it ended (`orch
//! migrate resolve VERSION --applied | --rolled-back`).

use crate::error::{Error, Result};
use crate::migration::Migration;
use crate::plan::MigrationOwner;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::migrations::{AppliedMigration, DirtyState};
use crate::timefmt;

/// Refuse to `doing` ("apply migrations") while a migration is dirty,
/// naming the statement that failed and the commands that resolve it.
pub fn refuse_dirty(applied: &[AppliedMigration], doing: &str) -> Result<()> {
    let dirty: Vec<&AppliedMigration> = applied.iter().filter(|a| a.is_dirty()).collect();
    let Some(first) = dirty.first() else {
        return Ok(());
    };
    let described: Vec<String> = dirty.iter().map(|a| describe(a)).collect();
    Err(Error::refused(
        format!(
            "refusing to {doing}: {}\n  fix the database by hand so that each is either fully applied or not applied at all, then record which",
            described.join("\n  ")
        ),
        Some(resolve_commands(first.version)),
    ))
}

/// `orch migrate resolve V --applied` (...) or `... --rolled-back` (...).
pub fn resolve_commands(version: i64) -> String {
    format!(
        "`orch migrate resolve {version} --applied` (all of it is in the database now) or `orch migrate resolve {version} --rolled-back` (none of it is left)"
    )
}

/// One dirty migration in words: what stopped where, and why.
pub fn describe(row: &AppliedMigration) -> String {
    let owner = match (&row.plan, &row.phase) {
        (Some(plan), Some(phase)) => format!(", in plan {plan}, phase {phase}"),
        _ => String::new(),
    };
    match &row.dirty {
        Some(dirty) => format!(
            "migration {} is dirty: its {} section runs outside a transaction and stopped half-way at {}:{} (statement {} of {}; the {} before it ran and stay applied): {} (recorded on {} by {}{owner})",
            row.id(),
            dirty.direction,
            dirty.file,
            dirty.line,
            dirty.statement,
            dirty.statements,
            dirty.completed,
            dirty.error_line(),
            timefmt::utc(&row.applied_at),
            row.applied_by
        ),
        None => format!(
            "migration {} is dirty (recorded on {} by {}{owner})",
            row.id(),
            timefmt::utc(&row.applied_at),
            row.applied_by
        ),
    }
}

/// The record of `file` stopped half-way (`owner`: the plan phase running it).
pub fn dirty_record(
    file: &Migration,
    actor: &str,
    dirty: &DirtyState,
    owner: Option<&MigrationOwner>,
) -> Bookkeeping {
    Bookkeeping::MigrationDirty {
        version: file.version,
        name: file.name.clone(),
        checksum: file.checksum.clone(),
        applied_by: actor.to_string(),
        plan: owner.map(|o| o.plan.clone()),
        phase: owner.map(|o| o.phase.clone()),
        dirty: dirty.clone(),
    }
}
