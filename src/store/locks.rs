//! Advisory locks that keep two orch processes from running migrations (or
//! acting on the same plan) at once. Each lock lives on its own connection,
//! outside any pool: dropping the guard closes the connection, which releases
//! the lock, so it can never go back to a pool still held.
//!
//! A held lock can still be lost: its session terminated
//! (`pg_terminate_backend`), its connection cut. So the guard watches its
//! connection (the session never idles long enough for
//! `idle_session_timeout`, which is also set to 0 for it), and every state
//! change orch records first checks, in its own transaction, that the
//! session still holds the lock (`Fence`): a process that lost its lock
//! records nothing more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    pub fn describe(&self) -> String {
        match self {
            LockScope::Migrations => "the migration history".to_string(),
            LockScope::Plan(name) => format!("plan {name}"),
        }
    }
}

/// A held advisory lock. Released when dropped (its connection closes).
pub struct LockGuard {
    client: Arc<Client>,
    scope: LockScope,
    fence: Fence,
    watcher: tokio::task::JoinHandle<()>,
    /// The store whose bookkeeping this lock fences, if any.
    registry: Option<FenceRegistry>,
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
        self.watcher.abort();
        let sql = unlock_sql(&self.scope);
        if let Err(e) = self.client.execute(sql, &self.scope.params()).await {
            tracing::debug!("advisory unlock: {e}");
        }
    }

    /// What fences the work done under this lock.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Make `store`'s bookkeeping check this lock until the guard is dropped.
    pub(crate) fn fence_store(mut self, store: &super::Store) -> Self {
        store.fences.add(self.fence.clone());
        self.registry = Some(store.fences.clone());
        self
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some(registry) = &self.registry {
            registry.remove(self.fence.id);
        }
    }
}

/// A lock held by this process, as the work done under it sees it: whether
/// the watcher saw it lost, and how to check in a transaction that the
/// session that took it still holds it.
#[derive(Debug, Clone)]
pub struct Fence {
    id: u64,
    scope: LockScope,
    /// The backend pid of the session holding the lock.
    pid: i32,
    lost: Arc<Lost>,
}

#[derive(Debug, Default)]
struct Lost {
    flag: AtomicBool,
    why: Mutex<Option<String>>,
}

static NEXT_FENCE: AtomicU64 = AtomicU64::new(1);

impl Fence {
    fn new(scope: LockScope, pid: i32) -> Fence {
        Fence {
            id: NEXT_FENCE.fetch_add(1, Ordering::SeqCst),
            scope,
            pid,
            lost: Arc::default(),
        }
    }

    /// The pid of the session holding the lock.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the watcher saw the lock lost.
    pub fn is_lost(&self) -> bool {
        self.lost.flag.load(Ordering::SeqCst)
    }

    fn mark_lost(&self, why: String) {
        let mut slot = self.lost.why.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            tracing::warn!("lost the lock on {}: {why}", self.scope.describe());
            *slot = Some(why);
        }
        self.lost.flag.store(true, Ordering::SeqCst);
    }

    /// The error for work that goes on after the lock was lost.
    pub fn error(&self) -> Error {
        let why = self
            .lost
            .why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "its session no longer holds it".to_string());
        Error::LockLost {
            message: format!(
                "lost the lock on {} (held by session pid {}): {why}; stopped, recording nothing more: another orch process may hold the lock now",
                self.scope.describe(),
                self.pid
            ),
            next: "see where things stand (`orch status`, `orch migrate status`), then run the same command again: it waits for (or, with --cancel-orphans, cancels) statements of this process still running".to_string(),
        }
    }
}

/// The fences a store's bookkeeping checks: shared with the guards, which
/// take theirs out when dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct FenceRegistry(Arc<Mutex<Vec<Fence>>>);

impl FenceRegistry {
    pub(crate) fn add(&self, fence: Fence) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(fence);
    }

    fn remove(&self, id: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|f| f.id != id);
    }

    pub(crate) fn all(&self) -> Vec<Fence> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How often the watcher asks the lock's session whether it still holds
