//! `orch migrate ...` end to end.

use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::support::{Session, finish, lock_waiters, wait_until};

const CREATE_COMMENTS: &str = "-- migrate:up
CREATE TABLE comments (id serial PRIMARY KEY, contents text NOT NULL);

-- migrate:down
DROP TABLE comments;
";

const RENAME_CONTENTS: &str = "-- migrate:up
ALTER TABLE comments RENAME COLUMN contents TO body;

-- migrate:down
ALTER TABLE comments RENAME COLUMN body TO contents;
";

fn classic() -> Session {
    let s = Session::new();
    s.migration("20240101000000_create_comments.sql", CREATE_COMMENTS)
        .migration("20240102000000_rename_contents.sql", RENAME_CONTENTS);
    s
}

#[test]
fn classic_up_down_cycle() {
    let s = classic();
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 20240101000000_create_comments")
        .stdout_has("applied 20240102000000_rename_contents");
    assert_eq!(s.columns("comments"), ["id", "body"]);
    assert_eq!(
        s.applied(),
        [
            "20240101000000_create_comments",
            "20240102000000_rename_contents"
        ]
    );

    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("nothing to apply");
    assert_eq!(s.applied().len(), 2);

    s.orch(&["migrate", "down"])
        .success()
        .stdout_has("reverted 20240102000000_rename_contents")
        .stdout_lacks("create_comments");
    assert_eq!(s.columns("comments"), ["id", "contents"]);
    assert_eq!(s.applied(), ["20240101000000_create_comments"]);

    s.orch(&["migrate", "down"])
        .success()
        .stdout_has("reverted 20240101000000_create_comments");
    assert!(!s.has_table("comments"));
    assert_eq!(
        s.value("SELECT count(*) FROM orch.migrations").as_deref(),
        Some("0")
    );

    s.orch(&["migrate", "down"])
        .success()
        .stdout_has("nothing to revert");
}

#[test]
fn tracking_rows_record_who_when_and_how_long() {
    let s = classic();
    s.orch(&["migrate", "up"]).success();
    let rows = s.query(
        "SELECT name, length(checksum), applied_by, applied_at <= now(), duration_ms >= execution_ms, attempts FROM orch.migrations ORDER BY version",
    );
    let first: Vec<&str> = rows[0].iter().map(|c| c.as_deref().unwrap()).collect();
    assert_eq!(first, ["create_comments", "64", "tester", "t", "t", "1"]);
}

#[test]
fn up_with_count_and_to() {
    let s = classic();
    // Applied by a later run than the table's, the rename is the lint's
    // business (see lint.rs); here it is only a second migration.
    s.migration(
        "20240102000000_rename_contents.sql",
        &RENAME_CONTENTS.replacen(
            "-- migrate:up\n",
            "-- migrate:up\n-- orch:allow rename-column: a counting test\n",
            1,
        ),
    );
    s.migration(
        "20240103000000_add_index.sql",
        "-- migrate:up\nCREATE INDEX ON comments (id);\n-- migrate:down\n",
    );
    s.orch(&["migrate", "up", "1"]).success();
    assert_eq!(s.applied().len(), 1);
    s.orch(&["migrate", "up", "--to", "20240102000000"])
        .success();
    assert_eq!(s.applied().len(), 2);
    s.orch(&["migrate", "up", "--to", "7"])
        .code(2)
        .stderr_has("no migration with that version");
}

#[test]
fn redo_reverts_and_reapplies_the_latest() {
    let s = classic();
    s.orch(&["migrate", "up"]).success();
    s.execute("INSERT INTO comments (body) VALUES ('kept')");
    s.orch(&["migrate", "redo"])
        .success()
        .stdout_has("reverted 20240102000000_rename_contents")
        .stdout_has("applied 20240102000000_rename_contents");
    assert_eq!(
        s.value("SELECT body FROM comments").as_deref(),
        Some("kept")
    );
}

