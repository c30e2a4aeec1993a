//! `orch check --online`: each phase of a plan checked against the schema as
//! it will be when that phase runs, not only as it is today. One transaction,
//! never committed, applies the plan's migrations that are not applied yet,
//! in order (a preview); each phase's guard, work (a backfill's table, key
//! and statements) and checks are compiled at their point of it; then it is
//! rolled back. The migrations take their locks on the live database, so the
//! preview waits for a lock at most `PREVIEW_LOCK_TIMEOUT` and gives each
//! statement at most `PREVIEW_STATEMENT_TIMEOUT`: what does not fit is said
//! to be deferred, never waited for.

use std::time::Duration;

use crate::engine::phases::migration_preview::{Tried, deferral, try_in_preview};
use crate::engine::phases::{self, Preview, PreviewChange};
use crate::engine::written_columns;
use crate::error::{Error, PgDiagnostic, Result};
use crate::migration::{Migration, MigrationSet};
use crate::plan::LoadedPlan;
use crate::plan::Owners;
use crate::plan::format::{CheckSpec, PhaseKind};
use crate::plan::load::phase_path;
use crate::sql_text;
use crate::store::Store;
use crate::store::preview::QUERY_CANCELED;
use crate::store::session::LOCK_NOT_AVAILABLE;
use crate::yaml_locate::PathSeg;

/// How long the preview waits for a lock: the application's queries on a
/// table queue behind the preview's wait for it, so this is short.
pub const PREVIEW_LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// The longest one statement of the preview may run while it may hold a
/// migration's locks (a migration that rewrites or scans a table is not
/// tried to the end).
pub const PREVIEW_STATEMENT_TIMEOUT: Duration = Duration::from_millis(500);

/// What `check --online` found, by 0-based phase index: one note per phase
/// that has something to say, and the errors.
pub(crate) async fn check_plan(
    store: &Store,
    plan: &LoadedPlan,
    migrations: &MigrationSet,
    owners: &Owners,
) -> Vec<(usize, Result<String>)> {
    let mut findings = Vec::new();
    match written_columns::columns_still_required(store, plan, migrations).await {
        Ok(warnings) => findings.extend(warnings.into_iter().map(|(i, w)| (i, Ok(w)))),
        Err(e) => findings.push((0, Err(e))),
    }
    match walk(store, plan, migrations, owners).await {
        Ok(phases) => findings.extend(phases),
        Err(e) => findings.push((0, Err(e))),
    }
    findings.sort_by_key(|(index, _)| *index);
    findings
}

/// What one phase's preview said.
#[derive(Default)]
struct PhaseFindings {
    notes: Vec<String>,
    errors: Vec<Error>,
    /// Why its checks were not done (the preview could not get there).
    deferred: Option<String>,
    /// The note of the kind's own check, which `measure_online` extends.
    kind_note: Option<usize>,
}

impl PhaseFindings {
    fn defer(&mut self, why: String) {
        self.deferred.get_or_insert(why);
    }
}

