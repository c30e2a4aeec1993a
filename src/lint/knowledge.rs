//! What orch knows that a linter of one file does not: the role of the
//! phase a migration runs in, the tables this run creates (empty, so safe
//! to index or constrain), what the folder's earlier migrations did
//! (column types, which index is on which table, validated NOT NULL
//! checks), and, when it has a database, the catalog's row estimates and
//! column types.

use std::collections::{HashMap, HashSet};

use crate::lint::model::{ActionKind, ConstraintKind, Name, Parsed, StatementKind};

/// The part a migration plays, which decides what it may remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A migration outside any plan: `orch migrate up` runs it while the
    /// current application version runs, so it is held to an expand
    /// phase's rules, and removals belong in a plan's contract phase.
    Plain,
    /// A plan's expand phase: the running application must not notice.
    Expand,
    /// A plan's contract phase, behind its guard: removals belong here.
    Contract,
    /// A down section (`migrate down`, `redo`, a plan's rollback): it
    /// removes what its up section added, after the application that used
    /// it was rolled back, so removals are its purpose; what holds a lock
    /// too long is as dangerous as anywhere. The up section `redo` runs
    /// again after its down is in this role too: it puts back the schema
    /// the running application already had.
    Revert,
}

/// What the database's catalog says of one table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableFacts {
    /// `pg_class.reltuples`; None before the table was first analyzed.
    pub rows: Option<i64>,
    /// Column name -> `format_type` of its type.
    pub columns: HashMap<String, String>,
    /// Columns that are NOT NULL already, or have a validated
    /// `CHECK (column IS NOT NULL)`: SET NOT NULL scans nothing.
    pub not_null: HashSet<String>,
}

/// What orch read from the database for the tables a run touches, by the
/// name as the migration wrote it. Empty offline.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    tables: HashMap<String, TableFacts>,
}

impl Catalog {
    pub fn new(tables: HashMap<String, TableFacts>) -> Catalog {
        Catalog { tables }
    }

    pub fn table(&self, table: &Name) -> Option<&TableFacts> {
        self.tables.get(&table.to_string())
    }
}

/// Tables are keyed by their last name part: offline, the schema a
/// migration meant is not known, and folders rarely repeat a table name
/// across schemas.
type TableKey = String;

fn key(table: &Name) -> TableKey {
    table.name.clone()
}

/// What the migrations read so far did, in folder order.
#[derive(Debug, Clone, Default)]
pub(crate) struct History {
    /// (table, column) -> type as written.
    column_types: HashMap<(TableKey, String), String>,
    /// index name -> its table.
    index_tables: HashMap<String, Name>,
    /// CHECK (column IS NOT NULL) constraints added NOT VALID, by name.
    not_valid_checks: HashMap<String, (TableKey, String)>,
    /// Columns with a validated CHECK (column IS NOT NULL): SET NOT NULL
    /// needs no scan (PostgreSQL 12+).
    validated_not_null: HashSet<(TableKey, String)>,
    /// Tables created in the current run.
    new_tables: HashSet<TableKey>,
}

impl History {
    pub fn new_run(&mut self) {
        self.new_tables.clear();
    }

    pub fn is_new(&self, table: &Name) -> bool {
        self.new_tables.contains(&key(table))
    }

    pub fn index_table(&self, index: &Name) -> Option<&Name> {
        self.index_tables.get(&index.name)
    }

    pub fn column_type(&self, table: &Name, column: &str) -> Option<&str> {
        self.column_types
            .get(&(key(table), column.to_string()))
            .map(String::as_str)
    }

    pub fn has_validated_not_null(&self, table: &Name, column: &str) -> bool {
        self.validated_not_null
            .contains(&(key(table), column.to_string()))
    }

    /// Learn what statement `index` of `parsed` does; `in_run`: it runs now,
    /// so the tables it creates are new (empty) for what follows.
    pub fn learn(&mut self, parsed: &Parsed, index: usize, in_run: bool) {
        match &parsed.statements[index].kind {
            StatementKind::CreateTable { table, columns } => {
                for (column, ty) in columns {
                    self.column_types
                        .insert((key(table), column.clone()), ty.clone());
                }
                if in_run {
                    self.new_tables.insert(key(table));
                }
            }
            StatementKind::CreateIndex {
                table,
                name: Some(name),
                ..
            } => {
                self.index_tables.insert(name.name.clone(), table.clone());
            }
            StatementKind::AlterTable { table, actions } => {
                for action in actions {
                    self.learn_action(table, &action.kind);
                }
            }
            _ => {}
        }
    }

    fn learn_action(&mut self, table: &Name, action: &ActionKind) {
        let t = key(table);
        match action {
            ActionKind::AddColumn(add) => {
                self.column_types
                    .insert((t, add.column.clone()), add.ty.clone());
            }
            ActionKind::SetType { column, ty, .. } => {
                self.column_types.insert((t, column.clone()), ty.clone());
            }
            ActionKind::RenameColumn { from, to } => {
                if let Some(ty) = self.column_types.remove(&(t.clone(), from.clone())) {
                    self.column_types.insert((t.clone(), to.clone()), ty);
                }
                if self.validated_not_null.remove(&(t.clone(), from.clone())) {
                    self.validated_not_null.insert((t, to.clone()));
                }
            }
            ActionKind::DropColumn { column } => {
                self.column_types.remove(&(t.clone(), column.clone()));
                self.validated_not_null.remove(&(t, column.clone()));
            }
            ActionKind::RenameTable { to } => {
                let moved: Vec<_> = self
                    .column_types
                    .iter()
                    .filter(|((table, _), _)| *table == t)
                    .map(|((_, c), ty)| (c.clone(), ty.clone()))
                    .collect();
                for (column, ty) in moved {
                    self.column_types.insert((key(to), column), ty);
                }
                if self.new_tables.contains(&t) {
                    self.new_tables.insert(key(to));
                }
            }
            ActionKind::AddConstraint(add) => {
                if let ConstraintKind::Check {
                    not_null_of: Some(column),
                } = &add.kind
                {
                    if add.not_valid {
                        if let Some(name) = &add.name {
                            self.not_valid_checks
                                .insert(name.clone(), (t, column.clone()));
                        }
                    } else {
                        self.validated_not_null.insert((t, column.clone()));
                    }
                }
            }
            ActionKind::ValidateConstraint { name } => {
                if let Some(column) = self.not_valid_checks.get(name) {
                    self.validated_not_null.insert(column.clone());
                }
            }
            _ => {}
        }
    }
}

