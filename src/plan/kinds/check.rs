//! A check phase in a plan: only checks, at least one.

use crate::plan::format::PhaseSpec;
use crate::plan::kinds::KindRules;
use crate::plan::validator::Validator;

pub(crate) struct CheckRules;

impl KindRules for CheckRules {
    fn validate(&self, v: &mut Validator<'_>, i: usize, phase: &PhaseSpec) {
        if phase.checks.is_empty() {
            v.at(i, &["checks"], "a check phase needs at least one check");
        }
    }

    fn label(&self) -> &'static str {
        "check"
    }
}
