//! A migration phase: advancing it applies its migration (with the
//! guard evaluated again under the migration's locks), recorded in the
//! migration's own transaction; rolling it back runs the down section.

use futures_util::future::BoxFuture;
use serde_json::json;

use crate::engine::dirty::{dirty_record, refuse_dirty};
use crate::engine::lint as lint_gate;
use crate::engine::migrator::{empty_up, record as migration_record};
use crate::engine::phases::{
    DryRun, PhaseWork, Preview, PreviewChange, Step, Undo, migration_preview, sync_contract,
};
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::engine::section_runner::{Ended, SectionJob, SectionRunner};
use crate::error::{Error, Result};
use crate::events::{Direction, Event, WouldDo};
use crate::lint;
use crate::migration::Migration;
use crate::migration::transactional::check_transactional_statements;
use crate::plan::format::{PhaseKind, PhaseSpec, Role};
use crate::plan::state::{PhaseCommand, transition};
use crate::plan::{AuditAction, LoadedPlan, MigrationOwner};
use crate::store::bookkeeping::Bookkeeping;
use crate::store::migrations::{AppliedMigration, Origin};
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

    fn dry_run<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        dry: &'a DryRun<'a>,
    ) -> BoxFuture<'a, Result<WouldDo>> {
        Box::pin(migration_preview::describe(engine, dry))
    }

    fn change_in_preview<'a>(
        &'a self,
        preview: &'a Preview<'a>,
        index: usize,
    ) -> BoxFuture<'a, PreviewChange> {
        Box::pin(migration_preview::apply_in_preview(preview, index))
    }
}

/// The migration phase `spec` applies (validation made sure it exists; a
/// file removed since is refused).
pub(super) fn migration_of<'a>(
    engine: &'a PlanEngine<'_>,
    spec: &PhaseSpec,
) -> Result<&'a Migration> {
    let name = spec.migration.as_deref().unwrap_or_default();
    engine
        .migrations
        .find(name)
        .map_err(|why| Error::refused(format!("phase {}: {why}", spec.id), None))
}

/// Refuse what `advance` refuses before taking any lock: a file that
/// cannot run as it is.
pub(super) fn check_runnable(
    engine: &PlanEngine<'_>,
    plan: &LoadedPlan,
    index: usize,
    file: &Migration,
) -> Result<()> {
    let spec = &plan.spec.phases[index];
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
    Ok(())
}

/// The phase's migration in the history, if it is there: refused while a
/// migration is dirty, and when it was applied outside the plan; returned
/// when the operator resolved it as applied after this phase stopped in it.
pub(super) fn already_applied<'a>(
    plan: &LoadedPlan,
    index: usize,
    file: &Migration,
    applied: &'a [AppliedMigration],
) -> Result<Option<&'a AppliedMigration>> {
    let spec = &plan.spec.phases[index];
    refuse_dirty(
        applied,
        &format!(
            "run phase {} ({}) of plan {}",
            index + 1,
            spec.id,
            plan.name()
        ),
    )?;
    let Some(applied) = applied.iter().find(|a| a.version == file.version) else {
        return Ok(None);
    };
    if resolved_by_this_phase(applied, plan.name(), &spec.id) {
        return Ok(Some(applied));
    }
    Err(Error::refused(
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
    ))
}

/// The lint of phase `index`'s migration, before anything runs: the
/// phase's role says what the migration may remove, the database how big
/// its tables are. An error not allowed is the refusal.
pub(crate) async fn lint_phase(
    engine: &PlanEngine<'_>,
    plan: &LoadedPlan,
    index: usize,
    file: &Migration,
) -> Result<Vec<lint::Finding>> {
    let spec = &plan.spec.phases[index];
    let doing = format!(
        "run phase {} ({}) of plan {}",
        index + 1,
        spec.id,
        plan.name()
    );
    let catalog = lint_gate::catalog(engine.store, &[file]).await?;
    let findings = lint::lint_run(
        engine.migrations,
        &[file],
        lint_gate::role(spec.role),
        catalog,
    );
    match lint::refusal(&findings, &doing) {
        Some(refusal) => Err(refusal),
        None => Ok(findings),
    }
}

/// Before a plan is first recorded: its first phase's migration must pass
/// the lint, so a refusal records nothing (not even orch's schema).
pub(crate) async fn lint_first_phase(engine: &PlanEngine<'_>, plan: &LoadedPlan) -> Result<()> {
    let Some(spec) = plan.spec.phases.first() else {
        return Ok(());
    };
    if spec.kind != PhaseKind::Migration {
        return Ok(());
    }
    let file = migration_of(engine, spec)?;
    check_runnable(engine, plan, 0, file)?;
    lint_phase(engine, plan, 0, file).await.map(|_| ())
}

