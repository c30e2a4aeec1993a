//! The actions of the append-only audit log (`orch.events`): one enum, so
//! the engine writes and the checklist reads the same names.

use serde::Serialize;

/// What an entry of the audit log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    PlanEdited,
    GateOpened,
    GuardFailed,
    MigrationApplied,
    ChecksPassed,
    BackfillStarted,
    BackfillResumed,
    BackfillPaused,
    BackfillFinished,
    PhaseFailed,
    ConfirmRefused,
    Confirmed,
    RolledBack,
    PauseRequested,
    /// `orch backfill PLAN PHASE` started (or resumed) a re-run.
    BackfillRerunStarted,
    /// A re-run ended: finished, paused, interrupted or failed.
    BackfillRerunEnded,
    /// A lint finding accepted by `-- orch:allow RULE-ID: reason`, recorded
    /// with the migration it was in.
    LintAllowed,
    /// A sync phase installed its trigger (the phase is done).
    TriggerInstalled,
    /// A sync trigger was dropped: by the plan's contract phase (in the
    /// migration's transaction) or by rolling back its sync phase.
    TriggerDropped,
    /// Rolling back the contract phase that dropped a sync trigger
    /// installed it again.
    TriggerRestored,
}

impl AuditAction {
    pub const ALL: [AuditAction; 20] = [
        AuditAction::PlanEdited,
        AuditAction::GateOpened,
        AuditAction::GuardFailed,
        AuditAction::MigrationApplied,
        AuditAction::ChecksPassed,
        AuditAction::BackfillStarted,
        AuditAction::BackfillResumed,
        AuditAction::BackfillPaused,
        AuditAction::BackfillFinished,
        AuditAction::PhaseFailed,
        AuditAction::ConfirmRefused,
        AuditAction::Confirmed,
        AuditAction::RolledBack,
        AuditAction::PauseRequested,
        AuditAction::BackfillRerunStarted,
        AuditAction::BackfillRerunEnded,
        AuditAction::LintAllowed,
        AuditAction::TriggerInstalled,
        AuditAction::TriggerDropped,
        AuditAction::TriggerRestored,
    ];

    /// The name stored in `orch.events.action`.
    pub fn name(self) -> &'static str {
        match self {
            AuditAction::PlanEdited => "plan_edited",
            AuditAction::GateOpened => "gate_opened",
            AuditAction::GuardFailed => "guard_failed",
            AuditAction::MigrationApplied => "migration_applied",
            AuditAction::ChecksPassed => "checks_passed",
            AuditAction::BackfillStarted => "backfill_started",
            AuditAction::BackfillResumed => "backfill_resumed",
            AuditAction::BackfillPaused => "backfill_paused",
            AuditAction::BackfillFinished => "backfill_finished",
            AuditAction::PhaseFailed => "phase_failed",
            AuditAction::ConfirmRefused => "confirm_refused",
            AuditAction::Confirmed => "confirmed",
            AuditAction::RolledBack => "rolled_back",
            AuditAction::PauseRequested => "pause_requested",
            AuditAction::BackfillRerunStarted => "backfill_rerun_started",
            AuditAction::BackfillRerunEnded => "backfill_rerun_ended",
            AuditAction::LintAllowed => "lint_allowed",
            AuditAction::TriggerInstalled => "trigger_installed",
            AuditAction::TriggerDropped => "trigger_dropped",
            AuditAction::TriggerRestored => "trigger_restored",
        }
    }

    pub fn parse(text: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.name() == text)
    }

    /// The verb whose work this action records, for the actions that move a
    /// phase from one state to another; None for the rest (an edit of the
    /// file, a refusal, a pause request, a re-run of a finished backfill).
    /// What a verb saw before waiting for the plan's lock is the latest of
    /// these; another one under the lock means the plan moved meanwhile.
    pub fn moved_by(self) -> Option<Verb> {
        match self {
            AuditAction::GateOpened
            | AuditAction::MigrationApplied
            | AuditAction::ChecksPassed
            | AuditAction::BackfillStarted
            | AuditAction::BackfillResumed
            | AuditAction::BackfillPaused
            | AuditAction::BackfillFinished
            | AuditAction::TriggerInstalled
            | AuditAction::PhaseFailed => Some(Verb::Advance),
            AuditAction::Confirmed => Some(Verb::Confirm),
            AuditAction::RolledBack => Some(Verb::Rollback),
            AuditAction::PlanEdited
            | AuditAction::GuardFailed
            | AuditAction::ConfirmRefused
            | AuditAction::PauseRequested
            | AuditAction::BackfillRerunStarted
            | AuditAction::BackfillRerunEnded
            | AuditAction::LintAllowed
            | AuditAction::TriggerDropped
            | AuditAction::TriggerRestored => None,
        }
    }

    /// For people: `gate opened`.
    pub fn words(self) -> String {
        self.name().replace('_', " ")
    }
}

/// The commands that move a plan's phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    Advance,
    Confirm,
    Rollback,
}

impl Verb {
    pub fn name(self) -> &'static str {
        match self {
            Verb::Advance => "advance",
            Verb::Confirm => "confirm",
            Verb::Rollback => "rollback",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for action in AuditAction::ALL {
            assert_eq!(AuditAction::parse(action.name()), Some(action));
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::Value::String(action.name().to_string())
            );
        }
    }

    #[test]
    fn each_verb_has_a_move() {
        for verb in [Verb::Advance, Verb::Confirm, Verb::Rollback] {
            assert!(AuditAction::ALL.iter().any(|a| a.moved_by() == Some(verb)));
        }
        assert_eq!(AuditAction::PlanEdited.moved_by(), None);
    }
}
