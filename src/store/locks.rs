//! Advisory locks that keep two orch processes from running migrations (or
//! acting on the same plan) at once. Each lock lives on its own connection,
//! outside any pool: dropping the guard closes the connection, which releases
//! the lock, so it can never go back to a pool still held.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::connect::ConnectionSettings;
use crate::error::{Error, Result};
use crate::store::schema;

/// Which lock: the migration history, or one plan.
#[derive(Debug, Clone)]
pub enum LockScope {
    Migrations,
    Plan(String),
}

impl LockScope {
    fn describe(&self) -> String {
        match self {
            LockScope::Migrations => "the migration history".to_string(),
            LockScope::Plan(name) => format!("plan {name}"),
        }
    }
}

/// A held advisory lock. Released when dropped (its connection closes).
pub struct LockGuard {
    client: Client,
    scope: LockScope,
}

impl LockGuard {
    /// Run `work` while holding the lock, then release it before returning:
    /// a lock on a closing connection is only freed when the server notices
    /// the disconnect, so a command that follows at once could still find it.
    pub async fn around<T>(self, work: impl std::future::Future<Output = T>) -> T {
        let result = work.await;
        self.release().await;
        result
    }

    /// Release explicitly (dropping has the same effect, a little later).
    pub async fn release(self) {
        let sql = unlock_sql(&self.scope);
        if let Err(e) = self.client.execute(sql, &self.scope.params()).await {
            tracing::debug!("advisory unlock: {e}");
        }
    }
}

const TRY_MIGRATIONS: &str = "SELECT pg_try_advisory_lock($1::int, $2::int)";
const TRY_PLAN: &str = "SELECT pg_try_advisory_lock($1::int, hashtext($2::text))";
const UNLOCK_MIGRATIONS: &str = "SELECT pg_advisory_unlock($1::int, $2::int)";
const UNLOCK_PLAN: &str = "SELECT pg_advisory_unlock($1::int, hashtext($2::text))";

/// Who holds an advisory lock: the (int, int) form keeps key1 in classid and
/// key2 in objid (as an unsigned oid), with objsubid = 2.
const HOLDER_MIGRATIONS: &str = "
    SELECT a.pid, coalesce(a.application_name, ''), a.backend_start
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid::bigint = ($1::int::bigint & 4294967295)
      AND l.objid::bigint = ($2::int::bigint & 4294967295)
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    LIMIT 1";
const HOLDER_PLAN: &str = "
    SELECT a.pid, coalesce(a.application_name, ''), a.backend_start
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid::bigint = ($1::int::bigint & 4294967295)
      AND l.objid::bigint = (hashtext($2::text)::bigint & 4294967295)
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    LIMIT 1";

fn try_sql(scope: &LockScope) -> &'static str {
    match scope {
        LockScope::Migrations => TRY_MIGRATIONS,
        LockScope::Plan(_) => TRY_PLAN,
    }
}

fn unlock_sql(scope: &LockScope) -> &'static str {
    match scope {
        LockScope::Migrations => UNLOCK_MIGRATIONS,
        LockScope::Plan(_) => UNLOCK_PLAN,
    }
}

fn holder_sql(scope: &LockScope) -> &'static str {
    match scope {
        LockScope::Migrations => HOLDER_MIGRATIONS,
        LockScope::Plan(_) => HOLDER_PLAN,
    }
}

impl LockScope {
    /// Bind parameters ($1 = class, $2 = key) for the statements above.
    fn params(&self) -> Vec<&(dyn tokio_postgres::types::ToSql + Sync)> {
        match self {
            LockScope::Migrations => vec![&schema::LOCK_CLASS, &schema::MIGRATIONS_LOCK],
            LockScope::Plan(name) => vec![&schema::LOCK_CLASS, name],
        }
    }
}

/// Take the lock, waiting up to `wait` (polling), on a new dedicated connection.
pub async fn acquire(
    settings: &ConnectionSettings,
    application_name: &str,
    scope: LockScope,
    wait: Duration,
) -> Result<LockGuard> {
    let client = settings.connect(application_name).await?;
    let started = Instant::now();
    let params = scope.params();
    loop {
        let row = client
            .query_one(try_sql(&scope), &params)
            .await
            .map_err(|e| Error::db(format!("cannot lock {}", scope.describe()), e))?;
        if row.get::<_, bool>(0) {
            tracing::debug!("locked {}", scope.describe());
            return Ok(LockGuard { client, scope });
        }
        if started.elapsed() >= wait {
            let holder = client
                .query_opt(holder_sql(&scope), &params)
                .await
                .map_err(|e| Error::db("cannot find who holds the lock", e))?;
            let (pid, application_name, since) = match holder {
                Some(row) => (
                    row.get::<_, i32>(0),
                    row.get::<_, String>(1),
                    row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(2)
                        .map(|t| crate::timefmt::utc(&t)),
                ),
                // Released between our last try and this query: try once more.
                None => continue,
            };
            return Err(Error::Busy {
                what: scope.describe(),
                pid,
                application_name,
                since,
                waited_ms: started.elapsed().as_millis() as u64,
            });
        }
        tokio::time::sleep(Duration::from_millis(100).min(wait)).await;
    }
}

impl super::Store {
    /// The pid of the session holding plan `name`'s lock, if any: a running
    /// phase whose plan nobody holds was interrupted (its process died).
    pub async fn plan_lock_holder(&self, name: &str) -> Result<Option<i32>> {
        let scope = LockScope::Plan(name.to_string());
        let row = self
            .client()
            .query_opt(holder_sql(&scope), &scope.params())
            .await
            .map_err(|e| Error::db(format!("cannot find who holds {}", scope.describe()), e))?;
        Ok(row.map(|r| r.get::<_, i32>(0)))
    }
}
