//! `change-type`: change a column's type without the rewrite under ACCESS
//! EXCLUSIVE that `ALTER COLUMN ... TYPE` does. A column `C_new` of the new
//! type is added and kept computed from `C` by a sync trigger (the
//! application keeps writing `C` only), backfilled, given NOT NULL (a
//! validated check) and `C`'s indexes, key and unique constraints
//! (concurrently built indexes); then one short contract transaction moves
//! the sequence and default, drops `C`, renames `C_new` to `C` and adopts
//! the key with `ADD CONSTRAINT ... USING INDEX`. The classic case: an
//! `integer` primary key filled from a sequence, to `bigint`.

use crate::error::{Error, Result};
use crate::recipe::carry::{self, Carried};
use crate::recipe::names;
use crate::recipe::swap::{Gate, NewColumn, Swap};
use crate::recipe::{Catalog, Draft, Recent, Recipe, column, refuse, table};

const NAME: &str = "change-type";

/// `orch plan new change-type NAME --table T --column C --to TYPE [--using EXPR]`.
#[derive(Debug, Clone)]
pub struct ChangeType {
    table: String,
    column: String,
    to: String,
    using: Option<String>,
    from: Option<String>,
    created_at: Option<String>,
}

impl ChangeType {
    pub fn new(
        table: &str,
        column: &str,
        to: &str,
        using: Option<&str>,
        from: Option<&str>,
        created_at: Option<&str>,
    ) -> Result<ChangeType> {
        Ok(ChangeType {
            table: names::table("--table", table)?,
            column: names::identifier("--column", column)?,
            to: names::type_name("--to", to)?,
            using: using.map(|u| names::expression("--using", u)).transpose()?,
            from: from.map(|f| names::type_name("--from", f)).transpose()?,
            created_at: created_at
                .map(|c| names::identifier("--created-at", c))
                .transpose()?,
        })
    }

    /// The new column's name while both run: `C_new`, cut to 63 bytes.
    fn new_name(&self) -> String {
        let mut stem = self.column.clone();
        stem.truncate(63 - 4);
        format!("{stem}_new")
    }
}

impl Recipe for ChangeType {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> Vec<String> {
        vec![self.table.clone()]
    }

