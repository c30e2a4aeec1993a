//! What the engine tells the outside world while it works. The engine emits
//! events; a `Reporter` (human or JSON, in the CLI) decides how they look.

use serde::Serialize;

use chrono::{DateTime, Utc};

use crate::plan::{PhaseKind, PhaseState};
use crate::timefmt;

/// Up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Up => "up",
            Direction::Down => "down",
        })
    }
}

/// A session holding a lock we wait for.
#[derive(Debug, Clone, Serialize)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    pub backend_type: String,
    pub state: String,
    pub query: String,
    pub xact_start: Option<DateTime<Utc>>,
    pub query_start: Option<DateTime<Utc>>,
}

impl Blocker {
    pub fn is_autovacuum(&self) -> bool {
        self.backend_type == "autovacuum worker"
    }

    /// One line for people: pid, application, state, times, query.
    pub fn describe(&self) -> String {
        let kind = if self.is_autovacuum() {
            "autovacuum worker, ".to_string()
        } else {
            String::new()
        };
        let state = if self.state.is_empty() {
            "state unknown"
        } else {
            &self.state
        };
        let mut times = String::new();
        if let Some(t) = self.xact_start {
            times.push_str(&format!(", transaction started {}", timefmt::utc(&t)));
        }
        if let Some(t) = self.query_start {
            times.push_str(&format!(", query started {}", timefmt::utc(&t)));
        }
        format!(
            "pid {} ({kind}application_name {:?}, {state}{times}): {}",
            self.pid,
            self.application_name,
            self.query.trim()
        )
    }
}

/// One observation of a lock wait.
#[derive(Debug, Clone, Serialize)]
pub struct LockWaitSample {
    /// e.g. `AccessExclusiveLock on relation posts`
    pub waiting_for: String,
    pub blockers: Vec<Blocker>,
}

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    pub name: String,
    pub sql: String,
    pub passed: bool,
    /// Why it did not pass: "returned false", "returned NULL", an error...
    pub detail: Option<String>,
}

/// A check as written: its name and SQL.
#[derive(Debug, Clone, Serialize)]
pub struct NamedSql {
    pub name: String,
    pub sql: String,
}

/// Dry run: what a phase's work would do (`orch advance --dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct WouldDo {
    /// In words: `apply 20240102000000_add_posts_loc (up) in one transaction ...`.
    pub what: String,
    /// Facts the operator weighs, each a name and a value (`table`,
    /// `public.posts`; `rows`, `~3000 ...`).
    pub facts: Vec<(String, String)>,
    /// The SQL it would run, and what to know about it.
    pub sql: Option<NamedSql>,
}

/// Something that happened (or, in a dry run, would happen).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Dry run: the SQL that would run for one migration.
    MigrationWouldRun {
        id: String,
        direction: Direction,
        transactional: bool,
        sql: String,
    },
    MigrationStarted {
        id: String,
        direction: Direction,
    },
    /// Dry run (`orch advance --dry-run`): the phase `orch advance` would
    /// run next and what it would do; nothing was changed.
    PhaseWouldRun {
        plan: String,
        position: usize,
        total: usize,
        id: String,
        kind: PhaseKind,
        title: String,
        /// Notes on how it would start (`resumes ...`, `the plan has not
        /// started ...`).
        notes: Vec<String>,
        /// The guard, evaluated now (read-only, not recorded).
        guard: Vec<CheckOutcome>,
        work: WouldDo,
        instructions: Option<String>,
        /// What `orch confirm` evaluates after the work.
        checks: Vec<NamedSql>,
    },
    MigrationDone {
        id: String,
        direction: Direction,
        duration_ms: u64,
        attempts: u32,
    },
    /// A statement timed out waiting for a lock; orch backs off and retries.
    LockRetry {
        target: String,
        attempt: u32,
        attempts: u32,
        lock_timeout_ms: u64,
        retry_in_ms: u64,
        next_lock_timeout_ms: u64,
        wait: Option<LockWaitSample>,
        note: Option<String>,
    },
    /// `orch advance` started a phase.
    PhaseStarted {
        plan: String,
        position: usize,
        total: usize,
        id: String,
        kind: PhaseKind,
        title: String,
        resumed: bool,
    },
    /// A deploy gate opened: the operator deploys, then confirms.
    GateOpened {
        plan: String,
        position: usize,
        total: usize,
        id: String,
        title: String,
        instructions: String,
        confirm_command: String,
    },
    /// A phase's work finished; it now waits for confirmation.
    PhaseDone {
        plan: String,
        position: usize,
        id: String,
        summary: String,
        confirm_command: String,
    },
    /// Checks (or guards) were evaluated.
    ChecksEvaluated {
        plan: String,
        phase: String,
        purpose: String,
        outcomes: Vec<CheckOutcome>,
    },
    PhaseConfirmed {
        plan: String,
        position: usize,
        id: String,
        by: String,
        next: String,
    },
    RolledBack {
        plan: String,
        position: usize,
        id: String,
        state: PhaseState,
        note: String,
    },
    /// Backfill: the run started (or resumed).
    BackfillStarted {
        table: String,
        key: Vec<String>,
        workers: u32,
        total_estimate: u64,
        estimate_source: String,
        rows_done_before: u64,
    },
    /// Backfill: one batch committed.
    BackfillBatch {
        worker: u32,
        rows_done: u64,
        rows_in_batch: u64,
        batch_ms: u64,
        batch_size: u64,
        total_estimate: u64,
        /// A command backfill's rows its program rejected or left out so
        /// far (recounted about once a second).
        #[serde(skip_serializing_if = "is_zero")]
        rows_rejected: u64,
    },
    /// Backfill: a worker waits before its next batch for the server's
    /// health (`reason`, e.g. `waiting for replica lag 7.2 s > 5 s`), or
    /// goes on (None).
    BackfillWaiting {
        worker: u32,
        reason: Option<String>,
    },
    /// Backfill: the run ended (finished, paused or interrupted).
    BackfillEnded {
        outcome: String,
        rows_done: u64,
        summary: String,
    },
    /// Plain information for the operator ("nothing to apply", ...).
    Info {
        message: String,
    },
    Warning {
        message: String,
    },
}

/// Receives the engine's events.
pub trait Reporter: Send + Sync {
    fn report(&self, event: Event);
}

/// Discards every event (tests, internal calls).
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _event: Event) {}
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
