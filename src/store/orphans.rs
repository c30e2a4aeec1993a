//! Statements an earlier orch process left running: after `kill -9` its
//! lock is freed when its connection closes, but a statement its working
//! connection (or a backfill worker) had sent keeps running on the server,
//! holding its locks. Found by application_name (`identity::application_name`,
//! `(lock)` suffixes for lock sessions, `orch backfill PLAN PHASE ...` for
//! backfill connections).

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::lock_probe::without_probes;
use crate::store::locks::LockScope;
use crate::store::schema;

/// A backend running a statement of an orch process that no longer holds
/// the lock the statement needs.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub pid: i32,
    pub application_name: String,
    pub state: String,
    pub query: String,
    /// When its statement (or transaction) started.
    pub since: Option<DateTime<Utc>>,
}

/// Non-idle client backends of this database, other than `$1`'s pids and
/// lock sessions, whose application_name matches one of the patterns `$2`
/// (`LIKE`, `\` escapes), or, for `orch advance/rollback` sessions when
/// `$3`, whose process no longer holds its plan's lock (no session named
/// `<name> (lock)` holds an orch lock).
const ORPHANS: &str = r"
    SELECT a.pid, a.application_name, coalesce(a.state, ''), coalesce(a.query, ''),
           coalesce(a.query_start, a.xact_start)
    FROM pg_stat_activity a
    WHERE a.datname = current_database()
      AND a.backend_type = 'client backend'
      AND a.state IS NOT NULL AND a.state <> 'idle'
      AND a.pid <> ALL($1::int[])
      AND a.application_name NOT LIKE '%lock)'
      -- A session that holds or waits for one of orch's locks is a live
      -- process's lock session (its name may have been cut at 63 bytes).
      AND NOT EXISTS (SELECT 1 FROM pg_locks own
                      WHERE own.pid = a.pid AND own.locktype = 'advisory'
                        AND own.classid::bigint = ($4::int::bigint & 4294967295))
      AND (a.application_name LIKE ANY($2::text[])
           OR ($3 AND (a.application_name LIKE 'orch advance %' OR a.application_name LIKE 'orch rollback %')
               -- Only when its lock session's name ('... (lock)') fits in
               -- the 63 bytes PostgreSQL keeps: else it cannot be told
               -- whether the process still holds its lock, and it is left be.
               AND octet_length(a.application_name) + 7 <= 63
               AND NOT EXISTS (
                   SELECT 1 FROM pg_stat_activity h JOIN pg_locks l ON l.pid = h.pid
                   WHERE l.locktype = 'advisory' AND l.granted
                     AND l.classid::bigint = ($4::int::bigint & 4294967295)
                     AND h.application_name = a.application_name || ' (lock)')))
    ORDER BY a.pid";

/// `text` as a literal inside a LIKE pattern.
fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The application_name patterns of the connections that act on `scope`
/// under its lock, and whether plan sessions that lost their plan's lock
/// count too (they may be applying a migration).
fn patterns(scope: &LockScope) -> (Vec<String>, bool) {
    match scope {
        LockScope::Plan(name) => {
            let name = like_literal(name);
            let mut patterns: Vec<String> = ["advance", "rollback", "confirm"]
                .iter()
                .map(|verb| format!("orch {verb} {name} (%"))
                .collect();
            // `orch backfill PLAN (actor)`, and a run's own connections:
            // `orch backfill PLAN PHASE` and `... worker N`.
            patterns.push(format!("orch backfill {name} %"));
            (patterns, false)
        }
        LockScope::Migrations => (
            ["up", "down", "redo"]
                .iter()
                .map(|verb| format!("orch migrate {verb} (%"))
                .collect(),
            true,
        ),
    }
}

impl Store {
    /// Statements of earlier orch processes on `scope` still running,
    /// other than this process's sessions `own`.
    pub async fn orphans(&self, scope: &LockScope, own: &[i32]) -> Result<Vec<Orphan>> {
        let (patterns, lost_plan_sessions) = patterns(scope);
        let rows = self
            .client()
            .query(
                ORPHANS,
                &[&own, &patterns, &lost_plan_sessions, &schema::LOCK_CLASS],
            )
            .await
            .map_err(|e| Error::db("cannot look for statements of earlier orch processes", e))?;
        Ok(rows
            .iter()
            .map(|r| Orphan {
                pid: r.get(0),
                application_name: r.get(1),
                state: r.get(2),
                // Without the lock probes orch put into its scripts.
                query: without_probes(r.get(3)),
                since: r.get(4),
            })
            .collect())
    }

    /// Cancel backend `pid`'s statement (`terminate`: end its session).
    pub async fn stop_backend(&self, pid: i32, terminate: bool) -> Result<bool> {
        let sql = if terminate {
            "SELECT pg_terminate_backend($1)"
        } else {
            "SELECT pg_cancel_backend($1)"
        };
        let row = self
            .client()
            .query_one(sql, &[&pid])
            .await
            .map_err(|e| Error::db(format!("cannot stop backend {pid}"), e))?;
        Ok(row.get(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_patterns_match_only_that_plan() {
        let (plan, lost) = patterns(&LockScope::Plan("a_b%".to_string()));
        assert!(!lost);
        assert_eq!(plan[0], "orch advance a\\_b\\% (%");
        assert_eq!(plan[3], "orch backfill a\\_b\\% %");
        let (migrations, lost) = patterns(&LockScope::Migrations);
        assert!(lost);
        assert_eq!(
            migrations,
            [
                "orch migrate up (%",
                "orch migrate down (%",
                "orch migrate redo (%"
            ]
        );
    }
}
