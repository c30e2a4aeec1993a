//! Statements a transaction-wrapped section cannot hold: transaction control
//! (orch opens the transaction itself) and statements PostgreSQL refuses
//! inside a transaction, which belong in a `transaction:false` section.

use crate::error::Result;
use crate::migration::file::{Section, invalid};
use crate::migration::source::Format;
use crate::sql_text::{self, leading_words};

/// Why a statement cannot run inside the transaction orch wraps a section in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// `BEGIN`, `COMMIT`, ...: orch opens and closes the transaction itself.
    TransactionControl,
    /// A statement PostgreSQL refuses inside any transaction block
    /// (`CREATE INDEX CONCURRENTLY`, `VACUUM`, ...).
    OutsideTransactionOnly,
    /// `REINDEX ... CONCURRENTLY`, which PostgreSQL refuses inside one too.
    ReindexConcurrently,
}

impl Unfit {
    /// True for statements that must run outside any transaction.
    pub fn needs_no_transaction(self) -> bool {
        matches!(
            self,
            Unfit::OutsideTransactionOnly | Unfit::ReindexConcurrently
        )
    }

    /// The problem, with the fix in the words of the folder's `format`.
    fn problem(self, format: Format) -> String {
        match self {
            Unfit::TransactionControl => {
                "transaction control statements are not allowed: orch wraps each migration in one transaction itself".to_string()
            }
            Unfit::OutsideTransactionOnly => format!(
                "this statement cannot run inside a transaction; {}",
                format.no_transaction_hint()
            ),
            Unfit::ReindexConcurrently => format!(
                "REINDEX CONCURRENTLY cannot run inside a transaction; {}",
                format.no_transaction_hint()
            ),
        }
    }
}

/// Why `statement` (one statement, as `sql_text::split_statements` yields
/// it) cannot run inside orch's transaction; None when it can.
pub fn unfit_for_transaction(statement: &str) -> Option<Unfit> {
    let words = leading_words(statement, 4);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["begin", ..]
        | ["start", "transaction", ..]
        | ["commit", ..]
        | ["rollback", ..]
        | ["end", ..]
        | ["abort", ..] => Some(Unfit::TransactionControl),
        ["create", "index", "concurrently", ..]
        | ["create", "unique", "index", "concurrently"]
        | ["drop", "index", "concurrently", ..]
        | ["vacuum", ..] => Some(Unfit::OutsideTransactionOnly),
        ["reindex", rest @ ..] if rest.contains(&"concurrently") => {
            Some(Unfit::ReindexConcurrently)
        }
        _ => None,
    }
}

/// Refuse, at its file:line and with the fix, the first statement of a
/// transactional section that cannot run in a transaction.
pub fn check_transactional_statements(section: &Section, format: Format) -> Result<()> {
    if !section.transactional {
        return Ok(());
    }
    for statement in sql_text::split_statements(&section.sql) {
        if let Some(unfit) = unfit_for_transaction(statement.text) {
            let line = section.file_line(statement.offset);
            return Err(invalid(&section.path, line, unfit.problem(format)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(sql: &str, transactional: bool) -> Section {
        Section {
            path: "migrations/1_a.up.sql".into(),
            sql: sql.to_string(),
            marker_line: 0,
            transactional,
            exact_columns: true,
        }
    }

    #[test]
    fn refuses_what_cannot_run_in_a_transaction_at_its_line() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "SELECT 1;\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
                Some("migrations/1_a.up.sql:2: this statement cannot run inside a transaction"),
            ),
            (
                "create unique index concurrently\n",
                Some(":1: this statement cannot run"),
            ),
            (
                "DROP INDEX CONCURRENTLY i;\n",
                Some("cannot run inside a transaction"),
            ),
            ("VACUUM t;\n", Some("cannot run inside a transaction")),
            (
                "REINDEX TABLE CONCURRENTLY t;\n",
                Some("REINDEX CONCURRENTLY cannot run"),
            ),
            ("start transaction;\n", Some("transaction control")),
            (
                "\n\nEND;\n",
                Some("migrations/1_a.up.sql:3: transaction control"),
            ),
            ("CREATE INDEX i ON t (a);\n", None),
            ("SELECT 'begin';\n", None),
        ];
        for (sql, expected) in cases {
            let got = check_transactional_statements(&section(sql, true), Format::Dbmate);
            match expected {
                None => assert!(got.is_ok(), "{sql:?}: {got:?}"),
                Some(expected) => {
                    let err = got.unwrap_err().to_string();
                    assert!(
                        err.contains(expected),
                        "{sql:?}: {err:?} should contain {expected:?}"
                    );
                }
            }
            assert!(check_transactional_statements(&section(sql, false), Format::Dbmate).is_ok());
        }
    }

    #[test]
    fn the_fix_is_in_the_folders_own_words() {
        let sql = "CREATE INDEX CONCURRENTLY i ON t (a);\n";
        for (format, fix) in [
            (Format::Dbmate, "-- migrate:up transaction:false"),
            (Format::Diesel, "run_in_transaction = false"),
            (Format::Goose, "-- +goose NO TRANSACTION"),
            (Format::Sqlx, "-- no-transaction"),
        ] {
            let err = check_transactional_statements(&section(sql, true), format)
                .unwrap_err()
                .to_string();
            assert!(err.contains(fix), "{format}: {err}");
        }
    }
}
