//! `orch plan new RECIPE NAME`: read what the recipe needs of the database
//! (when one is configured), let the recipe generate the plan, and write it
//! with its migrations in the folder's format, refusing to overwrite
//! anything: an existing plan of that name, or a migration of a name the
//! plan would use, stops it before any file is written.

use std::path::{Path, PathBuf};

use crate::connect::ConnectionSettings;
use crate::engine::workspace::Folders;
use crate::error::{Error, Result};
use crate::migration::MigrationSet;
use crate::migration::source::{self, write_new_file};
use crate::plan::PlanSpec;
use crate::recipe::{Catalog, Recipe, migration_name};
use crate::store::Store;

/// What `orch plan new` wrote.
#[derive(Debug)]
pub struct Written {
    /// The plan file.
    pub plan: PathBuf,
    /// The migration files, in apply order.
    pub migrations: Vec<PathBuf>,
    /// What the recipe could not verify or fill in.
    pub notes: Vec<String>,
    /// Whether the catalog was read.
    pub with_database: bool,
}

/// Generate plan `plan` with `recipe` and write it. `command` is the
/// command line, recorded at the top of the plan. With `connection`, the
/// recipe's tables and counts are read first.
pub async fn plan_new(
    folders: Folders<'_>,
    recipe: &dyn Recipe,
    plan: &str,
    command: &str,
    connection: Option<(&ConnectionSettings, &str)>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Written> {
    check_plan_name(plan)?;
    let plan_path = folders.plans.join(format!("{plan}.yaml"));
    for existing in [plan_path.clone(), folders.plans.join(format!("{plan}.yml"))] {
        if existing.exists() {
            return Err(Error::refused(
                format!(
                    "{} exists already: orch plan new never overwrites a plan",
                    existing.display()
                ),
                Some(format!(
                    "choose another NAME, or remove {} yourself if it is not needed",
                    existing.display()
                )),
            ));
        }
    }
    let set = MigrationSet::load(folders.migrations, folders.format)?;
    let catalog = match connection {
        Some((settings, application_name)) => {
            let store = Store::open(settings, application_name).await?;
            refuse_a_recorded_plan(&store, plan).await?;
            Some(read_catalog(&store, recipe).await?)
        }
        None => None,
    };
    let draft = recipe.generate(plan, catalog.as_ref())?;
    for migration in &draft.migrations {
        let name = migration_name(plan, &migration.suffix);
        if let Some(existing) = set.files.iter().find(|f| f.name == name) {
            return Err(Error::refused(
                format!(
                    "a migration named {name} exists already ({}): the plan would refer to it",
                    existing.path.display()
                ),
                Some("choose another plan NAME".to_string()),
            ));
        }
    }
    let yaml = draft.render(plan, command);
    // What a recipe writes must be a plan orch reads: a bug here must not
    // leave files behind.
    if let Err(e) = serde_yaml::from_str::<PlanSpec>(&yaml) {
        return Err(Error::failed(format!(
            "recipe {} generated a plan orch cannot read ({e}); nothing was written (a bug: please report it)",
            recipe.name()
        )));
    }
    let mut written = Vec::new();
    let result = write_all(
        folders,
        &draft.migrations,
        plan,
        now,
        &yaml,
        &plan_path,
        &mut written,
    );
    if let Err(e) = result {
        for path in written.iter().rev() {
            let _ = std::fs::remove_file(path);
        }
        return Err(e);
    }
    written.retain(|path| *path != plan_path);
    Ok(Written {
        plan: plan_path,
        migrations: written,
        notes: draft.notes,
        with_database: catalog.is_some(),
    })
}

fn write_all(
    folders: Folders<'_>,
    migrations: &[crate::recipe::DraftMigration],
    plan: &str,
    now: chrono::DateTime<chrono::Utc>,
    yaml: &str,
    plan_path: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<()> {
    for migration in migrations {
        // Read again: the versions just written are taken.
        let set = MigrationSet::load(folders.migrations, folders.format)?;
        let name = migration_name(plan, &migration.suffix);
        let files =
            source::open(set.format, &set.dir).write(&set, &name, now, &migration.content)?;
        written.extend(files);
    }
    std::fs::create_dir_all(folders.plans)
        .map_err(|e| Error::io("cannot create the plans directory", folders.plans, e))?;
    write_new_file(plan_path, yaml).map_err(|e| match e {
        Error::Io { path, source, .. } => Error::io("cannot create the plan file", path, source),
        other => other,
    })?;
    written.push(plan_path.to_path_buf());
    Ok(())
}

/// A plan whose file was deleted may still have records in orch's state
/// (`orch.plans`, `orch.phases`): a new plan of that name would be read as
/// that one, with its phases' states, so it is refused.
async fn refuse_a_recorded_plan(store: &Store, plan: &str) -> Result<()> {
    let Some((record, phases)) = store.plan_state(plan).await? else {
        return Ok(());
    };
    Err(Error::refused(
        format!(
            "plan {plan} has records in orch's state already (orch.plans: started {} by {}{}, from {}; {} phase record(s) in orch.phases), although its file is gone: a new plan of that name would be taken for that one",
            record.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            record.started_by,
            match record.completed_at {
                Some(at) => format!(", completed {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
                None => ", not completed".to_string(),
            },
            record.file,
            phases.len()
        ),
        Some(format!(
            "choose another NAME; or, if {} should still be there, restore it from version control (`orch status {plan}` shows where it stands)",
            record.file
        )),
    ))
}

/// A plan's name is its file's name: lowercase letters, digits, `-`, `_`.
fn check_plan_name(plan: &str) -> Result<()> {
    let ok = !plan.is_empty()
        && plan
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(Error::Usage(format!(
            "plan name {plan:?}: use lowercase letters, digits, - and _ (it becomes plans/{plan}.yaml)"
        ))),
    }
}

/// The recipe's tables as the catalog has them, then its counts.
async fn read_catalog(store: &Store, recipe: &dyn Recipe) -> Result<Catalog> {
    let mut catalog = Catalog::default();
    for table in recipe.tables() {
        if let Some(shape) = store.table_shape(&table).await? {
            catalog.tables.insert(table, shape);
        }
    }
    for probe in recipe.probes(&catalog) {
        let count = store.probe(&probe).await?;
        catalog.counts.insert(probe, count);
    }
    Ok(catalog)
}
