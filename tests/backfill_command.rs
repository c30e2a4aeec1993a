//! The command backfill (`command:` instead of `set:`): the test program
//! (`tests/programs/backfill_loc.rs`) computes `loc` from lat and lng under
//! concurrent writers, across kill -9 of orch and of the program, with a
//! hanging, crashing and failing program, and with rejected rows.

use std::time::Duration;

use crate::support::{Session, finish, wait_until};

const PROGRAM: &str = env!("CARGO_BIN_EXE_orch-test-backfill");

/// `posts(id, lat, lng, loc)` with `n` rows; the rows whose id is a
/// multiple of `bad_every` (0: none) have an out-of-range latitude.
fn posts(s: &Session, n: u64, bad_every: u64) {
    let bad = if bad_every == 0 {
        "false".to_string()
    } else {
        format!("g % {bad_every} = 0")
    };
    s.execute(&format!(
        "CREATE TABLE posts (id serial PRIMARY KEY, lat float8, lng float8, loc point);
         INSERT INTO posts (lat, lng)
           SELECT CASE WHEN {bad} THEN 95 + g % 7 ELSE (g % 1800) / 10.0 - 90 + 0.05 END,
                  (g % 3600) / 10.0 - 180 + 0.25
           FROM generate_series(1, {n}) AS g;
         ANALYZE posts;"
    ));
}

/// A one-phase plan whose backfill runs the test program with `args`.
fn plan(s: &Session, args: &[&str], extra: &str) {
    let mut command = vec![format!("{PROGRAM:?}")];
    command.extend(args.iter().map(|a| format!("{a:?}")));
    s.plan(
        "fill.yaml",
        &format!(
            "plan: fill
phases:
  - id: fill
    kind: backfill
    title: Compute loc with the team's program
    backfill:
      table: posts
      command: [{}]
      reads: [lat, lng]
      writes: [loc]
{extra}",
            command.join(", ")
        ),
    );
}

fn number(s: &Session, sql: &str) -> i64 {
    s.value(sql).unwrap().parse().unwrap()
}

/// Rows whose loc is not computed from their current lat and lng (the
/// rejected rows aside: their loc stays NULL).
fn wrong_rows(s: &Session) -> i64 {
    number(
        s,
        "SELECT count(*) FROM posts WHERE lat BETWEEN -90 AND 90
           AND (loc IS NULL OR NOT loc ~= point(lng, lat))",
    )
}

fn batches(s: &Session) -> i64 {
    if s.value("SELECT to_regclass('orch.backfill_workers') IS NOT NULL")
        .as_deref()
        != Some("t")
    {
        return 0;
    }
    number(
        s,
        "SELECT coalesce(sum(batches_done), 0) FROM orch.backfill_workers",
    )
}

#[test]
fn command_backfill_fills_rows_and_records_the_rejected_ones() {
    let s = Session::new();
    posts(&s, 3_000, 700);
    plan(
        &s,
        &[],
        "      where: loc IS NULL\n      max_errors: 10\n      workers: 2\n",
    );
    s.orch(&["check"]).success();
    s.orch(&["advance", "fill", "--dry-run"])
        .success()
        .stdout_has("command")
        .stdout_has("reads")
        .stdout_has("lat, lng");
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill finished");
    assert_eq!(wrong_rows(&s), 0);
    // Ids 700, 1400, 2100 and 2800: rejected, recorded, left alone.
    assert_eq!(
        number(&s, "SELECT count(*) FROM posts WHERE loc IS NULL"),
        4
    );
    assert_eq!(
        s.value("SELECT string_agg(key[1], ',' ORDER BY key[1]::int) FROM orch.backfill_errors WHERE kind = 'rejected'")
            .as_deref(),
        Some("700,1400,2100,2800")
    );
    s.orch(&["status", "fill"])
        .success()
        .stdout_has("4 rejected by the program");
    s.orch(&["status", "fill", "--errors"])
        .success()
        .stdout_has("phase 1 fill: 4 rows rejected by the program, 0 left out")
        .stdout_has("key (id)=(700)  rejected: latitude 95 is out of range");
    let json = s.orch(&["status", "fill", "--errors", "--json"]);
    json.success().stdout_has("\"rejected\": 4");
    s.orch(&["checklist", "fill"])
        .success()
        .stdout_has("- command: `")
        .stdout_has("- reads `lat, lng`, writes `loc`, at most 10 rejected rows")
        .stdout_has("4 rejected by the program");
    // An old application instance wrote rows without loc afterwards: the
    // re-run fills them with the same program.
    s.execute("UPDATE posts SET loc = NULL WHERE id % 100 = 1");
    s.orch(&["backfill", "fill", "fill"])
        .success()
        .stdout_has("backfill finished");
    assert_eq!(wrong_rows(&s), 0);
}

