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
    change_triggers(
        engine,
        plan,
        index,
        phases,
        AuditAction::TriggerDropped,
        |_, trigger| {
            if !trigger.installed {
                return None;
            }
            let mut dropped = trigger.clone();
            dropped.installed = false;
            dropped.dropped_by = Some(contract.clone());
            Some((sync_trigger::drop_sql(trigger), dropped))
        },
    )
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
    change_triggers(
        engine,
        plan,
        index,
        phases,
        AuditAction::TriggerRestored,
        |record, trigger| {
            if trigger.installed || trigger.dropped_by.as_ref() != Some(contract) {
                return None;
            }
            let spec = plan
                .spec
                .phases
                .get(record.position as usize - 1)?
                .sync
                .as_ref()?;
            let mut restored = trigger.clone();
            restored.installed = true;
            restored.dropped_by = None;
            Some((sync_trigger::install_sql(&restored, spec), restored))
        },
    )
}

/// One walk for both: over the sync triggers of the phases up to `index`
/// that ran, `change` says which to change (the SQL and the trigger's new
/// record); each is recorded with an `action` event naming contract phase
/// `index`. None when no trigger changes.
fn change_triggers(
    engine: &PlanEngine<'_>,
    plan: &LoadedPlan,
    index: usize,
    phases: &[PhaseRecord],
    action: AuditAction,
    change: impl Fn(&PhaseRecord, &SyncTriggerRecord) -> Option<(String, SyncTriggerRecord)>,
) -> Option<TriggerChange> {
    let contract = &plan.spec.phases[index].id;
    let mut out = TriggerChange {
        sql: String::new(),
        records: Vec::new(),
        triggers: Vec::new(),
    };
    let ran_before = phases
        .iter()
        .filter(|p| (p.position as usize) <= index && p.state.has_run());
    for record in ran_before {
        let Some(trigger) = SyncTriggerRecord::of(record) else {
            continue;
        };
        let Some((sql, changed)) = change(record, &trigger) else {
            continue;
        };
        out.sql.push_str(&sql);
        let mut row = record.clone();
        row.result = Some(serde_json::to_value(&changed).expect("a trigger record serialises"));
        out.records.push(Bookkeeping::Phase(Box::new(row)));
        out.records.push(engine.event(
            plan.name(),
            Some(&record.id),
            action,
            json!({
                "trigger": trigger.trigger,
                "table": format!("{}.{}", trigger.schema, trigger.table),
                "by": contract,
            }),
        ));
        out.triggers.push(trigger.trigger);
    }
    (!out.triggers.is_empty()).then_some(out)
}
