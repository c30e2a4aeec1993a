//! What a migration's statements held: the relations each statement locked,
//! in which mode, and for how long, worked out from what `pg_locks` showed
//! after each statement; and how people read it ("held ACCESS EXCLUSIVE on
//! posts for 3.1 ms"). docs/migrations.md defines "held" precisely.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timefmt;

/// PostgreSQL's table-level lock modes, weakest first: each conflicts with
/// at least what the one before it conflicts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    pub const ALL: [LockMode; 8] = [
        LockMode::AccessShare,
        LockMode::RowShare,
        LockMode::RowExclusive,
        LockMode::ShareUpdateExclusive,
        LockMode::Share,
        LockMode::ShareRowExclusive,
        LockMode::Exclusive,
        LockMode::AccessExclusive,
    ];

    /// The name `pg_locks.mode` gives it: `AccessExclusiveLock`.
    pub fn pg_name(self) -> &'static str {
        match self {
            LockMode::AccessShare => "AccessShareLock",
            LockMode::RowShare => "RowShareLock",
            LockMode::RowExclusive => "RowExclusiveLock",
            LockMode::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            LockMode::Share => "ShareLock",
            LockMode::ShareRowExclusive => "ShareRowExclusiveLock",
            LockMode::Exclusive => "ExclusiveLock",
            LockMode::AccessExclusive => "AccessExclusiveLock",
        }
    }

    /// The name the documentation (and `LOCK TABLE`) gives it: `ACCESS EXCLUSIVE`.
    pub fn words(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }

    /// The mode `pg_locks` names `name`; None for others (a serializable
    /// transaction's `SIReadLock` is no table lock).
    pub fn parse(name: &str) -> Option<LockMode> {
        LockMode::ALL.into_iter().find(|m| m.pg_name() == name)
    }
}

/// One lock a statement took and how long it was held (an element of
/// `orch.migrations.locks`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldLock {
    /// 1-based: which statement of the section took it.
    pub statement: usize,
    /// The line of the file where that statement starts.
    pub line: usize,
    /// The mode as `pg_locks` names it: `AccessExclusiveLock`.
    pub lock: String,
    /// As `regclass` prints it (schema-qualified when not on the
    /// search_path); None for a relation the section dropped before orch
    /// could see its name.
    pub relation: Option<String>,
    /// Set when `relation` is None: the dropped relation's oid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oid: Option<u32>,
    /// Milliseconds, to 0.01 ms.
    pub held_ms: f64,
}

impl HeldLock {
    /// The mode, when this orch knows it (a row written by a newer orch may
    /// name one it does not: it is shown as written).
    pub fn mode(&self) -> Option<LockMode> {
        LockMode::parse(&self.lock)
    }

    /// `ACCESS EXCLUSIVE on posts for 3.1 ms`.
    pub fn describe(&self) -> String {
        let mode: &str = match self.mode() {
            Some(mode) => mode.words(),
            None => &self.lock,
        };
        let relation = match (&self.relation, self.oid) {
            (Some(name), _) => name.clone(),
            (None, Some(oid)) => format!("a relation it dropped (oid {oid})"),
            (None, None) => "a relation it dropped".to_string(),
        };
        let held = timefmt::duration(Duration::from_secs_f64(self.held_ms.max(0.0) / 1000.0));
        format!("{mode} on {relation} for {held}")
    }
}

/// The lock that matters most to the application: the strongest mode, and
/// of those the longest held (the first, of equals).
pub fn strongest(locks: &[HeldLock]) -> Option<&HeldLock> {
    locks.iter().reduce(|best, lock| {
        let key = |l: &HeldLock| (l.mode(), l.held_ms);
        if key(lock) > key(best) { lock } else { best }
    })
}

/// One line for a migration: `ACCESS EXCLUSIVE on posts for 3.1 ms (+2
/// more)`,
/// or `none` when it locked no relation that existed before it.
pub fn summary(locks: &[HeldLock]) -> String {
    match strongest(locks) {
        None => "none".to_string(),
        Some(lock) if locks.len() == 1 => lock.describe(),
        Some(lock) => format!("{} (+{} more)", lock.describe(), locks.len() - 1),
    }
}