#[test]
fn over_max_errors_fails_naming_the_rows_and_a_fixed_program_retries_them() {
    let s = Session::new();
    posts(&s, 2_000, 500);
    // The "fix": with the file `lenient` in the project's root, the program
    // clamps a latitude instead of rejecting it (its path is relative: the
    // program runs in the project's root).
    plan(
        &s,
        &["--lenient-if-exists", "lenient"],
        "      where: loc IS NULL\n",
    );
    s.orch(&["advance", "fill"])
        .code(1)
        .stderr_has("the program rejected")
        .stderr_has("more than max_errors (0)")
        .stderr_has("(id)=(500): latitude 98 is out of range")
        .stderr_has("orch status fill --errors");
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'fill'")
            .as_deref(),
        Some("failed")
    );
    assert!(number(&s, "SELECT count(*) FROM orch.backfill_errors") >= 1);
    s.write("lenient", "");
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("tried again")
        .stdout_has("backfill finished");
    assert_eq!(
        number(&s, "SELECT count(*) FROM posts WHERE loc IS NULL"),
        0
    );
    assert_eq!(number(&s, "SELECT count(*) FROM orch.backfill_errors"), 0);
    assert_eq!(
        number(
            &s,
            "SELECT count(*) FROM posts WHERE lat > 90 AND NOT loc ~= point(lng, 90)"
        ),
        0
    );
}

// Guards against a stale write: the program computed loc from lat/lng that
// the application changed before the batch's write; written, it would
// overwrite the application's loc with one computed from the old values.
#[test]
fn concurrent_writers_are_never_overwritten_with_values_from_stale_input() {
    let s = Session::new();
    posts(&s, 4_000, 0);
    // No `where`: every row is written, so a row the application set
    // meanwhile would be overwritten if the write did not compare.
    plan(
        &s,
        &["--slow-ms", "40"],
        "      max_batch: 200\n      batch_time: 50ms\n",
    );
    let mut child = s.command(&["advance", "fill", "-v"]);
    let child = child
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || batches(&s) >= 1),
        "the backfill never committed a batch"
    );
    let writer = s.db.connect();
    let (mut failed, mut writes) = (0, 0);
    let mut i: u64 = 0;
    // The new application version: writes lat, lng and loc together, until
    // the backfill is over.
    while writer.query("SELECT state FROM orch.phases WHERE id = 'fill'")[0][0].as_deref()
        == Some("running")
    {
        for _ in 0..20 {
            i += 1;
            let id = 1 + (i * 7919) % 4_000;
            let lat = (i % 170) as f64 - 85.0 + 0.5;
            let sql = format!(
                "UPDATE posts SET lat = {lat}, lng = lng + 1, loc = point(lng + 1, {lat}) WHERE id = {id}"
            );
            match writer.try_execute(&sql) {
                Ok(()) => writes += 1,
                Err(_) => failed += 1,
            }
        }
    }
    let run = finish(child, &["advance", "fill"]);
    run.success().stdout_has("backfill finished");
    assert_eq!(failed, 0, "application writes failed");
    assert!(
        writes > 100,
        "the writes must overlap the backfill ({writes})"
    );
    assert_eq!(
        wrong_rows(&s),
        0,
        "a row holds a loc computed from stale input"
    );
    // The writes overlapped batches in flight: some rows were written
    // meanwhile, skipped by the compare, and visited again.
    run.stderr_has("changed while the program ran");
    assert_eq!(number(&s, "SELECT count(*) FROM orch.backfill_queue"), 0);
}

