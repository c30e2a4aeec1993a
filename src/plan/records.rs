//! The rows of orch's plan state (`orch.plans`, `orch.phases`,
//! `orch.check_results`, `orch.events`), as plain data.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::plan::{AuditAction, PhaseKind, PhaseState};

/// A row of `orch.plans`.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRecord {
    pub name: String,
    pub file: String,
    pub started_checksum: String,
    pub checksum: String,
    pub definition: serde_json::Value,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A row of `orch.phases`.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    pub plan: String,
    /// 1-based.
    pub position: i32,
    pub id: String,
    pub kind: PhaseKind,
    pub state: PhaseState,
    pub definition_checksum: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub ran_by: Option<String>,
    pub gate_opened_at: Option<DateTime<Utc>>,
    pub confirmed_by: Option<String>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub error: Option<String>,
    pub result: Option<serde_json::Value>,
    pub pause_requested: bool,
    pub updated_at: Option<DateTime<Utc>>,
    /// The process id of the orch that last started (or resumed) the
    /// phase, and its host: with the time of its last batch (or its start),
    /// the heartbeat `status` shows.
    pub run_pid: Option<i32>,
    pub run_host: Option<String>,
}

impl PhaseRecord {
    /// A fresh, pending phase row.
    pub fn pending(plan: &str, position: i32, id: &str, kind: PhaseKind) -> PhaseRecord {
        PhaseRecord {
            plan: plan.to_string(),
            position,
            id: id.to_string(),
            kind,
            state: PhaseState::Pending,
            definition_checksum: None,
            started_at: None,
            finished_at: None,
            ran_by: None,
            gate_opened_at: None,
            confirmed_by: None,
            confirmed_at: None,
            note: None,
            error: None,
            result: None,
            pause_requested: false,
            updated_at: None,
            run_pid: None,
            run_host: None,
        }
    }
}

/// The latest result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResultRecord {
    pub phase: String,
    pub check_name: String,
    pub sql: String,
    pub passed: bool,
    pub detail: Option<String>,
    pub evaluated_at: DateTime<Utc>,
    pub evaluated_by: String,
}

/// An entry of the event log.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub plan: Option<String>,
    pub phase: Option<String>,
    pub actor: String,
    pub action: AuditAction,
    pub detail: serde_json::Value,
}

/// A sync phase's trigger, as recorded in the phase's `result`: where it
/// is, what it is called, and whether it is installed now (a contract
/// phase drops it, in the transaction that records `dropped_by`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SyncTriggerRecord {
    /// The table's schema and name, as the catalog has them.
    pub schema: String,
    pub table: String,
    /// The trigger's name (on the table) and its function's (in `schema`).
    pub trigger: String,
    pub function: String,
    pub installed: bool,
    /// The contract phase that dropped it, while it is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_by: Option<String>,
}

impl SyncTriggerRecord {
    /// The record a sync phase's result holds, if it holds one.
    pub fn of(phase: &PhaseRecord) -> Option<SyncTriggerRecord> {
        if phase.kind != PhaseKind::Sync {
            return None;
        }
        serde_json::from_value(phase.result.clone()?).ok()
    }

    /// `trigger orch_sync_... on public.posts installed`, for people.
    pub fn describe(&self) -> String {
        let state = match (&self.installed, &self.dropped_by) {
            (true, _) => "installed".to_string(),
            (false, Some(by)) => format!("dropped by phase {by}"),
            (false, None) => "not installed".to_string(),
        };
        format!(
            "trigger {} on {}.{} {state}",
            self.trigger, self.schema, self.table
        )
    }
}
