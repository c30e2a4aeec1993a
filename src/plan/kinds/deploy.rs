//! A deploy gate in a plan: instructions for the operator, checks run at
//! confirmation, never a guard, always reopenable.

use crate::plan::format::PhaseSpec;
use crate::plan::kinds::KindRules;
use crate::plan::validator::Validator;

pub(crate) struct DeployRules;

impl KindRules for DeployRules {
    fn validate(&self, v: &mut Validator<'_>, i: usize, phase: &PhaseSpec) {
        if phase
            .instructions
            .as_deref()
            .is_none_or(|t| t.trim().is_empty())
        {
            v.at(
                i,
                &["instructions"],
                "a deploy gate tells the operator what to deploy: add instructions",
            );
        }
        if !phase.guard.is_empty() {
            v.at(
                i,
                &["guard"],
                "a deploy gate has checks (run at confirm), not a guard",
            );
        }
        if !phase.reversible {
            v.at(
                i,
                &["reversible"],
                "a deploy gate can always be reopened; remove reversible: false",
            );
        }
    }

    fn label(&self) -> &'static str {
        "deploy gate"
    }

    fn is_gate(&self) -> bool {
        true
    }
}
