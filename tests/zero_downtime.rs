//! The zero-downtime promise, checked: the whole posts plan under
//! continuous simulated traffic loses no write and no row; DDL waiting
//! behind a long transaction never stalls the application for longer than
//! its lock_timeout; and the textbook migration visibly does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::{Run, Session, lock_waiters, wait_until};

fn demo(s: &Session, args: &[&str]) -> (Run, serde_json::Value) {
    let url = s.db.connection_string();
    let mut all = vec!["demo", "--json", "--database-url", url.as_str()];
    all.extend_from_slice(args);
    let run = s.orch(&all);
    let report = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("demo printed no JSON report ({e})\n{run:?}"));
    (run, report)
}

/// The SVG `--plot` wrote names every stage of the report's table.
fn assert_plot_names_the_stages(svg: &std::path::Path, report: &serde_json::Value) {
    let text = std::fs::read_to_string(svg)
        .unwrap_or_else(|e| panic!("no plot at {}: {e}", svg.display()));
    assert!(text.starts_with("<svg"), "not an SVG: {text:.200}");
    for stage in report["stages"].as_array().unwrap() {
        let name = stage["stage"].as_str().unwrap();
        assert!(text.contains(name), "the plot does not name {name}");
    }
}

fn stage<'a>(report: &'a serde_json::Value, prefix: &str) -> &'a serde_json::Value {
    report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"].as_str().unwrap().starts_with(prefix))
        .unwrap_or_else(|| panic!("no stage {prefix} in {report:#}"))
}

#[test]
fn whole_posts_plan_under_continuous_writers() {
    let s = Session::new();
    let plot = tempfile::tempdir().unwrap();
    let svg = plot.path().join("plan.svg");
    let (run, report) = demo(
        &s,
        &[
            "--rows",
            "50000",
            "--dwell",
            "700ms",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    run.success()
        .stderr_has("wrote the latency plot to ")
        .stderr_has("phase 1/5 add-loc: applied 20240102000000_add_posts_loc")
        .stderr_has("phase 3/5 backfill-loc: backfill finished")
        .stderr_has("phase 5/5 drop-lat-lng: guard passed");
    assert_eq!(report["passed"], true, "{report:#}");
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 6, "baseline and five phases");
    for stage in stages {
        assert_eq!(stage["writes_failed"], 0, "{stage:#}");
        assert_eq!(stage["reads_failed"], 0, "{stage:#}");
        assert!(
            stage["writes_ok"].as_u64().unwrap() > 0,
            "the app kept writing in {stage:#}"
        );
    }
    let v = &report["verification"];
    assert_eq!(v["rows_missing"], 0);
    assert_eq!(v["rows_wrong"], 0);
    assert_eq!(v["rows_unexpected"], 0);
    assert_eq!(v["rows_found"], v["rows_expected"]);
    assert!(
        v["rows_found"].as_u64().unwrap() > 50_000,
        "the app inserted posts"
    );
    assert_eq!(v["lat_lng_dropped"], true);
    assert_plot_names_the_stages(&svg, &report);
    assert_eq!(s.columns("posts"), ["id", "url", "created_at", "loc"]);
    assert_eq!(
        s.value("SELECT count(*) FROM posts WHERE loc IS NULL")
            .as_deref(),
        Some("0")
    );
}

#[test]
fn add_column_behind_a_long_transaction_retries_without_stalling_writers() {
    let s = Session::new();
    let lock_timeout_ms = 200.0;
    let (run, report) = demo(
        &s,
        &[
            "--rows",
            "20000",
            "--dwell",
            "500ms",
            "--long-reader",
            "2500ms",
            "--lock-timeout",
            "200ms",
            "--lock-retries",
            "30",
        ],
    );
    run.success()
        .stderr_has("a long-running report holds a transaction on posts")
        .stderr_has("lock timeout (200 ms) at")
        .stderr_has("held by pid ")
        .stderr_has("application_name \"demo long report\"")
        .stderr_has("phase 1/5 add-loc: applied 20240102000000_add_posts_loc in ")
        .stderr_has(" attempts); confirmed");
    let phase1 = stage(&report, "1 add-loc");
    assert!(
        phase1["seconds"].as_f64().unwrap() >= 2.0,
        "the ALTER had to wait for the report: {phase1:#}"
    );
    assert_eq!(phase1["writes_failed"], 0);
    assert!(
        phase1["writes_ok"].as_u64().unwrap() > 100,
        "writes kept completing: {phase1:#}"
    );
    // Each attempt may queue writers for at most its lock_timeout; allow
    // scheduling slack on a loaded two-core machine.
    let max = phase1["max_ms"].as_f64().unwrap();
    assert!(
        max < lock_timeout_ms + 400.0,
        "a write waited {max} ms behind the ALTER: {phase1:#}"
    );
    assert_eq!(report["passed"], true);
}

#[test]
fn add_column_fails_cleanly_naming_the_blocking_session() {
    let s = Session::new();
    s.with_repository_files();
    s.orch(&["migrate", "up"]).success();
    s.execute("INSERT INTO posts (url, lat, lng) SELECT 'u' || g, 1, 2 FROM generate_series(1, 1000) AS g");
    let blocker = s.db.connect();
    let blocker_pid = blocker.pid();
    blocker.execute("SET application_name = 'nightly export'; BEGIN; SELECT count(*) FROM posts;");

    // A writer keeps inserting while orch tries and gives up. It counts the
    // writes it sent while orch's ALTER waited in posts' lock queue that went
    // through before the ALTER was seen waiting again: writes queue behind
    // one attempt at most, not behind orch's whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let settings = s.db.settings.clone();
        let alter_waiting = lock_waiters("posts", "AccessExclusiveLock");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let client = settings.connect("test writer").await.unwrap();
                let monitor = settings.connect("test monitor").await.unwrap();
                let (mut writes, mut between_attempts) = (0, 0);
                // A write sent while the ALTER waited has gone through.
                let mut got_through = false;
                while !stop.load(Ordering::SeqCst) {
                    let waiting: i64 = monitor.query_one(&alter_waiting, &[]).await.unwrap().get(0);
                    if waiting > 0 && got_through {
                        // PostgreSQL grants locks in queue order: that write
                        // went through once the attempt it saw had ended, so
                        // this is a later attempt.
                        between_attempts += 1;
                        got_through = false;
                    }
                    client
                        .execute("INSERT INTO posts (url, lat, lng) VALUES ('w', 1, 2)", &[])
                        .await
                        .unwrap();
                    writes += 1;
                    got_through |= waiting > 0;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (writes, between_attempts)
            })
        })
    };
    let run = s.orch(&[
        "advance",
        "posts-location",
        "--lock-timeout",
        "150ms",
        "--lock-retries",
        "3",
    ]);
    stop.store(true, Ordering::SeqCst);
    // The long transaction is still open: a write stuck behind it (rather
    // than behind one attempt's lock_timeout) keeps the writer from
    // finishing. Not a speed bound: only how long to wait for a hang.
    let writer_done_before_commit = wait_until(Duration::from_secs(60), || writer.is_finished());
    blocker.execute("COMMIT");
    let (writes, between_attempts) = writer.join().unwrap();
    run.code(5)
        .stderr_has("gave up after 4 attempts")
        .stderr_has(&format!("pid {blocker_pid} (application_name \"nightly export\", idle in transaction, transaction started "))
        .stderr_has(", query started ")
        .stderr_has("SELECT count(*) FROM posts");
    assert!(
        writer_done_before_commit,
        "a write waited for the long transaction to end ({writes} writes done)"
    );
    assert!(
        between_attempts > 0,
        "no write that queued behind the ALTER got through between its attempts ({writes} writes)"
    );
    assert!(!s.columns("posts").contains(&"loc".to_string()));
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'add-loc'")
            .as_deref(),
        Some("failed")
    );
    s.orch(&["status"])
        .success()
        .stdout_has("phase 1 add-loc failed");
    s.orch(&["advance", "posts-location"]).success();
    assert!(s.columns("posts").contains(&"loc".to_string()));
}

