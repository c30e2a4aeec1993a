//! A check phase: advancing it evaluates its checks; it succeeds when all
//! hold. Rolling it back has nothing to undo.

use futures_util::future::BoxFuture;
use serde_json::json;

use crate::engine::checks;
use crate::engine::phases::{DryRun, PhaseWork, Step};
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::error::{Error, Result};
use crate::events::{Event, WouldDo};
use crate::plan::AuditAction;
use crate::plan::format::PhaseKind;
use crate::plan::state::{PhaseCommand, transition};

pub(crate) struct CheckPhase;

impl PhaseWork for CheckPhase {
    fn advance<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        step: Step<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (plan, spec, index) = (step.plan, step.spec(), step.index);
            let running = step.started.clone();
            let mut times = engine.times(step.record, step.phases, index);
            times.phase_started_at = running.started_at;
            let outcomes = engine
                .evaluate(plan.name(), spec, &spec.checks, &times, "check phase")
                .await?;
            if let Some(failures) = checks::describe_failures(&outcomes) {
                let error = Error::check_failed(
                    format!(
                        "phase {} ({}) of plan {} failed: a check did not hold\n  {failures}",
                        index + 1,
                        spec.id,
                        plan.name()
                    ),
                    Some(format!(
                        "make the check hold, then run `orch advance {}` again",
                        plan.name()
                    )),
                );
                return Err(engine.fail(plan, running, error).await);
            }
            let mut done = running;
            done.state = transition(PhaseKind::Check, done.state, PhaseCommand::Succeed)
                .expect("a running check may succeed");
            done.finished_at = Some(engine.store.server_time().await?);
            done.result = Some(json!({ "checks": outcomes }));
            engine
                .record_phase(
                    plan.name(),
                    done,
                    AuditAction::ChecksPassed,
                    json!({ "checks": outcomes }),
                )
                .await?;
            engine.reporter.report(Event::PhaseDone {
                plan: plan.name().to_string(),
                position: index + 1,
                id: spec.id.clone(),
                summary: format!("all {} checks passed", outcomes.len()),
                confirm_command: confirm_command(plan.name(), &spec.id),
            });
            Ok(())
        })
    }

    fn dry_run<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        dry: &'a DryRun<'a>,
    ) -> BoxFuture<'a, Result<WouldDo>> {
        Box::pin(async move {
            let spec = dry.spec();
            let outcomes =
                checks::evaluate_unrecorded(engine.store, &spec.checks, &dry.times).await?;
            let facts = outcomes
                .into_iter()
                .map(|o| {
                    let now = match (o.passed, o.detail) {
                        (true, _) => "holds".to_string(),
                        (false, detail) => format!(
                            "does not hold ({}): the phase would fail",
                            detail.as_deref().unwrap_or("did not pass")
                        ),
                    };
                    (format!("check {:?} now", o.name), now)
                })
                .collect();
            Ok(WouldDo {
                what: "evaluate its checks (below); the phase fails if one does not hold"
                    .to_string(),
                facts,
                sql: None,
            })
        })
    }
}
