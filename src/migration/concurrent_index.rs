//! Recognising `CREATE [UNIQUE] INDEX CONCURRENTLY`: such a statement that
//! fails (or is killed) leaves an INVALID index behind, which a later
//! `IF NOT EXISTS` would silently skip. The section runner checks the index
//! before and after the statement (`store::catalog`).

use crate::sql_text::tokens;

/// What a `CREATE INDEX CONCURRENTLY` statement builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrentIndex {
    /// The index's name as PostgreSQL stores it; None when left to PostgreSQL.
    pub name: Option<String>,
    pub if_not_exists: bool,
    /// The table, quoted part by part (`"public"."t"`), for `to_regclass`.
    pub table: String,
}

/// The index a `CREATE [UNIQUE] INDEX CONCURRENTLY` statement builds; None
/// for any other statement.
pub fn concurrent_index(statement: &str) -> Option<ConcurrentIndex> {
    let words = tokens(statement);
    let mut rest = words.iter().map(String::as_str).peekable();
    if rest.next()? != "create" {
        return None;
    }
    if rest.peek() == Some(&"unique") {
        rest.next();
    }
    if rest.next()? != "index" || rest.next()? != "concurrently" {
        return None;
    }
    let mut if_not_exists = false;
    if rest.peek() == Some(&"if") {
        rest.next();
        if rest.next()? != "not" || rest.next()? != "exists" {
            return None;
        }
        if_not_exists = true;
    }
    let mut name = None;
    let mut next = rest.next()?;
    if next != "on" {
        name = Some(next.to_string());
        next = rest.next()?;
        if next != "on" {
            return None;
        }
    }
    if rest.peek() == Some(&"only") {
        rest.next();
    }
    let mut parts: Vec<String> = Vec::new();
    for token in rest {
        if token == "(" || token == "using" {
            break;
        }
        parts.extend(
            token
                .split('.')
                .filter(|p| !p.is_empty())
                .map(|p| format!("\"{}\"", p.replace('"', "\"\""))),
        );
    }
    if parts.is_empty() {
        return None;
    }
    Some(ConcurrentIndex {
        name,
        if_not_exists,
        table: parts.join("."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: Option<&str>, if_not_exists: bool, table: &str) -> Option<ConcurrentIndex> {
        Some(ConcurrentIndex {
            name: name.map(str::to_string),
            if_not_exists,
            table: table.to_string(),
        })
    }

    #[test]
    fn recognises_each_form() {
        let cases = [
            (
                "CREATE INDEX CONCURRENTLY t_a ON t (a)",
                index(Some("t_a"), false, "\"t\""),
            ),
            (
                "create unique index concurrently if not exists \"T_A\" on only public.t(a);",
                index(Some("T_A"), true, "\"public\".\"t\""),
            ),
            (
                "CREATE INDEX CONCURRENTLY ON \"Big\" USING gin (doc)",
                index(None, false, "\"Big\""),
            ),
            ("CREATE INDEX t_a ON t (a)", None),
            ("DROP INDEX CONCURRENTLY t_a", None),
            ("REINDEX INDEX CONCURRENTLY t_a", None),
        ];
        for (sql, expected) in cases {
            assert_eq!(concurrent_index(sql), expected, "{sql}");
        }
    }
}
