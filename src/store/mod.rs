//! The store: every SQL statement orch itself issues lives below this module.
//! The engine calls these functions; it never formats SQL.

pub mod backfill;
pub mod backfill_errors;
pub mod blockers;
pub mod bookkeeping;
pub mod catalog;
pub mod command;
pub mod fleet;
pub mod health;
pub mod keyset;
pub mod lock_probe;
pub mod locks;
pub mod migrations;
pub mod orphans;
pub mod physical;
pub mod plans;
pub mod preview;
pub mod recipe_catalog;
pub mod schema;
pub mod session;
pub mod sync_trigger;
#[cfg(test)]
pub(crate) mod test_db;
pub mod tracking;

use tokio_postgres::Client;

use crate::connect::ConnectionSettings;
use crate::error::{Error, Result};

/// A working connection to the target database plus the settings needed to
/// open side connections (locks, blocker monitoring).
pub struct Store {
    client: Client,
    settings: ConnectionSettings,
    application_name: String,
    /// The role checks run as (`--check-role`), if any.
    check_role: Option<String>,
    /// The locks whose loss stops this store recording anything.
    fences: locks::FenceRegistry,
    /// The health query, prepared at its first use (a backfill worker
    /// reads it before each batch).
    health: tokio::sync::OnceCell<tokio_postgres::Statement>,
}

impl Store {
    /// Connect; does not create orch's schema (see `ensure_schema`).
    pub async fn open(settings: &ConnectionSettings, application_name: &str) -> Result<Store> {
        let client = settings.connect(application_name).await?;
        Ok(Store {
            client,
            settings: settings.clone(),
            application_name: application_name.to_string(),
            check_role: None,
            fences: locks::FenceRegistry::default(),
            health: tokio::sync::OnceCell::new(),
        })
    }

    /// Run checks as `role` from now on: inside their transaction, after
    /// `READ ONLY`, with `SET LOCAL ROLE`, so they have that role's
    /// privileges instead of orch's (a read-only transaction still lets a
    /// superuser's `COPY ... TO PROGRAM` run).
    pub fn set_check_role(&mut self, role: Option<String>) {
        self.check_role = role;
    }

    /// Switch the open transaction to the check role, if one is set; the
    /// caller rolls the transaction back on an error.
    async fn enter_check_role(&self) -> Result<()> {
        let Some(role) = &self.check_role else {
            return Ok(());
        };
        let sql = format!("SET LOCAL ROLE {}", backfill::quote_ident(role));
        self.client.batch_execute(&sql).await.map_err(|e| {
            let why = crate::error::PgDiagnostic::from_driver(&e)
                .map_or_else(|| e.to_string(), |d| d.message);
            Error::Usage(format!(
                "cannot run checks as --check-role {role:?}: {why} (orch's database user must be a member of that role: GRANT {} TO {})",
                backfill::quote_ident(role),
                backfill::quote_ident(self.settings.user())
            ))
        })
    }

    /// Back to orch's own role inside the open transaction, after checks.
    async fn leave_check_role(&self) -> Result<()> {
        if self.check_role.is_none() {
            return Ok(());
        }
        self.client
            .batch_execute("SET LOCAL ROLE NONE")
            .await
            .map_err(|e| Error::db("cannot leave the check role", e))
    }

    /// The working connection, for the statements below this module only.
    fn client(&self) -> &Client {
        &self.client
    }

    pub fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    pub fn application_name(&self) -> &str {
        &self.application_name
    }

    /// Whether orch's schema exists (read-only commands and dry runs must not create it).
    pub async fn schema_exists(&self) -> Result<bool> {
        let row = self
            .client
            .query_one(schema::EXISTS, &[])
            .await
            .map_err(|e| Error::db("cannot inspect orch's schema", e))?;
        Ok(row.get(0))
    }

