//! `walk: physical`: batches of pages, the cursor a page number, then the
//! catch-up by key; under concurrent writers and across kill -9.

use std::time::Duration;

use super::{numbers_table, progress, start_until, sum_plan, wrong_rows};
use crate::support::{Session, finish, wait_until};

const PHYSICAL: &str = "      walk: physical\n";

/// The page a row version is on.
const PAGE: &str = "(ctid::text::point)[0]::int8";

fn physical_session(extra: &str) -> Session {
    let s = Session::new();
    numbers_table(&s, 20_000);
    sum_plan(
        &s,
        &format!("{PHYSICAL}      max_batch: 500\n      max_rows_per_second: 8000\n{extra}"),
    );
    s
}

fn number(s: &Session, sql: &str) -> i64 {
    s.value(sql).unwrap().parse().unwrap()
}

#[test]
fn pages_then_the_catch_up_update_every_row_once() {
    let s = physical_session("      workers: 2\n");
    let pages = number(&s, "SELECT pg_relation_size('t') / 8192");
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill of public.t by (ctid) with 2 worker(s)")
        .stdout_has("backfill finished");
    assert_eq!(wrong_rows(&s), "0");
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE touched <> 1")
            .as_deref(),
        Some("0"),
        "a row the backfill wrote past the walk's end was not updated again"
    );
    // Two page ranges ending at the table's size when the walk started, and
    // one catch-up range by key, which found nothing left to do.
    let ranges = s.query(
        "SELECT key_columns::text, coalesce(range_start::text, '-'), range_end::text, cursor::text, rows_updated, done
         FROM orch.backfill_workers ORDER BY worker",
    );
    let row = |i: usize| -> Vec<String> { ranges[i].iter().map(|v| v.clone().unwrap()).collect() };
    let half = (pages / 2).to_string();
    assert_eq!(
        row(0)[..4],
        [
            "{ctid}",
            "-",
            &format!("{{{half}}}"),
            &format!("{{{half}}}")
        ]
    );
    assert_eq!(
        row(1)[..4],
        [
            "{ctid}",
            &format!("{{{half}}}"),
            &format!("{{{pages}}}"),
            &format!("{{{pages}}}")
        ]
    );
    assert_eq!(row(2)[..3], ["{id}", "-", "{20000}"]);
    assert_eq!(row(2)[4], "0", "the catch-up had nothing left to update");
    assert!(ranges.iter().all(|r| r[5].as_deref() == Some("t")));
    assert_eq!(
        number(&s, "SELECT sum(rows_updated) FROM orch.backfill_workers"),
        20_000
    );
    assert!(
        number(&s, "SELECT pg_relation_size('t') / 8192") > pages,
        "the new versions went past the end"
    );
}

#[test]
fn rows_the_application_moves_during_the_walk_are_caught_up_by_key() {
    let s = physical_session("");
    let child = start_until(&s, 1_000, &["advance", "fill"]);
    let writer = s.db.connect();
    let catch_up_started = || {
        s.value("SELECT count(*) FROM orch.backfill_workers WHERE key_columns = '{id}' AND batches_done > 0")
            .as_deref()
            != Some("0")
    };
    // An old application version keeps changing `a` without `s` (the row's
    // new version lands past the walk's end or on a page already walked);
    // the new version changes both and inserts rows.
    let (mut old_writes, mut i) = (0, 0u32);
    while i < 400 && !catch_up_started() {
        let id = 20_000 - (i * 37) % 10_000;
        if i % 2 == 0 {
            writer.execute(&format!("UPDATE t SET a = a + 1 WHERE id = {id}"));
            old_writes += 1;
        } else {
            writer.execute(&format!(
                "UPDATE t SET a = a + 1, s = a + 1 + b WHERE id = {id}"
            ));
            writer.execute(&format!("INSERT INTO t (a, b, s) VALUES ({i}, 1, {i} + 1)"));
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        old_writes >= 20,
        "the writes must overlap the page walk ({old_writes})"
    );
    finish(child, &["advance", "fill"]).success();
    assert_eq!(wrong_rows(&s), "0");
    let caught_up = number(
        &s,
        "SELECT rows_updated FROM orch.backfill_workers WHERE key_columns = '{id}'",
    );
    assert!(
        caught_up >= 1,
        "rows moved ahead of the page cursor are updated by the catch-up"
    );
}

#[test]
fn kill_9_then_resume_at_the_recorded_page() {
    let s = physical_session("");
    let end = number(&s, "SELECT pg_relation_size('t') / 8192");
    let mut last = 0i64;
    for at in [2_000, 9_000] {
        let mut child = start_until(&s, at, &["advance", "fill"]);
        std::thread::sleep(Duration::from_millis((at as u64 * 7919) % 120));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let cursor = number(
            &s,
            "SELECT coalesce(cursor[1], '0')::int8 FROM orch.backfill_workers WHERE worker = 0",
        );
        assert!(
            cursor >= last && cursor < end,
            "cursor {cursor} after {last}, end {end}"
        );
        last = cursor;
        // The rows on the pages before the cursor are done; none on the
        // pages after it (the last page may hold new versions).
        assert_eq!(
            number(
                &s,
                &format!("SELECT count(*) FROM t WHERE {PAGE} < {cursor} AND s IS NULL")
            ),
            0
        );
        assert_eq!(
            number(
                &s,
                &format!(
                    "SELECT count(*) FROM t WHERE {PAGE} >= {cursor} AND {PAGE} < {end} - 1 AND s IS NOT NULL"
                )
            ),
            0
        );
        let (_, updated, _) = progress(&s);
        assert_eq!(
            number(&s, "SELECT count(*) FROM t WHERE s IS NOT NULL"),
            updated
        );
        assert!(
            wait_until(Duration::from_secs(30), || {
                s.value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
                    .as_deref()
                    == Some("0")
            }),
            "the killed orch's lock was never released"
        );
    }
    assert!(last > 0, "the walk moved");
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("resuming after");
    assert_eq!(wrong_rows(&s), "0");
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE touched <> 1")
            .as_deref(),
        Some("0"),
        "no row updated twice across the kills"
    );
}

#[test]
fn physical_needs_where_and_settings_are_checked() {
    let s = Session::new();
    numbers_table(&s, 2_000);
    s.plan(
        "fill.yaml",
        "plan: fill\nphases:\n  - id: fill\n    kind: backfill\n    title: Fill t\n    backfill:\n      table: t\n      set: s = a + b\n      walk: physical\n",
    );
    s.orch(&["check"])
        .code(3)
        .stderr_has("fill.yaml:9:13: phases[0].backfill.walk: walk: physical needs `where`");
    sum_plan(&s, "      walk: pages\n");
    s.orch(&["check"])
        .code(3)
        .stderr_has("fill.yaml:10:13: phases[0].backfill.walk: unknown walk \"pages\" (expected key or physical)");
    sum_plan(
        &s,
        "      walk: physical\n      synchronous_commit: sometimes\n",
    );
    s.orch(&["check"]).code(3).stderr_has(
        "phases[0].backfill.synchronous_commit: synchronous_commit \"sometimes\" is not one of off, local, remote_write, on, remote_apply",
    );
    sum_plan(&s, "      walk: physical\n      make_room: true\n");
    s.orch(&["check"])
        .code(3)
        .stderr_has("fill.yaml:11:18: phases[0].backfill.make_room: make_room is the key walk's");
}
