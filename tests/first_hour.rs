//! Messages that say what to do (issue 16): plan and phase typos suggest
//! the closest name, `orch backfill PLAN PHASE` re-runs a finished backfill
//! for rows a lagging application wrote after it, and a backfill's rate and
//! row count read the same wherever they are shown.

use std::time::Duration;

use crate::support::{Session, finish, wait_until};

const USERS_PLAN: &str = "plan: users-full-name
phases:
  - id: check-users
    kind: check
    title: Users are fine
    checks:
      - name: always
        sql: SELECT true
";

#[test]
fn every_command_taking_a_plan_suggests_the_closest_name() {
    let s = Session::new();
    s.with_repository_files();
    s.plan("users-full-name.yaml", USERS_PLAN);
    for args in [
        &["advance", "users-fullname"][..],
        &["confirm", "users-fullname", "--by", "a"],
        &["rollback", "users-fullname"],
        &["pause", "users-fullname"],
        &["status", "users-fullname"],
        &["checklist", "users-fullname"],
        &["backfill", "users-fullname", "fill"],
    ] {
        s.orch(args)
            .code(2)
            .stderr_has("no plan named \"users-fullname\"")
            .stderr_has("did you mean users-full-name?")
            .stderr_has("(plans: posts-location, users-full-name)");
    }
    // Too far from any name: no guess, only the list.
    s.orch(&["status", "billing"])
        .code(2)
        .stderr_has("no plan named \"billing\" in plans or the database (plans: posts-location, users-full-name)");
    // A plan known only to the database is listed too.
    s.orch(&["advance", "users-full-name"]).success();
    s.remove("plans/users-full-name.yaml");
    s.orch(&["checklist", "users-full-nam"])
        .code(2)
        .stderr_has("did you mean users-full-name?");
}

#[test]
fn phase_typos_suggest_the_closest_phase() {
    let s = Session::new();
    s.with_repository_files();
    s.orch(&["migrate", "up"]).success();
    s.orch(&["advance", "posts-location"]).success();
    s.orch(&["confirm", "posts-location", "add-lock", "--by", "a"])
        .code(2)
        .stderr_has("plan posts-location has no phase \"add-lock\"; did you mean add-loc? (phases: add-loc, deploy-dual-write, ");
    s.orch(&["backfill", "posts-location", "backfil-loc"])
        .code(2)
        .stderr_has("did you mean backfill-loc?");
}

/// `t(id, a, b, s)` with `n` rows (`s` NULL), the plan `fill` backfilling
/// `s = a + b` then a contract migration guarded by "every s is right".
fn rerun_session(n: u64) -> Session {
    let s = Session::new();
    s.execute(&format!(
        "CREATE TABLE t (id serial PRIMARY KEY, a int NOT NULL, b int NOT NULL, s int);
         INSERT INTO t (a, b) SELECT g, g * 2 FROM generate_series(1, {n}) AS g;
         ANALYZE t;"
    ));
    s.migration(
        "1_s_not_null.sql",
        "-- migrate:up\n-- orch:allow set-not-null-scan: t is a test table of a few thousand rows\nALTER TABLE t ALTER COLUMN s SET NOT NULL;\n-- migrate:down\nALTER TABLE t ALTER COLUMN s DROP NOT NULL;\n",
    );
    s.plan(
        "fill.yaml",
        "plan: fill
phases:
  - id: fill
    kind: backfill
    title: Fill s
    backfill:
      table: t
      set: s = a + b
      where: s IS DISTINCT FROM a + b
      max_batch: 500
  - id: require-s
    kind: migration
    role: contract
    title: s is required
    migration: s_not_null
    guard:
      - name: every s is right
        sql: SELECT NOT EXISTS (SELECT 1 FROM t WHERE s IS DISTINCT FROM a + b)
",
    );
    s
}

