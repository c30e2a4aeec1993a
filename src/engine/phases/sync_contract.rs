//! What a plan's contract phase does to the sync triggers its sync phases
//! installed: it drops them in its migration's transaction, before the
//! migration's statements (so the old columns and the trigger reading them
//! go together), and rolling it back installs them again after its down
//! section. Each change is recorded in that transaction: the sync phase's
//! record (`installed`, `dropped_by`) and an event.

use serde_json::json;

use crate::engine::plan_runner::PlanEngine;
use crate::plan::records::{PhaseRecord, SyncTriggerRecord};
use crate::plan::{AuditAction, LoadedPlan};
use crate::store::bookkeeping::Bookkeeping;
use crate::store::sync_trigger;

/// What a contract phase does to the plan's sync triggers, in its
/// migration's transaction: SQL run there, and the records committed with
/// it.
pub(crate) struct TriggerChange {
    pub sql: String,
    pub records: Vec<Bookkeeping>,
    /// The triggers, for the phase's result and event.
    pub triggers: Vec<String>,
}

/// The sync triggers of phases before `index` that are installed: a
/// contract phase drops them before its migration, in its transaction.
pub(crate) fn contract_drops(
    engine: &PlanEngine<'_>,
    plan: &LoadedPlan,
    index: usize,
    phases: &[PhaseRecord],
) -> Option<TriggerChange> {
    let contract = &plan.spec.phases[index].id;
    let mut change = TriggerChange {
        sql: String::new(),
        records: Vec::new(),
        triggers: Vec::new(),
    };
    let ran_before = phases
        .iter()
        .filter(|p| (p.position as usize) <= index && p.state.has_run());
    for record in ran_before {
        let Some(trigger) = SyncTriggerRecord::of(record).filter(|t| t.installed) else {
            continue;
        };
        change.sql.push_str(&sync_trigger::drop_sql(&trigger));
        let mut dropped = trigger.clone();
        dropped.installed = false;
        dropped.dropped_by = Some(contract.clone());
        let mut row = record.clone();
        row.result = Some(serde_json::to_value(&dropped).expect("a trigger record serialises"));
        change.records.push(Bookkeeping::Phase(Box::new(row)));
        change.records.push(engine.event(
            plan.name(),
            Some(&record.id),
            AuditAction::TriggerDropped,
            json!({
                "trigger": trigger.trigger,
                "table": format!("{}.{}", trigger.schema, trigger.table),
                "by": contract,
            }),
        ));
        change.triggers.push(trigger.trigger);
    }
    (!change.triggers.is_empty()).then_some(change)
}

/// The sync triggers contract phase `index` dropped: rolling it back
/// installs them again after its down section, in its transaction.
pub(crate) fn contract_restores(
    engine: &PlanEngine<'_>,
    plan: &LoadedPlan,
    index: usize,
    phases: &[PhaseRecord],
) -> Option<TriggerChange> {
    let contract = &plan.spec.phases[index].id;
    let mut change = TriggerChange {
        sql: String::new(),
        records: Vec::new(),
        triggers: Vec::new(),
    };
    let ran_before = phases
        .iter()
        .filter(|p| (p.position as usize) <= index && p.state.has_run());
    for record in ran_before {
        let Some(trigger) = SyncTriggerRecord::of(record)
            .filter(|t| !t.installed && t.dropped_by.as_ref() == Some(contract))
        else {
            continue;
        };
        let Some(spec) = plan
            .spec
            .phases
            .get(record.position as usize - 1)
            .and_then(|p| p.sync.as_ref())
        else {
            continue;
        };
        let mut restored = trigger.clone();
        restored.installed = true;
        restored.dropped_by = None;
        change
            .sql
            .push_str(&sync_trigger::install_sql(&restored, spec));
        let mut row = record.clone();
        row.result = Some(serde_json::to_value(&restored).expect("a trigger record serialises"));
        change.records.push(Bookkeeping::Phase(Box::new(row)));
        change.records.push(engine.event(
            plan.name(),
            Some(&record.id),
            AuditAction::TriggerRestored,
            json!({
                "trigger": trigger.trigger,
                "table": format!("{}.{}", trigger.schema, trigger.table),
                "by": contract,
            }),
        ));
        change.triggers.push(trigger.trigger);
    }
    (!change.triggers.is_empty()).then_some(change)
}
