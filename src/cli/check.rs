//! `orch check [PLAN...]`: validate plans and migrations without a
//! database (for CI); `--online` also checks them against the database.

use crate::cli::Context;
use crate::error::{Error, Result};
use crate::migration::MigrationSet;
use crate::plan::PlanSet;
use crate::plan::format::PhaseKind;
use crate::store::Store;

pub async fn run(ctx: &Context, only: &[String], online: bool) -> Result<()> {
    let migrations = MigrationSet::load(&ctx.migrations_dir)?;
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
        let store = Store::open(&ctx.connection()?, &ctx.application_name("check")).await?;
        for plan in plans.plans.iter().filter(|p| selected(p.name())) {
            for (i, phase) in plan.spec.phases.iter().enumerate() {
                if let (PhaseKind::Backfill, Some(spec)) = (phase.kind, &phase.backfill) {
                    match crate::backfill::check_table(&store, spec).await {
                        Ok(note) => println!(
                            "{}: phase {} {}: {note}",
                            plan.path.display(),
                            i + 1,
                            phase.id
                        ),
                        Err(e) => problems.push(plan.error_at(
                            &crate::plan::load::phase_path(i, &["backfill", "table"]),
                            e.to_string(),
                        )),
                    }
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
    println!(
        "ok: {} ({} migrations)",
        ctx.migrations_dir.display(),
        migrations.files.len()
    );
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
                    .filter(|phase| phase.kind == PhaseKind::Backfill)
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