    fn generate(&self, plan: &str, catalog: Option<&Catalog>) -> Result<Draft> {
        let (t, c, to) = (&self.table, &self.column, &self.to);
        let new = self.new_name();
        let mut notes = Vec::new();
        let shape = catalog.map(|cat| table(cat, "--table", t)).transpose()?;
        let (old_type, carried) = match shape {
            Some(shape) => {
                let col = column(shape, "--column", c)?;
                if col.type_name == *to {
                    return Err(Error::Usage(format!(
                        "--to {to}: {}.{c} is {to} already",
                        shape.name
                    )));
                }
                if shape.column(&new).is_some() {
                    return Err(refuse(
                        NAME,
                        format!(
                            "table {} has a column {new} already (the plan would add it)",
                            shape.name
                        ),
                        format!("drop or rename {new} first"),
                    ));
                }
                carry::require_key(NAME, shape)?;
                let carried = carry::carry(NAME, shape, c, &new, true, true)?;
                if let Some(default) = &carried.default {
                    notes.push(format!(
                        "{c} has the default {default}: the application writes only {c} (its default counts as written on insert), the trigger computes {new} from it. The contract gives {c} this default again{}",
                        match &carried.sequence {
                            Some(sequence) => format!(" and makes {sequence} the new column's"),
                            None => String::new(),
                        }
                    ));
                }
                (col.type_name.clone(), carried)
            }
            None => {
                let Some(from) = &self.from else {
                    return Err(Error::Usage(format!(
                        "{NAME}: give --from TYPE ({c}'s type now, for the contract's down section); without a database orch cannot read it"
                    )));
                };
                notes.push(format!(
                    "generated without a database: orch did not check that {t}.{c} exists, whether it is NOT NULL, its default, or its keys, indexes and constraints (none are carried over to the new column: a primary key, an index or a default on {c} would be lost); generate with a database to have them carried over or refused"
                ));
                (from.clone(), Carried::default())
            }
        };
        let recent = Recent::choose(NAME, self.created_at.as_deref(), shape)?;
        let csql = names::ident(c);
        let up = match &self.using {
            Some(using) => using.clone(),
            None => format!("{csql}::{to}"),
        };
        let swap = Swap {
            recipe: NAME,
            table: t.clone(),
            old: vec![(c.clone(), old_type.clone())],
            new: vec![NewColumn {
                name: new.clone(),
                type_name: to.clone(),
                final_name: Some(c.clone()),
                carried,
            }],
            up: vec![(new.clone(), up)],
            // Both versions write only C (the new one too, until the swap
            // renames C_new to C): no write sets C_new alone, so the trigger
            // needs no way back, and --using need not be invertible.
            down: Vec::new(),
            relax: Vec::new(),
            app_writes_new: false,
            recent,
            gate: Gate {
                id: format!("deploy-{}-as-new-type", names::id_part(c)),
                title: format!("Deploy the app version that reads {t}.{c} as {to}"),
                instructions: format!(
                    "Deploy the application version that reads {c} as {to} and\n\
                     writes values that both {old_type} and {to} hold until the\n\
                     next phase (e.g. 64-bit ids in the code, for an integer key\n\
                     made bigint). It keeps writing {c} only: {new} is the trigger's,\n\
                     and becomes {c} in the next phase, under the same name. Wait\n\
                     until no older instance is left, then confirm."
                ),
            },
            contract_id: format!("swap-{}", names::id_part(c)),
            contract_title: format!("Swap {new} in for {c} in one short transaction"),
            description: format!(
                "Change {t}.{c} from {old_type} to {to} without rewriting the table under an exclusive lock: {new} is added and kept computed from {c} by a trigger, existing rows are copied, its NOT NULL, indexes and keys are built without blocking writes, then one short transaction drops {c} and renames {new} to {c}."
            ),
            notes,
        };
        Ok(swap.draft(plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::shape::{ColumnShape, ConstraintKind, ConstraintShape};
    use crate::recipe::testing::{assert_checks_clean, catalog, col, index, table_with};

    const SCHEMA: &str = "CREATE TABLE orders (id serial PRIMARY KEY, amount int, created_at timestamptz NOT NULL DEFAULT now());";

    fn orders() -> Catalog {
        let mut t = table_with("orders", vec![col("amount", "integer")]);
        t.columns[0].type_name = "integer".into();
        catalog(vec![t])
    }

    #[test]
    fn an_integer_key_becomes_bigint_in_one_short_swap() {
        let draft = ChangeType::new("orders", "id", "bigint", None, None, None)
            .unwrap()
            .generate("orders-id", Some(&orders()))
            .unwrap();
        let ids: Vec<&str> = draft.phases.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "add-id-new",
                "sync-id-new",
                "backfill-id-new",
                "add-id-new-check",
                "validate-id-new-check",
                "build-orders-id-new-pkey",
                "deploy-id-as-new-type",
                "swap-id"
            ]
        );
        let swap = &draft.migrations.last().unwrap().content.up;
        let order = [
            // A serial's sequence is `AS integer`: it must grow with the key.
            "ALTER SEQUENCE orders_id_seq AS bigint;",
            "ALTER SEQUENCE orders_id_seq OWNED BY orders.id_new;",
            "ALTER TABLE orders ALTER COLUMN id_new SET NOT NULL;",
            "ALTER TABLE orders DROP COLUMN id;",
            "ALTER TABLE orders RENAME COLUMN id_new TO id;",
            "ALTER TABLE orders ALTER COLUMN id SET DEFAULT nextval('orders_id_seq'::regclass);",
            "ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY USING INDEX orders_id_new_pkey;",
            "ALTER TABLE orders DROP CONSTRAINT orders_id_new_not_null;",
        ];
        let mut at = 0;
        for statement in order {
            let found = swap[at..]
                .find(statement)
                .unwrap_or_else(|| panic!("{statement} after {at}:\n{swap}"));
            at += found + statement.len();
        }
        assert!(
            draft.notes[0].contains("The contract gives id this default again")
                && !draft.notes[0].contains("ignored"),
            "{}",
            draft.notes[0]
        );
        // The application writes only id: the trigger has no way back.
        let sync = draft.phases[1].raw.as_deref().unwrap();
        assert!(!sync.contains("down:"), "{sync}");
        assert_checks_clean(&draft, "orders-id", SCHEMA);
    }

    #[test]
    fn refuses_a_referencing_key_and_an_identity_by_name() {
        let mut cat = orders();
        cat.tables
            .get_mut("orders")
            .unwrap()
            .referenced_by
            .push(ConstraintShape {
                name: "lines_order_id_fkey".into(),
                kind: ConstraintKind::ForeignKey,
                table: "lines".into(),
                columns: vec!["order_id".into()],
                references: Some(("orders".into(), vec!["id".into()])),
                validated: true,
                definition: "FOREIGN KEY (order_id) REFERENCES orders(id)".into(),
            });
        let err = ChangeType::new("orders", "id", "bigint", None, None, None)
            .unwrap()
            .generate("p", Some(&cat))
            .unwrap_err();
        assert_eq!(err.code(), 4);
        assert!(
            err.to_string()
                .contains("foreign key lines_order_id_fkey of lines"),
            "{err}"
        );
        let mut cat = orders();
        cat.tables.get_mut("orders").unwrap().columns[0] = ColumnShape {
            identity: true,
            not_null: true,
            default: None,
            ..col("id", "integer")
        };
        let err = ChangeType::new("orders", "id", "bigint", None, None, None)
            .unwrap()
            .generate("p", Some(&cat))
            .unwrap_err();
        assert!(err.to_string().contains("its identity"), "{err}");
        let err = ChangeType::new("orders", "amount", "integer", None, None, None)
            .unwrap()
            .generate("p", Some(&orders()))
            .unwrap_err();
        assert_eq!(err.code(), 2);
        assert!(ChangeType::new("orders", "id", "bigint; drop", None, None, None).is_err());
    }

    #[test]
    fn indexes_and_unique_constraints_keep_their_names() {
        let mut cat = orders();
        let t = cat.tables.get_mut("orders").unwrap();
        t.columns[2].not_null = true;
        t.indexes
            .push(index("orders_amount_idx", &["amount"], false, false));
        t.indexes
            .push(index("orders_amount_key", &["amount"], true, false));
        t.constraints.push(ConstraintShape {
            name: "orders_amount_key".into(),
            kind: ConstraintKind::Unique,
            table: "orders".into(),
            columns: vec!["amount".into()],
            references: None,
            validated: true,
            definition: "UNIQUE (amount)".into(),
        });
        let draft = ChangeType::new("orders", "amount", "bigint", None, None, None)
            .unwrap()
            .generate("orders-amount", Some(&cat))
            .unwrap();
        let swap = &draft.migrations.last().unwrap().content.up;
        for statement in [
            "ALTER TABLE orders RENAME COLUMN amount_new TO amount;",
            "ALTER INDEX orders_amount_new_idx RENAME TO orders_amount_idx;",
            "ALTER TABLE orders ADD CONSTRAINT orders_amount_key UNIQUE USING INDEX orders_amount_new_key;",
        ] {
            assert!(swap.contains(statement), "{statement}\n{swap}");
        }
        assert_checks_clean(
            &draft,
            "orders-amount",
            "CREATE TABLE orders (id serial PRIMARY KEY, amount int NOT NULL, created_at timestamptz NOT NULL DEFAULT now()); CREATE INDEX orders_amount_idx ON orders (amount); ALTER TABLE orders ADD CONSTRAINT orders_amount_key UNIQUE (amount);",
        );
    }

    #[test]
    fn a_plain_column_with_using_and_without_a_database() {
        let draft = ChangeType::new(
            "orders",
            "amount",
            "numeric(12,2)",
            Some("amount / 100.0"),
            Some("integer"),
            Some("created_at"),
        )
        .unwrap()
        .generate("orders-amount", None)
        .unwrap();
        let sync = draft.phases[1].raw.as_deref().unwrap();
        assert!(
            sync.contains("up: {amount_new: \"amount / 100.0\"}") && !sync.contains("down:"),
            "{sync}"
        );
        assert_checks_clean(&draft, "orders-amount", SCHEMA);
        let err = ChangeType::new("orders", "amount", "bigint", None, None, Some("created_at"))
            .unwrap()
            .generate("p", None)
            .unwrap_err();
        assert!(err.to_string().contains("--from TYPE"), "{err}");
    }
}
