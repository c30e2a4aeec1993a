//! `orch check [PLAN...]`: validate plans and migrations without a
//! database (for CI); `--online` also checks them against the database.

use crate::cli::Context;
use crate::error::{Error, Result};
use crate::migration::MigrationSet;
use crate::migration::transactional::check_transactional_statements;
use crate::plan::PlanSet;
use crate::plan::kinds;

pub async fn run(ctx: &Context, only: &[String], online: bool) -> Result<()> {
    let migrations = MigrationSet::load(&ctx.migrations_dir, ctx.format)?;
    let (plans, problems) = PlanSet::load_all(&ctx.plans_dir, &migrations)?;
    let selected = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut problems: Vec<Error> = problems
        .into_iter()
        .filter(|e| match e {
            Error::InvalidPlan { path, .. } => path
                .file_stem()
                .and_then(|s| s.to_str())
                .is_none_or(selected),
            _ => true,
        })
        .collect();
    for name in only {
        let exists_as_file = ["yaml", "yml"]
            .iter()
            .any(|ext| ctx.plans_dir.join(format!("{name}.{ext}")).exists());
        if !exists_as_file {
            problems.push(Error::Usage(format!(
                "no plan file for {name:?} in {}",
                ctx.plans_dir.display()
            )));
        }
    }
    if online && problems.is_empty() {
        let workspace = ctx.workspace("check").await?;
        for plan in workspace.plans.plans.iter().filter(|p| selected(p.name())) {
            for (index, finding) in workspace.check_online(plan).await {
                match finding {
                    Ok(note) => println!(
                        "{}: phase {} {}: {note}",
                        plan.path.display(),
                        index + 1,
                        plan.spec.phases[index].id
                    ),
                    Err(e) => problems.push(e),
                }
            }
        }
    }
    for plan in plans.plans.iter().filter(|p| selected(p.name())) {
        if !problems
            .iter()
            .any(|e| matches!(e, Error::InvalidPlan { path, .. } if *path == plan.path))
        {
            println!(
                "ok: {} ({} phases)",
                plan.path.display(),
                plan.spec.phases.len()
            );
        }
    }
    // A section that cannot run in a transaction is refused when it is
    // about to run: an error for an up section (`up` runs it), a warning
    // for a down section (only `down` would).
    let mut unfit_ups = 0;
    for file in &migrations.files {
        if let Err(e) = check_transactional_statements(&file.up, migrations.format) {
            problems.push(e);
            unfit_ups += 1;
        }
        if let Some(Err(e)) = file
            .down
            .as_ref()
            .map(|down| check_transactional_statements(down, migrations.format))
        {
            println!(
                "warning: {e} (only `orch migrate down` runs this section, and refuses it as it is)"
            );
        }
    }
    for note in &migrations.notes {
        println!("note: {note}");
    }
    if unfit_ups == 0 {
        println!(
            "ok: {} ({} migrations, {} format)",
            ctx.migrations_dir.display(),
            migrations.files.len(),
            migrations.format
        );
    }
    if !online {
        // Whether a backfill's table has a usable key is a fact of the
        // database; say that it was not looked at.
        let backfills: Vec<String> = plans
            .plans
            .iter()
            .filter(|p| selected(p.name()))
            .flat_map(|p| {
                p.spec
                    .phases
                    .iter()
                    .filter(|phase| kinds::rules(phase.kind).checked_online())
                    .map(move |phase| format!("{}/{}", p.name(), phase.id))
            })
            .collect();
        if !backfills.is_empty() {
            println!(
                "note: the tables and keys of backfill phases ({}) are checked against the database by `orch check --online`",
                backfills.join(", ")
            );
        }
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        _ => Err(Error::Invalid(problems)),
    }
}
