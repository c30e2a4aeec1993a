//! A migration phase before it runs: what `orch advance --dry-run` says it
//! would apply and how, and applying it in `orch check --online`'s preview
//! transaction (which is rolled back).

use crate::engine::lint as lint_gate;
use crate::engine::phases::migration::{already_applied, check_runnable, migration_of};
use crate::engine::phases::{DryRun, Preview, PreviewChange};
use crate::engine::plan_runner::PlanEngine;
use crate::error::{Error, Result};
use crate::events::{NamedSql, WouldDo};
use crate::lint;
use crate::migration::Migration;
use crate::migration::concurrent_index::concurrent_index;
use crate::migration::transactional::unfit_for_transaction;
use crate::plan::format::Role;
use crate::plan::load::phase_path;
use crate::store::Store;
use crate::store::preview::{NOT_IN_A_TRANSACTION, QUERY_CANCELED};
use crate::store::session::{LOCK_NOT_AVAILABLE, ScriptFailure};
use crate::{sql_text, timefmt};

/// `orch advance --dry-run`: the migration `advance` would apply, and how;
/// what it would refuse is refused the same way.
pub(super) async fn describe(engine: &PlanEngine<'_>, dry: &DryRun<'_>) -> Result<WouldDo> {
    let (plan, spec, index) = (dry.plan, dry.spec(), dry.index);
    let file = migration_of(engine, spec)?;
    check_runnable(engine, plan, index, file)?;
    // The lint refuses here what it would refuse in `advance`.
    let catalog = lint_gate::catalog(engine.store, &[file]).await?;
    let findings = lint::lint_run(
        engine.migrations,
        &[file],
        lint_gate::role(spec.role),
        catalog,
    );
    let doing = format!(
        "run phase {} ({}) of plan {}",
        index + 1,
        spec.id,
        plan.name()
    );
    if let Some(refusal) = lint::refusal(&findings, &doing) {
        return Err(refusal);
    }
    let applied = engine.store.applied_migrations().await?;
    let id = file.id();
    if let Some(resolved) = already_applied(plan, index, file, &applied)? {
        return Ok(WouldDo {
            what: format!(
                "record the phase done: {id} was resolved as applied by hand ({}, {}); nothing would run",
                resolved.applied_by,
                timefmt::utc(&resolved.applied_at)
            ),
            facts: Vec::new(),
            sql: None,
        });
    }
    let policy = &engine.options.policy;
    let what = if file.up.transactional {
        format!("apply {id} (up) in one transaction, with the phase's record: all of it or nothing")
    } else {
        format!(
            "apply {id} (up) statement by statement, outside a transaction (transaction:false): a failure half-way leaves it dirty"
        )
    };
    let mut lock_timeout = timefmt::duration(policy.lock_timeout);
    if policy.lock_timeout_max > policy.lock_timeout {
        lock_timeout.push_str(&format!(
            ", growing to {}",
            timefmt::duration(policy.lock_timeout_max)
        ));
    }
    let mut facts = vec![
        ("file".to_string(), file.path.display().to_string()),
        (
            "lock_timeout".to_string(),
            format!(
                "{lock_timeout} per attempt, up to {} retries with backoff (then the phase fails, changing nothing)",
                policy.retries
            ),
        ),
        (
            "statement_timeout".to_string(),
            if policy.statement_timeout.is_zero() {
                "none".to_string()
            } else {
                timefmt::duration(policy.statement_timeout)
            },
        ),
    ];
    if spec.role == Some(Role::Contract) {
        let drops = installed_sync_triggers(engine.store, plan, index).await?;
        if !drops.is_empty() {
            facts.push((
                "sync triggers".to_string(),
                format!(
                    "dropped first, in the same transaction (the plan's sync phases installed them):\n{}",
                    drops.concat().trim_end()
                ),
            ));
        }
    }
    facts.push((
        "lint".to_string(),
        if findings.is_empty() {
            "no finding".to_string()
        } else {
            findings
                .iter()
                .map(|f| f.render())
                .collect::<Vec<_>>()
                .join("\n")
        },
    ));
    if !spec.guard.is_empty() && file.up.transactional {
        facts.push((
            "guard".to_string(),
            "evaluated again after the statements, inside the transaction, before the commit"
                .to_string(),
        ));
    }
    Ok(WouldDo {
        what,
        facts,
        sql: Some(NamedSql {
            name: format!("{} (up)", file.up.path.display()),
            sql: file.up.sql.trim().to_string(),
        }),
    })
}

