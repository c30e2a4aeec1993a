//! A migration phase in a plan: it names a migration of the folder, which
//! it owns, and may say whether it expands or contracts the schema.

use crate::plan::format::PhaseSpec;
use crate::plan::kinds::KindRules;
use crate::plan::validator::Validator;

pub(crate) struct MigrationRules;

impl KindRules for MigrationRules {
    fn sections(&self) -> &'static [&'static str] {
        &["role", "migration"]
    }

    fn validate(&self, v: &mut Validator<'_>, i: usize, phase: &PhaseSpec) {
        let Some(name) = phase.migration.as_deref() else {
            v.at(
                i,
                &["migration"],
                "a migration phase names the migration it applies",
            );
            return;
        };
        if let Err(why) = v.migrations.find(name) {
            v.at(i, &["migration"], why);
        }
    }

    fn label(&self) -> &'static str {
        "migration"
    }

    fn shows_result(&self) -> bool {
        true
    }
}