#[test]
fn naive_migration_blocks_writers_then_breaks_the_old_app() {
    // Guards the contrast the demo promises: it must show the failure
    // without failing the suite.
    let s = Session::new();
    let plot = tempfile::tempdir().unwrap();
    let svg = plot.path().join("naive.svg");
    let (run, report) = demo(
        &s,
        &[
            "--naive",
            "--rows",
            "100000",
            "--dwell",
            "700ms",
            "--plot",
            svg.to_str().unwrap(),
        ],
    );
    run.code(1)
        .stderr_has("as expected, the textbook migration broke the application");
    assert_plot_names_the_stages(&svg, &report);
    assert!(
        std::fs::read_to_string(&svg)
            .unwrap()
            .contains("failed write ("),
        "the plot marks the failed writes"
    );
    // Regression: a write that started a moment before the migration and
    // waited behind it was counted (and failed) in the baseline.
    let baseline = stage(&report, "0 baseline");
    assert_eq!(baseline["writes_failed"], 0, "{baseline:#}");
    assert_eq!(baseline["reads_failed"], 0, "{baseline:#}");
    assert_eq!(report["mode"], "naive");
    assert_eq!(report["passed"], false);
    let copy = stage(&report, "1 textbook migration");
    let seconds = copy["seconds"].as_f64().unwrap();
    let max = copy["max_ms"].as_f64().unwrap();
    assert!(
        max >= seconds * 1000.0 * 0.7,
        "writers waited for the whole copy ({seconds} s) but the longest write took {max} ms: {copy:#}"
    );
    let after = stage(&report, "2 after it");
    assert!(after["writes_failed"].as_u64().unwrap() > 0, "{after:#}");
    assert_eq!(after["writes_ok"], 0, "{after:#}");
    assert!(
        after["first_error"]
            .as_str()
            .unwrap()
            .contains("column \"lat\""),
        "{after:#}"
    );
}

#[test]
fn ctrl_c_stops_the_demo_and_removes_its_files() {
    let s = Session::new();
    let scratch = tempfile::tempdir().unwrap();
    let url = s.db.connection_string();
    let args = ["demo", "--database-url", url.as_str(), "--rows", "20000"];
    let child = s
        .command(&args)
        .env("TMPDIR", scratch.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = crate::support::wait_until(Duration::from_secs(60), || {
        s.value("SELECT to_regclass('orch.phases') IS NOT NULL")
            .as_deref()
            == Some("t")
            && s.value("SELECT count(*) > 0 FROM orch.phases WHERE state <> 'pending'")
                .as_deref()
                == Some("t")
    });
    assert!(started, "the demo never started the plan");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    crate::support::finish(child, &args)
        .code(130)
        .stderr_has("interrupted; the demo stopped; its throwaway server and files are removed");
    let left: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
}
