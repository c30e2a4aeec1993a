//! The collector of a plan's problems, each pointing at its value
//! (file:line:column, field), and the name rules every part of a plan uses.
//! `validate` drives it; the phase kinds (`plan::kinds`) report into it.

use crate::error::Error;
use crate::migration::MigrationSet;
use crate::plan::load::{LoadedPlan, phase_path};
use crate::yaml_locate::PathSeg;

/// Collects the problems of one plan.
pub(crate) struct Validator<'a> {
    pub plan: &'a LoadedPlan,
    pub migrations: &'a MigrationSet,
    problems: Vec<Error>,
}

impl<'a> Validator<'a> {
    pub fn new(plan: &'a LoadedPlan, migrations: &'a MigrationSet) -> Validator<'a> {
        Validator {
            plan,
            migrations,
            problems: Vec::new(),
        }
    }

    pub fn into_problems(self) -> Vec<Error> {
        self.problems
    }
}

/// A plan or phase name: lowercase letters, digits, `-` and `_`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.len() <= 63
}

/// An unquoted PostgreSQL identifier in lowercase (orch quotes identifiers,
/// so mixed case would silently name a different object).
pub fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && name.len() <= 63
}

impl Validator<'_> {
    /// A problem with `field` of phase `phase` (0-based).
    pub fn at(&mut self, phase: usize, field: &[&str], message: impl Into<String>) {
        let path = phase_path(phase, field);
        self.problems.push(self.plan.error_at(&path, message));
    }

    /// A problem at `path` in the plan file.
    pub fn at_path(&mut self, path: Vec<PathSeg>, message: impl Into<String>) {
        self.problems.push(self.plan.error_at(&path, message));
    }
}
