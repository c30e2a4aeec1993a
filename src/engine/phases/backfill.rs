//! A backfill phase: advancing it runs (or resumes) the batched backfill
//! and records how it ended; rolling it back forgets its cursor (rows
//! already updated keep their values). Its progress shows in `status`.

use futures_util::future::BoxFuture;
use serde_json::json;

use crate::backfill::sizing::BatchSizer;
use crate::backfill::{self, BackfillEnd, BackfillJob, BackfillProgress, RunSettings, walk};
use crate::engine::online_check::waited_too_long;
use crate::engine::phases::{DryRun, PhaseWork, Step, Undo};
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::error::{Error, Result};
use crate::events::{Event, NamedSql, WouldDo};
use crate::plan::format::{PhaseKind, PhaseSpec};
use crate::plan::load::phase_path;
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::plan::{AuditAction, LoadedPlan, WalkKind};
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;
use crate::timefmt;
use crate::yaml_locate::PathSeg;

pub(crate) struct BackfillPhase;

impl PhaseWork for BackfillPhase {
    fn advance<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        step: Step<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(run(engine, step))
    }

    fn rollback<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        undo: Undo<'a>,
    ) -> BoxFuture<'a, Result<String>> {
        Box::pin(async move {
            let mut records = undo.records.clone();
            records.push(Bookkeeping::ClearBackfill {
                plan: undo.plan.name().to_string(),
                phase: undo.spec().id.clone(),
            });
            engine.store.commit_bookkeeping(&records).await?;
            Ok("cursor cleared; rows already updated keep their new values".to_string())
        })
    }

    fn progress<'a>(
        &'a self,
        store: &'a Store,
        plan: &'a str,
        phase: &'a PhaseSpec,
    ) -> BoxFuture<'a, Result<Option<BackfillProgress>>> {
        Box::pin(backfill::progress(store, plan, &phase.id))
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
            let spec = plan.spec.phases[index].backfill.as_ref()?;
            match backfill::missing_command_column(store, spec).await {
                Ok(Some(missing)) => {
                    let mut field = phase_path(index, &["backfill", missing.field]);
                    field.push(PathSeg::Index(missing.index));
                    return Some(Err(plan.error_at(&field, missing.message)));
                }
                Err(e) if waited_too_long(&e) => return Some(Err(e)),
                // The table's own problem is said below, at `table`.
                Ok(None) | Err(_) => {}
            }
            let field = phase_path(index, &["backfill", "table"]);
            Some(backfill::check_table(store, spec).await.map_err(|e| {
                // A wait is the preview's, not the plan's: kept as it is.
                if waited_too_long(&e) {
                    e
                } else {
                    plan.error_at(&field, e.to_string())
                }
            }))
        })
    }

    fn measure_online<'a>(
        &'a self,
        store: &'a Store,
        plan: &'a LoadedPlan,
        index: usize,
    ) -> BoxFuture<'a, Option<Result<String>>> {
        Box::pin(async move {
            let spec = plan.spec.phases[index].backfill.as_ref()?;
            Some(backfill::measure_table(store, spec).await.map(|count| {
                count.map_or_else(
                    || "no rows yet (an earlier phase creates the table)".to_string(),
                    |count| count.describe(),
                )
            }))
        })
    }
}

