//! Plan state in `orch.plans`, `orch.phases`, `orch.check_results` and the
//! event log `orch.events`.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::{Error, PgDiagnostic, Result};
use crate::plan::records::{CheckResultRecord, EventRecord, PhaseRecord, PlanRecord};
use crate::plan::{AuditAction, PhaseKind, PhaseState};
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;

/// The heartbeat columns are read through `to_jsonb`, so `status` still
/// reads a schema an older orch created (upgraded by the next command
/// that writes).
const PHASE_COLUMNS: &str =
    "plan, position, id, kind, state, definition_checksum, started_at, finished_at, ran_by,
    gate_opened_at, confirmed_by, confirmed_at, note, error, result, pause_requested, updated_at,
    (to_jsonb(p) ->> 'run_pid')::int, to_jsonb(p) ->> 'run_host'";

/// A value in orch's tables that this orch does not know: written by a
/// newer orch, or edited by hand. Said, never guessed.
fn unknown(table: &str, row: &str, column: &str, value: &str) -> Error {
    Error::failed(format!(
        "{table} row {row} has {column} {value:?}, which this orch does not know; a newer orch may have written it (upgrade orch)"
    ))
}

fn phase_from_row(r: &Row) -> Result<PhaseRecord> {
    let (plan, position, kind, state): (String, i32, String, String) =
        (r.get(0), r.get(1), r.get(3), r.get(4));
    let row = format!("{plan}/{position}");
    Ok(PhaseRecord {
        kind: PhaseKind::parse(&kind).ok_or_else(|| unknown("orch.phases", &row, "kind", &kind))?,
        state: PhaseState::parse(&state)
            .ok_or_else(|| unknown("orch.phases", &row, "state", &state))?,
        plan,
        position,
        id: r.get(2),
        definition_checksum: r.get(5),
        started_at: r.get(6),
        finished_at: r.get(7),
        ran_by: r.get(8),
        gate_opened_at: r.get(9),
        confirmed_by: r.get(10),
        confirmed_at: r.get(11),
        note: r.get(12),
        error: r.get(13),
        result: r.get(14),
        pause_requested: r.get(15),
        updated_at: r.get(16),
        run_pid: r.get(17),
        run_host: r.get(18),
    })
}

fn event_from_row(r: &Row) -> Result<EventRecord> {
    let (id, action): (i64, String) = (r.get(0), r.get(5));
    Ok(EventRecord {
        id,
        at: r.get(1),
        plan: r.get(2),
        phase: r.get(3),
        actor: r.get(4),
        action: AuditAction::parse(&action)
            .ok_or_else(|| unknown("orch.events", &id.to_string(), "action", &action))?,
        detail: r.get(6),
    })
}

fn plan_from_row(r: &Row) -> PlanRecord {
    PlanRecord {
        name: r.get(0),
        file: r.get(1),
        started_checksum: r.get(2),
        checksum: r.get(3),
        definition: r.get(4),
        started_at: r.get(5),
        started_by: r.get(6),
        completed_at: r.get(7),
    }
}

const PLAN_COLUMNS: &str =
    "name, file, started_checksum, checksum, definition, started_at, started_by, completed_at";

impl Store {
    /// The database's clock: every timestamp orch records comes from it, so
    /// checks comparing with the application's `now()` agree.
    pub async fn server_time(&self) -> Result<DateTime<Utc>> {
        let row = self
            .client()
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .map_err(|e| Error::db("cannot read the server's clock", e))?;
        Ok(row.get(0))
    }

    /// A plan's record and phases (by position), if it has started.
    pub async fn plan_state(&self, name: &str) -> Result<Option<(PlanRecord, Vec<PhaseRecord>)>> {
        if !self.schema_exists().await? {
            return Ok(None);
        }
        let sql = format!("SELECT {PLAN_COLUMNS} FROM orch.plans WHERE name = $1");
        let Some(row) = self
            .client()
            .query_opt(&sql, &[&name])
            .await
            .map_err(|e| Error::db("cannot read orch.plans", e))?
        else {
            return Ok(None);
        };
        let phases = self.phases(name).await?;
        Ok(Some((plan_from_row(&row), phases)))
    }

