//! Running user SQL (migration sections) on the working connection:
//! transactions with `lock_timeout`/`statement_timeout`, and scripts sent
//! whole while counting how many statements completed before an error.

use std::time::Duration;

use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::SimpleQueryMessage;

use crate::error::{Error, PgDiagnostic, Result};
use crate::store::Store;

/// A user script failed: how many of its statements completed first, and why.
#[derive(Debug)]
pub struct ScriptFailure {
    pub completed: usize,
    pub diagnostic: PgDiagnostic,
}

/// SQLSTATE of `lock_timeout` expiring (lock_not_available).
pub const LOCK_NOT_AVAILABLE: &str = "55P03";

impl ScriptFailure {
    pub fn is_lock_timeout(&self) -> bool {
        self.diagnostic.sqlstate == LOCK_NOT_AVAILABLE
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

impl Store {
    /// BEGIN, with both timeouts local to the transaction.
    pub async fn begin_with_timeouts(
        &self,
        lock_timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<()> {
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {};",
            millis(lock_timeout),
            millis(statement_timeout)
        );
        self.client()
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::db("cannot start a transaction", e))
    }

    /// Session-level timeouts, for statements run outside a transaction.
    pub async fn set_session_timeouts(
        &self,
        lock_timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<()> {
        let sql = format!(
            "SET lock_timeout = {}; SET statement_timeout = {};",
            millis(lock_timeout),
            millis(statement_timeout)
        );
        self.client()
            .batch_execute(&sql)
            .await
            .map_err(|e| Error::db("cannot set timeouts", e))
    }

    /// Back to the server's defaults after statements run outside a transaction.
    pub async fn reset_session_timeouts(&self) {
        if let Err(e) = self
            .client()
            .batch_execute("RESET lock_timeout; RESET statement_timeout")
            .await
        {
            tracing::debug!("reset timeouts: {e}");
        }
    }

    pub async fn commit(&self) -> std::result::Result<(), ScriptFailure> {
        self.run_script("COMMIT").await
    }

    /// ROLLBACK; errors are ignored because the connection may already be
    /// outside a transaction (e.g. after a failed COMMIT).
    pub async fn rollback(&self) {
        if let Err(e) = self.client().batch_execute("ROLLBACK").await {
            tracing::debug!("rollback: {e}");
        }
    }

    /// Send `sql` whole (simple query protocol) and count completed
    /// statements, so a failure can be traced to the statement that failed.
    pub async fn run_script(&self, sql: &str) -> std::result::Result<(), ScriptFailure> {
        let mut completed = 0;
        let stream = match self.client().simple_query_raw(sql).await {
            Ok(stream) => stream,
            Err(e) => return Err(failure(0, &e)),
        };
        pin_mut!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(SimpleQueryMessage::CommandComplete(_))) => completed += 1,
                Ok(Some(_)) => {}
                Ok(None) => return Ok(()),
                Err(e) => return Err(failure(completed, &e)),
            }
        }
    }
}

/// How `err` failed a script after `completed` of its statements.
pub(crate) fn failure(completed: usize, err: &tokio_postgres::Error) -> ScriptFailure {
    let diagnostic = PgDiagnostic::from_driver(err).unwrap_or_else(|| PgDiagnostic {
        sqlstate: "08006".to_string(),
        message: format!("connection failure: {err}"),
        ..PgDiagnostic::default()
    });
    ScriptFailure {
        completed,
        diagnostic,
    }
}
