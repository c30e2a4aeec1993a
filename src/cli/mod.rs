//! The command-line layer: parse arguments, call the engine, print results.
//! It never talks to the database itself.

pub(crate) mod args;
pub(crate) mod check;
pub(crate) mod checklist;
pub(crate) mod color;
pub(crate) mod demo;
pub(crate) mod fleet;
pub(crate) mod fleet_progress;
pub(crate) mod fleet_status;
pub(crate) mod generate;
#[cfg(test)]
mod help_check;
pub(crate) mod migrate;
pub(crate) mod plan_new;
pub(crate) mod plans;
pub(crate) mod plot;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod table;
pub(crate) mod wait;

use std::path::PathBuf;

use crate::config::{self, Config, Environment};
use crate::connect::ConnectionSettings;
use crate::engine::workspace::{Folders, Workspace};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::events::Reporter;
use crate::migration::source::Format;

pub use args::Cli;

/// Parse the process's arguments, with clap's help and errors coloured as
/// `color` decides for everything else.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().color(color::for_clap()).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// What every command needs besides its own arguments.
pub struct Context {
    pub database_url: Option<String>,
    pub migrations_dir: PathBuf,
    pub format: Option<Format>,
    pub plans_dir: PathBuf,
    pub actor: String,
    pub reporter: Box<dyn Reporter>,
    /// orch.toml (empty when there is none).
    pub config: Config,
    /// The process's environment, then `.env`.
    pub env: Environment,
}

impl Context {
    /// The settings of the command line, else their environment variables
    /// (clap reads those), else orch.toml, else orch's defaults; `.env` in
    /// the current directory supplies `DATABASE_URL` and the variables of
    /// target URLs when the environment lacks them.
    pub fn from_args(global: &args::GlobalArgs) -> Result<Context> {
        let cwd = std::env::current_dir()
            .map_err(|e| Error::io("cannot read the current directory", ".", e))?;
        let config = Config::find_and_load(global.config.as_deref(), &cwd)?;
        let env = config::environment(&cwd)?;
        Ok(Context {
            database_url: global.database_url.clone(),
            migrations_dir: global
                .migrations_dir
                .clone()
                .or_else(|| config.migrations_dir.clone())
                .unwrap_or_else(|| PathBuf::from("migrations")),
            format: global.format.or(config.format),
            plans_dir: global
                .plans_dir
                .clone()
                .or_else(|| config.plans_dir.clone())
                .unwrap_or_else(|| PathBuf::from("plans")),
            actor: crate::identity::actor(),
            reporter: Box::new(report::HumanReporter::new()),
            config,
            env,
        })
    }

    /// `--database-url`, else `DATABASE_URL` (the environment's, else
    /// `.env`'s), else libpq's `PG*` variables.
    pub fn connection(&self) -> Result<ConnectionSettings> {
        ConnectionSettings::resolve_with(self.database_url.as_deref(), |name| match name {
            "DATABASE_URL" => self.env.get(name),
            _ => self.env.real(name),
        })
    }

    pub fn application_name(&self, command: &str) -> String {
        crate::identity::application_name(command, &self.actor)
    }

    /// The project's folders, read and validated, and a connection.
    pub async fn workspace(&self, command: &str) -> Result<Workspace> {
        let folders = Folders {
            migrations: &self.migrations_dir,
            format: self.format,
            plans: &self.plans_dir,
        };
        let workspace = Workspace::open(
            folders,
            &self.connection()?,
            &self.application_name(command),
        )
        .await?;
        // `orch check` prints them as notes itself.
        if command != "check" {
            for note in &workspace.migrations.notes {
                self.reporter.report(Event::Warning {
                    message: note.clone(),
                });
            }
        }
        Ok(workspace)
    }
}