#[test]
fn failing_migration_leaves_no_trace_and_names_file_line_and_sqlstate() {
    let s = classic();
    s.migration(
        "20240103000000_broken.sql",
        "-- migrate:up\nCREATE TABLE half (id int);\n\nINSERT INTO comments (id, body) VALUES (1, 'a');\n-- a comment\nINSERT INTO comments (id, body)\n  VALUES (1, 'b');\n\n-- migrate:down\nDROP TABLE half;\n",
    );
    let run = s.orch(&["migrate", "up"]);
    run.code(1)
        .stdout_has("applied 20240102000000_rename_contents")
        .stderr_has("migrations/20240103000000_broken.sql:6:")
        .stderr_has("duplicate key value violates unique constraint")
        .stderr_has("SQLSTATE 23505")
        .stderr_has("DETAIL: Key (id)=(1) already exists.");
    assert!(
        !s.has_table("half"),
        "the failed migration's first statement must be rolled back"
    );
    assert_eq!(
        s.value("SELECT count(*) FROM comments").as_deref(),
        Some("0")
    );
    assert_eq!(
        s.applied(),
        [
            "20240101000000_create_comments",
            "20240102000000_rename_contents"
        ]
    );
}

#[test]
fn error_hint_is_shown() {
    let s = Session::new();
    s.migration(
        "1_hint.sql",
        "-- migrate:up\nDO $$ BEGIN RAISE EXCEPTION 'custom failure' USING HINT = 'try the other thing'; END $$;\n",
    );
    s.orch(&["migrate", "up"])
        .code(1)
        .stderr_has("migrations/1_hint.sql:2:")
        .stderr_has("custom failure")
        .stderr_has("HINT: try the other thing")
        .stderr_has("SQLSTATE P0001");
}

#[test]
fn transaction_false_runs_create_index_concurrently() {
    let s = classic();
    s.migration(
        "20240103000000_index_body.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY comments_body_idx ON comments (body);\nCREATE INDEX CONCURRENTLY comments_id_body_idx\n  ON comments (id, body);\n\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY comments_id_body_idx;\nDROP INDEX CONCURRENTLY comments_body_idx;\n",
    );
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 20240103000000_index_body");
    assert_eq!(
        s.value("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname LIKE 'comments_%body_idx' AND i.indisvalid")
            .as_deref(),
        Some("2")
    );
    s.orch(&["migrate", "down"]).success();
    assert_eq!(
        s.value("SELECT count(*) FROM pg_class WHERE relname LIKE 'comments_%body_idx'")
            .as_deref(),
        Some("0")
    );
}

#[test]
fn concurrently_inside_a_transaction_is_refused_before_running() {
    let s = Session::new();
    s.migration(
        "1_idx.sql",
        "-- migrate:up\nCREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY t_a ON t (a);\n",
    );
    s.orch(&["migrate", "up"])
        .code(3)
        .stderr_has("migrations/1_idx.sql:3:")
        .stderr_has("transaction:false");
    assert!(!s.has_table("t"));
}

