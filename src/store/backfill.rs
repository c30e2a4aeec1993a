//! The SQL every backfill walk shares: finding the table, its size and row
//! count, VACUUM, and the per-worker cursor rows of `orch.backfill_workers`
//! (ranges and cursors as `text[]`), locked and moved in each batch's own
//! transaction. A walk's own statements live in their own file (`keyset`).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use crate::error::{Error, PgDiagnostic, Result};
use crate::store::Store;
use crate::store::locks::Fence;

/// The key under which `orch backfill PLAN PHASE` (a re-run of a finished
/// backfill) keeps its cursor rows in `orch.backfill_workers`, beside the
/// phase's own (`phase`): the first run's figures stay as they were for
/// `orch status`. Phase ids cannot contain `@`, so the keys never clash.
pub fn rerun_key(phase: &str) -> String {
    format!("{phase}@rerun")
}

/// Quote an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The table a backfill walks.
#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    /// `"schema"."table"`.
    pub qualified: String,
    /// `schema.table` for people.
    pub display: String,
}

/// What the backfill's VACUUM writes, the kernel is asked to write out to
/// disk every this much (`backend_flush_after`, off by default for a
/// session). VACUUM writes each page it cleans, and those pages are done
/// with; left in the kernel's cache, hundreds of MB of them were written
/// all at once by the next checkpoint's fsync, and every write of the
/// server (the batches' and the application's) waited behind it. Measured
/// in docs/benchmarks.md ("third pass"); the batches themselves keep the
/// server's setting, as flushing theirs cost more than it saved.
pub const VACUUM_FLUSH_AFTER: &str = "256kB";

/// The relation a name means, as the backfill's UPDATE would resolve it
/// (an unqualified name follows the search_path).
const FIND_TABLE: &str = "
    SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = to_regclass($1)";

/// A worker's row of `orch.backfill_workers`. What the `text[]` columns
/// (`range_start`, `range_end`, `cursor`) hold is the walk's business.
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
    /// Why the worker waits before its next batch, while it does.
    pub waiting: Option<String>,
}

/// Sizes of a table: heap only, and with indexes and TOAST.
#[derive(Debug, Clone, Copy)]
pub struct TableSize {
    pub table_bytes: i64,
    pub total_bytes: i64,
    /// `pg_class.reltuples`; negative or zero when never analyzed.
    pub reltuples: f64,
}

/// Where a batch starts and may go, and its bookkeeping identity.
pub struct BatchRange<'a> {
    pub plan: &'a str,
    pub phase: &'a str,
    pub worker: i32,
    /// The worker's range start, exclusive (None: the table's start); the
    /// batch starts after the recorded cursor when there is one.
    pub start: Option<&'a [String]>,
    /// Upper bound of the worker's range (inclusive, for the keyset walk).
    pub end: &'a [String],
    /// What the range's `text[]` values are (the row's `key_columns`).
    pub key_columns: &'a [String],
}

/// The timeouts of each batch's transaction.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Row locks held by the application.
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
    /// `off` unless the plan says otherwise: the batch and its cursor
    /// commit together, so a commit a server crash loses is redone.
    pub synchronous_commit: &'static str,
}

/// What one committed batch did.
#[derive(Debug, Clone)]
pub struct BatchDone {
    /// The batch's end (the new cursor); None when the range was empty.
    pub last: Option<Vec<String>>,
    /// Steps of the walk this batch took (keys, for the keyset walk): what
    /// the batch size counts and the sizer learns from.
    pub walked: i64,
    pub rows_scanned: i64,
    pub rows_updated: u64,
    /// True when the worker's range is exhausted.
    pub range_done: bool,
    /// The key walk's range made room in ahead of the cursor (recorded as
    /// `ahead`); None for every other walk.
    pub ahead: Option<Vec<String>>,
}

/// A batch that PostgreSQL refused.
#[derive(Debug)]
pub struct BatchFailure {
    pub diagnostic: PgDiagnostic,
    /// The batch's end, when the failure came after it was found.
    pub last: Option<Vec<String>>,
}

impl BatchFailure {
    pub fn sqlstate(&self) -> &str {
        &self.diagnostic.sqlstate
    }
}

/// The SQLSTATE-like code of a batch refused because its process lost its
/// plan's lock (never sent by PostgreSQL: classes starting with O are free).
pub const LOCK_LOST: &str = "OR001";

