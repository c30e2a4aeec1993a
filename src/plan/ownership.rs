//! Which plan phase owns which migration: such a migration is applied only
//! through its plan, and `orch migrate up` stops before it.

use std::collections::HashMap;

use serde::Serialize;

use crate::plan::format::{PhaseKind, PlanSpec};

/// A plan phase that owns a migration: it is applied only through the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationOwner {
    pub plan: String,
    /// 1-based phase number.
    pub position: usize,
    pub phase: String,
}

/// Which plan phase owns which migration, by the reference the plan uses
/// (a name, or a version when names are not unique).
#[derive(Debug, Clone, Default)]
pub struct Owners(HashMap<String, MigrationOwner>);

impl Owners {
    pub fn new() -> Owners {
        Owners::default()
    }

    /// Record `owner` for the migration a plan refers to as `reference`,
    /// keeping an owner already known.
    pub fn insert(&mut self, reference: &str, owner: MigrationOwner) {
        self.0.entry(reference.to_string()).or_insert(owner);
    }

    /// The plan phase that owns the migration with this version and name,
    /// whether its plan refers to it by version or by name.
    pub fn of(&self, version: i64, name: &str) -> Option<&MigrationOwner> {
        self.0
            .get(&version.to_string())
            .or_else(|| self.0.get(name))
    }

    /// True when a plan phase owns the migration.
    pub fn owns(&self, version: i64, name: &str) -> bool {
        self.of(version, name).is_some()
    }
}

/// Add the migrations that `spec`'s phases own, keeping owners already known.
pub fn add_owners(owners: &mut Owners, plan: &str, spec: &PlanSpec) {
    for (i, phase) in spec.phases.iter().enumerate() {
        if let (PhaseKind::Migration, Some(name)) = (phase.kind, &phase.migration) {
            owners.insert(
                name,
                MigrationOwner {
                    plan: plan.to_string(),
                    position: i + 1,
                    phase: phase.id.clone(),
                },
            );
        }
    }
}
