//! Every lint rule in one place: its id, its severity, the lock it is about
//! and the safe recipe. `docs/lint.md` shows each with an example; a test
//! keeps the two lists the same.

use serde::Serialize;

/// How a finding weighs: an error stops `migrate up` and `advance` before
/// anything runs (unless allowed with `-- orch:allow RULE-ID: reason`) and
/// makes `orch check` fail; a warning is shown and lets them run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "&'static str")]
pub enum Rule {
    SyntaxError,
    CreateIndexNotConcurrently,
    DropIndexNotConcurrently,
    ReindexNotConcurrently,
    VolatileDefault,
    RequiredColumn,
    ColumnTypeRewrite,
    SetNotNullScan,
    ConstraintNotValid,
    ValidateInSameTransaction,
    UniqueWithoutIndex,
    DropColumn,
    DropTable,
    RenameColumn,
    RenameTable,
    RewriteTable,
    LockTable,
    WholeTableWrite,
    NeedsNoTransaction,
    NeedsTransaction,
    AllowComment,
}

impl From<Rule> for &'static str {
    fn from(rule: Rule) -> &'static str {
        rule.id()
    }
}

impl Rule {
    pub const ALL: [Rule; 21] = [
        Rule::SyntaxError,
        Rule::CreateIndexNotConcurrently,
        Rule::DropIndexNotConcurrently,
        Rule::ReindexNotConcurrently,
        Rule::VolatileDefault,
        Rule::RequiredColumn,
        Rule::ColumnTypeRewrite,
        Rule::SetNotNullScan,
        Rule::ConstraintNotValid,
        Rule::ValidateInSameTransaction,
        Rule::UniqueWithoutIndex,
        Rule::DropColumn,
        Rule::DropTable,
        Rule::RenameColumn,
        Rule::RenameTable,
        Rule::RewriteTable,
        Rule::LockTable,
        Rule::WholeTableWrite,
        Rule::NeedsNoTransaction,
        Rule::NeedsTransaction,
        Rule::AllowComment,
    ];