/// `orch check --online`: apply the phase's migration in the preview
/// transaction, unless it is applied already. A `transaction:false` section
/// runs there without its statements that cannot run in a transaction
/// (index builds and drops, VACUUM, REINDEX, transaction control): none of
/// them changes a column.
pub(super) async fn apply_in_preview(preview: &Preview<'_>, index: usize) -> PreviewChange {
    let (plan, store) = (preview.plan, preview.store);
    let spec = &plan.spec.phases[index];
    let name = spec.migration.as_deref().unwrap_or_default();
    let file = match preview.migrations.find(name) {
        Ok(file) => file,
        Err(why) => {
            return PreviewChange::Failed(plan.error_at(&phase_path(index, &["migration"]), why));
        }
    };
    let id = file.id();
    match preview.applied.iter().find(|a| a.version == file.version) {
        Some(applied) if applied.is_dirty() => {
            return PreviewChange::Deferred(format!(
                "{id} stopped half-way (dirty): the schema after it is known once it is resolved (`orch migrate resolve {}`)",
                file.version
            ));
        }
        Some(_) => return PreviewChange::AlreadyApplied,
        None => {}
    }
    // As `advance` does, a contract drops the plan's installed sync
    // triggers first (a statement of it that writes the table would
    // otherwise fire a trigger that reads the columns it drops).
    let before = if spec.role == Some(Role::Contract) {
        match installed_sync_triggers(store, plan, index).await {
            Ok(drops) => drops,
            Err(e) => return PreviewChange::Failed(e),
        }
    } else {
        Vec::new()
    };
    match try_in_preview(store, file, &before).await {
        Tried::Deferred(why) => PreviewChange::Deferred(why),
        Tried::Applied {
            note,
            unique_indexes_left_out,
            index_names_left_out,
        } => {
            if let Ok(mut names) = preview.left_out_indexes.lock() {
                names.extend(
                    index_names_left_out
                        .into_iter()
                        .map(|name| (format!("phase {} ({})", index + 1, spec.id), name)),
                );
            }
            PreviewChange::Applied {
                note,
                unique_indexes_left_out,
            }
        }
        Tried::Failed { place, failure } => preview_failure(preview, index, &id, &place, failure),
        Tried::Store(e) => PreviewChange::Failed(e),
    }
}

/// What applying one migration's up section in the preview did.
pub(crate) enum Tried {
    Applied {
        /// The statements left out (they cannot run in a transaction).
        note: Option<String>,
        /// The tables of the unique indexes it builds CONCURRENTLY, left out.
        unique_indexes_left_out: Vec<String>,
        /// The names of the indexes it builds CONCURRENTLY, left out.
        index_names_left_out: Vec<String>,
    },
    /// A statement failed, at `place` (`file:line[:column]`); the
    /// migration's changes are undone.
    Failed {
        place: String,
        failure: ScriptFailure,
    },
    /// One of the statements before it could not run: why.
    Deferred(String),
    Store(Error),
}

/// Apply `file`'s up section in the preview transaction (a savepoint kept
/// on success, undone on failure), after the statements `before`.
pub(crate) async fn try_in_preview(store: &Store, file: &Migration, before: &[String]) -> Tried {
    let mut scripts = Vec::new();
    let mut left_out = Vec::new();
    let mut unique_indexes_left_out = Vec::new();
    let mut index_names_left_out = Vec::new();
    // (byte offset in the section, script)
    if file.up.transactional {
        scripts.push((0, file.up.sql.as_str()));
    } else {
        for statement in sql_text::split_statements(&file.up.sql) {
            if unfit_for_transaction(statement.text).is_none() {
                scripts.push((statement.offset, statement.text));
                continue;
            }
            left_out.push(file.up.file_line(statement.offset).to_string());
            let unique = sql_text::leading_words(statement.text, 2) == ["create", "unique"];
            if let Some(built) = concurrent_index(statement.text) {
                index_names_left_out.extend(built.name.clone());
                if unique {
                    unique_indexes_left_out.push(built.table);
                }
            }
        }
    }
    if let Err(e) = store.preview_savepoint().await {
        return Tried::Store(e);
    }
    // orch's own statements first (a contract's drop of the plan's sync
    // triggers).
    for script in before {
        if let Err(failure) = store.preview_script(script).await {
            if let Err(e) = store.preview_undo_step().await {
                return Tried::Store(e);
            }
            return Tried::Deferred(format!(
                "could not drop the plan's sync trigger before {} in the preview: {}",
                file.id(),
                failure.diagnostic.message
            ));
        }
    }
    for (offset, script) in scripts {
        if let Err(failure) = store.preview_script(script).await {
            if let Err(e) = store.preview_undo_step().await {
                return Tried::Store(e);
            }
            let place = failure_place(&file.up, offset, script, &failure);
            return Tried::Failed { place, failure };
        }
    }
    if let Err(e) = store.preview_keep_step().await {
        return Tried::Store(e);
    }
    let note = (!left_out.is_empty()).then(|| {
        format!(
            "left out of the preview: the statement(s) at line {} of {}, which cannot run in a transaction and change no column",
            left_out.join(", "),
            file.up.path.display()
        )
    });
    Tried::Applied {
        note,
        unique_indexes_left_out,
        index_names_left_out,
    }
}

