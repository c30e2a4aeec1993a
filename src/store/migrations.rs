//! Reading the tracking table `orch.migrations`: what is applied, how it
//! came to be recorded (run by orch, adopted from another tool, marked by
//! a baseline, resolved by hand), and which migration is dirty (a
//! `transaction:false` section that stopped half-way).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::migration::held_locks::HeldLock;
use crate::store::Store;

/// Whether a row records a finished migration or one that stopped half-way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    Applied,
    /// A `transaction:false` section failed after some of its statements
    /// ran: the database is partly changed until the operator resolves it.
    Dirty,
    /// Applied, and its file was removed on purpose (`orch migrate resolve
    /// VERSION --file-removed`): its absence is no longer a problem.
    Retired,
}

impl RecordState {
    pub const ALL: [RecordState; 3] = [
        RecordState::Applied,
        RecordState::Dirty,
        RecordState::Retired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecordState::Applied => "applied",
            RecordState::Dirty => "dirty",
            RecordState::Retired => "retired",
        }
    }
}

/// How a row came to be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// orch ran the migration.
    Ran,
    /// `orch migrate adopt`: another tool ran it.
    Adopted,
    /// `orch migrate baseline`: the database already had it.
    Baseline,
    /// `orch migrate resolve --applied`: it stopped half-way and the
    /// operator finished it by hand.
    Resolved,
}

impl Origin {
    pub const ALL: [Origin; 4] = [
        Origin::Ran,
        Origin::Adopted,
        Origin::Baseline,
        Origin::Resolved,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Origin::Ran => "ran",
            Origin::Adopted => "adopted",
            Origin::Baseline => "baseline",
            Origin::Resolved => "resolved",
        }
    }
}

/// Where a dirty migration stopped, and why (the row's `dirty` column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirtyState {
    /// "up" or "down": the section that stopped half-way.
    pub direction: String,
    /// The section's file, and the line where the failed statement starts.
    pub file: String,
    pub line: usize,
    /// 1-based: the statement that failed, of how many in the section.
    pub statement: usize,
    pub statements: usize,
    /// Statements that ran and stay applied.
    pub completed: usize,
    /// What PostgreSQL (or orch) said.
    pub error: String,
    pub sqlstate: Option<String>,
}

impl DirtyState {
    /// `migrations/2_b.sql:5 (statement 2 of 3, up)`.
    pub fn place(&self) -> String {
        format!(
            "{}:{} (statement {} of {}, {})",
            self.file, self.line, self.statement, self.statements, self.direction
        )
    }

    /// The error's first line, for one-line views.
    pub fn error_line(&self) -> &str {
        self.error.lines().next().unwrap_or_default()
    }
}

/// A row of `orch.migrations`.
#[derive(Debug, Clone, Serialize)]
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
    pub state: RecordState,
    pub origin: Origin,
    /// Set when `state` is dirty.
    pub dirty: Option<DirtyState>,
    /// What each statement locked and how long, for a migration orch ran
    /// (None: recorded by an orch before schema 4, or not run by orch).
    pub locks: Option<Vec<HeldLock>>,
}

impl AppliedMigration {
    /// `<version>_<name>`, as shown to people.
    pub fn id(&self) -> String {
        format!("{}_{}", self.version, self.name)
    }

    pub fn is_dirty(&self) -> bool {
        self.state == RecordState::Dirty
    }

    /// orch ran it to the end (so its durations mean something): not
    /// adopted, baselined, resolved by hand, nor stopped half-way.
    pub fn ran_to_the_end(&self) -> bool {
        self.origin == Origin::Ran && !self.is_dirty()
    }
}

impl Store {
    /// Applied migrations by version; empty when orch's schema does not exist.
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>> {
        if !self.schema_exists().await? {
            return Ok(Vec::new());
        }
        // state, origin and dirty came with schema 3, locks with 4;
        // read-only commands do not upgrade an older schema, so they are
        // read through to_jsonb, which has no such key (NULL: the
        // defaults) before the upgrade.
        let rows = self
            .client()
            .query(
                "SELECT version, name, checksum, applied_at, applied_by, duration_ms, execution_ms, attempts, plan, phase,
                        to_jsonb(m)->>'state', to_jsonb(m)->>'origin', to_jsonb(m)->'dirty', to_jsonb(m)->'locks'
                 FROM orch.migrations m ORDER BY version",
                &[],
            )
            .await
            .map_err(|e| Error::db("cannot read orch.migrations", e))?;
        rows.iter()
            .map(|r| {
                let version: i64 = r.get(0);
                let state: Option<String> = r.get(10);
                let origin: Option<String> = r.get(11);
                let dirty: Option<serde_json::Value> = r.get(12);
                let locks: Option<serde_json::Value> = r.get(13);
                Ok(AppliedMigration {
                    version,
                    name: r.get(1),
                    checksum: r.get(2),
                    applied_at: r.get(3),
                    applied_by: r.get(4),
                    duration_ms: r.get(5),
                    execution_ms: r.get(6),
                    attempts: r.get(7),
                    plan: r.get(8),
                    phase: r.get(9),
                    state: parse_named(version, "state", state, &RecordState::ALL, |s| s.name())?
                        .unwrap_or(RecordState::Applied),
                    origin: parse_named(version, "origin", origin, &Origin::ALL, |o| o.name())?
                        .unwrap_or(Origin::Ran),
                    dirty: match dirty {
                        None | Some(serde_json::Value::Null) => None,
                        Some(value) => {
                            Some(serde_json::from_value(value.clone()).map_err(|e| {
                                unknown(version, "dirty", &format!("{value} ({e})"))
                            })?)
                        }
                    },
                    locks: match locks {
                        None | Some(serde_json::Value::Null) => None,
                        Some(value) => {
                            Some(serde_json::from_value(value.clone()).map_err(|e| {
                                unknown(version, "locks", &format!("{value} ({e})"))
                            })?)
                        }
                    },
                })
            })
            .collect()
    }
}

/// The known value `text` names, None for NULL; a value this orch does not
/// know is an error that says it, never a guess.
fn parse_named<T: Copy>(
    version: i64,
    column: &str,
    text: Option<String>,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<Option<T>> {
    let Some(text) = text else {
        return Ok(None);
    };
    match all.iter().copied().find(|v| name(*v) == text) {
        Some(value) => Ok(Some(value)),
        None => Err(unknown(version, column, &format!("{text:?}"))),
    }
}

fn unknown(version: i64, column: &str, value: &str) -> Error {
    Error::refused(
        format!(
            "orch.migrations records migration {version} with {column} {value}, which this orch does not know; a newer orch may have written it"
        ),
        Some("upgrade orch".to_string()),
    )
}
