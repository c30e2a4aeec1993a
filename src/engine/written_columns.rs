//! A plan whose contract drops a column expects the application version of
//! the gate before it to stop writing that column. If the column is still
//! NOT NULL without a default, that version's inserts fail: the expand step
//! must relax it (or a sync phase with `down` fill it from the new
//! columns). `orch check --online` warns about such plans.

use crate::error::Result;
use crate::migration::MigrationSet;
use crate::migration::columns::{dropped_columns, relaxes};
use crate::plan::LoadedPlan;
use crate::plan::format::Role;
use crate::plan::kinds;
use crate::store::Store;

/// Warnings, by the 0-based index of the gate that expects the writes to
/// stop.
pub(crate) async fn columns_still_required(
    store: &Store,
    plan: &LoadedPlan,
    migrations: &MigrationSet,
) -> Result<Vec<(usize, String)>> {
    let phases = &plan.spec.phases;
    let up_sql = |index: usize| {
        phases[index]
            .migration
            .as_deref()
            .and_then(|name| migrations.by_reference(name))
            .map(|m| m.up.sql.as_str())
    };
    let mut warnings = Vec::new();
    for (contract, phase) in phases.iter().enumerate() {
        if phase.role != Some(Role::Contract) {
            continue;
        }
        let Some(sql) = up_sql(contract) else {
            continue;
        };
        let Some(gate) = (0..contract)
            .rev()
            .find(|&i| kinds::rules(phases[i].kind).is_gate())
        else {
            continue;
        };
        for dropped in dropped_columns(sql) {
            let relaxed_before_gate = (0..gate)
                .filter_map(up_sql)
                .any(|earlier| relaxes(earlier, &dropped.table, &dropped.column));
            // A sync phase with `down` fills the column from the new ones
            // while the trigger runs, which is until this contract.
            let synced_before_gate = phases[..gate].iter().any(|p| {
                p.sync.as_ref().is_some_and(|sync| {
                    sync.down.as_ref().is_some_and(|down| {
                        down.contains_key(&dropped.column)
                            && same_table(&sync.table, &dropped.table)
                    })
                })
            });
            if relaxed_before_gate || synced_before_gate {
                continue;
            }
            let required = store
                .column_requirement(&dropped.table, &dropped.column)
                .await?;
            if required.is_some_and(|r| r.must_be_written()) {
                let (table, column) = (&dropped.table, &dropped.column);
                warnings.push((
                    gate,
                    format!(
                        "warning: phase {} ({}) drops {table}.{column}, so the application deployed at this gate stops writing it, but {table}.{column} is NOT NULL without a default and no phase before the gate relaxes it: that version's inserts would fail. Add `ALTER TABLE {table} ALTER COLUMN {column} DROP NOT NULL` to the expand migration (docs/plan-format.md)",
                        contract + 1,
                        phase.id
                    ),
                ));
            }
        }
    }
    Ok(warnings)
}

/// Whether two table names are the same table, comparing unqualified names
/// when either is unqualified (as `dropped_columns` reads them).
fn same_table(a: &str, b: &str) -> bool {
    let short = |t: &str| t.rsplit('.').next().unwrap_or(t).to_string();
    a == b || ((!a.contains('.') || !b.contains('.')) && short(a) == short(b))
}