#[test]
fn a_row_written_after_the_backfill_is_fixed_by_re_running_it() {
    let s = rerun_session(3_000);
    s.orch(&["backfill", "fill", "fill"])
        .code(4)
        .stderr_has("plan fill has not started")
        .stderr_has("orch advance fill");
    s.orch(&["advance", "fill"]).success();
    s.orch(&["backfill", "fill", "require-s"])
        .code(4)
        .stderr_has("phase 2 (require-s) of plan fill is a migration phase, not a backfill")
        .stderr_has("its backfill phases: fill");
    s.orch(&["confirm", "fill", "fill", "--by", "ann"])
        .success();
    let result_before = s.value("SELECT result::text FROM orch.phases WHERE id = 'fill'");

    // A lagging v1 instance writes a row the old way, after the backfill.
    s.execute("INSERT INTO t (a, b) VALUES (40, 2)");
    s.orch(&["advance", "fill"])
        .code(8)
        .stderr_has("its guard does not hold")
        .stderr_has("`orch backfill fill fill`");

    s.orch(&["backfill", "fill", "fill"])
        .success()
        .stdout_has("re-run of backfill fill finished: 1 rows updated (3001 visited); phase fill stays confirmed");
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE s IS DISTINCT FROM a + b")
            .as_deref(),
        Some("0")
    );
    // Audited with who ran it; the phase's state and result are untouched.
    let events = s.query(
        "SELECT action, actor, detail->>'outcome' FROM orch.events
         WHERE action LIKE 'backfill_rerun%' ORDER BY id",
    );
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0][0].as_deref(), Some("backfill_rerun_started"));
    assert_eq!(events[1][0].as_deref(), Some("backfill_rerun_ended"));
    assert_eq!(events[1][2].as_deref(), Some("finished"));
    assert!(
        events
            .iter()
            .all(|e| e[1].as_deref().is_some_and(|a| !a.is_empty()))
    );
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'fill'")
            .as_deref(),
        Some("confirmed")
    );
    assert_eq!(
        s.value("SELECT result::text FROM orch.phases WHERE id = 'fill'"),
        result_before
    );
    // The first run's figures are still what status shows.
    s.orch(&["status", "fill"])
        .success()
        .stdout_has("backfill fill: 3000 of ~3000 rows visited (100%), 3000 updated");
    s.orch(&["checklist", "fill"])
        .success()
        .stdout_has("backfill rerun ended `fill` by");

    s.orch(&["advance", "fill"]).success();
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'require-s'")
            .as_deref(),
        Some("done")
    );
    // A second re-run starts afresh over the table as it is now.
    s.orch(&["backfill", "fill", "fill"])
        .success()
        .stdout_has("0 rows updated (3001 visited)");
    // Rolling the backfill back forgets the re-run's cursors as well.
    s.orch(&["rollback", "fill"]).success();
    s.orch(&["rollback", "fill", "fill"]).success();
    assert_eq!(
        s.value("SELECT count(*) FROM orch.backfill_workers")
            .as_deref(),
        Some("0")
    );
}

/// The number before ` rows/s` in `text`, after `after`.
fn rate_in(text: &str, after: &str) -> String {
    let rest = &text[text
        .find(after)
        .unwrap_or_else(|| panic!("{after:?} in {text}"))..];
    let end = rest
        .find(" rows/s")
        .unwrap_or_else(|| panic!("a rate in {rest}"));
    let number = rest[..end].rsplit(' ').next().unwrap();
    number.to_string()
}

#[test]
fn advance_status_and_checklist_show_the_same_rate() {
    let s = rerun_session(20_000);
    let advance = s.orch(&["advance", "fill"]);
    advance.success();
    let from_advance = rate_in(&advance.stdout, "backfill finished: 20000 rows updated");
    let status = s.orch(&["status", "fill"]);
    status.success();
    let from_status = rate_in(&status.stdout, "backfill fill:");
    let checklist = s.orch(&["checklist", "fill"]);
    checklist.success();
    let from_checklist = rate_in(&checklist.stdout, "- progress:");
    assert!(from_advance.parse::<f64>().unwrap() > 0.0, "{from_advance}");
    assert_eq!(
        from_advance, from_status,
        "{}\n{}",
        advance.stdout, status.stdout
    );
    assert_eq!(from_status, from_checklist);
}

#[test]
fn check_online_counts_a_table_never_analysed() {
    let s = Session::new();
    s.execute(
        "CREATE TABLE t (id serial PRIMARY KEY, a int NOT NULL, b int NOT NULL, s int)
             WITH (autovacuum_enabled = false);
         INSERT INTO t (a, b) SELECT g, g FROM generate_series(1, 20030) AS g;",
    );
    assert_eq!(
        s.value("SELECT reltuples::int FROM pg_class WHERE relname = 't'")
            .as_deref(),
        Some("-1")
    );
    s.plan(
        "fill.yaml",
        "plan: fill\nphases:\n  - id: fill\n    kind: backfill\n    title: Fill\n    backfill:\n      table: t\n      set: s = a + b\n      where: s IS NULL\n",
    );
    s.orch(&["check", "--online"])
        .success()
        .stdout_has("public.t: key (id), 20030 rows (counted: never analysed)");
    s.execute("ANALYZE t");
    s.orch(&["check", "--online"])
        .success()
        .stdout_has("~20030 rows (estimated from pg_class.reltuples)");
}

#[test]
fn a_re_run_pauses_and_resumes_from_its_own_cursor() {
    let s = rerun_session(20_000);
    s.orch(&["advance", "fill"]).success();
    s.orch(&["confirm", "fill", "fill", "--by", "ann"])
        .success();
    s.execute("UPDATE t SET s = NULL");
    let child = s.spawn(&["backfill", "fill", "fill", "--max-rate", "4000"]);
    let started = wait_until(Duration::from_secs(30), || {
        s.value("SELECT coalesce(sum(rows_scanned), 0) FROM orch.backfill_workers WHERE phase = 'fill@rerun'")
            .is_some_and(|n| n != "0")
    });
    assert!(started, "the re-run made no progress");
    s.orch(&["pause", "fill"])
        .success()
        .stdout_has("`orch backfill fill fill` resumes it");
    finish(child, &["backfill", "fill", "fill"])
        .success()
        .stdout_has("re-run paused on request");
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'fill'")
            .as_deref(),
        Some("confirmed")
    );
    s.orch(&["backfill", "fill", "fill"])
        .success()
        .stdout_has("resuming the re-run of backfill fill")
        .stdout_has("re-run of backfill fill finished");
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE s IS DISTINCT FROM a + b")
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        s.value("SELECT sum(rows_scanned) FROM orch.backfill_workers WHERE phase = 'fill@rerun'")
            .as_deref(),
        Some("20000")
    );
}