#[test]
fn dollar_quoted_functions_with_semicolons() {
    let function = "CREATE FUNCTION add_one(i int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  r int;
BEGIN
  r := i + 1; -- a semicolon; and 'quotes'
  RETURN r;
END;
$$;
CREATE FUNCTION shout(t text) RETURNS text LANGUAGE sql AS $fn$ SELECT upper(t) || ';' $fn$;
CREATE FUNCTION atomic_double(i int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
  SELECT i * 2;
END;
";
    let s = Session::new();
    s.migration("1_functions.sql", &format!("-- migrate:up\n{function}\n-- migrate:down\nDROP FUNCTION add_one(int); DROP FUNCTION shout(text); DROP FUNCTION atomic_double(int);\n"));
    s.migration(
        "2_functions_nontx.sql",
        &format!(
            "-- migrate:up transaction:false\n{}\n",
            function
                .replace("add_one", "add_one2")
                .replace("shout", "shout2")
                .replace("atomic_double", "atomic_double2")
        ),
    );
    s.orch(&["migrate", "up"]).success();
    assert_eq!(
        s.query("SELECT add_one(41), shout('hi'), atomic_double(4), add_one2(1), shout2('a'), atomic_double2(5)")[0],
        ["42", "HI;", "8", "2", "A;", "10"].map(|v| Some(v.to_string()))
    );
}

#[test]
fn changed_file_is_refused_and_shown_in_status() {
    let s = classic();
    s.orch(&["migrate", "up", "1"]).success();
    s.migration(
        "20240101000000_create_comments.sql",
        &CREATE_COMMENTS.replace("NOT NULL", ""),
    );
    s.orch(&["migrate", "up"]).code(4).stderr_has(
        "migrations/20240101000000_create_comments.sql was changed after it was applied",
    );
    assert_eq!(s.applied().len(), 1, "nothing may run after the refusal");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("changed since applied");
    s.orch(&["migrate", "down"])
        .code(4)
        .stderr_has("--allow-changed");
}

#[test]
fn missing_file_is_refused() {
    let s = classic();
    s.orch(&["migrate", "up"]).success();
    s.remove("migrations/20240102000000_rename_contents.sql");
    s.migration("20240103000000_more.sql", "-- migrate:up\nSELECT 1;\n");
    s.orch(&["migrate", "up"])
        .code(4)
        .stderr_has("20240102000000_rename_contents is applied")
        .stderr_has("file is missing");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("applied, file missing");
}

#[test]
fn out_of_order_needs_explicit_flag() {
    let s = Session::new();
    s.migration("1_a.sql", "-- migrate:up\nCREATE TABLE a ();\n");
    s.migration("3_c.sql", "-- migrate:up\nCREATE TABLE c ();\n");
    s.orch(&["migrate", "up"]).success();
    s.migration("2_b.sql", "-- migrate:up\nCREATE TABLE b ();\n");
    s.orch(&["migrate", "up"]).code(4).stderr_has(
        "migrations/2_b.sql is pending but comes before the newest applied migration (3)",
    );
    assert!(!s.has_table("b"));
    s.orch(&["migrate", "up", "--allow-out-of-order"])
        .success()
        .stdout_has("applied 2_b");
    assert!(s.has_table("b"));
}

#[test]
fn bad_files_are_reported_before_anything_runs() {
    let cases = [
        (
            "add_column.sql",
            "-- migrate:up\nSELECT 1;\n",
            "migrations/add_column.sql:1: malformed migration file name",
        ),
        (
            "5_no_up.sql",
            "-- migrate:down\nSELECT 1;\n",
            "migrations/5_no_up.sql:1: no \"-- migrate:up\" section",
        ),
        (
            "5_two_ups.sql",
            "-- migrate:up\nSELECT 1;\n-- migrate:up\nSELECT 2;\n",
            "migrations/5_two_ups.sql:3: a second \"-- migrate:up\" section",
        ),
    ];
    for (name, text, expected) in cases {
        let s = Session::new();
        s.migration("1_ok.sql", "-- migrate:up\nCREATE TABLE ok ();\n");
        s.migration(name, text);
        s.orch(&["migrate", "up"]).code(3).stderr_has(expected);
        assert!(!s.has_table("ok"), "{name}: nothing may run");
        assert_eq!(
            s.value("SELECT to_regnamespace('orch') IS NULL").as_deref(),
            Some("t")
        );
    }
}

#[test]
fn empty_down_section_refuses_to_revert() {
    let s = Session::new();
    s.migration(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE a ();\n-- migrate:down\n-- irreversible\n",
    );
    s.orch(&["migrate", "up"]).success();
    s.orch(&["migrate", "down"])
        .code(4)
        .stderr_has("migrations/1_a.sql has no down section (or an empty one)");
    assert!(s.has_table("a"));
}

#[test]
fn dry_run_prints_sql_and_changes_nothing() {
    let s = classic();
    s.orch(&["migrate", "up", "--dry-run"])
        .success()
        .stdout_has("would run 20240101000000_create_comments (up)")
        .stdout_has("CREATE TABLE comments")
        .stdout_has("ALTER TABLE comments RENAME COLUMN contents TO body;");
    assert!(!s.has_table("comments"));
    assert_eq!(
        s.value("SELECT to_regnamespace('orch') IS NULL").as_deref(),
        Some("t")
    );
    s.orch(&["migrate", "up"]).success();
    s.orch(&["migrate", "down", "2", "--dry-run"])
        .success()
        .stdout_has("DROP TABLE comments;");
    assert_eq!(s.applied().len(), 2);
}

#[test]
fn status_json_lists_every_migration() {
    let s = classic();
    s.orch(&["migrate", "up", "1"]).success();
    let run = s.orch(&["migrate", "status", "--json"]);
    run.success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["state"], "applied");
    assert_eq!(rows[0]["applied"]["applied_by"], "tester");
    assert!(rows[0]["applied"]["duration_ms"].is_i64());
    assert_eq!(rows[1]["state"], "pending");
    assert_eq!(rows[1]["name"], "rename_contents");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("20240101000000  create_comments  applied")
        .stdout_has("2 migrations, 1 pending");
}

