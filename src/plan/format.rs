//! The plan file format, as serde types. Unknown fields are rejected
//! everywhere, so a typo is an error instead of a silently ignored setting.
//! `docs/plan-format.md` documents it for people.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A plan file: `plans/<name>.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// The plan's name; must match the file name without `.yaml`.
    pub plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub phases: Vec<PhaseSpec>,
}

/// What a phase does when advanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    /// Apply a migration from `migrations/` (by name).
    Migration,
    /// A gate: the operator deploys an application version, then confirms.
    Deploy,
    /// Update existing rows in short batches.
    Backfill,
    /// Evaluate checks only.
    Check,
    /// Install a trigger that keeps new columns computed from old ones (and
    /// back) while both application versions write.
    Sync,
}

impl PhaseKind {
    pub const ALL: [PhaseKind; 5] = [
        PhaseKind::Migration,
        PhaseKind::Deploy,
        PhaseKind::Backfill,
        PhaseKind::Check,
        PhaseKind::Sync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PhaseKind::Migration => "migration",
            PhaseKind::Deploy => "deploy",
            PhaseKind::Backfill => "backfill",
            PhaseKind::Check => "check",
            PhaseKind::Sync => "sync",
        }
    }

    pub fn parse(text: &str) -> Option<PhaseKind> {
        PhaseKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// Expand (add, backwards compatible) or contract (remove what the old
/// application version needed; needs a check before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Expand,
    Contract,
}

/// One phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseSpec {
    pub id: String,
    pub kind: PhaseKind,
    pub title: String,
    /// What the operator does or verifies in this phase (Markdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// For migration phases: expand or contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// For migration phases: the migration's name, or its version (always
    /// unambiguous; names need not be unique in a folder).
    /// `version: 20240102000000` is the same as `migration: 20240102000000`.
    #[serde(
        default,
        alias = "version",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "name_or_version"
    )]
    pub migration: Option<String>,
    /// For backfill phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillSpec>,
    /// For sync phases: the table, its old and new columns, and how each
    /// side is computed from the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncSpec>,
    /// Must all hold before `orch advance` runs the phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guard: Vec<CheckSpec>,
    /// Must all hold before `orch confirm` records the confirmation (and,
    /// for check phases, when the phase runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckSpec>,
    /// False for phases that cannot be undone without losing data.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub reversible: bool,
    /// For irreversible phases: what a forced rollback would lose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_loses: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// A named SQL check: one statement returning one row with one boolean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    pub name: String,
    pub sql: String,
}

/// How a backfill phase updates rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillSpec {
    /// `table` or `schema.table`.
    pub table: String,
    /// Key columns walked in order; default: the primary key (or a unique
    /// not-null key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// The SET list, e.g. `loc = point(lng, lat)`; empty when the phase
    /// runs a `command` instead (exactly one of the two is given).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub set: String,
    /// A program (argv, no shell) that computes each batch's new values
    /// (docs/backfill.md, "A backfill with your own program").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// With `command`: the columns the program is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reads: Option<Vec<String>>,
    /// With `command`: the columns the program may set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes: Option<Vec<String>>,
    /// With `command`: rows the program may reject before the phase fails
    /// (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_errors: Option<u64>,
    /// With `command`: how long the program may take over one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout: Option<String>,
    /// Only rows matching this condition are updated.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Target duration of one batch (default 100ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_time: Option<String>,
    /// Bounds of the adaptive batch size (rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_batch: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch: Option<u64>,
    /// Pause between batches (default none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// Upper bound on rows updated per second, over all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_second: Option<u64>,
    /// Parallel workers on disjoint key ranges (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// VACUUM the table every N batches, `auto` (the default: each time a
    /// fifth of a big table's rows was visited) or `off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vacuum_every: Option<VacuumEvery>,
    /// How the table is walked: by key (default) or by pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk: Option<WalkKind>,
    /// The key walk updates each range in two halves, the first a batch
    /// ahead, so the second half's new row versions fit on their own pages
    /// (default true; docs/backfill.md, "Making room").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make_room: Option<bool>,
    /// Pause before a batch while a standby's replay lag is over this
    /// (default 10s; `off` never waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replica_lag: Option<String>,
    /// Pause before a batch while the server writes WAL faster than this,
    /// e.g. `32MB/s` (default no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wal_rate: Option<String>,
    /// `synchronous_commit` of each batch's transaction (default `off`: a
    /// batch lost in a crash is lost with its cursor and redone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synchronous_commit: Option<String>,
}

/// How a backfill walks its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalkKind {
    /// Key ranges, in key order (an index walk per batch).
    Key,
    /// Ranges of pages (`ctid` ranges, a TID Range Scan per batch), then one
    /// pass by key over the rows still matching `where`.
    Physical,
}

impl WalkKind {
    pub fn name(self) -> &'static str {
        match self {
            WalkKind::Key => "key",
            WalkKind::Physical => "physical",
        }
    }
}

/// How a sync phase keeps old and new columns in step (`docs/plan-format.md`,
/// "Sync").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    /// `table` or `schema.table`.
    pub table: String,
    /// The columns the old application version writes.
    pub old: Vec<String>,
    /// The columns the new application version writes.
    pub new: Vec<String>,
    /// Every `new` column, as an SQL expression of the row's columns.
    pub up: BTreeMap<String, String>,
    /// Every `old` column from the new ones; without it, writes of the new
    /// version leave the old columns as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<BTreeMap<String, String>>,
}

/// Command-line overrides of a phase's backfill settings (they win over
/// the plan file's).
#[derive(Debug, Clone, Default)]
pub struct BackfillOverrides {
    pub workers: Option<u32>,
    pub batch_time: Option<Duration>,
    pub pause: Option<Duration>,
    pub max_rows_per_second: Option<u64>,
    pub vacuum_every: Option<crate::plan::tuning::VacuumPace>,
}

/// `vacuum_every` as written: a number of batches, a word (`auto`, `off`),
/// or anything else YAML holds, refused with the plan's other errors (at
/// the field's line, which a deserialization error would not name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VacuumEvery {
    Batches(u64),
    Word(String),
    Other(serde_yaml::Value),
}

/// A migration reference: a name, or a version written as a YAML number.
fn name_or_version<'de, D>(deserializer: D) -> std::result::Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    match Option::<serde_yaml::Value>::deserialize(deserializer)? {
        None | Some(serde_yaml::Value::Null) => Ok(None),
        Some(serde_yaml::Value::String(name)) => Ok(Some(name)),
        Some(serde_yaml::Value::Number(n)) if n.as_u64().is_some() => Ok(Some(n.to_string())),
        Some(_) => Err(serde::de::Error::custom(
            "expected a migration name or version, e.g. `migration: add_posts_loc` or `migration: 20240102000000`",
        )),
    }
}
