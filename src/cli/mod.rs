//! The command-line layer: parse arguments, call the engine, print results.
//! It never talks to the database itself.

pub mod args;
pub mod check;
pub mod checklist;
pub mod demo;
pub mod migrate;
pub mod plans;
pub mod plot;
pub mod progress;
pub mod report;
pub mod table;

use std::path::PathBuf;

use crate::connect::ConnectionSettings;
use crate::engine::workspace::{Folders, Workspace};
use crate::error::Result;
use crate::events::Reporter;

pub use args::Cli;

/// What every command needs besides its own arguments.
pub struct Context {
    pub database_url: Option<String>,
    pub migrations_dir: PathBuf,
    pub plans_dir: PathBuf,
    pub actor: String,
    pub reporter: Box<dyn Reporter>,
}

impl Context {
    pub fn from_args(global: &args::GlobalArgs) -> Context {
        Context {
            database_url: global.database_url.clone(),
            migrations_dir: global.migrations_dir.clone(),
            plans_dir: global.plans_dir.clone(),
            actor: crate::identity::actor(),
            reporter: Box::new(report::HumanReporter::new()),
        }
    }

    pub fn connection(&self) -> Result<ConnectionSettings> {
        ConnectionSettings::resolve(self.database_url.as_deref())
    }

    pub fn application_name(&self, command: &str) -> String {
        crate::identity::application_name(command, &self.actor)
    }

    /// The project's folders, read and validated, and a connection.
    pub async fn workspace(&self, command: &str) -> Result<Workspace> {
        let folders = Folders {
            migrations: &self.migrations_dir,
            plans: &self.plans_dir,
        };
        Workspace::open(
            folders,
            &self.connection()?,
            &self.application_name(command),
        )
        .await
    }
}

/// Run one parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Context::from_args(&cli.global);
    match cli.command {
        args::Command::Migrate { command } => migrate::run(&ctx, command).await,
        args::Command::Status { plan, json } => plans::status(&ctx, plan.as_deref(), json).await,
        args::Command::Advance {
            plan,
            locks,
            backfill,
        } => plans::act(&ctx, &plan, plans::Action::Advance, &locks, Some(&backfill)).await,
        args::Command::Confirm {
            plan,
            phase,
            by,
            note,
            locks,
        } => {
            let action = plans::Action::Confirm {
                phase: phase.as_deref(),
                by: &by,
                note: note.as_deref(),
            };
            plans::act(&ctx, &plan, action, &locks, None).await
        }
        args::Command::Rollback { plan, force, locks } => {
            plans::act(&ctx, &plan, plans::Action::Rollback { force }, &locks, None).await
        }
        args::Command::Pause { plan } => {
            let locks = args::LockArgs::defaults();
            plans::act(&ctx, &plan, plans::Action::Pause, &locks, None).await
        }
        args::Command::Checklist { plan } => checklist::run(&ctx, &plan).await,
        args::Command::Check { plans, online } => check::run(&ctx, &plans, online).await,
        args::Command::Demo(demo_args) => demo::run(&ctx, &demo_args).await,
    }
}