/// the lock; a closed connection is seen at the next tick.
const WATCH_TICK: Duration = Duration::from_millis(100);
const WATCH_QUERY_EVERY: u32 = 5;
/// A session that does not answer this long is taken for lost.
const WATCH_ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Watch the lock's connection until aborted; mark the fence lost when the
/// connection closes, fails, stops answering, or no longer holds the lock.
fn watch(client: Arc<Client>, scope: LockScope, fence: Fence) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = 0u32;
        loop {
            tokio::time::sleep(WATCH_TICK).await;
            tick += 1;
            if client.is_closed() {
                fence.mark_lost("its connection to the server closed".to_string());
                return;
            }
            if !tick.is_multiple_of(WATCH_QUERY_EVERY) {
                continue;
            }
            let asked = tokio::time::timeout(
                WATCH_ANSWER_WITHIN,
                client.query_one(held_sql(&scope), &held_params(&scope, &fence.pid)),
            )
            .await;
            let why = match asked {
                Ok(Ok(row)) if row.get::<_, bool>(0) => continue,
                Ok(Ok(_)) => "the server says its session no longer holds it".to_string(),
                Ok(Err(e)) => match crate::error::PgDiagnostic::from_driver(&e) {
                    Some(d) => format!("its session ended ({})", d.message),
                    None => format!("its connection failed ({e})"),
                },
                Err(_) => format!(
                    "its session did not answer for {} s",
                    WATCH_ANSWER_WITHIN.as_secs()
                ),
            };
            fence.mark_lost(why);
            return;
        }
    })
}

/// Advisory lock classid of the fences' barriers ("orci"; keys as the locks').
const FENCE_CLASS: i32 = schema::LOCK_CLASS + 1;

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

/// Whether session `$3` holds the lock (the same shape as the holder queries).
const HELD_MIGRATIONS: &str = "
    SELECT EXISTS (SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.pid = $3
      AND l.classid::bigint = ($1::int::bigint & 4294967295)
      AND l.objid::bigint = ($2::int::bigint & 4294967295)
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))";
const HELD_PLAN: &str = "
    SELECT EXISTS (SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.pid = $3
      AND l.classid::bigint = ($1::int::bigint & 4294967295)
      AND l.objid::bigint = (hashtext($2::text)::bigint & 4294967295)
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))";

/// The fence's barrier: a recording transaction takes it shared (until it
/// commits) before checking that the lock is still held; a process that
/// has just taken the lock takes it exclusively once, so it waits for every
/// transaction that passed the check under the previous holder. Nothing the
/// previous holder checked can commit after the new holder starts.
const BARRIER_MIGRATIONS: &str = "SELECT pg_advisory_xact_lock($2::int, $1::int)::text";
const BARRIER_PLAN: &str = "SELECT pg_advisory_xact_lock($2::int, hashtext($1::text))::text";
/// The shared side of the barrier, a statement of its own run before the
/// held-check (`HELD_*`): within one statement SQL does not say whether
/// `pg_locks` or the barrier is evaluated first, and the check must come
/// after the barrier is held. (`$1` and `$3` are the held-check's, selected
/// so both statements take the same parameters.)
const FENCE_MIGRATIONS: &str =
    "SELECT pg_advisory_xact_lock_shared($4::int, $2::int)::text, $1::int, $3::int";
const FENCE_PLAN: &str =
    "SELECT pg_advisory_xact_lock_shared($4::int, hashtext($2::text))::text, $1::int, $3::int";

/// A lock's session must not be closed for idling.
const NO_IDLE_TIMEOUTS: &str = "SELECT count(set_config(name, '0', false)) FROM pg_settings
    WHERE name IN ('idle_session_timeout', 'idle_in_transaction_session_timeout')";

fn held_sql(scope: &LockScope) -> &'static str {
    match scope {
        LockScope::Migrations => HELD_MIGRATIONS,
        LockScope::Plan(_) => HELD_PLAN,
    }
}

fn barrier_sql(scope: &LockScope) -> &'static str {
    match scope {
        LockScope::Migrations => BARRIER_MIGRATIONS,
        LockScope::Plan(_) => BARRIER_PLAN,
    }
}

fn fence_sql(scope: &LockScope) -> &'static str {
    match scope {
        LockScope::Migrations => FENCE_MIGRATIONS,
        LockScope::Plan(_) => FENCE_PLAN,
    }
}

fn held_params<'a>(
    scope: &'a LockScope,
    pid: &'a i32,
) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    let mut params = scope.params();
    params.push(pid);
    params
}

