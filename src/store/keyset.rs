//! The SQL of the keyset walk: finding a table's walkable key (unique,
//! NOT NULL, btree-indexed), splitting it into ranges, and the batch
//! statements (built from quoted identifiers and the plan's `set`/`where`
//! fragments, with every value bound) that walk one range in key order.

use std::time::Instant;

use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::backfill::{
    BatchDone, BatchError, BatchFailure, BatchLimits, BatchRange, BatchResult, CursorStatements,
    Table, quote_ident,
};

/// One key column and its SQL type (from `format_type`, so it is valid SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    pub name: String,
    pub sql_type: String,
}

/// A table and the unique, NOT NULL, btree-indexed key its backfill walks.
#[derive(Debug, Clone)]
pub struct TableKey {
    pub table: Table,
    pub columns: Vec<KeyColumn>,
}

impl TableKey {
    /// The key's columns, as recorded in `key_columns`.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

/// Unique btree indexes without predicate or expressions, with their columns
/// in index order and whether all are NOT NULL; the primary key first.
const KEY_CANDIDATES: &str = "
    SELECT i.indisprimary,
           array_agg(a.attname::text ORDER BY k.ord),
           array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord),
           bool_and(a.attnotnull)
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
    CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indisvalid
      AND i.indpred IS NULL AND i.indexprs IS NULL
    GROUP BY i.indexrelid, i.indisprimary
    ORDER BY i.indisprimary DESC, count(*), i.indexrelid";

/// The statements of one table's batches, prepared once per connection.
pub struct KeysetStatements {
    /// Each pair: [from the table's start, after a cursor].
    probe: [Statement; 2],
    tail: [Statement; 2],
    update: [Statement; 2],
    cursor: CursorStatements,
    key_len: usize,
}

/// Text of the batch statements for a key, `set` and `where`. Each comes
/// in two forms: from the start of the table, and after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSql {
    /// The key `$n` keys on (an index-only walk, no sort).
    pub probe: [String; 2],
    /// The range's last key and row count, for its final, short batch.
    pub tail: [String; 2],
    /// The update of the batch's key range.
    pub update: [String; 2],
}

/// The batch statements' text (pure, so its SQL is pinned by unit tests).
pub fn batch_sql(key: &TableKey, set: &str, condition: Option<&str>) -> BatchSql {
    let k = key.columns.len();
    let columns: Vec<String> = key.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let cols = columns.join(", ");
    let tuple = format!("({cols})");
    let params = |first: usize| -> String {
        let typed: Vec<String> = key
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("(${}::text)::{}", first + i, c.sql_type))
            .collect();
        format!("({})", typed.join(", "))
    };
    let as_text: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
    let as_text = as_text.join(", ");
    let descending: Vec<String> = columns.iter().map(|c| format!("{c} DESC")).collect();
    let descending = descending.join(", ");
    let table = &key.table.qualified;
    // (lower bound, upper bound) conditions for both forms; `$1..$k` is the
    // cursor (after form only), then the upper bound.
    let range = |after: bool, upper: &str| -> String {
        let upper = format!("{tuple} <= {upper}");
        if after {
            format!("{tuple} > {} AND {upper}", params(1))
        } else {
            upper
        }
    };
    let forms = [(false, params(1), k + 1), (true, params(k + 1), 2 * k + 1)];
    // Each fragment ends with a line break, so a `--` comment at its end
    // cannot swallow the rest of the statement.
    let condition = condition
        .map(|c| format!(" AND ({c}\n)"))
        .unwrap_or_default();
    BatchSql {
        probe: forms.clone().map(|(after, end, limit)| {
            format!(
                "SELECT ARRAY[{as_text}] FROM {table} WHERE {} ORDER BY {cols} OFFSET ${limit}::int8 - 1 LIMIT 1",
                range(after, &end)
            )
        }),
        tail: forms.clone().map(|(after, end, _)| {
            let range = range(after, &end);
            format!(
                "SELECT (SELECT ARRAY[{as_text}] FROM {table} WHERE {range} ORDER BY {descending} LIMIT 1),
                        (SELECT count(*) FROM {table} WHERE {range})"
            )
        }),
        update: forms.map(|(after, hi, _)| {
            format!("UPDATE {table} SET {set}\n WHERE {}{condition}", range(after, &hi))
        }),
    }
}