    /// The id findings and `-- orch:allow` comments name.
    pub fn id(self) -> &'static str {
        match self {
            Rule::SyntaxError => "syntax-error",
            Rule::CreateIndexNotConcurrently => "create-index-not-concurrently",
            Rule::DropIndexNotConcurrently => "drop-index-not-concurrently",
            Rule::ReindexNotConcurrently => "reindex-not-concurrently",
            Rule::VolatileDefault => "volatile-default",
            Rule::RequiredColumn => "required-column",
            Rule::ColumnTypeRewrite => "column-type-rewrite",
            Rule::SetNotNullScan => "set-not-null-scan",
            Rule::ConstraintNotValid => "constraint-not-valid",
            Rule::ValidateInSameTransaction => "validate-in-same-transaction",
            Rule::UniqueWithoutIndex => "unique-without-index",
            Rule::DropColumn => "drop-column",
            Rule::DropTable => "drop-table",
            Rule::RenameColumn => "rename-column",
            Rule::RenameTable => "rename-table",
            Rule::RewriteTable => "rewrite-table",
            Rule::LockTable => "lock-table",
            Rule::WholeTableWrite => "whole-table-write",
            Rule::NeedsNoTransaction => "needs-no-transaction",
            Rule::NeedsTransaction => "needs-transaction",
            Rule::AllowComment => "allow-comment",
        }
    }

    pub fn parse(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::DropIndexNotConcurrently => Severity::Warning,
            _ => Severity::Error,
        }
    }

    /// The lock the statement takes and for how long.
    pub fn lock(self) -> &'static str {
        match self {
            Rule::SyntaxError => {
                "none: PostgreSQL refuses the statement, and the migration fails where it stands"
            }
            Rule::CreateIndexNotConcurrently => {
                "SHARE on the table for the whole index build: reads go on, every INSERT, UPDATE and DELETE waits"
            }
            Rule::DropIndexNotConcurrently => {
                "ACCESS EXCLUSIVE on the table while the index is dropped (short, but every query on the table waits)"
            }
            Rule::ReindexNotConcurrently => {
                "SHARE on the table (writes wait) and ACCESS EXCLUSIVE on the index (queries using it wait) for the whole rebuild"
            }
            Rule::VolatileDefault => {
                "ACCESS EXCLUSIVE on the table while every row is rewritten: reads and writes wait"
            }
            Rule::RequiredColumn => {
                "ACCESS EXCLUSIVE, short; the harm is to the running application, whose INSERTs fail"
            }
            Rule::ColumnTypeRewrite => {
                "ACCESS EXCLUSIVE on the table for the whole rewrite (and index rebuilds): reads and writes wait"
            }
            Rule::SetNotNullScan => {
                "ACCESS EXCLUSIVE on the table while every row is scanned: reads and writes wait"
            }
            Rule::ConstraintNotValid => {
                "CHECK: ACCESS EXCLUSIVE on the table while every row is checked; FOREIGN KEY: SHARE ROW EXCLUSIVE on both tables while every row is checked (writes wait)"
            }
            Rule::ValidateInSameTransaction => {
                "the ACCESS EXCLUSIVE lock the ADD CONSTRAINT took is still held while VALIDATE scans the table"
            }
            Rule::UniqueWithoutIndex => {
                "ACCESS EXCLUSIVE on the table while the unique index is built: reads and writes wait"
            }
            Rule::DropColumn | Rule::DropTable | Rule::RenameColumn | Rule::RenameTable => {
                "ACCESS EXCLUSIVE, short; the harm is to the application version still running, whose queries fail"
            }
            Rule::RewriteTable => {
                "ACCESS EXCLUSIVE on the table for the whole rewrite: reads and writes wait"
            }
            Rule::LockTable => "the mode named, held until the migration's transaction ends",
            Rule::WholeTableWrite => {
                "a row lock on every row until the migration commits (the application's writes to any row wait), and one long transaction"
            }
            Rule::NeedsNoTransaction => {
                "none: PostgreSQL refuses it inside a transaction, so orch refuses the section before it runs"
            }
            Rule::NeedsTransaction => {
                "none: outside a transaction the statement fails or does nothing"
            }
            Rule::AllowComment => "none",
        }
    }

    /// The safe way, in a line or two.
    pub fn recipe(self) -> &'static str {
        match self {
            Rule::SyntaxError => {
                "fix the statement; `orch check` parses every section without a database"
            }
            Rule::CreateIndexNotConcurrently => {
                "CREATE INDEX CONCURRENTLY, alone in a `transaction:false` section (make it idempotent: IF NOT EXISTS)"
            }
            Rule::DropIndexNotConcurrently => {
                "DROP INDEX CONCURRENTLY, alone in a `transaction:false` section (IF EXISTS)"
            }
            Rule::ReindexNotConcurrently => {
                "REINDEX ... CONCURRENTLY (PostgreSQL 12+), in a `transaction:false` section"
            }
            Rule::VolatileDefault => {
                "add the column without the default (or with a constant one), then SET DEFAULT for new rows and fill existing rows in a plan's backfill phase"
            }
            Rule::RequiredColumn => {
                "add the column nullable (or with a constant DEFAULT), backfill it, then SET NOT NULL once the application writes it (see set-not-null-scan)"
            }
            Rule::ColumnTypeRewrite => {
                "add a column of the new type, write both from the application, backfill it, switch reads, drop the old one in a contract phase; safe without a rewrite: varchar(n) to varchar(m >= n), varchar or text, numeric(p,s) to numeric(q >= p,s) or numeric, varbit(n) to varbit(m >= n)"
            }
            Rule::SetNotNullScan => {
                "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c in a later migration; then SET NOT NULL (no scan) and DROP CONSTRAINT c"
            }
            Rule::ConstraintNotValid => {
                "ADD CONSTRAINT ... NOT VALID (instant), then ALTER TABLE ... VALIDATE CONSTRAINT in a later migration (it lets reads and writes go on)"
            }
            Rule::ValidateInSameTransaction => {
                "move VALIDATE CONSTRAINT to a later migration, so it runs under SHARE UPDATE EXCLUSIVE only"
            }
            Rule::UniqueWithoutIndex => {
                "CREATE UNIQUE INDEX CONCURRENTLY in a `transaction:false` migration, then ADD CONSTRAINT ... UNIQUE (or PRIMARY KEY) USING INDEX"
            }
            Rule::DropColumn => {
                "first deploy an application version that no longer reads or writes it, then drop it in a plan's contract phase (with a guard)"
            }
            Rule::DropTable => {
                "first deploy an application version that no longer uses it, then drop it in a plan's contract phase (with a guard)"
            }
            Rule::RenameColumn => {
                "add the new column, write both, backfill, switch reads (an expand/contract plan), and drop the old one in the contract phase"
            }
            Rule::RenameTable => {
                "create the new table (or a view under the new name), move the application over, then drop or rename the old one in a plan's contract phase"
            }
            Rule::RewriteTable => {
                "pg_repack or pg_squeeze rebuild a table without holding ACCESS EXCLUSIVE; plain VACUUM takes no such lock"
            }
            Rule::LockTable => {
                "leave the locking to the statements themselves (orch's lock_timeout bounds their waits); split the migration instead of holding a lock across it"
            }
            Rule::WholeTableWrite => {
                "move the update to a plan's backfill phase: short batches by key range, each its own transaction"
            }
            Rule::NeedsNoTransaction => {
                "put the statement alone in a section marked `transaction:false` (dbmate: `-- migrate:up transaction:false`)"
            }
            Rule::NeedsTransaction => {
                "move the statement to a transactional section (orch wraps it in one transaction and sets the timeouts itself)"
            }
            Rule::AllowComment => {
                "write `-- orch:allow RULE-ID: why it is safe here`, naming a rule of docs/lint.md, on the line(s) before the statement"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_documented() {
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/lint.md")).unwrap();
        for rule in Rule::ALL {
            assert_eq!(Rule::parse(rule.id()), Some(rule));
            assert!(
                docs.contains(&format!("### `{}` ({})", rule.id(), rule.severity().name())),
                "docs/lint.md lacks a section for {} with its severity",
                rule.id()
            );
        }
        let documented = docs.matches("\n### `").count();
        assert_eq!(
            documented,
            Rule::ALL.len(),
            "docs/lint.md lists other rules"
        );
    }
}
