//! A fleet: the same command on every database of a target group
//! (orch.toml's `[targets.NAME]`, `--targets NAME`). Each target keeps its
//! own state in its own database and runs the single-target engine
//! unchanged; this module resolves the group into targets, runs the work on
//! at most `parallel` of them at once (a failure stops that target only),
//! and collects one outcome per target. What the verbs decide across the
//! fleet (the plan's definition agrees, the canary, the all-or-nothing
//! gate) is in `plans.rs`, `confirm.rs` and `status.rs`; `docs/config.md` describes it for operators.

pub mod confirm;
pub mod migrations;
pub mod plans;
pub mod status;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{Config, Environment, Located, TargetGroup};
use crate::connect::ConnectionSettings;
use crate::engine::workspace::{Folders, Workspace};
use crate::error::{Error, Result};
use crate::events::Reporter;
use crate::migration::source::Format;
use crate::store::fleet::list_databases;

/// One database of a fleet.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in output: the database name for databases listed by a
    /// query, else `host:port/dbname`. Never holds a password.
    pub label: String,
    pub settings: ConnectionSettings,
}

/// Where a fleet's events go: one reporter per target (a progress bar or
/// lines prefixed with its name), and when each target starts and ends.
pub trait FleetReporter: Send + Sync {
    /// The reporter of `target`'s events.
    fn target(&self, target: &str) -> Arc<dyn Reporter>;
    /// Work on `target` started.
    fn started(&self, target: &str);
    /// Work on `target` ended, well or not.
    fn ended(&self, target: &str, ok: bool);
}

/// The project's folders, owned, for work that outlives the caller's borrow.
#[derive(Debug, Clone)]
pub struct ProjectFolders {
    pub migrations: PathBuf,
    pub format: Option<Format>,
    pub plans: PathBuf,
}

impl ProjectFolders {
    pub fn borrow(&self) -> Folders<'_> {
        Folders {
            migrations: &self.migrations,
            format: self.format,
            plans: &self.plans,
        }
    }

    /// Read the folders and connect to `target`.
    pub async fn open(&self, target: &Target, application_name: &str) -> Result<Workspace> {
        Workspace::open(self.borrow(), &target.settings, application_name).await
    }
}

/// What happened on one target.
#[derive(Debug, Serialize)]
pub struct TargetOutcome<T> {
    pub target: String,
    #[serde(flatten)]
    pub result: Outcome<T>,
}

/// A target's result: done (with what it did), or its error.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    Done(T),
    #[serde(serialize_with = "error_text")]
    Failed(Error),
}

fn error_text<S: serde::Serializer>(
    error: &Error,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(&error.to_string())
}

impl<T> Outcome<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Outcome::Done(value) => Some(value),
            Outcome::Failed(_) => None,
        }
    }
}

/// The error a fleet command ends with when some targets failed (each was
/// named with its error in the table printed before): exit code of the
/// first failed target.
pub fn failures<T>(outcomes: &[TargetOutcome<T>], what: &str) -> Result<()> {
    let failed: Vec<(&str, &Error)> = outcomes
        .iter()
        .filter_map(|o| match &o.result {
            Outcome::Failed(e) => Some((o.target.as_str(), e)),
            Outcome::Done(_) => None,
        })
        .collect();
    match failed.first() {
        None => Ok(()),
        Some((_, first)) => Err(Error::Targets {
            message: format!(
                "{what} failed on {} of {} targets: {}; a rerun continues each target where it stands",
                failed.len(),
                outcomes.len(),
                names(failed.iter().map(|(t, _)| *t))
            ),
            code: first.code(),
        }),
    }
}

/// Target names for a message: the first few, then how many more.
pub fn names<'a>(targets: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 8;
    let all: Vec<&str> = targets.collect();
    let mut text = all
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if all.len() > SHOWN {
        text.push_str(&format!(" and {} more", all.len() - SHOWN));
    }
    text
}

