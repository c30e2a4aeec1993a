//! `orch advance / confirm / rollback` act once: concurrent and repeated
//! calls never undo (or confirm) twice, `rollback` names or infers and
//! records its phase, and orch's schema 1 is upgraded for the heartbeat.

use std::time::Duration;

use crate::support::{Conn, SMALL_PLAN, Session, finish, wait_until};

fn small_session() -> Session {
    let s = Session::new();
    s.migration(
        "1_create_t.sql",
        "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n",
    );
    s.plan("small.yaml", SMALL_PLAN);
    s
}

fn state(s: &Session, id: &str) -> String {
    s.value(&format!(
        "SELECT state FROM orch.phases WHERE plan = 'small' AND id = '{id}'"
    ))
    .unwrap()
}

fn events(s: &Session, action: &str) -> usize {
    s.value(&format!(
        "SELECT count(*) FROM orch.events WHERE action = '{action}'"
    ))
    .unwrap()
    .parse()
    .unwrap()
}

/// Hold plan small's lock from the test, so the commands spawned next all
/// read the plan, then wait; the lock is released by `release_when_waiting`.
fn hold_plan_lock(s: &Session) -> Conn<'_> {
    let conn = s.db.connect();
    conn.execute("SELECT pg_advisory_lock(x'6f726368'::int, hashtext('small'))");
    conn
}

/// Once every one of `commands` polls for plan small's lock, release it.
/// (By name: the lock connection of a command that just ended may linger
/// until the server notices it closed.)
fn release_when_waiting(s: &Session, conn: Conn<'_>, commands: &[&str]) {
    let names: Vec<String> = commands
        .iter()
        .map(|c| format!("'orch {c} small (tester) (lock)'"))
        .collect();
    let sql = format!(
        // This test's database only: other tests run the same commands on
        // plans of the same name (counting theirs kept the lock held).
        "SELECT count(*) FROM pg_stat_activity WHERE application_name IN ({}) AND datname = current_database()",
        names.join(", ")
    );
    // Generous: on a loaded machine starting a command takes a while.
    let waiting = wait_until(Duration::from_secs(120), || {
        s.value(&sql).as_deref() == Some(&commands.len().to_string())
    });
    assert!(waiting, "the commands never waited for the plan's lock");
    conn.execute("SELECT pg_advisory_unlock(x'6f726368'::int, hashtext('small'))");
}

#[test]
fn concurrent_rollbacks_undo_one_phase() {
    // Guards against two `orch rollback` at once each undoing a phase (2 of 2).
    let s = small_session();
    s.orch(&["advance", "small"]).success();
    s.orch(&["confirm", "small", "--by", "a"]).success();
    s.orch(&["advance", "small"]).success();
    let lock = hold_plan_lock(&s);
    let args = ["rollback", "small", "--lock-wait", "60s"];
    let (a, b) = (s.spawn(&args), s.spawn(&args));
    release_when_waiting(&s, lock, &["rollback", "rollback"]);
    let (a, b) = (finish(a, &args), finish(b, &args));
    a.success();
    b.success();
    let (acted, other) = if a.stdout.contains("rolled back phase 2 gate") {
        (&a, &b)
    } else {
        (&b, &a)
    };
    acted.stdout_has("rolled back phase 2 gate; it is pending now");
    other
        .stdout_has("plan small moved while this rollback waited for its lock (rolled back gate by tester at ")
        .stdout_has("another orch did it; nothing more done");
    assert_eq!(events(&s, "rolled_back"), 1);
    assert_eq!(state(&s, "gate"), "pending");
    assert_eq!(state(&s, "add-t"), "confirmed");
    assert!(s.has_table("t"), "phase 1 was not undone");
}

#[test]
fn confirm_and_rollback_at_once_only_one_acts() {
    // Guards against a confirmation and a rollback both acting on one phase.
    let s = small_session();
    s.orch(&["advance", "small"]).success();
    let lock = hold_plan_lock(&s);
    let confirm = ["confirm", "small", "--by", "a", "--lock-wait", "60s"];
    let rollback = ["rollback", "small", "--lock-wait", "60s"];
    let (c, r) = (s.spawn(&confirm), s.spawn(&rollback));
    release_when_waiting(&s, lock, &["confirm", "rollback"]);
    let (c, r) = (finish(c, &confirm), finish(r, &rollback));
    let (confirmed, rolled_back) = (events(&s, "confirmed"), events(&s, "rolled_back"));
    assert_eq!(confirmed + rolled_back, 1, "{c:?}\n{r:?}");
    if confirmed == 1 {
        c.success();
        r.code(4)
            .stderr_has("plan small moved while this rollback waited for its lock (confirmed add-t by a at ")
            .stderr_has("nothing done");
        assert_eq!(state(&s, "add-t"), "confirmed");
        assert!(s.has_table("t"));
    } else {
        r.success();
        c.code(4)
            .stderr_has("plan small moved while this confirm waited for its lock (rolled back add-t by tester at ");
        assert_eq!(state(&s, "add-t"), "pending");
        assert!(!s.has_table("t"));
    }
}