async fn apply(engine: &PlanEngine<'_>, step: Step<'_>) -> Result<()> {
    let (plan, spec, index) = (step.plan, step.spec(), step.index);
    let file = migration_of(engine, spec)?;
    check_runnable(engine, plan, index, file)?;
    let findings = lint_phase(engine, plan, index, file).await?;
    lint_gate::report(engine.reporter, &findings);
    let allowed: Vec<&lint::Finding> = findings.iter().collect();
    let _history = engine.migrations_lock().await?;
    let applied = engine.store.applied_migrations().await?;
    if let Some(resolved) = already_applied(plan, index, file, &applied)? {
        return finish_resolved(engine, step, file, resolved).await;
    }
    let running = step.started.clone();
    let triggers = match spec.role {
        Some(Role::Contract) => sync_contract::contract_drops(engine, plan, index, step.phases),
        _ => None,
    };
    if let Some(triggers) = &triggers
        && !file.up.transactional
    {
        return Err(Error::refused(
            format!(
                "phase {} ({}) of plan {} is a contract after a sync phase whose trigger is installed ({}), but {} runs outside a transaction (transaction:false): orch drops the trigger in the contract migration's own transaction",
                index + 1,
                spec.id,
                plan.name(),
                triggers.triggers.join(", "),
                file.id()
            ),
            Some("move the statements that cannot run in a transaction into a migration phase of their own, after the contract".to_string()),
        ));
    }
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
        version: file.version,
        id: &id,
        path: &file.up.path,
        section: &file.up,
        direction: Direction::Up,
        recheck: &step.recheck,
        before: triggers.as_ref().map(|t| t.sql.as_str()),
        after: None,
        place: None,
    };
    let runner = SectionRunner::new(engine.store, &engine.options.policy, engine.reporter).await?;
    let result = runner
        .run(&job, |ended| {
            let stats = match ended {
                Ended::Done(stats) => stats,
                // The phase's failure is recorded with the error, after.
                Ended::HalfDone(dirty) => {
                    return vec![dirty_record(
                        file,
                        &engine.options.actor,
                        dirty,
                        Some(&owner),
                    )];
                }
            };
            let mut done = running.clone();
            done.state = transition(PhaseKind::Migration, running.state, PhaseCommand::Succeed)
                .expect("a running migration may succeed");
            done.finished_at =
                Some(step.now + chrono::Duration::from_std(stats.duration).unwrap_or_default());
            let dropped: Vec<&String> = triggers.iter().flat_map(|t| &t.triggers).collect();
            let mut result = json!({
                "migration": id,
                "duration_ms": stats.duration.as_millis() as u64,
                "execution_ms": stats.execution.as_millis() as u64,
                "attempts": stats.attempts,
            });
            if !dropped.is_empty() {
                result["sync_triggers_dropped"] = json!(dropped);
            }
            done.result = Some(result);
            let mut records = vec![
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
                        "locks": stats.locks,
                    }),
                ),
            ];
            records.extend(triggers.iter().flat_map(|t| t.records.iter().cloned()));
            records.extend(lint_gate::allowed_records(
                &allowed,
                file,
                &engine.options.actor,
                Some((plan.name(), &spec.id)),
            ));
            records
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
    let spec = undo.spec();
    let doing = format!(
        "roll back phase {} ({}) of plan {}",
        undo.index + 1,
        spec.id,
        undo.plan.name()
    );
    if !undo.work_done {
        // Failed or interrupted before it applied: only the state goes back
        // (not while a migration is half-applied: it may be this one).
        refuse_dirty(&engine.store.applied_migrations().await?, &doing)?;
        engine.store.commit_bookkeeping(&undo.records).await?;
        return Ok(String::new());
    }
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
    // A down section holds locks like any other: linted in its own role.
    let catalog = lint_gate::revert_catalog(engine.store, &[file]).await?;
    let findings = lint::lint_revert(engine.migrations, &[file], false, catalog);
    if let Some(refusal) = lint::refusal(&findings, &doing) {
        return Err(refusal);
    }
    lint_gate::report(engine.reporter, &findings);
    let restores = match spec.role {
        Some(Role::Contract) => match engine.store.plan_state(undo.plan.name()).await? {
            Some((_, phases)) => {
                sync_contract::contract_restores(engine, undo.plan, undo.index, &phases)
            }
            None => None,
        },
        None | Some(Role::Expand) => None,
    };
    if let Some(restores) = &restores
        && !down.transactional
    {
        return Err(Error::refused(
            format!(
                "phase {} ({}) dropped the sync trigger(s) {}, which rolling it back installs again in its down section's transaction, but {}'s down section runs outside a transaction",
                undo.index + 1,
                spec.id,
                restores.triggers.join(", "),
                file.id()
            ),
            None,
        ));
    }
    let _history = engine.migrations_lock().await?;
    let applied = engine.store.applied_migrations().await?;
    refuse_dirty(&applied, &doing)?;
    let id = file.id();
    if !applied.iter().any(|a| a.version == file.version) {
        // Its down section stopped half-way before, and the operator
        // resolved it as rolled back: the phase only goes back.
        engine.store.commit_bookkeeping(&undo.records).await?;
        return Ok(format!(
            "{id} was already reverted (resolved as rolled back by hand); nothing ran"
        ));
    }
    let job = SectionJob {
        version: file.version,
        id: &id,
        path: &down.path,
        section: down,
        direction: Direction::Down,
        recheck: &[],
        before: None,
        after: restores.as_ref().map(|t| t.sql.as_str()),
        place: None,
    };
    let owner = MigrationOwner {
        plan: undo.plan.name().to_string(),
        position: undo.index + 1,
        phase: spec.id.clone(),
    };
    let runner = SectionRunner::new(engine.store, &engine.options.policy, engine.reporter).await?;
    runner
        .run(&job, |ended| match ended {
            Ended::Done(_) => {
                let mut records = vec![Bookkeeping::MigrationReverted {
                    version: file.version,
                }];
                records.extend(lint_gate::allowed_records(
                    &lint_gate::of(&findings, down),
                    file,
                    &engine.options.actor,
                    Some((undo.plan.name(), spec.id.as_str())),
                ));
                records.extend(undo.records.iter().cloned());
                records.extend(restores.iter().flat_map(|t| t.records.iter().cloned()));
                records
            }
            Ended::HalfDone(dirty) => vec![dirty_record(
                file,
                &engine.options.actor,
                dirty,
                Some(&owner),
            )],
        })
        .await?;
    match &restores {
        Some(restores) => Ok(format!(
            "reverted {id}; installed the sync trigger(s) it had dropped again: {}",
            restores.triggers.join(", ")
        )),
        None => Ok(format!("reverted {id}")),
    }
}

