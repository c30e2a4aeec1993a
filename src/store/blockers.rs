//! Who is in our way: while a DDL statement waits for a lock, a side
//! connection samples what it waits for and which sessions block it, so a
//! lock timeout can name the holder (pid, application_name, query).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::connect::ConnectionSettings;
use crate::events::{Blocker, LockWaitSample};
use crate::store::lock_probe::without_probes;

const SAMPLE: &str = "
    SELECT w.mode || ' on ' || w.locktype ||
             coalesce(' ' || w.relation::regclass::text, ''),
           b.pid, coalesce(b.application_name, ''), coalesce(b.backend_type, ''),
           coalesce(b.state, ''), left(coalesce(b.query, ''), 300),
           b.xact_start, b.query_start
    FROM pg_locks w
    CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS bp(pid)
    JOIN pg_stat_activity b ON b.pid = bp.pid
    WHERE w.pid = $1 AND NOT w.granted
    ORDER BY b.xact_start NULLS LAST";

/// A lazily opened monitoring connection, shared by every watch of a run.
#[derive(Clone)]
pub struct BlockerMonitor {
    settings: ConnectionSettings,
    client: Arc<OnceCell<Option<Client>>>,
}

impl BlockerMonitor {
    pub fn new(settings: &ConnectionSettings) -> BlockerMonitor {
        BlockerMonitor {
            settings: settings.clone(),
            client: Arc::new(OnceCell::new()),
        }
    }

    async fn client(&self) -> Option<&Client> {
        self.client
            .get_or_init(|| async {
                match self.settings.connect("orch lock monitor").await {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!("cannot open the lock monitoring connection: {e}");
                        None
                    }
                }
            })
            .await
            .as_ref()
    }

    /// Sample what `pid` waits for right now (None: it is not waiting).
    pub async fn sample(&self, pid: i32) -> Option<LockWaitSample> {
        let client = self.client().await?;
        let rows = match client.query(SAMPLE, &[&pid]).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!("lock sample failed: {e}");
                return None;
            }
        };
        let first = rows.first()?;
        Some(LockWaitSample {
            waiting_for: first.get(0),
            blockers: rows
                .iter()
                .map(|r| Blocker {
                    pid: r.get(1),
                    application_name: r.get(2),
                    backend_type: r.get(3),
                    state: r.get(4),
                    // Another orch's migration script: without its probes.
                    query: without_probes(r.get(5)),
                    xact_start: r.get(6),
                    query_start: r.get(7),
                })
                .collect(),
        })
    }

    /// Start sampling `pid` every `interval` (after one interval) until the
    /// returned watch is stopped; keeps the latest sample that saw a wait.
    pub fn watch(&self, pid: i32, interval: Duration) -> BlockerWatch {
        let last: Arc<Mutex<Option<LockWaitSample>>> = Arc::new(Mutex::new(None));
        let monitor = self.clone();
        let slot = last.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Some(sample) = monitor.sample(pid).await {
                    *slot.lock().unwrap() = Some(sample);
                }
            }
        });
        BlockerWatch { task, last }
    }
}

/// A running watch; `stop` returns the last wait it saw.
pub struct BlockerWatch {
    task: JoinHandle<()>,
    last: Arc<Mutex<Option<LockWaitSample>>>,
}

impl BlockerWatch {
    pub fn stop(self) -> Option<LockWaitSample> {
        self.task.abort();
        self.last.lock().unwrap().take()
    }
}