    /// The name and recorded definition of every started plan.
    pub async fn recorded_plan_definitions(&self) -> Result<Vec<(String, serde_json::Value)>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        let rows = self
            .client()
            .query("SELECT name, definition FROM orch.plans ORDER BY name", &[])
            .await
            .map_err(|e| Error::db("cannot read orch.plans", e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Every started plan with its phases.
    pub async fn all_plan_states(&self) -> Result<Vec<(PlanRecord, Vec<PhaseRecord>)>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT {PLAN_COLUMNS} FROM orch.plans ORDER BY name");
        let rows = self
            .client()
            .query(&sql, &[])
            .await
            .map_err(|e| Error::db("cannot read orch.plans", e))?;
        let mut out = Vec::new();
        for row in rows {
            let plan = plan_from_row(&row);
            let phases = self.phases(&plan.name).await?;
            out.push((plan, phases));
        }
        Ok(out)
    }

    pub async fn phases(&self, plan: &str) -> Result<Vec<PhaseRecord>> {
        let sql =
            format!("SELECT {PHASE_COLUMNS} FROM orch.phases p WHERE plan = $1 ORDER BY position");
        let rows = self
            .client()
            .query(&sql, &[&plan])
            .await
            .map_err(|e| Error::db("cannot read orch.phases", e))?;
        rows.iter().map(phase_from_row).collect()
    }

    /// Create a plan and its (pending) phases.
    pub async fn create_plan(&self, plan: &PlanRecord, phases: &[PhaseRecord]) -> Result<()> {
        self.begin_fenced().await?;
        let result = async {
            self.client()
                .execute(
                    "INSERT INTO orch.plans (name, file, started_checksum, checksum, definition, started_by)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[&plan.name, &plan.file, &plan.started_checksum, &plan.checksum, &plan.definition, &plan.started_by],
                )
                .await?;
            for phase in phases {
                self.insert_phase_row(phase).await?;
            }
            self.client().batch_execute("COMMIT").await
        }
        .await;
        if let Err(e) = result {
            self.rollback().await;
            return Err(Error::db(format!("cannot record plan {}", plan.name), e));
        }
        Ok(())
    }

    /// Replace the phases that have not run with the file's, and record the
    /// new definition (an accepted edit of later phases).
    pub async fn replace_pending_phases(
        &self,
        plan: &str,
        checksum: &str,
        definition: &serde_json::Value,
        first_pending: i32,
        phases: &[PhaseRecord],
        event: &Bookkeeping,
    ) -> Result<()> {
        self.begin_fenced().await?;
        let result = async {
            // Replaced phases start over: a failed backfill's cursor belongs
            // to the definition it ran with.
            self.client()
                .execute(
                    "DELETE FROM orch.backfill_workers WHERE plan = $1 AND phase IN
                       (SELECT id FROM orch.phases WHERE plan = $1 AND position >= $2)",
                    &[&plan, &first_pending],
                )
                .await?;
            for table in ["orch.backfill_errors", "orch.backfill_queue"] {
                self.client()
                    .execute(
                        &format!(
                            "DELETE FROM {table} WHERE plan = $1 AND phase IN
                               (SELECT id FROM orch.phases WHERE plan = $1 AND position >= $2)"
                        ),
                        &[&plan, &first_pending],
                    )
                    .await?;
            }
            self.client()
                .execute(
                    "DELETE FROM orch.phases WHERE plan = $1 AND position >= $2",
                    &[&plan, &first_pending],
                )
                .await?;
            for phase in phases {
                self.insert_phase_row(phase).await?;
            }
            self.client()
                .execute(
                    "UPDATE orch.plans SET checksum = $2, definition = $3 WHERE name = $1",
                    &[&plan, &checksum, definition],
                )
                .await?;
            self.write_bookkeeping(std::slice::from_ref(event)).await?;
            self.client().batch_execute("COMMIT").await
        }
        .await;
        if let Err(e) = result {
            self.rollback().await;
            return Err(Error::db(
                format!("cannot record the edit of plan {plan}"),
                e,
            ));
        }
        Ok(())
    }

    async fn insert_phase_row(&self, p: &PhaseRecord) -> Result<(), tokio_postgres::Error> {
        self.client()
            .execute(
                "INSERT INTO orch.phases (plan, position, id, kind, state) VALUES ($1, $2, $3, $4, $5)",
                &[&p.plan, &p.position, &p.id, &p.kind.name(), &p.state.name()],
            )
            .await
            .map(|_| ())
    }

    /// Write a phase's full row (inside the caller's transaction).
    pub(crate) async fn write_phase_row(
        &self,
        p: &PhaseRecord,
    ) -> Result<(), tokio_postgres::Error> {
        let params: [&(dyn ToSql + Sync); 18] = [
            &p.plan,
            &p.position,
            &p.state.name(),
            &p.definition_checksum,
            &p.started_at,
            &p.finished_at,
            &p.ran_by,
            &p.gate_opened_at,
            &p.confirmed_by,
            &p.confirmed_at,
            &p.note,
            &p.error,
            &p.result,
            &p.pause_requested,
            &p.id,
            &p.kind.name(),
            &p.run_pid,
            &p.run_host,
        ];
        self.client()
            .execute(
                "UPDATE orch.phases SET state = $3, definition_checksum = $4, started_at = $5, finished_at = $6,
                    ran_by = $7, gate_opened_at = $8, confirmed_by = $9, confirmed_at = $10, note = $11,
                    error = $12, result = $13, pause_requested = $14, id = $15, kind = $16,
                    run_pid = $17, run_host = $18, updated_at = clock_timestamp()
                 WHERE plan = $1 AND position = $2",
                &params,
            )
            .await
            .map(|_| ())
    }

    /// Ask a running backfill to pause after its current batch.
    pub async fn request_pause(&self, plan: &str, position: i32) -> Result<bool> {
        let n = self
            .client()
            .execute(
                "UPDATE orch.phases SET pause_requested = true WHERE plan = $1 AND position = $2 AND state = 'running'",
                &[&plan, &position],
            )
            .await
            .map_err(|e| Error::db("cannot request a pause", e))?;
        Ok(n == 1)
    }

    /// Set or clear the pause flag of a phase whatever its state: a re-run
    /// of a finished backfill (`orch backfill`) watches it too.
    pub async fn set_pause_request(
        &self,
        plan: &str,
        position: i32,
        requested: bool,
    ) -> Result<()> {
        self.client()
            .execute(
                "UPDATE orch.phases SET pause_requested = $3 WHERE plan = $1 AND position = $2",
                &[&plan, &position, &requested],
            )
            .await
            .map_err(|e| Error::db("cannot set the pause flag", e))?;
        Ok(())
    }

    /// Has an operator asked this phase to pause?
    pub async fn pause_requested(&self, plan: &str, position: i32) -> Result<bool> {
        let row = self
            .client()
            .query_opt(
                "SELECT pause_requested FROM orch.phases WHERE plan = $1 AND position = $2",
                &[&plan, &position],
            )
            .await
            .map_err(|e| Error::db("cannot read the pause flag", e))?;
        Ok(row.is_some_and(|r| r.get(0)))
    }

    /// Record the latest result of a check (upsert) with an event.
    pub async fn record_check(&self, plan: &str, result: &CheckResultRecord) -> Result<()> {
        self.begin_fenced().await?;
        let written = self
            .client()
            .execute(
                "INSERT INTO orch.check_results (plan, phase, check_name, sql, passed, detail, evaluated_at, evaluated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (plan, phase, check_name) DO UPDATE
                 SET sql = EXCLUDED.sql, passed = EXCLUDED.passed, detail = EXCLUDED.detail,
                     evaluated_at = EXCLUDED.evaluated_at, evaluated_by = EXCLUDED.evaluated_by",
                &[
                    &plan,
                    &result.phase,
                    &result.check_name,
                    &result.sql,
                    &result.passed,
                    &result.detail,
                    &result.evaluated_at,
                    &result.evaluated_by,
                ],
            )
            .await;
        let committed = match written {
            Ok(_) => self.client().batch_execute("COMMIT").await,
            Err(e) => Err(e),
        };
        if let Err(e) = committed {
            self.rollback().await;
            return Err(Error::db("cannot record a check result", e));
        }
        Ok(())
    }

    pub async fn check_results(&self, plan: &str) -> Result<Vec<CheckResultRecord>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        let rows = self
            .client()
            .query(
                "SELECT phase, check_name, sql, passed, detail, evaluated_at, evaluated_by
                 FROM orch.check_results WHERE plan = $1 ORDER BY phase, check_name",
                &[&plan],
            )
            .await
            .map_err(|e| Error::db("cannot read check results", e))?;
        Ok(rows
            .iter()
            .map(|r| CheckResultRecord {
                phase: r.get(0),
                check_name: r.get(1),
                sql: r.get(2),
                passed: r.get(3),
                detail: r.get(4),
                evaluated_at: r.get(5),
                evaluated_by: r.get(6),
            })
            .collect())
    }

