//! Names in recipes: options are checked as identifiers (lowercase, as
//! PostgreSQL folds them), SQL quotes only what needs it, and the names of
//! constraints and indexes a recipe makes fit PostgreSQL's 63 bytes.

use crate::error::{Error, Result};

/// Words that cannot stand unquoted as a column or table name.
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// `value` of `option` as one identifier: lowercase letters, digits, `_`
/// and `$`, not starting with a digit, at most 63 bytes.
pub fn identifier(option: &str, value: &str) -> Result<String> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    if ok {
        Ok(value.to_string())
    } else {
        Err(Error::Usage(format!(
            "{option} {value:?}: expected a lowercase name (letters, digits, _; at most 63 bytes), as PostgreSQL stores an unquoted one"
        )))
    }
}

/// `value` of `option` as a table: `name` or `schema.name`.
pub fn table(option: &str, value: &str) -> Result<String> {
    let parts: Vec<&str> = value.split('.').collect();
    if parts.len() > 2 {
        return Err(Error::Usage(format!(
            "{option} {value:?}: expected a table as name or schema.name"
        )));
    }
    for part in &parts {
        identifier(option, part)?;
    }
    Ok(value.to_string())
}

/// `value` of `option` as a comma-separated list of columns (at least one,
/// no repeats).
pub fn columns(option: &str, value: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for part in value.split(',') {
        let column = identifier(option, part.trim())?;
        if out.contains(&column) {
            return Err(Error::Usage(format!(
                "{option} {value:?}: column {column} is named twice"
            )));
        }
        out.push(column);
    }
    Ok(out)
}

/// `value` of `option` as a column type (`bigint`, `numeric(10,2)`): not
/// blank, one type without `;` or a comment.
pub fn type_name(option: &str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() || value.contains(';') || value.contains("--") || value.contains("/*") {
        return Err(Error::Usage(format!(
            "{option} {value:?}: expected a column type such as bigint, text or numeric(10,2)"
        )));
    }
    Ok(value.to_string())
}

/// `value` of `option` as one SQL expression: not blank, no `;`.
pub fn expression(option: &str, value: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() || value.contains(';') {
        return Err(Error::Usage(format!(
            "{option} {value:?}: expected one SQL expression (no `;`)"
        )));
    }
    Ok(value.to_string())
}

/// An identifier as SQL: bare when PostgreSQL reads it back unchanged,
/// else double-quoted.
pub fn ident(name: &str) -> String {
    let bare = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !RESERVED.contains(&name);
    if bare {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A table (`name` or `schema.name`) as SQL.
pub fn table_sql(table: &str) -> String {
    table.split('.').map(ident).collect::<Vec<_>>().join(".")
}

/// Columns as a SQL list: `a, b`.
pub fn list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A string as a SQL literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The name of an object a recipe creates: the table's own name (without
/// its schema), the columns and a suffix joined by `_`, cut to fit 63
/// bytes as PostgreSQL would (keeping the suffix).
pub fn object_name(table: &str, columns: &[String], suffix: &str) -> String {
    let base = table.rsplit('.').next().unwrap_or(table);
    let mut stem = base.to_string();
    for column in columns {
        stem.push('_');
        stem.push_str(column);
    }
    let room = 63 - suffix.len() - 1;
    if stem.len() > room {
        stem.truncate(room);
    }
    format!("{stem}_{suffix}")
}

/// A phase id or migration suffix part from a name: `_` becomes `-` for
/// ids.
pub fn id_part(name: &str) -> String {
    name.replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked_and_quoted_only_when_needed() {
        assert_eq!(identifier("--column", "email").unwrap(), "email");
        for bad in ["Email", "1a", "", "a b", "a;drop"] {
            let err = identifier("--column", bad).unwrap_err().to_string();
            assert!(err.contains("--column"), "{err}");
        }
        assert_eq!(ident("email"), "email");
        assert_eq!(ident("user"), "\"user\"");
        assert_eq!(table_sql("app.order"), "app.\"order\"");
        assert_eq!(table("--table", "a.b.c").unwrap_err().code(), 2);
        assert_eq!(
            columns("--columns", "a, b").unwrap(),
            ["a".to_string(), "b".to_string()]
        );
        assert!(columns("--columns", "a,a").is_err());
    }

    #[test]
    fn object_names_fit_postgres() {
        assert_eq!(
            object_name("app.users", &["email".into()], "key"),
            "users_email_key"
        );
        let long = object_name(&"t".repeat(70), &["c".into()], "not_null");
        assert_eq!(long.len(), 63);
        assert!(long.ends_with("_not_null"));
    }
}
