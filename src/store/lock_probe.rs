//! Running a migration script with a look at `pg_locks` after each of its
//! statements: the probe goes into the script itself, so the script is
//! still sent whole, in one round trip, and each probe sees the locks the
//! statements before it hold in their (explicit or implicit) transaction.
//!
//! The probe is a prepared statement of orch's session, planned once: a
//! query in the script would be planned after every statement, and
//! `EXECUTE orch_lock_probe` keeps the script people see in
//! pg_stat_activity readable. A prepared statement needs no object in the
//! database, so a migration that switches role (`SET ROLE owner`) can still
//! run it: it only reads catalogs every role may read.

use futures_util::{TryStreamExt, pin_mut};
use tokio_postgres::{SimpleQueryMessage, SimpleQueryRow};

use crate::error::{Error, Result};
use crate::migration::held_locks::RelationLock;
use crate::store::Store;
use crate::store::session::{ScriptFailure, failure};

/// The prepared statement's name, and the column that marks its rows among
/// rows the script's own statements return.
const NAME: &str = "orch_lock_probe";

/// What goes after each statement.
const PROBE: &str = ";EXECUTE orch_lock_probe";

/// One row: when the script's message arrived (`statement_timestamp()`: the
/// start of its first statement) and now (the end of the statement before),
/// in microseconds since the epoch; and this session's granted locks on
/// relations that are not PostgreSQL's own catalogs (oid >= 16384), one
/// JSON array `[oid, name, modes, created]` per relation: `name` as
/// `regclass` prints it (the oid's digits for a relation dropped by now),
/// `modes` as `pg_locks` names them, `created`: the relation's first
/// pg_attribute row was written by this transaction (or a subtransaction
/// of it), so no other session can see it yet. Looked up once per relation,
/// not per lock; every name is schema-qualified: the migration may change
/// the search_path.
const PREPARE: &str = "PREPARE orch_lock_probe AS
SELECT 0 AS orch_lock_probe,
       (pg_catalog.date_part('epoch', pg_catalog.statement_timestamp()) * 1000000)::pg_catalog.int8,
       (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) * 1000000)::pg_catalog.int8,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(
                   r.relation::pg_catalog.int8,
                   r.relation::pg_catalog.regclass::pg_catalog.text,
                   r.modes,
                   COALESCE((SELECT pg_catalog.age(a.xmin) <= 0 FROM pg_catalog.pg_attribute a
                             WHERE a.attrelid = r.relation ORDER BY a.attnum LIMIT 1), false)))
        FROM (SELECT l.relation, pg_catalog.array_agg(l.mode) AS modes
              FROM pg_catalog.pg_locks l
              WHERE l.locktype = 'relation' AND l.granted AND l.pid = pg_catalog.pg_backend_pid()
                AND l.relation >= 16384::pg_catalog.oid
              GROUP BY l.relation) AS r)";

/// SQLSTATE duplicate_prepared_statement.
const DUPLICATE_PREPARED_STATEMENT: &str = "42P05";
/// SQLSTATE invalid_sql_statement_name: EXECUTE of a statement not prepared.
const INVALID_SQL_STATEMENT_NAME: &str = "26000";

impl ScriptFailure {
    /// The script failed because its probe is no longer prepared: the
    /// migration deallocated it (`DEALLOCATE ALL`, `DISCARD ALL`).
    pub fn lost_lock_probe(&self) -> bool {
        self.diagnostic.sqlstate == INVALID_SQL_STATEMENT_NAME
            && self.diagnostic.message.contains(NAME)
    }
}

/// `query` (as pg_stat_activity shows a migration script orch sent) without
/// the probes orch put into it, for people to read.
pub fn without_probes(query: &str) -> String {
    query.replace(PROBE, "")
}

/// What a probe saw after one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// 0-based: the statement it followed.
    pub statement: usize,
    /// When the script's first statement started, on the server's clock
    /// (microseconds since the epoch).
    pub script_started_us: i64,
    /// When the probe ran, right after its statement ended.
    pub at_us: i64,
    pub locks: Vec<RelationLock>,
}

/// `sql` with a probe inserted at each byte offset of `ends` (where a
/// statement's last token ends), and for each insertion its char offset in
/// `sql` and its length in chars, to map error positions back.
fn probed_script(sql: &str, ends: &[usize]) -> (String, Vec<(usize, usize)>) {
    let mut script = String::with_capacity(sql.len() + ends.len() * PROBE.len());
    let mut inserted = Vec::with_capacity(ends.len());
    let mut copied = 0;
    for &end in ends {
        script.push_str(&sql[copied..end]);
        copied = end;
        inserted.push((sql[..end].chars().count(), PROBE.len()));
        script.push_str(PROBE);
    }
    script.push_str(&sql[copied..]);
    (script, inserted)
}

/// PostgreSQL's 1-based char position in the probed script, as a position
/// in the script without probes; None inside a probe.
fn original_position(position: u32, inserted: &[(usize, usize)]) -> Option<u32> {
    let index = (position as usize).checked_sub(1)?;
    let mut shift = 0;
    for &(at, len) in inserted {
        if index < at + shift {
            break;
        }
        if index < at + shift + len {
            return None;
        }
        shift += len;
    }
    u32::try_from(index - shift + 1).ok()
}

impl Store {
    /// Prepare the probe on the working connection (once: a later call
    /// finds it prepared).
    pub async fn prepare_lock_probe(&self) -> Result<()> {
        match self.client().batch_execute(PREPARE).await {
            Ok(()) => Ok(()),
            Err(e) if e.code().map(|c| c.code()) == Some(DUPLICATE_PREPARED_STATEMENT) => Ok(()),
            Err(e) => Err(Error::db("cannot prepare orch's look at pg_locks", e)),
        }
    }