impl Store {
    /// Find `table` (`name` or `schema.name`) and the key a backfill walks:
    /// `declared` columns, or the primary key, or the narrowest unique
    /// NOT NULL key. Explains why when there is none.
    pub async fn backfill_key(&self, table: &str, declared: Option<&[String]>) -> Result<TableKey> {
        let found = self.backfill_table(table).await?;
        let oid = i64::from(found.oid);
        let rows = self
            .client()
            .query(KEY_CANDIDATES, &[&oid])
            .await
            .map_err(|e| Error::db(format!("cannot read the keys of {table}"), e))?;
        let candidates: Vec<(bool, Vec<String>, Vec<String>, bool)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let chosen = match declared {
            Some(columns) => candidates.iter().find(|c| c.1 == columns && c.3),
            None => candidates.iter().find(|c| c.3),
        };
        let Some((_, names, types, _)) = chosen else {
            let why = match declared {
                Some(columns) => format!(
                    "the declared key ({}) is not the column list of a unique btree index whose columns are all NOT NULL",
                    columns.join(", ")
                ),
                None if candidates.is_empty() => {
                    "it has no primary key and no unique index".to_string()
                }
                None => "its unique indexes include nullable columns".to_string(),
            };
            return Err(Error::failed(format!(
                "table {table} has no usable key for a backfill: {why}. A backfill walks the table in key order by ranges, so it needs a primary key, or `key:` naming the columns of a unique index that are NOT NULL"
            )));
        };
        Ok(TableKey {
            table: found,
            columns: names
                .iter()
                .zip(types)
                .map(|(n, t)| KeyColumn {
                    name: n.clone(),
                    sql_type: t.clone(),
                })
                .collect(),
        })
    }

