//! A deploy gate: advancing it opens it (the operator deploys, then
//! confirms); rolling it back reopens or closes it, with nothing to undo.

use futures_util::future::BoxFuture;
use serde_json::json;

use crate::engine::phases::{DryRun, PhaseWork, Step};
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::error::Result;
use crate::events::{Event, WouldDo};
use crate::plan::AuditAction;

pub(crate) struct DeployGate;

impl PhaseWork for DeployGate {
    fn advance<'a>(
        &'a self,
        engine: &'a PlanEngine<'a>,
        step: Step<'a>,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (plan, spec) = (step.plan, step.spec());
            let mut open = step.started.clone();
            open.gate_opened_at = Some(step.now);
            engine
                .record_phase(
                    plan.name(),
                    open,
                    AuditAction::GateOpened,
                    json!({ "opened_at": step.now }),
                )
                .await?;
            engine.reporter.report(Event::GateOpened {
                plan: plan.name().to_string(),
                position: step.index + 1,
                total: plan.spec.phases.len(),
                id: spec.id.clone(),
                title: spec.title.clone(),
                instructions: spec.instructions.clone().unwrap_or_default(),
                confirm_command: confirm_command(plan.name(), &spec.id),
            });
            Ok(())
        })
    }

    fn dry_run<'a>(
        &'a self,
        _engine: &'a PlanEngine<'a>,
        _dry: &'a DryRun<'a>,
    ) -> BoxFuture<'a, Result<WouldDo>> {
        Box::pin(async {
            Ok(WouldDo {
                what: "open the gate, recording when (`:gate_opened_at` of its checks); then deploy as its instructions say, and confirm".to_string(),
                facts: Vec::new(),
                sql: None,
            })
        })
    }
}
