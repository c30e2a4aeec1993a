//! A migration phase before it runs: what `orch advance --dry-run` says it
//! would apply and how, and applying it in `orch check --online`'s preview
//! transaction (which is rolled back).

use crate::engine::lint as lint_gate;
use crate::engine::phases::migration::{already_applied, check_runnable, migration_of};
use crate::engine::phases::{DryRun, Preview, PreviewChange};
use crate::engine::plan_runner::PlanEngine;
use crate::error::Result;
use crate::events::{NamedSql, WouldDo};
use crate::lint;
use crate::migration::concurrent_index::concurrent_index;
use crate::migration::transactional::unfit_for_transaction;
use crate::plan::load::phase_path;
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
    let mut scripts = Vec::new();
    let mut left_out = Vec::new();
    let mut unique_indexes_left_out = Vec::new();
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
                if let (Some(name), Ok(mut names)) = (&built.name, preview.left_out_indexes.lock())
                {
                    names.push((format!("phase {} ({})", index + 1, spec.id), name.clone()));
                }
                if unique {
                    unique_indexes_left_out.push(built.table);
                }
            }
        }
    }
    if let Err(e) = store.preview_savepoint().await {
        return PreviewChange::Failed(e);
    }
    for (offset, script) in scripts {
        if let Err(failure) = store.preview_script(script).await {
            if let Err(e) = store.preview_undo_step().await {
                return PreviewChange::Failed(e);
            }
            let place = failure_place(&file.up, offset, script, &failure);
            return preview_failure(preview, index, &id, &place, failure);
        }
    }
    if let Err(e) = store.preview_keep_step().await {
        return PreviewChange::Failed(e);
    }
    let note = (!left_out.is_empty()).then(|| {
        format!(
            "left out of the preview: the statement(s) at line {} of {}, which cannot run in a transaction and change no column",
            left_out.join(", "),
            file.up.path.display()
        )
    });
    PreviewChange::Applied {
        note,
        unique_indexes_left_out,
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
    let diagnostic = &failure.diagnostic;
    let sqlstate = diagnostic.sqlstate.as_str();
    let deferred = match sqlstate {
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
    };
    match deferred {
        Some(why) => PreviewChange::Deferred(why),
        None => PreviewChange::Failed(preview.plan.error_at(
            &phase_path(index, &["migration"]),
            format!(
                "{id} ({place}) does not apply to the schema as it will be when this phase runs: {diagnostic}"
            ),
        )),
    }
}
