//! The SQL of the backfill: finding a table's walkable key, the batch
//! statements (built from quoted identifiers and the plan's `set`/`where`
//! fragments, with every value bound), and the per-worker cursor rows in
//! `orch.backfill_workers`, written in the same transaction as each batch.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use crate::error::{Error, PgDiagnostic, Result};
use crate::store::Store;

/// One key column and its SQL type (from `format_type`, so it is valid SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    pub name: String,
    pub sql_type: String,
}

/// A table and the unique, NOT NULL, btree-indexed key its backfill walks.
#[derive(Debug, Clone)]
pub struct TableKey {
    pub oid: u32,
    /// `"schema"."table"`.
    pub qualified: String,
    /// `schema.table` for people.
    pub display: String,
    pub columns: Vec<KeyColumn>,
}

impl TableKey {
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

/// Quote an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const FIND_TABLE: &str = "
    SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = $2 AND n.nspname = coalesce($1, current_schema())";

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

/// A worker's row of `orch.backfill_workers`.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub worker: i32,
    pub key_columns: Vec<String>,
    pub range_start: Option<Vec<String>>,
    pub range_end: Vec<String>,
    pub cursor: Option<Vec<String>>,
    pub rows_updated: i64,
    pub rows_scanned: i64,
    pub batches_done: i64,
    pub batch_ms_total: i64,
    pub batch_ms_max: i32,
    pub rows_estimate: i64,
    pub estimate_source: String,
    pub table_bytes_before: i64,
    pub total_bytes_before: i64,
    pub done: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Sizes of a table: heap only, and with indexes and TOAST.
#[derive(Debug, Clone, Copy)]
pub struct TableSize {
    pub table_bytes: i64,
    pub total_bytes: i64,
    /// `pg_class.reltuples`; negative or zero when never analyzed.
    pub reltuples: f64,
}

/// The statements of one table's batches, prepared once per connection.
pub struct BatchStatements {
    /// Each pair: [from the table's start, after a cursor].
    probe: [Statement; 2],
    tail: [Statement; 2],
    update: [Statement; 2],
    cursor_lock: Statement,
    cursor: Statement,
    key_len: usize,
}

/// A batch that PostgreSQL refused.
#[derive(Debug)]
pub struct BatchFailure {
    pub diagnostic: PgDiagnostic,
    /// The batch's last key, when the failure came after it was found.
    pub last_key: Option<Vec<String>>,
}

impl BatchFailure {
    pub fn sqlstate(&self) -> &str {
        &self.diagnostic.sqlstate
    }
}

/// What one committed batch did.
#[derive(Debug, Clone)]
pub struct BatchDone {
    /// The last key of the batch (the new cursor); None when the range was empty.
    pub last_key: Option<Vec<String>>,
    pub rows_scanned: i64,
    pub rows_updated: u64,
    /// True when the worker's range is exhausted.
    pub range_done: bool,
}

/// Where a batch starts and may go, and its bookkeeping identity.
pub struct BatchRange<'a> {
    pub plan: &'a str,
    pub phase: &'a str,
    pub worker: i32,
    /// The worker's range start, exclusive (None: the table's first key);
    /// the batch starts after the recorded cursor when there is one.
    pub start: Option<&'a [String]>,
    /// Inclusive upper bound of the worker's range.
    pub end: &'a [String],
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
    let table = &key.qualified;
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
    let condition = condition.map(|c| format!(" AND ({c})")).unwrap_or_default();
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
            format!("UPDATE {table} SET {set} WHERE {}{condition}", range(after, &hi))
        }),
    }
}

/// The recorded cursor is the truth, read under a row lock: a batch that a
/// dead orch process sent before it died may still be committing; this waits
/// for it and continues after its cursor, so no range is done twice.
const CURSOR_LOCK: &str = "SELECT cursor FROM orch.backfill_workers WHERE plan = $1 AND phase = $2 AND worker = $3 FOR UPDATE";

const CURSOR_UPDATE: &str = "
    UPDATE orch.backfill_workers
    SET cursor = coalesce($4, cursor), rows_updated = rows_updated + $5, rows_scanned = rows_scanned + $6,
        batches_done = batches_done + 1, batch_ms_total = batch_ms_total + $7,
        batch_ms_max = greatest(batch_ms_max, $8), done = $9, updated_at = clock_timestamp()
    WHERE plan = $1 AND phase = $2 AND worker = $3";

fn diagnostic(e: &tokio_postgres::Error) -> PgDiagnostic {
    PgDiagnostic::from_driver(e).unwrap_or_else(|| PgDiagnostic {
        sqlstate: "08006".to_string(),
        message: format!("connection failure: {e}"),
        ..PgDiagnostic::default()
    })
}