async fn walk(
    store: &Store,
    plan: &LoadedPlan,
    migrations: &MigrationSet,
    owners: &Owners,
) -> Result<Vec<(usize, Result<String>)>> {
    let applied = store.applied_migrations().await?;
    // What `orch migrate up` applies now: the pending migrations before the
    // first one a plan owns. A plan usually starts after them (on a fresh
    // database, they create its tables).
    let first_up: Vec<&Migration> = migrations
        .files
        .iter()
        .filter(|f| !applied.iter().any(|a| a.version == f.version))
        .take_while(|f| owners.of(f.version, &f.name).is_none())
        .collect();
    let preview = Preview {
        store,
        plan,
        migrations,
        applied: &applied,
        lock_timeout: PREVIEW_LOCK_TIMEOUT,
        statement_timeout: PREVIEW_STATEMENT_TIMEOUT,
        left_out_indexes: Default::default(),
    };
    let phases = &plan.spec.phases;
    let is_applied = |index: usize| {
        phases[index]
            .migration
            .as_deref()
            .and_then(|name| migrations.by_reference(name))
            .is_some_and(|file| {
                applied
                    .iter()
                    .any(|a| a.version == file.version && !a.is_dirty())
            })
    };
    // The latest phase whose migration is applied: the phases before it ran
    // on a schema that has moved on since, so they are history.
    let last_applied = (0..phases.len())
        .rev()
        .find(|&i| phases[i].kind == PhaseKind::Migration && is_applied(i));
    store
        .begin_preview(PREVIEW_LOCK_TIMEOUT, PREVIEW_STATEMENT_TIMEOUT)
        .await?;
    // Rolled back whatever happened: nothing the preview did may stay.
    let first = apply_first(&preview, &first_up).await;
    let found = match &first {
        Ok(first) => {
            preview_phases(&preview, last_applied, &is_applied, first.deferred.clone()).await
        }
        Err(_) => Ok(Vec::new()),
    };
    store.end_preview().await;
    let first = first?;
    let found = found?;
    let mut out = Vec::new();
    if let Some(note) = first.note {
        out.push((0, Ok(note)));
    }
    if let Some(e) = first.error {
        out.push((0, Err(e)));
    }
    for (index, mut here) in found.into_iter().enumerate() {
        if here.deferred.is_none()
            && let Some(at) = here.kind_note
            && let Some(measured) = phases::work(phases[index].kind)
                .measure_online(store, plan, index)
                .await
        {
            match measured {
                Ok(more) => here.notes[at].push_str(&format!(", {more}")),
                Err(e) => here.errors.push(e),
            }
        }
        if let Some(why) = here.deferred {
            here.notes.push(format!("deferred: {why}"));
        }
        if !here.notes.is_empty() {
            out.push((index, Ok(here.notes.join("; "))));
        }
        out.extend(here.errors.into_iter().map(|e| (index, Err(e))));
    }
    Ok(out)
}

/// The preview's start: the migrations `orch migrate up` applies first.
#[derive(Default)]
struct First {
    note: Option<String>,
    /// Why every phase's checks wait (one of them could not be tried).
    deferred: Option<String>,
    error: Option<Error>,
}

async fn apply_first(preview: &Preview<'_>, first_up: &[&Migration]) -> Result<First> {
    let mut first = First::default();
    let mut applied = Vec::new();
    for file in first_up {
        let id = file.id();
        match try_in_preview(preview.store, file, &[]).await {
            Tried::Applied {
                index_names_left_out,
                ..
            } => {
                if let Ok(mut names) = preview.left_out_indexes.lock() {
                    let by = format!("pending migration {id}");
                    names.extend(index_names_left_out.into_iter().map(|n| (by.clone(), n)));
                }
                applied.push(id)
            }
            Tried::Deferred(why) => {
                first.deferred = Some(why);
                break;
            }
            Tried::Store(e) => return Err(e),
            Tried::Failed { place, failure } => {
                match deferral(preview, &id, &failure) {
                    Some(why) => first.deferred = Some(format!("pending migration {why}")),
                    None => {
                        first.deferred = Some(format!(
                            "pending migration {id} does not apply, so the schema the plan meets is not known"
                        ));
                        first.error = Some(Error::refused(
                            format!(
                                "{id} ({place}), which `orch migrate up` applies before this plan, does not apply: {}",
                                failure.diagnostic
                            ),
                            None,
                        ));
                    }
                }
                break;
            }
        }
    }
    if !applied.is_empty() {
        first.note = Some(format!(
            "the preview first applies what `orch migrate up` applies before this plan: {}",
            applied.join(", ")
        ));
    }
    Ok(first)
}

