//! Phase kinds, as a plan file states them: one file per kind, each
//! implementing `KindRules` (the fields it uses, its validation, how people
//! see it, and its place in the state machine). What the engine does with
//! each kind is in `engine::phases`.

mod backfill;
mod check;
mod deploy;
mod migration;
mod sync;

use crate::plan::format::{PhaseKind, PhaseSpec};
use crate::plan::validator::Validator;

/// What a plan needs to know of one kind of phase.
pub(crate) trait KindRules: Sync {
    /// The optional phase fields this kind uses, of `role`, `migration`,
    /// `backfill` and `sync`; setting another is an error.
    fn sections(&self) -> &'static [&'static str] {
        &[]
    }

    /// Report the problems of this kind's fields in phase `index`.
    fn validate(&self, v: &mut Validator<'_>, index: usize, phase: &PhaseSpec);

    /// How the checklist names the kind, e.g. "deploy gate".
    fn label(&self) -> &'static str;

    /// A gate opens (rather than runs) and is confirmed by the operator
    /// after a deploy; `:gate_opened_at` refers to the latest one.
    fn is_gate(&self) -> bool {
        false
    }

    /// Its work may be paused and resumed (`orch pause`).
    fn pauses(&self) -> bool {
        false
    }

    /// Its recorded result (figures of the work) is worth showing in the
    /// release checklist.
    fn shows_result(&self) -> bool {
        false
    }

    /// Facts of the database it depends on (a table, a key) are checked
    /// only by `orch check --online`.
    fn checked_online(&self) -> bool {
        false
    }
}

/// The plan's side of a phase kind.
pub(crate) fn rules(kind: PhaseKind) -> &'static dyn KindRules {
    match kind {
        PhaseKind::Migration => &migration::MigrationRules,
        PhaseKind::Deploy => &deploy::DeployRules,
        PhaseKind::Backfill => &backfill::BackfillRules,
        PhaseKind::Check => &check::CheckRules,
        PhaseKind::Sync => &sync::SyncRules,
    }
}
