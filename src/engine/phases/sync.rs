//! A sync phase: advancing it installs a trigger that keeps the new
//! columns computed from the old ones (and back, with `down`), in one short
//! transaction under lock_timeout with orch's retries, together with the
//! phase's record; the record names the trigger, so `status`, rollback and
//! the plan's contract phase find it. Rolling it back drops the trigger.
//! The contract phase's side (drop with its migration, restore when it is
//! rolled back) is in `sync_contract`. What the trigger does:
//! docs/plan-format.md, "Sync".

use std::path::Path;

use futures_util::future::BoxFuture;
use serde_json::json;

use crate::engine::online_check::waited_too_long;
use crate::engine::phases::{DryRun, PhaseWork, Step, Undo};
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::engine::section_runner::{Ended, RunStats, SectionJob, SectionRunner};
use crate::error::{Error, Result};
use crate::events::{Direction, Event, NamedSql, WouldDo};
use crate::migration::Section;
use crate::plan::format::{PhaseKind, PhaseSpec, SyncSpec};
use crate::plan::load::phase_path;
use crate::plan::records::SyncTriggerRecord;
use crate::plan::state::{PhaseCommand, transition};
use crate::plan::{AuditAction, LoadedPlan};
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::sync_trigger::{self, SyncTable};
use crate::yaml_locate::PathSeg;

pub(crate) struct SyncPhase;

impl PhaseWork for SyncPhase {
    fn advance<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        step: Step<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(install(engine, step))
    }

    fn rollback<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        undo: Undo<'a>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(uninstall(engine, undo))
    }

    fn dry_run<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        dry: &'a DryRun<'a>,
    ) -> BoxFuture<'a, Result<WouldDo>> {
        Box::pin(describe(engine, dry))
    }

    fn check_online<'a>(
        &'a self,
        store: &'a Store,
        plan: &'a LoadedPlan,
        index: usize,
    ) -> BoxFuture<'a, Option<Result<String>>> {
        Box::pin(async move {
            plan.spec.phases[index].sync.as_ref()?;
            Some(verify(store, plan, index).await.map(|table| {
                let mut note = format!(
                    "{}.{}: its columns exist and its expressions compile",
                    table.schema, table.name
                );
                if let Some(warning) = defaults_warning(plan, index, &table) {
                    note.push_str(&format!("; warning: {warning}"));
                }
                note
            }))
        })
    }
}

fn sync_spec(spec: &PhaseSpec) -> &SyncSpec {
    spec.sync
        .as_ref()
        .expect("validated: sync phases have a sync section")
}

/// The table of sync phase `index` as it is now: it exists, has every
/// column the phase names, and each expression compiles as the value of
/// its column. A problem is an error at its place in the plan file (a wait
/// for a lock stays as it is: it is the database's, not the plan's).
async fn verify(store: &Store, plan: &LoadedPlan, index: usize) -> Result<SyncTable> {
    let spec = sync_spec(&plan.spec.phases[index]);
    let at = |path: Vec<PathSeg>, e: Error| {
        if waited_too_long(&e) {
            e
        } else {
            plan.error_at(&path, e.to_string())
        }
    };
    let table = store
        .sync_table(&spec.table)
        .await
        .map_err(|e| at(phase_path(index, &["sync", "table"]), e))?;
    for (field, columns) in [("old", &spec.old), ("new", &spec.new)] {
        for (j, column) in columns.iter().enumerate() {
            let mut path = phase_path(index, &["sync", field]);
            path.push(PathSeg::Index(j));
            if !table.columns.contains(column) {
                return Err(plan.error_at(
                    &path,
                    format!(
                        "column {column:?} of {}.{} does not exist at this point of the plan",
                        table.schema, table.name
                    ),
                ));
            }
            if table.generated.contains(column) {
                return Err(plan.error_at(
                    &path,
                    format!(
                        "column {column:?} of {}.{} is a generated column: a trigger cannot write it",
                        table.schema, table.name
                    ),
                ));
            }
        }
    }
    let sides = [("up", Some(&spec.up)), ("down", spec.down.as_ref())];
    for (field, map) in sides {
        for (column, expression) in map.into_iter().flatten() {
            if let Err(d) = store
                .compile_sync_expression(&table, column, expression)
                .await
            {
                let error = Error::Sql {
                    context: format!(
                        "the expression for {column} does not compile against {}.{}",
                        table.schema, table.name
                    ),
                    diagnostic: Box::new(d),
                };
                return Err(at(phase_path(index, &["sync", field, column]), error));
            }
        }
    }
    Ok(table)
}