/// Each phase at its point of the preview, in order: its guard, its schema
/// change, its own check and its checks.
async fn preview_phases(
    preview: &Preview<'_>,
    last_applied: Option<usize>,
    is_applied: &dyn Fn(usize) -> bool,
    mut deferred: Option<String>,
) -> Result<Vec<PhaseFindings>> {
    let (store, plan) = (preview.store, preview.plan);
    let phases = &plan.spec.phases;
    let mut found: Vec<PhaseFindings> = Vec::new();
    let mut unique_indexes_left_out: Vec<(usize, String)> = Vec::new();
    for (index, phase) in phases.iter().enumerate() {
        let mut here = PhaseFindings::default();
        let work = phases::work(phase.kind);
        if let Some(last) = last_applied.filter(|&last| index < last) {
            if phase.kind == PhaseKind::Migration && is_applied(index) {
                here.notes.push("applied".to_string());
            } else if phase.kind == PhaseKind::Migration {
                here.notes.push(format!(
                    "not checked: its migration is not applied, yet phase {} ({}) after it is",
                    last + 1,
                    phases[last].id
                ));
            } else {
                here.notes.push(format!(
                    "not checked: it ran before phase {} ({}) changed the schema",
                    last + 1,
                    phases[last].id
                ));
            }
            found.push(here);
            continue;
        }
        if let Some(why) = &deferred {
            here.defer(why.clone());
            found.push(here);
            continue;
        }
        if phase.kind == PhaseKind::Migration && is_applied(index) {
            // It ran (its guard with it); what is left is its confirmation.
            here.notes.push("applied".to_string());
            compile_checks(store, plan, index, "check", &phase.checks, &mut here).await?;
            found.push(here);
            continue;
        }
        compile_checks(store, plan, index, "guard", &phase.guard, &mut here).await?;
        match work.change_in_preview(preview, index).await {
            PreviewChange::Nothing => {}
            PreviewChange::AlreadyApplied => here.notes.push("applied".to_string()),
            PreviewChange::Applied {
                note,
                unique_indexes_left_out: tables,
            } => {
                here.notes.push(
                    "applies to the schema it will meet (tried, then rolled back)".to_string(),
                );
                here.notes.extend(note);
                unique_indexes_left_out.extend(tables.into_iter().map(|t| (index, t)));
            }
            PreviewChange::Deferred(why) => {
                deferred = Some(format!("phase {} ({}): {why}", index + 1, phase.id));
                here.defer(why);
            }
            PreviewChange::Failed(e) => {
                deferred = Some(format!(
                    "phase {} ({}) does not apply, so the schema after it is not known",
                    index + 1,
                    phase.id
                ));
                here.errors.push(e);
            }
        }
        if here.deferred.is_none() && here.errors.is_empty() {
            kind_check(store, plan, index, &unique_indexes_left_out, &mut here).await?;
            compile_checks(store, plan, index, "check", &phase.checks, &mut here).await?;
        }
        found.push(here);
    }
    Ok(found)
}

/// The kind's own check of phase `index` (a backfill's table, key and
/// statements), in a savepoint. A backfill's table whose unique index an
/// earlier phase builds `CONCURRENTLY` (left out of the preview) may lack
/// the key it will have: its failure defers rather than fails.
async fn kind_check(
    store: &Store,
    plan: &LoadedPlan,
    index: usize,
    unique_indexes_left_out: &[(usize, String)],
    here: &mut PhaseFindings,
) -> Result<()> {
    let phase = &plan.spec.phases[index];
    store.preview_savepoint().await?;
    let outcome = phases::work(phase.kind)
        .check_online(store, plan, index)
        .await;
    store.preview_undo_step().await?;
    match outcome {
        None => {}
        Some(Ok(note)) => {
            here.kind_note = Some(here.notes.len());
            here.notes.push(note);
        }
        Some(Err(e)) if waited_too_long(&e) => here.defer(format!(
            "could not take a lock within {} to check it ({e}); run `orch check --online` again",
            crate::timefmt::duration(PREVIEW_LOCK_TIMEOUT)
        )),
        Some(Err(e)) => {
            let table = phase.backfill.as_ref().map(|b| b.table.as_str());
            match table.and_then(|t| {
                unique_indexes_left_out
                    .iter()
                    .find(|(_, index_table)| same_table(index_table, t))
            }) {
                Some((builder, _)) => here.defer(format!(
                    "phase {} ({}) builds a unique index on its table CONCURRENTLY, which the preview cannot do in a transaction; without it: {e}",
                    builder + 1,
                    plan.spec.phases[*builder].id
                )),
                None => here.errors.push(e),
            }
        }
    }
    Ok(())
}

