//! `rename-column`: add the column under its new name, keep both in step
//! with a sync trigger (identity both ways) so the old application version
//! keeps working while the new one reads and writes only the new name,
//! backfill, rebuild NOT NULL and the column's indexes on the new column,
//! then drop the old column in a guarded contract. No final rename: the
//! new column has the new name from the start.

use crate::error::{Error, Result};
use crate::recipe::carry::{self, Carried};
use crate::recipe::names;
use crate::recipe::swap::{Gate, NewColumn, Swap};
use crate::recipe::{Catalog, Draft, Recent, Recipe, column, refuse, table};

const NAME: &str = "rename-column";

/// `orch plan new rename-column NAME --table T --column C --to NEW`.
#[derive(Debug, Clone)]
pub struct RenameColumn {
    table: String,
    column: String,
    to: String,
    type_name: Option<String>,
    created_at: Option<String>,
}

impl RenameColumn {
    pub fn new(
        table: &str,
        column: &str,
        to: &str,
        type_name: Option<&str>,
        created_at: Option<&str>,
    ) -> Result<RenameColumn> {
        let column = names::identifier("--column", column)?;
        let to = names::identifier("--to", to)?;
        if column == to {
            return Err(Error::Usage(format!(
                "--to {to}: the column is called {column} already"
            )));
        }
        Ok(RenameColumn {
            table: names::table("--table", table)?,
            column,
            to,
            type_name: type_name
                .map(|t| names::type_name("--type", t))
                .transpose()?,
            created_at: created_at
                .map(|c| names::identifier("--created-at", c))
                .transpose()?,
        })
    }
}

