//! What orch records in the same transaction as the work it describes:
//! migration rows, phase state, events. Written inside the caller's open
//! transaction, so the record and the change commit (or vanish) together.

use chrono::{DateTime, Utc};

use crate::migration::held_locks::HeldLock;
use crate::plan::AuditAction;
use crate::plan::records::PhaseRecord;
use crate::store::Store;
use crate::store::migrations::{DirtyState, Origin};

/// One record to write.
#[derive(Debug, Clone)]
pub enum Bookkeeping {
    MigrationApplied {
        version: i64,
        name: String,
        checksum: String,
        applied_by: String,
        duration_ms: i64,
        execution_ms: i64,
        attempts: i32,
        plan: Option<String>,
        phase: Option<String>,
        /// What its statements locked, and for how long (None: unknown).
        locks: Option<Vec<HeldLock>>,
    },
    MigrationReverted {
        version: i64,
    },
    /// A migration recorded as applied without orch running it: adopted
    /// from another tool's table, or marked by a baseline. `applied_at`:
    /// when the other tool applied it, where it kept that (else now).
    MigrationMarked {
        version: i64,
        name: String,
        checksum: String,
        applied_at: Option<DateTime<Utc>>,
        applied_by: String,
        origin: Origin,
    },
    /// A `transaction:false` section stopped half-way: a new dirty row
    /// (up), or the applied row made dirty (down).
    MigrationDirty {
        version: i64,
        name: String,
        checksum: String,
        applied_by: String,
        plan: Option<String>,
        phase: Option<String>,
        dirty: DirtyState,
    },
    /// A dirty row the operator resolved as applied.
    MigrationResolved {
        version: i64,
        applied_by: String,
    },
    /// An applied migration's file was removed on purpose: keep the row,
    /// marked retired.
    MigrationRetired {
        version: i64,
    },
    /// An applied migration's file changed on purpose (e.g. its down
    /// section): record the file's checksum now.
    MigrationChecksumAccepted {
        version: i64,
        checksum: String,
    },
    /// The full new row of a phase.
    Phase(Box<PhaseRecord>),
    /// An entry of the append-only event log; `plan` is None for what
    /// happened outside any plan (a lint finding allowed in a migration
    /// `migrate up` ran).
    Event {
        plan: Option<String>,
        phase: Option<String>,
        actor: String,
        action: AuditAction,
        detail: serde_json::Value,
    },
    /// Mark a plan complete (Some) or not complete (None).
    PlanCompleted {
        plan: String,
        completed: bool,
    },
    /// Forget a backfill's cursors, its re-runs' too (rolling it back).
    ClearBackfill {
        plan: String,
        phase: String,
    },
}

