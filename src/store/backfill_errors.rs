//! The rows a command backfill's program rejected or left out
//! (`orch.backfill_errors`, listed by `orch status PLAN --errors`), and its
//! queue of rows to visit again (`orch.backfill_queue`) as messages and a
//! resumed run see them. The batch's own statements are in `command.rs`.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::store::Store;

/// Forget a phase's (and its re-run's) rejected rows and queue: `$1` plan,
/// `$2` phase, `$3` the re-run's key.
pub const CLEAR: [&str; 2] = [
    "DELETE FROM orch.backfill_errors WHERE plan = $1 AND phase IN ($2, $3)",
    "DELETE FROM orch.backfill_queue WHERE plan = $1 AND phase IN ($2, $3)",
];

/// A message the program gave is kept up to this many characters.
pub const MESSAGE_CAP: i32 = 1000;

/// A row the program rejected or left out, for `orch status PLAN --errors`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowError {
    pub phase: String,
    pub worker: i32,
    pub key: Vec<String>,
    /// `rejected` or `left_out`.
    pub kind: String,
    pub message: String,
    pub recorded_at: DateTime<Utc>,
}

/// How many rows a phase's program rejected, and left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErrorCounts {
    pub rejected: i64,
    pub left_out: i64,
}

impl Store {
    /// The first `limit` rows of a phase's queue for `worker`, for messages.
    pub async fn queued_keys(
        &self,
        plan: &str,
        phase: &str,
        worker: i32,
        limit: i64,
    ) -> Result<Vec<Vec<String>>> {
        let rows = self
            .client()
            .query(
                "SELECT key FROM orch.backfill_queue WHERE plan = $1 AND phase = $2 AND worker = $3
                 ORDER BY pass DESC, key LIMIT $4",
                &[&plan, &phase, &worker, &limit],
            )
            .await
            .map_err(|e| Error::db("cannot read the backfill's queue", e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Rows a command backfill's program rejected or left out (the first
    /// `limit`, oldest first) and how many there are of each kind.
    pub async fn backfill_errors(
        &self,
        plan: &str,
        phase: &str,
        limit: i64,
    ) -> Result<(Vec<RowError>, ErrorCounts)> {
        if !self.schema_exists().await? {
            return Ok((Vec::new(), ErrorCounts::default()));
        }
        let client = self.client();
        let rows = client
            .query(
                "SELECT phase, worker, key, kind, message, recorded_at FROM orch.backfill_errors
                 WHERE plan = $1 AND phase = $2 ORDER BY recorded_at, key LIMIT $3",
                &[&plan, &phase, &limit],
            )
            .await
            .map_err(|e| Error::db("cannot read the backfill's rejected rows", e))?;
        let counts = client
            .query_one(
                "SELECT count(*) FILTER (WHERE kind = 'rejected'), count(*) FILTER (WHERE kind = 'left_out')
                 FROM orch.backfill_errors WHERE plan = $1 AND phase = $2",
                &[&plan, &phase],
            )
            .await
            .map_err(|e| Error::db("cannot count the backfill's rejected rows", e))?;
        Ok((
            rows.iter()
                .map(|r| RowError {
                    phase: r.get(0),
                    worker: r.get(1),
                    key: r.get(2),
                    kind: r.get(3),
                    message: r.get(4),
                    recorded_at: r.get(5),
                })
                .collect(),
            ErrorCounts {
                rejected: counts.get(0),
                left_out: counts.get(1),
            },
        ))
    }

    /// Give a resumed command backfill its rejected and left-out rows again:
    /// they move to the queue (each to its worker, whose range is then not
    /// done), in one transaction. Returns how many moved.
    pub async fn requeue_backfill_errors(&self, plan: &str, phase: &str) -> Result<u64> {
        if !self.schema_exists().await? {
            return Ok(0);
        }
        let sql = "WITH moved AS (
                       DELETE FROM orch.backfill_errors WHERE plan = $1 AND phase = $2
                       RETURNING worker, key
                   ), queued AS (
                       INSERT INTO orch.backfill_queue (plan, phase, worker, key, pass)
                       SELECT $1, $2, worker, key, 1 FROM moved
                       ON CONFLICT (plan, phase, key) DO NOTHING
                       RETURNING worker
                   ), reopened AS (
                       UPDATE orch.backfill_workers SET done = false
                       WHERE plan = $1 AND phase = $2 AND worker IN (SELECT worker FROM moved)
                   )
                   SELECT count(*) FROM moved";
        let row = self
            .client()
            .query_one(sql, &[&plan, &phase])
            .await
            .map_err(|e| Error::db("cannot queue the rejected rows again", e))?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}