/// Synced columns whose default makes the trigger misbehave: on INSERT it
/// cannot tell a default from a written value, so such a column always
/// counts as written (docs/plan-format.md, "Sync"). That matters for
/// - a `new` column with a default: an insert of the old version looks
///   like it wrote both sides, and the new column keeps its default
///   instead of `up`;
/// - an `old` column with a default when the phase has `down`: an insert
///   of the new version looks like it wrote both sides, and the old column
///   keeps its default instead of `down`. Without `down` the trigger does
///   nothing on such an insert either way, so the default changes nothing
///   (and an insert of the old version, which writes the old side, gets
///   the new side from `up`, as it should).
fn defaults_warning(plan: &LoadedPlan, index: usize, table: &SyncTable) -> Option<String> {
    let spec = sync_spec(&plan.spec.phases[index]);
    let old_matters = spec.down.is_some();
    let with_default: Vec<&str> = spec
        .old
        .iter()
        .filter(|_| old_matters)
        .chain(&spec.new)
        .filter(|c| table.with_default.contains(c))
        .map(String::as_str)
        .collect();
    (!with_default.is_empty()).then(|| {
        format!(
            "{} of {}.{} {} a default, so on INSERT the trigger counts {} as written even when the statement left {} out (an insert of the version that does not know the column is then kept as written); drop the default while the trigger runs",
            with_default.join(", "),
            table.schema,
            table.name,
            if with_default.len() == 1 { "has" } else { "have" },
            if with_default.len() == 1 { "it" } else { "them" },
            if with_default.len() == 1 { "it" } else { "them" },
        )
    })
}

/// The trigger phase `index` of `plan` installs on `table`.
fn trigger_of(plan: &LoadedPlan, index: usize, table: &SyncTable) -> SyncTriggerRecord {
    let name = sync_trigger::trigger_name(plan.name(), &plan.spec.phases[index].id);
    SyncTriggerRecord {
        schema: table.schema.clone(),
        table: table.name.clone(),
        trigger: name.clone(),
        function: name,
        installed: true,
        dropped_by: None,
    }
}

/// orch's SQL as a section of the plan file (at the phase's `sync`), so it
/// runs as a migration does: one transaction with its bookkeeping, under
/// lock_timeout with retries and backoff.
fn section(plan: &LoadedPlan, index: usize, sql: String) -> Section {
    Section {
        path: plan.path.clone(),
        sql,
        marker_line: plan.line_of(&phase_path(index, &["sync"])),
        transactional: true,
        exact_columns: false,
    }
}

/// Run orch's trigger SQL of phase `index` (`direction`: up installs, down
/// drops) with `records`, in one transaction. A failure of the SQL points
/// at the phase's `sync` section, not at a line of SQL the file lacks.
async fn run_trigger_sql(
    engine: &PlanEngine<'_>,
    plan: &LoadedPlan,
    index: usize,
    sql: String,
    direction: Direction,
    records: impl FnOnce(&RunStats) -> Vec<Bookkeeping>,
) -> Result<()> {
    let section = section(plan, index, sql);
    let id = format!("sync trigger of phase {}", plan.spec.phases[index].id);
    let job = SectionJob {
        version: 0,
        id: &id,
        path: Path::new(&section.path),
        section: &section,
        direction,
        recheck: &[],
        before: None,
        after: None,
        place: Some(section.marker_line),
    };
    let runner = SectionRunner::new(engine.store, &engine.options.policy, engine.reporter).await?;
    let result = runner
        .run(&job, |ended| match ended {
            Ended::Done(stats) => records(stats),
            Ended::HalfDone(_) => Vec::new(),
        })
        .await;
    result.map(|_| ())
}

