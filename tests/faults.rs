//! Safety under faults: a lock lost mid-work, statements a killed orch left
//! running, and the INVALID index a failed `CREATE INDEX CONCURRENTLY` leaves.

use std::time::Duration;

use crate::support::{Session, finish, wait_until};

const FILL_PLAN: &str = "plan: fill
phases:
  - id: fill
    kind: backfill
    title: Fill s
    backfill:
      table: t
      set: s = a * 2, touched = touched + 1
      where: s IS NULL
      max_batch: 200
      max_rows_per_second: 2000
";

fn count(s: &Session, sql: &str) -> i64 {
    s.value(sql).unwrap().parse().unwrap()
}

// Guards against a process that lost its plan lock (its session terminated)
// going on with the backfill, racing the next operator and recording twice.
#[test]
fn a_terminated_lock_session_stops_the_backfill_and_a_second_process_takes_over() {
    let s = Session::new();
    s.execute(
        "CREATE TABLE t (id serial PRIMARY KEY, a int NOT NULL, s int, touched int NOT NULL DEFAULT 0);
         INSERT INTO t (a) SELECT g FROM generate_series(1, 20000) AS g;
         ANALYZE t;",
    );
    s.plan("fill.yaml", FILL_PLAN);
    let first = s.spawn(&["advance", "fill"]);
    let started = wait_until(Duration::from_secs(60), || {
        s.value("SELECT to_regclass('orch.backfill_workers') IS NOT NULL")
            .as_deref()
            == Some("t")
            && s.value("SELECT coalesce(sum(batches_done), 0) > 0 FROM orch.backfill_workers")
                .as_deref()
                == Some("t")
    });
    assert!(started, "the backfill never committed a batch");
    let terminated = s.value(
        // This test's database only: other tests run `orch advance fill` too
        // (terminating their lock sessions failed them).
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE application_name = 'orch advance fill (tester) (lock)' AND datname = current_database()",
    );
    assert_eq!(terminated.as_deref(), Some("1"));
    let run = finish(first, &["advance", "fill"]);
    run.code(5)
        .stderr_has("lost the lock on plan fill")
        .stderr_has("recording nothing more");
    // The first process could record nothing once it lost the lock: not
    // even its own failure.
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'fill'")
            .as_deref(),
        Some("running")
    );
    assert!(count(&s, "SELECT count(*) FROM t WHERE s IS NULL") > 0);
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill finished");
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM orch.events WHERE action = 'backfill_finished'"
        ),
        1
    );
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'fill'")
            .as_deref(),
        Some("done")
    );
    assert_eq!(
        count(&s, "SELECT count(*) FROM t WHERE s IS DISTINCT FROM a * 2"),
        0
    );
    assert_eq!(count(&s, "SELECT count(*) FROM t WHERE touched <> 1"), 0);
}

/// A session named like an orch process's working connection, blocked (on
/// an advisory lock the test holds) while it holds ACCESS EXCLUSIVE on `t`:
/// what a killed orch leaves behind. Returns its thread (the statement's
/// result) once it is seen running.
fn orphan(
    s: &Session,
    application_name: &'static str,
) -> std::thread::JoinHandle<Result<(), String>> {
    let settings = s.db.settings.clone();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = settings.connect(application_name).await.unwrap();
            client
                .batch_execute(
                    "LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_advisory_lock(4242);",
                )
                .await
                .map_err(|e| format!("{e:?}"))
        })
    });
    let running = wait_until(Duration::from_secs(30), || {
        s.value(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}' AND wait_event_type = 'Lock' AND datname = current_database()"
        ))
        .as_deref()
            == Some("1")
    });
    assert!(running, "the orphan never started");
    handle
}

const ADD_B_PLAN: &str = "plan: small
phases:
  - id: add-b
    kind: migration
    title: Add b
    migration: add_b
";

