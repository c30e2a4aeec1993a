//! Recipes: `orch plan new RECIPE NAME`. A recipe turns its options (and,
//! with a database, what the catalog says of the table) into a reviewed
//! plan and its migrations, or refuses by name what it cannot do safely.
//! Generation is pure: the engine reads the catalog (`store`), a recipe
//! only looks at [`Catalog`], so every recipe is unit-tested without a
//! database. One file per recipe, each implementing [`Recipe`].

pub(crate) mod add_foreign_key;
pub(crate) mod add_unique;
pub(crate) mod carry;
pub(crate) mod change_type;
pub(crate) mod draft;
pub(crate) mod drop_column;
pub(crate) mod names;
pub(crate) mod rename_column;
pub(crate) mod replace_columns;
pub(crate) mod set_not_null;
pub(crate) mod shape;
pub(crate) mod swap;
mod swap_contract;
#[cfg(test)]
pub(crate) mod testing;

use crate::error::{Error, Result};

pub use draft::{Draft, DraftMigration, DraftPhase, migration_name};
pub use shape::{Catalog, Probe, TableShape};

/// One recipe: what it reads and what it writes.
pub trait Recipe {
    /// The recipe's name on the command line (`set-not-null`).
    fn name(&self) -> &'static str;

    /// The tables whose catalog entries the recipe uses, as given in its
    /// options.
    fn tables(&self) -> Vec<String>;

    /// What the recipe wants counted in the rows, given the catalog (only
    /// for columns that exist there).
    fn probes(&self, catalog: &Catalog) -> Vec<Probe> {
        let _ = catalog;
        Vec::new()
    }

    /// The plan named `plan`: from the options alone when `catalog` is
    /// None (no database), else checked against it. Refusals name the
    /// option or the object in the way.
    fn generate(&self, plan: &str, catalog: Option<&Catalog>) -> Result<Draft>;
}

/// The table `name` in `catalog`, or a refusal saying it does not exist.
/// The table a recipe changes (`--table`) may not be partitioned: the
/// plans build indexes CONCURRENTLY, attach them with ADD CONSTRAINT ...
/// USING INDEX and add constraints NOT VALID, all of which PostgreSQL
/// rejects on a partitioned table.
pub fn table<'a>(catalog: &'a Catalog, option: &str, name: &str) -> Result<&'a TableShape> {
    let shape = catalog.tables.get(name).ok_or_else(|| {
        Error::Usage(format!(
            "{option} {name}: no such table in the database (check the name and the search_path)"
        ))
    })?;
    if option == "--table" && shape.partitioned {
        return Err(Error::refused(
            format!(
                "{option} {name}: {} is a partitioned table, which orch plan new does not support: its plans build indexes with CREATE INDEX CONCURRENTLY, attach them with ADD CONSTRAINT ... USING INDEX and add constraints NOT VALID, and PostgreSQL rejects each of these on a partitioned table",
                shape.name
            ),
            Some("write the plan by hand: change each partition (a plan per partition works), then the partitioned table itself (an index built ON ONLY it and its partitions' indexes attached, a constraint added once every partition has it)".into()),
        ));
    }
    Ok(shape)
}

/// The column `column` of `shape`, or an error naming the option.
pub fn column<'a>(
    shape: &'a TableShape,
    option: &str,
    column: &str,
) -> Result<&'a shape::ColumnShape> {
    shape.column(column).ok_or_else(|| {
        let known: Vec<&str> = shape.columns.iter().map(|c| c.name.as_str()).collect();
        Error::Usage(format!(
            "{option} {column}: table {} has no column {column} (its columns: {})",
            shape.name,
            known.join(", ")
        ))
    })
}

/// A refusal of recipe `recipe`: `message` names what is in the way.
pub fn refuse(recipe: &str, message: impl Into<String>, next: impl Into<String>) -> Error {
    Error::refused(format!("{recipe}: {}", message.into()), Some(next.into()))
}

/// How a deploy gate's check finds the rows the new application version
/// wrote: by a creation time at or after `:gate_opened_at`, or, lacking
/// one, the newest rows by a sequential key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recent {
    /// A column stamped with the insert time (e.g. `created_at`).
    CreatedAt(String),
    /// A one-column key filled from a sequence: the newest rows have the
    /// highest keys (no gate time: the newest rows, whenever written).
    SequentialKey(String),
}

