//! What orch reads of the user's schema for its own checks (not the
//! backfill's table and key, which are in `backfill`).

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::lint::TableFacts;
use crate::store::Store;
use crate::store::backfill::quote_ident;

/// `a.b` -> `"a"."b"`: names as a migration wrote them (already folded to
/// lower case unless they were quoted there).
fn quoted(table: &str) -> String {
    table
        .split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// What writers must do about a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnRequirement {
    pub not_null: bool,
    pub has_default: bool,
}

impl ColumnRequirement {
    /// An insert that leaves the column out fails.
    pub fn must_be_written(self) -> bool {
        self.not_null && !self.has_default
    }
}

impl Store {
    /// NOT NULL and default of `table.column` (`table` may be qualified;
    /// unqualified names follow the search_path); None when there is no
    /// such column.
    pub async fn column_requirement(
        &self,
        table: &str,
        column: &str,
    ) -> Result<Option<ColumnRequirement>> {
        let row = self
            .client()
            .query_opt(
                "SELECT a.attnotnull, a.atthasdef
                 FROM pg_attribute a
                 WHERE a.attrelid = to_regclass($1) AND a.attname = $2
                   AND a.attnum > 0 AND NOT a.attisdropped",
                &[&quoted(table), &column],
            )
            .await
            .map_err(|e| Error::db(format!("cannot read column {table}.{column}"), e))?;
        Ok(row.map(|r| ColumnRequirement {
            not_null: r.get(0),
            has_default: r.get(1),
        }))
    }
}

/// An index that is not valid (a `CREATE INDEX CONCURRENTLY` that failed,
/// was cancelled, or is still building).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIndex {
    pub name: String,
    /// `"schema"."name"`, for the `DROP INDEX CONCURRENTLY` that fixes it.
    pub qualified: String,
}

impl Store {
    /// `table` (quoted, as `to_regclass` reads it) as `regclass` prints it:
    /// schema-qualified only when not on the search_path; None when there
    /// is no such table.
    pub async fn relation_name(&self, table: &str) -> Result<Option<String>> {
        let row = self
            .client()
            .query_one("SELECT to_regclass($1)::text", &[&table])
            .await
            .map_err(|e| Error::db(format!("cannot look up {table}"), e))?;
        Ok(row.get(0))
    }

    /// The INVALID indexes in the schema of `table` (quoted, as
    /// `to_regclass` reads it); None when there is no such table.
    pub async fn invalid_indexes(&self, table: &str) -> Result<Option<Vec<InvalidIndex>>> {
        let rows = self
            .client()
            .query(
                "SELECT c.relname::text, format('%I.%I', n.nspname, c.relname)
                 FROM pg_class t
                 JOIN pg_class c ON c.relnamespace = t.relnamespace
                 JOIN pg_index i ON i.indexrelid = c.oid
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE t.oid = to_regclass($1) AND NOT i.indisvalid
                 UNION ALL
                 SELECT NULL, NULL WHERE to_regclass($1) IS NULL
                 ORDER BY 1",
                &[&table],
            )
            .await
            .map_err(|e| Error::db(format!("cannot read the indexes beside {table}"), e))?;
        if rows
            .first()
            .is_some_and(|r| r.get::<_, Option<String>>(0).is_none())
        {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .map(|r| InvalidIndex {
                    name: r.get(0),
                    qualified: r.get(1),
                })
                .collect(),
        ))
    }
}

impl Store {
    /// What the lint asks of the tables a run touches (names as the
    /// migrations wrote them): each table's row estimate
    /// (`pg_class.reltuples`, None before its first ANALYZE) and its
    /// columns' types. Tables that do not exist are left out.
    pub async fn table_facts(&self, tables: &[String]) -> Result<HashMap<String, TableFacts>> {
        let quoted_names: Vec<String> = tables.iter().map(|t| quoted(t)).collect();
        let rows = self
            .client()
            .query(
                "SELECT t.i, c.reltuples::float8, a.attname::text, format_type(a.atttypid, a.atttypmod),
                        a.attnotnull OR EXISTS (
                            SELECT FROM pg_constraint k
                            WHERE k.conrelid = c.oid AND k.contype = 'c' AND k.convalidated
                              AND pg_get_constraintdef(k.oid) IN (
                                  format('CHECK ((%s IS NOT NULL))', quote_ident(a.attname)),
                                  format('CHECK (%s IS NOT NULL)', quote_ident(a.attname))))
                 FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)
                 JOIN pg_class c ON c.oid = to_regclass(t.name)
                 LEFT JOIN pg_attribute a
                   ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped",
                &[&quoted_names],
            )
            .await
            .map_err(|e| Error::db("cannot read the sizes of the tables the migrations touch", e))?;
        let mut facts: HashMap<String, TableFacts> = HashMap::new();
        for row in rows {
            let index: i64 = row.get(0);
            let Some(table) = usize::try_from(index - 1).ok().and_then(|i| tables.get(i)) else {
                continue;
            };
            let reltuples: f64 = row.get(1);
            let entry = facts.entry(table.clone()).or_insert_with(|| TableFacts {
                rows: (reltuples >= 0.0).then_some(reltuples as i64),
                columns: HashMap::new(),
                not_null: HashSet::new(),
            });
            if let (Some(column), Some(ty)) = (
                row.get::<_, Option<String>>(2),
                row.get::<_, Option<String>>(3),
            ) {
                if row.get::<_, Option<bool>>(4) == Some(true) {
                    entry.not_null.insert(column.clone());
                }
                entry.columns.insert(column, ty);
            }
        }
        Ok(facts)
    }
}