    /// Send `sql` whole, with a probe after each statement (`ends`: the byte
    /// offsets where statements end, as `sql_text::split_statements` finds
    /// them). On failure, `completed` counts the statements whose probe
    /// ran, and an error position is one in `sql`.
    pub async fn run_probed(
        &self,
        sql: &str,
        ends: &[usize],
    ) -> std::result::Result<Vec<Probe>, ScriptFailure> {
        let (script, inserted) = probed_script(sql, ends);
        let mut probes = Vec::with_capacity(ends.len());
        let fail = |probes: &Vec<Probe>, e: &tokio_postgres::Error| {
            let mut failure = failure(probes.len(), e);
            failure.diagnostic.position = failure
                .diagnostic
                .position
                .and_then(|p| original_position(p, &inserted));
            failure
        };
        let stream = match self.client().simple_query_raw(&script).await {
            Ok(stream) => stream,
            Err(e) => return Err(fail(&probes, &e)),
        };
        pin_mut!(stream);
        loop {
            match stream.try_next().await {
                Ok(Some(SimpleQueryMessage::Row(row))) => {
                    if let Some(probe) = read_probe(&row, probes.len()) {
                        probes.push(probe);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => return Ok(probes),
                Err(e) => return Err(fail(&probes, &e)),
            }
        }
    }
}

/// A probe's row, after statement `statement`; None for rows of the
/// script's own statements.
fn read_probe(row: &SimpleQueryRow, statement: usize) -> Option<Probe> {
    if row.columns().first().map(|c| c.name()) != Some(NAME) {
        return None;
    }
    let number = |i: usize| row.get(i).and_then(|v| v.parse::<i64>().ok());
    let locks = match row.get(3).map(serde_json::from_str::<serde_json::Value>) {
        Some(Ok(json)) => parse_locks(&json),
        Some(Err(e)) => {
            tracing::debug!("unexpected lock probe result: {e}");
            Vec::new()
        }
        None => Vec::new(),
    };
    Some(Probe {
        statement,
        script_started_us: number(1)?,
        at_us: number(2)?,
        locks,
    })
}

/// `[[oid, name, modes, created], ...]` (null: none), a lock per mode;
/// TOAST tables are left out (their table's lock says it), and a name that
/// is the oid's digits is a relation dropped by now. An element of another
/// shape is skipped (it only costs a line of the record).
fn parse_locks(json: &serde_json::Value) -> Vec<RelationLock> {
    let Some(items) = json.as_array() else {
        return Vec::new();
    };
    let mut locks = Vec::new();
    for item in items {
        let parsed = (|| {
            let oid = u32::try_from(item.get(0)?.as_u64()?).ok()?;
            let name = item.get(1)?.as_str()?;
            let modes = item.get(2)?.as_array()?;
            let created = item.get(3)?.as_bool()?;
            Some((oid, name, modes, created))
        })();
        let Some((oid, name, modes, created)) = parsed else {
            continue;
        };
        if name.starts_with("pg_toast.") {
            continue;
        }
        let dropped = name == oid.to_string();
        for mode in modes.iter().filter_map(|m| m.as_str()) {
            locks.push(RelationLock {
                oid,
                name: (!dropped).then(|| name.to_string()),
                mode: mode.to_string(),
                created,
            });
        }
    }
    locks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_go_after_each_statement_and_positions_map_back() {
        let sql = "SELECT 1;\nSELECT é FROM x";
        let (script, inserted) = probed_script(sql, &[8, 26]);
        assert_eq!(
            script,
            "SELECT 1;EXECUTE orch_lock_probe;\nSELECT é FROM x;EXECUTE orch_lock_probe"
        );
        let probe_len = PROBE.len();
        assert_eq!(inserted, [(8, probe_len), (25, probe_len)]);
        // `x` is char 25 of `sql`: after one probe in the script.
        let x = 25 + probe_len as u32;
        assert_eq!(original_position(x, &inserted), Some(25));
        assert_eq!(original_position(3, &inserted), Some(3));
        assert_eq!(original_position(9, &inserted), None);
        // Just past the end ("syntax error at end of input").
        let end = script.chars().count() as u32 + 1;
        assert_eq!(original_position(end, &inserted), Some(26));
        assert_eq!(original_position(0, &inserted), None);
    }

    #[test]
    fn lock_lists_parse_and_skip_what_they_do_not_know() {
        let got = parse_locks(&serde_json::json!([
            [16384, "posts", ["AccessExclusiveLock"], false],
            [16390, "16390", ["ShareLock"], false],
            [16391, "pg_toast.pg_toast_16384", ["ShareLock"], false],
            [16392, "new", ["ShareLock", "AccessExclusiveLock"], true],
            ["x"]
        ]));
        assert_eq!(
            got,
            [
                RelationLock {
                    oid: 16384,
                    name: Some("posts".into()),
                    mode: "AccessExclusiveLock".into(),
                    created: false
                },
                RelationLock {
                    oid: 16390,
                    name: None,
                    mode: "ShareLock".into(),
                    created: false
                },
                RelationLock {
                    oid: 16392,
                    name: Some("new".into()),
                    mode: "ShareLock".into(),
                    created: true
                },
                RelationLock {
                    oid: 16392,
                    name: Some("new".into()),
                    mode: "AccessExclusiveLock".into(),
                    created: true
                },
            ]
        );
        assert!(parse_locks(&serde_json::Value::Null).is_empty());
    }

    #[test]
    fn people_read_scripts_without_probes() {
        let (script, _) = probed_script("ALTER TABLE t ADD b int;\nSELECT ';SELECT 1'", &[23, 43]);
        assert_eq!(
            without_probes(&script),
            "ALTER TABLE t ADD b int;\nSELECT ';SELECT 1'"
        );
    }
}
