//! `set-not-null`: make a column NOT NULL without scanning the table under
//! an exclusive lock. The application first stops writing NULL (a deploy
//! gate), existing NULLs are filled (`--fill`, a backfill), then
//! `CHECK (c IS NOT NULL) NOT VALID`, `VALIDATE` in its own phase (writes go
//! on during its scan), `SET NOT NULL` (no scan: PostgreSQL 12+ uses the
//! validated check) and the check is dropped.

use crate::error::{Error, Result};
use crate::migration::source::NewMigration;
use crate::recipe::draft::{DraftBackfill, check, constraint_is_there};
use crate::recipe::names::{self, ident, literal, table_sql};
use crate::recipe::{
    Catalog, Draft, DraftMigration, DraftPhase, Probe, Recent, Recipe, column, refuse, table,
};

const NAME: &str = "set-not-null";

/// `orch plan new set-not-null NAME --table T --column C [--fill EXPR]`.
#[derive(Debug, Clone)]
pub struct SetNotNull {
    table: String,
    column: String,
    fill: Option<String>,
    created_at: Option<String>,
}

impl SetNotNull {
    pub fn new(
        table: &str,
        column: &str,
        fill: Option<&str>,
        created_at: Option<&str>,
    ) -> Result<SetNotNull> {
        if let Some(fill) = fill
            && (fill.trim().is_empty() || fill.contains(';'))
        {
            return Err(Error::Usage(format!(
                "--fill {fill:?}: expected one SQL expression (no `;`), e.g. --fill \"''\" or --fill \"now()\""
            )));
        }
        Ok(SetNotNull {
            table: names::table("--table", table)?,
            column: names::identifier("--column", column)?,
            fill: fill.map(str::to_string),
            created_at: created_at
                .map(|c| names::identifier("--created-at", c))
                .transpose()?,
        })
    }

    fn constraint(&self) -> String {
        names::object_name(&self.table, std::slice::from_ref(&self.column), "not_null")
    }
}