// Guards against running a plan's phase next to a statement a killed orch
// left running (it holds its locks): waited for within the lock wait, and
// cancelled with --cancel-orphans, named either way.
#[test]
fn statements_left_by_a_killed_orch_are_waited_for_or_cancelled() {
    let s = Session::new();
    s.execute("CREATE TABLE t (a int)");
    s.migration(
        "1_add_b.sql",
        "-- migrate:up\nALTER TABLE t ADD COLUMN b int;\n",
    );
    s.plan("small.yaml", ADD_B_PLAN);
    let holder = s.db.connect();
    holder.execute("SELECT pg_advisory_lock(4242)");
    let left = orphan(&s, "orch advance small (tester)");
    let pid = s
        .value("SELECT pid FROM pg_stat_activity WHERE application_name = 'orch advance small (tester)' AND datname = current_database()")
        .unwrap();
    s.orch(&["advance", "small", "--lock-wait", "300ms"])
        .code(5)
        .stderr_has("statement(s) an earlier orch process left running on plan small still run")
        .stderr_has(&format!(
            "pid {pid} (application_name \"orch advance small (tester)\""
        ))
        .stderr_has("SELECT pg_advisory_lock(4242)")
        .stderr_has("--cancel-orphans");
    assert_eq!(s.columns("t"), ["a"]);
    s.orch(&["advance", "small", "--cancel-orphans"])
        .success()
        .stderr_has(&format!("cancelling 1 statement(s) an earlier orch process left running on plan small (--cancel-orphans):\n    pid {pid}"));
    let result = left.join().unwrap();
    assert!(
        result
            .as_ref()
            .is_err_and(|e| e.contains("canceling statement due to user request")),
        "{result:?}"
    );
    assert_eq!(s.columns("t"), ["a", "b"]);
}

// Guards against `orch migrate up` running next to what a killed `orch
// migrate up` left running.
#[test]
fn migrate_up_cancels_what_a_killed_migrate_up_left_running() {
    let s = Session::new();
    s.execute("CREATE TABLE t (a int)");
    s.migration(
        "1_add_b.sql",
        "-- migrate:up\nALTER TABLE t ADD COLUMN b int;\n",
    );
    let holder = s.db.connect();
    holder.execute("SELECT pg_advisory_lock(4242)");
    let left = orphan(&s, "orch migrate up (tester)");
    s.orch(&["migrate", "up", "--lock-wait", "300ms"])
        .code(5)
        .stderr_has("left running on the migration history still run");
    s.orch(&["migrate", "up", "--cancel-orphans"])
        .success()
        .stderr_has("cancelling 1 statement(s)");
    assert!(left.join().unwrap().is_err());
    assert_eq!(s.applied(), ["1_add_b"]);
}

/// Whether index `t_a` is valid (`t`/`f`), if it exists.
fn t_a_valid(s: &Session) -> Option<String> {
    s.value("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass")
}

const UNIQUE_INDEX: &str = "-- migrate:up transaction:false\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY t_a;\n";

// Guards against recording a migration as applied while the index its
// CREATE INDEX CONCURRENTLY built is INVALID, first or on a re-run.
#[test]
fn an_invalid_index_fails_the_migration_and_if_not_exists_over_it_is_refused() {
    let s = Session::new();
    s.execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1), (2);");
    s.migration("1_unique_a.sql", UNIQUE_INDEX);
    s.orch(&["migrate", "up"])
        .code(1)
        .stderr_has("could not create unique index")
        .stderr_has("`DROP INDEX CONCURRENTLY public.t_a;`");
    assert!(s.applied().is_empty());
    assert_eq!(t_a_valid(&s).as_deref(), Some("f"));
    // IF NOT EXISTS would skip the INVALID index: refused with the fix.
    s.orch(&["migrate", "up"])
        .code(4)
        .stderr_has("index public.t_a exists but is INVALID")
        .stderr_has("next: run `DROP INDEX CONCURRENTLY public.t_a;`");
    assert!(s.applied().is_empty());
    s.execute("DELETE FROM t WHERE a = 1");
    s.execute("DROP INDEX CONCURRENTLY public.t_a");
    s.orch(&["migrate", "up"]).success();
    assert_eq!(s.applied(), ["1_unique_a"]);
    assert_eq!(t_a_valid(&s).as_deref(), Some("t"));
}