/// Why a batch's transaction stopped.
pub(crate) enum BatchError {
    Db(tokio_postgres::Error),
    LockLost(Fence),
    /// A bound or cursor the walk cannot read.
    Bookkeeping(String),
}

impl From<tokio_postgres::Error> for BatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        BatchError::Db(e)
    }
}

/// The outcome of one batch.
pub type BatchResult = std::result::Result<BatchDone, BatchFailure>;

/// The recorded cursor is the truth, read under a row lock: a batch that a
/// dead orch process sent before it died may still be committing; this waits
/// for it and continues after its cursor, so no range is done twice.
const CURSOR_LOCK: &str = "SELECT cursor, ahead FROM orch.backfill_workers WHERE plan = $1 AND phase = $2 AND worker = $3 FOR UPDATE";

const CURSOR_UPDATE: &str = "
    UPDATE orch.backfill_workers
    SET cursor = coalesce($4, cursor), rows_updated = rows_updated + $5, rows_scanned = rows_scanned + $6,
        batches_done = batches_done + 1, batch_ms_total = batch_ms_total + $7,
        batch_ms_max = greatest(batch_ms_max, $8), done = $9, ahead = $10, updated_at = clock_timestamp()
    WHERE plan = $1 AND phase = $2 AND worker = $3";

/// The cursor row's statements, prepared once per worker connection.
pub struct CursorStatements {
    lock: Statement,
    update: Statement,
}

fn diagnostic(e: &tokio_postgres::Error) -> PgDiagnostic {
    PgDiagnostic::from_driver(e).unwrap_or_else(|| PgDiagnostic {
        sqlstate: "08006".to_string(),
        message: format!("connection failure: {e}"),
        ..PgDiagnostic::default()
    })
}

