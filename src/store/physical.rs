//! The SQL of the physical walk: the table's size in pages, and the batch
//! that updates the rows of a range of pages (`ctid` bounds, which
//! PostgreSQL 14 and later serve with a TID Range Scan: no index descent
//! per row) and moves the worker's cursor, a page number, in the same
//! transaction.

use std::time::Instant;

use tokio_postgres::Statement;

use crate::error::{Error, PgDiagnostic, Result};
use crate::store::Store;
use crate::store::backfill::{
    BatchDone, BatchError, BatchFailure, BatchLimits, BatchRange, BatchResult, CursorStatements,
    Table,
};

/// The oldest server with TID Range Scans (`server_version_num`).
pub const TID_RANGE_SCAN_SINCE: i32 = 140_000;

/// A table's pages now, and its rows per page by its statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TablePages {
    pub pages: i64,
    /// `reltuples / relpages`, or 1 without statistics.
    pub rows_per_page: f64,
}

/// The statements of one table's page batches, prepared once per connection.
pub struct PageStatements {
    update: Statement,
    cursor: CursorStatements,
}

/// The update of the rows in pages `[$1, $2)` that match `condition`.
pub fn page_batch_sql(table: &Table, set: &str, condition: &str) -> String {
    format!(
        "UPDATE {} SET {set}\n WHERE ctid >= format('(%s,0)', $1::int8)::tid AND ctid < format('(%s,0)', $2::int8)::tid AND ({condition}\n)",
        table.qualified
    )
}

/// A page number recorded in a `text[]` bound or cursor.
fn page_number(values: &[String], what: &str) -> std::result::Result<i64, String> {
    match values {
        [one] => one
            .parse::<i64>()
            .ok()
            .filter(|page| *page >= 0)
            .ok_or_else(|| format!("the recorded {what} {one:?} is not a page number")),
        _ => Err(format!(
            "the recorded {what} {values:?} is not one page number"
        )),
    }
}

impl Store {
    /// The server's `server_version_num` (e.g. 150018).
    pub async fn server_version_num(&self) -> Result<i32> {
        let row = self
            .client()
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| Error::db("cannot read the server's version", e))?;
        Ok(row.get(0))
    }

    /// How many pages `table` has now, and its rows per page.
    pub async fn table_pages(&self, table: &Table) -> Result<TablePages> {
        let oid = i64::from(table.oid);
        let row = self
            .client()
            .query_one(
                "SELECT pg_relation_size(oid) / current_setting('block_size')::int8, reltuples::float8, relpages::int8
                 FROM pg_class WHERE oid = $1::int8::oid",
                &[&oid],
            )
            .await
            .map_err(|e| Error::db(format!("cannot read the size of {}", table.display), e))?;
        let (pages, tuples, relpages): (i64, f64, i64) = (row.get(0), row.get(1), row.get(2));
        let rows_per_page = if tuples > 0.0 && relpages > 0 {
            (tuples / relpages as f64).max(1.0)
        } else {
            1.0
        };
        Ok(TablePages {
            pages,
            rows_per_page,
        })
    }

    /// Prepare a table's page batches on this connection.
    pub async fn prepare_pages(
        &self,
        table: &Table,
        set: &str,
        condition: &str,
    ) -> Result<PageStatements> {
        Ok(PageStatements {
            update: self
                .prepare_backfill(&page_batch_sql(table, set, condition))
                .await?,
            cursor: self.prepare_cursor().await?,
        })
    }

    /// One batch in one transaction: update the matching rows of the next
    /// `pages` pages after the recorded cursor (at most to the range's end,
    /// exclusive), and move the cursor past them. `rows_per_page` turns
    /// pages into the rows the batch counts as visited.
    pub async fn run_page_batch(
        &self,
        statements: &PageStatements,
        range: &BatchRange<'_>,
        pages: i64,
        rows_per_page: f64,
        limits: BatchLimits,
    ) -> BatchResult {
        let started = Instant::now();
        let mut batch_end: Option<Vec<String>> = None;
        let result: std::result::Result<BatchDone, BatchError> = async {
            let after = self.begin_batch(&statements.cursor, range, limits).await?;
            let from = match &after {
                None => 0,
                Some(cursor) => page_number(cursor, "cursor").map_err(BatchError::Bookkeeping)?,
            };
            let end = page_number(range.end, "range end").map_err(BatchError::Bookkeeping)?;
            let to = from.saturating_add(pages.max(1)).min(end).max(from);
            batch_end = Some(vec![to.to_string()]);
            let updated = if to > from {
                self.client()
                    .execute(&statements.update, &[&from, &to])
                    .await?
            } else {
                0
            };
            let visited = ((to - from) as f64 * rows_per_page).round() as i64;
            let done = BatchDone {
                last: Some(vec![to.to_string()]),
                walked: visited.max(1),
                rows_scanned: visited,
                rows_updated: updated,
                range_done: to >= end,
                ahead: None,
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
                    diagnostic: PgDiagnostic {
                        sqlstate: "XX000".to_string(),
                        message: format!(
                            "{message} (orch.backfill_workers was changed by hand? roll the phase back to start over)"
                        ),
                        ..PgDiagnostic::default()
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

    #[test]
    fn page_batches_are_tid_ranges() {
        let table = Table {
            oid: 1,
            qualified: "\"public\".\"posts\"".into(),
            display: "public.posts".into(),
        };
        assert_eq!(
            page_batch_sql(&table, "loc = point(lng, lat)", "loc IS NULL"),
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat)\n WHERE ctid >= format('(%s,0)', $1::int8)::tid AND ctid < format('(%s,0)', $2::int8)::tid AND (loc IS NULL\n)"
        );
    }

    #[test]
    fn recorded_pages_parse_or_say_what_is_wrong() {
        let text = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(page_number(&text(&["120"]), "cursor"), Ok(120));
        assert_eq!(
            page_number(&text(&["-1"]), "cursor").unwrap_err(),
            "the recorded cursor \"-1\" is not a page number"
        );
        assert!(page_number(&text(&["1", "2"]), "range end").is_err());
        assert!(page_number(&text(&["x"]), "cursor").is_err());
    }
}