/// What a migration that failed in the preview means: a wait or a
/// dependence on data defers the checks; anything else is an error.
/// `file:line[:column]` in the migration of the statement a preview script
/// failed in: where PostgreSQL points, else where the statement starts.
fn failure_place(
    section: &crate::migration::Section,
    offset: usize,
    script: &str,
    failure: &ScriptFailure,
) -> String {
    let at = match failure.diagnostic.position {
        // A 1-based character position in the script.
        Some(position) => script
            .char_indices()
            .nth((position as usize).saturating_sub(1))
            .map_or(script.len(), |(i, _)| i),
        None => sql_text::split_statements(script)
            .get(failure.completed)
            .map_or(0, |s| s.offset),
    };
    let (line, column) = section.file_position(offset + at);
    match column {
        Some(column) => format!("{}:{line}:{column}", section.path.display()),
        None => format!("{}:{line}", section.path.display()),
    }
}

/// SQLSTATE undefined_object: e.g. `index "x" does not exist`.
const UNDEFINED_OBJECT: &str = "42704";

/// The left-out index (and the phase building it) an error message names.
fn left_out_index(preview: &Preview<'_>, message: &str) -> Option<(String, String)> {
    let names = preview.left_out_indexes.lock().ok()?;
    names
        .iter()
        .find(|(_, name)| message.contains(&format!("index \"{name}\"")))
        .cloned()
}

fn preview_failure(
    preview: &Preview<'_>,
    index: usize,
    id: &str,
    place: &str,
    failure: ScriptFailure,
) -> PreviewChange {
    match deferral(preview, id, &failure) {
        Some(why) => PreviewChange::Deferred(why),
        None => PreviewChange::Failed(preview.plan.error_at(
            &phase_path(index, &["migration"]),
            format!(
                "{id} ({place}) does not apply to the schema as it will be when this phase runs: {}",
                failure.diagnostic
            ),
        )),
    }
}

/// Why a failure in the preview defers the checks after it (a wait, a
/// statement too slow to try, data that may change), or None when it is
/// an error of the migration.
pub(crate) fn deferral(preview: &Preview<'_>, id: &str, failure: &ScriptFailure) -> Option<String> {
    let diagnostic = &failure.diagnostic;
    let sqlstate = diagnostic.sqlstate.as_str();
    match sqlstate {
        LOCK_NOT_AVAILABLE => Some(format!(
            "could not take the lock {id} needs within {} (the application or another session holds it); run `orch check --online` again",
            timefmt::duration(preview.lock_timeout)
        )),
        QUERY_CANCELED => Some(format!(
            "{id} did not finish within {} in the preview (it may rewrite or scan a table, which the preview does not wait for)",
            timefmt::duration(preview.statement_timeout)
        )),
        NOT_IN_A_TRANSACTION => Some(format!(
            "{id} has a statement that cannot run in a transaction ({})",
            diagnostic.message
        )),
        // Data exceptions and integrity violations: the data it meets when
        // it runs may differ (a backfill before it fills a column, say).
        // An index a left-out `CREATE INDEX CONCURRENTLY` builds does not
        // exist in the preview (`ADD CONSTRAINT ... USING INDEX` after it).
        UNDEFINED_OBJECT => left_out_index(preview, &diagnostic.message).map(|(phase, name)| {
            format!(
                "{id} needs the index {name}, which {phase} builds with a statement left out of the preview (it cannot run in a transaction); `orch advance` finds out when it runs"
            )
        }),
        _ if sqlstate.starts_with("22") || sqlstate.starts_with("23") => Some(format!(
            "{id} fails on the data as it is today ({}); the phases before it may change that data, so `orch advance` finds out when it runs",
            diagnostic.message
        )),
        _ => None,
    }
}

/// The SQL that drops each sync trigger of a phase before `index` that is
/// recorded as installed.
async fn installed_sync_triggers(
    store: &crate::store::Store,
    plan: &crate::plan::LoadedPlan,
    index: usize,
) -> crate::error::Result<Vec<String>> {
    let Some((_, phases)) = store.plan_state(plan.name()).await? else {
        return Ok(Vec::new());
    };
    Ok(phases
        .iter()
        .filter(|p| (p.position as usize) <= index && p.state.has_run())
        .filter_map(crate::plan::records::SyncTriggerRecord::of)
        .filter(|t| t.installed)
        .map(|t| crate::store::sync_trigger::drop_sql(&t))
        .collect())
}