impl Recipe for RenameColumn {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone()]
    }

    fn generate(&self, plan: &str, catalog: Option<&Catalog>) -> Result<Draft> {
        let (t, c, to) = (&self.table, &self.column, &self.to);
        let mut notes = Vec::new();
        let shape = catalog.map(|cat| table(cat, "--table", t)).transpose()?;
        let (type_name, carried) = match shape {
            Some(shape) => {
                let col = column(shape, "--column", c)?;
                if shape.column(to).is_some() {
                    return Err(refuse(
                        NAME,
                        format!("table {} has a column {to} already", shape.name),
                        "choose another --to, or drop that column first",
                    ));
                }
                carry::require_key(NAME, shape)?;
                let carried = carry::carry(NAME, shape, c, to, false, false)?;
                (col.type_name.clone(), carried)
            }
            None => {
                let Some(given) = &self.type_name else {
                    return Err(Error::Usage(format!(
                        "{NAME}: give --type TYPE ({c}'s type, for the new column {to}); without a database orch cannot read it"
                    )));
                };
                notes.push(format!(
                    "generated without a database: orch did not check that {t}.{c} exists, its type, whether it is NOT NULL (then add a check, validated, before the contract's SET NOT NULL), whether it has a default (refused: see docs/recipes.md), or what depends on it (an index, constraint, view or foreign key on {c} would go with it); generate with a database to have them carried over or refused"
                ));
                (given.clone(), Carried::default())
            }
        };
        let recent = Recent::choose(NAME, self.created_at.as_deref(), shape)?;
        let swap = Swap {
            recipe: NAME,
            table: t.clone(),
            old: vec![(c.clone(), type_name.clone())],
            new: vec![NewColumn {
                name: to.clone(),
                type_name,
                final_name: None,
                carried,
            }],
            up: vec![(to.clone(), names::ident(c))],
            down: vec![(c.clone(), names::ident(to))],
            relax: Vec::new(),
            app_writes_new: true,
            recent,
            gate: Gate {
                id: format!("deploy-uses-{}", names::id_part(to)),
                title: format!("Deploy the app version that reads and writes only {t}.{to}"),
                instructions: format!(
                    "Deploy the application version that reads and writes {to} and\n\
                     never {c} (no SELECT *, no ORM field mapped to {c}). While both\n\
                     versions run, the trigger copies each side's writes to the\n\
                     other, so the old version keeps working. Wait until no older\n\
                     instance is left, then confirm: the next phase drops {c}."
                ),
            },
            contract_id: format!("drop-{}", names::id_part(c)),
            contract_title: format!("Drop {t}.{c}, leaving {to}"),
            description: format!(
                "Rename {t}.{c} to {to} while the application keeps writing: {to} is added, a trigger keeps both in step while the old and the new version run, existing rows are copied, then {c} is dropped in a guarded contract."
            ),
            notes,
        };
        Ok(swap.draft(plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::shape::{ColumnShape, ConstraintKind, ConstraintShape, ViewShape};
    use crate::recipe::testing::{assert_checks_clean, catalog, col, index, table_with};

    const SCHEMA: &str = "CREATE TABLE people (id bigserial PRIMARY KEY, full_name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now()); CREATE UNIQUE INDEX people_full_name_key ON people (full_name);";

    fn people() -> Catalog {
        let mut t = table_with(
            "people",
            vec![ColumnShape {
                not_null: true,
                ..col("full_name", "text")
            }],
        );
        t.indexes
            .push(index("people_full_name_key", &["full_name"], true, false));
        catalog(vec![t])
    }

    fn ids(draft: &Draft) -> Vec<&str> {
        draft.phases.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn adds_syncs_backfills_rebuilds_then_drops() {
        let draft = RenameColumn::new("people", "full_name", "name", None, None)
            .unwrap()
            .generate("people-name", Some(&people()))
            .unwrap();
        assert_eq!(
            ids(&draft),
            [
                "add-name",
                "sync-name",
                "backfill-name",
                "add-name-check",
                "validate-name-check",
                "build-people-name-key",
                "deploy-uses-name",
                "drop-full-name"
            ]
        );
        let sync = draft.phases[1].raw.as_deref().unwrap();
        assert!(
            sync.contains("up: {name: \"full_name\"}, down: {full_name: \"name\"}"),
            "{sync}"
        );
        let contract = &draft.migrations.last().unwrap().content;
        assert!(
            contract.up.contains("ALTER TABLE people ALTER COLUMN name SET NOT NULL;\nALTER TABLE people DROP COLUMN full_name;"),
            "{}",
            contract.up
        );
        assert!(!contract.up.contains("RENAME COLUMN"), "{}", contract.up);
        assert!(draft.phases.last().unwrap().rollback_loses.is_some());
        assert_checks_clean(&draft, "people-name", SCHEMA);
    }

    #[test]
    fn refuses_what_it_cannot_carry_by_name() {
        let mut cat = people();
        let t = cat.tables.get_mut("people").unwrap();
        t.views.push(ViewShape {
            name: "names".into(),
            columns: vec!["full_name".into()],
        });
        t.referenced_by.push(ConstraintShape {
            name: "badges_person_fkey".into(),
            kind: ConstraintKind::ForeignKey,
            table: "badges".into(),
            columns: vec!["person".into()],
            references: Some(("people".into(), vec!["full_name".into()])),
            validated: true,
            definition: "FOREIGN KEY (person) REFERENCES people(full_name)".into(),
        });
        let err = RenameColumn::new("people", "full_name", "name", None, None)
            .unwrap()
            .generate("p", Some(&cat))
            .unwrap_err();
        assert_eq!(err.code(), 4);
        let text = err.to_string();
        assert!(text.contains("view names"), "{text}");
        assert!(
            text.contains("foreign key badges_person_fkey of badges"),
            "{text}"
        );
        // A default, a key-less table, a taken name.
        let mut cat = people();
        cat.tables.get_mut("people").unwrap().columns[2].default = Some("''::text".into());
        let err = RenameColumn::new("people", "full_name", "name", None, None)
            .unwrap()
            .generate("p", Some(&cat))
            .unwrap_err();
        assert!(err.to_string().contains("its default ''::text"), "{err}");
        let mut cat = people();
        cat.tables.get_mut("people").unwrap().indexes.clear();
        let err = RenameColumn::new("people", "full_name", "name", None, None)
            .unwrap()
            .generate("p", Some(&cat))
            .unwrap_err();
        assert!(err.to_string().contains("no primary key"), "{err}");
        let err = RenameColumn::new("people", "full_name", "created_at", None, None)
            .unwrap()
            .generate("p", Some(&people()))
            .unwrap_err();
        assert!(err.to_string().contains("has a column created_at already"));
        assert!(RenameColumn::new("people", "a", "a", None, None).is_err());
    }

    #[test]
    fn without_a_database_the_type_is_an_option() {
        let err = RenameColumn::new("people", "full_name", "name", None, Some("created_at"))
            .unwrap()
            .generate("p", None)
            .unwrap_err();
        assert!(err.to_string().contains("--type"), "{err}");
        let draft = RenameColumn::new(
            "people",
            "full_name",
            "name",
            Some("text"),
            Some("created_at"),
        )
        .unwrap()
        .generate("people-name", None)
        .unwrap();
        assert_eq!(draft.phases.len(), 5);
        assert_checks_clean(&draft, "people-name", SCHEMA);
    }
}