    /// Create orch's schema if it is missing (first use).
    pub async fn ensure_schema(&self) -> Result<()> {
        if self.schema_exists().await? {
            return self.check_schema_version().await;
        }
        let lock = bootstrap_begin();
        let result = async {
            self.client.batch_execute(&lock).await?;
            self.client.batch_execute(schema::CREATE).await?;
            self.client
                .execute(
                    "INSERT INTO orch.meta (schema_version) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM orch.meta)",
                    &[&schema::SCHEMA_VERSION],
                )
                .await?;
            self.client.batch_execute("COMMIT").await
        }
        .await;
        if let Err(e) = result {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(Error::db("cannot create orch's schema", e));
        }
        tracing::info!("created orch's schema (version {})", schema::SCHEMA_VERSION);
        Ok(())
    }

    /// Bring an existing schema an older orch created up to date (nothing
    /// when there is no schema yet: read-only commands must not create it).
    pub async fn upgrade_schema(&self) -> Result<()> {
        if self.schema_exists().await? {
            self.check_schema_version().await?;
        }
        Ok(())
    }

    async fn schema_version(&self) -> Result<i32> {
        let row = self
            .client
            .query_opt("SELECT schema_version FROM orch.meta", &[])
            .await
            .map_err(|e| Error::db("cannot read orch.meta", e))?;
        Ok(row.map(|r| r.get(0)).unwrap_or(schema::SCHEMA_VERSION))
    }

    /// Refuse a schema newer than this orch; upgrade an older one, under the
    /// bootstrap lock, re-reading the version once it is held (two orch
    /// processes may upgrade at once).
    async fn check_schema_version(&self) -> Result<()> {
        let version = self.schema_version().await?;
        if version < schema::SCHEMA_VERSION {
            let lock = bootstrap_begin();
            let result = async {
                self.client.batch_execute(&lock).await?;
                let row = self
                    .client
                    .query_opt("SELECT schema_version FROM orch.meta", &[])
                    .await?;
                let mut version: i32 = row.map(|r| r.get(0)).unwrap_or(schema::SCHEMA_VERSION);
                for (from, ddl) in schema::UPGRADES {
                    if version == from {
                        self.client.batch_execute(ddl).await?;
                        version = from + 1;
                    }
                }
                self.client
                    .execute("UPDATE orch.meta SET schema_version = $1", &[&version])
                    .await?;
                self.client.batch_execute("COMMIT").await
            }
            .await;
            if let Err(e) = result {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(Error::db(
                    format!("cannot upgrade orch's schema from version {version}"),
                    e,
                ));
            }
            tracing::info!(
                "upgraded orch's schema from version {version} to {}",
                schema::SCHEMA_VERSION
            );
            return Ok(());
        }
        if version > schema::SCHEMA_VERSION {
            return Err(Error::refused(
                format!(
                    "orch's schema in this database is version {version}, newer than this orch understands ({}); a newer orch has been used here",
                    schema::SCHEMA_VERSION
                ),
                Some("upgrade orch".to_string()),
            ));
        }
        Ok(())
    }

    /// The backend pid of the working connection (to watch what it waits on).
    pub async fn backend_pid(&self) -> Result<i32> {
        let row = self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| Error::db("cannot read the backend pid", e))?;
        Ok(row.get(0))
    }

    /// `deadlock_timeout` in milliseconds (autovacuum yields to a lock
    /// waiter only after this long).
    pub async fn deadlock_timeout_ms(&self) -> Result<u64> {
        let row = self
            .client
            .query_one(
                "SELECT setting::bigint FROM pg_settings WHERE name = 'deadlock_timeout'",
                &[],
            )
            .await
            .map_err(|e| Error::db("cannot read deadlock_timeout", e))?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }
}

/// BEGIN a transaction holding the bootstrap lock: creating or upgrading
/// orch's schema is done by one process at a time.
fn bootstrap_begin() -> String {
    format!(
        "BEGIN; SELECT pg_advisory_xact_lock({}, {});",
        schema::LOCK_CLASS,
        schema::BOOTSTRAP_LOCK
    )
}
