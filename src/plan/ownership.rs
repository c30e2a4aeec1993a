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

/// Migration name -> owning plan phase.
pub type Owners = HashMap<String, MigrationOwner>;

/// Add the migrations that `spec`'s phases own, keeping owners already known.
pub fn add_owners(owners: &mut Owners, plan: &str, spec: &PlanSpec) {
    for (i, phase) in spec.phases.iter().enumerate() {
        if let (PhaseKind::Migration, Some(name)) = (phase.kind, &phase.migration) {
            owners
                .entry(name.clone())
                .or_insert_with(|| MigrationOwner {
                    plan: plan.to_string(),
                    position: i + 1,
                    phase: phase.id.clone(),
                });
        }
    }
}