/// Compile each of `checks` (`purpose`: "guard" or "check") of phase
/// `index` where the preview is, each in a savepoint; a check that does not
/// compile, or does not return one boolean, is an error at its `sql`.
async fn compile_checks(
    store: &Store,
    plan: &LoadedPlan,
    index: usize,
    purpose: &str,
    checks: &[CheckSpec],
    here: &mut PhaseFindings,
) -> Result<()> {
    let field = if purpose == "guard" {
        "guard"
    } else {
        "checks"
    };
    let mut compiled = 0;
    for (position, check) in checks.iter().enumerate() {
        let (sql, placeholders) = sql_text::bind_placeholders(&check.sql);
        store.preview_savepoint().await?;
        let outcome = store.compile_check(&sql, placeholders.len()).await;
        store.preview_undo_step().await?;
        match outcome {
            Ok(()) => compiled += 1,
            Err(d) if is_wait(&d) => here.defer(format!(
                "could not take a lock within {} to compile {purpose} {:?} ({}); run `orch check --online` again",
                crate::timefmt::duration(PREVIEW_LOCK_TIMEOUT),
                check.name,
                d.message
            )),
            Err(d) => {
                let mut path = phase_path(index, &[field]);
                path.extend([PathSeg::Index(position), PathSeg::Key("sql".into())]);
                let message = if d.sqlstate.is_empty() {
                    format!("{purpose} {:?} {}, not one boolean", check.name, d.message)
                } else {
                    format!(
                        "{purpose} {:?} does not compile against the schema as it will be when this phase {}: {}",
                        check.name,
                        if purpose == "guard" { "runs" } else { "is confirmed" },
                        d.message
                    )
                };
                here.errors.push(plan.error_at(&path, message));
            }
        }
    }
    if compiled > 0 {
        here.notes.push(format!(
            "{compiled} {purpose}{} {}",
            if compiled == 1 { "" } else { "s" },
            if compiled == 1 { "compiles" } else { "compile" }
        ));
    }
    Ok(())
}

/// A lock not available within the preview's lock_timeout, or a statement
/// cancelled by its statement_timeout.
fn is_wait(diagnostic: &PgDiagnostic) -> bool {
    [LOCK_NOT_AVAILABLE, QUERY_CANCELED].contains(&diagnostic.sqlstate.as_str())
}

/// `is_wait` for an error of the kind's check.
pub(crate) fn waited_too_long(error: &Error) -> bool {
    matches!(error, Error::Sql { diagnostic, .. } if is_wait(diagnostic))
}

/// Whether a table as an index statement wrote it (`"public"."t"`) and as a
/// plan wrote it (`t`, `public.t`) may be the same: their last names agree.
fn same_table(quoted: &str, written: &str) -> bool {
    let last = |name: &str| {
        name.rsplit('.')
            .next()
            .unwrap_or_default()
            .trim_matches('"')
            .to_string()
    };
    last(quoted) == last(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_compare_by_their_last_name() {
        for (quoted, written, same) in [
            ("\"public\".\"posts\"", "posts", true),
            ("\"posts\"", "public.posts", true),
            ("\"public\".\"users\"", "posts", false),
        ] {
            assert_eq!(same_table(quoted, written), same, "{quoted} {written}");
        }
    }
}
