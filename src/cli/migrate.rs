//! `orch migrate ...`: wiring the command line to the migrator, and the
//! status table.

use crate::cli::Context;
use crate::cli::args::{LockArgs, MigrateCommand};
use crate::engine::attention;
use crate::engine::migrator::{self, MigrateOptions, UpTarget};
use crate::error::{Error, Result};
use crate::migration::MigrationSet;
use crate::timefmt;

pub async fn run(ctx: &Context, command: MigrateCommand) -> Result<()> {
    match command {
        MigrateCommand::Create { name } => create(ctx, &name),
        MigrateCommand::Up {
            count,
            to,
            dry_run,
            allow_out_of_order,
            locks,
        } => {
            let target = match (count, to) {
                (Some(n), _) => UpTarget::Count(n),
                (None, Some(v)) => UpTarget::To(v),
                (None, None) => UpTarget::All,
            };
            let options = options(ctx, &locks, dry_run, allow_out_of_order, false);
            let workspace = ctx.workspace("migrate up").await?;
            let owners = workspace.owners().await?;
            let migrator = workspace.migrator(&owners, &options, ctx.reporter.as_ref());
            migrator.up(target).await.map(|_| ())
        }
        MigrateCommand::Down {
            count,
            dry_run,
            allow_changed,
            locks,
        } => {
            let options = options(ctx, &locks, dry_run, false, allow_changed);
            let workspace = ctx.workspace("migrate down").await?;
            let owners = workspace.owners().await?;
            let migrator = workspace.migrator(&owners, &options, ctx.reporter.as_ref());
            migrator.down(count).await.map(|_| ())
        }
        MigrateCommand::Redo {
            dry_run,
            allow_changed,
            locks,
        } => {
            let options = options(ctx, &locks, dry_run, false, allow_changed);
            let workspace = ctx.workspace("migrate redo").await?;
            let owners = workspace.owners().await?;
            let migrator = workspace.migrator(&owners, &options, ctx.reporter.as_ref());
            migrator.redo().await.map(|_| ())
        }
        MigrateCommand::Status { json, exit_code } => status(ctx, json, exit_code).await,
    }
}

fn options(
    ctx: &Context,
    locks: &LockArgs,
    dry_run: bool,
    allow_out_of_order: bool,
    allow_changed: bool,
) -> MigrateOptions {
    MigrateOptions {
        policy: locks.policy(),
        dry_run,
        allow_out_of_order,
        allow_changed,
        actor: ctx.actor.clone(),
        lock_wait: locks.lock_wait,
        cancel_orphans: locks.cancel_orphans,
    }
}

fn create(ctx: &Context, name: &str) -> Result<()> {
    let set = MigrationSet::load(&ctx.migrations_dir, ctx.format)?;
    for path in crate::migration::set::create(&set, name, chrono::Utc::now())? {
        println!("created {}", path.display());
    }
    Ok(())
}

async fn status(ctx: &Context, json: bool, exit_code: bool) -> Result<()> {
    let rows = print_status(ctx, json).await?;
    if exit_code {
        attention::migrations(&rows)?;
    }
    Ok(())
}

/// Print the status table (or JSON) and hand the rows back.
async fn print_status(ctx: &Context, json: bool) -> Result<Vec<migrator::MigrationStatus>> {
    let workspace = ctx.workspace("migrate status").await?;
    let owners = workspace.owners_to_show(ctx.reporter.as_ref()).await?;
    let rows = workspace.migration_statuses(&owners).await?;
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
        return Ok(rows);
    }
    if rows.is_empty() {
        println!("no migrations in {}", ctx.migrations_dir.display());
        return Ok(rows);
    }
    let mut table = vec![vec![
        "VERSION".to_string(),
        "NAME".to_string(),
        "STATE".to_string(),
        "APPLIED AT".to_string(),
        "BY".to_string(),
        "DURATION".to_string(),
        "NOTE".to_string(),
    ]];
    for r in &rows {
        let (at, by, duration) = match &r.applied {
            Some(a) => (
                timefmt::utc(&a.applied_at),
                a.applied_by.clone(),
                timefmt::millis(a.duration_ms),
            ),
            None => (String::new(), String::new(), String::new()),
        };
        let note = r
            .owner
            .as_ref()
            .map(|o| format!("plan {}, phase {} ({})", o.plan, o.position, o.phase))
            .unwrap_or_default();
        table.push(vec![
            r.version.to_string(),
            r.name.clone(),
            r.state.label().to_string(),
            at,
            by,
            duration,
            note,
        ]);
    }
    print!("{}", crate::cli::table::render(&table));
    let pending = rows
        .iter()
        .filter(|r| r.state == migrator::MigrationState::Pending)
        .count();
    println!("{} migrations, {pending} pending", rows.len());
    Ok(rows)
}