/// `orch advance --dry-run`: the table, key, rows and batches the backfill
/// would walk, and the statement of each batch.
async fn describe(engine: &PlanEngine<'_>, dry: &DryRun<'_>) -> Result<WouldDo> {
    let spec = dry.spec();
    let backfill_spec = spec
        .backfill
        .as_ref()
        .expect("validated: backfill phases have a backfill");
    let store = engine.store;
    let settings = RunSettings::new(
        backfill_spec,
        &engine.options.backfill,
        engine.options.policy.lock_timeout,
    );
    let walk = walk::open(store, backfill_spec).await?;
    let table = walk.table();
    let start = BatchSizer::new(settings.batch_time, settings.min_batch, settings.max_batch).size();
    let mut facts = vec![
        ("table".to_string(), table.display.clone()),
        (
            "key".to_string(),
            format!("({})", walk.key_columns().join(", ")),
        ),
        (
            "where".to_string(),
            backfill_spec
                .condition
                .clone()
                .unwrap_or_else(|| "(none: every row)".to_string()),
        ),
    ];
    match &backfill_spec.command {
        None => facts.insert(2, ("set".to_string(), backfill_spec.set.clone())),
        Some(command) => {
            let list = |c: &Option<Vec<String>>| c.clone().unwrap_or_default().join(", ");
            let timeout = backfill_spec
                .command_timeout
                .as_deref()
                .and_then(|t| timefmt::parse_duration(t).ok())
                .unwrap_or_else(|| walk::command::default_timeout(settings.batch_time));
            facts.splice(
                2..2,
                [
                    ("command".to_string(), command.join(" ")),
                    ("reads".to_string(), list(&backfill_spec.reads)),
                    ("writes".to_string(), list(&backfill_spec.writes)),
                    (
                        "max errors".to_string(),
                        backfill_spec.max_errors.unwrap_or(0).to_string(),
                    ),
                    (
                        "command timeout".to_string(),
                        format!("{} per batch", timefmt::duration(timeout)),
                    ),
                ],
            );
        }
    }
    let rows = backfill::row_estimate(store, table).await?;
    let progress = backfill::progress(store, dry.plan.name(), &spec.id).await?;
    match &rows {
        Some(count) => facts.push(("rows".to_string(), format!("{} to visit", count.describe()))),
        None => facts.push((
            "rows".to_string(),
            "unknown: the table was never analysed and is too big to count here (ANALYZE it for an estimate)".to_string(),
        )),
    }
    if let Some(progress) = progress.filter(|p| p.batches_done > 0) {
        facts.push((
            "resumes".to_string(),
            format!("from its saved cursors: {}", progress.describe()),
        ));
    }
    let batches = match &rows {
        Some(count) => format!(
            "about {} at the starting size of {start} keys",
            (count.rows.max(0) + start - 1) / start
        ),
        None => format!("starting at {start} keys each"),
    };
    facts.push((
        "batches".to_string(),
        format!(
            "{batches}; sized by time: each aims at {} and the size adapts between {} and {} keys, so the count changes as it learns",
            timefmt::duration(settings.batch_time),
            settings.min_batch,
            settings.max_batch
        ),
    ));
    facts.push(("workers".to_string(), settings.workers.to_string()));
    if !settings.pause.is_zero() {
        facts.push((
            "pause".to_string(),
            format!("{} between batches", timefmt::duration(settings.pause)),
        ));
    }
    if let Some(rate) = settings.max_rows_per_second {
        facts.push(("max rows per second".to_string(), format!("{rate:.0}")));
    }
    facts.push(("vacuum".to_string(), settings.vacuum.describe()));
    if backfill_spec.command.is_none()
        && backfill_spec.walk.unwrap_or(WalkKind::Key) == WalkKind::Key
    {
        let room = match backfill_spec.make_room.unwrap_or(true) {
            true => {
                "yes: each range in two halves, two batches apart (the first half adds `AND` the key's half to the statement below)"
            }
            false => "no: each range in one pass",
        };
        facts.push(("make room".to_string(), room.to_string()));
    }
    Ok(WouldDo {
        what: format!(
            "update the rows of {} in short batches, in key order, each batch in its own transaction with its cursor",
            table.display
        ),
        facts,
        sql: Some(NamedSql {
            name: "each batch (its key range bound as parameters)".to_string(),
            sql: walk.update_sql(),
        }),
    })
}