/// The program's pid, from its pid file.
fn program_pid(s: &Session) -> Option<i32> {
    std::fs::read_to_string(s.path("program.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn kill_9(pid: i32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn kill_9_of_the_program_and_of_orch_mid_batch_then_resume_exactly() {
    let s = Session::new();
    posts(&s, 6_000, 0);
    plan(
        &s,
        &["--slow-ms", "30", "--pid-file", "program.pid"],
        "      where: loc IS NULL\n      max_batch: 100\n      max_rows_per_second: 2000\n",
    );
    let mut child = s.spawn(&["advance", "fill"]);
    assert!(wait_until(Duration::from_secs(60), || batches(&s) >= 3));
    // The program dies mid-batch: orch starts it again, the batch is redone.
    let first = program_pid(&s).unwrap();
    kill_9(first);
    let before = batches(&s);
    assert!(
        wait_until(Duration::from_secs(60), || batches(&s) >= before + 3),
        "the backfill did not go on after its program was killed"
    );
    assert_ne!(program_pid(&s), Some(first), "a new program was started");
    // Now orch itself, mid-batch.
    child.kill().unwrap();
    child.wait().unwrap();
    let (scanned, updated, cursor): (i64, i64, i64) = {
        let row = &s
            .query("SELECT rows_scanned, rows_updated, cursor[1]::int FROM orch.backfill_workers")
            [0];
        let n = |i: usize| row[i].as_deref().unwrap().parse::<i64>().unwrap();
        (n(0), n(1), n(2))
    };
    // Data and cursor committed together.
    assert_eq!(
        number(&s, "SELECT count(*) FROM posts WHERE loc IS NOT NULL"),
        updated
    );
    assert_eq!(
        number(
            &s,
            &format!("SELECT count(*) FROM posts WHERE id > {cursor} AND loc IS NOT NULL")
        ),
        0
    );
    assert_eq!(scanned, cursor);
    // The orphaned program sees its input close and exits.
    let orphan = program_pid(&s).unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            !std::path::Path::new(&format!("/proc/{orphan}")).exists()
                || std::fs::read_to_string(format!("/proc/{orphan}/stat"))
                    .is_ok_and(|st| st.contains(") Z "))
        }),
        "the program outlived its orch"
    );
    assert!(wait_until(Duration::from_secs(30), || {
        s.value("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
            .as_deref()
            == Some("0")
    }));
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill finished");
    assert_eq!(wrong_rows(&s), 0);
    // Every row written exactly once over the runs.
    assert_eq!(
        number(&s, "SELECT sum(rows_updated) FROM orch.backfill_workers"),
        6_000
    );
}

#[test]
fn a_hanging_program_is_stopped_and_never_hangs_orch() {
    let s = Session::new();
    posts(&s, 500, 0);
    plan(
        &s,
        &["--hang", "--pid-file", "program.pid"],
        "      command_timeout: 1s\n",
    );
    s.orch(&["advance", "fill"])
        .code(1)
        .stderr_has("did not answer within 1.0 s (command_timeout) for 3 batches in a row")
        .stderr_has("thinking very hard")
        // The first two were retried, with a new program.
        .stderr_has("stopped, and the batch is retried smaller");
    let pid = program_pid(&s).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the hanging program was left running"
    );
    assert_eq!(
        number(&s, "SELECT count(*) FROM posts WHERE loc IS NOT NULL"),
        0
    );
}

#[test]
fn a_program_that_keeps_failing_fails_the_phase_with_its_stderr() {
    let s = Session::new();
    posts(&s, 200, 0);
    plan(&s, &["--fail-at-start"], "");
    s.orch(&["advance", "fill"])
        .code(1)
        .stderr_has("failed 3 times in a row on this batch")
        .stderr_has("exited with status 2")
        .stderr_has("models/geo.bin not found");
}

