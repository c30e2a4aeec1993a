//! The backfill through `orch advance`: correctness on awkward keys, under
//! concurrent writers, across kill -9, Ctrl-C and pause, with parallel
//! workers, and behind a row lock.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::servers::OwnServer;
use crate::support::{Session, TestDb, finish, wait_until};

mod physical;
mod replica;

/// A one-phase plan backfilling `table` (with optional extra backfill settings).
fn plan(table: &str, set: &str, condition: &str, extra: &str) -> String {
    format!(
        "plan: fill\nphases:\n  - id: fill\n    kind: backfill\n    title: Fill {table}\n    backfill:\n      table: {table}\n      set: {set}\n      where: {condition}\n{extra}"
    )
}

/// `t(id, a, b, s)` with `n` rows, `s` to be filled with `a + b`.
fn numbers_table(s: &Session, n: u64) {
    s.execute(&format!(
        "CREATE TABLE t (id serial PRIMARY KEY, a int NOT NULL, b int NOT NULL, s int, touched int NOT NULL DEFAULT 0);
         INSERT INTO t (a, b) SELECT g, g * 2 FROM generate_series(1, {n}) AS g;
         ANALYZE t;"
    ));
}

const SUM_PLAN_SET: &str = "s = a + b, touched = touched + 1";
const SUM_PLAN_WHERE: &str = "s IS DISTINCT FROM a + b";

/// `fill.yaml`: fill `t.s` with `a + b` (with `extra` backfill settings).
fn sum_plan(s: &Session, extra: &str) {
    s.plan("fill.yaml", &plan("t", SUM_PLAN_SET, SUM_PLAN_WHERE, extra));
}

fn progress(s: &Session) -> (i64, i64, i64) {
    let row = &s.query(
        "SELECT coalesce(sum(rows_scanned), 0), coalesce(sum(rows_updated), 0), coalesce(sum(batches_done), 0) FROM orch.backfill_workers",
    )[0];
    let n = |i: usize| row[i].as_deref().unwrap().parse::<i64>().unwrap();
    (n(0), n(1), n(2))
}

/// Every row of `t` has `s = a + b`, and the backfill updated each row once.
fn assert_every_row_right_once(s: &Session) {
    assert_eq!(wrong_rows(s), "0");
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE touched <> 1")
            .as_deref(),
        Some("0")
    );
}

fn wrong_rows(s: &Session) -> String {
    s.value("SELECT count(*) FROM t WHERE s IS DISTINCT FROM a + b")
        .unwrap()
}

#[test]
fn keys_with_gaps() {
    let s = Session::new();
    numbers_table(&s, 30_000);
    // Holes of every size, and a far-away tail.
    s.execute("DELETE FROM t WHERE id % 3 = 0 OR id BETWEEN 5000 AND 12000; UPDATE t SET id = id + 1000000000 WHERE id > 29000;");
    sum_plan(&s, "      max_batch: 2000\n");
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill finished");
    assert_every_row_right_once(&s);
    let rows: i64 = s.value("SELECT count(*) FROM t").unwrap().parse().unwrap();
    let (scanned, updated, batches) = progress(&s);
    assert_eq!((scanned, updated), (rows, rows));
    assert!(
        batches >= rows / 2000,
        "{batches} batches for {rows} rows of at most 2000"
    );
}

#[test]
fn composite_and_text_keys() {
    let s = Session::new();
    s.execute(
        "CREATE TABLE events (tenant text NOT NULL, n bigint NOT NULL, v int NOT NULL, w int, PRIMARY KEY (tenant, n));
         INSERT INTO events SELECT 'tenant-' || (g % 7), g, g, NULL FROM generate_series(1, 20000) AS g;
         CREATE TABLE codes (code text PRIMARY KEY, v int NOT NULL, w int);
         INSERT INTO codes SELECT md5(g::text), g, NULL FROM generate_series(1, 20000) AS g;
         ANALYZE events; ANALYZE codes;",
    );
    for (table, key) in [("events", "(tenant, n)"), ("codes", "(code)")] {
        s.plan(
            "fill.yaml",
            &plan(table, "w = v * 10", "w IS NULL", "      max_batch: 3000\n"),
        );
        s.execute("DROP SCHEMA IF EXISTS orch CASCADE");
        s.orch(&["advance", "fill"])
            .success()
            .stdout_has(&format!("backfill of public.{table} by {key}"));
        assert_eq!(
            s.value(&format!(
                "SELECT count(*) FROM {table} WHERE w IS DISTINCT FROM v * 10"
            ))
            .as_deref(),
            Some("0"),
            "{table}"
        );
        assert_eq!(progress(&s).0, 20_000, "{table}: every row visited once");
    }
}