/// The targets of `group`: each URL (variables expanded), and the
/// databases its query lists on its server.
pub async fn resolve(
    config: &Config,
    group: &TargetGroup,
    env: &Environment,
    application_name: &str,
) -> Result<Vec<Target>> {
    let key = |field: &str| format!("targets.{}.{field}", group.name);
    let settings_of = |located: &Located<String>, field: &str| -> Result<ConnectionSettings> {
        let text = env.expand(&located.value).map_err(|e| {
            config.error_at(located.line, located.column, format!("{}: {e}", key(field)))
        })?;
        ConnectionSettings::resolve_with(Some(&text), |name| env.real(name)).map_err(|e| {
            let message = e.to_string().replace("--database-url", &key(field));
            config.error_at(located.line, located.column, message)
        })
    };
    let mut targets = Vec::new();
    for located in &group.urls {
        let settings = settings_of(located, "urls")?;
        targets.push(Target {
            label: settings.label(),
            settings,
        });
    }
    if let Some(located) = &group.url {
        let server = settings_of(located, "url")?;
        match &group.databases {
            None => targets.push(Target {
                label: server.label(),
                settings: server,
            }),
            Some(query) => {
                let what = format!(
                    "the query of {} ({}:{})",
                    key("databases"),
                    config
                        .path
                        .as_deref()
                        .unwrap_or(std::path::Path::new("orch.toml"))
                        .display(),
                    query.line
                );
                let names = list_databases(&server, &query.value, application_name, &what).await?;
                if names.is_empty() {
                    return Err(Error::refused(
                        format!("{what} listed no databases on {}", server.label()),
                        None,
                    ));
                }
                for name in names {
                    targets.push(Target {
                        label: name.clone(),
                        settings: server.with_dbname(&name),
                    });
                }
            }
        }
    }
    // Two URLs naming one database would run everything twice on it.
    let mut seen = BTreeMap::new();
    for target in &targets {
        let place = target.settings.label();
        if let Some(first) = seen.insert(place.clone(), target.label.clone()) {
            return Err(Error::Usage(format!(
                "--targets {}: {first} and {} are the same database ({place}); each target must be named once",
                group.name, target.label
            )));
        }
    }
    Ok(targets)
}

/// Run `work` on every target, at most `parallel` at once, each in its own
/// task: an error (or a panic) ends that target's work only. Outcomes are
/// in target order.
pub async fn each<T, F, Fut>(
    targets: &[Target],
    parallel: usize,
    reporters: &Arc<dyn FleetReporter>,
    work: F,
) -> Vec<TargetOutcome<T>>
where
    F: Fn(Target, Arc<dyn Reporter>) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let limit = Arc::new(Semaphore::new(parallel.max(1)));
    let mut tasks = JoinSet::new();
    let mut index_of = BTreeMap::new();
    for (index, target) in targets.iter().enumerate() {
        let future = work(target.clone(), reporters.target(&target.label));
        let (limit, reporters, label) = (limit.clone(), reporters.clone(), target.label.clone());
        let handle = tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            reporters.started(&label);
            let result = future.await;
            reporters.ended(&label, result.is_ok());
            result
        });
        index_of.insert(handle.id(), index);
    }
    let mut results: Vec<Option<Result<T>>> = targets.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next_with_id().await {
        match joined {
            Ok((id, result)) => results[index_of[&id]] = Some(result),
            Err(e) => {
                let index = index_of[&e.id()];
                reporters.ended(&targets[index].label, false);
                results[index] = Some(Err(Error::failed(format!(
                    "orch's work on {} ended abnormally ({e}); nothing more was done there",
                    targets[index].label
                ))));
            }
        }
    }
    targets
        .iter()
        .zip(results)
        .map(|(target, result)| TargetOutcome {
            target: target.label.clone(),
            result: match result {
                Some(Ok(value)) => Outcome::Done(value),
                Some(Err(e)) => Outcome::Failed(e),
                None => Outcome::Failed(Error::failed("not run")),
            },
        })
        .collect()
}
