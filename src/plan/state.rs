//! The phase state machine: a plain enum and one transition function that
//! rejects illegal moves. No database here; tested over every (kind, state,
//! command) triple.

use serde::{Deserialize, Serialize};

use crate::plan::format::PhaseKind;
use crate::plan::kinds;

/// Where one phase stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseState {
    /// Not started.
    Pending,
    /// Work in progress (or interrupted by a crash: resumable).
    Running,
    /// A deploy gate is open: the operator deploys, then confirms.
    Open,
    /// The work ran; waiting for the operator's confirmation.
    Done,
    /// Stopped on request (pause, Ctrl-C); resumable.
    Paused,
    /// The work failed; the phase can be retried or rolled back.
    Failed,
    /// Confirmed by the operator; the next phase may run.
    Confirmed,
}

impl PhaseState {
    pub const ALL: [PhaseState; 7] = [
        PhaseState::Pending,
        PhaseState::Running,
        PhaseState::Open,
        PhaseState::Done,
        PhaseState::Paused,
        PhaseState::Failed,
        PhaseState::Confirmed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PhaseState::Pending => "pending",
            PhaseState::Running => "running",
            PhaseState::Open => "open",
            PhaseState::Done => "done",
            PhaseState::Paused => "paused",
            PhaseState::Failed => "failed",
            PhaseState::Confirmed => "confirmed",
        }
    }

    pub fn parse(text: &str) -> Option<PhaseState> {
        PhaseState::ALL.into_iter().find(|s| s.name() == text)
    }

    /// Has this phase started (is there anything to roll back)?
    pub fn has_run(self) -> bool {
        self != PhaseState::Pending
    }

    /// Is the operator's confirmation what this phase waits for?
    pub fn awaits_confirmation(self) -> bool {
        matches!(self, PhaseState::Open | PhaseState::Done)
    }
}

/// What can happen to a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseCommand {
    /// `orch advance`: start, retry, or resume the phase.
    Start,
    /// The phase's work finished.
    Succeed,
    /// The phase's work failed.
    Fail,
    /// The backfill stopped on request; resumable.
    Pause,
    /// `orch confirm`, after its checks passed.
    Confirm,
    /// `orch rollback`.
    Rollback,
}

impl PhaseCommand {
    #[cfg(test)]
    pub const ALL: [PhaseCommand; 6] = [
        PhaseCommand::Start,
        PhaseCommand::Succeed,
        PhaseCommand::Fail,
        PhaseCommand::Pause,
        PhaseCommand::Confirm,
        PhaseCommand::Rollback,
    ];
}

/// An illegal move, with a sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalMove {
    pub kind: PhaseKind,
    pub state: PhaseState,
    pub command: PhaseCommand,
}

impl std::fmt::Display for IllegalMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = match self.command {
            PhaseCommand::Start => "start",
            PhaseCommand::Succeed => "finish",
            PhaseCommand::Fail => "fail",
            PhaseCommand::Pause => "pause",
            PhaseCommand::Confirm => "confirm",
            PhaseCommand::Rollback => "roll back",
        };
        write!(
            f,
            "cannot {verb} a {} phase that is {}",
            self.kind.name(),
            self.state.name()
        )
    }
}

/// The next state, or why the move is illegal.
///
/// Deploy gates never "run": starting one opens it, and rolling back a
/// confirmed gate reopens it (the operator must confirm again). Only
/// backfills pause. A phase left `running` by a crashed process may be
/// started again (resumed): the caller holds the plan's lock, so nobody else
/// is running it.
pub fn transition(
    kind: PhaseKind,
    state: PhaseState,
    command: PhaseCommand,
) -> Result<PhaseState, IllegalMove> {
    use PhaseCommand as C;
    use PhaseState as S;
    let rules = kinds::rules(kind);
    let gate = rules.is_gate();
    let next = match (state, command) {
        (S::Pending, C::Start) if gate => Some(S::Open),
        (S::Pending | S::Failed | S::Paused | S::Running, C::Start) if !gate => Some(S::Running),
        (S::Running, C::Succeed) if !gate => Some(S::Done),
        (S::Running, C::Fail) if !gate => Some(S::Failed),
        (S::Running, C::Pause) if rules.pauses() => Some(S::Paused),
        (S::Open, C::Confirm) if gate => Some(S::Confirmed),
        (S::Done, C::Confirm) if !gate => Some(S::Confirmed),
        (S::Confirmed, C::Rollback) if gate => Some(S::Open),
        (S::Open, C::Rollback) if gate => Some(S::Pending),
        (S::Done | S::Confirmed | S::Failed | S::Paused, C::Rollback) if !gate => Some(S::Pending),
        _ => None,
    };
    next.ok_or(IllegalMove {
        kind,
        state,
        command,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use PhaseCommand as C;
    use PhaseKind as K;
    use PhaseState as S;

    /// Every legal move; everything else must be rejected.
    fn legal() -> Vec<(K, S, C, S)> {
        let mut moves = vec![
            (K::Deploy, S::Pending, C::Start, S::Open),
            (K::Deploy, S::Open, C::Confirm, S::Confirmed),
            (K::Deploy, S::Confirmed, C::Rollback, S::Open),
            (K::Deploy, S::Open, C::Rollback, S::Pending),
            (K::Backfill, S::Running, C::Pause, S::Paused),
        ];
        for kind in [K::Migration, K::Backfill, K::Check, K::Sync] {
            moves.extend([
                (kind, S::Pending, C::Start, S::Running),
                (kind, S::Failed, C::Start, S::Running),
                (kind, S::Paused, C::Start, S::Running),
                (kind, S::Running, C::Start, S::Running),
                (kind, S::Running, C::Succeed, S::Done),
                (kind, S::Running, C::Fail, S::Failed),
                (kind, S::Done, C::Confirm, S::Confirmed),
                (kind, S::Done, C::Rollback, S::Pending),
                (kind, S::Confirmed, C::Rollback, S::Pending),
                (kind, S::Failed, C::Rollback, S::Pending),
                (kind, S::Paused, C::Rollback, S::Pending),
            ]);
        }
        moves
    }

    #[test]
    fn every_kind_state_command_triple() {
        let legal = legal();
        let mut checked = 0;
        for kind in PhaseKind::ALL {
            for state in PhaseState::ALL {
                for command in PhaseCommand::ALL {
                    let expected = legal
                        .iter()
                        .find(|(k, s, c, _)| *k == kind && *s == state && *c == command)
                        .map(|(_, _, _, next)| *next);
                    let got = transition(kind, state, command).ok();
                    assert_eq!(got, expected, "{kind:?} {state:?} {command:?}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 5 * 7 * 6);
    }

    #[test]
    fn illegal_moves_explain_themselves() {
        let err = transition(K::Migration, S::Pending, C::Confirm).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot confirm a migration phase that is pending"
        );
    }

    #[test]
    fn a_confirmed_phase_never_starts_again() {
        for kind in PhaseKind::ALL {
            assert!(transition(kind, S::Confirmed, C::Start).is_err());
        }
    }

    #[test]
    fn state_names_round_trip() {
        for state in PhaseState::ALL {
            assert_eq!(PhaseState::parse(state.name()), Some(state));
        }
    }
}