    pub async fn events(&self, plan: &str) -> Result<Vec<EventRecord>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        let rows = self
            .client()
            .query(
                "SELECT id, at, plan, phase, actor, action, detail FROM orch.events WHERE plan = $1 ORDER BY id",
                &[&plan],
            )
            .await
            .map_err(|e| Error::db("cannot read the event log", e))?;
        rows.iter().map(event_from_row).collect()
    }

    /// The latest event of `plan` whose action moved a phase (see
    /// `AuditAction::moved_by`), if any.
    pub async fn latest_move(&self, plan: &str) -> Result<Option<EventRecord>> {
        if !self.schema_exists().await? {
            return Ok(None);
        }
        let moves: Vec<&str> = AuditAction::ALL
            .into_iter()
            .filter(|a| a.moved_by().is_some())
            .map(AuditAction::name)
            .collect();
        let row = self
            .client()
            .query_opt(
                "SELECT id, at, plan, phase, actor, action, detail FROM orch.events
                 WHERE plan = $1 AND action = ANY($2) ORDER BY id DESC LIMIT 1",
                &[&plan, &moves],
            )
            .await
            .map_err(|e| Error::db("cannot read the event log", e))?;
        row.as_ref().map(event_from_row).transpose()
    }

    /// Evaluate one check: a single statement returning one boolean, in a
    /// read-only transaction under `statement_timeout`, with placeholders
    /// bound as timestamptz parameters.
    pub async fn evaluate_check(
        &self,
        sql: &str,
        params: &[Option<DateTime<Utc>>],
        statement_timeout_ms: u64,
    ) -> Result<std::result::Result<Option<bool>, String>> {
        let begin =
            format!("BEGIN READ ONLY; SET LOCAL statement_timeout = {statement_timeout_ms};");
        self.client()
            .batch_execute(&begin)
            .await
            .map_err(|e| Error::db("cannot start a read-only transaction", e))?;
        if let Err(e) = self.enter_check_role().await {
            self.rollback().await;
            return Err(e);
        }
        let outcome = self.check_in_transaction(sql, params).await;
        self.rollback().await;
        Ok(outcome)
    }

    /// Evaluate checks inside the open transaction (a migration's, after
    /// its statements took their locks) within `budget`, in order, up to the
    /// first whose value is not true: their values, or `Recheck::TooSlow` when
    /// they did not finish within the budget (then the transaction is as it
    /// was before them, still holding its locks). `restore_timeout_ms` is
    /// the transaction's statement_timeout after them.
    pub async fn checks_within(
        &self,
        checks: &[(&str, &[Option<DateTime<Utc>>])],
        budget: std::time::Duration,
        restore_timeout_ms: u128,
    ) -> Result<Recheck> {
        let setup = format!(
            "SAVEPOINT orch_recheck; SET LOCAL statement_timeout = {}",
            budget.as_millis().max(1)
        );
        self.client()
            .batch_execute(&setup)
            .await
            .map_err(|e| Error::db("cannot start the guard's second evaluation", e))?;
        self.enter_check_role().await?;
        let mut values = Vec::new();
        for (sql, params) in checks {
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            let result = self.client().query(*sql, &refs).await;
            if let Err(e) = &result
                && PgDiagnostic::from_driver(e).is_some_and(|d| d.sqlstate == "57014")
            {
                self.client()
                    .batch_execute("ROLLBACK TO SAVEPOINT orch_recheck")
                    .await
                    .map_err(|e| Error::db("cannot undo the guard's second evaluation", e))?;
                return Ok(Recheck::TooSlow);
            }
            let value = one_boolean(result);
            let holds = value == Ok(Some(true));
            values.push(value);
            if !holds {
                // The caller rolls the transaction back.
                return Ok(Recheck::Values(values));
            }
        }
        self.leave_check_role().await?;
        let restore = format!(
            "RELEASE SAVEPOINT orch_recheck; SET LOCAL statement_timeout = {restore_timeout_ms}"
        );
        self.client()
            .batch_execute(&restore)
            .await
            .map_err(|e| Error::db("cannot end the guard's second evaluation", e))?;
        Ok(Recheck::Values(values))
    }

    /// Evaluate one check inside the transaction already open on the
    /// working connection: its value, or why it has none.
    async fn check_in_transaction(
        &self,
        sql: &str,
        params: &[Option<DateTime<Utc>>],
    ) -> std::result::Result<Option<bool>, String> {
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        one_boolean(self.client().query(sql, &refs).await)
    }
}

/// A check's value: its boolean (NULL as `None`), or why it has none.
pub type CheckValue = std::result::Result<Option<bool>, String>;

/// The guard's second evaluation, inside a migration's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// The values, up to and including the first that is not true.
    Values(Vec<CheckValue>),
    /// They did not finish within their time budget (the transaction is as
    /// it was before them).
    TooSlow,
}

/// A check's rows as its one boolean, or why they are not one.
fn one_boolean(
    result: std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>,
) -> std::result::Result<Option<bool>, String> {
    match result {
        Ok(rows) => match rows.as_slice() {
            [row] if row.len() == 1 => match row.try_get::<_, Option<bool>>(0) {
                Ok(value) => Ok(value),
                Err(_) => Err(format!(
                    "returned a {} instead of a boolean",
                    row.columns()[0].type_().name()
                )),
            },
            [row] => Err(format!(
                "returned {} columns instead of one boolean",
                row.len()
            )),
            rows => Err(format!("returned {} rows instead of one", rows.len())),
        },
        Err(e) => Err(match PgDiagnostic::from_driver(&e) {
            Some(d) => format!("failed: {d}"),
            None => format!("failed: {e}"),
        }),
    }
}