#[test]
fn create_writes_a_timestamped_template() {
    let s = Session::new();
    let run = s.orch(&["migrate", "create", "add_posts"]);
    run.success().stdout_has("created migrations/");
    let name = run
        .stdout
        .trim()
        .trim_start_matches("created migrations/")
        .to_string();
    assert_eq!(name.len(), "20261126104919_add_posts.sql".len(), "{name}");
    assert!(name.ends_with("_add_posts.sql"));
    let text = std::fs::read_to_string(s.path("migrations").join(&name)).unwrap();
    assert!(text.contains("-- migrate:up") && text.contains("-- migrate:down"));
    s.orch(&["migrate", "create", "add_posts"])
        .code(2)
        .stderr_has("exists already");
    s.orch(&["migrate", "create", "bad name"]).code(2);
}

#[test]
fn connection_failure_names_the_target_but_not_the_password() {
    let s = Session::new();
    let run = Run::from(
        s.command(&["migrate", "status"])
            .env(
                "DATABASE_URL",
                "postgresql://alice:sup3rsecret@127.0.0.1:1/shop",
            )
            .output()
            .unwrap(),
        &["migrate", "status"],
    );
    run.code(6)
        .stderr_has("host=127.0.0.1 port=1 user=alice dbname=shop")
        .stderr_has("from DATABASE_URL");
    assert!(!run.stderr.contains("sup3rsecret") && !run.stdout.contains("sup3rsecret"));
}

use crate::support::Run;

#[test]
fn concurrent_runners_apply_exactly_once() {
    let s = Session::new();
    s.migration(
        "1_slow.sql",
        "-- migrate:up\nCREATE TABLE runs (n int);\nINSERT INTO runs VALUES (1);\nSELECT pg_sleep(1.5);\n",
    );
    let args = ["migrate", "up", "--lock-wait", "10s"];
    let first = s.spawn(&args);
    let second = s.spawn(&args);
    let (a, b) = (finish(first, &args), finish(second, &args));
    a.success();
    b.success();
    let applied = [&a, &b]
        .iter()
        .filter(|r| r.stdout.contains("applied 1_slow"))
        .count();
    assert_eq!(applied, 1, "exactly one runner applies\n{a:?}\n{b:?}");
    assert!(
        [&a, &b]
            .iter()
            .any(|r| r.stdout.contains("nothing to apply"))
    );
    assert_eq!(s.value("SELECT count(*) FROM runs").as_deref(), Some("1"));
    assert_eq!(s.applied(), ["1_slow"]);
}

#[test]
fn second_runner_gives_up_naming_the_holder() {
    let s = Session::new();
    s.migration("1_slow.sql", "-- migrate:up\nSELECT pg_sleep(3);\n");
    let args = ["migrate", "up"];
    let first = s.spawn(&args);
    // The first runs the migration (so it holds the history's lock): an
    // advisory lock alone may be another of its locks on a loaded machine.
    assert!(wait_until(Duration::from_secs(60), || {
        s.value(
            "SELECT count(*) FROM pg_stat_activity
             WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(3)%'",
        )
        .as_deref()
            == Some("1")
    }));
    let second = s.orch(&["migrate", "up", "--lock-wait", "300ms"]);
    second
        .code(5)
        .stderr_has("the migration history is locked by another orch process (pid ")
        .stderr_has("application_name \"orch migrate up (tester) (lock)\"");
    finish(first, &args).success();
}

#[test]
fn lock_timeout_retries_until_the_blocker_goes_away() {
    let s = classic();
    s.orch(&["migrate", "up"]).success();
    s.migration("20240103000000_add_flag.sql", "-- migrate:up\nALTER TABLE comments ADD COLUMN flag boolean;\n-- migrate:down\nALTER TABLE comments DROP COLUMN flag;\n");
    let blocker = s.db.connect();
    blocker.execute("SET application_name = 'long reader'; BEGIN; SELECT * FROM comments;");
    let args = [
        "migrate",
        "up",
        "--lock-timeout",
        "100ms",
        "--lock-retries",
        "30",
    ];
    let child = s.spawn(&args);
    std::thread::sleep(Duration::from_millis(1200));
    blocker.execute("COMMIT");
    let run = finish(child, &args);
    run.success()
        .stdout_has("applied 20240103000000_add_flag")
        .stderr_has("lock timeout (100 ms) at migrations/20240103000000_add_flag.sql:2")
        .stderr_has("waiting for AccessExclusiveLock on relation comments")
        .stderr_has(&format!("held by pid {}", blocker.pid()))
        .stderr_has("application_name \"long reader\"");
    let attempts: i32 = s
        .value("SELECT attempts FROM orch.migrations WHERE name = 'add_flag'")
        .unwrap()
        .parse()
        .unwrap();
    assert!(attempts > 1, "attempts = {attempts}");
    assert!(s.columns("comments").contains(&"flag".to_string()));
}

