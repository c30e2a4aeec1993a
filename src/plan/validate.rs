//! Semantic rules for a plan, beyond what the YAML types enforce. Each
//! problem points at the offending value (file:line:column, field).

use std::collections::HashMap;

use crate::error::Error;
use crate::migration::MigrationSet;
use crate::plan::format::{CheckSpec, PhaseKind, PhaseSpec, Role};
use crate::plan::kinds;
use crate::plan::load::{LoadedPlan, phase_path};
use crate::plan::validator::{Validator, valid_name};
use crate::sql_text;
use crate::yaml_locate::PathSeg;

/// Placeholders a check may use; bound as parameters when it runs.
pub const PLACEHOLDERS: [&str; 3] = ["gate_opened_at", "phase_started_at", "plan_started_at"];

/// Every problem of one plan; empty when it is valid.
pub fn validate(plan: &LoadedPlan, migrations: &MigrationSet) -> Vec<Error> {
    let mut v = Validator::new(plan, migrations);
    v.plan_level();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut used_migrations: HashMap<String, usize> = HashMap::new();
    for (i, phase) in plan.spec.phases.iter().enumerate() {
        if let Some(first) = ids.insert(phase.id.as_str(), i) {
            v.at(
                i,
                &["id"],
                format!(
                    "duplicate phase id {:?} (phase {} has it too)",
                    phase.id,
                    first + 1
                ),
            );
        }
        // The same migration, whether named or given by version.
        if let Some(name) = phase.migration.as_deref()
            && let Some(first) = used_migrations.insert(
                migrations
                    .by_reference(name)
                    .map_or_else(|| name.to_string(), |m| m.version.to_string()),
                i,
            )
        {
            v.at(
                i,
                &["migration"],
                format!(
                    "migration {name:?} is already applied by phase {} ({})",
                    first + 1,
                    plan.spec.phases[first].id
                ),
            );
        }
        v.phase(i, phase);
    }
    v.into_problems()
}

