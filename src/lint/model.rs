//! What a migration's statements do, as orch's rules need to know it: the
//! table each statement touches and the parts of it that take locks. The
//! squawk adapter (`lint/squawk.rs`) builds it from the parse tree, so the
//! rules never see squawk's types.

use std::fmt;

/// A table, index or constraint name as a migration wrote it: unquoted
/// parts folded to lower case, as PostgreSQL folds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    pub schema: Option<String>,
    pub name: String,
}

impl Name {
    pub fn new(schema: Option<&str>, name: &str) -> Name {
        Name {
            schema: schema.map(str::to_string),
            name: name.to_string(),
        }
    }

    /// `posts` or `app.posts` (`a.b.c` keeps its last two parts).
    pub fn parse(text: &str) -> Name {
        let mut parts: Vec<&str> = text.rsplitn(2, '.').collect();
        parts.reverse();
        match parts.as_slice() {
            [schema, name] => Name::new(Some(schema), name),
            _ => Name::new(None, text),
        }
    }

    /// The same object, leniently: an unqualified name matches a qualified
    /// one with the same last part (the search_path is not known offline).
    pub fn same_as(&self, other: &Name) -> bool {
        self.name == other.name
            && match (&self.schema, &other.schema) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One statement of a section. Offsets are bytes into the section's SQL.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// Where its first token is.
    pub offset: usize,
    /// Just past its last token.
    pub end: usize,
    pub kind: StatementKind,
}

/// What a statement does, for the kinds the rules look at.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    CreateTable {
        table: Name,
        /// Columns and their types as written.
        columns: Vec<(String, String)>,
    },
    CreateIndex {
        table: Name,
        name: Option<Name>,
        concurrently: bool,
    },
    DropIndex {
        indexes: Vec<Name>,
        concurrently: bool,
    },
    Reindex {
        target: ReindexTarget,
        concurrently: bool,
    },
    AlterTable {
        table: Name,
        actions: Vec<Action>,
    },
    DropTable {
        tables: Vec<Name>,
    },
    Vacuum {
        full: bool,
        tables: Vec<Name>,
    },
    Cluster {
        table: Option<Name>,
    },
    Lock {
        tables: Vec<Name>,
        /// As written, upper case; `ACCESS EXCLUSIVE` when none is.
        mode: String,
    },
    /// UPDATE or DELETE.
    Write {
        verb: &'static str,
        table: Name,
        /// No WHERE clause: every row of the table.
        whole_table: bool,
    },
    /// `SET [SESSION | LOCAL] TIME ZONE` / `SET timezone`: whether the zone
    /// is UTC (offset 0, no daylight saving), for which PostgreSQL 12+
    /// changes timestamp to timestamptz and back without a rewrite.
    SetTimeZone {
        utc: bool,
    },
    /// Anything else; the transaction rules still look at its words.
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReindexTarget {
    Table(Name),
    Index(Name),
    /// A schema, the database or the system catalogs.
    Wide(String),
}

/// One action of an ALTER TABLE.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub offset: usize,
    pub kind: ActionKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionKind {
    AddColumn(AddColumn),
    DropColumn {
        column: String,
    },
    RenameColumn {
        from: String,
        to: String,
    },
    RenameTable {
        to: Name,
    },
    SetType {
        column: String,
        /// The new type as written.
        ty: String,
        /// A `USING` expression: PostgreSQL computes every row again, a
        /// rewrite whatever the types.
        using: bool,
    },
    SetNotNull {
        column: String,
    },
    AddConstraint(AddConstraint),
    ValidateConstraint {
        name: String,
    },
    /// `SET TABLESPACE`: every page is copied under ACCESS EXCLUSIVE.
    SetTablespace,
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddColumn {
    pub column: String,
    pub ty: String,
    pub not_null: bool,
    pub has_default: bool,
    /// The default (or a stored generated expression) is volatile, so every
    /// existing row is rewritten. Where the default starts, if so.
    pub rewrite_at: Option<usize>,
    /// Constraints written on the column that take locks of their own
    /// (`UNIQUE`, `PRIMARY KEY`, `REFERENCES`, `CHECK`), with their offsets.
    pub constraints: Vec<(ConstraintKind, usize)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AddConstraint {
    pub name: Option<String>,
    pub kind: ConstraintKind,
    pub not_valid: bool,
    /// `UNIQUE USING INDEX` / `PRIMARY KEY USING INDEX`.
    pub using_index: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConstraintKind {
    /// `column` when the check is exactly `column IS NOT NULL`.
    Check {
        not_null_of: Option<String>,
    },
    ForeignKey,
    Unique,
    PrimaryKey,
    Exclude,
}

impl ConstraintKind {
    pub fn label(&self) -> &'static str {
        match self {
            ConstraintKind::Check { .. } => "CHECK",
            ConstraintKind::ForeignKey => "FOREIGN KEY",
            ConstraintKind::Unique => "UNIQUE",
            ConstraintKind::PrimaryKey => "PRIMARY KEY",
            ConstraintKind::Exclude => "EXCLUDE",
        }
    }
}

/// A syntax error, at a byte offset into the section's SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxProblem {
    pub offset: usize,
    pub message: String,
}

/// A section's statements and syntax errors.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub statements: Vec<Statement>,
    pub syntax: Vec<SyntaxProblem>,
}

impl Parsed {
    /// Every table a statement names (to ask the database about).
    pub fn tables(&self) -> Vec<Name> {
        let mut out = Vec::new();
        for statement in &self.statements {
            match &statement.kind {
                StatementKind::CreateIndex { table, .. }
                | StatementKind::AlterTable { table, .. }
                | StatementKind::Write { table, .. } => out.push(table.clone()),
                StatementKind::Reindex {
                    target: ReindexTarget::Table(table),
                    ..
                }
                | StatementKind::Cluster { table: Some(table) } => out.push(table.clone()),
                StatementKind::DropTable { tables }
                | StatementKind::Vacuum { tables, .. }
                | StatementKind::Lock { tables, .. } => out.extend(tables.iter().cloned()),
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_leniently_across_schemas() {
        let posts = Name::parse("posts");
        assert!(posts.same_as(&Name::parse("public.posts")));
        assert!(Name::parse("app.posts").same_as(&posts));
        assert!(!Name::parse("app.posts").same_as(&Name::parse("public.posts")));
        assert_eq!(Name::parse("app.posts").to_string(), "app.posts");
    }
}