impl Store {
    /// Find `table` (`name` or `schema.name`) and the key a backfill walks:
    /// `declared` columns, or the primary key, or the narrowest unique
    /// NOT NULL key. Explains why when there is none.
    pub async fn backfill_key(&self, table: &str, declared: Option<&[String]>) -> Result<TableKey> {
        let (schema, name) = match table.split_once('.') {
            Some((s, t)) => (Some(s.to_string()), t.to_string()),
            None => (None, table.to_string()),
        };
        let row = self
            .client()
            .query_opt(FIND_TABLE, &[&schema, &name])
            .await
            .map_err(|e| Error::db(format!("cannot look up table {table}"), e))?
            .ok_or_else(|| Error::failed(format!("table {table} does not exist")))?;
        let (oid, nspname, relname, relkind): (i64, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if relkind != "r" && relkind != "p" {
            return Err(Error::failed(format!(
                "{table} is not a table (relkind {relkind})"
            )));
        }
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
            oid: oid as u32,
            qualified: format!("{}.{}", quote_ident(&nspname), quote_ident(&relname)),
            display: format!("{nspname}.{relname}"),
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

    pub async fn table_size(&self, key: &TableKey) -> Result<TableSize> {
        let oid = i64::from(key.oid);
        let row = self
            .client()
            .query_one(
                "SELECT pg_relation_size(oid), pg_total_relation_size(oid), reltuples::float8 FROM pg_class WHERE oid = $1::int8::oid",
                &[&oid],
            )
            .await
            .map_err(|e| Error::db(format!("cannot read the size of {}", key.display), e))?;
        Ok(TableSize {
            table_bytes: row.get(0),
            total_bytes: row.get(1),
            reltuples: row.get(2),
        })
    }

    /// Exact row count (used when reltuples is unknown).
    pub async fn count_rows(&self, key: &TableKey) -> Result<i64> {
        let sql = format!("SELECT count(*) FROM {}", key.qualified);
        let row = self
            .client()
            .query_one(&sql, &[])
            .await
            .map_err(|e| Error::db(format!("cannot count {}", key.display), e))?;
        Ok(row.get(0))
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
            key.qualified,
            order.join(", ")
        );
        let row = self
            .client()
            .query_opt(&sql, &[&offset])
            .await
            .map_err(|e| Error::db(format!("cannot read keys of {}", key.display), e))?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn backfill_workers(&self, plan: &str, phase: &str) -> Result<Vec<WorkerRow>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        let rows = self
            .client()
            .query(
                "SELECT worker, key_columns, range_start, range_end, cursor, rows_updated, rows_scanned, batches_done,
                        batch_ms_total, batch_ms_max, rows_estimate, estimate_source, table_bytes_before,
                        total_bytes_before, done, started_at, updated_at
                 FROM orch.backfill_workers WHERE plan = $1 AND phase = $2 ORDER BY worker",
                &[&plan, &phase],
            )
            .await
            .map_err(|e| Error::db("cannot read backfill progress", e))?;
        Ok(rows
            .iter()
            .map(|r| WorkerRow {
                worker: r.get(0),
                key_columns: r.get(1),
                range_start: r.get(2),
                range_end: r.get(3),
                cursor: r.get(4),
                rows_updated: r.get(5),
                rows_scanned: r.get(6),
                batches_done: r.get(7),
                batch_ms_total: r.get(8),
                batch_ms_max: r.get(9),
                rows_estimate: r.get(10),
                estimate_source: r.get(11),
                table_bytes_before: r.get(12),
                total_bytes_before: r.get(13),
                done: r.get(14),
                started_at: r.get(15),
                updated_at: r.get(16),
            })
            .collect())
    }

    /// Record the workers' ranges when a backfill first starts.
    pub async fn create_backfill_workers(
        &self,
        plan: &str,
        phase: &str,
        workers: &[WorkerRow],
    ) -> Result<()> {
        let result = async {
            self.client().batch_execute("BEGIN").await?;
            for w in workers {
                let params: [&(dyn ToSql + Sync); 11] = [
                    &plan,
                    &phase,
                    &w.worker,
                    &w.key_columns,
                    &w.range_start,
                    &w.range_end,
                    &w.rows_estimate,
                    &w.estimate_source,
                    &w.table_bytes_before,
                    &w.total_bytes_before,
                    &w.done,
                ];
                self.client()
                    .execute(
                        "INSERT INTO orch.backfill_workers
                           (plan, phase, worker, key_columns, range_start, range_end, rows_estimate, estimate_source,
                            table_bytes_before, total_bytes_before, done)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                        &params,
                    )
                    .await?;
            }
            self.client().batch_execute("COMMIT").await
        }
        .await;
        if let Err(e) = result {
            self.rollback().await;
            return Err(Error::db("cannot record the backfill's ranges", e));
        }
        Ok(())
    }

    /// Prepare a table's batch statements on this connection.
    pub async fn prepare_batches(
        &self,
        key: &TableKey,
        set: &str,
        condition: Option<&str>,
    ) -> Result<BatchStatements> {
        let sql = batch_sql(key, set, condition);
        let prepare = |sql: String| async move {
            self.client().prepare(&sql).await.map_err(|e| {
                Error::db(
                    format!("the backfill's statement does not compile:\n  {sql}\n "),
                    e,
                )
            })
        };
        let [probe_first, probe_next] = sql.probe;
        let [tail_first, tail_next] = sql.tail;
        let [update_first, update_next] = sql.update;
        Ok(BatchStatements {
            probe: [prepare(probe_first).await?, prepare(probe_next).await?],
            tail: [prepare(tail_first).await?, prepare(tail_next).await?],
            update: [prepare(update_first).await?, prepare(update_next).await?],
            cursor_lock: prepare(CURSOR_LOCK.to_string()).await?,
            cursor: prepare(CURSOR_UPDATE.to_string()).await?,
            key_len: key.columns.len(),
        })
    }

    /// One batch in one transaction: find the batch's last key (at most
    /// `size` keys after the cursor), update the rows in that range, and
    /// move the cursor, all committed together.
    pub async fn run_batch(
        &self,
        statements: &BatchStatements,
        range: &BatchRange<'_>,
        size: i64,
        lock_timeout: Duration,
        statement_timeout: Duration,
    ) -> std::result::Result<BatchDone, BatchFailure> {
        let started = std::time::Instant::now();
        let begin = format!(
            "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; SET LOCAL synchronous_commit = off;",
            lock_timeout.as_millis(),
            statement_timeout.as_millis()
        );
        let client = self.client();
        let mut batch_end: Option<Vec<String>> = None;
        let result: std::result::Result<BatchDone, tokio_postgres::Error> = async {
            client.batch_execute(&begin).await?;
            let recorded: Option<Vec<String>> = client
                .query_one(
                    &statements.cursor_lock,
                    &[&range.plan, &range.phase, &range.worker],
                )
                .await?
                .get(0);
            let after = recorded.as_deref().or(range.start);
            let form = usize::from(after.is_some());
            let mut bounds: Vec<&(dyn ToSql + Sync)> = Vec::new();
            if let Some(after) = after {
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
                if let Some(after) = after {
                    params.extend(after.iter().map(|v| v as &(dyn ToSql + Sync)));
                }
                params.extend(hi.iter().map(|v| v as &(dyn ToSql + Sync)));
                updated = client.execute(&statements.update[form], &params).await?;
            }
            let elapsed_ms = started.elapsed().as_millis() as i64;
            let updated_i64 = updated as i64;
            let elapsed_i32 = elapsed_ms.min(i64::from(i32::MAX)) as i32;
            let params: [&(dyn ToSql + Sync); 9] = [
                &range.plan,
                &range.phase,
                &range.worker,
                &last_key,
                &updated_i64,
                &scanned,
                &elapsed_ms,
                &elapsed_i32,
                &range_done,
            ];
            client.execute(&statements.cursor, &params).await?;
            client.batch_execute("COMMIT").await?;
            Ok(BatchDone {
                last_key,
                rows_scanned: scanned,
                rows_updated: updated,
                range_done,
            })
        }
        .await;
        match result {
            Ok(done) => Ok(done),
            Err(e) => {
                self.rollback().await;
                Err(BatchFailure {
                    diagnostic: diagnostic(&e),
                    last_key: batch_end,
                })
            }
        }
    }

    /// VACUUM (not FULL) the table, outside any transaction.
    pub async fn vacuum(&self, key: &TableKey) -> Result<()> {
        let sql = format!("VACUUM {}", key.qualified);
        self.client()
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::db(format!("cannot vacuum {}", key.display), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(columns: &[(&str, &str)]) -> TableKey {
        TableKey {
            oid: 1,
            qualified: "\"public\".\"posts\"".into(),
            display: "public.posts".into(),
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
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat) WHERE (\"id\") <= (($1::text)::integer) AND (loc IS NULL)"
        );
        assert_eq!(
            sql.update[1],
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat) WHERE (\"id\") > (($1::text)::integer) AND (\"id\") <= (($2::text)::integer) AND (loc IS NULL)"
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

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
