//! What migrations do to columns, read from their SQL: which columns an
//! `ALTER TABLE ... DROP COLUMN` removes, and whether a migration lets the
//! application stop writing a column (drops its NOT NULL, or gives it a
//! default). Only `ALTER TABLE` statements are read; anything else is left
//! alone.

use crate::sql_text::{split_statements, tokens};

/// A column of a table, as a migration names it (`table` may be qualified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRef {
    pub table: String,
    pub column: String,
}

impl ColumnRef {
    /// Whether `other` names the same column, comparing tables by their
    /// unqualified names when either side is unqualified.
    fn same(&self, table: &str, column: &str) -> bool {
        let short = |t: &str| t.rsplit('.').next().unwrap_or(t).to_string();
        self.column == column && (self.table == table || short(&self.table) == short(table))
    }
}

/// An `ALTER TABLE`'s table and its actions (split at top-level commas).
fn alter_table(statement: &str) -> Option<(String, Vec<Vec<String>>)> {
    let toks = tokens(statement);
    let mut rest = toks.strip_prefix(&["alter".to_string(), "table".to_string()])?;
    for skip in [&["if", "exists"][..], &["only"][..]] {
        if rest.len() >= skip.len() && rest.iter().zip(skip).all(|(a, b)| a == b) {
            rest = &rest[skip.len()..];
        }
    }
    let mut table = rest.first()?.clone();
    rest = &rest[1..];
    if rest.first().is_some_and(|t| t == ".") {
        table = format!("{table}.{}", rest.get(1)?);
        rest = &rest[2..];
    }
    let mut actions = vec![Vec::new()];
    let mut depth = 0i32;
    for tok in rest {
        match tok.as_str() {
            "(" => depth += 1,
            ")" => depth -= 1,
            "," if depth == 0 => {
                actions.push(Vec::new());
                continue;
            }
            _ => {}
        }
        actions.last_mut().expect("one at least").push(tok.clone());
    }
    Some((table, actions))
}

/// The columns `ALTER TABLE ... DROP [COLUMN] [IF EXISTS] name` removes.
pub fn dropped_columns(sql: &str) -> Vec<ColumnRef> {
    let mut dropped = Vec::new();
    for statement in split_statements(sql) {
        let Some((table, actions)) = alter_table(statement.text) else {
            continue;
        };
        for action in actions {
            let mut words = action.iter().map(String::as_str);
            if words.next() != Some("drop") {
                continue;
            }
            let mut next = words.next();
            if next == Some("constraint") {
                continue;
            }
            if next == Some("column") {
                next = words.next();
            }
            if next == Some("if") && words.next() == Some("exists") {
                next = words.next();
            }
            if let Some(column) = next {
                dropped.push(ColumnRef {
                    table: table.clone(),
                    column: column.to_string(),
                });
            }
        }
    }
    dropped
}

/// Whether `sql` lets writers leave `table.column` out: `ALTER [COLUMN] c
/// DROP NOT NULL` or `ALTER [COLUMN] c SET DEFAULT ...`.
pub fn relaxes(sql: &str, table: &str, column: &str) -> bool {
    split_statements(sql).iter().any(|statement| {
        let Some((altered, actions)) = alter_table(statement.text) else {
            return false;
        };
        let target = ColumnRef {
            table: altered,
            column: column.to_string(),
        };
        actions.iter().any(|action| {
            let words: Vec<&str> = action.iter().map(String::as_str).collect();
            let words = match words.as_slice() {
                ["alter", "column", rest @ ..] | ["alter", rest @ ..] => rest,
                _ => return false,
            };
            matches!(
                words,
                [c, "drop", "not", "null", ..] | [c, "set", "default", ..] if target.same(table, c)
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(table: &str, column: &str) -> ColumnRef {
        ColumnRef {
            table: table.into(),
            column: column.into(),
        }
    }

    #[test]
    fn drops_are_found_in_every_spelling() {
        let cases: &[(&str, Vec<ColumnRef>)] = &[
            (
                "ALTER TABLE posts DROP COLUMN lat, DROP COLUMN lng;",
                vec![col("posts", "lat"), col("posts", "lng")],
            ),
            (
                "alter table if exists only public.posts drop lat;",
                vec![col("public.posts", "lat")],
            ),
            (
                "ALTER TABLE users DROP COLUMN IF EXISTS name CASCADE",
                vec![col("users", "name")],
            ),
            ("ALTER TABLE t DROP CONSTRAINT c", vec![]),
            (
                "ALTER TABLE t ADD CHECK (a IN (1, 2)), DROP b",
                vec![col("t", "b")],
            ),
            ("CREATE TABLE t (a int); DROP TABLE u;", vec![]),
            (
                "-- drop the old one\nALTER TABLE \"Users\" DROP \"Name\";",
                vec![col("Users", "Name")],
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(&dropped_columns(sql), expected, "{sql}");
        }
    }

    #[test]
    fn relaxing_not_null_or_adding_a_default() {
        let cases = [
            ("ALTER TABLE users ALTER COLUMN name DROP NOT NULL;", true),
            ("ALTER TABLE public.users ALTER name SET DEFAULT '';", true),
            (
                "ALTER TABLE users ADD COLUMN full_name text, ALTER COLUMN name DROP NOT NULL",
                true,
            ),
            (
                "ALTER TABLE users ALTER COLUMN full_name DROP NOT NULL;",
                false,
            ),
            ("ALTER TABLE other ALTER COLUMN name DROP NOT NULL;", false),
            ("ALTER TABLE users ALTER COLUMN name SET NOT NULL;", false),
        ];
        for (sql, expected) in cases {
            assert_eq!(relaxes(sql, "users", "name"), expected, "{sql}");
        }
    }
}