/// Start `orch migrate up`, SIGKILL it while its statement matching the
/// LIKE `pattern` runs, and check that the statement goes on on the server
/// (it has not noticed); returns the query counting it.
fn kill_9_migrate_up_during(s: &Session, pattern: &str) -> String {
    let mut child = s.spawn(&["migrate", "up"]);
    let running = format!(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name LIKE 'orch migrate up%' AND state = 'active'
           AND query LIKE '{pattern}'"
    );
    assert!(
        wait_until(Duration::from_secs(60), || count(s, &running) == 1),
        "orch's statement never started"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(count(s, &running), 1, "the orphaned statement goes on");
    running
}

// Guards against the real thing the simulated orphans above stand for: after
// `kill -9` of orch, its ALTER goes on running on the server with its
// exclusive lock, and the rerun must not run beside it.
#[test]
fn a_real_kill_9_leaves_an_alter_running_and_the_rerun_cancels_it() {
    let s = Session::new();
    s.execute("CREATE TABLE t (a int)");
    // Slow while `go_fast` does not exist: the first run sleeps holding
    // ACCESS EXCLUSIVE on t; the rerun, after `go_fast` is made, does not.
    s.migration(
        "1_add_b.sql",
        "-- migrate:up\nALTER TABLE t ADD COLUMN b int;\nSELECT pg_sleep(CASE WHEN to_regclass('go_fast') IS NULL THEN 120 ELSE 0 END);\n",
    );
    let sleeping = kill_9_migrate_up_during(&s, "%pg_sleep%");
    s.execute("CREATE TABLE go_fast ()");
    s.orch(&["migrate", "up", "--lock-wait", "300ms"])
        .code(5)
        .stderr_has("pg_sleep");
    assert!(s.applied().is_empty());
    s.orch(&["migrate", "up", "--cancel-orphans"]).success();
    assert_eq!(count(&s, &sleeping), 0);
    assert_eq!(s.applied(), ["1_add_b"]);
    assert!(s.columns("t").contains(&"b".to_string()));
}

// Guards against the rerun of a killed `CREATE INDEX CONCURRENTLY`: the
// orphaned build goes on (here waiting for an old transaction); the rerun
// cancels it, which leaves an INVALID index, and refuses with the fix
// instead of recording `IF NOT EXISTS` over it as applied.
#[test]
fn a_real_kill_9_during_a_concurrent_index_build_ends_in_a_clear_failure_then_a_valid_index() {
    let s = Session::new();
    s.execute("CREATE TABLE t (a int); INSERT INTO t VALUES (1), (2);");
    s.migration("1_unique_a.sql", UNIQUE_INDEX);
    // An open transaction that has a snapshot: the build waits for it.
    let old = s.db.connect();
    old.execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t;");
    kill_9_migrate_up_during(&s, "%CREATE UNIQUE INDEX CONCURRENTLY%");
    s.orch(&["migrate", "up", "--cancel-orphans"])
        .code(4)
        .stderr_has("cancelling 1 statement(s)")
        .stderr_has("index public.t_a exists but is INVALID")
        .stderr_has("`DROP INDEX CONCURRENTLY public.t_a;`");
    assert!(s.applied().is_empty());
    old.execute("COMMIT");
    s.execute("DROP INDEX CONCURRENTLY public.t_a");
    s.orch(&["migrate", "up"]).success();
    assert_eq!(s.applied(), ["1_unique_a"]);
    assert_eq!(t_a_valid(&s).as_deref(), Some("t"));
}