#[test]
fn declared_key_must_be_unique_and_not_null() {
    let s = Session::new();
    s.execute(
        "CREATE TABLE nokey (a int, b int);
         INSERT INTO nokey SELECT g, NULL FROM generate_series(1, 10) AS g;
         CREATE TABLE nullable (a int UNIQUE, b int);",
    );
    s.plan("fill.yaml", &plan("nokey", "b = a", "b IS NULL", ""));
    s.orch(&["check"])
        .success()
        .stdout_has("note: the tables and keys of backfill phases (fill/fill) are checked against the database by `orch check --online`");
    s.orch(&["check", "--online"])
        .code(3)
        .stderr_has("phases[0].backfill.table: table nokey has no usable key for a backfill: it has no primary key and no unique index");
    s.orch(&["advance", "fill"])
        .code(1)
        .stderr_has("table nokey has no usable key for a backfill");
    assert_eq!(
        s.value("SELECT count(*) FROM nokey WHERE b IS NULL")
            .as_deref(),
        Some("10")
    );
    s.plan(
        "fill.yaml",
        &plan("nullable", "b = a", "b IS NULL", "      key: [a]\n"),
    );
    s.orch(&["advance", "fill"])
        .code(1)
        .stderr_has("the declared key (a) is not the column list of a unique btree index whose columns are all NOT NULL");
}

#[test]
fn concurrent_inserts_and_updates_are_never_overwritten() {
    let s = Session::new();
    numbers_table(&s, 20_000);
    s.plan(
        "fill.yaml",
        &plan(
            "t",
            "s = a + b",
            SUM_PLAN_WHERE,
            "      max_batch: 1000\n      max_rows_per_second: 10000\n",
        ),
    );
    let child = start_until(&s, 1_000, &["advance", "fill"]);
    // The application (the new version) keeps updating a and s together and
    // inserting rows while the backfill runs: every value it wrote must stay.
    let writer = s.db.connect();
    let mut updated = Vec::new();
    for i in 0..300u32 {
        if i == 10 {
            assert!(
                progress(&s).0 < 20_000,
                "the writes must overlap the backfill"
            );
        }
        let id = 1 + (i * 67) % 20_000;
        let a = 1_000_000 + i as i32;
        writer.execute(&format!(
            "UPDATE t SET a = {a}, s = {a} + b WHERE id = {id}"
        ));
        updated.push((id, a));
        writer.execute(&format!("INSERT INTO t (a, b, s) VALUES ({i}, 1, {i} + 1)"));
        std::thread::sleep(Duration::from_millis(5));
    }
    finish(child, &["advance", "fill"]).success();
    assert_eq!(wrong_rows(&s), "0");
    // Each id was written once; the backfill never writes a.
    for (id, a) in &updated {
        assert_eq!(
            s.value(&format!("SELECT a FROM t WHERE id = {id}")),
            Some(a.to_string()),
            "row {id}: the application's a was lost"
        );
    }
    assert_eq!(s.value("SELECT count(*) FROM t").as_deref(), Some("20300"));
}

/// 20,000 rows and a plan slow enough (500-row batches, 8,000 rows/s) to
/// interrupt in the middle.
fn slow_backfill_session() -> Session {
    slow_backfill_session_with("")
}

/// `slow_backfill_session`, with more backfill settings.
fn slow_backfill_session_with(extra: &str) -> Session {
    let s = Session::new();
    numbers_table(&s, 20_000);
    let throttle = format!("      max_batch: 500\n      max_rows_per_second: 8000\n{extra}");
    sum_plan(&s, &throttle);
    s
}

/// Start a throttled backfill, wait until it has visited `at_least` rows.
fn start_until(s: &Session, at_least: i64, args: &[&str]) -> std::process::Child {
    let child = s.spawn(args);
    assert!(
        wait_until(Duration::from_secs(30), || {
            s.value("SELECT to_regclass('orch.backfill_workers') IS NOT NULL")
                .as_deref()
                == Some("t")
                && progress(s).0 >= at_least
        }),
        "the backfill made no progress"
    );
    child
}

