//! What a recipe may know of a table: its columns, keys, constraints,
//! indexes, the foreign keys that reference it and the views that read it,
//! as `store::recipe_catalog` reads them from the catalog. Plain data, so a
//! recipe's generation is tested without a database.

use std::collections::HashMap;

/// One table as the catalog describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableShape {
    /// The table as `regclass` prints it (qualified when not on the
    /// search_path).
    pub name: String,
    /// `pg_class.reltuples`; None before the first ANALYZE.
    pub rows_estimate: Option<i64>,
    pub columns: Vec<ColumnShape>,
    /// Every index, valid or not.
    pub indexes: Vec<IndexShape>,
    /// CHECK, UNIQUE, PRIMARY KEY, FOREIGN KEY and EXCLUDE constraints of
    /// the table.
    pub constraints: Vec<ConstraintShape>,
    /// Foreign keys of other tables (or this one) that reference this table.
    pub referenced_by: Vec<ConstraintShape>,
    /// Views and materialized views that read this table, with the columns
    /// they read.
    pub views: Vec<ViewShape>,
    /// A partitioned table (`relkind = 'p'`): every recipe refuses it.
    pub partitioned: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnShape {
    pub name: String,
    /// `format_type`: `integer`, `character varying(300)`, ...
    pub type_name: String,
    pub not_null: bool,
    /// The default expression, as `pg_get_expr` prints it.
    pub default: Option<String>,
    /// An identity column (`GENERATED ... AS IDENTITY`).
    pub identity: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexShape {
    pub name: String,
    /// The key columns, in order; an expression is `None`.
    pub columns: Vec<Option<String>>,
    pub unique: bool,
    pub primary: bool,
    pub valid: bool,
    /// A partial index (`WHERE ...`).
    pub partial: bool,
    /// `pg_get_indexdef`.
    pub definition: String,
}

/// What kind of constraint, as `pg_constraint.contype` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    Check,
    Unique,
    PrimaryKey,
    ForeignKey,
    Exclude,
    Other,
}

impl ConstraintKind {
    pub fn from_contype(contype: char) -> ConstraintKind {
        match contype {
            'c' => ConstraintKind::Check,
            'u' => ConstraintKind::Unique,
            'p' => ConstraintKind::PrimaryKey,
            'f' => ConstraintKind::ForeignKey,
            'x' => ConstraintKind::Exclude,
            _ => ConstraintKind::Other,
        }
    }

    /// How messages name it.
    pub fn label(self) -> &'static str {
        match self {
            ConstraintKind::Check => "check constraint",
            ConstraintKind::Unique => "unique constraint",
            ConstraintKind::PrimaryKey => "primary key",
            ConstraintKind::ForeignKey => "foreign key",
            ConstraintKind::Exclude => "exclusion constraint",
            ConstraintKind::Other => "constraint",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConstraintShape {
    pub name: String,
    pub kind: ConstraintKind,
    /// The table the constraint is on (as `regclass` prints it).
    pub table: String,
    /// The columns it constrains, on `table`.
    pub columns: Vec<String>,
    /// For a foreign key: the referenced table and columns.
    pub references: Option<(String, Vec<String>)>,
    pub validated: bool,
    /// `pg_get_constraintdef`.
    pub definition: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ViewShape {
    pub name: String,
    pub columns: Vec<String>,
}

impl TableShape {
    pub fn column(&self, name: &str) -> Option<&ColumnShape> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The primary key's columns, else those of a valid, non-partial unique
    /// index over NOT NULL columns only: the key a backfill walks.
    pub fn key(&self) -> Option<Vec<String>> {
        let usable = |index: &&IndexShape| {
            index.unique
                && index.valid
                && !index.partial
                && index.columns.iter().all(|c| {
                    c.as_deref()
                        .and_then(|c| self.column(c))
                        .is_some_and(|c| c.not_null)
                })
        };
        let mut candidates: Vec<&IndexShape> = self.indexes.iter().filter(usable).collect();
        candidates.sort_by_key(|i| (!i.primary, i.columns.len(), i.name.clone()));
        candidates
            .first()
            .map(|i| i.columns.iter().flatten().cloned().collect())
    }

    /// A valid, non-partial unique index on exactly `columns` (in any
    /// order), or a unique or primary key constraint on them.
    pub fn unique_on(&self, columns: &[String]) -> Option<&IndexShape> {
        self.indexes.iter().find(|i| {
            i.unique
                && i.valid
                && !i.partial
                && i.columns.len() == columns.len()
                && columns
                    .iter()
                    .all(|c| i.columns.iter().any(|ic| ic.as_deref() == Some(c)))
        })
    }

    /// A column whose default stamps the time a row was inserted
    /// (`now()`, `CURRENT_TIMESTAMP`, ...), to find the rows written since a
    /// gate opened.
    pub fn created_at(&self) -> Option<&ColumnShape> {
        self.columns.iter().find(|c| {
            c.type_name.starts_with("timestamp")
                && c.default.as_deref().is_some_and(|d| {
                    let d = d.to_ascii_lowercase();
                    [
                        "now()",
                        "current_timestamp",
                        "clock_timestamp()",
                        "statement_timestamp()",
                        "transaction_timestamp()",
                    ]
                    .iter()
                    .any(|f| d.contains(f))
                })
        })
    }

    /// A one-column integer key filled from a sequence (serial, identity):
    /// its newest rows have its highest values.
    pub fn sequential_key(&self) -> Option<&ColumnShape> {
        let key = self.key()?;
        let [only] = key.as_slice() else {
            return None;
        };
        let column = self.column(only)?;
        let integer = ["integer", "bigint", "smallint"].contains(&column.type_name.as_str());
        let sequence = column.identity
            || column
                .default
                .as_deref()
                .is_some_and(|d| d.starts_with("nextval("));
        (integer && sequence).then_some(column)
    }
}

/// What a recipe asks of the rows themselves (not the catalog): counted
/// by the engine before generating, only for columns that exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// Rows where `column` IS NULL.
    Nulls { table: String, column: String },
    /// Groups of rows sharing the same non-NULL `columns`, and the rows in
    /// them beyond the first of each group.
    Duplicates { table: String, columns: Vec<String> },
    /// Rows whose non-NULL `column` matches no `target.target_column`.
    Orphans {
        table: String,
        column: String,
        target: String,
        target_column: String,
    },
}

/// What was read of the database: the shapes of the tables a recipe names
/// (by the name given on the command line; a table that does not exist is
/// absent), and the probes' counts.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: HashMap<String, TableShape>,
    pub counts: HashMap<Probe, ProbeCount>,
}

/// A probe's result: how many rows (groups for duplicates) and one example
/// value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeCount {
    pub rows: i64,
    pub example: Option<String>,
}