async fn run(engine: &PlanEngine<'_>, step: Step<'_>) -> Result<()> {
    let (plan, spec, index) = (step.plan, step.spec(), step.index);
    let running = step.started.clone();
    let backfill_spec = spec
        .backfill
        .as_ref()
        .expect("validated: backfill phases have a backfill");
    let action = if step.resumed {
        AuditAction::BackfillResumed
    } else {
        AuditAction::BackfillStarted
    };
    engine
        .record_phase(plan.name(), running.clone(), action, json!({}))
        .await?;
    if backfill_spec.command.is_some() {
        // Rows the program rejected or left out before get another try
        // (the program may have been fixed since).
        let again = engine
            .store
            .requeue_backfill_errors(plan.name(), &spec.id)
            .await?;
        if again > 0 {
            engine.reporter.report(Event::Info {
                message: format!(
                    "{again} rows the program rejected or left out before are tried again"
                ),
            });
        }
    }
    let job = BackfillJob {
        connection: engine.store.settings(),
        plan: plan.name(),
        phase: &spec.id,
        position: index as i32 + 1,
        spec: backfill_spec,
        overrides: &engine.options.backfill,
        lock_timeout: engine.options.policy.lock_timeout,
        reporter: engine.reporter,
        stop: engine.stop,
        fences: engine.store.fences(),
    };
    let end = match backfill::run(job).await {
        Ok(end) => end,
        Err(e) => return Err(engine.fail(plan, running, e).await),
    };
    // The batches ran on connections of their own; this one may have been
    // lost meanwhile. The cursor rows hold the truth, so a rerun resumes
    // from them and records the end that could not be recorded now.
    let lost = |e: Error| lost_after_backfill(plan.name(), &end, e);
    let now = engine.store.server_time().await.map_err(lost)?;
    let mut record = running;
    let (action, stats) = match &end {
        BackfillEnd::Finished(stats) => {
            record.state = transition(
                PhaseKind::Backfill,
                PhaseState::Running,
                PhaseCommand::Succeed,
            )
            .expect("running backfills may succeed");
            record.finished_at = Some(now);
            (AuditAction::BackfillFinished, stats)
        }
        BackfillEnd::Paused(stats) | BackfillEnd::Interrupted(stats) => {
            record.state = transition(
                PhaseKind::Backfill,
                PhaseState::Running,
                PhaseCommand::Pause,
            )
            .expect("running backfills may pause");
            (AuditAction::BackfillPaused, stats)
        }
    };
    record.pause_requested = false;
    let stats_json = serde_json::to_value(stats).unwrap_or_default();
    record.result = Some(stats_json.clone());
    engine
        .record_phase(plan.name(), record, action, stats_json)
        .await
        .map_err(lost)?;
    let resume = format!(
        "resume with `orch advance {}` (it continues from the saved cursor)",
        plan.name()
    );
    match end {
        BackfillEnd::Finished(stats) => {
            engine.reporter.report(Event::PhaseDone {
                plan: plan.name().to_string(),
                position: index + 1,
                id: spec.id.clone(),
                summary: format!(
                    "backfill finished: {} rows updated in {} batches, {} of running",
                    stats.rows_updated,
                    stats.batches,
                    timefmt::millis(stats.running_ms as i64)
                ),
                confirm_command: confirm_command(plan.name(), &spec.id),
            });
            Ok(())
        }
        BackfillEnd::Paused(_) => {
            engine.reporter.report(Event::Info {
                message: format!("backfill paused on request; {resume}"),
            });
            Ok(())
        }
        BackfillEnd::Interrupted(_) => Err(Error::Interrupted { resume }),
    }
}

/// The main connection failed after the backfill's workers stopped: say
/// what happened (the batches are committed, the phase's end is not
/// recorded) and that a rerun records it.
fn lost_after_backfill(plan: &str, end: &BackfillEnd, error: Error) -> Error {
    let when = match end {
        BackfillEnd::Finished(_) => "after the backfill's last batch committed",
        BackfillEnd::Paused(_) | BackfillEnd::Interrupted(_) => {
            "after the backfill stopped (its cursor is saved)"
        }
    };
    let context = format!(
        "the connection to the server was lost {when}, before orch could record the phase's end; nothing is lost: `orch advance {plan}` resumes from the saved cursor and records it"
    );
    match error {
        Error::Database { source, .. } => Error::Database { context, source },
        Error::Sql { diagnostic, .. } => Error::Sql {
            context,
            diagnostic,
        },
        other => Error::failed(format!("{context} ({other})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backfill::BackfillStats;

    #[test]
    fn a_lost_connection_after_the_last_batch_says_what_happened() {
        let end = BackfillEnd::Finished(BackfillStats::default());
        let error = lost_after_backfill("p", &end, Error::failed("cannot read the server's clock"));
        let text = error.to_string();
        assert!(
            text.starts_with(
                "the connection to the server was lost after the backfill's last batch committed"
            ),
            "{text}"
        );
        assert!(text.contains("`orch advance p` resumes"), "{text}");
    }
}