/// Run one parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let ctx = Context::from_args(&cli.global)?;
    match cli.command {
        args::Command::Migrate { command } => migrate::run(&ctx, command).await,
        args::Command::Status {
            plan,
            json,
            exit_code,
            fleet,
            errors,
        } => match &fleet.targets {
            Some(group) if exit_code => Err(Error::Usage(format!(
                "--exit-code is for one database; with --targets {group}, `status --json` has every target's state"
            ))),
            Some(group) if errors => Err(Error::Usage(format!(
                "--errors is for one database; run `orch status PLAN --errors` against each target of {group}"
            ))),
            Some(group) => {
                self::fleet_status::status(&ctx, plan.as_deref(), json, &fleet, group).await
            }
            None => match (errors, plan.as_deref()) {
                (true, Some(plan)) => plans::status_errors(&ctx, plan, json).await,
                _ => plans::status(&ctx, plan.as_deref(), json, exit_code).await,
            },
        },
        args::Command::Advance {
            plan,
            dry_run,
            canary,
            locks,
            backfill,
            checks,
            fleet,
        } => {
            let role = checks.check_role.as_deref();
            if let Some(group) = &fleet.targets {
                let action = self::fleet::FleetAction::Advance {
                    dry_run,
                    canary,
                    backfill: &backfill,
                };
                return self::fleet::act(&ctx, &plan, action, &locks, &fleet, group, role).await;
            }
            let action = plans::Action::Advance { dry_run };
            plans::act(&ctx, &plan, action, &locks, Some(&backfill), role).await
        }
        args::Command::Confirm {
            plan,
            phase,
            by,
            note,
            locks,
            checks,
            fleet,
        } => {
            let role = checks.check_role.as_deref();
            if let Some(group) = &fleet.targets {
                let action = self::fleet::FleetAction::Confirm {
                    phase: phase.as_deref(),
                    by: &by,
                    note: note.as_deref(),
                };
                return self::fleet::act(&ctx, &plan, action, &locks, &fleet, group, role).await;
            }
            let action = plans::Action::Confirm {
                phase: phase.as_deref(),
                by: &by,
                note: note.as_deref(),
            };
            plans::act(&ctx, &plan, action, &locks, None, role).await
        }
        args::Command::Rollback {
            plan,
            phase,
            force,
            by,
            note,
            locks,
            fleet,
        } => {
            if let Some(group) = &fleet.targets {
                let action = self::fleet::FleetAction::Rollback {
                    phase: phase.as_deref(),
                    force,
                    by: by.as_deref(),
                    note: note.as_deref(),
                };
                return self::fleet::act(&ctx, &plan, action, &locks, &fleet, group, None).await;
            }
            let action = plans::Action::Rollback {
                phase: phase.as_deref(),
                force,
                by: by.as_deref(),
                note: note.as_deref(),
            };
            plans::act(&ctx, &plan, action, &locks, None, None).await
        }
        args::Command::Pause { plan } => {
            let locks = args::LockArgs::defaults();
            plans::act(&ctx, &plan, plans::Action::Pause, &locks, None, None).await
        }
        args::Command::Backfill {
            plan,
            phase,
            locks,
            backfill,
        } => {
            let action = plans::Action::Backfill { phase: &phase };
            plans::act(&ctx, &plan, action, &locks, Some(&backfill), None).await
        }
        args::Command::Checklist { plan, fleet } => match &fleet.targets {
            Some(group) => self::fleet_status::checklist(&ctx, &plan, &fleet, group).await,
            None => checklist::run(&ctx, &plan).await,
        },
        args::Command::Check {
            plans,
            online,
            json,
        } => check::run(&ctx, &plans, online, json).await,
        args::Command::Demo(demo_args) => demo::run(&ctx, &demo_args).await,
        args::Command::Wait { timeout } => wait::run(&ctx, timeout).await,
        args::Command::Plan {
            command: args::PlanCommand::New { recipe },
        } => plan_new::run(&ctx, recipe).await,
        args::Command::Completions { shell } => generate::completions(shell),
        args::Command::Man { dir } => generate::man(dir.as_deref()),
    }
}
