//! The lint where the engine runs migrations: the role a plan gives each
//! migration, what the database says of the tables a run touches, what is
//! reported, and the audit records of the findings an `-- orch:allow`
//! accepted (written with the migration's own record).

use std::collections::HashMap;

use serde_json::json;

use crate::engine::workspace::Workspace;
use crate::error::Result;
use crate::events::{Event, Reporter};
use crate::lint::{self, Catalog, Finding, Role, Severity};
use crate::migration::{Migration, MigrationSet, Section};
use crate::plan::format::{PhaseKind, Role as PlanRole};
use crate::plan::{AuditAction, PlanSet};
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;

/// The lint's role for a migration phase: contract when the plan says so;
/// an expand phase (or one without a role) must keep the running
/// application working.
pub fn role(role: Option<PlanRole>) -> Role {
    match role {
        Some(PlanRole::Contract) => Role::Contract,
        Some(PlanRole::Expand) | None => Role::Expand,
    }
}

/// The role of each migration the plans apply, by version; the others are
/// plain migrations.
pub fn roles(plans: &PlanSet, migrations: &MigrationSet) -> HashMap<i64, Role> {
    let mut out = HashMap::new();
    for plan in &plans.plans {
        for phase in plan
            .spec
            .phases
            .iter()
            .filter(|p| p.kind == PhaseKind::Migration)
        {
            if let Some(file) = phase
                .migration
                .as_deref()
                .and_then(|m| migrations.by_reference(m))
            {
                out.entry(file.version).or_insert(role(phase.role));
            }
        }
    }
    out
}

/// What the database says of the tables the up sections of `run` touch.
pub(crate) async fn catalog(store: &Store, run: &[&Migration]) -> Result<Catalog> {
    catalog_of(store, run.iter().map(|m| &m.up).collect()).await
}

/// What the database says of the tables the down sections of `revert`
/// touch (and their up sections, which `redo` runs again).
pub(crate) async fn revert_catalog(store: &Store, revert: &[&Migration]) -> Result<Catalog> {
    let mut sections: Vec<&Section> = Vec::new();
    for m in revert {
        sections.extend(m.down.as_ref());
        sections.push(&m.up);
    }
    catalog_of(store, sections).await
}

async fn catalog_of(store: &Store, sections: Vec<&Section>) -> Result<Catalog> {
    let tables = lint::tables_of(sections);
    if tables.is_empty() {
        return Ok(Catalog::default());
    }
    Ok(Catalog::new(store.table_facts(&tables).await?))
}

impl Workspace {
    /// `orch check --online`: the database's facts for every migration.
    pub async fn lint_catalog(&self) -> Result<Catalog> {
        let all: Vec<&Migration> = self.migrations.files.iter().collect();
        catalog(&self.store, &all).await
    }
}

/// The findings of `section` (a run's findings are in file order).
pub fn of<'a>(findings: &'a [Finding], section: &Section) -> Vec<&'a Finding> {
    let path = section.path.display().to_string();
    let lines = section.file_line(0)..=section.file_line(section.sql.len());
    findings
        .iter()
        .filter(|f| f.file == path && lines.contains(&f.line))
        .collect()
}

/// Show what does not block: warnings, and the errors an allow accepted.
pub(crate) fn report(reporter: &dyn Reporter, findings: &[Finding]) {
    for f in findings
        .iter()
        .filter(|f| f.allowed.is_some() || f.severity == Severity::Warning)
    {
        reporter.report(Event::Warning {
            message: f.render(),
        });
    }
}

/// The audit records of the allowed findings of `file`, for the
/// transaction that records the migration: with its plan and phase, or
/// with no plan for one `migrate up` runs.
pub(crate) fn allowed_records(
    findings: &[&Finding],
    file: &Migration,
    actor: &str,
    owner: Option<(&str, &str)>,
) -> Vec<Bookkeeping> {
    findings
        .iter()
        .filter_map(|f| {
            let reason = f.allowed.as_ref()?;
            Some(Bookkeeping::Event {
                plan: owner.map(|(plan, _)| plan.to_string()),
                phase: owner.map(|(_, phase)| phase.to_string()),
                actor: actor.to_string(),
                action: AuditAction::LintAllowed,
                detail: json!({
                    "migration": file.id(),
                    "version": file.version,
                    "rule": f.rule.id(),
                    "file": f.file,
                    "line": f.line,
                    "column": f.column,
                    "message": f.message,
                    "reason": reason,
                    // What the checklist's log shows after the action.
                    "note": format!("{} at {}:{}:{}: {reason}", f.rule.id(), f.file, f.line, f.column),
                }),
            })
        })
        .collect()
}
