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
        if v.migrations.by_name(name).is_none() {
            let known: Vec<&str> = v.migrations.files.iter().map(|f| f.name.as_str()).collect();
            let message = format!(
                "no migration named {name:?} in {} (known: {})",
                v.migrations.dir.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
            v.at(i, &["migration"], message);
        }
    }

    fn label(&self) -> &'static str {
        "migration"
    }

    fn shows_result(&self) -> bool {
        true
    }
}
