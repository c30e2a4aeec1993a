//! `add-foreign-key`: a foreign key added `NOT VALID` (a moment of SHARE ROW
//! EXCLUSIVE on both tables, no scan), then validated in its own phase
//! (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the referenced one:
//! writes go on during the scan). A deploy gate first, since a NOT VALID
//! key already checks every new write.

use crate::error::{Error, Result};
use crate::migration::source::NewMigration;
use crate::recipe::draft::{check, constraint_is_there};
use crate::recipe::names::{self, ident, literal, table_sql};
use crate::recipe::shape::ConstraintKind;
use crate::recipe::{
    Catalog, Draft, DraftMigration, DraftPhase, Probe, Recent, Recipe, column, refuse, table,
};

const NAME: &str = "add-foreign-key";

/// `orch plan new add-foreign-key NAME --table T --column C --references T2.C2`.
#[derive(Debug, Clone)]
pub struct AddForeignKey {
    table: String,
    column: String,
    target: String,
    target_column: String,
    created_at: Option<String>,
}

impl AddForeignKey {
    pub fn new(
        table: &str,
        column: &str,
        references: &str,
        created_at: Option<&str>,
    ) -> Result<AddForeignKey> {
        let Some((target, target_column)) = references.rsplit_once('.') else {
            return Err(Error::Usage(format!(
                "--references {references:?}: expected TABLE.COLUMN (or SCHEMA.TABLE.COLUMN)"
            )));
        };
        Ok(AddForeignKey {
            table: names::table("--table", table)?,
            column: names::identifier("--column", column)?,
            target: names::table("--references", target)?,
            target_column: names::identifier("--references", target_column)?,
            created_at: created_at
                .map(|c| names::identifier("--created-at", c))
                .transpose()?,
        })
    }

    fn constraint(&self) -> String {
        names::object_name(&self.table, std::slice::from_ref(&self.column), "fkey")
    }

    fn orphans(&self) -> Probe {
        Probe::Orphans {
            table: self.table.clone(),
            column: self.column.clone(),
            target: self.target.clone(),
            target_column: self.target_column.clone(),
        }
    }
}