impl Store {
    /// Write bookkeeping rows inside the caller's open transaction.
    pub async fn write_bookkeeping(
        &self,
        items: &[Bookkeeping],
    ) -> Result<(), tokio_postgres::Error> {
        let client = self.client();
        for item in items {
            match item {
                Bookkeeping::MigrationApplied {
                    version,
                    name,
                    checksum,
                    applied_by,
                    duration_ms,
                    execution_ms,
                    attempts,
                    plan,
                    phase,
                    locks,
                } => {
                    let locks: Option<serde_json::Value> = locks
                        .as_ref()
                        .map(|l| serde_json::to_value(l).expect("held locks serialise"));
                    client
                        .execute(
                            "INSERT INTO orch.migrations
                               (version, name, checksum, applied_by, duration_ms, execution_ms, attempts, plan, phase, locks)
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                            &[version, name, checksum, applied_by, duration_ms, execution_ms, attempts, plan, phase, &locks],
                        )
                        .await?;
                }
                Bookkeeping::MigrationReverted { version } => {
                    client
                        .execute("DELETE FROM orch.migrations WHERE version = $1", &[version])
                        .await?;
                }
                Bookkeeping::MigrationMarked {
                    version,
                    name,
                    checksum,
                    applied_at,
                    applied_by,
                    origin,
                } => {
                    client
                        .execute(
                            "INSERT INTO orch.migrations
                               (version, name, checksum, applied_at, applied_by, duration_ms, execution_ms, attempts, origin)
                             VALUES ($1, $2, $3, COALESCE($4, now()), $5, 0, 0, 0, $6)",
                            &[version, name, checksum, applied_at, applied_by, &origin.name()],
                        )
                        .await?;
                }
                Bookkeeping::MigrationDirty {
                    version,
                    name,
                    checksum,
                    applied_by,
                    plan,
                    phase,
                    dirty,
                } => {
                    let dirty = serde_json::to_value(dirty).expect("a dirty state serialises");
                    client
                        .execute(
                            "INSERT INTO orch.migrations
                               (version, name, checksum, applied_by, duration_ms, execution_ms, plan, phase, state, dirty)
                             VALUES ($1, $2, $3, $4, 0, 0, $5, $6, 'dirty', $7)
                             ON CONFLICT (version) DO UPDATE SET state = 'dirty', dirty = EXCLUDED.dirty",
                            &[version, name, checksum, applied_by, plan, phase, &dirty],
                        )
                        .await?;
                }
                Bookkeeping::MigrationResolved {
                    version,
                    applied_by,
                } => {
                    client
                        .execute(
                            "UPDATE orch.migrations
                             SET state = 'applied', dirty = NULL, origin = 'resolved', applied_by = $2, applied_at = now()
                             WHERE version = $1 AND state = 'dirty'",
                            &[version, applied_by],
                        )
                        .await?;
                }
                Bookkeeping::MigrationRetired { version } => {
                    client
                        .execute(
                            "UPDATE orch.migrations SET state = 'retired' WHERE version = $1 AND state = 'applied'",
                            &[version],
                        )
                        .await?;
                }
                Bookkeeping::MigrationChecksumAccepted { version, checksum } => {
                    client
                        .execute(
                            "UPDATE orch.migrations SET checksum = $2 WHERE version = $1 AND state = 'applied'",
                            &[version, checksum],
                        )
                        .await?;
                }
                Bookkeeping::Phase(record) => self.write_phase_row(record).await?,
                Bookkeeping::Event {
                    plan,
                    phase,
                    actor,
                    action,
                    detail,
                } => {
                    client
                        .execute(
                            "INSERT INTO orch.events (plan, phase, actor, action, detail) VALUES ($1, $2, $3, $4, $5)",
                            &[plan, phase, actor, &action.name(), detail],
                        )
                        .await?;
                }
                Bookkeeping::PlanCompleted { plan, completed } => {
                    client
                        .execute(
                            "UPDATE orch.plans SET completed_at = CASE WHEN $2 THEN clock_timestamp() END WHERE name = $1",
                            &[plan, completed],
                        )
                        .await?;
                }
                Bookkeeping::ClearBackfill { plan, phase } => {
                    client
                        .execute(
                            "DELETE FROM orch.backfill_workers WHERE plan = $1 AND phase IN ($2, $3)",
                            &[plan, phase, &super::backfill::rerun_key(phase)],
                        )
                        .await?;
                    // A command backfill's rejected rows and its queue go with it.
                    for sql in super::backfill_errors::CLEAR {
                        client
                            .execute(sql, &[plan, phase, &super::backfill::rerun_key(phase)])
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// BEGIN a transaction that records orch's state, once it has checked
    /// that this process still holds the locks it is fenced by (else
    /// nothing is begun, and the error says which lock was lost).
    pub(crate) async fn begin_fenced(&self) -> crate::Result<()> {
        if let Err(e) = self.client().batch_execute("BEGIN").await {
            return Err(crate::Error::db("cannot record orch's state", e));
        }
        if let Err(e) = self.check_fences().await {
            self.rollback().await;
            return Err(e);
        }
        Ok(())
    }

    /// BEGIN, write, COMMIT: for records that describe no other work.
    /// Nothing is written once a lock this store is fenced by is lost.
    pub async fn commit_bookkeeping(&self, items: &[Bookkeeping]) -> crate::Result<()> {
        self.begin_fenced().await?;
        let result = async {
            self.write_bookkeeping(items).await?;
            self.client().batch_execute("COMMIT").await
        }
        .await;
        if let Err(e) = result {
            self.rollback().await;
            return Err(crate::Error::db("cannot record orch's state", e));
        }
        Ok(())
    }
}
