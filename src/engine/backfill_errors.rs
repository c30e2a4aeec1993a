//! The rows a command backfill's program rejected or left out, phase by
//! phase, for `orch status PLAN --errors` (the CLI renders them).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::engine::plan_status::PlanStatus;
use crate::engine::workspace::Workspace;
use crate::error::Result;

/// At most this many rows are listed per phase (the counts are exact).
pub const LISTED: i64 = 10_000;

/// One command backfill phase's rejected and left-out rows.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseErrors {
    pub position: usize,
    pub phase: String,
    /// The key's columns, for reading `key`.
    pub key_columns: Vec<String>,
    pub rejected: i64,
    pub left_out: i64,
    pub rows: Vec<RowErrorView>,
}

/// One row the program did not fill.
#[derive(Debug, Clone, Serialize)]
pub struct RowErrorView {
    pub key: Vec<String>,
    /// `rejected` (the program said why) or `left_out` (no answer).
    pub kind: String,
    pub message: String,
    pub worker: i32,
    pub recorded_at: DateTime<Utc>,
}

/// The errors of every command backfill phase of `status`'s plan, oldest
/// first.
pub async fn backfill_errors(
    workspace: &Workspace,
    status: &PlanStatus,
) -> Result<Vec<PhaseErrors>> {
    let mut out = Vec::new();
    for phase in &status.phases {
        let Some(spec) = &phase.backfill else {
            continue;
        };
        if spec.command.is_none() {
            continue;
        }
        let (rows, counts) = workspace
            .store
            .backfill_errors(&status.plan, &phase.id, LISTED)
            .await?;
        let key_columns = workspace
            .store
            .backfill_workers(&status.plan, &phase.id)
            .await?
            .first()
            .map(|w| w.key_columns.clone())
            .unwrap_or_default();
        out.push(PhaseErrors {
            position: phase.position,
            phase: phase.id.clone(),
            key_columns,
            rejected: counts.rejected,
            left_out: counts.left_out,
            rows: rows
                .into_iter()
                .map(|r| RowErrorView {
                    key: r.key,
                    kind: r.kind,
                    message: r.message,
                    worker: r.worker,
                    recorded_at: r.recorded_at,
                })
                .collect(),
        });
    }
    Ok(out)
}