impl Recipe for SetNotNull {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone()]
    }

    fn probes(&self, catalog: &Catalog) -> Vec<Probe> {
        let exists = catalog
            .tables
            .get(&self.table)
            .and_then(|t| t.column(&self.column))
            .is_some_and(|c| !c.not_null);
        match exists {
            true => vec![Probe::Nulls {
                table: self.table.clone(),
                column: self.column.clone(),
            }],
            false => Vec::new(),
        }
    }

    fn generate(&self, plan: &str, catalog: Option<&Catalog>) -> Result<Draft> {
        let (t, c) = (&self.table, &self.column);
        let constraint = self.constraint();
        let mut notes = Vec::new();
        let shape = catalog.map(|cat| table(cat, "--table", t)).transpose()?;
        if let (Some(catalog), Some(shape)) = (catalog, shape) {
            let col = column(shape, "--column", c)?;
            if col.not_null {
                return Err(refuse(
                    NAME,
                    format!("column {}.{c} is NOT NULL already", shape.name),
                    "nothing to do; check the column name",
                ));
            }
            if let Some(taken) = shape.constraints.iter().find(|k| k.name == constraint) {
                return Err(refuse(
                    NAME,
                    format!(
                        "table {} already has a {} named {constraint} ({}), the name this plan's check would take",
                        shape.name,
                        taken.kind.label(),
                        taken.definition
                    ),
                    format!("drop or rename {constraint} first, or finish the plan that made it"),
                ));
            }
            let nulls = catalog.counts.get(&Probe::Nulls {
                table: t.clone(),
                column: c.clone(),
            });
            if self.fill.is_none() && nulls.is_some_and(|n| n.rows == 0) {
                notes.push(format!(
                    "no row of {} has {c} NULL now; a NULL the old version writes before the gate must be fixed by hand before the validate phase (or generate the plan with --fill EXPR to have it filled)",
                    shape.name
                ));
            }
            if let Some(nulls) = nulls.filter(|n| n.rows > 0) {
                if self.fill.is_none() {
                    return Err(refuse(
                        NAME,
                        format!(
                            "{} row(s) of {} have {c} NULL: VALIDATE would fail on them",
                            nulls.rows, shape.name
                        ),
                        format!(
                            "give --fill EXPR (the value those rows get, e.g. --fill \"''\"), and the plan fills them in a backfill phase; or fix them first and run `orch plan new {NAME} ...` again"
                        ),
                    ));
                }
                notes.push(format!(
                    "{} row(s) of {} had {c} NULL when this plan was generated; the backfill phase sets them to {}",
                    nulls.rows,
                    shape.name,
                    self.fill.as_deref().unwrap_or_default()
                ));
            }
            if self.fill.is_some() && shape.key().is_none() {
                return Err(refuse(
                    NAME,
                    format!(
                        "table {} has no primary key and no unique index over NOT NULL columns: the backfill that fills the NULLs walks the table by such a key",
                        shape.name
                    ),
                    format!(
                        "add a primary key to {} first (e.g. with `orch plan new add-unique`), or fill the NULLs yourself and leave out --fill",
                        shape.name
                    ),
                ));
            }
        } else {
            notes.push(format!(
                "generated without a database: orch did not check that {t}.{c} exists, is still nullable, how many rows hold NULL{}; `orch check --online` and the validate phase will tell",
                match &self.fill {
                    Some(_) => ", or that the table has a key for the backfill",
                    None => " (without --fill, the validate phase fails if any does)",
                }
            ));
        }
        let recent = Recent::choose(NAME, self.created_at.as_deref(), shape)?;
        let tsql = table_sql(t);
        let csql = ident(c);
        let regclass = literal(&tsql);
        let cons = ident(&constraint);
        let header = |phase: usize, id: &str| {
            format!(
                "Owned by plan {plan}, phase {phase} ({id}): applied by `orch advance {plan}`.\nGenerated by `orch plan new {NAME}`."
            )
        };
        let column_id = names::id_part(c);
        let mut phases = Vec::new();
        let mut migrations = Vec::new();

        phases.push(DraftPhase {
            id: format!("deploy-writes-{column_id}"),
            kind: "deploy",
            title: format!("Deploy the app version that never writes NULL into {t}.{c}"),
            instructions: format!(
                "Deploy the application version that sets {c} on every insert and\n\
                 never sets it to NULL. Wait until no older instance is left: from\n\
                 the next phases on, a NULL written into {c} fails.\n\
                 The check looks at {}.",
                recent.describe()
            ),
            checks: vec![check(
                &format!("new rows carry a {c}"),
                format!(
                    "SELECT count(*) > 0 AND bool_and({csql} IS NOT NULL)\nFROM {}",
                    recent.rows(&tsql, &csql)
                ),
            )],
            ..DraftPhase::default()
        });
        let no_nulls = check(
            &format!("no row has {c} NULL"),
            format!("SELECT NOT EXISTS (SELECT 1 FROM {tsql} WHERE {csql} IS NULL)"),
        );
        if let Some(fill) = &self.fill {
            phases.push(DraftPhase {
                id: format!("fill-{column_id}"),
                kind: "backfill",
                title: format!("Fill {c} where it is NULL"),
                instructions: format!(
                    "Sets {c} = {fill} on the rows that still have it NULL, in short\n\
                     batches by key; the application keeps writing meanwhile.\n\
                     Confirm once the check passes."
                ),
                backfill: Some(DraftBackfill {
                    table: t.clone(),
                    set: format!("{csql} = {fill}"),
                    where_: format!("{csql} IS NULL"),
                }),
                checks: vec![no_nulls.clone()],
                ..DraftPhase::default()
            });
        }
        let add_id = format!("add-{column_id}-check");
        phases.push(DraftPhase {
            id: add_id.clone(),
            kind: "migration",
            role: Some("expand"),
            title: format!("Add CHECK ({c} IS NOT NULL) NOT VALID"),
            migration: Some(format!("add_{c}_check")),
            instructions: format!(
                "Adds the check without looking at the existing rows (NOT VALID):\n\
                 a moment of ACCESS EXCLUSIVE on {t}, no scan. From now on every\n\
                 insert and update is checked. Confirm once it is there."
            ),
            checks: vec![constraint_is_there(
                format!("{constraint} is there"),
                &regclass,
                &constraint,
                None,
            )],
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("add_{c}_check"),
            content: NewMigration {
                header: header(phases.len(), &add_id),
                up: format!(
                    "ALTER TABLE {tsql} ADD CONSTRAINT {cons} CHECK ({csql} IS NOT NULL) NOT VALID;"
                ),
                up_in_transaction: true,
                down: format!("ALTER TABLE {tsql} DROP CONSTRAINT IF EXISTS {cons};"),
                down_in_transaction: true,
            },
        });
        let validate_id = format!("validate-{column_id}-check");
        let validated = check(
            &format!("{constraint} is validated"),
            format!(
                "SELECT coalesce((SELECT convalidated FROM pg_constraint\n                 WHERE conrelid = to_regclass({regclass}) AND conname = {}), false)",
                literal(&constraint)
            ),
        );
        phases.push(DraftPhase {
            id: validate_id.clone(),
            kind: "migration",
            role: Some("expand"),
            title: "Validate the check on the existing rows".to_string(),
            migration: Some(format!("validate_{c}_check")),
            instructions: format!(
                "VALIDATE scans {t} under SHARE UPDATE EXCLUSIVE: inserts, updates\n\
                 and deletes go on during the scan. It fails, changing nothing, if a\n\
                 row still has {c} NULL: fill those rows, then run advance again."
            ),
            guard: vec![no_nulls],
            checks: vec![validated.clone()],
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("validate_{c}_check"),
            content: NewMigration {
                header: header(phases.len(), &validate_id),
                up: format!("ALTER TABLE {tsql} VALIDATE CONSTRAINT {cons};"),
                up_in_transaction: true,
                down: "-- A validated constraint cannot be made NOT VALID again; the down of the\n-- phase before drops it.".to_string(),
                down_in_transaction: true,
            },
        });
        let set_id = format!("set-{column_id}-not-null");
        let not_null = format!(
            "coalesce((SELECT attnotnull FROM pg_attribute\n                 WHERE attrelid = to_regclass({regclass}) AND attname = {}), false)",
            literal(c)
        );
        phases.push(DraftPhase {
            id: set_id.clone(),
            kind: "migration",
            role: Some("contract"),
            title: format!("SET NOT NULL on {c} and drop the check"),
            migration: Some(format!("set_{c}_not_null")),
            instructions: format!(
                "SET NOT NULL uses the validated check instead of scanning {t}\n\
                 (PostgreSQL 12 or later): a moment of ACCESS EXCLUSIVE. The check\n\
                 is dropped in the same transaction; the column's NOT NULL replaces it."
            ),
            // Evaluated again after the statements, which drop the check:
            // the column's own NOT NULL then stands for it.
            guard: vec![check(
                &format!("{constraint} is validated (or {c} is NOT NULL)"),
                format!(
                    "SELECT coalesce((SELECT convalidated FROM pg_constraint\n                 WHERE conrelid = to_regclass({regclass}) AND conname = {}), false)\n    OR {not_null}",
                    literal(&constraint)
                ),
            )],
            checks: vec![check(&format!("{c} is NOT NULL"), format!("SELECT {not_null}"))],
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("set_{c}_not_null"),
            content: NewMigration {
                header: header(phases.len(), &set_id),
                up: format!(
                    "ALTER TABLE {tsql} ALTER COLUMN {csql} SET NOT NULL;\nALTER TABLE {tsql} DROP CONSTRAINT {cons};"
                ),
                up_in_transaction: true,
                down: format!(
                    "-- The check comes back NOT VALID (re-validating it would scan the table).\n\
                     ALTER TABLE {tsql} ADD CONSTRAINT {cons} CHECK ({csql} IS NOT NULL) NOT VALID;\n\
                     ALTER TABLE {tsql} ALTER COLUMN {csql} DROP NOT NULL;"
                ),
                down_in_transaction: true,
            },
        });
        Ok(Draft {
            description: format!(
                "Make {t}.{c} NOT NULL without scanning {t} under an exclusive lock: the application stops writing NULL, {}a NOT VALID check is added and validated while writes go on, then SET NOT NULL uses it and the check is dropped.",
                if self.fill.is_some() {
                    "existing NULLs are filled in batches, "
                } else {
                    ""
                }
            ),
            phases,
            migrations,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::shape::ProbeCount;
    use crate::recipe::testing::{assert_checks_clean, catalog, col, table_with};

    type Change = Box<dyn Fn(&mut Catalog)>;

    const SCHEMA: &str = "CREATE TABLE items (id bigserial PRIMARY KEY, note text, created_at timestamptz NOT NULL DEFAULT now());";

    fn ids(draft: &Draft) -> Vec<&str> {
        draft.phases.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn without_a_database_it_works_from_the_options() {
        let recipe = SetNotNull::new("items", "note", None, Some("created_at")).unwrap();
        let draft = recipe.generate("items-note", None).unwrap();
        assert_eq!(
            ids(&draft),
            [
                "deploy-writes-note",
                "add-note-check",
                "validate-note-check",
                "set-note-not-null"
            ]
        );
        assert!(
            draft.notes[0].contains("without a database"),
            "{:?}",
            draft.notes
        );
        let text = assert_checks_clean(&draft, "items-note", SCHEMA);
        assert!(text.contains(":gate_opened_at"), "{text}");
        let up = &draft.migrations[0].content.up;
        assert_eq!(
            up,
            "ALTER TABLE items ADD CONSTRAINT items_note_not_null CHECK (note IS NOT NULL) NOT VALID;"
        );
        assert!(
            draft.migrations[2]
                .content
                .up
                .contains("DROP CONSTRAINT items_note_not_null")
        );
        // Without a database and without --created-at, the gate cannot be written.
        let err = SetNotNull::new("items", "note", None, None)
            .unwrap()
            .generate("p", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--created-at"), "{err}");
    }

    #[test]
    fn with_the_catalog_it_fills_in_and_refuses_by_name() {
        let items = table_with("items", vec![col("note", "text")]);
        let nulls = Probe::Nulls {
            table: "items".into(),
            column: "note".into(),
        };
        // NULLs and --fill: a backfill phase; the gate finds created_at.
        let mut cat = catalog(vec![items.clone()]);
        cat.counts.insert(
            nulls.clone(),
            ProbeCount {
                rows: 7,
                example: None,
            },
        );
        let recipe = SetNotNull::new("items", "note", Some("''"), None).unwrap();
        assert_eq!(recipe.probes(&cat), std::slice::from_ref(&nulls));
        let draft = recipe.generate("items-note", Some(&cat)).unwrap();
        assert_eq!(draft.phases[1].id, "fill-note");
        assert_eq!(
            draft.phases[1].backfill.as_ref().unwrap().where_,
            "note IS NULL"
        );
        assert!(
            draft.notes.iter().any(|n| n.contains("7 row(s)")),
            "{:?}",
            draft.notes
        );
        assert_checks_clean(&draft, "items-note", SCHEMA);

        let refusals: Vec<(Change, Option<&str>, &str)> = vec![
            (Box::new(|_| {}), None, "7 row(s) of items have note NULL"),
            (
                Box::new(|c| c.tables.get_mut("items").unwrap().columns[2].not_null = true),
                None,
                "column items.note is NOT NULL already",
            ),
            (
                Box::new(|c| {
                    let t = c.tables.get_mut("items").unwrap();
                    t.indexes.clear();
                }),
                Some("''"),
                "table items has no primary key and no unique index",
            ),
            (
                Box::new(|c| {
                    let t = c.tables.get_mut("items").unwrap();
                    let mut taken = t.constraints[0].clone();
                    taken.name = "items_note_not_null".into();
                    taken.kind = crate::recipe::shape::ConstraintKind::Check;
                    t.constraints.push(taken);
                }),
                Some("''"),
                "already has a check constraint named items_note_not_null",
            ),
            (
                Box::new(|c| {
                    c.tables.remove("items");
                }),
                None,
                "--table items: no such table",
            ),
        ];
        for (change, fill, expected) in refusals {
            let mut cat = cat.clone();
            change(&mut cat);
            let err = SetNotNull::new("items", "note", fill, None)
                .unwrap()
                .generate("p", Some(&cat))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let err = SetNotNull::new("items", "nope", None, None)
            .unwrap()
            .generate("p", Some(&cat))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--column nope: table items has no column nope"),
            "{err}"
        );
    }

    #[test]
    fn bad_options_name_the_option() {
        for (table, column, fill, option) in [
            ("Items", "note", None, "--table"),
            ("items", "no te", None, "--column"),
            ("items", "note", Some("1; DROP TABLE x"), "--fill"),
        ] {
            let err = SetNotNull::new(table, column, fill, None).unwrap_err();
            assert_eq!(err.code(), 2);
            assert!(err.to_string().contains(option), "{err}");
        }
    }
}