    /// The key of the row at `offset` in key order (0 = first), or the last
    /// key when `last` is set; None when there is no such row.
    pub async fn key_at(
        &self,
        key: &TableKey,
        offset: i64,
        last: bool,
    ) -> Result<Option<Vec<String>>> {
        let columns: Vec<String> = key.columns.iter().map(|c| quote_ident(&c.name)).collect();
        let order: Vec<String> = columns
            .iter()
            .map(|c| if last { format!("{c} DESC") } else { c.clone() })
            .collect();
        let as_text: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
        let sql = format!(
            "SELECT ARRAY[{}] FROM {} ORDER BY {} OFFSET $1 LIMIT 1",
            as_text.join(", "),
            key.table.qualified,
            order.join(", ")
        );
        let row = self
            .client()
            .query_opt(&sql, &[&offset])
            .await
            .map_err(|e| Error::db(format!("cannot read keys of {}", key.table.display), e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Prepare a table's keyset batches on this connection.
    pub async fn prepare_keyset(
        &self,
        key: &TableKey,
        set: &str,
        condition: Option<&str>,
    ) -> Result<KeysetStatements> {
        let sql = batch_sql(key, set, condition);
        let [probe_first, probe_next] = sql.probe;
        let [tail_first, tail_next] = sql.tail;
        let [update_first, update_next] = sql.update;
        Ok(KeysetStatements {
            probe: [
                self.prepare_backfill(&probe_first).await?,
                self.prepare_backfill(&probe_next).await?,
            ],
            tail: [
                self.prepare_backfill(&tail_first).await?,
                self.prepare_backfill(&tail_next).await?,
            ],
            update: [
                self.prepare_backfill(&update_first).await?,
                self.prepare_backfill(&update_next).await?,
            ],
            cursor: self.prepare_cursor().await?,
            key_len: key.columns.len(),
        })
    }

    /// One batch in one transaction: find the batch's last key (at most
    /// `size` keys after the cursor), update the rows in that range, and
    /// move the cursor, all committed together.
    pub async fn run_keyset_batch(
        &self,
        statements: &KeysetStatements,
        range: &BatchRange<'_>,
        size: i64,
        limits: BatchLimits,
    ) -> BatchResult {
        let started = Instant::now();
        let client = self.client();
        let mut batch_end: Option<Vec<String>> = None;
        let result: std::result::Result<BatchDone, BatchError> = async {
            let after = self.begin_batch(&statements.cursor, range, limits).await?;
            let form = usize::from(after.is_some());
            let mut bounds: Vec<&(dyn ToSql + Sync)> = Vec::new();
            if let Some(after) = &after {
                bounds.extend(after.iter().map(|v| v as &(dyn ToSql + Sync)));
            }
            bounds.extend(range.end.iter().map(|v| v as &(dyn ToSql + Sync)));
            let mut probe_params = bounds.clone();
            probe_params.push(&size);
            let (last_key, scanned, range_done): (Option<Vec<String>>, i64, bool) = match client
                .query_opt(&statements.probe[form], &probe_params)
                .await?
            {
                Some(row) => (Some(row.get(0)), size, false),
                // Fewer than `size` keys left: the range's last batch.
                None => {
                    let row = client.query_one(&statements.tail[form], &bounds).await?;
                    (row.get(0), row.get(1), true)
                }
            };
            batch_end.clone_from(&last_key);
            let mut updated = 0;
            if let Some(hi) = &last_key {
                debug_assert_eq!(hi.len(), statements.key_len);
                let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
                if let Some(after) = &after {
                    params.extend(after.iter().map(|v| v as &(dyn ToSql + Sync)));
                }
                params.extend(hi.iter().map(|v| v as &(dyn ToSql + Sync)));
                updated = client.execute(&statements.update[form], &params).await?;
            }
            let done = BatchDone {
                last: last_key,
                walked: scanned,
                rows_scanned: scanned,
                rows_updated: updated,
                range_done,
            };
            self.commit_batch(&statements.cursor, range, &done, started)
                .await?;
            Ok(done)
        }
        .await;
        match result {
            Ok(done) => Ok(done),
            Err(BatchError::Db(e)) => Err(self.abandon_batch(&e, batch_end).await),
            Err(BatchError::LockLost(fence)) => Err(self.abandon_fenced_batch(&fence).await),
            Err(BatchError::Bookkeeping(message)) => {
                self.rollback().await;
                Err(BatchFailure {
                    diagnostic: crate::error::PgDiagnostic {
                        sqlstate: "XX000".to_string(),
                        message,
                        ..Default::default()
                    },
                    last: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(columns: &[(&str, &str)]) -> TableKey {
        TableKey {
            table: Table {
                oid: 1,
                qualified: "\"public\".\"posts\"".into(),
                display: "public.posts".into(),
            },
            columns: columns
                .iter()
                .map(|(n, t)| KeyColumn {
                    name: n.to_string(),
                    sql_type: t.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn single_column_batches() {
        let sql = batch_sql(
            &key(&[("id", "integer")]),
            "loc = point(lng, lat)",
            Some("loc IS NULL"),
        );
        assert_eq!(
            sql.probe[0],
            "SELECT ARRAY[\"id\"::text] FROM \"public\".\"posts\" WHERE (\"id\") <= (($1::text)::integer) ORDER BY \"id\" OFFSET $2::int8 - 1 LIMIT 1"
        );
        assert_eq!(
            sql.probe[1],
            "SELECT ARRAY[\"id\"::text] FROM \"public\".\"posts\" WHERE (\"id\") > (($1::text)::integer) AND (\"id\") <= (($2::text)::integer) ORDER BY \"id\" OFFSET $3::int8 - 1 LIMIT 1"
        );
        assert!(
            sql.tail[1].contains("ORDER BY \"id\" DESC LIMIT 1"),
            "{}",
            sql.tail[1]
        );
        assert!(sql.tail[1].contains("(SELECT count(*) FROM \"public\".\"posts\" WHERE (\"id\") > (($1::text)::integer) AND (\"id\") <= (($2::text)::integer))"), "{}", sql.tail[1]);
        assert_eq!(
            sql.update[0],
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat)\n WHERE (\"id\") <= (($1::text)::integer) AND (loc IS NULL\n)"
        );
        assert_eq!(
            sql.update[1],
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat)\n WHERE (\"id\") > (($1::text)::integer) AND (\"id\") <= (($2::text)::integer) AND (loc IS NULL\n)"
        );
    }

    #[test]
    fn composite_keys_compare_as_rows() {
        let sql = batch_sql(&key(&[("tenant", "text"), ("n", "bigint")]), "x = 1", None);
        let range = "(\"tenant\", \"n\") > (($1::text)::text, ($2::text)::bigint) AND (\"tenant\", \"n\") <= (($3::text)::text, ($4::text)::bigint)";
        assert!(sql.probe[1].contains(range), "{}", sql.probe[1]);
        assert!(
            sql.probe[1].ends_with("ORDER BY \"tenant\", \"n\" OFFSET $5::int8 - 1 LIMIT 1"),
            "{}",
            sql.probe[1]
        );
        assert!(
            sql.tail[1].contains("ORDER BY \"tenant\" DESC, \"n\" DESC LIMIT 1"),
            "{}",
            sql.tail[1]
        );
        assert!(sql.update[1].ends_with(range), "{}", sql.update[1]);
    }
}