impl Validator<'_> {
    fn plan_level(&mut self) {
        let spec = &self.plan.spec;
        let plan_field = vec![PathSeg::Key("plan".into())];
        if !valid_name(&spec.plan) {
            self.at_path(
                plan_field.clone(),
                format!("{:?} is not a valid plan name (lowercase letters, digits, - and _, at most 63)", spec.plan),
            );
        }
        let stem = self
            .plan
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if stem != spec.plan {
            self.at_path(
                plan_field,
                format!(
                    "plan {:?} must be in a file named {:?}.yaml (it is in {stem:?})",
                    spec.plan, spec.plan
                ),
            );
        }
        if spec.phases.is_empty() {
            self.at_path(
                vec![PathSeg::Key("phases".into())],
                "a plan needs at least one phase",
            );
        }
    }

    fn phase(&mut self, i: usize, phase: &PhaseSpec) {
        if !valid_name(&phase.id) {
            self.at(
                i,
                &["id"],
                format!(
                    "{:?} is not a valid phase id (lowercase letters, digits, - and _)",
                    phase.id
                ),
            );
        } else if phase.id.bytes().all(|b| b.is_ascii_digit()) {
            self.at(
                i,
                &["id"],
                "a phase id must not be a number (numbers refer to phase positions)",
            );
        }
        if phase.title.trim().is_empty() {
            self.at(i, &["title"], "a phase needs a title");
        }
        let rules = kinds::rules(phase.kind);
        let kind = phase.kind.name();
        let not_for_kind =
            |field: &str| format!("a {kind} phase has no {field} (see docs/plan-format.md)");
        let sections = rules.sections();
        if phase.migration.is_some() && !sections.contains(&"migration") {
            self.at(i, &["migration"], not_for_kind("migration"));
        }
        if phase.role.is_some() && !sections.contains(&"role") {
            self.at(
                i,
                &["role"],
                "only migration phases have a role (expand or contract)",
            );
        }
        if phase.backfill.is_some() && !sections.contains(&"backfill") {
            self.at(i, &["backfill"], not_for_kind("backfill section"));
        }
        if phase.sync.is_some() && !sections.contains(&"sync") {
            self.at(i, &["sync"], not_for_kind("sync section"));
        }
        rules.validate(self, i, phase);
        if phase.reversible && phase.rollback_loses.is_some() {
            self.at(
                i,
                &["rollback_loses"],
                "rollback_loses is for irreversible phases (reversible: false)",
            );
        }
        if phase.role == Some(Role::Contract) && phase.guard.is_empty() {
            let earlier_check = self.plan.spec.phases[..i]
                .iter()
                .any(|p| p.kind == PhaseKind::Check);
            if !earlier_check {
                self.at(
                    i,
                    &["role"],
                    "a contract phase needs a check before it: add a guard (e.g. that nothing is left to copy) or a check phase before it",
                );
            }
        }
        let has_gate = self.plan.spec.phases[..=i]
            .iter()
            .any(|p| kinds::rules(p.kind).is_gate());
        for (list_name, list) in [("guard", &phase.guard), ("checks", &phase.checks)] {
            self.checks(i, list_name, list, has_gate);
        }
    }

    fn checks(&mut self, i: usize, list_name: &str, checks: &[CheckSpec], has_gate: bool) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (j, check) in checks.iter().enumerate() {
            let path = |field: &str| {
                let mut p = phase_path(i, &[list_name]);
                p.push(PathSeg::Index(j));
                p.push(PathSeg::Key(field.to_string()));
                p
            };
            if check.name.trim().is_empty() {
                self.at_path(path("name"), "a check needs a name");
            }
            if let Some(first) = names.insert(check.name.as_str(), j) {
                self.at_path(
                    path("name"),
                    format!(
                        "duplicate check name {:?} ({list_name}[{first}] has it too)",
                        check.name
                    ),
                );
            }
            let statements = sql_text::split_statements(&check.sql);
            if statements.len() != 1 {
                self.at_path(
                    path("sql"),
                    format!(
                        "a check is exactly one SQL statement returning one boolean (found {})",
                        statements.len()
                    ),
                );
            }
            for placeholder in sql_text::placeholders(&check.sql) {
                if !PLACEHOLDERS.contains(&placeholder.name.as_str()) {
                    self.at_path(
                        path("sql"),
                        format!(
                            ":{} is not a known placeholder (known: :{})",
                            placeholder.name,
                            PLACEHOLDERS.join(", :")
                        ),
                    );
                } else if placeholder.name == "gate_opened_at" && !has_gate {
                    self.at_path(
                        path("sql"),
                        ":gate_opened_at needs a deploy phase at or before this one",
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn migrations() -> MigrationSet {
        let file = |name: &str, version: i64| {
            crate::migration::source::dbmate::parse_file(
                Path::new(&format!("migrations/{version}_{name}.sql")),
                "-- migrate:up\nSELECT 1;\n",
            )
            .unwrap()
        };
        MigrationSet {
            dir: "migrations".into(),
            files: vec![
                file("add_loc", 2),
                file("drop_lat_lng", 3),
                file("tidy", 4),
                file("tidy", 5),
            ],
            ..MigrationSet::default()
        }
    }

    fn problems(yaml: &str) -> Vec<String> {
        let plan = LoadedPlan::parse(Path::new("plans/p.yaml"), yaml).unwrap();
        validate(&plan, &migrations())
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    const GOOD: &str = "plan: p
phases:
  - id: add
    kind: migration
    role: expand
    title: Add
    migration: add_loc
  - id: gate
    kind: deploy
    title: Deploy
    instructions: deploy v2
    checks:
      - name: recent rows
        sql: SELECT count(*) > 0 FROM t WHERE created_at >= :gate_opened_at
  - id: fill
    kind: backfill
    title: Fill
    backfill:
      table: posts
      set: loc = point(lng, lat)
      where: loc IS NULL
  - id: drop
    kind: migration
    role: contract
    title: Drop
    migration: drop_lat_lng
    reversible: false
    guard:
      - name: nothing left
        sql: SELECT NOT EXISTS (SELECT 1 FROM posts WHERE loc IS NULL)
";

    #[test]
    fn the_example_is_valid() {
        assert_eq!(problems(GOOD), Vec::<String>::new());
        for by_version in ["migration: 2", "version: 2"] {
            let plan = GOOD.replace("migration: add_loc", by_version);
            assert_eq!(problems(&plan), Vec::<String>::new());
        }
        let err = LoadedPlan::parse(
            Path::new("plans/p.yaml"),
            &GOOD.replace("migration: add_loc", "migration: [add_loc]"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("expected a migration name or version"),
            "{err}"
        );
    }

    #[test]
    fn each_rule_points_at_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "id: gate",
                "id: add",
                "plans/p.yaml:8:9: phases[1].id: duplicate phase id \"add\" (phase 1 has it too)",
            ),
            (
                "migration: add_loc",
                "migration: add_locc",
                "plans/p.yaml:7:16: phases[0].migration: no migration named \"add_locc\"",
            ),
            (
                "migration: drop_lat_lng",
                "migration: add_loc",
                "phases[3].migration: migration \"add_loc\" is already applied by phase 1",
            ),
            (
                "migration: drop_lat_lng",
                "migration: 2",
                "phases[3].migration: migration \"2\" is already applied by phase 1",
            ),
            (
                "migration: drop_lat_lng",
                "migration: tidy",
                "plans/p.yaml:26:16: phases[3].migration: migration name \"tidy\" is ambiguous: migrations/4_tidy.sql (version 4) and migrations/5_tidy.sql (version 5); refer to one by its version, e.g. `migration: 4`",
            ),
            (
                "table: posts",
                "table: Posts",
                "phases[2].backfill.table: \"Posts\" is not a valid table name",
            ),
            (
                "table: posts",
                "table: posts; drop",
                "phases[2].backfill.table",
            ),
            (
                "where: loc IS NULL",
                "where: loc IS NULL; DELETE FROM posts",
                "phases[2].backfill.where: where is an SQL fragment",
            ),
            (
                "instructions: deploy v2",
                "instructions: ''",
                "phases[1].instructions: a deploy gate tells the operator",
            ),
            (
                "    guard:\n      - name: nothing left\n        sql: SELECT NOT EXISTS (SELECT 1 FROM posts WHERE loc IS NULL)\n",
                "",
                "phases[3].role: a contract phase needs a check before it",
            ),
            (
                ":gate_opened_at",
                ":gate_open",
                "phases[1].checks[0].sql: :gate_open is not a known placeholder",
            ),
            (
                "SELECT count(*) > 0 FROM t",
                "SELECT 1; SELECT count(*) > 0 FROM t",
                "phases[1].checks[0].sql: a check is exactly one SQL statement",
            ),
            (
                "plan: p",
                "plan: P",
                "plans/p.yaml:1:7: plan: \"P\" is not a valid plan name",
            ),
            (
                "plan: p",
                "plan: other",
                "plan: plan \"other\" must be in a file named \"other\".yaml",
            ),
            (
                "    role: expand\n",
                "    role: expand\n    backfill: {table: t, set: a = 1}\n",
                "phases[0].backfill: a migration phase has no backfill section",
            ),
            (
                "      where: loc IS NULL\n",
                "      where: loc IS NULL\n      batch_time: fast\n",
                "phases[2].backfill.batch_time: \"fast\" is not a duration",
            ),
            (
                "      where: loc IS NULL\n",
                "      where: loc IS NULL\n      key: [id, id]\n",
                "phases[2].backfill.key[1]: column \"id\" is listed twice",
            ),
            (
                "id: fill",
                "id: \"3\"",
                "phases[2].id: a phase id must not be a number",
            ),
            (
                "    reversible: false\n",
                "    rollback_loses: data\n",
                "phases[3].rollback_loses: rollback_loses is for irreversible phases",
            ),
        ];
        for (from, to, expected) in cases {
            assert!(GOOD.contains(from), "bad test case: {from:?}");
            let got = problems(&GOOD.replacen(from, to, 1));
            assert!(
                got.iter().any(|p| p.contains(expected)),
                "{from:?} -> {to:?}: expected {expected:?} in {got:#?}"
            );
        }
    }

    #[test]
    fn gate_placeholder_needs_a_gate() {
        let yaml = "plan: p\nphases:\n  - id: c\n    kind: check\n    title: C\n    checks:\n      - name: x\n        sql: SELECT now() > :gate_opened_at\n";
        let got = problems(yaml);
        assert!(
            got[0].contains(":gate_opened_at needs a deploy phase at or before this one"),
            "{got:?}"
        );
    }
}
