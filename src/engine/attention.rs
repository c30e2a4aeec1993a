//! What `--exit-code` reports on: migrations out of step with their files,
//! and plans that wait on the operator. The decision is made here; the CLI
//! prints the status first, then returns what this gives back.

use crate::engine::migrator::{MigrationState, MigrationStatus};
use crate::engine::plan_status::PlanStatus;
use crate::engine::workspace::Workspace;
use crate::error::{Error, Result};
use crate::plan::PhaseState;

/// `Error::Waiting` when a migration is pending (plan-owned ones included:
/// they wait on `orch advance`), changed since applied, its file is missing,
/// or it is dirty (stopped half-way: the operator must resolve it).
pub fn migrations(rows: &[MigrationStatus]) -> Result<()> {
    let count = |state| rows.iter().filter(|r| r.state == state).count();
    let parts: Vec<String> = [
        (MigrationState::Pending, "pending"),
        (MigrationState::Changed, "changed since applied"),
        (MigrationState::Missing, "applied with the file missing"),
        (
            MigrationState::Dirty,
            "dirty (stopped half-way; `orch migrate resolve`)",
        ),
    ]
    .into_iter()
    .map(|(state, label)| (count(state), label))
    .filter(|(n, _)| *n > 0)
    .map(|(n, label)| format!("{n} {label}"))
    .collect();
    if parts.is_empty() {
        return Ok(());
    }
    Err(Error::Waiting {
        summary: format!("migrations not up to date: {}", parts.join(", ")),
    })
}

/// `Error::Waiting` when a plan waits on the operator: a gate open, a phase
/// done and unconfirmed, failed, paused, or running with no orch process
/// holding the plan's lock (interrupted), or a migration one of its phases
/// ran is dirty (stopped half-way).
pub async fn plans(workspace: &Workspace, statuses: &[PlanStatus]) -> Result<()> {
    let mut waiting = Vec::new();
    for status in statuses {
        if let Some(dirty) = status
            .phases
            .iter()
            .find_map(|p| p.dirty_migration.as_ref())
        {
            waiting.push(format!(
                "{} (migration {} is dirty)",
                status.plan, dirty.migration
            ));
            continue;
        }
        let Some(current) = status.current else {
            continue;
        };
        let phase = &status.phases[current - 1];
        let held = match phase.state {
            PhaseState::Running => workspace
                .store
                .plan_lock_holder(&status.plan)
                .await?
                .is_some(),
            _ => false,
        };
        if let Some(why) = operator_wait(phase.state, held) {
            waiting.push(format!("{} ({why})", status.plan));
        }
    }
    if waiting.is_empty() {
        return Ok(());
    }
    Err(Error::Waiting {
        summary: format!(
            "{} plan(s) wait on the operator: {}",
            waiting.len(),
            waiting.join(", ")
        ),
    })
}

/// Why a plan whose current phase is in `state` waits on the operator, or
/// `None` when it does not (`lock_held`: an orch process holds the plan).
fn operator_wait(state: PhaseState, lock_held: bool) -> Option<&'static str> {
    match state {
        PhaseState::Open => Some("gate open"),
        PhaseState::Done => Some("done, not confirmed"),
        PhaseState::Failed => Some("failed"),
        PhaseState::Paused => Some("paused"),
        PhaseState::Running if !lock_held => Some("interrupted"),
        PhaseState::Running | PhaseState::Pending | PhaseState::Confirmed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_states_wait_on_the_operator() {
        use PhaseState as S;
        let table = [
            (S::Pending, false, None),
            (S::Pending, true, None),
            (S::Running, true, None),
            (S::Running, false, Some("interrupted")),
            (S::Open, false, Some("gate open")),
            (S::Done, false, Some("done, not confirmed")),
            (S::Paused, false, Some("paused")),
            (S::Failed, false, Some("failed")),
            (S::Confirmed, false, None),
        ];
        for (state, held, expected) in table {
            assert_eq!(
                operator_wait(state, held),
                expected,
                "{state:?} held={held}"
            );
        }
        // Every state is in the table.
        for state in PhaseState::ALL {
            assert!(table.iter().any(|(s, _, _)| *s == state), "{state:?}");
        }
    }

    #[test]
    fn migrations_summary_names_each_kind() {
        let row = |version, state| MigrationStatus {
            version,
            name: format!("m{version}"),
            file: None,
            state,
            applied: None,
            owner: None,
        };
        assert!(migrations(&[row(1, MigrationState::Applied)]).is_ok());
        let err = migrations(&[
            row(1, MigrationState::Applied),
            row(2, MigrationState::Changed),
            row(3, MigrationState::Pending),
            row(4, MigrationState::Pending),
        ])
        .unwrap_err();
        assert_eq!(err.code(), 9);
        assert_eq!(
            err.to_string(),
            "migrations not up to date: 2 pending, 1 changed since applied"
        );
        let err = migrations(&[row(1, MigrationState::Dirty)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "migrations not up to date: 1 dirty (stopped half-way; `orch migrate resolve`)"
        );
    }
}
