//! The preview transaction of `orch check --online`: one transaction, never
//! committed, in which the plan's migrations not applied yet run in order so
//! each phase is checked against the schema it will meet; savepoints keep a
//! failed step from ending the transaction; checks are compiled, not run.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::error::{Error, PgDiagnostic, Result};
use crate::store::Store;
use crate::store::schema;
use crate::store::session::ScriptFailure;

/// SQLSTATE of a statement cancelled by `statement_timeout` (query_canceled).
pub const QUERY_CANCELED: &str = "57014";

/// SQLSTATE of a statement PostgreSQL refuses inside a transaction block
/// (active_sql_transaction).
pub const NOT_IN_A_TRANSACTION: &str = "25001";

impl Store {
    /// BEGIN the preview: both timeouts local to it, and orch's schema
    /// created inside it when the database has none yet (the backfill's
    /// statements refer to orch's tables), so it exists only until
    /// `end_preview` rolls everything back.
    pub async fn begin_preview(
        &self,
        lock_timeout: Duration,
        statement_timeout: Duration,
    ) -> Result<()> {
        let exists = self.schema_exists().await?;
        self.begin_with_timeouts(lock_timeout, statement_timeout)
            .await?;
        if !exists && let Err(e) = self.client().batch_execute(schema::CREATE).await {
            self.end_preview().await;
            return Err(Error::db(
                "cannot open the preview transaction (creating orch's schema in it, to be rolled back)",
                e,
            ));
        }
        Ok(())
    }

    /// Roll the preview back: nothing it did stays.
    pub async fn end_preview(&self) {
        self.rollback().await;
    }

    /// Mark where a preview step starts, to go back to it after the step.
    pub async fn preview_savepoint(&self) -> Result<()> {
        self.client()
            .batch_execute("SAVEPOINT orch_preview")
            .await
            .map_err(|e| Error::db("cannot set a savepoint in the preview", e))
    }

    /// Undo the step since `preview_savepoint` (a failed step aborts the
    /// transaction; this makes it usable again).
    pub async fn preview_undo_step(&self) -> Result<()> {
        self.client()
            .batch_execute("ROLLBACK TO SAVEPOINT orch_preview; RELEASE SAVEPOINT orch_preview")
            .await
            .map_err(|e| Error::db("cannot go back to the preview's savepoint", e))
    }

    /// Keep the step since `preview_savepoint` (a migration applied in the
    /// preview, which later phases are checked against).
    pub async fn preview_keep_step(&self) -> Result<()> {
        self.client()
            .batch_execute("RELEASE SAVEPOINT orch_preview")
            .await
            .map_err(|e| Error::db("cannot release the preview's savepoint", e))
    }

    /// Run user SQL (a migration's statements) in the preview, as a script.
    pub async fn preview_script(&self, sql: &str) -> std::result::Result<(), ScriptFailure> {
        self.run_script(sql).await
    }

    /// Compile a check (placeholders already `$n`, each a timestamptz)
    /// without running it: Err with PostgreSQL's reason when it does not
    /// compile, or, with no SQLSTATE, what it returns instead of one
    /// boolean column (`returns int8`).
    pub async fn compile_check(
        &self,
        sql: &str,
        parameters: usize,
    ) -> std::result::Result<(), PgDiagnostic> {
        let types = vec![Type::TIMESTAMPTZ; parameters];
        let statement = self
            .client()
            .prepare_typed(sql, &types)
            .await
            .map_err(|e| {
                PgDiagnostic::from_driver(&e).unwrap_or_else(|| PgDiagnostic {
                    sqlstate: "08006".to_string(),
                    message: format!("connection failure: {e}"),
                    ..PgDiagnostic::default()
                })
            })?;
        let columns = statement.columns();
        let problem = match columns {
            [only] if *only.type_() == Type::BOOL => None,
            [only] => Some(format!("returns {}", only.type_().name())),
            _ => Some(format!("returns {} columns", columns.len())),
        };
        match problem {
            None => Ok(()),
            Some(message) => Err(PgDiagnostic {
                sqlstate: String::new(),
                message,
                ..PgDiagnostic::default()
            }),
        }
    }
}
