//! `orch migrate ...`: wiring the command line to the migrator, and the
//! status table.

use crate::cli::Context;
use crate::cli::args::{LockArgs, MigrateCommand};
use crate::engine::adopt::Adopted;
use crate::engine::attention;
use crate::engine::migrator::{self, MigrateOptions, MigrationState, UpTarget};
use crate::engine::resolve::Resolution;
use crate::error::{Error, Result};
use crate::migration::MigrationSet;
use crate::migration::held_locks;
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
            fleet,
        } => {
            let target = match (count, to) {
                (Some(n), _) => UpTarget::Count(n),
                (None, Some(v)) => UpTarget::To(v),
                (None, None) => UpTarget::All,
            };
            let options = options(ctx, &locks, dry_run, allow_out_of_order, false);
            if let Some(group) = &fleet.targets {
                return crate::cli::fleet::migrate_up(ctx, &options, target, &fleet, group).await;
            }
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
        MigrateCommand::Status {
            json,
            exit_code,
            fleet,
        } => match &fleet.targets {
            Some(group) => {
                crate::cli::fleet::migrate_status(ctx, json, exit_code, &fleet, group).await
            }
            None => status(ctx, json, exit_code).await,
        },
        MigrateCommand::Adopt { from, wait } => {
            let options = options(ctx, &wait.locks(), false, false, false);
            let workspace = ctx.workspace("migrate adopt").await?;
            let owners = workspace.owners().await?;
            let migrator = workspace.migrator(&owners, &options, ctx.reporter.as_ref());
            print_adopted(&migrator.adopt(from).await?);
            Ok(())
        }
        MigrateCommand::Baseline { version, wait } => {
            let options = options(ctx, &wait.locks(), false, false, false);
            let workspace = ctx.workspace("migrate baseline").await?;
            let owners = workspace.owners().await?;
            let migrator = workspace.migrator(&owners, &options, ctx.reporter.as_ref());
            let done = migrator.baseline(version).await?;
            if done.marked.is_empty() {
                println!(
                    "nothing to mark: orch already records all {} migrations up to {version} as applied",
                    done.already
                );
            } else {
                println!(
                    "marked {} as applied without running {} (baseline {version}):",
                    count(done.marked.len()),
                    if done.marked.len() == 1 { "it" } else { "them" }
                );
                print_ids(&done.marked);
            }
            Ok(())
        }
        MigrateCommand::Resolve {
            version,
            applied,
            rolled_back,
            file_removed,
            accept_changed,
            wait,
        } => {
            let resolution = match (applied, rolled_back, file_removed, accept_changed) {
                (true, ..) => Resolution::Applied,
                (_, true, ..) => Resolution::RolledBack,
                (_, _, true, _) => Resolution::FileRemoved,
                (.., true) => Resolution::AcceptChanged,
                _ => {
                    return Err(Error::Usage(
                        "resolve VERSION needs one of --applied, --rolled-back (a dirty migration), --file-removed or --accept-changed (an applied one)".to_string(),
                    ));
                }
            };
            let options = options(ctx, &wait.locks(), false, false, false);
            let workspace = ctx.workspace("migrate resolve").await?;
            let owners = workspace.owners().await?;
            let migrator = workspace.migrator(&owners, &options, ctx.reporter.as_ref());
            let resolved = migrator.resolve(version, resolution).await?;
            println!("{}", resolved.summary);
            if let Some(note) = resolved.plan_note {
                println!("{note}");
            }
            Ok(())
        }
    }
}

/// "1 migration", "3 migrations".
fn count(n: usize) -> String {
    match n {
        1 => "1 migration".to_string(),
        n => format!("{n} migrations"),
    }
}

/// Migration ids, one a line; for hundreds, the first and last few.
fn print_ids(ids: &[String]) {
    const ALL_UP_TO: usize = 20;
    const ENDS: usize = 5;
    if ids.len() <= ALL_UP_TO {
        for id in ids {
            println!("  {id}");
        }
        return;
    }
    for id in &ids[..ENDS] {
        println!("  {id}");
    }
    println!("  ... {} more ...", ids.len() - 2 * ENDS);
    for id in &ids[ids.len() - ENDS..] {
        println!("  {id}");
    }
}

fn print_adopted(adopted: &Adopted) {
    let (tool, table) = (adopted.tool, &adopted.table);
    if adopted.recorded.is_empty() {
        println!(
            "nothing to adopt: orch already records all {} migrations {tool} applied ({table})",
            adopted.already
        );
    } else {
        let already = match adopted.already {
            0 => String::new(),
            n => format!("; {} it applied were recorded already", count(n)),
        };
        println!(
            "adopted {} from {tool}'s {table}, recorded as applied without running them{already}:",
            count(adopted.recorded.len())
        );
        print_ids(&adopted.recorded);
    }
    println!(
        "{table} was left as it is: {tool} still reads its own history, so the team can switch back to {tool}"
    );
}

fn options(
    ctx: &Context,
    locks: &LockArgs,
    dry_run: bool,
    allow_out_of_order: bool,
    allow_changed: bool,
) -> MigrateOptions {
    MigrateOptions {
        policy: locks.policy(&ctx.config),
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
        "HELD".to_string(),
        "NOTE".to_string(),
    ]];
    for r in &rows {
        let (at, by, duration, held) = match &r.applied {
            // Adopted, baseline and resolved rows ran no SQL of orch's.
            Some(a) if a.ran_to_the_end() => (
                timefmt::utc(&a.applied_at),
                a.applied_by.clone(),
                timefmt::millis(a.duration_ms),
                // None: recorded by an orch that did not look at locks.
                a.locks
                    .as_deref()
                    .map(held_locks::summary)
                    .unwrap_or_default(),
            ),
            Some(a) => (
                timefmt::utc(&a.applied_at),
                a.applied_by.clone(),
                String::new(),
                String::new(),
            ),
            None => Default::default(),
        };
        let mut notes = Vec::new();
        if let Some(dirty) = r.applied.as_ref().and_then(|a| a.dirty.as_ref()) {
            notes.push(format!(
                "stopped at {}: {}; fix by hand, then `orch migrate resolve {} --applied` or `--rolled-back`",
                dirty.place(),
                dirty.error_line(),
                r.version
            ));
        }
        if let Some(o) = &r.owner {
            notes.push(format!(
                "plan {}, phase {} ({})",
                o.plan, o.position, o.phase
            ));
        }
        table.push(vec![
            r.version.to_string(),
            r.name.clone(),
            r.state.label().to_string(),
            at,
            by,
            duration,
            held,
            notes.join("; "),
        ]);
    }
    print!("{}", crate::cli::table::render(&table));
    let counted = |state| rows.iter().filter(|r| r.state == state).count();
    let mut summary = format!(
        "{} migrations, {} pending",
        rows.len(),
        counted(MigrationState::Pending)
    );
    match counted(MigrationState::Dirty) {
        0 => {}
        n => summary.push_str(&format!(", {n} dirty")),
    }
    println!("{summary}");
    Ok(rows)
}