fn fence_params<'a>(
    scope: &'a LockScope,
    pid: &'a i32,
) -> Vec<&'a (dyn tokio_postgres::types::ToSql + Sync)> {
    let mut params = held_params(scope, pid);
    params.push(&FENCE_CLASS);
    params
}

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
    let prepared = async {
        client.query_one(NO_IDLE_TIMEOUTS, &[]).await?;
        client.query_one("SELECT pg_backend_pid()", &[]).await
    }
    .await
    .map_err(|e| {
        Error::db(
            format!("cannot prepare the session to lock {}", scope.describe()),
            e,
        )
    })?;
    let pid: i32 = prepared.get(0);
    let started = Instant::now();
    let params = scope.params();
    loop {
        let row = client
            .query_one(try_sql(&scope), &params)
            .await
            .map_err(|e| Error::db(format!("cannot lock {}", scope.describe()), e))?;
        if row.get::<_, bool>(0) {
            tracing::debug!("locked {}", scope.describe());
            wait_for_previous_holder(&client, &scope).await?;
            let client = Arc::new(client);
            let fence = Fence::new(scope.clone(), pid);
            let watcher = watch(client.clone(), scope.clone(), fence.clone());
            return Ok(LockGuard {
                client,
                scope,
                fence,
                watcher,
                registry: None,
            });
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

/// Take the fence's barrier exclusively once: wait for the recording
/// transactions a previous holder of the lock still has in flight.
async fn wait_for_previous_holder(client: &Client, scope: &LockScope) -> Result<()> {
    let result = async {
        client.batch_execute("BEGIN").await?;
        client
            .query_one(barrier_sql(scope), &[scope.params()[1], &FENCE_CLASS])
            .await?;
        client.batch_execute("COMMIT").await
    }
    .await;
    if let Err(e) = result {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(Error::db(
            format!(
                "cannot take over {} from its previous holder",
                scope.describe()
            ),
            e,
        ));
    }
    Ok(())
}

impl super::Store {
    /// Take a lock on its own connection (named after this store's, with
    /// `suffix`), fencing this store's bookkeeping with it while it is held.
    pub async fn lock(&self, suffix: &str, scope: LockScope, wait: Duration) -> Result<LockGuard> {
        let guard = acquire(
            self.settings(),
            &format!("{} ({suffix})", self.application_name()),
            scope,
            wait,
        )
        .await?;
        Ok(guard.fence_store(self))
    }

    /// The locks this store's bookkeeping is fenced by (to fence the
    /// connections of a backfill run the same way).
    pub fn fences(&self) -> Vec<Fence> {
        self.fences.all()
    }

    /// Fence this store's bookkeeping by `fences` too.
    pub fn adopt_fences(&self, fences: &[Fence]) {
        for fence in fences {
            self.fences.add(fence.clone());
        }
    }

    /// A lock of this store that its watcher saw lost.
    pub fn lost_fence(&self) -> Option<Fence> {
        self.fences.all().into_iter().find(Fence::is_lost)
    }

    /// In the caller's open transaction: the first lock this store is
    /// fenced by that its session no longer holds (or that the watcher saw
    /// lost), holding each fence's barrier until the transaction ends.
    pub(crate) async fn lost_fence_in_transaction(
        &self,
    ) -> std::result::Result<Option<Fence>, tokio_postgres::Error> {
        for fence in self.fences.all() {
            if fence.is_lost() {
                return Ok(Some(fence));
            }
            // The barrier first, then the check, as two statements.
            self.client()
                .query_one(
                    fence_sql(&fence.scope),
                    &fence_params(&fence.scope, &fence.pid),
                )
                .await?;
            let row = self
                .client()
                .query_one(
                    held_sql(&fence.scope),
                    &held_params(&fence.scope, &fence.pid),
                )
                .await?;
            if !row.get::<_, bool>(0) {
                fence.mark_lost("its session no longer holds it".to_string());
                return Ok(Some(fence));
            }
        }
        Ok(None)
    }

    /// `lost_fence_in_transaction` as an error: call it inside the
    /// transaction that records a state change, before committing.
    pub async fn check_fences(&self) -> Result<()> {
        match self.lost_fence_in_transaction().await {
            Ok(None) => Ok(()),
            Ok(Some(fence)) => Err(fence.error()),
            Err(e) => Err(Error::db(
                "cannot check that this process still holds its locks",
                e,
            )),
        }
    }

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