impl Store {
    /// Find `table` (`name` or `schema.name`), which must be a table.
    pub async fn backfill_table(&self, table: &str) -> Result<Table> {
        let quoted: Vec<String> = table.split('.').map(quote_ident).collect();
        let row = self
            .client()
            .query_opt(FIND_TABLE, &[&quoted.join(".")])
            .await
            .map_err(|e| Error::db(format!("cannot look up table {table}"), e))?
            .ok_or_else(|| Error::failed(format!("table {table} does not exist")))?;
        let (oid, nspname, relname, relkind): (i64, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if ["pg_catalog", "information_schema"].contains(&nspname.as_str())
            || nspname.starts_with("pg_toast")
        {
            return Err(Error::failed(format!(
                "{table} is {nspname}.{relname}, a system catalog: a backfill only updates the application's tables"
            )));
        }
        let what = match relkind.as_str() {
            "r" | "p" => None,
            "v" => Some("a view"),
            "m" => Some("a materialized view"),
            "f" => Some("a foreign table"),
            "S" => Some("a sequence"),
            "i" | "I" => Some("an index"),
            _ => Some("not a table"),
        };
        if let Some(what) = what {
            return Err(Error::failed(format!(
                "{table} is {what}, not a table: a backfill updates a table's rows in batches (relkind {relkind})"
            )));
        }
        Ok(Table {
            oid: oid as u32,
            qualified: format!("{}.{}", quote_ident(&nspname), quote_ident(&relname)),
            display: format!("{nspname}.{relname}"),
        })
    }

    pub async fn table_size(&self, table: &Table) -> Result<TableSize> {
        let oid = i64::from(table.oid);
        let row = self
            .client()
            .query_one(
                "SELECT pg_relation_size(oid), pg_total_relation_size(oid), reltuples::float8 FROM pg_class WHERE oid = $1::int8::oid",
                &[&oid],
            )
            .await
            .map_err(|e| Error::db(format!("cannot read the size of {}", table.display), e))?;
        Ok(TableSize {
            table_bytes: row.get(0),
            total_bytes: row.get(1),
            reltuples: row.get(2),
        })
    }

    /// Exact row count (used when reltuples is unknown).
    pub async fn count_rows(&self, table: &Table) -> Result<i64> {
        let sql = format!("SELECT count(*) FROM {}", table.qualified);
        let row = self
            .client()
            .query_one(&sql, &[])
            .await
            .map_err(|e| Error::db(format!("cannot count {}", table.display), e))?;
        Ok(row.get(0))
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
                        total_bytes_before, done, started_at, updated_at, waiting
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
                waiting: r.get(17),
            })
            .collect())
    }

    /// A stopped backfill resumes: move its rows' `started_at` and
    /// `updated_at` later by the time since its latest batch (or start), so
    /// the span from the first start to the latest batch is the time it ran,
    /// not the time it stood stopped; the latest `updated_at` becomes now.
    pub async fn resume_backfill_clock(&self, plan: &str, phase: &str) -> Result<()> {
        self.client()
            .execute(
                "WITH stopped AS (
                     SELECT greatest(clock_timestamp() - max(updated_at), interval '0') AS gap
                     FROM orch.backfill_workers WHERE plan = $1 AND phase = $2
                 )
                 UPDATE orch.backfill_workers
                 SET started_at = started_at + stopped.gap, updated_at = updated_at + stopped.gap
                 FROM stopped
                 WHERE plan = $1 AND phase = $2",
                &[&plan, &phase],
            )
            .await
            .map_err(|e| Error::db("cannot resume the backfill's clock", e))?;
        Ok(())
    }

    /// Forget the cursor rows kept under `phase` (a finished re-run's, before
    /// the next re-run records its own).
    pub async fn clear_backfill_workers(&self, plan: &str, phase: &str) -> Result<()> {
        self.client()
            .execute(
                "DELETE FROM orch.backfill_workers WHERE plan = $1 AND phase = $2",
                &[&plan, &phase],
            )
            .await
            .map_err(|e| Error::db("cannot clear the backfill's cursors", e))?;
        // A command backfill's rejected rows and queue go with them.
        for sql in super::backfill_errors::CLEAR {
            self.client()
                .execute(sql, &[&plan, &phase, &phase])
                .await
                .map_err(|e| Error::db("cannot clear the backfill's rejected rows", e))?;
        }
        Ok(())
    }

    /// Record the workers' ranges when a backfill first starts.
    pub async fn create_backfill_workers(
        &self,
        plan: &str,
        phase: &str,
        workers: &[WorkerRow],
    ) -> Result<()> {
        if let Err(e) = self.client().batch_execute("BEGIN").await {
            return Err(Error::db("cannot record the backfill's ranges", e));
        }
        if let Err(e) = self.check_fences().await {
            self.rollback().await;
            return Err(e);
        }
        let result = async {
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

    /// Prepare a walk's statement on this connection, showing it if it
    /// does not compile.
    pub(crate) async fn prepare_backfill(&self, sql: &str) -> Result<Statement> {
        self.client().prepare(sql).await.map_err(|e| {
            Error::db(
                format!("the backfill's statement does not compile:\n  {sql}\n "),
                e,
            )
        })
    }

    /// Prepare the cursor row's statements on this connection.
    pub(crate) async fn prepare_cursor(&self) -> Result<CursorStatements> {
        Ok(CursorStatements {
            lock: self.prepare_backfill(CURSOR_LOCK).await?,
            update: self.prepare_backfill(CURSOR_UPDATE).await?,
        })
    }

    /// Open a batch's transaction under `limits`, check that this process
    /// still holds its plan's lock (the fence's barrier is then held until
    /// the batch commits), and lock the worker's cursor row; returns where
    /// the batch starts (the recorded cursor, or the range's start).
    pub(crate) async fn begin_batch(
        &self,
        cursor: &CursorStatements,
        range: &BatchRange<'_>,
        limits: BatchLimits,
    ) -> std::result::Result<Option<Vec<String>>, BatchError> {
        Ok(self.begin_batch_ahead(cursor, range, limits).await?.0)
    }

    /// `begin_batch`, with the recorded `ahead` (the key walk's range whose
    /// first half of rows is done already).
    pub(crate) async fn begin_batch_ahead(
        &self,
        cursor: &CursorStatements,
        range: &BatchRange<'_>,
        limits: BatchLimits,
    ) -> std::result::Result<(Option<Vec<String>>, Option<Vec<String>>), BatchError> {
        let begin = format!(
            "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; SET LOCAL synchronous_commit = {};",
            limits.lock_timeout.as_millis(),
            limits.statement_timeout.as_millis(),
            limits.synchronous_commit
        );
        let client = self.client();
        // Sent without waiting for each other's answers: BEGIN, then the
        // read of the cursor and the fence check (whose two statements,
        // prepared first, reach the server after the read). The fence's
        // answer is read before anything is written.
        let params: [&(dyn ToSql + Sync); 3] = [&range.plan, &range.phase, &range.worker];
        let (begun, lost, row) = tokio::join!(
            client.batch_execute(&begin),
            self.lost_fence_in_transaction(),
            client.query_one(&cursor.lock, &params),
        );
        begun?;
        let row = match (lost, row) {
            (Ok(Some(fence)), _) => return Err(BatchError::LockLost(fence)),
            // The read ran first: its error (a lock or statement timeout, to
            // retry) is the batch's, not the aborted fence check's.
            (_, Err(e)) | (Err(e), Ok(_)) => return Err(e.into()),
            (Ok(None), Ok(row)) => row,
        };
        let recorded: Option<Vec<String>> = row.get(0);
        let ahead: Option<Vec<String>> = row.get(1);
        Ok((
            recorded.or_else(|| range.start.map(<[String]>::to_vec)),
            ahead,
        ))
    }

    /// Move the worker's cursor and counts by `done`, and commit the batch
    /// begun at `started` with them.
    pub(crate) async fn commit_batch(
        &self,
        cursor: &CursorStatements,
        range: &BatchRange<'_>,
        done: &BatchDone,
        started: Instant,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        let elapsed_ms = started.elapsed().as_millis() as i64;
        let updated = done.rows_updated as i64;
        let elapsed_i32 = elapsed_ms.min(i64::from(i32::MAX)) as i32;
        let params: [&(dyn ToSql + Sync); 10] = [
            &range.plan,
            &range.phase,
            &range.worker,
            &done.last,
            &updated,
            &done.rows_scanned,
            &elapsed_ms,
            &elapsed_i32,
            &done.range_done,
            &done.ahead,
        ];
        // Sent together: if the update fails, the COMMIT rolls back (and
        // the update's error is returned).
        let (moved, committed) = tokio::join!(
            self.client().execute(&cursor.update, &params),
            self.client().batch_execute("COMMIT")
        );
        moved?;
        committed
    }

    /// Roll a batch back that may not commit: its process lost its lock.
    pub(crate) async fn abandon_fenced_batch(&self, fence: &Fence) -> BatchFailure {
        self.rollback().await;
        BatchFailure {
            diagnostic: PgDiagnostic {
                sqlstate: LOCK_LOST.to_string(),
                message: fence.error().to_string(),
                ..PgDiagnostic::default()
            },
            last: None,
        }
    }

    /// Roll a failed batch back and say what failed.
    pub(crate) async fn abandon_batch(
        &self,
        error: &tokio_postgres::Error,
        last: Option<Vec<String>>,
    ) -> BatchFailure {
        self.rollback().await;
        BatchFailure {
            diagnostic: diagnostic(error),
            last,
        }
    }

    /// VACUUM (not FULL) the table, outside any transaction, asking the
    /// kernel to write its pages out as it goes (`VACUUM_FLUSH_AFTER`).
    pub async fn vacuum(&self, table: &Table) -> Result<()> {
        // A setting of this session only (VACUUM runs on a connection of its
        // own), and not in the same query: VACUUM refuses a transaction. A
        // hint: the VACUUM runs without it if it is refused.
        let _ = self
            .client()
            .batch_execute(&format!("SET backend_flush_after = '{VACUUM_FLUSH_AFTER}'"))
            .await;
        let sql = format!("VACUUM {}", table.qualified);
        self.client()
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::db(format!("cannot vacuum {}", table.display), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    /// The VACUUM's session asks for its writes to be flushed as it goes
    /// (what that buys is measured by `cargo bench --bench backfill`).
    #[tokio::test]
    async fn vacuum_flushes_its_writes_as_it_goes() {
        let db = crate::store::test_db::TestDb::new().await;
        db.execute(
            "CREATE TABLE t (id int PRIMARY KEY, a int);
             INSERT INTO t SELECT g, g FROM generate_series(1, 1000) AS g;
             UPDATE t SET a = a + 1;",
        )
        .await;
        let store = db.store().await;
        let table = store.backfill_table("t").await.unwrap();
        store.vacuum(&table).await.unwrap();
        let setting: String = store
            .client()
            .query_one("SHOW backend_flush_after", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(setting, VACUUM_FLUSH_AFTER);
    }
}
