//! Reading the tracking table `orch.migrations`.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::store::Store;

/// A row of `orch.migrations`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppliedMigration {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    pub applied_at: DateTime<Utc>,
    pub applied_by: String,
    pub duration_ms: i64,
    pub execution_ms: i64,
    pub attempts: i32,
    pub plan: Option<String>,
    pub phase: Option<String>,
}

impl Store {
    /// Applied migrations by version; empty when orch's schema does not exist.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        let rows = self
            .client()
            .query(
                "SELECT version, name, checksum, applied_at, applied_by, duration_ms, execution_ms, attempts, plan, phase
                 FROM orch.migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(|e| Error::db("cannot read orch.migrations", e))?;
        Ok(rows
            .iter()
            .map(|r| AppliedMigration {
                version: r.get(0),
                name: r.get(1),
                checksum: r.get(2),
                applied_at: r.get(3),
                applied_by: r.get(4),
                duration_ms: r.get(5),
                execution_ms: r.get(6),
                attempts: r.get(7),
                plan: r.get(8),
                phase: r.get(9),
            })
            .collect())
    }
}
