//! orch's rules: what each statement risks, given what orch knows (its
//! own runner's transaction and timeouts, the run's new tables, the
//! phase's role, the database's sizes). Pure: statements in, raw findings
//! (rule, byte offset, message) out.

use std::collections::HashSet;

use crate::lint::knowledge::{Catalog, History, Role, is_safe_type_change, is_utc_type_change};
use crate::lint::model::{
    ActionKind, ConstraintKind, Name, ReindexTarget, Statement, StatementKind,
};
use crate::lint::rules::Rule;
use crate::migration::transactional::{Unfit, unfit_for_transaction};
use crate::sql_text::leading_words;

/// A finding before it has a file and line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Raw {
    pub rule: Rule,
    pub offset: usize,
    pub message: String,
}

/// What one section's checks see.
pub(crate) struct Scope<'a> {
    pub role: Role,
    pub transactional: bool,
    pub history: &'a History,
    pub catalog: &'a Catalog,
    /// Constraints this section added NOT VALID, so far.
    pub not_valid_here: &'a HashSet<String>,
    /// An earlier statement of this section set the session's time zone to
    /// UTC.
    pub utc: bool,
}

impl Scope<'_> {
    /// `; posts has ~1,000,000 rows: this <what>`, when the database said.
    fn size(&self, table: &Name, what: &str) -> String {
        match self.catalog.table(table).and_then(|t| t.rows) {
            Some(rows) => format!("; {table} has ~{} rows: this {what}", thousands(rows)),
            None => String::new(),
        }
    }

    /// Why a removal does not belong here, or None in a contract phase.
    fn not_here(&self) -> Option<&'static str> {
        match self.role {
            Role::Contract | Role::Revert => None,
            Role::Expand => Some(
                "in an expand phase, while the application version still running may use it; removals belong in the plan's contract phase",
            ),
            Role::Plain => Some(
                "outside a plan, while the application version still running may use it; this belongs in a plan's contract phase, after a deploy that stops using it",
            ),
        }
    }
}

