//! A migration phase: advancing it applies its migration (with the
//! guard evaluated again under the migration's locks), recorded in the
//! migration's own transaction; rolling it back runs the down section.

use futures_util::future::BoxFuture;
use serde_json::json;

use crate::engine::migrator::{empty_up, record as migration_record};
use crate::engine::phases::{PhaseWork, Step, Undo};
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::engine::section_runner::{SectionJob, SectionRunner};
use crate::error::{Error, Result};
use crate::events::{Direction, Event};
use crate::migration::Migration;
use crate::migration::transactional::check_transactional_statements;
use crate::plan::format::{PhaseKind, PhaseSpec};
use crate::plan::state::{PhaseCommand, transition};
use crate::plan::{AuditAction, MigrationOwner};
use crate::store::bookkeeping::Bookkeeping;
use crate::timefmt;

pub(crate) struct MigrationPhase;

impl PhaseWork for MigrationPhase {
    fn advance<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        step: Step<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(apply(engine, step))
    }

    fn rollback<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        undo: Undo<'a>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(revert(engine, undo))
    }
}

/// The migration phase `spec` applies (validation made sure it exists; a
/// file removed since is refused).
fn migration_of<'a>(engine: &'a PlanEngine<'_>, spec: &PhaseSpec) -> Result<&'a Migration> {
    let name = spec.migration.as_deref().unwrap_or_default();
    engine
        .migrations
        .find(name)
        .map_err(|why| Error::refused(format!("phase {}: {why}", spec.id), None))
}

async fn apply(engine: &PlanEngine<'_>, step: Step<'_>) -> Result<()> {
    let (plan, spec, index) = (step.plan, step.spec(), step.index);
    let file = migration_of(engine, spec)?;
    check_transactional_statements(&file.up, engine.migrations.format)?;
    if let Some(empty) = empty_up(file) {
        return Err(Error::refused(
            format!(
                "phase {} ({}) of plan {}: {empty}",
                index + 1,
                spec.id,
                plan.name()
            ),
            None,
        ));
    }
    let _history = engine.migrations_lock().await?;
    if let Some(applied) = engine
        .store
        .applied_migrations()
        .await?
        .iter()
        .find(|a| a.version == file.version)
    {
        return Err(Error::refused(
            format!(
                "phase {} ({}) applies {}, but it is already applied (on {} by {}); it was applied outside the plan",
                index + 1,
                spec.id,
                file.id(),
                timefmt::utc(&applied.applied_at),
                applied.applied_by
            ),
            Some(format!(
                "revert it with `orch migrate down` first, or remove phase {} from the plan",
                spec.id
            )),
        ));
    }
    let running = step.started.clone();
    if !file.up.transactional {
        // Statements run one by one: record that the phase is running first.
        engine
            .store
            .commit_bookkeeping(&[Bookkeeping::Phase(Box::new(running.clone()))])
            .await?;
    }
    let owner = MigrationOwner {
        plan: plan.name().to_string(),
        position: index + 1,
        phase: spec.id.clone(),
    };
    let id = file.id();
    let job = SectionJob {
        id: &id,
        path: &file.up.path,
        section: &file.up,
        direction: Direction::Up,
        recheck: &step.recheck,
    };
    let runner = SectionRunner::new(engine.store, &engine.options.policy, engine.reporter).await?;
    let result = runner
        .run(&job, |stats| {
            let mut done = running.clone();
            done.state = transition(PhaseKind::Migration, running.state, PhaseCommand::Succeed)
                .expect("a running migration may succeed");
            done.finished_at =
                Some(step.now + chrono::Duration::from_std(stats.duration).unwrap_or_default());
            done.result = Some(json!({
                "migration": id,
                "duration_ms": stats.duration.as_millis() as u64,
                "execution_ms": stats.execution.as_millis() as u64,
                "attempts": stats.attempts,
            }));
            vec![
                migration_record(
                    file,
                    Direction::Up,
                    &engine.options.actor,
                    stats,
                    Some(&owner),
                ),
                Bookkeeping::Phase(Box::new(done)),
                engine.event(
                    plan.name(),
                    Some(&spec.id),
                    AuditAction::MigrationApplied,
                    json!({
                        "migration": id,
                        "duration_ms": stats.duration.as_millis() as u64,
                        "attempts": stats.attempts,
                    }),
                ),
            ]
        })
        .await;
    match result {
        Ok(stats) => {
            engine.reporter.report(Event::PhaseDone {
                plan: plan.name().to_string(),
                position: index + 1,
                id: spec.id.clone(),
                summary: format!(
                    "applied {} in {}{}",
                    file.id(),
                    timefmt::duration(stats.duration),
                    if stats.attempts > 1 {
                        format!(" ({} attempts)", stats.attempts)
                    } else {
                        String::new()
                    }
                ),
                confirm_command: confirm_command(plan.name(), &spec.id),
            });
            Ok(())
        }
        Err(e) => Err(engine.fail(plan, running, e).await),
    }
}

async fn revert(engine: &PlanEngine<'_>, undo: Undo<'_>) -> Result<String> {
    if !undo.work_done {
        // Failed or interrupted before it applied: only the state goes back.
        engine.store.commit_bookkeeping(&undo.records).await?;
        return Ok(String::new());
    }
    let spec = undo.spec();
    let file = migration_of(engine, spec)?;
    let down = file
        .down
        .as_ref()
        .filter(|d| !d.is_empty() || d.says_nothing_to_undo())
        .ok_or_else(|| {
            Error::refused(
                format!(
                    "phase {} ({}): {} has no down section, so it cannot be rolled back",
                    undo.index + 1,
                    spec.id,
                    file.path.display()
                ),
                None,
            )
        })?;
    check_transactional_statements(down, engine.migrations.format)?;
    let _history = engine.migrations_lock().await?;
    let id = file.id();
    let job = SectionJob {
        id: &id,
        path: &down.path,
        section: down,
        direction: Direction::Down,
        recheck: &[],
    };
    let runner = SectionRunner::new(engine.store, &engine.options.policy, engine.reporter).await?;
    runner
        .run(&job, |_| {
            let mut records = vec![Bookkeeping::MigrationReverted {
                version: file.version,
            }];
            records.extend(undo.records.iter().cloned());
            records
        })
        .await?;
    Ok(format!("reverted {id}"))
}
