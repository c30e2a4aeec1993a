//! What a backfill reads of the server's health before each batch: how far
//! behind its standbys replay (`pg_stat_replication`; a role without
//! `pg_monitor` sees no lag there), and how much WAL the server has written.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::store::Store;

/// One look at the server's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerHealth {
    /// The furthest behind of the standbys that replay (zero without any).
    pub replica_lag: Duration,
    /// How many standbys replay.
    pub standbys: i64,
    /// The WAL written since the cluster began, in bytes (its position).
    pub wal_bytes: i64,
}

/// A standby that has replayed everything the server wrote is not behind,
/// whatever its last `replay_lag` said (PostgreSQL keeps the last measured
/// lag until two idle status messages in a row, up to 2 ×
/// `wal_receiver_status_interval`). Otherwise `replay_lag`, which grows
/// while replay is stuck. Standbys being cloned (`pg_basebackup`) have no
/// replay position and are left out.
const HEALTH: &str = "
    SELECT coalesce(max(CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN 0
                             ELSE coalesce(extract(epoch FROM replay_lag), 0) END), 0)::float8,
           count(*),
           pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8
    FROM pg_stat_replication
    WHERE replay_lsn IS NOT NULL";

impl Store {
    /// Read the server's health (one query).
    pub async fn server_health(&self) -> Result<ServerHealth> {
        let row = async {
            let health = self
                .health
                .get_or_try_init(|| self.client().prepare(HEALTH))
                .await?;
            self.client().query_one(health, &[]).await
        }
        .await
        .map_err(|e| Error::db("cannot read the standbys' replay lag", e))?;
        let lag: f64 = row.get(0);
        Ok(ServerHealth {
            replica_lag: Duration::from_secs_f64(lag.max(0.0)),
            standbys: row.get(1),
            wal_bytes: row.get(2),
        })
    }

    /// Record (or clear) why a backfill worker waits, for `orch status`.
    pub async fn record_backfill_wait(
        &self,
        plan: &str,
        phase: &str,
        worker: i32,
        waiting: Option<&str>,
    ) -> Result<()> {
        self.client()
            .execute(
                "UPDATE orch.backfill_workers SET waiting = $4 WHERE plan = $1 AND phase = $2 AND worker = $3",
                &[&plan, &phase, &worker, &waiting],
            )
            .await
            .map_err(|e| Error::db("cannot record the backfill's wait", e))?;
        Ok(())
    }
}
