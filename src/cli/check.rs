//! `orch check [PLAN...]`: validate plans and migrations without a
//! database (for CI), and lint every migration; `--online` also checks
//! them against the database; `--json` prints the lint's findings as JSON.

use crate::cli::Context;
use crate::engine::lint::roles;
use crate::engine::migrator::MigrationState;
use crate::error::{Error, Result};
use crate::lint::{self, Finding, Role, Rule};
use crate::migration::MigrationSet;
use crate::migration::transactional::check_transactional_statements;
use crate::plan::PlanSet;
use crate::plan::kinds;

pub async fn run(ctx: &Context, only: &[String], online: bool, json: bool) -> Result<()> {
    // With --json, stdout holds the findings and nothing else.
    let say = |line: String| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
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
    let mut catalog = lint::Catalog::default();
    // With a database: the pending migrations one `migrate up` applies
    // together, linted as one run (a table one creates is new in the next).
    let mut pending_plain: std::collections::HashSet<i64> = Default::default();
    // Plans the database found a problem with (not "ok").
    let mut not_ok = std::collections::HashSet::new();
    if online && problems.is_empty() {
        let workspace = ctx.workspace("check").await?;
        for plan in workspace.plans.plans.iter().filter(|p| selected(p.name())) {
            for (index, finding) in workspace.check_online(plan).await {
                match finding {
                    Ok(note) => say(format!(
                        "{}: phase {} {}: {note}",
                        plan.path.display(),
                        index + 1,
                        plan.spec.phases[index].id
                    )),
                    Err(e) => {
                        not_ok.insert(plan.path.clone());
                        problems.push(e)
                    }
                }
            }
        }
        catalog = workspace.lint_catalog().await?;
        let owners = workspace.owners_to_show(ctx.reporter.as_ref()).await?;
        pending_plain = workspace
            .migration_statuses(&owners)
            .await?
            .into_iter()
            .filter(|m| m.state == MigrationState::Pending && m.owner.is_none())
            .map(|m| m.version)
            .collect();
    }
    for plan in plans.plans.iter().filter(|p| selected(p.name())) {
        if !not_ok.contains(&plan.path)
            && !problems
                .iter()
                .any(|e| matches!(e, Error::InvalidPlan { path, .. } if *path == plan.path))
        {
            say(format!(
                "ok: {} ({} phases)",
                plan.path.display(),
                plan.spec.phases.len()
            ));
        }
    }
    // In the role the plan applying it gives; on its own, or with the
    // pending ones `migrate up` applies with it.
    let roles = roles(&plans, &migrations);
    let findings = lint::lint_folder(
        &migrations,
        catalog,
        |file| roles.get(&file.version).copied().unwrap_or(Role::Plain),
        |previous, file| {
            pending_plain.contains(&previous.version) && pending_plain.contains(&file.version)
        },
    );
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings).expect("findings serialise")
        );
    } else {
        for finding in &findings {
            println!("{}", finding.render());
        }
    }
    // A down section that cannot run in a transaction is refused when it is
    // about to run: only `down` would, so it is a warning here (an up
    // section's is the lint's needs-no-transaction).
    for file in &migrations.files {
        if let Some(Err(e)) = file
            .down
            .as_ref()
            .map(|down| check_transactional_statements(down, migrations.format))
        {
            say(format!(
                "warning: {e} (only `orch migrate down` runs this section, and refuses it as it is)"
            ));
        }
    }
    for note in &migrations.notes {
        say(format!("note: {note}"));
    }
    let blocking: Vec<&Finding> = findings.iter().filter(|f| f.blocks()).collect();
    if blocking.is_empty() {
        say(format!(
            "ok: {} ({} migrations, {} format)",
            ctx.migrations_dir.display(),
            migrations.files.len(),
            migrations.format
        ));
    } else {
        problems.push(Error::Lint {
            message: format!(
                "{}: the lint found {} error(s) (listed above)",
                ctx.migrations_dir.display(),
                blocking.len()
            ),
            syntax: blocking.iter().any(|f| f.rule == Rule::SyntaxError),
        });
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
            say(format!(
                "note: the tables and keys of backfill phases ({}) are checked against the database by `orch check --online`",
                backfills.join(", ")
            ));
        }
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        _ => Err(Error::Invalid(problems)),
    }
}
