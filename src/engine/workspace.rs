//! What every command that touches a database works on: the migration
//! files, the plans, and a connection. Files are read and validated before
//! connecting, so bad input changes nothing.

use std::path::Path;

use crate::connect::ConnectionSettings;
use crate::engine::migrator::{self, MigrateOptions, MigrationStatus, Migrator};
use crate::engine::online_check;
use crate::engine::plan_runner::{PlanEngine, PlanOptions};
use crate::error::{Error, Result};
use crate::events::{Event, Reporter};
use crate::migration::MigrationSet;
use crate::migration::source::Format;
use crate::plan::ownership::add_owners;
use crate::plan::suggest;
use crate::plan::{LoadedPlan, Owners, PlanSet, PlanSpec};
use crate::stop::StopSignal;
use crate::store::Store;

/// The project's folders.
#[derive(Debug, Clone, Copy)]
pub struct Folders<'a> {
    pub migrations: &'a Path,
    /// The migrations folder's format; None: detected.
    pub format: Option<Format>,
    pub plans: &'a Path,
}

impl Folders<'_> {
    /// Read and validate the migrations, then the plans against them.
    pub fn read(&self) -> Result<(MigrationSet, PlanSet)> {
        let migrations = MigrationSet::load(self.migrations, self.format)?;
        let plans = PlanSet::load(self.plans, &migrations)?;
        Ok((migrations, plans))
    }
}

/// Files and a connection to one database.
pub struct Workspace {
    pub migrations: MigrationSet,
    pub plans: PlanSet,
    pub(crate) store: Store,
}

impl Workspace {
    /// Read the folders, then connect as `application_name`.
    pub async fn open(
        folders: Folders<'_>,
        connection: &ConnectionSettings,
        application_name: &str,
    ) -> Result<Workspace> {
        let (migrations, plans) = folders.read()?;
        let store = Store::open(connection, application_name).await?;
        Ok(Workspace {
            migrations,
            plans,
            store,
        })
    }

    /// Evaluate checks and guards as `role` (`--check-role`), if given.
    pub fn run_checks_as(&mut self, role: Option<&str>) {
        self.store.set_check_role(role.map(str::to_string));
    }

    /// Which migrations belong to plan phases, so are applied only through
    /// them: those of the plans in the folder, and those of every plan the
    /// database has started, even when its file is gone (a branch checkout
    /// must not let a contract migration run unguarded). A recorded plan
    /// whose definition cannot be read is an error: its migrations' owners
    /// are unknown, so nothing may run.
    pub async fn owners(&self) -> Result<Owners> {
        let (owners, mut unreadable) = self.read_owners().await?;
        match unreadable.len() {
            0 => Ok(owners),
            _ => Err(unreadable.remove(0)),
        }
    }

    /// `owners`, for commands that only show them: an unreadable recorded
    /// plan is a warning, and its migrations show no owner.
    pub async fn owners_to_show(&self, reporter: &dyn Reporter) -> Result<Owners> {
        let (owners, unreadable) = self.read_owners().await?;
        for problem in unreadable {
            reporter.report(Event::Warning {
                message: problem.to_string(),
            });
        }
        Ok(owners)
    }

    async fn read_owners(&self) -> Result<(Owners, Vec<Error>)> {
        let mut owners = self.plans.owners();
        let mut unreadable = Vec::new();
        for (plan, definition) in self.store.recorded_plan_definitions().await? {
            match serde_json::from_value::<PlanSpec>(definition) {
                Ok(spec) => add_owners(&mut owners, &plan, &spec),
                Err(e) => unreadable.push(Error::refused(
                    format!(
                        "cannot read the definition of plan {plan} recorded in the database ({e}); a newer orch may have written it, so which migrations it owns is unknown"
                    ),
                    Some("upgrade orch to the version that started the plan".to_string()),
                )),
            }
        }
        Ok((owners, unreadable))
    }

    /// `orch migrate status`: every migration, from the files and the
    /// database.
    pub async fn migration_statuses(&self, owners: &Owners) -> Result<Vec<MigrationStatus>> {
        let applied = self.store.applied_migrations().await?;
        Ok(migrator::status(&self.migrations, &applied, owners))
    }

    /// Whether a plan of this name is in the files or the database.
    pub async fn knows_plan(&self, name: &str) -> Result<bool> {
        Ok(self.plans.get(name).is_some() || self.store.plan_state(name).await?.is_some())
    }

    /// The error for a plan name that is neither in the files nor in the
    /// database: the closest name, and every plan there is.
    pub async fn unknown_plan(&self, name: &str) -> Result<Error> {
        let mut known: Vec<String> = self
            .plans
            .plans
            .iter()
            .map(|p| p.name().to_string())
            .collect();
        for (plan, _) in self.store.recorded_plan_definitions().await? {
            if !known.contains(&plan) {
                known.push(plan);
            }
        }
        known.sort();
        let known: Vec<&str> = known.iter().map(String::as_str).collect();
        Ok(Error::Usage(suggest::unknown_plan(
            name,
            &format!("in {} or the database", self.plans.dir.display()),
            &known,
        )))
    }
}

impl Workspace {
    /// The migration commands on this workspace.
    pub fn migrator<'a>(
        &'a self,
        owners: &'a Owners,
        options: &'a MigrateOptions,
        reporter: &'a dyn Reporter,
    ) -> Migrator<'a> {
        Migrator {
            store: &self.store,
            set: &self.migrations,
            owners,
            options,
            reporter,
        }
    }

    /// The plan commands on this workspace.
    pub fn plan_engine<'a>(
        &'a self,
        options: &'a PlanOptions,
        reporter: &'a dyn Reporter,
        stop: &'a StopSignal,
    ) -> PlanEngine<'a> {
        PlanEngine {
            store: &self.store,
            plans: &self.plans,
            migrations: &self.migrations,
            options,
            reporter,
            stop,
        }
    }
}

impl Workspace {
    /// `orch check --online`: what the database says of each phase of
    /// `plan`, checked against the schema as it will be when the phase runs
    /// (a preview in a transaction that is rolled back, see
    /// `engine::online_check`), by 0-based phase index: a backfill's table
    /// and key, whether guards and checks compile, a gate whose application
    /// version must stop writing a column that is still required.
    pub async fn check_online(&self, plan: &LoadedPlan) -> Vec<(usize, Result<String>)> {
        online_check::check_plan(&self.store, plan, &self.migrations, &self.plans.owners()).await
    }
}