/// Whether changing a column from `from` to `to` (types as written or as
/// `format_type` shows them) keeps every stored value as it is, so
/// PostgreSQL neither rewrites the table nor rebuilds its indexes: a
/// varchar or varbit made longer or unbounded, varchar to text, a numeric
/// given more precision at the same scale, or unbounded.
pub fn is_safe_type_change(from: &str, to: &str) -> bool {
    let (from, to) = (TypeName::parse(from), TypeName::parse(to));
    match (from.base.as_str(), to.base.as_str()) {
        ("varchar", "varchar") | ("varbit", "varbit") => match (from.args.first(), to.args.first())
        {
            (_, None) => true,
            (Some(a), Some(b)) => b >= a,
            (None, Some(_)) => false,
        },
        ("varchar", "text") => true,
        // Only when the session's time zone is UTC: `utc_type_change`.
        ("timestamp", "timestamptz") | ("timestamptz", "timestamp") => false,
        ("text", "varchar") => to.args.is_empty(),
        ("numeric", "numeric") => match (from.args.as_slice(), to.args.as_slice()) {
            (_, []) => true,
            ([p1], [p2]) => p2 >= p1,
            ([p1], [p2, 0]) => p2 >= p1,
            ([p1, s1], [p2, s2]) => s1 == s2 && p2 >= p1,
            _ => false,
        },
        (a, b) => a == b && from.args == to.args,
    }
}

/// timestamp to timestamptz (or back) at the same precision: PostgreSQL 12+
/// rewrites nothing when the session's time zone is UTC.
pub fn is_utc_type_change(from: &str, to: &str) -> bool {
    let (from, to) = (TypeName::parse(from), TypeName::parse(to));
    matches!(
        (from.base.as_str(), to.base.as_str()),
        ("timestamp", "timestamptz") | ("timestamptz", "timestamp")
    ) && from.args == to.args
}

/// A type reduced to a canonical base name and its numeric modifiers.
struct TypeName {
    base: String,
    args: Vec<u32>,
}

impl TypeName {
    fn parse(text: &str) -> TypeName {
        let text = text.trim().to_ascii_lowercase();
        // `timestamp(3) with time zone`: the zone comes after the modifier.
        let (text, zoned) = match text.strip_suffix(" with time zone") {
            Some(t) => (t.to_string(), true),
            None => (
                text.strip_suffix(" without time zone")
                    .unwrap_or(&text)
                    .to_string(),
                false,
            ),
        };
        let (base, args) = match text.split_once('(') {
            Some((base, rest)) => (
                base.trim().to_string(),
                rest.trim_end_matches(')')
                    .split(',')
                    .filter_map(|a| a.trim().parse().ok())
                    .collect(),
            ),
            None => (text.clone(), Vec::new()),
        };
        let base = base.trim_start_matches("pg_catalog.").to_string();
        let base = match base.as_str() {
            "character varying" | "varchar" => "varchar",
            "decimal" | "numeric" => "numeric",
            "bit varying" | "varbit" => "varbit",
            "int" | "integer" | "int4" => "int4",
            "bigint" | "int8" => "int8",
            "timestamp" if zoned => "timestamptz",
            "time" if zoned => "timetz",
            "smallint" | "int2" => "int2",
            other => other,
        };
        TypeName {
            base: base.to_string(),
            args,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_type_changes_are_the_ones_that_keep_values_as_stored() {
        for (from, to, safe) in [
            ("varchar(100)", "varchar(200)", true),
            ("character varying(100)", "VARCHAR(255)", true),
            ("varchar(100)", "varchar", true),
            ("varchar(100)", "text", true),
            ("text", "varchar", true),
            ("numeric(10,2)", "numeric(12,2)", true),
            ("numeric(10,2)", "numeric", true),
            ("varchar(200)", "varchar(100)", false),
            ("text", "varchar(100)", false),
            ("numeric(10,2)", "numeric(12,3)", false),
            ("int", "bigint", false),
            ("integer", "int4", true),
            ("text", "jsonb", false),
            ("timestamp", "timestamptz", false),
        ] {
            assert_eq!(is_safe_type_change(from, to), safe, "{from} -> {to}");
        }
        for (from, to, utc) in [
            ("timestamp", "timestamptz", true),
            (
                "timestamp without time zone",
                "timestamp with time zone",
                true,
            ),
            ("timestamptz", "timestamp", true),
            ("timestamp(3) without time zone", "timestamptz(3)", true),
            ("timestamp(3) with time zone", "timestamp(3)", true),
            ("timestamp(6)", "timestamptz(3)", false),
            ("timestamp", "date", false),
            ("timestamptz", "timestamptz", false),
        ] {
            assert_eq!(is_utc_type_change(from, to), utc, "{from} -> {to}");
        }
    }
}