/// `1000000` -> `1,000,000`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The findings of one statement. `text` is its SQL.
pub(crate) fn check(statement: &Statement, text: &str, scope: &Scope) -> Vec<Raw> {
    let mut out = Vec::new();
    let at = statement.offset;
    let mut raw = |rule: Rule, offset: usize, message: String| {
        out.push(Raw {
            rule,
            offset,
            message,
        })
    };
    if let Some(problem) = transaction_problem(text, scope.transactional) {
        let rule = problem.0;
        raw(rule, at, problem.1);
        // Such a statement fails as it stands; its other risks are moot.
        return out;
    }
    let new = |table: &Name| scope.history.is_new(table);
    match &statement.kind {
        StatementKind::CreateIndex {
            table,
            concurrently: false,
            ..
        } if !new(table) => raw(
            Rule::CreateIndexNotConcurrently,
            at,
            format!(
                "CREATE INDEX on {table} without CONCURRENTLY blocks writes to {table} until the index is built{}",
                scope.size(table, "blocks writes for the whole build")
            ),
        ),
        StatementKind::DropIndex {
            indexes,
            concurrently: false,
        } => {
            let tables: Vec<Option<&Name>> = indexes
                .iter()
                .map(|i| scope.history.index_table(i))
                .collect();
            if !tables.iter().all(|t| t.is_some_and(new)) {
                let names: Vec<String> = indexes
                    .iter()
                    .zip(&tables)
                    .map(|(i, t)| match t {
                        Some(t) => format!("{i} (on {t})"),
                        None => i.to_string(),
                    })
                    .collect();
                raw(
                    Rule::DropIndexNotConcurrently,
                    at,
                    format!(
                        "DROP INDEX {} without CONCURRENTLY takes ACCESS EXCLUSIVE on its table",
                        names.join(", ")
                    ),
                )
            }
        }
        StatementKind::Reindex {
            target,
            concurrently: false,
        } => {
            let (what, table) = match target {
                ReindexTarget::Table(t) => (format!("table {t}"), Some(t)),
                ReindexTarget::Index(i) => (format!("index {i}"), scope.history.index_table(i)),
                ReindexTarget::Wide(w) => (w.to_lowercase(), None),
            };
            if !table.is_some_and(new) {
                let size = table
                    .map(|t| scope.size(t, "blocks writes for the whole rebuild"))
                    .unwrap_or_default();
                raw(
                    Rule::ReindexNotConcurrently,
                    at,
                    format!(
                        "REINDEX {what} without CONCURRENTLY blocks writes while it rebuilds{size}"
                    ),
                )
            }
        }
        StatementKind::AlterTable { table, actions } if !new(table) => {
            let mut not_valid_here = scope.not_valid_here.clone();
            for action in actions {
                alter_action(
                    table,
                    action.offset,
                    &action.kind,
                    scope,
                    &mut not_valid_here,
                    &mut raw,
                );
            }
        }
        StatementKind::DropTable { tables } => {
            if let Some(why) = scope.not_here() {
                for table in tables.iter().filter(|t| !new(t)) {
                    raw(Rule::DropTable, at, format!("DROP TABLE {table} {why}"));
                }
            }
        }
        StatementKind::Vacuum { full: true, tables }
            if tables.is_empty() || !tables.iter().all(new) =>
        {
            let names = if tables.is_empty() {
                "every table of the database".to_string()
            } else {
                tables
                    .iter()
                    .map(Name::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let size = tables
                .first()
                .map(|t| scope.size(t, "holds ACCESS EXCLUSIVE for the whole rewrite"))
                .unwrap_or_default();
            raw(
                Rule::RewriteTable,
                at,
                format!("VACUUM FULL rewrites {names} under ACCESS EXCLUSIVE{size}"),
            )
        }
        StatementKind::Cluster { table } if !table.as_ref().is_some_and(new) => {
            let (names, size) = match table {
                Some(t) => (
                    t.to_string(),
                    scope.size(t, "holds ACCESS EXCLUSIVE for the whole rewrite"),
                ),
                None => ("every clustered table".to_string(), String::new()),
            };
            raw(
                Rule::RewriteTable,
                at,
                format!("CLUSTER rewrites {names} under ACCESS EXCLUSIVE{size}"),
            )
        }
        StatementKind::Lock { tables, mode } if !tables.iter().all(new) => {
            let names: Vec<String> = tables.iter().map(Name::to_string).collect();
            raw(
                Rule::LockTable,
                at,
                format!(
                    "LOCK TABLE {} IN {mode} MODE holds that lock until the migration commits, whatever runs after it",
                    names.join(", ")
                ),
            )
        }
        StatementKind::Write {
            verb,
            table,
            whole_table: true,
        } if !new(table) => raw(
            Rule::WholeTableWrite,
            at,
            format!(
                "{verb} of every row of {table} in a migration locks each row until the migration commits{}",
                scope.size(table, "is one long transaction")
            ),
        ),
        _ => {}
    }
    out
}

fn alter_action(
    table: &Name,
    at: usize,
    action: &ActionKind,
    scope: &Scope,
    not_valid_here: &mut HashSet<String>,
    raw: &mut impl FnMut(Rule, usize, String),
) {
    match action {
        ActionKind::AddColumn(add) => {
            let column = format!("{table}.{}", add.column);
            if let Some(default_at) = add.rewrite_at {
                raw(
                    Rule::VolatileDefault,
                    default_at,
                    format!(
                        "ADD COLUMN {column} with a volatile default (or a stored generated column) rewrites every row of {table}{}",
                        scope.size(table, "holds ACCESS EXCLUSIVE for the whole rewrite")
                    ),
                );
            }
            if add.not_null && !add.has_default {
                raw(
                    Rule::RequiredColumn,
                    at,
                    format!(
                        "ADD COLUMN {column} NOT NULL without a default: it fails if {table} has rows, and the application version still running does not write it, so its INSERTs would fail"
                    ),
                );
            }
            for (kind, offset) in &add.constraints {
                match kind {
                    ConstraintKind::Unique | ConstraintKind::PrimaryKey => raw(
                        Rule::UniqueWithoutIndex,
                        *offset,
                        format!(
                            "ADD COLUMN {column} {} builds its unique index under ACCESS EXCLUSIVE{}",
                            kind.label(),
                            scope.size(table, "blocks reads and writes for the whole build")
                        ),
                    ),
                    ConstraintKind::ForeignKey | ConstraintKind::Check { .. } => raw(
                        Rule::ConstraintNotValid,
                        *offset,
                        format!(
                            "ADD COLUMN {column} with a {} constraint checks every row of {table} while holding its lock; add the column, then the constraint NOT VALID",
                            kind.label()
                        ),
                    ),
                    ConstraintKind::Exclude => {}
                }
            }
        }
        ActionKind::DropColumn { column } => {
            if let Some(why) = scope.not_here() {
                raw(
                    Rule::DropColumn,
                    at,
                    format!("DROP COLUMN {table}.{column} {why}"),
                );
            }
        }
        ActionKind::RenameColumn { from, to } => {
            if let Some(why) = scope.not_here() {
                raw(
                    Rule::RenameColumn,
                    at,
                    format!("RENAME COLUMN {table}.{from} TO {to} {why}"),
                );
            }
        }
        ActionKind::RenameTable { to } => {
            if let Some(why) = scope.not_here() {
                raw(
                    Rule::RenameTable,
                    at,
                    format!("RENAME TABLE {table} TO {to} {why}"),
                );
            }
        }
        ActionKind::SetType { column, ty, using } => {
            // The folder's history first: the catalog shows the column as
            // it is now, after every applied migration (`check --online`
            // lints those too); it tells the type of columns the folder
            // never created.
            let from = scope.history.column_type(table, column).or_else(|| {
                scope
                    .catalog
                    .table(table)
                    .and_then(|t| t.columns.get(column))
                    .map(String::as_str)
            });
            match from {
                Some(from)
                    if !using
                        && (is_safe_type_change(from, ty)
                            || (scope.utc && is_utc_type_change(from, ty))) => {}
                Some(from) => raw(
                    Rule::ColumnTypeRewrite,
                    at,
                    format!(
                        "ALTER COLUMN {table}.{column} TYPE {ty} (from {from}{}) rewrites {table} and rebuilds its indexes; the running application may also read the old type{}",
                        if *using { ", with USING" } else { "" },
                        scope.size(table, "holds ACCESS EXCLUSIVE for the whole rewrite")
                    ),
                ),
                None => raw(
                    Rule::ColumnTypeRewrite,
                    at,
                    format!(
                        "ALTER COLUMN {table}.{column} TYPE {ty}: orch cannot tell {column}'s current type (not in the migrations before it; `orch check --online` reads it from the database), so it may rewrite {table} under ACCESS EXCLUSIVE"
                    ),
                ),
            }
        }
        ActionKind::SetNotNull { column } => {
            let known_not_null = scope
                .catalog
                .table(table)
                .is_some_and(|t| t.not_null.contains(column));
            if !known_not_null && !scope.history.has_validated_not_null(table, column) {
                raw(
                    Rule::SetNotNullScan,
                    at,
                    format!(
                        "SET NOT NULL on {table}.{column} without a validated CHECK ({column} IS NOT NULL) scans every row under ACCESS EXCLUSIVE{}",
                        scope.size(table, "blocks reads and writes for the whole scan")
                    ),
                );
            }
        }
        ActionKind::AddConstraint(add) => {
            let name = add
                .name
                .as_ref()
                .map(|n| format!(" {n}"))
                .unwrap_or_default();
            match &add.kind {
                ConstraintKind::Check { .. } | ConstraintKind::ForeignKey if !add.not_valid => raw(
                    Rule::ConstraintNotValid,
                    at,
                    format!(
                        "ADD CONSTRAINT{name} {} on {table} without NOT VALID checks every row while holding its lock{}",
                        add.kind.label(),
                        scope.size(table, "blocks writes for the whole check")
                    ),
                ),
                ConstraintKind::Unique | ConstraintKind::PrimaryKey if !add.using_index => raw(
                    Rule::UniqueWithoutIndex,
                    at,
                    format!(
                        "ADD CONSTRAINT{name} {} on {table} without USING INDEX builds its index under ACCESS EXCLUSIVE{}",
                        add.kind.label(),
                        scope.size(table, "blocks reads and writes for the whole build")
                    ),
                ),
                ConstraintKind::Exclude => raw(
                    Rule::UniqueWithoutIndex,
                    at,
                    format!(
                        "ADD CONSTRAINT{name} EXCLUDE on {table} builds its index under ACCESS EXCLUSIVE (an exclusion constraint cannot use an existing index){}",
                        scope.size(table, "blocks reads and writes for the whole build")
                    ),
                ),
                _ => {}
            }
            if add.not_valid
                && let Some(name) = &add.name
            {
                not_valid_here.insert(name.clone());
            }
        }
        ActionKind::ValidateConstraint { name } => {
            if scope.transactional && not_valid_here.contains(name) {
                raw(
                    Rule::ValidateInSameTransaction,
                    at,
                    format!(
                        "VALIDATE CONSTRAINT {name} in the migration that added it NOT VALID scans {table} while the ADD's ACCESS EXCLUSIVE lock is still held"
                    ),
                );
            }
        }
        ActionKind::SetTablespace => raw(
            Rule::RewriteTable,
            at,
            format!(
                "SET TABLESPACE copies every page of {table} (and its indexes only with ALTER INDEX) under ACCESS EXCLUSIVE{}",
                scope.size(table, "holds ACCESS EXCLUSIVE for the whole copy")
            ),
        ),
        ActionKind::Other => {}
    }
}

/// A statement that fails, or does nothing useful, in the kind of section
/// it is in: the rule and the message.
fn transaction_problem(text: &str, transactional: bool) -> Option<(Rule, String)> {
    let words = leading_words(text, 3);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let first = words.first().copied().unwrap_or_default().to_uppercase();
    if transactional {
        return match unfit_for_transaction(text)? {
            Unfit::TransactionControl => Some((
                Rule::NeedsNoTransaction,
                format!(
                    "{first} in a transactional section: orch opens and commits the section's transaction itself"
                ),
            )),
            Unfit::OutsideTransactionOnly | Unfit::ReindexConcurrently => Some((
                Rule::NeedsNoTransaction,
                format!(
                    "{} cannot run inside a transaction, and orch runs this section in one",
                    words.join(" ").to_uppercase()
                ),
            )),
        };
    }
    let needs = match words.as_slice() {
        ["begin", ..]
        | ["start", "transaction", ..]
        | ["commit", ..]
        | ["end", ..]
        | ["abort", ..]
        | ["rollback", ..]
        | ["savepoint", ..]
        | ["release", ..]
        | ["prepare", "transaction", ..] => {
            "orch runs each statement of such a section on its own, so a transaction opened here would outlive the statement that opened it"
        }
        ["set", "local", ..] | ["set", "transaction", ..] | ["set", "constraints", ..] => {
            "it lasts only until the end of the current transaction, and there each statement is its own"
        }
        ["lock", ..] => "LOCK TABLE works only inside a transaction block",
        ["declare", ..] => "a cursor without HOLD only lives inside a transaction",
        _ => return None,
    };
    Some((
        Rule::NeedsTransaction,
        format!(
            "{} ... in a `transaction:false` section: {needs}",
            words.join(" ").to_uppercase()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
    }
}