#[test]
fn a_repeated_rollback_is_a_no_op() {
    // Guards against re-running a rollback whose outcome looked uncertain
    // undoing the phase before it too.
    let s = small_session();
    s.orch(&["advance", "small"]).success();
    s.orch(&["confirm", "small", "--by", "a"]).success();
    s.orch(&["advance", "small"]).success();
    s.orch(&["rollback", "small", "gate"])
        .success()
        .stdout_has("rolled back phase 2 gate; it is pending now");
    s.orch(&["rollback", "small", "gate"])
        .success()
        .stdout_has("phase 2 (gate) of plan small is already rolled back (by tester at ")
        .stdout_has("nothing to do");
    s.orch(&["rollback", "small"])
        .success()
        .stdout_has("the last change to plan small was a rollback (rolled back gate by tester at ")
        .stdout_has(
            "nothing was done. To undo phase 1 (add-t) as well, name it: orch rollback small add-t",
        );
    assert_eq!(events(&s, "rolled_back"), 1);
    assert_eq!(state(&s, "add-t"), "confirmed");
    // A phase with a later phase that ran is refused, naming the later one.
    s.orch(&["advance", "small"]).success();
    s.orch(&["rollback", "small", "1"])
        .code(4)
        .stderr_has("phase 1 (add-t) of plan small cannot be rolled back while phase 2 (gate) after it is open")
        .stderr_has("next: roll back the latest first: orch rollback small gate");
    s.orch(&["rollback", "small", "gate"]).success();
    s.orch(&["rollback", "small", "add-t"])
        .success()
        .stdout_has("rolled back phase 1 add-t; it is pending now");
    assert!(!s.has_table("t"));
    s.orch(&["rollback", "small", "add-t"])
        .success()
        .stdout_has("already rolled back");
    s.orch(&["rollback", "small", "later"])
        .success()
        .stdout_has("phase 3 (later) of plan small has not run; nothing to roll back");
    s.orch(&["rollback", "small", "nope"])
        .code(2)
        .stderr_has("plan small has no phase \"nope\"");
    assert_eq!(events(&s, "rolled_back"), 3);
}

#[test]
fn a_repeated_confirmation_is_a_no_op() {
    // Guards against a second confirmation of a phase being refused or recorded twice.
    let s = small_session();
    s.orch(&["advance", "small"]).success();
    s.orch(&["confirm", "small", "add-t", "--by", "a"])
        .success();
    s.orch(&["confirm", "small", "add-t", "--by", "b"])
        .success()
        .stdout_has("phase 1 (add-t) of plan small is already confirmed by a at ")
        .stdout_has("nothing to do");
    assert_eq!(events(&s, "confirmed"), 1);
}

#[test]
fn rollback_records_by_and_note() {
    // Guards against a rollback's author and reason going unrecorded.
    let s = small_session();
    s.orch(&["advance", "small"]).success();
    s.orch(&[
        "rollback",
        "small",
        "--by",
        "erin",
        "--note",
        "INC-7: wrong table",
    ])
    .success();
    assert_eq!(
        s.value("SELECT actor || '|' || (detail->>'note') || '|' || (detail->>'inferred') FROM orch.events WHERE action = 'rolled_back'")
            .as_deref(),
        Some("erin|INC-7: wrong table|true")
    );
    s.orch(&["checklist", "small"])
        .success()
        .stdout_has("rolled back `add-t` by erin (session tester): \"INC-7: wrong table\"");
    s.orch(&["rollback", "small", "--by", " "])
        .code(2)
        .stderr_has("--by NAME must not be empty");
}

#[test]
fn a_schema_1_database_is_upgraded_and_still_read() {
    // Guards against a database created by the previous orch (schema 1,
    // without the heartbeat columns) breaking status or the verbs.
    let s = small_session();
    s.orch(&["advance", "small"]).success();
    s.execute(
        "ALTER TABLE orch.phases DROP COLUMN run_pid, DROP COLUMN run_host;
         UPDATE orch.meta SET schema_version = 1",
    );
    s.orch(&["status", "small"])
        .success()
        .stdout_has("1  add-t  migration  done");
    assert_eq!(
        s.value("SELECT schema_version FROM orch.meta").as_deref(),
        Some("1"),
        "status does not write"
    );
    s.orch(&["confirm", "small", "--by", "a"]).success();
    assert_eq!(
        s.value("SELECT schema_version FROM orch.meta").as_deref(),
        Some("7")
    );
    s.orch(&["advance", "small"]).success();
    assert_eq!(
        s.value("SELECT run_host IS NOT NULL FROM orch.phases WHERE id = 'gate'")
            .as_deref(),
        Some("t")
    );
    // A newer schema than this orch's is still refused.
    s.execute("UPDATE orch.meta SET schema_version = 99");
    s.orch(&["advance", "small"])
        .code(4)
        .stderr_has("newer than this orch understands");
}

#[test]
fn a_rollback_of_another_phase_meanwhile_is_not_taken_for_this_one() {
    // Guards against `rollback P A` answering "another orch did it" (exit 0)
    // when the rollback that ran while it waited undid phase B, not A.
    let s = small_session();
    s.orch(&["advance", "small"]).success();
    s.orch(&["confirm", "small", "--by", "a"]).success();
    s.orch(&["advance", "small"]).success();
    s.orch(&["confirm", "small", "--by", "a"]).success();
    s.orch(&["advance", "small"]).success();
    let lock = hold_plan_lock(&s);
    let gate = ["rollback", "small", "gate", "--lock-wait", "60s"];
    let later = ["rollback", "small", "later", "--lock-wait", "60s"];
    let (g, l) = (s.spawn(&gate), s.spawn(&later));
    release_when_waiting(&s, lock, &["rollback", "rollback"]);
    let (g, l) = (finish(g, &gate), finish(l, &later));
    // Whichever ran first, only `later` is undone, and `rollback small gate`
    // says it did nothing.
    l.success();
    g.code(4);
    assert_eq!(events(&s, "rolled_back"), 1);
    assert_eq!(state(&s, "later"), "pending");
    assert_eq!(state(&s, "gate"), "confirmed");
}
