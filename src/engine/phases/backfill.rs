//! A backfill phase: advancing it runs (or resumes) the batched backfill
//! and records how it ended; rolling it back forgets its cursor (rows
//! already updated keep their values). Its progress shows in `status`.

use futures_util::future::BoxFuture;
use serde_json::json;

use crate::backfill::{self, BackfillEnd, BackfillJob, BackfillProgress};
use crate::engine::phases::{PhaseWork, Step, Undo};
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::plan::format::{PhaseKind, PhaseSpec};
use crate::plan::load::phase_path;
use crate::plan::state::{PhaseCommand, PhaseState, transition};
use crate::plan::{AuditAction, LoadedPlan};
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;
use crate::timefmt;

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

    fn check_online<'a>(
        &'a self,
        store: &'a Store,
        plan: &'a LoadedPlan,
        index: usize,
    ) -> BoxFuture<'a, Option<Result<String>>> {
        Box::pin(async move {
            let spec = plan.spec.phases[index].backfill.as_ref()?;
            let field = phase_path(index, &["backfill", "table"]);
            Some(
                backfill::check_table(store, spec)
                    .await
                    .map_err(|e| plan.error_at(&field, e.to_string())),
            )
        })
    }
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