impl Recent {
    /// How the gate finds the new rows: `--created-at`, else the catalog's
    /// creation-time column, else its sequential key; without a database
    /// and without `--created-at`, an error asking for it.
    pub fn choose(
        recipe: &str,
        option: Option<&str>,
        shape: Option<&TableShape>,
    ) -> Result<Recent> {
        if let Some(column) = option {
            if let Some(shape) = shape {
                let found = self::column(shape, "--created-at", column)?;
                if !found.type_name.starts_with("timestamp") {
                    return Err(Error::Usage(format!(
                        "--created-at {column}: {}.{column} is {}, not a timestamp; name the column the application sets to the time it inserts a row",
                        shape.name, found.type_name
                    )));
                }
            }
            return Ok(Recent::CreatedAt(column.to_string()));
        }
        let Some(shape) = shape else {
            return Err(Error::Usage(format!(
                "{recipe}: give --created-at COLUMN (a column stamped with the time a row is inserted) so the deploy gate's check can find the rows written since the gate opened; without a database orch cannot look for one"
            )));
        };
        if let Some(column) = shape.created_at() {
            return Ok(Recent::CreatedAt(column.name.clone()));
        }
        if let Some(column) = shape.sequential_key() {
            return Ok(Recent::SequentialKey(column.name.clone()));
        }
        Err(refuse(
            recipe,
            format!(
                "table {} has no column stamped with the insert time (a timestamp with a default such as now()) and no sequential one-column key, so a deploy gate's check cannot tell the rows the new version wrote",
                shape.name
            ),
            "give --created-at COLUMN naming the column the application sets to the time it inserts a row",
        ))
    }

    /// `SELECT <columns> FROM <table>` limited to the newest rows, as the
    /// subquery `recent` of a gate's check.
    pub fn rows(&self, table: &str, columns: &str) -> String {
        match self {
            Recent::CreatedAt(at) => format!(
                "(SELECT {columns} FROM {table}\n      WHERE {at} >= :gate_opened_at\n      ORDER BY {at} DESC LIMIT 20) AS recent",
                at = names::ident(at)
            ),
            Recent::SequentialKey(key) => format!(
                "(SELECT {columns} FROM {table}\n      ORDER BY {key} DESC LIMIT 20) AS recent",
                key = names::ident(key)
            ),
        }
    }

    /// What the check's rows are, for instructions.
    pub fn describe(&self) -> String {
        match self {
            Recent::CreatedAt(at) => {
                format!("the latest rows created since this gate opened (by {at})")
            }
            Recent::SequentialKey(key) => format!(
                "the 20 newest rows (highest {key}); wait until rows have been written since the deploy before confirming"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::testing::{col, table_with};

    #[test]
    fn a_gate_finds_new_rows_by_creation_time_else_by_a_sequential_key() {
        let stamped = table_with("t", vec![col("a", "timestamp without time zone")]);
        assert_eq!(
            Recent::choose("r", None, Some(&stamped)).unwrap(),
            Recent::CreatedAt("created_at".into())
        );
        assert_eq!(
            Recent::choose("r", Some("a"), Some(&stamped)).unwrap(),
            Recent::CreatedAt("a".into())
        );
        let err = Recent::choose("r", Some("id"), Some(&stamped)).unwrap_err();
        assert!(
            err.to_string().contains("t.id is bigint, not a timestamp"),
            "{err}"
        );
        let err = Recent::choose("r", Some("nope"), Some(&stamped)).unwrap_err();
        assert!(err.to_string().contains("--created-at nope"), "{err}");

        let mut keyed = stamped.clone();
        keyed.columns.retain(|c| c.name != "created_at");
        assert_eq!(
            Recent::choose("r", None, Some(&keyed)).unwrap(),
            Recent::SequentialKey("id".into())
        );
        let rows = Recent::SequentialKey("id".into()).rows("t", "a");
        assert_eq!(
            rows,
            "(SELECT a FROM t\n      ORDER BY id DESC LIMIT 20) AS recent"
        );

        let mut neither = keyed.clone();
        neither.columns[0].default = None; // a key not filled from a sequence
        let err = Recent::choose("r", None, Some(&neither)).unwrap_err();
        assert_eq!(err.code(), 4);
        assert!(err.to_string().contains("--created-at COLUMN"), "{err}");
        let err = Recent::choose("r", None, None).unwrap_err();
        assert_eq!(err.code(), 2);
    }
}