#[test]
fn a_crashing_program_is_restarted_and_rows_it_leaves_out_are_reported() {
    let s = Session::new();
    posts(&s, 3_000, 0);
    plan(
        &s,
        &["--crash-every", "4", "--leave-out-odd"],
        "      where: loc IS NULL\n      max_batch: 300\n",
    );
    s.orch(&["advance", "fill"])
        .success()
        .stdout_has("backfill finished");
    // Even ids are filled; odd ones were left alone and are listed.
    assert_eq!(
        number(
            &s,
            "SELECT count(*) FROM posts WHERE id % 2 = 0 AND NOT loc ~= point(lng, lat)"
        ),
        0
    );
    assert_eq!(
        number(
            &s,
            "SELECT count(*) FROM posts WHERE id % 2 = 1 AND loc IS NULL"
        ),
        1_500
    );
    assert_eq!(
        number(
            &s,
            "SELECT count(*) FROM orch.backfill_errors WHERE kind = 'left_out'"
        ),
        1_500
    );
    s.orch(&["status", "fill", "--errors"])
        .success()
        .stdout_has("0 rows rejected by the program, 1500 left out")
        .stdout_has("left out: the program did not answer for this row");
}

#[test]
fn command_plans_are_checked_naming_file_line_and_field() {
    let s = Session::new();
    posts(&s, 10, 0);
    let cases = [
        (
            "      set: loc = point(lng, lat)\n      command: [prog]\n      reads: [lat]\n      writes: [loc]\n",
            "plans/fill.yaml:9:16: phases[0].backfill.command: set and command are mutually exclusive",
        ),
        (
            "      command: []\n      reads: [lat]\n      writes: [loc]\n",
            "phases[0].backfill.command: command is the program's argv",
        ),
        (
            "      command: [prog]\n      writes: [loc]\n",
            "phases[0].backfill.reads: a command backfill lists its reads",
        ),
        (
            "      set: loc = point(lng, lat)\n      writes: [loc]\n",
            "phases[0].backfill.writes: writes goes with command",
        ),
        (
            "      command: [prog]\n      reads: [lat]\n      writes: [loc]\n      command_timeout: 5ms\n",
            "phases[0].backfill.command_timeout: command_timeout must be between 100ms and 1h",
        ),
    ];
    for (body, expected) in cases {
        s.plan(
            "fill.yaml",
            &format!(
                "plan: fill\nphases:\n  - id: fill\n    kind: backfill\n    title: t\n    backfill:\n      table: posts\n{body}"
            ),
        );
        s.orch(&["check"]).code(3).stderr_has(expected);
    }
    // Against the database: a column the table lacks, at its place.
    s.plan(
        "fill.yaml",
        "plan: fill\nphases:\n  - id: fill\n    kind: backfill\n    title: t\n    backfill:\n      table: posts\n      command: [prog]\n      reads: [lat, lng]\n      writes: [loc, geohash]\n",
    );
    s.orch(&["check"]).success();
    s.orch(&["check", "--online"])
        .code(3)
        .stderr_has("plans/fill.yaml:10:21: phases[0].backfill.writes[1]: writes names column geohash, which public.posts does not have");
}

// Guards against going round forever: rows the application rewrites faster
// than the program answers can never be written without a stale value.
#[test]
fn a_pass_that_makes_no_progress_fails_naming_the_rows() {
    let s = Session::new();
    posts(&s, 5, 0);
    plan(&s, &["--slow-ms", "300"], "");
    let stop = std::sync::atomic::AtomicBool::new(false);
    // The application rewrites every row every few ms.
    let run = std::thread::scope(|scope| {
        scope.spawn(|| {
            let writer = s.db.connect();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer.execute("UPDATE posts SET lng = lng + 1");
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let run = s.orch(&["advance", "fill"]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        run
    });
    run.code(1)
        .stderr_has("made no progress: each changed again before its write")
        .stderr_has("(id)=(1)");
    assert_eq!(
        number(&s, "SELECT count(*) FROM posts WHERE loc IS NOT NULL"),
        0
    );
}