#[test]
fn kill_9_at_several_points_then_resume() {
    // Making room (the default): the cursor, the ranges made room in, and
    // the rows done must agree after every kill.
    let s = slow_backfill_session();
    let mut last_cursor = 0i64;
    for at in [2_000, 7_000, 13_000] {
        let mut child = start_until(&s, at, &["advance", "fill"]);
        std::thread::sleep(Duration::from_millis(fastrand_ms(at)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (scanned, updated, batches) = progress(&s);
        let (cursor, ahead) = cursor_and_ahead(&s);
        assert!(
            cursor >= last_cursor,
            "cursor went back from {last_cursor} to {cursor}"
        );
        last_cursor = cursor;
        // Data and cursor commit together: the rows up to the cursor are
        // done, and of those up to `ahead` (make_room) the even half.
        assert_made_room_exactly(&s, cursor, ahead);
        assert_eq!(
            s.value("SELECT count(*) FROM t WHERE s IS NOT NULL")
                .unwrap()
                .parse::<i64>()
                .unwrap(),
            updated
        );
        assert_eq!(
            s.value(&format!("SELECT count(*) FROM t WHERE id <= {ahead}"))
                .unwrap()
                .parse::<i64>()
                .unwrap(),
            scanned
        );
        // Batches of at most 500 keys, none empty before the end.
        assert!(
            batches >= scanned / 500 && batches <= scanned + 1,
            "{batches} batches for {scanned} rows"
        );
        assert_eq!(
            s.value("SELECT state FROM orch.phases").as_deref(),
            Some("running")
        );
        s.orch(&["status"]).success().stdout_has("phase 1 fill ");
    }
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("resuming phase 1/1 fill")
        .stdout_has("resuming after");
    assert_eq!(wrong_rows(&s), "0");
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE touched <> 1")
            .as_deref(),
        Some("0"),
        "no row updated twice"
    );
    assert_eq!(progress(&s).0, 20_000);
}

/// The worker's cursor and the end of the last range made room in (the
/// cursor when there is none).
fn cursor_and_ahead(s: &Session) -> (i64, i64) {
    let row = &s.query(
        "SELECT coalesce(cursor[1], '0'), coalesce(ahead[array_length(ahead, 1)], cursor[1], '0') FROM orch.backfill_workers",
    )[0];
    let n = |i: usize| row[i].as_deref().unwrap().parse::<i64>().unwrap();
    (n(0), n(1))
}

/// What a committed batch leaves with make_room: every row up to the
/// cursor done, the even half of those after it up to `ahead` done and the
/// odd half not, nothing after `ahead`.
fn assert_made_room_exactly(s: &Session, cursor: i64, ahead: i64) {
    assert!(ahead >= cursor, "ahead {ahead} before the cursor {cursor}");
    for (what, sql) in [
        (
            "rows up to the cursor not done",
            format!("id <= {cursor} AND s IS NULL"),
        ),
        (
            "even rows up to ahead not done",
            format!("id > {cursor} AND id <= {ahead} AND id % 2 = 0 AND s IS NULL"),
        ),
        (
            "odd rows after the cursor done",
            format!("id > {cursor} AND id % 2 <> 0 AND s IS NOT NULL"),
        ),
        (
            "rows after ahead done",
            format!("id > {ahead} AND s IS NOT NULL"),
        ),
    ] {
        assert_eq!(
            s.value(&format!("SELECT count(*) FROM t WHERE {sql}"))
                .as_deref(),
            Some("0"),
            "{what} (cursor {cursor}, ahead {ahead})"
        );
    }
}

fn fastrand_ms(seed: i64) -> u64 {
    (seed as u64 * 7919) % 120
}

/// Until the server has noticed a killed orch's connections: nobody holds
/// plan `fill`'s advisory lock.
fn wait_for_the_lock_to_go(s: &Session) {
    assert!(
        wait_until(Duration::from_secs(30), || {
            s.value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
                .as_deref()
                == Some("0")
        }),
        "the killed orch's lock was never released"
    );
}

#[test]
fn status_after_kill_9_says_interrupted_and_how_to_resume() {
    // Guards against `status` saying "running" for ever after the process died.
    let s = slow_backfill_session();
    let mut child = start_until(&s, 2_000, &["advance", "fill"]);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    wait_for_the_lock_to_go(&s);
    s.orch(&["status"])
        .success()
        .stdout_has("fill  1/1 fill  Fill t  interrupted")
        .stdout_has("phase 1 fill interrupted (no progress for ")
        .stdout_has("the process holding it is gone): run `orch advance fill` to resume");
    s.orch(&["status", "fill", "--json"])
        .success()
        .stdout_has("\"state\": \"interrupted\"")
        .stdout_has("\"alive\": false");
    s.orch(&["status", "--exit-code"])
        .code(9)
        .stderr_has("fill (interrupted)");
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill finished");
    assert_every_row_right_once(&s);
}

#[test]
fn ctrl_c_stops_after_the_batch_and_resumes() {
    let s = slow_backfill_session();
    let child = start_until(&s, 3_000, &["advance", "fill"]);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let run = finish(child, &["advance", "fill"]);
    run.code(130)
        .stderr_has(
            "interrupted; resume with `orch advance fill` (it continues from the saved cursor)",
        )
        .stdout_has("backfill interrupted after");
    assert_eq!(
        s.value("SELECT state FROM orch.phases").as_deref(),
        Some("paused")
    );
    let (scanned, _, _) = progress(&s);
    assert!(scanned > 0 && scanned < 20_000);
    s.orch(&["status"])
        .success()
        .stdout_has("phase 1 fill paused: orch advance fill resumes it");
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill finished");
    assert_every_row_right_once(&s);
}

#[test]
fn pause_from_another_process_then_resume_and_status_shows_progress() {
    let s = slow_backfill_session();
    let child = start_until(&s, 2_000, &["advance", "fill"]);
    // Status while it runs names the process and its host (the heartbeat).
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    s.orch(&["status"])
        .success()
        .stdout_has("phase 1 fill running (last batch ")
        .stdout_has(&format!(" ago, pid {} on {host}): ", child.id()))
        .stdout_has("rows visited (");
    s.orch(&["status", "fill", "--json"])
        .success()
        .stdout_has("\"rows_scanned\"");
    s.orch(&["pause", "fill"])
        .success()
        .stdout_has("asked backfill fill of plan fill to pause");
    let run = finish(child, &["advance", "fill"]);
    run.success().stdout_has("backfill paused on request");
    assert_eq!(
        s.value("SELECT state FROM orch.phases").as_deref(),
        Some("paused")
    );
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill finished");
    assert_eq!(wrong_rows(&s), "0");
    s.orch(&["status", "fill"])
        .success()
        .stdout_has("20000 of ~20000 rows visited (100%)");
}

#[test]
fn parallel_workers_cover_every_row_exactly_once() {
    let s = Session::new();
    numbers_table(&s, 30_000);
    s.execute("DELETE FROM t WHERE id BETWEEN 10000 AND 15000");
    sum_plan(&s, "      max_batch: 2000\n");
    s.orch(&["advance", "fill", "--workers", "3"])
        .success()
        .stdout_has("with 3 worker(s)");
    assert_every_row_right_once(&s);
    assert_eq!(
        s.value("SELECT count(*) FROM orch.backfill_workers")
            .as_deref(),
        Some("3")
    );
    assert_eq!(
        s.value("SELECT bool_and(done) FROM orch.backfill_workers")
            .as_deref(),
        Some("t")
    );
}

#[test]
fn a_locked_row_times_out_the_batch_which_retries_then_progresses() {
    let s = Session::new();
    numbers_table(&s, 5_000);
    sum_plan(&s, "");
    let holder = s.db.connect();
    holder.execute("BEGIN; SELECT * FROM t WHERE id = 2500 FOR UPDATE;");
    let child = s.spawn(&["-v", "advance", "fill", "--lock-timeout", "100ms"]);
    std::thread::sleep(Duration::from_millis(1200));
    holder.execute("COMMIT");
    let run = finish(child, &["advance", "fill"]);
    run.success()
        .stderr_has("canceling statement due to lock timeout")
        .stdout_has("backfill finished");
    assert_every_row_right_once(&s);
}

// Regression: a batch sends its read of the cursor (FOR UPDATE) and the
// check of the plan's lock without waiting; when the read hit the lock
// timeout, the batch failed with the check's "current transaction is
// aborted" (25P02, not retried) and the phase failed. Here the worker's
// cursor row is held by another session for a while: the batch is retried
// as for any lock timeout, and the backfill finishes.
#[test]
fn a_held_cursor_row_is_a_lock_timeout_to_retry() {
    let s = Session::new();
    numbers_table(&s, 20_000);
    sum_plan(
        &s,
        "      max_batch: 500\n      max_rows_per_second: 4000\n",
    );
    let child = s.spawn(&["-v", "advance", "fill", "--lock-timeout", "100ms"]);
    assert!(
        wait_until(Duration::from_secs(30), || {
            s.value("SELECT to_regclass('orch.backfill_workers') IS NOT NULL")
                .as_deref()
                == Some("t")
                && s.value("SELECT count(*) FROM orch.backfill_workers WHERE batches_done > 0")
                    .as_deref()
                    != Some("0")
        }),
        "the backfill never committed a batch"
    );
    let holder = s.db.connect();
    holder.execute("BEGIN; SELECT * FROM orch.backfill_workers FOR UPDATE;");
    std::thread::sleep(Duration::from_millis(800));
    holder.execute("COMMIT");
    finish(child, &["advance", "fill"])
        .success()
        .stderr_has("canceling statement due to lock timeout")
        .stdout_has("backfill finished");
    assert_every_row_right_once(&s);
}

#[test]
fn vacuum_every_n_batches_and_size_figures_are_recorded() {
    let s = Session::new();
    numbers_table(&s, 20_000);
    s.plan(
        "fill.yaml",
        &plan(
            "t",
            "s = a + b",
            SUM_PLAN_WHERE,
            "      max_batch: 2000\n      vacuum_every: 3\n",
        ),
    );
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("VACUUM run(s) took");
    let result = s.value("SELECT result::text FROM orch.phases").unwrap();
    let json: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert!(json["vacuums"].as_u64().unwrap() >= 2, "{json:#}");
    assert!(json["table_bytes_after"].as_i64().unwrap() > 0);
    assert!(json["table_bytes_before"].as_i64().unwrap() > 0);
    assert_eq!(json["rows_updated"], 20_000);
    assert!(json["batch_ms_max"].as_u64().is_some());
    assert_eq!(json["estimate_source"], "estimated from pg_class.reltuples");
}

/// On a database `db` of its own on `server`: `t` with `rows` rows, freshly
/// vacuumed (autovacuum off), filled by `orch advance fill` with the plan
/// `plan_text`, every row right and updated once. Returns `stat` (a query
/// of one number) once the table's statistics count all the updates.
fn fill_on_own_server(server: &OwnServer, db: &str, rows: u64, plan_text: &str, stat: &str) -> i64 {
    server.create_database(db);
    server.execute(
        db,
        &format!(
            "CREATE TABLE t (id serial PRIMARY KEY, a int NOT NULL, b int NOT NULL, s int, touched int NOT NULL DEFAULT 0);
             INSERT INTO t (a, b) SELECT g, g * 2 FROM generate_series(1, {rows}) AS g;
             ALTER TABLE t SET (autovacuum_enabled = off);"
        ),
    );
    server.execute(db, "VACUUM ANALYZE t");
    let s = Session::new();
    s.plan("fill.yaml", plan_text);
    let out = s
        .command(&["advance", "fill"])
        .env("DATABASE_URL", server.url(db))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let value = |sql: &str| server.value(db, sql).unwrap();
    assert_eq!(
        value("SELECT count(*) FROM t WHERE s IS DISTINCT FROM a + b OR touched <> 1"),
        "0"
    );
    let mut read = 0i64;
    wait_until(Duration::from_secs(20), || {
        read = value(stat).parse().unwrap();
        value("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 't'") == rows.to_string()
    });
    read
}

// make_room is what makes the key walk cheaper than one UPDATE: checks that
// the second half of each range really is updated in place (HOT) when the
// walk makes room (the default, with one worker or two), and that nothing
// is in one pass (make_room: false), on the same freshly loaded table. On a server of its own: a transaction running
// anywhere on the server holds back the pruning the room comes from (the
// shared test server creates databases all the time), which the next test
// covers.
#[test]
fn make_room_updates_the_second_half_of_each_range_in_place() {
    let server = OwnServer::start();
    for (i, (make_room, extra)) in [
        (true, "      workers: 2\n"),
        (false, "      workers: 2\n      make_room: false\n"),
        (true, ""),
        (false, "      make_room: false\n"),
    ]
    .into_iter()
    .enumerate()
    {
        let hot = fill_on_own_server(
            &server,
            &format!("case_{i}"),
            40_000,
            &plan("t", SUM_PLAN_SET, SUM_PLAN_WHERE, extra),
            "SELECT n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 't'",
        );
        // About 40% with one worker; with two, 14 to 40% here: a batch of
        // the other worker that started before the room was made holds its
        // pruning back (docs/backfill.md).
        if make_room {
            assert!(
                hot >= 4_000,
                "{extra}: only {hot} of 40000 updates were HOT"
            );
        } else {
            assert!(
                hot < 1_000,
                "{extra}: {hot} of 40000 updates were HOT in one pass"
            );
        }
    }
}

// The key walk's updates read a range's pages in page order (a Bitmap Heap
// Scan: no heap fetches through the index, which pg_stat_user_indexes counts
// in idx_tup_fetch), but keep their index scans when `set` has a subquery
// (it may look rows up by key). On a server of its own: the probes' index
// only scans fetch from the heap too when a transaction elsewhere kept the
// VACUUM from marking the pages all-visible.
#[test]
fn range_updates_read_pages_unless_set_has_a_subquery() {
    let server = OwnServer::start();
    for (i, (set, by_pages)) in [
        (SUM_PLAN_SET, true),
        ("s = (SELECT a + b), touched = touched + 1", false),
    ]
    .into_iter()
    .enumerate()
    {
        let fetched = fill_on_own_server(
            &server,
            &format!("case_{i}"),
            20_000,
            &plan("t", set, SUM_PLAN_WHERE, ""),
            "SELECT idx_tup_fetch FROM pg_stat_user_indexes WHERE indexrelname = 't_pkey'",
        );
        if by_pages {
            assert!(
                fetched < 2_000,
                "{set}: {fetched} rows fetched by index scans"
            );
        } else {
            assert!(
                fetched >= 20_000,
                "{set}: only {fetched} rows fetched by index scans"
            );
        }
    }
}

// Guards the fallback: while a transaction older than the batches runs (here
// in another database), the pages cannot be pruned, so the rest of a range
// is not updated in place; the walk notices after its first range and
// updates whole ranges, then tries again 50 batches later, every row still
// updated once.
#[test]
fn make_room_stops_when_the_pages_get_no_room() {
    let s = Session::new();
    numbers_table(&s, 40_000);
    let other = TestDb::new();
    let blocker = other.connect();
    blocker.execute("BEGIN; CREATE TABLE held (x int);");
    // Batches of 500 keys (each range's rest is 250 rows, enough to judge):
    // 80 of them, so the walk tries again after 50.
    sum_plan(&s, "      make_room: true\n      max_batch: 500\n");
    s.orch(&["-v", "advance", "fill"])
        .success()
        .stderr_has("making room stopped paying (0 of ")
        .stderr_has("making room again");
    blocker.execute("ROLLBACK");
    assert_every_row_right_once(&s);
    assert_eq!(
        s.value("SELECT count(*) FROM orch.backfill_workers WHERE ahead IS NOT NULL")
            .as_deref(),
        Some("0")
    );
}

// The default VACUUM pace: a table of 100,000 rows or more is vacuumed each
// time a fifth of it was visited (so about 4 times), which keeps the growth
// down; `vacuum_every: off` never vacuums, on the same table.
#[test]
fn vacuum_auto_is_the_default_on_big_tables_and_off_turns_it_off() {
    let mut growth = Vec::new();
    for (pace, extra) in [("auto", ""), ("off", "      vacuum_every: off\n")] {
        let s = Session::new();
        numbers_table(&s, 150_000);
        s.execute("VACUUM t");
        sum_plan(&s, extra);
        s.orch(&["advance", "fill", "--dry-run"])
            .success()
            .stdout_has(if pace == "auto" {
                "vacuum: auto: each time 20%"
            } else {
                "vacuum: off"
            });
        s.orch(&["advance", "fill"]).success();
        assert_every_row_right_once(&s);
        let result = s.value("SELECT result::text FROM orch.phases").unwrap();
        let json: serde_json::Value = serde_json::from_str(&result).unwrap();
        let vacuums = json["vacuums"].as_u64().unwrap();
        match pace {
            "auto" => assert!((3..=5).contains(&vacuums), "{vacuums} VACUUMs: {json:#}"),
            _ => assert_eq!(vacuums, 0, "{json:#}"),
        }
        growth.push(json["table_growth_percent"].as_f64().unwrap());
    }
    assert!(
        growth[0] < growth[1],
        "VACUUM did not reduce the growth: {growth:?}"
    );
    // Small tables are left to autovacuum.
    let s = Session::new();
    numbers_table(&s, 20_000);
    sum_plan(&s, "");
    s.orch(&["advance", "fill"]).success();
    assert_eq!(
        s.value("SELECT result->>'vacuums' FROM orch.phases")
            .as_deref(),
        Some("0")
    );
    // A value that is no pace is refused at its own line and field.
    for bad in ["-1", "1.5", "[1]", "sometimes", "0"] {
        sum_plan(&s, &format!("      vacuum_every: {bad}\n"));
        s.orch(&["check"])
            .code(3)
            .stderr_has("fill.yaml:10:21: phases[0].backfill.vacuum_every: vacuum_every ");
    }
}

#[test]
fn each_batch_continues_after_the_recorded_cursor() {
    // Guards against a batch of a dead orch process that commits after the
    // resume started: the next batch waits for the cursor row and continues
    // after what is recorded, not after what its worker remembered.
    // In one pass (make_room, the default, is what the kill -9 test walks).
    let s = slow_backfill_session_with("      make_room: false\n");
    let child = start_until(&s, 2_000, &["advance", "fill", "--lock-timeout", "5s"]);
    let other = s.db.connect();
    other.execute("BEGIN; SELECT cursor FROM orch.backfill_workers FOR UPDATE;");
    let row = &other
        .query("SELECT cursor[1], coalesce(ahead[array_length(ahead, 1)], cursor[1]) FROM orch.backfill_workers")[0];
    let (before, ahead): (i64, i64) = (
        row[0].as_deref().unwrap().parse().unwrap(),
        row[1].as_deref().unwrap().parse().unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    // What another process's batch records: a cursor, and no range made
    // room in after it.
    other
        .execute("UPDATE orch.backfill_workers SET cursor = ARRAY['15000'], ahead = NULL; COMMIT;");
    finish(child, &["advance", "fill"]).success();
    assert!(
        ahead < 14_000,
        "the walk was not held back early enough ({before}, {ahead})"
    );
    // The range the recorded cursor skipped was not walked past what was
    // recorded (up to `ahead`, the even rows: make_room); everything else was.
    assert_eq!(
        s.value(&format!(
            "SELECT count(*) FROM t WHERE id > {before} AND id <= 15000 AND touched = 0"
        )),
        Some(
            (15_000 - before - (before + 1..=ahead).filter(|id| id % 2 == 0).count() as i64)
                .to_string()
        )
    );
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE id > 15000 AND touched <> 1")
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        s.value(&format!(
            "SELECT count(*) FROM t WHERE id <= {before} AND touched <> 1"
        ))
        .as_deref(),
        Some("0")
    );
}

#[test]
fn a_batch_over_its_statement_timeout_is_split_and_retried() {
    let s = Session::new();
    numbers_table(&s, 1_000);
    // 5 ms a row: the first batch (1000 keys; with make_room, their 500
    // even rows) outlasts the 2 s statement timeout; a quarter of it does not.
    s.execute(
        "CREATE FUNCTION slow_sum(a int, b int) RETURNS int VOLATILE LANGUAGE plpgsql
         AS $$ BEGIN PERFORM pg_sleep(0.005); RETURN a + b; END $$;",
    );
    s.plan(
        "fill.yaml",
        &plan(
            "t",
            "s = slow_sum(a, b), touched = touched + 1",
            SUM_PLAN_WHERE,
            "",
        ),
    );
    s.orch(&["-v", "advance", "fill"])
        .success()
        .stderr_has(
            "batch failed (canceling statement due to statement timeout), retry 1 with 250 keys",
        )
        .stdout_has("backfill finished");
    assert_every_row_right_once(&s);
}

// Guards against a range made room in that is too slow to finish in one
// statement: the first half went fast (even keys), so the range is big,
// and its rest (odd keys, 5 ms a row here) outlasts the statement timeout
// every time. After a timeout the batches finish it a quarter at a time.
#[test]
fn a_range_made_room_in_too_slow_to_finish_is_finished_in_pieces() {
    let s = Session::new();
    numbers_table(&s, 3_000);
    s.execute(
        "CREATE FUNCTION slow_odd(id int, a int, b int) RETURNS int VOLATILE LANGUAGE plpgsql
         AS $$ BEGIN IF id % 2 = 1 THEN PERFORM pg_sleep(0.005); END IF; RETURN a + b; END $$;",
    );
    s.plan(
        "fill.yaml",
        &plan(
            "t",
            "s = slow_odd(id, a, b), touched = touched + 1",
            SUM_PLAN_WHERE,
            "      make_room: true\n",
        ),
    );
    s.orch(&["-v", "advance", "fill"])
        .success()
        .stderr_has("batch failed (canceling statement due to statement timeout)")
        .stdout_has("backfill finished");
    assert_every_row_right_once(&s);
}

#[test]
fn a_failing_batch_fails_the_phase_naming_its_key_range_and_a_retry_resumes() {
    let s = Session::new();
    numbers_table(&s, 3_000);
    // b = 2 * id, so row 1500 divides by zero.
    s.plan(
        "fill.yaml",
        &plan(
            "t",
            "s = a + b + 0 / (b - 3000), touched = touched + 1",
            SUM_PLAN_WHERE,
            "      max_batch: 500\n",
        ),
    );
    let run = s.orch(&["advance", "fill"]);
    run.code(1)
        .stderr_has("backfill of public.t failed in the batch after key ")
        .stderr_has("(worker 0): division by zero")
        .stderr_has("SQLSTATE 22012");
    // The batch sizer may have cut batches smaller than 500 (a loaded
    // machine): the range named is the failing batch's, around row 1500.
    let range = |after: &str| -> i64 {
        let at = run.stderr.find(after).expect("a key range") + after.len();
        let digits: String = run.stderr[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("a key")
    };
    // The batch starts after the cursor: the table's start while the first
    // ranges made room in are not finished yet.
    let from = match run.stderr.contains("after key (table start)") {
        true => 0,
        false => range("after key (id)=("),
    };
    let through = range("through (id)=(");
    // With make_room a batch finishes the oldest range made room in and
    // makes room in the next, two ranges (of up to 500 keys) further on.
    assert!(
        from < 1500 && 1500 <= through && through - from <= 1500,
        "{from}..{through}: {}",
        run.stderr
    );
    assert_eq!(
        s.value("SELECT state FROM orch.phases").as_deref(),
        Some("failed")
    );
    // The batches before it stay done, as recorded; nothing of the failed
    // batch was.
    let (cursor, ahead) = cursor_and_ahead(&s);
    assert_eq!(cursor, from);
    let done = cursor + (cursor + 1..=ahead).filter(|id| id % 2 == 0).count() as i64;
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE touched = 1")
            .as_deref(),
        Some(done.to_string().as_str())
    );
    assert_eq!(
        s.value(
            "SELECT count(*) FROM t WHERE touched = 1 AND id > $1"
                .replace("$1", &ahead.to_string())
                .as_str()
        )
        .as_deref(),
        Some("0")
    );
    s.execute("UPDATE t SET b = b + 1, a = a - 1 WHERE id = 1500");
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has(&format!("resuming after {ahead} rows"));
    assert_every_row_right_once(&s);
}

#[test]
fn a_resumed_backfill_shares_its_rate_among_the_recorded_workers() {
    let s = Session::new();
    numbers_table(&s, 12_000);
    sum_plan(
        &s,
        "      max_batch: 200\n      max_rows_per_second: 3000\n",
    );
    let child = start_until(&s, 1_000, &["advance", "fill", "--workers", "4"]);
    s.orch(&["pause", "fill"]).success();
    finish(child, &["advance", "fill"]).success();
    let (before, _, _) = progress(&s);
    assert!(before < 6_000, "paused too late: {before} rows done");
    let started = std::time::Instant::now();
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has(
            "the backfill started with 4 worker range(s) and resumes with them (1 asked for now)",
        )
        .stdout_has("in all runs; this run visited");
    // A lower bound only (a slow machine cannot break it): the rest at
    // 3000 rows/s in all, not 3000 per worker.
    let floor = (12_000 - before) as f64 / 3000.0 * 0.6;
    assert!(
        started.elapsed().as_secs_f64() >= floor,
        "{} rows in {:?}: faster than the ceiling allows",
        12_000 - before,
        started.elapsed()
    );
    assert_every_row_right_once(&s);
}

#[test]
fn application_updates_wait_at_most_about_one_batch() {
    let s = Session::new();
    numbers_table(&s, 300_000);
    sum_plan(&s, "      batch_time: 50ms\n");
    let mut child = start_until(&s, 1, &["advance", "fill"]);
    let backfill_started = std::time::Instant::now();
    // The application updates rows all over the table, one at a time,
    // while the backfill runs; it records how long each update took.
    let app = s.db.connect();
    let mut slowest = Duration::ZERO;
    let mut updates = 0u32;
    let mut i = 0u64;
    while child.try_wait().unwrap().is_none() {
        i += 1;
        let id = 1 + (i * 7919) % 300_000;
        let started = std::time::Instant::now();
        app.execute(&format!("UPDATE t SET a = a + 1, s = NULL WHERE id = {id}"));
        slowest = slowest.max(started.elapsed());
        updates += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    let backfill_took = backfill_started.elapsed();
    finish(child, &["advance", "fill"]).success();
    eprintln!("slowest application update {slowest:?} of {updates}; backfill {backfill_took:?}");
    assert!(
        updates > 20,
        "only {updates} updates overlapped the backfill"
    );
    let max_batch: u64 = s
        .value("SELECT result->>'batch_ms_max' FROM orch.phases")
        .unwrap()
        .parse()
        .unwrap();
    // A row in a batch is released when the batch commits; the margin is
    // for the update's own work on a busy 2-core machine. One big UPDATE
    // would hold a row for most of the backfill's time instead.
    assert!(
        slowest <= Duration::from_millis(max_batch + 500) && slowest < backfill_took / 2,
        "an application update waited {slowest:?}; the longest batch took {max_batch} ms, the backfill {backfill_took:?}"
    );
}

#[test]
fn a_deadlocked_batch_is_retried() {
    let s = Session::new();
    numbers_table(&s, 1_000);
    sum_plan(&s, "");
    // The application holds row 900; the first batch (rows 1-1000; with
    // make_room, their even half) locks rows up to 898 and waits for it;
    // then the application asks for row 2.
    let app = s.db.connect();
    app.execute("BEGIN; UPDATE t SET a = a WHERE id = 900;");
    let child = s.spawn(&["-v", "advance", "fill", "--lock-timeout", "10s"]);
    let batch_waits = wait_until(Duration::from_secs(30), || {
        s.value(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name LIKE 'orch backfill%' AND wait_event_type = 'Lock'",
        )
        .as_deref()
            == Some("1")
    });
    assert!(batch_waits, "the batch never waited for row 900");
    // The batch waited first, so its deadlock check (after deadlock_timeout)
    // finds the cycle and cancels the batch; this update then goes through.
    // On a loaded machine this session's own check could come first and
    // cancel it instead: it checks only after a minute.
    app.execute("SET deadlock_timeout = '1min'");
    app.execute("UPDATE t SET a = a WHERE id = 2; COMMIT;");
    finish(child, &["advance", "fill"])
        .success()
        .stderr_has("batch failed (deadlock detected), retry 1")
        .stdout_has("backfill finished");
    assert_every_row_right_once(&s);
}

/// Regression: `where: "true) OR (true"` turned every batch into a
/// whole-table update (5 batches, every row updated 5 times). A fragment
/// that could escape its place in orch's statement is refused with its
/// file, line and field, before anything runs.
#[test]
fn backfill_fragments_cannot_escape_their_batch() {
    let s = Session::new();
    numbers_table(&s, 50);
    let cases = [
        (
            "s = a + b, touched = touched + 1",
            "\"true) OR (true\"",
            "plans/fill.yaml:9:14: phases[0].backfill.where: where closes a parenthesis it did not open",
        ),
        (
            "s = a + b FROM t AS other",
            "s IS NULL",
            "plans/fill.yaml:8:12: phases[0].backfill.set: set is the list of assignments after SET",
        ),
        (
            "s = a + b",
            "\"(s IS NULL\"",
            "phases[0].backfill.where: where leaves a parenthesis open",
        ),
        (
            "s = a + b",
            "\"s IS NULL /* forever\"",
            "phases[0].backfill.where: where has a comment that never ends",
        ),
    ];
    for (set, condition, expected) in cases {
        s.plan("fill.yaml", &plan("t", set, condition, ""));
        s.orch(&["check"]).code(3).stderr_has(expected);
        s.orch(&["advance", "fill"]).code(3).stderr_has(expected);
    }
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE touched <> 0")
            .as_deref(),
        Some("0")
    );
    // Refused before anything ran: orch's schema was never even created.
    assert_eq!(
        s.value("SELECT to_regnamespace('orch') IS NULL").as_deref(),
        Some("t")
    );

    // A comment at the end of a fragment is fine: it ends at its line.
    s.plan(
        "fill.yaml",
        &plan(
            "t",
            "\"s = a + b, touched = touched + 1 -- sum\"",
            "\"s IS NULL -- not yet\"",
            "",
        ),
    );
    s.orch(&["advance", "fill"]).success();
    assert_every_row_right_once(&s);
}

/// Regression: a view as a backfill table gave "table pg_stat_activity does
/// not exist". Views and system catalogs are refused by name.
#[test]
fn views_and_system_catalogs_are_not_backfill_tables() {
    let s = Session::new();
    numbers_table(&s, 5);
    s.execute("CREATE VIEW t_view AS SELECT * FROM t");
    for (table, expected) in [
        (
            "pg_stat_activity",
            "pg_stat_activity is pg_catalog.pg_stat_activity, a system catalog",
        ),
        (
            "pg_class",
            "pg_class is pg_catalog.pg_class, a system catalog",
        ),
        ("t_view", "t_view is a view, not a table"),
    ] {
        s.plan("fill.yaml", &plan(table, "s = 1", "true", ""));
        s.orch(&["check", "--online"])
            .code(3)
            .stderr_has(&format!("phases[0].backfill.table: {expected}"));
    }
}

/// Regression: command-line overrides skipped the plan file's validation:
/// `--max-rate 0` panicked mid-backfill, `--workers 0` became 1,
/// `--batch-pause 100000000h` slept for ever, `--lock-timeout 0` removed the
/// bound on how long writers queue behind orch. Each is refused before
/// anything runs, with the file's words.
#[test]
fn overrides_are_validated_like_the_plan_file() {
    let s = Session::new();
    numbers_table(&s, 20);
    sum_plan(&s, "");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--max-rate", "0"],
            "max_rows_per_second must be at least 1",
        ),
        (&["--workers", "0"], "workers must be between 1 and 64"),
        (&["--workers", "65"], "workers must be between 1 and 64"),
        (
            &["--batch-time", "0ms"],
            "batch_time must be between 10ms and 10s",
        ),
        (
            &["--batch-time", "100000h"],
            "batch_time must be between 10ms and 10s",
        ),
        (&["--batch-time", "100"], "\"100\" has no unit"),
        (&["--batch-pause", "100000000h"], "pause must be at most 1h"),
        (&["--vacuum-every", "0"], "vacuum_every must be at least 1"),
        (
            &["--vacuum-every", "often"],
            "vacuum_every \"often\" is not a number of batches, auto or off",
        ),
        (
            &["--lock-timeout", "0"],
            "0 would let orch's DDL wait for its lock for ever",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["advance", "fill"];
        args.extend_from_slice(flags);
        s.orch(&args).code(2).stderr_has(expected);
    }
    assert_eq!(
        s.value("SELECT to_regnamespace('orch') IS NULL").as_deref(),
        Some("t"),
        "nothing ran"
    );
    // The file's own durations name their unit too.
    sum_plan(&s, "      batch_time: 100\n");
    s.orch(&["check"])
        .code(3)
        .stderr_has("phases[0].backfill.batch_time: \"100\" has no unit; write 100s for seconds or 100ms for milliseconds");
}