#[test]
fn lock_timeout_gives_up_after_bounded_retries_naming_the_blocker() {
    let s = classic();
    s.orch(&["migrate", "up"]).success();
    s.migration(
        "20240103000000_add_flag.sql",
        "-- migrate:up\nALTER TABLE comments ADD COLUMN flag boolean;\n",
    );
    let blocker = s.db.connect();
    blocker.execute("SET application_name = 'stuck report'; BEGIN; SELECT count(*) FROM comments;");
    let run = s.orch(&[
        "migrate",
        "up",
        "--lock-timeout",
        "50ms",
        "--lock-retries",
        "2",
    ]);
    run.code(5)
        .stderr_has("gave up after 3 attempts")
        .stderr_has("nothing of it was applied")
        .stderr_has(&format!(
            "pid {} (application_name \"stuck report\", idle in transaction",
            blocker.pid()
        ))
        .stderr_has("SELECT count(*) FROM comments");
    assert!(!s.columns("comments").contains(&"flag".to_string()));
    assert_eq!(s.applied().len(), 2);
    blocker.execute("ROLLBACK");
}

#[test]
fn application_writes_keep_flowing_while_ddl_waits() {
    // Guards the point of lock_timeout: while our ALTER waits behind a long
    // reader, other sessions' writes queue behind the ALTER only until it
    // times out, never for the reader's whole transaction.
    let s = classic();
    s.orch(&["migrate", "up"]).success();
    s.migration(
        "20240103000000_add_flag.sql",
        "-- migrate:up\nALTER TABLE comments ADD COLUMN flag boolean;\n",
    );
    let reader = s.db.connect();
    reader.execute("BEGIN; SELECT * FROM comments;");
    let args = [
        "migrate",
        "up",
        "--lock-timeout",
        "200ms",
        "--lock-retries",
        "40",
    ];
    let child = s.spawn(&args);
    // Each write is sent while orch's ALTER is seen waiting in the lock
    // queue, so it queues behind the ALTER; the reader stays open until all
    // of them are done (or, if one waits for the reader, until we give up).
    const WRITES: usize = 3;
    let alter_waiting = lock_waiters("comments", "AccessExclusiveLock");
    let written = AtomicUsize::new(0);
    let written_while_reader_open = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let (monitor, writer) = (s.db.connect(), s.db.connect());
            for _ in 0..WRITES {
                let queued = wait_until(Duration::from_secs(60), || {
                    monitor.query(&alter_waiting)[0][0].as_deref() == Some("1")
                });
                if !queued {
                    return;
                }
                writer.execute("INSERT INTO comments (body) VALUES ('x')");
                written.fetch_add(1, Ordering::SeqCst);
            }
        });
        // Not a speed bound: only how long to wait before calling it a hang.
        wait_until(Duration::from_secs(60), || writer.is_finished());
        let n = written.load(Ordering::SeqCst);
        reader.execute("COMMIT");
        n
    });
    assert_eq!(
        written_while_reader_open, WRITES,
        "only {written_while_reader_open} of {WRITES} writes sent while orch's ALTER waited for its lock got through while the reader's transaction was open"
    );
    finish(child, &args)
        .success()
        .stdout_has("applied 20240103000000_add_flag")
        .stderr_has("lock timeout (200 ms) at migrations/20240103000000_add_flag.sql:2");
    let attempts: i32 = s
        .value("SELECT attempts FROM orch.migrations WHERE name = 'add_flag'")
        .unwrap()
        .parse()
        .unwrap();
    assert!(attempts > 1, "attempts = {attempts}");
    assert_eq!(
        s.value("SELECT count(*) FROM comments WHERE body = 'x'")
            .as_deref(),
        Some("3")
    );
}
