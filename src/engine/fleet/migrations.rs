//! Migrations across a fleet: `migrate up` and `migrate status` on every
//! target, each with its own history in its own database.

use std::sync::Arc;

use serde::Serialize;

use crate::engine::fleet::{FleetReporter, ProjectFolders, Target, TargetOutcome, each};
use crate::engine::migrator::{MigrateOptions, MigrationState, MigrationStatus, UpTarget};

/// `orch migrate up --targets NAME`: what was applied on each target.
pub async fn up(
    folders: &ProjectFolders,
    targets: &[Target],
    options: &MigrateOptions,
    target: UpTarget,
    application_name: &str,
    parallel: usize,
    reporters: &Arc<dyn FleetReporter>,
) -> Vec<TargetOutcome<String>> {
    each(targets, parallel, reporters, |db, reporter| {
        let (folders, options, name) = (
            folders.clone(),
            options.clone(),
            application_name.to_string(),
        );
        async move {
            let workspace = folders.open(&db, &name).await?;
            let owners = workspace.owners().await?;
            let migrator = workspace.migrator(&owners, &options, reporter.as_ref());
            let done = migrator.up(target).await?;
            let mut text = match done.applied.len() {
                0 => "nothing to apply".to_string(),
                n => format!("applied {n}: {}", done.applied.join(", ")),
            };
            if let Some((id, owner)) = done.stopped_before {
                text.push_str(&format!(
                    "; stopped before {id} (plan {}, phase {})",
                    owner.plan, owner.phase
                ));
            }
            Ok(text)
        }
    })
    .await
}

/// One target's migrations, counted by state.
#[derive(Debug, Serialize)]
pub struct MigrationCounts {
    pub counts: Vec<(String, usize)>,
    pub migrations: Vec<MigrationStatus>,
}

impl MigrationCounts {
    /// `3 applied, 1 pending`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(state, n)| format!("{n} {state}"))
            .collect();
        if parts.is_empty() {
            "no migrations".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// Something waits: pending, changed, missing or dirty.
    pub fn needs_attention(&self) -> bool {
        self.migrations.iter().any(|m| {
            matches!(
                m.state,
                MigrationState::Pending
                    | MigrationState::Changed
                    | MigrationState::Missing
                    | MigrationState::Dirty
            )
        })
    }
}

/// `orch migrate status --targets NAME`.
pub async fn status(
    folders: &ProjectFolders,
    targets: &[Target],
    application_name: &str,
    parallel: usize,
    reporters: &Arc<dyn FleetReporter>,
) -> Vec<TargetOutcome<MigrationCounts>> {
    each(targets, parallel, reporters, |db, reporter| {
        let (folders, name) = (folders.clone(), application_name.to_string());
        async move {
            let workspace = folders.open(&db, &name).await?;
            let owners = workspace.owners_to_show(reporter.as_ref()).await?;
            let migrations = workspace.migration_statuses(&owners).await?;
            let mut counts: Vec<(String, usize)> = Vec::new();
            for m in &migrations {
                let state = m.state.label().to_string();
                match counts.iter_mut().find(|(s, _)| *s == state) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((state, 1)),
                }
            }
            Ok(MigrationCounts { counts, migrations })
        }
    })
    .await
}
