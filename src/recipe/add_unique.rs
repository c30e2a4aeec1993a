//! `add-unique`: a unique constraint without building its index under an
//! exclusive lock: `CREATE UNIQUE INDEX CONCURRENTLY` (writes go on during
//! the build) in a `transaction:false` migration, then `ADD CONSTRAINT ...
//! UNIQUE USING INDEX` (a moment of ACCESS EXCLUSIVE, no build, no scan).

use crate::error::Result;
use crate::migration::source::NewMigration;
use crate::recipe::draft::{check, constraint_is_there};
use crate::recipe::names::{self, ident, list, literal, table_sql};
use crate::recipe::{
    Catalog, Draft, DraftMigration, DraftPhase, Probe, Recipe, column, refuse, table,
};

const NAME: &str = "add-unique";

/// `orch plan new add-unique NAME --table T --columns C1[,C2]`.
#[derive(Debug, Clone)]
pub struct AddUnique {
    table: String,
    columns: Vec<String>,
}

impl AddUnique {
    pub fn new(table: &str, columns: &str) -> Result<AddUnique> {
        Ok(AddUnique {
            table: names::table("--table", table)?,
            columns: names::columns("--columns", columns)?,
        })
    }

    fn constraint(&self) -> String {
        names::object_name(&self.table, &self.columns, "key")
    }

    fn duplicates(&self) -> Probe {
        Probe::Duplicates {
            table: self.table.clone(),
            columns: self.columns.clone(),
        }
    }
}