async fn install(engine: &PlanEngine<'_>, step: Step<'_>) -> Result<()> {
    let (plan, spec, index) = (step.plan, step.spec(), step.index);
    let running = step.started.clone();
    // Compiling the expressions locks the table (ROW EXCLUSIVE) for a
    // moment: it waits no longer than a migration would.
    let policy = &engine.options.policy;
    engine
        .store
        .set_session_timeouts(policy.lock_timeout, policy.statement_timeout)
        .await?;
    let verified = verify(engine.store, plan, index).await;
    engine.store.reset_session_timeouts().await;
    let table = match verified {
        Ok(table) => table,
        Err(e) => return Err(engine.fail(plan, running, e).await),
    };
    if let Some(warning) = defaults_warning(plan, index, &table) {
        engine.reporter.report(Event::Warning {
            message: format!("phase {}: {warning}", spec.id),
        });
    }
    let trigger = trigger_of(plan, index, &table);
    let sql = sync_trigger::install_sql(&trigger, sync_spec(spec));
    let mut done = running.clone();
    done.state = transition(PhaseKind::Sync, running.state, PhaseCommand::Succeed)
        .expect("a running sync phase may succeed");
    done.result = Some(serde_json::to_value(&trigger).expect("a trigger record serialises"));
    let event = engine.event(
        plan.name(),
        Some(&spec.id),
        AuditAction::TriggerInstalled,
        json!({ "trigger": trigger.trigger, "table": format!("{}.{}", trigger.schema, trigger.table) }),
    );
    let records = |stats: &RunStats| {
        done.finished_at =
            Some(step.now + chrono::Duration::from_std(stats.duration).unwrap_or_default());
        vec![Bookkeeping::Phase(Box::new(done)), event]
    };
    if let Err(e) = run_trigger_sql(engine, plan, index, sql, Direction::Up, records).await {
        return Err(engine.fail(plan, running, e).await);
    }
    engine.reporter.report(Event::PhaseDone {
        plan: plan.name().to_string(),
        position: index + 1,
        id: spec.id.clone(),
        summary: {
            let sync = sync_spec(spec);
            let (old, new) = (sync.old.join(", "), sync.new.join(", "));
            let back = match sync.down {
                Some(_) => format!(", and writes of only {new} refresh {old}"),
                None => String::new(),
            };
            format!(
                "installed trigger {} on {}.{}: writes of only {old} now refresh {new}{back}",
                trigger.trigger, trigger.schema, trigger.table
            )
        },
        confirm_command: confirm_command(plan.name(), &spec.id),
    });
    Ok(())
}

async fn uninstall(engine: &PlanEngine<'_>, undo: Undo<'_>) -> Result<String> {
    let (plan, index) = (undo.plan, undo.index);
    let phases = match engine.store.plan_state(plan.name()).await? {
        Some((_, phases)) => phases,
        None => Vec::new(),
    };
    let installed = phases
        .iter()
        .find(|p| p.position as usize == index + 1)
        .filter(|p| p.state.has_run())
        .and_then(SyncTriggerRecord::of)
        .filter(|t| t.installed);
    let Some(trigger) = installed.filter(|_| undo.work_done) else {
        engine.store.commit_bookkeeping(&undo.records).await?;
        return Ok(String::new());
    };
    let event = engine.event(
        plan.name(),
        Some(&undo.spec().id),
        AuditAction::TriggerDropped,
        json!({
            "trigger": trigger.trigger,
            "table": format!("{}.{}", trigger.schema, trigger.table),
            "by": "rollback",
        }),
    );
    let mut records = undo.records.clone();
    records.push(event);
    let sql = sync_trigger::drop_sql(&trigger);
    run_trigger_sql(engine, plan, index, sql, Direction::Down, |_| records).await?;
    Ok(format!(
        "dropped trigger {} on {}.{} and its function",
        trigger.trigger, trigger.schema, trigger.table
    ))
}

/// `orch advance --dry-run`: the trigger it would install, and its SQL.
async fn describe(engine: &PlanEngine<'_>, dry: &DryRun<'_>) -> Result<WouldDo> {
    let (plan, index) = (dry.plan, dry.index);
    let spec = sync_spec(dry.spec());
    let table = verify(engine.store, plan, index).await?;
    let trigger = trigger_of(plan, index, &table);
    let pairs = |map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(c, e)| format!("{c} = {}", e.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut facts = vec![
        (
            "table".to_string(),
            format!("{}.{}", table.schema, table.name),
        ),
        (
            "old columns".to_string(),
            format!("{} (the old version writes them)", spec.old.join(", ")),
        ),
        (
            "new columns".to_string(),
            format!("{} (the new version writes them)", spec.new.join(", ")),
        ),
        ("up".to_string(), pairs(&spec.up)),
    ];
    match &spec.down {
        Some(down) => facts.push(("down".to_string(), pairs(down))),
        None => facts.push((
            "down".to_string(),
            "none: writes of only the new columns leave the old ones as they are".to_string(),
        )),
    }
    facts.push((
        "lock_timeout".to_string(),
        format!(
            "{} per attempt, {} retries",
            crate::timefmt::duration(engine.options.policy.lock_timeout),
            engine.options.policy.retries
        ),
    ));
    Ok(WouldDo {
        what: format!(
            "install trigger {} on {}.{} (BEFORE INSERT OR UPDATE, for each row) and its function, in one transaction with the phase's record; it stays until the plan's contract phase drops it",
            trigger.trigger, trigger.schema, trigger.table
        ),
        facts,
        sql: Some(NamedSql {
            name: "the trigger, in one transaction".to_string(),
            sql: sync_trigger::install_sql(&trigger, spec),
        }),
    })
}