/// Every lock, strongest and longest first: `ACCESS EXCLUSIVE on posts for
/// 3.1 ms (line 4); SHARE on comments for 1.0 ms (line 5)`, the first
/// `at_most` and how many more.
pub fn listing(locks: &[HeldLock], at_most: usize) -> String {
    let mut sorted: Vec<&HeldLock> = locks.iter().collect();
    sorted.sort_by(|a, b| {
        (b.mode(), b.held_ms)
            .partial_cmp(&(a.mode(), a.held_ms))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut parts: Vec<String> = sorted
        .iter()
        .take(at_most)
        .map(|l| format!("{} (line {})", l.describe(), l.line))
        .collect();
    if sorted.len() > at_most {
        parts.push(format!("{} more", sorted.len() - at_most));
    }
    parts.join("; ")
}

/// A relation lock `pg_locks` showed this session holding, as orch's probe
/// reads it after a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationLock {
    pub oid: u32,
    /// None: the relation no longer exists (the statement dropped it).
    pub name: Option<String>,
    /// `pg_locks.mode`.
    pub mode: String,
    /// The relation was created by the transaction holding the lock: no
    /// other session can see it before COMMIT, so its lock blocks no one.
    pub created: bool,
}

/// Works out which locks each statement took: those `pg_locks` shows after
/// it that are stronger than what the transaction held on that relation
/// before it. Times are milliseconds on one clock of the caller's choice.
#[derive(Debug, Default)]
pub struct LockTracker {
    /// The strongest mode the open transaction holds on each relation.
    held: HashMap<u32, LockMode>,
    /// Relations the open transaction created (once dropped, `pg_locks`
    /// no longer tells).
    created: HashSet<u32>,
    /// Names seen so far, for a relation a later statement drops.
    names: HashMap<u32, String>,
    taken: Vec<Taken>,
}

#[derive(Debug)]
struct Taken {
    statement: usize,
    line: usize,
    mode: LockMode,
    oid: u32,
    name: Option<String>,
    started_ms: f64,
    /// When the statement's own transaction ended (`transaction:false`);
    /// None: held until the section's transaction ends.
    released_ms: Option<f64>,
}

impl LockTracker {
    /// What `pg_locks` showed after statement `statement` (1-based, starting
    /// at file line `line`), which started at `started_ms`.
    pub fn after_statement(
        &mut self,
        statement: usize,
        line: usize,
        started_ms: f64,
        locks: &[RelationLock],
    ) {
        // The strongest new mode per relation, in the order pg_locks gave.
        let mut new: Vec<(u32, LockMode)> = Vec::new();
        for lock in locks {
            if let Some(name) = &lock.name {
                self.names.insert(lock.oid, name.clone());
            }
            if lock.created {
                self.created.insert(lock.oid);
            }
            if self.created.contains(&lock.oid) {
                continue;
            }
            let Some(mode) = LockMode::parse(&lock.mode) else {
                continue;
            };
            if self.held.get(&lock.oid).is_some_and(|held| *held >= mode) {
                continue;
            }
            match new.iter_mut().find(|(oid, _)| *oid == lock.oid) {
                Some((_, strongest)) => *strongest = (*strongest).max(mode),
                None => new.push((lock.oid, mode)),
            }
        }
        for (oid, mode) in new {
            self.held.insert(oid, mode);
            self.taken.push(Taken {
                statement,
                line,
                mode,
                oid,
                name: self.names.get(&oid).cloned(),
                started_ms,
                released_ms: None,
            });
        }
    }

    /// A lock PostgreSQL documents for a statement orch cannot probe (it
    /// cannot run in a transaction block: `CREATE INDEX CONCURRENTLY`).
    pub fn known(
        &mut self,
        statement: usize,
        line: usize,
        started_ms: f64,
        mode: LockMode,
        relation: &str,
    ) {
        self.taken.push(Taken {
            statement,
            line,
            mode,
            oid: 0,
            name: Some(relation.to_string()),
            started_ms,
            released_ms: None,
        });
    }

    /// The statement's own transaction ended at `ended_ms` (a
    /// `transaction:false` statement committed): what it took is released,
    /// held for `ended_ms - started`.
    pub fn transaction_ended(&mut self, ended_ms: f64) {
        for taken in self.taken.iter_mut().filter(|t| t.released_ms.is_none()) {
            taken.released_ms = Some(ended_ms);
        }
        self.held.clear();
        self.created.clear();
    }

    /// Each lock taken, held until its statement's transaction ended, or
    /// (still open) until `until_ms`.
    pub fn finish(&self, until_ms: f64) -> Vec<HeldLock> {
        self.taken
            .iter()
            .map(|t| {
                let held = t.released_ms.unwrap_or(until_ms) - t.started_ms;
                HeldLock {
                    statement: t.statement,
                    line: t.line,
                    lock: t.mode.pg_name().to_string(),
                    relation: t.name.clone(),
                    oid: t.name.is_none().then_some(t.oid),
                    held_ms: (held.max(0.0) * 100.0).round() / 100.0,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(oid: u32, name: Option<&str>, mode: &str, created: bool) -> RelationLock {
        RelationLock {
            oid,
            name: name.map(str::to_string),
            mode: mode.to_string(),
            created,
        }
    }

    #[test]
    fn modes_order_by_strength_and_round_trip() {
        for pair in LockMode::ALL.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        for mode in LockMode::ALL {
            assert_eq!(LockMode::parse(mode.pg_name()), Some(mode));
        }
        assert_eq!(LockMode::parse("SIReadLock"), None);
    }

    #[test]
    fn a_transaction_attributes_each_lock_to_the_statement_that_first_took_it() {
        let mut t = LockTracker::default();
        // 1: ALTER TABLE posts ... (plus a catalog-free AccessShare on it).
        t.after_statement(
            1,
            2,
            0.0,
            &[
                lock(10, Some("posts"), "AccessShareLock", false),
                lock(10, Some("posts"), "AccessExclusiveLock", false),
            ],
        );
        // 2: CREATE TABLE comments (post_id REFERENCES posts): weaker locks
        // on posts are not new; comments is new and blocks no one.
        t.after_statement(
            2,
            3,
            1.0,
            &[
                lock(10, Some("posts"), "AccessExclusiveLock", false),
                lock(10, Some("posts"), "ShareRowExclusiveLock", false),
                lock(20, Some("comments"), "AccessExclusiveLock", true),
            ],
        );
        // 3: UPDATE tags, then it is dropped (4) and loses its name.
        t.after_statement(
            3,
            4,
            2.0,
            &[lock(30, Some("tags"), "RowExclusiveLock", false)],
        );
        t.after_statement(
            4,
            5,
            3.0,
            &[
                lock(30, None, "AccessExclusiveLock", false),
                lock(40, None, "AccessExclusiveLock", false),
                lock(20, None, "AccessExclusiveLock", false),
            ],
        );
        let got = t.finish(5.0);
        let seen: Vec<String> = got
            .iter()
            .map(|l| {
                format!(
                    "{} {} {:?} {:?} {}",
                    l.statement, l.lock, l.relation, l.oid, l.held_ms
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                "1 AccessExclusiveLock Some(\"posts\") None 5",
                "3 RowExclusiveLock Some(\"tags\") None 3",
                "4 AccessExclusiveLock Some(\"tags\") None 2",
                "4 AccessExclusiveLock None Some(40) 2",
            ]
        );
        assert_eq!(
            summary(&got),
            "ACCESS EXCLUSIVE on posts for 5.0 ms (+3 more)"
        );
        assert_eq!(
            listing(&got, 2),
            "ACCESS EXCLUSIVE on posts for 5.0 ms (line 2); ACCESS EXCLUSIVE on tags for 2.0 ms (line 5); 2 more"
        );
    }

    #[test]
    fn statements_outside_a_transaction_hold_their_locks_for_themselves() {
        let mut t = LockTracker::default();
        t.after_statement(1, 2, 0.0, &[lock(10, Some("posts"), "ShareLock", false)]);
        t.transaction_ended(4.0);
        t.after_statement(2, 3, 10.0, &[lock(10, Some("posts"), "ShareLock", false)]);
        t.transaction_ended(10.5);
        t.known(3, 4, 0.0, LockMode::ShareUpdateExclusive, "posts");
        t.transaction_ended(250.0);
        let held: Vec<f64> = t.finish(999.0).iter().map(|l| l.held_ms).collect();
        assert_eq!(held, [4.0, 0.5, 250.0]);
    }

    #[test]
    fn the_summary_names_the_strongest_then_longest_lock() {
        let held = |lock: &str, relation: &str, ms: f64| HeldLock {
            statement: 1,
            line: 1,
            lock: lock.to_string(),
            relation: Some(relation.to_string()),
            oid: None,
            held_ms: ms,
        };
        assert_eq!(summary(&[]), "none");
        let locks = [
            held("RowExclusiveLock", "a", 900.0),
            held("AccessExclusiveLock", "b", 2.0),
            held("AccessExclusiveLock", "c", 3.25),
        ];
        assert_eq!(
            summary(&locks),
            "ACCESS EXCLUSIVE on c for 3.2 ms (+2 more)"
        );
        // A mode this orch does not know is shown as written.
        let unknown = [held("FancyLock", "d", 12.0)];
        assert_eq!(summary(&unknown), "FancyLock on d for 12 ms");
    }
}