/// Whether `applied` is this phase's migration, stopped half-way while the
/// phase ran it and since resolved as applied by the operator.
fn resolved_by_this_phase(applied: &AppliedMigration, plan: &str, phase: &str) -> bool {
    applied.origin == Origin::Resolved
        && applied.plan.as_deref() == Some(plan)
        && applied.phase.as_deref() == Some(phase)
}

/// The phase's migration stopped half-way and the operator finished it by
/// hand (`orch migrate resolve V --applied`): the phase is done without
/// running anything again.
async fn finish_resolved(
    engine: &PlanEngine<'_>,
    step: Step<'_>,
    file: &Migration,
    applied: &AppliedMigration,
) -> Result<()> {
    let (plan, spec, index) = (step.plan, step.spec(), step.index);
    let running = step.started.clone();
    let mut done = running.clone();
    done.state = transition(PhaseKind::Migration, running.state, PhaseCommand::Succeed)
        .expect("a running migration may succeed");
    done.finished_at = Some(step.now);
    let detail = json!({
        "migration": file.id(),
        "resolved_by": applied.applied_by,
        "resolved_at": applied.applied_at,
    });
    done.result = Some(detail.clone());
    engine
        .store
        .commit_bookkeeping(&[
            Bookkeeping::Phase(Box::new(done)),
            engine.event(
                plan.name(),
                Some(&spec.id),
                AuditAction::MigrationApplied,
                detail,
            ),
        ])
        .await?;
    engine.reporter.report(Event::PhaseDone {
        plan: plan.name().to_string(),
        position: index + 1,
        id: spec.id.clone(),
        summary: format!(
            "{} was resolved as applied by hand ({}, {}); nothing ran",
            file.id(),
            applied.applied_by,
            timefmt::utc(&applied.applied_at)
        ),
        confirm_command: confirm_command(plan.name(), &spec.id),
    });
    Ok(())
}