impl Recipe for AddForeignKey {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone(), self.target.clone()]
    }

    fn probes(&self, catalog: &Catalog) -> Vec<Probe> {
        let has = |t: &str, c: &str| catalog.tables.get(t).and_then(|s| s.column(c)).is_some();
        match has(&self.table, &self.column) && has(&self.target, &self.target_column) {
            true => vec![self.orphans()],
            false => Vec::new(),
        }
    }

    fn generate(&self, plan: &str, catalog: Option<&Catalog>) -> Result<Draft> {
        let (t, c, t2, c2) = (&self.table, &self.column, &self.target, &self.target_column);
        let constraint = self.constraint();
        let mut notes = Vec::new();
        // The index the plan builds on the referencing column, when it has none.
        let mut build_index: Option<String> = None;
        let shape = catalog.map(|cat| table(cat, "--table", t)).transpose()?;
        if let (Some(catalog), Some(shape)) = (catalog, shape) {
            let col = column(shape, "--column", c)?;
            let target = table(catalog, "--references", t2)?;
            let target_col = column(target, "--references", c2)?;
            if target.unique_on(std::slice::from_ref(c2)).is_none() {
                return Err(refuse(
                    NAME,
                    format!(
                        "{}.{c2} has no unique index or constraint (valid, not partial): a foreign key must reference a unique key",
                        target.name
                    ),
                    format!(
                        "make it unique first: `orch plan new add-unique NAME --table {t2} --columns {c2}`"
                    ),
                ));
            }
            if let Some(existing) = shape.constraints.iter().find(|k| {
                k.kind == ConstraintKind::ForeignKey
                    && k.columns == [c.clone()]
                    && k.references
                        .as_ref()
                        .is_some_and(|(rt, rc)| *rt == target.name && *rc == [c2.clone()])
            }) {
                return Err(refuse(
                    NAME,
                    format!(
                        "{} already has the foreign key {} ({}{})",
                        shape.name,
                        existing.name,
                        existing.definition,
                        if existing.validated {
                            ""
                        } else {
                            ", not validated yet"
                        }
                    ),
                    match existing.validated {
                        true => "nothing to do".to_string(),
                        false => format!(
                            "validate it: ALTER TABLE {} VALIDATE CONSTRAINT {}",
                            shape.name, existing.name
                        ),
                    },
                ));
            }
            if let Some(taken) = shape.constraints.iter().find(|k| k.name == constraint) {
                return Err(refuse(
                    NAME,
                    format!(
                        "table {} already has a {} named {constraint} ({})",
                        shape.name,
                        taken.kind.label(),
                        taken.definition
                    ),
                    format!("drop or rename {constraint} first"),
                ));
            }
            if let Some(orphans) = catalog.counts.get(&self.orphans()).filter(|o| o.rows > 0) {
                return Err(refuse(
                    NAME,
                    format!(
                        "{} row(s) of {} have a {c} that matches no {}.{c2}{}: the foreign key cannot be validated",
                        orphans.rows,
                        shape.name,
                        target.name,
                        orphans
                            .example
                            .as_deref()
                            .map(|e| format!(" (e.g. {c} = {e})"))
                            .unwrap_or_default()
                    ),
                    format!(
                        "delete those rows, set their {c} to NULL or add the missing {} rows, then run `orch plan new {NAME} ...` again",
                        target.name
                    ),
                ));
            }
            if col.type_name != target_col.type_name {
                notes.push(format!(
                    "{}.{c} is {} but {}.{c2} is {}: PostgreSQL accepts the key when the types compare, but each check converts; consider matching types",
                    shape.name, col.type_name, target.name, target_col.type_name
                ));
            }
            let indexed = shape
                .indexes
                .iter()
                .any(|i| i.valid && i.columns.first().and_then(|f| f.as_deref()) == Some(c));
            if !indexed {
                let name = names::object_name(t, std::slice::from_ref(c), "idx");
                if shape.indexes.iter().any(|i| i.name == name) {
                    notes.push(format!(
                        "{}.{c} has no index it leads, and the name {name} is taken: each delete or key update on {} scans {} for referencing rows; consider `CREATE INDEX CONCURRENTLY` on {}({c})",
                        shape.name, target.name, shape.name, shape.name
                    ));
                } else {
                    notes.push(format!(
                        "{}.{c} has no index: the plan builds {name} concurrently first, so a delete or key update on {} does not scan {} for referencing rows",
                        shape.name, target.name, shape.name
                    ));
                    build_index = Some(name);
                }
            }
        } else {
            notes.push(format!(
                "generated without a database: orch did not check that {t}.{c} and {t2}.{c2} exist, that {t2}.{c2} is unique, or that every {c} has its {t2} row; the guard and the validate phase will tell"
            ));
        }
        let recent = Recent::choose(NAME, self.created_at.as_deref(), shape)?;
        let (tsql, csql, t2sql, c2sql) = (table_sql(t), ident(c), table_sql(t2), ident(c2));
        let regclass = literal(&tsql);
        let cons = ident(&constraint);
        let header = |phase: usize, id: &str| {
            format!(
                "Owned by plan {plan}, phase {phase} ({id}): applied by `orch advance {plan}`.\nGenerated by `orch plan new {NAME}`."
            )
        };
        let column_id = names::id_part(c);
        let parent = format!("EXISTS (SELECT 1 FROM {t2sql} p WHERE p.{c2sql} = recent.{csql})");
        let no_orphans = check(
            &format!("every {c} has its {t2} row"),
            format!(
                "SELECT NOT EXISTS (\n  SELECT 1 FROM {tsql} t\n  WHERE t.{csql} IS NOT NULL\n    AND NOT EXISTS (SELECT 1 FROM {t2sql} p WHERE p.{c2sql} = t.{csql}))"
            ),
        );
        let mut phases = Vec::new();
        let mut migrations = Vec::new();
        if let Some(index) = &build_index {
            let id = format!("build-{column_id}-index");
            let index_regclass = literal(&match t.rsplit_once('.') {
                Some((schema, _)) => format!("{}.{}", ident(schema), ident(index)),
                None => ident(index),
            });
            phases.push(DraftPhase {
                id: id.clone(),
                kind: "migration",
                role: Some("expand"),
                title: format!("Build the index {index} on {t}({c}) concurrently"),
                migration: Some(format!("build_{c}_index")),
                instructions: format!(
                    "The foreign key makes every delete or key update on {t2} look for
                     referencing {t} rows: without an index on {c}, a scan of {t}.
                     CREATE INDEX CONCURRENTLY builds it while writes go on. If the
                     build fails, PostgreSQL leaves an INVALID index {index}: drop it with
                     `DROP INDEX CONCURRENTLY IF EXISTS {index};` and run advance again."
                ),
                guard: vec![check(
                    &format!("no INVALID index {index} is left from a failed build"),
                    format!(
                        "SELECT NOT EXISTS (SELECT 1 FROM pg_index\n                   WHERE indexrelid = to_regclass({index_regclass}) AND NOT indisvalid)"
                    ),
                )],
                checks: vec![check(
                    &format!("the index {index} is valid"),
                    format!(
                        "SELECT coalesce((SELECT indisvalid FROM pg_index\n                 WHERE indexrelid = to_regclass({index_regclass})), false)"
                    ),
                )],
                ..DraftPhase::default()
            });
            migrations.push(DraftMigration {
                suffix: format!("build_{c}_index"),
                content: NewMigration {
                    header: header(phases.len(), &id),
                    up: format!(
                        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {tsql} ({csql});",
                        ident(index)
                    ),
                    up_in_transaction: false,
                    down: format!("DROP INDEX CONCURRENTLY IF EXISTS {};", ident(index)),
                    down_in_transaction: false,
                },
            });
        }
        phases.push(DraftPhase {
            id: format!("deploy-valid-{column_id}"),
            kind: "deploy",
            title: format!(
                "Deploy the app version that writes only existing {t2}.{c2} values into {t}.{c}"
            ),
            instructions: format!(
                "Deploy the application version that writes into {c} only values\n\
                 that exist in {t2}.{c2} (or NULL), and removes or re-points the\n\
                 {t} rows before it deletes their {t2} row. Wait until no older\n\
                 instance is left: from the next phase on, a write that breaks the\n\
                 key fails. The check looks at {}.",
                recent.describe()
            ),
            checks: vec![check(
                &format!("new rows reference an existing {t2} row"),
                format!(
                    "SELECT count(*) > 0\n       AND bool_and(recent.{csql} IS NULL\n                OR {parent})\nFROM {}",
                    recent.rows(&tsql, &csql)
                ),
            )],
            ..DraftPhase::default()
        });
        let add_id = format!("add-{column_id}-fkey");
        phases.push(DraftPhase {
            id: add_id.clone(),
            kind: "migration",
            role: Some("expand"),
            title: format!("Add the foreign key {t}({c}) -> {t2}({c2}) NOT VALID"),
            migration: Some(format!("add_{c}_fkey")),
            instructions: format!(
                "Adds the key without checking the existing rows (NOT VALID): a\n\
                 moment of SHARE ROW EXCLUSIVE on {t} and {t2}, no scan. New writes\n\
                 are checked from now on. Confirm once it is there."
            ),
            guard: vec![no_orphans.clone()],
            checks: vec![constraint_is_there(
                format!("{constraint} is there"),
                &regclass,
                &constraint,
                None,
            )],
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("add_{c}_fkey"),
            content: NewMigration {
                header: header(phases.len(), &add_id),
                up: format!(
                    "ALTER TABLE {tsql} ADD CONSTRAINT {cons}\n    FOREIGN KEY ({csql}) REFERENCES {t2sql} ({c2sql}) NOT VALID;"
                ),
                up_in_transaction: true,
                down: format!("ALTER TABLE {tsql} DROP CONSTRAINT IF EXISTS {cons};"),
                down_in_transaction: true,
            },
        });
        let validate_id = format!("validate-{column_id}-fkey");
        phases.push(DraftPhase {
            id: validate_id.clone(),
            kind: "migration",
            role: Some("expand"),
            title: "Validate the foreign key on the existing rows".to_string(),
            migration: Some(format!("validate_{c}_fkey")),
            instructions: format!(
                "VALIDATE scans {t} under SHARE UPDATE EXCLUSIVE (and takes ROW SHARE\n\
                 on {t2}): inserts, updates and deletes go on during the scan. It\n\
                 fails, changing nothing, if a row references no {t2} row: fix\n\
                 those rows, then run advance again."
            ),
            checks: vec![check(
                &format!("{constraint} is validated"),
                format!(
                    "SELECT coalesce((SELECT convalidated FROM pg_constraint\n                 WHERE conrelid = to_regclass({regclass}) AND conname = {}), false)",
                    literal(&constraint)
                ),
            )],
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("validate_{c}_fkey"),
            content: NewMigration {
                header: header(phases.len(), &validate_id),
                up: format!("ALTER TABLE {tsql} VALIDATE CONSTRAINT {cons};"),
                up_in_transaction: true,
                down: "-- A validated constraint cannot be made NOT VALID again; the down of the\n-- phase before drops it.".to_string(),
                down_in_transaction: true,
            },
        });
        Ok(Draft {
            description: format!(
                "Add a foreign key from {t}.{c} to {t2}.{c2} without blocking writes: the application writes only valid references, the key is added NOT VALID (no scan), then validated while writes go on."
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
    use crate::recipe::testing::{assert_checks_clean, catalog, col, index, table_with};

    const SCHEMA: &str = "CREATE TABLE authors (id bigserial PRIMARY KEY);\nCREATE TABLE books (id bigserial PRIMARY KEY, author_id bigint, created_at timestamptz NOT NULL DEFAULT now());";

    fn tables() -> Catalog {
        let mut books = table_with("books", vec![col("author_id", "bigint")]);
        books
            .indexes
            .push(index("books_author_id_idx", &["author_id"], false, false));
        catalog(vec![books, table_with("authors", vec![])])
    }

    #[test]
    fn generates_not_valid_then_validate() {
        let recipe = AddForeignKey::new("books", "author_id", "authors.id", None).unwrap();
        let cat = tables();
        assert_eq!(recipe.probes(&cat).len(), 1);
        let draft = recipe.generate("books-author", Some(&cat)).unwrap();
        let ids: Vec<&str> = draft.phases.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "deploy-valid-author-id",
                "add-author-id-fkey",
                "validate-author-id-fkey"
            ]
        );
        assert!(draft.notes.is_empty(), "{:?}", draft.notes);
        assert!(
            draft.migrations[0]
                .content
                .up
                .contains("REFERENCES authors (id) NOT VALID;")
        );
        assert_eq!(
            draft.migrations[1].content.up,
            "ALTER TABLE books VALIDATE CONSTRAINT books_author_id_fkey;"
        );
        assert_checks_clean(&draft, "books-author", SCHEMA);
        // Without an index on author_id, the plan builds one first.
        let mut bare = tables();
        bare.tables
            .get_mut("books")
            .unwrap()
            .indexes
            .retain(|i| i.primary);
        let draft = recipe.generate("books-author", Some(&bare)).unwrap();
        assert_eq!(draft.phases[0].id, "build-author-id-index");
        assert_eq!(
            draft.migrations[0].content.up,
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS books_author_id_idx ON books (author_id);"
        );
        assert!(!draft.migrations[0].content.up_in_transaction);
        assert!(
            draft.notes[0].contains("the plan builds books_author_id_idx"),
            "{:?}",
            draft.notes
        );
        assert_checks_clean(&draft, "books-author", SCHEMA);
        // Without a database, from the options.
        let draft = AddForeignKey::new("books", "author_id", "authors.id", Some("created_at"))
            .unwrap()
            .generate("books-author", None)
            .unwrap();
        assert_checks_clean(&draft, "books-author", SCHEMA);
    }

    #[test]
    fn refuses_what_it_cannot_do_by_name() {
        let orphans = Probe::Orphans {
            table: "books".into(),
            column: "author_id".into(),
            target: "authors".into(),
            target_column: "id".into(),
        };
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|c| c.tables.get_mut("authors").unwrap().indexes.clear()),
                "authors.id has no unique index or constraint",
            ),
            (
                Box::new(move |c| {
                    c.counts.insert(
                        orphans.clone(),
                        ProbeCount {
                            rows: 3,
                            example: Some("99".into()),
                        },
                    );
                }),
                "3 row(s) of books have a author_id that matches no authors.id (e.g. author_id = 99)",
            ),
            (
                Box::new(|c| {
                    c.tables
                        .get_mut("books")
                        .unwrap()
                        .constraints
                        .push(ConstraintShapeFor::fk());
                }),
                "books already has the foreign key books_author_fk",
            ),
            (
                Box::new(|c| {
                    c.tables.remove("authors");
                }),
                "--references authors: no such table",
            ),
        ];
        for (change, expected) in cases {
            let mut cat = tables();
            change(&mut cat);
            let err = AddForeignKey::new("books", "author_id", "authors.id", None)
                .unwrap()
                .generate("p", Some(&cat))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let err = AddForeignKey::new("books", "author_id", "authors", None).unwrap_err();
        assert!(err.to_string().contains("--references"), "{err}");
    }

    type Change = Box<dyn Fn(&mut Catalog)>;

    struct ConstraintShapeFor;
    impl ConstraintShapeFor {
        fn fk() -> crate::recipe::shape::ConstraintShape {
            crate::recipe::shape::ConstraintShape {
                name: "books_author_fk".into(),
                kind: ConstraintKind::ForeignKey,
                table: "books".into(),
                columns: vec!["author_id".into()],
                references: Some(("authors".into(), vec!["id".into()])),
                validated: true,
                definition: "FOREIGN KEY (author_id) REFERENCES authors(id)".into(),
            }
        }
    }
}
