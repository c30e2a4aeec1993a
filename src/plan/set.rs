//! Every plan of a folder, each validated against the migrations, with
//! the rules across plans (unique names, one owner per migration).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::MigrationSet;
use crate::plan::load::{LoadedPlan, phase_path};
use crate::plan::ownership::{Owners, add_owners};
use crate::plan::validate;
use crate::yaml_locate::PathSeg;

/// Every plan of a directory, validated against the migrations.
#[derive(Debug, Clone, Default)]
pub struct PlanSet {
    pub dir: PathBuf,
    pub plans: Vec<LoadedPlan>,
}

impl PlanSet {
    /// Load and validate every `*.yaml` / `*.yml` file of `dir` (a missing
    /// directory has no plans). Every problem of every file is reported.
    pub fn load(dir: &Path, migrations: &MigrationSet) -> Result<PlanSet> {
        let (set, problems) = Self::load_all(dir, migrations)?;
        match problems.len() {
            0 => Ok(set),
            1 => Err(problems.into_iter().next().expect("one problem")),
            _ => Err(Error::Invalid(problems)),
        }
    }

    /// Like `load`, but returns the valid plans and the problems separately
    /// (for `orch check`, which reports per file).
    pub fn load_all(dir: &Path, migrations: &MigrationSet) -> Result<(PlanSet, Vec<Error>)> {
        let mut paths = Vec::new();
        let mut problems = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io("cannot list plans", dir, e))?;
                    let path = entry.path();
                    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
                    if !is_yaml {
                        continue;
                    }
                    // Follows links: a link to a plan is a plan.
                    match std::fs::metadata(&path) {
                        Ok(meta) if meta.is_file() => paths.push(path),
                        Ok(_) => problems.push(not_a_plan(&path, "it is a directory, not a file")),
                        Err(e) => problems.push(not_a_plan(
                            &path,
                            &format!("it cannot be read ({e}); a broken or looping link?"),
                        )),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot list plans", dir, e)),
        }
        paths.sort();
        let mut plans = Vec::new();
        for path in paths {
            match LoadedPlan::load(&path) {
                Ok(plan) => {
                    let errors = validate::validate(&plan, migrations);
                    if errors.is_empty() {
                        plans.push(plan);
                    } else {
                        problems.extend(errors);
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        problems.extend(cross_plan_problems(&plans));
        Ok((
            PlanSet {
                dir: dir.to_path_buf(),
                plans,
            },
            problems,
        ))
    }

    pub fn get(&self, name: &str) -> Option<&LoadedPlan> {
        self.plans.iter().find(|p| p.name() == name)
    }

    /// The plan named `name`, or the error naming the closest plan and every
    /// plan in the folder.
    pub fn require(&self, name: &str) -> Result<&LoadedPlan> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.plans.iter().map(|p| p.name()).collect();
            Error::Usage(crate::plan::suggest::unknown_plan(
                name,
                &format!("in {}", self.dir.display()),
                &known,
            ))
        })
    }

    /// Which migration each plan phase owns.
    pub fn owners(&self) -> Owners {
        let mut owners = Owners::new();
        for plan in &self.plans {
            add_owners(&mut owners, plan.name(), &plan.spec);
        }
        owners
    }
}

/// A `.yaml` entry of the plans folder that is no plan file: said, not
/// skipped (a plan that silently does not exist is worse).
fn not_a_plan(path: &Path, why: &str) -> Error {
    Error::InvalidPlan {
        path: path.to_path_buf(),
        line: 1,
        column: 1,
        field: "(file)".to_string(),
        message: format!("not a plan file: {why}"),
    }
}

/// Rules across plans: unique names, a migration owned by one plan only.
fn cross_plan_problems(plans: &[LoadedPlan]) -> Vec<Error> {
    let mut problems = Vec::new();
    let mut names: HashMap<&str, &LoadedPlan> = HashMap::new();
    let mut owned: HashMap<&str, (&LoadedPlan, usize)> = HashMap::new();
    for plan in plans {
        if let Some(first) = names.insert(plan.name(), plan) {
            problems.push(plan.error_at(
                &[PathSeg::Key("plan".into())],
                format!(
                    "plan name {:?} is also used by {}",
                    plan.name(),
                    first.path.display()
                ),
            ));
        }
        for (i, phase) in plan.spec.phases.iter().enumerate() {
            let Some(migration) = phase.migration.as_deref() else {
                continue;
            };
            if let Some((other, j)) = owned.insert(migration, (plan, i))
                && other.name() != plan.name()
            {
                problems.push(plan.error_at(
                        &phase_path(i, &["migration"]),
                        format!(
                            "migration {migration:?} is already owned by plan {}, phase {} ({}); a migration belongs to one plan",
                            other.name(),
                            j + 1,
                            other.spec.phases[j].id
                        ),
                    ));
            }
        }
    }
    problems
}
