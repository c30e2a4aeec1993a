//! A sync phase in a plan: its `sync` section (the table, the columns each
//! application version writes, the `up` and optional `down` expressions),
//! checked without a database; the table, the columns and the expressions
//! are checked against one by `orch check --online`.

use std::collections::BTreeMap;

use crate::plan::format::{PhaseSpec, Role, SyncSpec};
use crate::plan::kinds::KindRules;
use crate::plan::load::phase_path;
use crate::plan::validator::{Validator, valid_identifier};
use crate::sql_text::{self, Fragment};
use crate::yaml_locate::PathSeg;

pub(crate) struct SyncRules;

impl KindRules for SyncRules {
    fn sections(&self) -> &'static [&'static str] {
        &["sync"]
    }

    fn validate(&self, v: &mut Validator<'_>, i: usize, phase: &PhaseSpec) {
        match &phase.sync {
            None => v.at(
                i,
                &["sync"],
                "a sync phase needs a sync section (table, old, new, up, and optionally down)",
            ),
            Some(spec) => {
                validate_spec(v, i, spec);
                overlapping_syncs(v, i, spec);
            }
        }
        let contract_after = v.plan.spec.phases[i + 1..]
            .iter()
            .any(|p| p.role == Some(Role::Contract));
        if !contract_after {
            v.at(
                i,
                &["kind"],
                "a sync phase needs a contract phase after it (a migration phase with role: contract): that phase drops the trigger in the transaction that drops the old columns, so no write meets a trigger reading a dropped column",
            );
        }
    }

    fn label(&self) -> &'static str {
        "sync trigger"
    }

    fn checked_online(&self) -> bool {
        true
    }
}

/// `table` or `schema.table`, each part a lowercase identifier.
pub(crate) fn valid_table(table: &str) -> bool {
    match table.split_once('.') {
        Some((schema, table)) => valid_identifier(schema) && valid_identifier(table),
        None => valid_identifier(table),
    }
}

fn validate_spec(v: &mut Validator<'_>, i: usize, spec: &SyncSpec) {
    if !valid_table(&spec.table) {
        v.at(
            i,
            &["sync", "table"],
            format!("{:?} is not a valid table name (lowercase identifier, optionally schema-qualified; orch quotes it)", spec.table),
        );
    }
    for (field, columns) in [("old", &spec.old), ("new", &spec.new)] {
        if columns.is_empty() {
            v.at(
                i,
                &["sync", field],
                format!("{field} lists at least one column"),
            );
        }
        for (j, column) in columns.iter().enumerate() {
            let mut path = phase_path(i, &["sync", field]);
            path.push(PathSeg::Index(j));
            if !valid_identifier(column) {
                v.at_path(
                    path,
                    format!("{column:?} is not a valid column name (lowercase identifier)"),
                );
            } else if columns[..j].contains(column) {
                v.at_path(path, format!("column {column:?} is listed twice"));
            } else if field == "new" && spec.old.contains(column) {
                v.at_path(
                    path,
                    format!("column {column:?} is in both old and new: a column is written by one application version or the other"),
                );
            }
        }
    }
    expressions(v, i, "up", Some(&spec.up), &spec.new, "new");
    expressions(v, i, "down", spec.down.as_ref(), &spec.old, "old");
}

/// `up` (or `down`): exactly one expression per column of `side`, each a
/// fragment that cannot escape its parentheses.
fn expressions(
    v: &mut Validator<'_>,
    i: usize,
    field: &str,
    map: Option<&BTreeMap<String, String>>,
    columns: &[String],
    side: &str,
) {
    let Some(map) = map else { return };
    let missing: Vec<&str> = columns
        .iter()
        .filter(|c| !map.contains_key(*c))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        v.at(
            i,
            &["sync", field],
            format!(
                "{field} gives every {side} column an expression; missing: {}",
                missing.join(", ")
            ),
        );
    }
    for (column, expression) in map {
        let path = phase_path(i, &["sync", field, column]);
        if !columns.contains(column) {
            v.at_path(
                path,
                format!(
                    "{column:?} is not one of the {side} columns ({}): {field} computes the {side} columns",
                    columns.join(", ")
                ),
            );
        } else if expression.trim().is_empty() {
            v.at_path(path, format!("the expression for {column} is empty"));
        } else if sql_text::split_statements(expression).len() != 1
            || expression.trim_end().ends_with(';')
        {
            v.at_path(
                path,
                format!("the expression for {column} is an SQL expression, without ';'"),
            );
        } else if let Some(problem) = sql_text::fragment_problem(expression, Fragment::Expression) {
            v.at_path(path, format!("the expression for {column} {problem}"));
        }
    }
}

