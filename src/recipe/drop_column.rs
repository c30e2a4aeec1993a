//! `drop-column`: relax the column if the new application version could
//! not insert without it (NOT NULL without a default), a deploy gate for
//! the version that neither reads nor writes it, then the guarded,
//! irreversible `DROP COLUMN` in a contract phase. What else depends on the
//! column is refused by name unless dropping the column takes it along
//! harmlessly (an index or constraint on that column alone).

use crate::error::{Error, Result};
use crate::migration::source::NewMigration;
use crate::recipe::draft::check;
use crate::recipe::names::{self, ident, table_sql};
use crate::recipe::shape::ConstraintKind;
use crate::recipe::{
    Catalog, Draft, DraftMigration, DraftPhase, Recent, Recipe, column, refuse, table,
};

const NAME: &str = "drop-column";

/// `orch plan new drop-column NAME --table T --column C`.
#[derive(Debug, Clone)]
pub struct DropColumn {
    table: String,
    column: String,
    type_name: Option<String>,
    created_at: Option<String>,
}

impl DropColumn {
    pub fn new(
        table: &str,
        column: &str,
        type_name: Option<&str>,
        created_at: Option<&str>,
    ) -> Result<DropColumn> {
        if let Some(ty) = type_name
            && (ty.trim().is_empty() || ty.contains(';') || ty.contains("--"))
        {
            return Err(Error::Usage(format!(
                "--type {ty:?}: expected a column type such as text or numeric(10,2)"
            )));
        }
        Ok(DropColumn {
            table: names::table("--table", table)?,
            column: names::identifier("--column", column)?,
            type_name: type_name.map(|t| t.trim().to_string()),
            created_at: created_at
                .map(|c| names::identifier("--created-at", c))
                .transpose()?,
        })
    }
}

/// What the catalog says matters for the drop.
struct Facts {
    type_name: String,
    /// NOT NULL without a default: the new version's inserts would fail.
    must_relax: bool,
    default: Option<String>,
    /// Objects dropped along with the column, named in the instructions.
    taken_along: Vec<String>,
}

impl DropColumn {
    fn facts(&self, catalog: &Catalog) -> Result<Facts> {
        let (t, c) = (&self.table, &self.column);
        let shape = table(catalog, "--table", t)?;
        let col = column(shape, "--column", c)?;
        let mut blocking = Vec::new();
        let mut taken_along = Vec::new();
        for index in &shape.indexes {
            let uses = index.columns.iter().any(|ic| ic.as_deref() == Some(c))
                || (index.columns.iter().any(Option::is_none) || index.partial)
                    && mentions(&index.definition, c);
            if !uses {
                continue;
            }
            if index.primary {
                blocking.push(format!("the primary key index {}", index.name));
            } else if index.columns == [Some(c.clone())] && !index.partial {
                taken_along.push(format!("index {}", index.name));
            } else {
                blocking.push(format!("index {} ({})", index.name, index.definition));
            }
        }
        for k in &shape.constraints {
            if !k.columns.contains(c) {
                continue;
            }
            let alone = k.columns == [c.clone()];
            match k.kind {
                ConstraintKind::PrimaryKey => {
                    blocking.push(format!("the primary key {} ({})", k.name, k.definition))
                }
                _ if alone => taken_along.push(format!("{} {}", k.kind.label(), k.name)),
                _ => blocking.push(format!("{} {} ({})", k.kind.label(), k.name, k.definition)),
            }
        }
        for fk in &shape.referenced_by {
            if fk
                .references
                .as_ref()
                .is_some_and(|(_, cols)| cols.contains(c))
            {
                blocking.push(format!(
                    "foreign key {} of {} ({})",
                    fk.name, fk.table, fk.definition
                ));
            }
        }
        for view in shape.views.iter().filter(|v| v.columns.contains(c)) {
            blocking.push(format!("view {}", view.name));
        }
        if !blocking.is_empty() {
            return Err(refuse(
                NAME,
                format!(
                    "{}.{c} is used by {}: dropping the column would drop {} too (or fail)",
                    shape.name,
                    blocking.join(", "),
                    if blocking.len() == 1 { "it" } else { "them" }
                ),
                "change or drop what uses the column first (in a plan of its own), then run `orch plan new drop-column ...` again",
            ));
        }
        Ok(Facts {
            type_name: col.type_name.clone(),
            must_relax: col.not_null && col.default.is_none(),
            default: col.default.clone(),
            taken_along,
        })
    }
}