impl Recipe for AddUnique {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone()]
    }

    fn probes(&self, catalog: &Catalog) -> Vec<Probe> {
        let all = catalog
            .tables
            .get(&self.table)
            .is_some_and(|t| self.columns.iter().all(|c| t.column(c).is_some()));
        match all {
            true => vec![self.duplicates()],
            false => Vec::new(),
        }
    }

    fn generate(&self, plan: &str, catalog: Option<&Catalog>) -> Result<Draft> {
        let t = &self.table;
        let cols = &self.columns;
        // `email`, or `(org, email)`.
        let listed = cols.join(", ");
        let shown = match cols.len() {
            1 => listed.clone(),
            _ => format!("({listed})"),
        };
        let constraint = self.constraint();
        let mut notes = Vec::new();
        if let Some(catalog) = catalog {
            let shape = table(catalog, "--table", t)?;
            for c in cols {
                column(shape, "--columns", c)?;
            }
            if let Some(existing) = shape.unique_on(cols) {
                return Err(refuse(
                    NAME,
                    format!(
                        "{} already has the unique index {} on {shown}: {}",
                        shape.name, existing.name, existing.definition
                    ),
                    "nothing to do (to make it a constraint: ALTER TABLE ... ADD CONSTRAINT ... UNIQUE USING INDEX ...)",
                ));
            }
            if let Some(taken) = shape.indexes.iter().find(|i| i.name == constraint) {
                return Err(refuse(
                    NAME,
                    format!(
                        "an index named {constraint} exists already on {}{}: {}",
                        shape.name,
                        if taken.valid {
                            ""
                        } else {
                            " (INVALID: a failed or cancelled CREATE INDEX CONCURRENTLY)"
                        },
                        taken.definition
                    ),
                    format!("drop it (DROP INDEX CONCURRENTLY {constraint}) or rename it first"),
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
            if let Some(dups) = catalog
                .counts
                .get(&self.duplicates())
                .filter(|d| d.rows > 0)
            {
                return Err(refuse(
                    NAME,
                    format!(
                        "{} value(s) of {shown} occur in more than one row of {}{}: the unique index cannot be built",
                        dups.rows,
                        shape.name,
                        dups.example
                            .as_deref()
                            .map(|e| match cols.len() {
                                1 => format!(" (e.g. {e})"),
                                _ => format!(" (e.g. ({e}))"),
                            })
                            .unwrap_or_default()
                    ),
                    format!(
                        "remove or change the duplicate rows (SELECT {listed}, count(*) FROM {t} GROUP BY {listed} HAVING count(*) > 1), then run `orch plan new {NAME} ...` again"
                    ),
                ));
            }
            let nullable: Vec<&str> = cols
                .iter()
                .filter(|c| shape.column(c).is_some_and(|c| !c.not_null))
                .map(String::as_str)
                .collect();
            if !nullable.is_empty() {
                notes.push(format!(
                    "{} may be NULL: rows with a NULL in {shown} never conflict (NULLs are distinct in a unique index)",
                    nullable.join(", ")
                ));
            }
        } else {
            notes.push(format!(
                "generated without a database: orch did not check that {t} has {shown}, that no value occurs twice, or that no such unique index exists; the guard and the build will tell"
            ));
        }
        let tsql = table_sql(t);
        let regclass = literal(&tsql);
        let index_regclass = literal(&match t.rsplit_once('.') {
            Some((schema, _)) => format!("{}.{}", ident(schema), ident(&constraint)),
            None => ident(&constraint),
        });
        let cons = ident(&constraint);
        let colsql = list(cols);
        let not_null = cols
            .iter()
            .map(|c| format!("{} IS NOT NULL", ident(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let header = |phase: usize, id: &str| {
            format!(
                "Owned by plan {plan}, phase {phase} ({id}): applied by `orch advance {plan}`.\nGenerated by `orch plan new {NAME}`."
            )
        };
        let cols_id = names::id_part(&cols.join("-"));
        let cols_suffix = cols.join("_");
        let no_duplicates = check(
            &format!("no {shown} occurs twice"),
            format!(
                "SELECT NOT EXISTS (\n  SELECT 1 FROM {tsql}\n  WHERE {not_null}\n  GROUP BY {colsql} HAVING count(*) > 1)"
            ),
        );
        let mut phases = Vec::new();
        let mut migrations = Vec::new();
        phases.push(DraftPhase {
            id: format!("deploy-no-duplicate-{cols_id}"),
            kind: "deploy",
            title: format!("Deploy the app version that never writes a duplicate {shown}"),
            instructions: format!(
                "Deploy the application version that never writes a {shown} that\n\
                 another row of {t} has (it looks first, or retries on a conflict).\n\
                 Wait until no older instance is left: from the next phase on, a\n\
                 duplicate write fails. The check looks at the whole table."
            ),
            checks: vec![no_duplicates.clone()],
            ..DraftPhase::default()
        });
        let index_valid = check(
            &format!("the index {constraint} is valid"),
            format!(
                "SELECT coalesce((SELECT indisvalid FROM pg_index\n                 WHERE indexrelid = to_regclass({index_regclass})), false)"
            ),
        );
        let build_id = format!("build-{cols_id}-index");
        phases.push(DraftPhase {
            id: build_id.clone(),
            kind: "migration",
            role: Some("expand"),
            title: format!("Build the unique index {constraint} concurrently"),
            migration: Some(format!("build_{cols_suffix}_index")),
            instructions: format!(
                "CREATE UNIQUE INDEX CONCURRENTLY builds the index while inserts,\n\
                 updates and deletes go on (it runs outside a transaction and\n\
                 waits for the transactions already running). If it fails (a\n\
                 duplicate written meanwhile, a cancel), PostgreSQL leaves an\n\
                 INVALID index {constraint}: drop it with\n\
                 `DROP INDEX CONCURRENTLY IF EXISTS {constraint};`, fix the cause, and run\n\
                 advance again (the guard refuses while it is there)."
            ),
            guard: vec![
                no_duplicates,
                check(
                    &format!("no INVALID index {constraint} is left from a failed build"),
                    format!(
                        "SELECT NOT EXISTS (SELECT 1 FROM pg_index\n                   WHERE indexrelid = to_regclass({index_regclass}) AND NOT indisvalid)"
                    ),
                ),
            ],
            checks: vec![index_valid.clone()],
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("build_{cols_suffix}_index"),
            content: NewMigration {
                header: header(phases.len(), &build_id),
                up: format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {cons} ON {tsql} ({colsql});"
                ),
                up_in_transaction: false,
                down: format!("DROP INDEX CONCURRENTLY IF EXISTS {cons};"),
                down_in_transaction: false,
            },
        });
        let add_id = format!("add-{cols_id}-unique");
        phases.push(DraftPhase {
            id: add_id.clone(),
            kind: "migration",
            role: Some("expand"),
            title: format!("Make {constraint} the unique constraint on {shown}"),
            migration: Some(format!("add_{cols_suffix}_unique")),
            instructions: format!(
                "ADD CONSTRAINT ... UNIQUE USING INDEX adopts the index built in the\n\
                 phase before: a moment of ACCESS EXCLUSIVE on {t}, no build and no\n\
                 scan. The application may rely on the constraint from now on\n\
                 (e.g. INSERT ... ON CONFLICT ({listed}))."
            ),
            guard: vec![index_valid],
            checks: vec![constraint_is_there(
                format!("the unique constraint {constraint} is there"),
                &regclass,
                &constraint,
                Some('u'),
            )],
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("add_{cols_suffix}_unique"),
            content: NewMigration {
                header: header(phases.len(), &add_id),
                up: format!("ALTER TABLE {tsql} ADD CONSTRAINT {cons} UNIQUE USING INDEX {cons};"),
                up_in_transaction: true,
                down: format!(
                    "-- Dropping the constraint drops its index too; the down of the phase\n\
                     -- before then has nothing left to drop.\n\
                     ALTER TABLE {tsql} DROP CONSTRAINT IF EXISTS {cons};"
                ),
                down_in_transaction: true,
            },
        });
        Ok(Draft {
            description: format!(
                "Make {shown} unique in {t} without blocking writes: the application stops writing duplicates, the unique index is built concurrently, then the constraint adopts it."
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

    const SCHEMA: &str = "CREATE TABLE accounts (id bigserial PRIMARY KEY, org text, email text, created_at timestamptz NOT NULL DEFAULT now());";

    #[test]
    fn builds_the_index_concurrently_then_adopts_it() {
        let cat = catalog(vec![table_with(
            "accounts",
            vec![col("org", "text"), col("email", "text")],
        )]);
        let recipe = AddUnique::new("accounts", "org,email").unwrap();
        assert_eq!(recipe.probes(&cat).len(), 1);
        let draft = recipe.generate("accounts-email", Some(&cat)).unwrap();
        let ids: Vec<&str> = draft.phases.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "deploy-no-duplicate-org-email",
                "build-org-email-index",
                "add-org-email-unique"
            ]
        );
        let build = &draft.migrations[0].content;
        assert!(!build.up_in_transaction && !build.down_in_transaction);
        assert_eq!(
            build.up,
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_org_email_key ON accounts (org, email);"
        );
        assert_eq!(
            draft.migrations[1].content.up,
            "ALTER TABLE accounts ADD CONSTRAINT accounts_org_email_key UNIQUE USING INDEX accounts_org_email_key;"
        );
        assert!(
            draft.notes[0].contains("org, email may be NULL"),
            "{:?}",
            draft.notes
        );
        assert_checks_clean(&draft, "accounts-email", SCHEMA);
        let offline = AddUnique::new("accounts", "email")
            .unwrap()
            .generate("accounts-email", None)
            .unwrap();
        assert_checks_clean(&offline, "accounts-email", SCHEMA);
    }

    #[test]
    fn refuses_duplicates_and_an_existing_key() {
        let base = catalog(vec![table_with("accounts", vec![col("email", "text")])]);
        let mut dups = base.clone();
        dups.counts.insert(
            Probe::Duplicates {
                table: "accounts".into(),
                columns: vec!["email".into()],
            },
            ProbeCount {
                rows: 2,
                example: Some("a@x".into()),
            },
        );
        let mut existing = base.clone();
        existing
            .tables
            .get_mut("accounts")
            .unwrap()
            .indexes
            .push(index("accounts_email_uq", &["email"], true, false));
        let mut invalid = base.clone();
        let mut leftover = index("accounts_email_key", &["email"], true, false);
        leftover.valid = false;
        invalid
            .tables
            .get_mut("accounts")
            .unwrap()
            .indexes
            .push(leftover);
        for (cat, expected) in [
            (
                dups,
                "2 value(s) of email occur in more than one row of accounts (e.g. a@x)",
            ),
            (
                existing,
                "accounts already has the unique index accounts_email_uq",
            ),
            (
                invalid,
                "an index named accounts_email_key exists already on accounts (INVALID",
            ),
        ] {
            let err = AddUnique::new("accounts", "email")
                .unwrap()
                .generate("p", Some(&cat))
                .unwrap_err();
            assert_eq!(err.code(), 4);
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
        let err = AddUnique::new("accounts", "email,nope")
            .unwrap()
            .generate("p", Some(&base))
            .unwrap_err();
        assert!(err.to_string().contains("--columns nope"), "{err}");
    }
}