/// Two sync phases of one plan that write the same column of the same
/// table would undo each other's work.
fn overlapping_syncs(v: &mut Validator<'_>, i: usize, spec: &SyncSpec) {
    let plan = v.plan;
    let last = |t: &str| t.rsplit('.').next().unwrap_or_default().to_string();
    for (k, earlier) in plan.spec.phases[..i].iter().enumerate() {
        let Some(other) = &earlier.sync else { continue };
        if last(&other.table) != last(&spec.table) {
            continue;
        }
        let shared: Vec<&str> = spec
            .old
            .iter()
            .chain(&spec.new)
            .filter(|c| other.old.contains(c) || other.new.contains(c))
            .map(String::as_str)
            .collect();
        if !shared.is_empty() {
            v.at(
                i,
                &["sync", "table"],
                format!(
                    "phase {} ({}) already keeps {} of {} in step: two sync triggers on one column would undo each other",
                    k + 1,
                    earlier.id,
                    shared.join(", "),
                    spec.table
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::migration::MigrationSet;
    use crate::plan::LoadedPlan;
    use crate::plan::validate::validate;

    const GOOD: &str = "plan: p
phases:
  - id: sync-loc
    kind: sync
    title: Keep loc and lat/lng in step
    sync:
      table: public.posts
      old: [lat, lng]
      new: [loc]
      up:
        loc: point(lng, lat)
      down:
        lat: loc[1]
        lng: loc[0]
    instructions: |
      Install the trigger.
  - id: drop
    kind: migration
    role: contract
    title: Drop lat and lng
    migration: drop_lat_lng
    guard:
      - name: nothing left
        sql: SELECT NOT EXISTS (SELECT 1 FROM posts WHERE loc IS NULL)
";

    fn migrations() -> MigrationSet {
        let file = crate::migration::source::dbmate::parse_file(
            Path::new("migrations/3_drop_lat_lng.sql"),
            "-- migrate:up\nSELECT 1;\n",
        )
        .unwrap();
        MigrationSet {
            dir: "migrations".into(),
            files: vec![file],
            ..MigrationSet::default()
        }
    }

    fn problems(yaml: &str) -> Vec<String> {
        let plan = match LoadedPlan::parse(Path::new("plans/p.yaml"), yaml) {
            Ok(plan) => plan,
            Err(e) => return vec![e.to_string()],
        };
        validate(&plan, &migrations())
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn the_issue_example_is_valid() {
        assert_eq!(problems(GOOD), Vec::<String>::new());
        let without_down = GOOD.replace(
            "      down:\n        lat: loc[1]\n        lng: loc[0]\n",
            "",
        );
        assert_eq!(problems(&without_down), Vec::<String>::new());
    }

    #[test]
    fn each_rule_points_at_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "table: public.posts",
                "table: Posts",
                "plans/p.yaml:7:14: phases[0].sync.table: \"Posts\" is not a valid table name",
            ),
            (
                "old: [lat, lng]",
                "old: []",
                "plans/p.yaml:8:12: phases[0].sync.old: old lists at least one column",
            ),
            (
                "old: [lat, lng]",
                "old: [lat, lat]",
                "plans/p.yaml:8:18: phases[0].sync.old[1]: column \"lat\" is listed twice",
            ),
            (
                "new: [loc]",
                "new: [loc, lat]",
                "phases[0].sync.new[1]: column \"lat\" is in both old and new",
            ),
            (
                "new: [loc]",
                "new: [Loc]",
                "phases[0].sync.new[0]: \"Loc\" is not a valid column name",
            ),
            (
                "        loc: point(lng, lat)\n",
                "        location: point(lng, lat)\n",
                "plans/p.yaml:11:19: phases[0].sync.up.location: \"location\" is not one of the new columns (loc)",
            ),
            (
                "        loc: point(lng, lat)\n",
                "        location: point(lng, lat)\n",
                "plans/p.yaml:11:9: phases[0].sync.up: up gives every new column an expression; missing: loc",
            ),
            (
                "        lng: loc[0]\n",
                "",
                "plans/p.yaml:13:9: phases[0].sync.down: down gives every old column an expression; missing: lng",
            ),
            (
                "loc: point(lng, lat)",
                "loc: point(lng, lat)); DROP TABLE posts; --",
                "plans/p.yaml:11:14: phases[0].sync.up.loc: the expression for loc",
            ),
            (
                "lat: loc[1]",
                "lat: \"\"",
                "phases[0].sync.down.lat: the expression for lat is empty",
            ),
            (
                "lat: loc[1]",
                "lat: (loc[1]",
                "phases[0].sync.down.lat: the expression for lat",
            ),
            (
                "      table: public.posts\n",
                "      table: public.posts\n      set: x = 1\n",
                "plans/p.yaml:8:7: phases[0].sync.set: unknown field (expected one of table, old, new, up, down)",
            ),
            (
                "    sync:\n",
                "    backfill: {table: posts, set: a = 1}\n    sync:\n",
                "phases[0].backfill: a sync phase has no backfill section",
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
    fn a_sync_phase_needs_its_section_and_others_may_not_have_one() {
        let got = problems("plan: p\nphases:\n  - id: s\n    kind: sync\n    title: S\n");
        assert!(
            got.iter()
                .any(|p| p.contains("phases[0].sync: a sync phase needs a sync section")),
            "{got:#?}"
        );
        let got = problems(
            "plan: p\nphases:\n  - id: c\n    kind: check\n    title: C\n    checks: [{name: x, sql: SELECT true}]\n    sync: {table: t, old: [a], new: [b], up: {b: a}}\n",
        );
        assert!(
            got.iter()
                .any(|p| p.contains("phases[0].sync: a check phase has no sync section")),
            "{got:#?}"
        );
    }

    #[test]
    fn a_sync_phase_needs_a_contract_after_it() {
        let without = &GOOD[..GOOD.find("  - id: drop").unwrap()];
        let got = problems(without);
        assert!(
            got.iter().any(|p| p.contains(
                "plans/p.yaml:4:11: phases[0].kind: a sync phase needs a contract phase after it"
            )),
            "{got:#?}"
        );
    }

    #[test]
    fn two_syncs_of_one_column_are_refused() {
        let sync = &GOOD[..GOOD.find("  - id: drop").unwrap()];
        let second = sync
            .replace("id: sync-loc", "id: again")
            .replace("plan: p\nphases:\n", "");
        let got = problems(&GOOD.replace("  - id: drop", &format!("{second}  - id: drop")));
        assert!(
            got.iter().any(|p| p.contains(
                "phases[1].sync.table: phase 1 (sync-loc) already keeps lat, lng, loc of public.posts in step"
            )),
            "{got:#?}"
        );
    }
}