/// Whether an index definition mentions column `c` as a word.
fn mentions(definition: &str, c: &str) -> bool {
    definition
        .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
        .any(|w| w == c)
}

impl Recipe for DropColumn {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone()]
    }

    fn generate(&self, plan: &str, catalog: Option<&Catalog>) -> Result<Draft> {
        let (t, c) = (&self.table, &self.column);
        let mut notes = Vec::new();
        let facts = match catalog {
            Some(catalog) => Some(self.facts(catalog)?),
            None => None,
        };
        let shape = catalog.map(|cat| table(cat, "--table", t)).transpose()?;
        let type_name = match (&facts, &self.type_name) {
            (_, Some(given)) => given.clone(),
            (Some(facts), None) => facts.type_name.clone(),
            (None, None) => {
                return Err(Error::Usage(format!(
                    "{NAME}: give --type TYPE ({c}'s type, for the migration's down section that re-creates it); without a database orch cannot read it"
                )));
            }
        };
        // Without a database, relax anyway: DROP NOT NULL on a nullable
        // column changes nothing.
        let must_relax = facts.as_ref().is_none_or(|f| f.must_relax);
        let default = facts.as_ref().and_then(|f| f.default.clone());
        if facts.is_none() {
            notes.push(format!(
                "generated without a database: orch did not check that {t}.{c} exists, whether it is NOT NULL (the first phase drops NOT NULL either way; remove that phase if {c} is nullable), or what depends on it (an index, constraint, view or foreign key that uses {c} with other columns would go with it)"
            ));
        }
        if let Some(default) = &default {
            notes.push(format!(
                "{c} has the default {default}: rows the new version inserts get it, so the gate's check cannot tell them from the old version's; it only checks that new rows arrive"
            ));
        }
        let recent = Recent::choose(NAME, self.created_at.as_deref(), shape)?;
        let tsql = table_sql(t);
        let csql = ident(c);
        let header = |phase: usize, id: &str| {
            format!(
                "Owned by plan {plan}, phase {phase} ({id}): applied by `orch advance {plan}`.\nGenerated by `orch plan new {NAME}`."
            )
        };
        let column_id = names::id_part(c);
        let mut phases = Vec::new();
        let mut migrations = Vec::new();
        if must_relax {
            let id = format!("relax-{column_id}");
            phases.push(DraftPhase {
                id: id.clone(),
                kind: "migration",
                role: Some("expand"),
                title: format!("Drop NOT NULL on {c}, so the new version may stop writing it"),
                migration: Some(format!("relax_{c}")),
                instructions: format!(
                    "{c} is NOT NULL without a default: once the new version stops\n\
                     writing it, its inserts would fail. DROP NOT NULL only changes the\n\
                     catalog (a moment of ACCESS EXCLUSIVE); the running version keeps\n\
                     writing {c}. Confirm once it is done."
                ),
                checks: vec![check(
                    &format!("{c} accepts NULL"),
                    format!(
                        "SELECT NOT coalesce((SELECT attnotnull FROM pg_attribute\n                     WHERE attrelid = to_regclass({}) AND attname = {}), true)",
                        names::literal(&tsql),
                        names::literal(c)
                    ),
                )],
                ..DraftPhase::default()
            });
            migrations.push(DraftMigration {
                suffix: format!("relax_{c}"),
                content: NewMigration {
                    header: header(phases.len(), &id),
                    up: format!("ALTER TABLE {tsql} ALTER COLUMN {csql} DROP NOT NULL;"),
                    up_in_transaction: true,
                    // Relaxing suits every app version, so rolling it back
                    // keeps it: SET NOT NULL would scan the table under
                    // ACCESS EXCLUSIVE (the lint refuses it in a down).
                    down: format!(
                        "-- nothing to undo\n-- {c} stays nullable, which suits every app version. Putting NOT NULL\n-- back here would scan {t} under ACCESS EXCLUSIVE; if it is wanted, use\n-- `orch plan new set-not-null` (no long lock) rather than:\n--   ALTER TABLE {tsql} ALTER COLUMN {csql} SET NOT NULL;{}",
                        if facts.is_none() {
                            format!("\n-- (orch could not tell whether {c} was NOT NULL.)")
                        } else {
                            String::new()
                        }
                    ),
                    down_in_transaction: true,
                },
            });
        }
        let new_rows_check = match default {
            None => check(
                &format!("new rows are written without {c}"),
                format!(
                    "SELECT count(*) > 0 AND bool_and({csql} IS NULL)\nFROM {}",
                    recent.rows(&tsql, &csql)
                ),
            ),
            Some(_) => check(
                "new rows keep arriving",
                format!("SELECT count(*) > 0\nFROM {}", recent.rows(&tsql, &csql)),
            ),
        };
        phases.push(DraftPhase {
            id: format!("deploy-without-{column_id}"),
            kind: "deploy",
            title: format!("Deploy the app version that neither reads nor writes {t}.{c}"),
            instructions: format!(
                "Deploy the application version that no longer reads {c} and no\n\
                 longer writes it (no SELECT *, no ORM field mapped to it). Wait until\n\
                 no older instance is left, then confirm: the next phase deletes the\n\
                 column. The check looks at {}; orch cannot see reads,\n\
                 so check the version's queries yourself.",
                recent.describe()
            ),
            checks: vec![new_rows_check.clone()],
            ..DraftPhase::default()
        });
        let drop_id = format!("drop-{column_id}");
        let taken_along = facts
            .as_ref()
            .map(|f| f.taken_along.clone())
            .unwrap_or_default();
        phases.push(DraftPhase {
            id: drop_id.clone(),
            kind: "migration",
            role: Some("contract"),
            title: format!("Drop the column {t}.{c}"),
            migration: Some(format!("drop_{c}")),
            instructions: format!(
                "DROP COLUMN only changes the catalog (a moment of ACCESS EXCLUSIVE;\n\
                 the space is reclaimed as rows are rewritten). It cannot be undone:\n\
                 a forced rollback re-creates {c} empty.{}",
                match taken_along.is_empty() {
                    true => String::new(),
                    false => format!("\nIt also drops {}.", taken_along.join(", ")),
                }
            ),
            // Evaluated again once the column is gone: it reads the rows as
            // JSON, where a dropped column is simply absent.
            guard: vec![match &default {
                None => check(
                    &format!("no new row carries {c}"),
                    format!(
                        "SELECT count(*) > 0 AND bool_and((to_jsonb(recent) ->> {}) IS NULL)\nFROM {}",
                        names::literal(c),
                        recent.rows(&tsql, "*")
                    ),
                ),
                Some(_) => check(
                    "new rows keep arriving",
                    format!("SELECT count(*) > 0\nFROM {}", recent.rows(&tsql, "*")),
                ),
            }],
            checks: vec![check(
                &format!("{c} is gone"),
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute\n                   WHERE attrelid = to_regclass({}) AND attname = {} AND NOT attisdropped)",
                    names::literal(&tsql),
                    names::literal(c)
                ),
            )],
            rollback_loses: Some(format!(
                "the values of {c} are deleted with the column; a forced rollback re-creates {c} ({type_name}) EMPTY and nullable"
            )),
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("drop_{c}"),
            content: NewMigration {
                header: header(phases.len(), &drop_id),
                up: format!("ALTER TABLE {tsql} DROP COLUMN {csql};"),
                up_in_transaction: true,
                down: format!(
                    "-- Re-creates the column EMPTY: its values are gone with the up section.\nALTER TABLE {tsql} ADD COLUMN {csql} {type_name};"
                ),
                down_in_transaction: true,
            },
        });
        Ok(Draft {
            description: format!(
                "Drop {t}.{c} without breaking the application: {}the version that neither reads nor writes it is deployed, then the column is dropped in a guarded, irreversible contract phase.",
                if must_relax {
                    "the column is relaxed so inserts may leave it out, "
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
    use crate::recipe::TableShape;
    use crate::recipe::shape::{ColumnShape, ConstraintShape, ViewShape};
    use crate::recipe::testing::{assert_checks_clean, catalog, col, index, table_with};

    type Change = Box<dyn Fn(&mut TableShape)>;

    const SCHEMA: &str = "CREATE TABLE events (id bigserial PRIMARY KEY, legacy text NOT NULL, payload text, created_at timestamptz NOT NULL DEFAULT now());";

    fn events() -> Catalog {
        let mut t = table_with(
            "events",
            vec![
                ColumnShape {
                    not_null: true,
                    ..col("legacy", "text")
                },
                col("payload", "text"),
            ],
        );
        t.indexes
            .push(index("events_legacy_idx", &["legacy"], false, false));
        catalog(vec![t])
    }

    #[test]
    fn relaxes_gates_then_drops_behind_a_guard() {
        let draft = DropColumn::new("events", "legacy", None, None)
            .unwrap()
            .generate("drop-legacy", Some(&events()))
            .unwrap();
        let ids: Vec<&str> = draft.phases.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            ["relax-legacy", "deploy-without-legacy", "drop-legacy"]
        );
        let drop = &draft.phases[2];
        assert!(
            drop.rollback_loses
                .as_deref()
                .unwrap()
                .contains("(text) EMPTY")
        );
        assert!(!drop.guard.is_empty());
        assert!(
            drop.instructions.contains("index events_legacy_idx"),
            "{}",
            drop.instructions
        );
        assert_eq!(
            draft.migrations[1].content.down.lines().last().unwrap(),
            "ALTER TABLE events ADD COLUMN legacy text;"
        );
        assert_checks_clean(&draft, "drop-legacy", SCHEMA);
        // A nullable column needs no relaxing.
        let mut cat = events();
        cat.tables.get_mut("events").unwrap().columns[2].not_null = false;
        let draft = DropColumn::new("events", "legacy", None, None)
            .unwrap()
            .generate("drop-legacy", Some(&cat))
            .unwrap();
        assert_eq!(draft.phases[0].id, "deploy-without-legacy");
        // Without a database: --type is required.
        let err = DropColumn::new("events", "legacy", None, Some("created_at"))
            .unwrap()
            .generate("p", None)
            .unwrap_err();
        assert!(err.to_string().contains("--type"), "{err}");
        let draft = DropColumn::new("events", "legacy", Some("text"), Some("created_at"))
            .unwrap()
            .generate("drop-legacy", None)
            .unwrap();
        assert_checks_clean(&draft, "drop-legacy", SCHEMA);
    }

    #[test]
    fn refuses_what_depends_on_the_column_by_name() {
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|t| {
                    t.views.push(ViewShape {
                        name: "legacy_report".into(),
                        columns: vec!["legacy".into()],
                    })
                }),
                "view legacy_report",
            ),
            (
                Box::new(|t| {
                    t.indexes.push(index(
                        "events_legacy_payload_idx",
                        &["legacy", "payload"],
                        false,
                        false,
                    ))
                }),
                "index events_legacy_payload_idx",
            ),
            (
                Box::new(|t| {
                    t.referenced_by.push(ConstraintShape {
                        name: "audit_legacy_fkey".into(),
                        kind: ConstraintKind::ForeignKey,
                        table: "audit".into(),
                        columns: vec!["legacy".into()],
                        references: Some(("events".into(), vec!["legacy".into()])),
                        validated: true,
                        definition: "FOREIGN KEY (legacy) REFERENCES events(legacy)".into(),
                    })
                }),
                "foreign key audit_legacy_fkey of audit",
            ),
        ];
        for (change, expected) in cases {
            let mut cat = events();
            change(cat.tables.get_mut("events").unwrap());
            let err = DropColumn::new("events", "legacy", None, None)
                .unwrap()
                .generate("p", Some(&cat))
                .unwrap_err();
            assert_eq!(err.code(), 4);
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
        let err = DropColumn::new("events", "id", None, None)
            .unwrap()
            .generate("p", Some(&events()))
            .unwrap_err();
        assert!(err.to_string().contains("primary key"), "{err}");
    }
}
