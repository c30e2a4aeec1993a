//! `--targets`: one plan across a fleet of databases. A small fleet on the
//! shared server for the canary, the all-or-nothing gate and a target whose
//! recorded plan differs; three servers of the test's own (one with 20
//! tenant databases) for the posts plan under write load, with one server
//! stopped mid-backfill and resumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::servers::OwnServer;
use crate::support::{Run, Session, TestDb};

const CREATE_T: &str = "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n";

const WALK_PLAN: &str = "plan: walk
phases:
  - id: add-t
    kind: migration
    title: Create t
    migration: create_t
  - id: gate
    kind: deploy
    title: Deploy
    instructions: deploy it
    checks:
      - name: t has a row
        sql: SELECT EXISTS (SELECT 1 FROM t)
  - id: verify
    kind: check
    title: t is there
    checks:
      - name: t exists
        sql: SELECT to_regclass('t') IS NOT NULL
";

/// A password in a target URL; trust auth ignores it, no output may show it.
const PASSWORD: &str = "s3cret-pw";

fn state(db: &TestDb, phase: &str) -> String {
    db.value(&format!(
        "SELECT state FROM orch.phases WHERE plan = 'walk' AND id = '{phase}'"
    ))
    .unwrap_or_default()
}

fn has_t(db: &TestDb) -> bool {
    db.value("SELECT to_regclass('public.t') IS NOT NULL")
        .as_deref()
        == Some("t")
}

#[test]
fn canary_then_the_rest_a_gate_for_all_or_none_and_a_differing_plan_refused() {
    let s = Session::new();
    let dbs = [TestDb::new(), TestDb::new(), TestDb::new()];
    let label = |db: &TestDb| db.settings.label();
    s.migration("1_create_t.sql", CREATE_T)
        .plan("walk.yaml", WALK_PLAN);
    s.write(
        "orch.toml",
        "[targets.trio]\nurls = [\"${T1}\", \"${T2}\", \"${T3}\"]\n",
    );
    // T3 only in .env: target variables are read from it too.
    s.write(".env", &format!("T3={}\n", dbs[2].connection_string()));
    let orch = |args: &[&str]| -> Run {
        let mut command = s.command(args);
        command
            .env(
                "T1",
                format!("{} password={PASSWORD}", dbs[0].connection_string()),
            )
            .env("T2", dbs[1].connection_string())
            .env_remove("T3");
        let run = Run::from(command.output().expect("run orch"), args);
        assert!(
            !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
            "a password was printed: {run:?}"
        );
        run
    };

    // The canary: phase 1 on the first target only.
    let r = orch(&["advance", "walk", "--targets", "trio", "--canary", "1"]);
    r.success().stdout_has("held back by --canary 1");
    assert_eq!(r.stdout.matches("held back").count(), 2, "{}", r.stdout);
    assert!(has_t(&dbs[0]) && !has_t(&dbs[1]) && !has_t(&dbs[2]));
    // What the operator reads: the table of outcomes, the fleet's status.
    let status = orch(&["status", "--targets", "trio"]);
    status.success();
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    for (i, db) in dbs.iter().enumerate() {
        settings.add_filter(
            &label(db).replace('.', r"\."),
            format!("[target {}]", i + 1),
        );
    }
    // The labels' widths (a pid in the database names) pad the table.
    settings.add_filter(r"(TARGET|\[target \d\]) +", "$1  ");
    settings.bind(|| {
        insta::assert_snapshot!("fleet_advance_canary", r.stdout);
        insta::assert_snapshot!("fleet_status_after_canary", status.stdout);
    });
    // A gate (any confirmation) is for the whole fleet: not while two
    // targets have not run the phase.
    let r = orch(&["confirm", "walk", "--targets", "trio", "--by", "ops"]);
    r.code(4)
        .stderr_has("does not wait for confirmation on 2 of 3 targets");
    assert_eq!(state(&dbs[0], "add-t"), "done");
    // The next advance does the rest; the canary waits for its confirmation.
    let r = orch(&["advance", "walk", "--targets", "trio"]);
    r.success().stdout_has("done, waits for confirm");
    assert!(dbs.iter().all(has_t));
    let r = orch(&["confirm", "walk", "--targets", "trio", "--by", "ops"]);
    r.success().stdout_has("add-t: confirmed by ops");
    assert!(dbs.iter().all(|db| state(db, "add-t") == "confirmed"));

    // The deploy gate opens everywhere; its check holds on two targets only.
    let r = orch(&["advance", "walk", "--targets", "trio"]);
    r.success();
    assert!(dbs.iter().all(|db| state(db, "gate") == "open"));
    dbs[0].execute("INSERT INTO t VALUES (1)");
    dbs[1].execute("INSERT INTO t VALUES (1)");
    let r = orch(&["confirm", "walk", "--targets", "trio", "--by", "ops"]);
    r.code(8)
        .stderr_has("on any target: it does not hold on 1 of 3")
        .stderr_has(&label(&dbs[2]))
        .stderr_has("nothing was recorded");
    assert!(
        dbs.iter().all(|db| state(db, "gate") == "open"),
        "nothing recorded anywhere"
    );
    dbs[2].execute("INSERT INTO t VALUES (1)");
    let r = orch(&["confirm", "walk", "--targets", "trio", "--by", "ops"]);
    r.success();
    assert!(dbs.iter().all(|db| state(db, "gate") == "confirmed"));
    let r = orch(&["status", "--targets", "trio"]);
    r.success().stdout_has("walk: 3/3 verify: 3 pending");
    let r = orch(&["migrate", "status", "--targets", "trio"]);
    r.success();
    assert_eq!(r.stdout.matches("1 applied").count(), 3, "{}", r.stdout);
    let r = orch(&["migrate", "status", "--targets", "trio", "--json"]);
    r.success();
    let json: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let targets = json.as_array().unwrap();
    assert_eq!(targets.len(), 3);
    assert_eq!(targets[1]["target"].as_str(), Some(label(&dbs[1]).as_str()));
    assert_eq!(targets[1]["done"]["migrations"][0]["name"], "create_t");
    orch(&["checklist", "walk", "--targets", "trio"])
        .success()
        .stdout_has("- [x] 1 add-t: 3 confirmed")
        .stdout_has("- [x] 2 gate: 3 confirmed")
        .stdout_has("- [ ] 3 verify: 3 pending");
    // The check phase fails on one target: the others go on, and status
    // names it with its error; once fixed, the next advance reruns it there.
    dbs[1].execute("ALTER TABLE t RENAME TO t_gone");
    orch(&["advance", "walk", "--targets", "trio"])
        .code(8)
        .stdout_has("FAILED")
        .stderr_has("failed on 1 of 3 targets");
    orch(&["status", "--targets", "trio"])
        .success()
        .stdout_has(&format!(
            "walk: 3/3 verify: 2 done, 1 failed: {}",
            label(&dbs[1])
        ))
        .stdout_has(&format!(
            "  {}: walk phase 3 verify failed: ",
            label(&dbs[1])
        ));
    dbs[1].execute("ALTER TABLE t_gone RENAME TO t");
    orch(&["advance", "walk", "--targets", "trio"]).success();
    assert!(dbs.iter().all(|db| state(db, "verify") == "done"));
    // Then it is rolled back everywhere.
    orch(&["rollback", "walk", "--targets", "trio", "--by", "ops"]).success();
    assert!(dbs.iter().all(|db| state(db, "verify") == "pending"));

    // One target records another definition of the plan (an edit applied
    // there alone): the fleet refuses, naming it, and changes nothing.
    s.plan("walk.yaml", &format!("# edited on one target\n{WALK_PLAN}"));
    let one = s
        .command(&["advance", "walk"])
        .env("DATABASE_URL", dbs[0].connection_string())
        .output()
        .unwrap();
    Run::from(one, &["advance", "walk"]).success();
    assert_eq!(state(&dbs[0], "verify"), "done");
    s.plan("walk.yaml", WALK_PLAN);
    let r = orch(&["advance", "walk", "--targets", "trio"]);
    r.code(4)
        .stderr_has("plan walk is not the same on every target")
        .stderr_has(&label(&dbs[0]))
        .stderr_has("1 of 3 targets differ");
    assert_eq!(state(&dbs[1], "verify"), "pending");
    assert_eq!(state(&dbs[2], "verify"), "pending");
}

/// Which application version the simulated app runs: v1 writes lat and
/// lng, v2 lat, lng and loc, v3 only loc.
const V1: u8 = 1;
const V2: u8 = 2;
const V3: u8 = 3;

/// A small concurrent write load on every target: inserts and updates of
/// posts as the deployed version writes them, counting writes and failures.
struct App {
    runtime: tokio::runtime::Runtime,
    version: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    writers: Vec<(String, Arc<AtomicU64>, Arc<AtomicU64>)>,
}

impl App {
    fn start(targets: &[(String, orch::connect::ConnectionSettings)]) -> App {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let version = Arc::new(AtomicU8::new(V1));
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for (name, settings) in targets {
            let (written, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
            writers.push((name.clone(), written.clone(), failed.clone()));
            let (settings, version, stop) = (settings.clone(), version.clone(), stop.clone());
            runtime.spawn(async move {
                let mut client = None;
                let mut n: u64 = 0;
                while !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    if client.is_none() {
                        client = settings.connect("fleet test app").await.ok();
                    }
                    let Some(c) = &client else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        continue;
                    };
                    n += 1;
                    let (lat, lng) = ((n % 90) as f64, (n % 180) as f64);
                    let sql = match (version.load(Ordering::SeqCst), n % 2) {
                        (V1, 0) => format!("INSERT INTO posts (url, lat, lng) VALUES ('w{n}', {lat}, {lng})"),
                        (V1, _) => format!("UPDATE posts SET lat = {lat}, lng = {lng} WHERE id = {}", n * 7 % 1000 + 1),
                        (V2, 0) => format!("INSERT INTO posts (url, lat, lng, loc) VALUES ('w{n}', {lat}, {lng}, point({lng}, {lat}))"),
                        (V2, _) => format!("UPDATE posts SET lat = {lat}, lng = {lng}, loc = point({lng}, {lat}) WHERE id = {}", n * 7 % 1000 + 1),
                        (_, 0) => format!("INSERT INTO posts (url, loc) VALUES ('w{n}', point({lng}, {lat}))"),
                        (_, _) => format!("UPDATE posts SET loc = point({lng}, {lat}) WHERE id = {}", n * 7 % 1000 + 1),
                    };
                    match c.batch_execute(&sql).await {
                        Ok(()) => {
                            written.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::SeqCst);
                            client = None;
                        }
                    }
                }
            });
        }
        App {
            runtime,
            version,
            stop,
            writers,
        }
    }

    /// Deploy `version`, and wait until every writer that is up has
    /// written a few times with it.
    fn deploy(&self, version: u8, except: Option<&str>) {
        self.version.store(version, Ordering::SeqCst);
        self.wait_for_writes(except);
    }

    fn wait_for_writes(&self, except: Option<&str>) {
        let before: Vec<u64> = self
            .writers
            .iter()
            .map(|(_, w, _)| w.load(Ordering::SeqCst))
            .collect();
        for _ in 0..600 {
            std::thread::sleep(Duration::from_millis(50));
            let all = self.writers.iter().zip(&before).all(|((name, w, _), b)| {
                Some(name.as_str()) == except || w.load(Ordering::SeqCst) >= b + 4
            });
            if all {
                return;
            }
        }
        panic!("the simulated app stopped writing");
    }

    /// Stop; the writes and failures of each target.
    fn stop(self) -> Vec<(String, u64, u64)> {
        self.stop.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        self.runtime.shutdown_timeout(Duration::from_secs(5));
        self.writers
            .iter()
            .map(|(n, w, f)| {
                (
                    n.clone(),
                    w.load(Ordering::SeqCst),
                    f.load(Ordering::SeqCst),
                )
            })
            .collect()
    }
}

const ROWS: u64 = 2000;

/// `f` on every database of the fleet test.
fn each_db(
    b: &OwnServer,
    c: &OwnServer,
    tenants: &OwnServer,
    names: &[String],
    f: impl Fn(&OwnServer, &str),
) {
    f(b, "shard_b");
    f(c, "shard_c");
    for name in names {
        f(tenants, name);
    }
}

/// The canonical plan across 22 targets on three servers under a write
/// load: the canary, fleet-wide gates, one server stopped mid-backfill
/// (the others finish, status names it), restarted and resumed where its
/// backfill stood; at the end every post on every target is right.
#[test]
fn the_posts_plan_across_three_servers_survives_one_stopped_mid_backfill() {
    let tenants = OwnServer::start();
    let mut shard_b = OwnServer::start();
    let shard_c = OwnServer::start();
    let tenant_names: Vec<String> = (1..=20).map(|i| format!("tenant_{i:02}")).collect();
    for name in &tenant_names {
        tenants.create_database(name);
    }
    shard_b.create_database("shard_b");
    shard_c.create_database("shard_c");
    let b_label = shard_b.settings("shard_b").label();

    let s = Session::new();
    s.with_repository_files();
    s.write(
        "orch.toml",
        "[targets.fleet]\nurls = [\"${SHARD_B_URL}\", \"${SHARD_C_URL}\"]\nurl = \"${TENANTS_URL}\"\ndatabases = \"SELECT datname FROM pg_database WHERE datname LIKE 'tenant_%' ORDER BY datname\"\n",
    );
    s.write(".env", &format!("SHARD_B_URL={}\n", shard_b.url("shard_b")));
    let orch = |args: &[&str]| -> Run {
        let mut command = s.command(args);
        command
            .env("SHARD_C_URL", shard_c.url("shard_c"))
            .env("TENANTS_URL", tenants.url("postgres"));
        Run::from(command.output().expect("run orch"), args)
    };

    // Every target gets posts (migrate up stops before the plan's migration).
    let up = orch(&["migrate", "up", "--targets", "fleet"]);
    up.success();
    assert_eq!(
        up.stdout
            .matches("applied 1: 20240101000000_create_posts")
            .count(),
        22,
        "{}",
        up.stdout
    );
    each_db(&shard_b, &shard_c, &tenants, &tenant_names, |server, db| {
        server.execute(
            db,
            &format!("INSERT INTO posts (url, lat, lng) SELECT 'p' || i, i % 90, i % 180 FROM generate_series(1, {ROWS}) i"),
        )
    });
    let mut targets = vec![
        (b_label.clone(), shard_b.settings("shard_b")),
        ("shard_c".to_string(), shard_c.settings("shard_c")),
    ];
    for name in &tenant_names {
        targets.push((name.clone(), tenants.settings(name)));
    }
    let app = App::start(&targets);
    app.wait_for_writes(None);

    // Phase 1 on a canary of two, then on the other twenty, then one confirmation.
    orch(&[
        "advance",
        "posts-location",
        "--targets",
        "fleet",
        "--canary",
        "2",
    ])
    .success()
    .stdout_has("held back by --canary 2");
    assert_eq!(tenants.value("tenant_01", "SELECT count(*) FROM information_schema.columns WHERE table_name = 'posts' AND column_name = 'loc'").as_deref(), Some("0"));
    orch(&["advance", "posts-location", "--targets", "fleet"]).success();
    orch(&[
        "confirm",
        "posts-location",
        "--targets",
        "fleet",
        "--by",
        "ops",
    ])
    .success();

    // Gate 2: app v2 is deployed everywhere, then confirmed once for all.
    app.deploy(V2, None);
    orch(&["advance", "posts-location", "--targets", "fleet"]).success();
    app.wait_for_writes(None);
    orch(&[
        "confirm",
        "posts-location",
        "--targets",
        "fleet",
        "--by",
        "ops",
    ])
    .success();

    // The backfill, throttled so shard_b is stopped while it runs.
    let backfill = |extra: &[&str]| {
        let mut args = vec![
            "advance",
            "posts-location",
            "--targets",
            "fleet",
            "--parallel",
            "6",
            "--batch-time",
            "20ms",
        ];
        args.extend_from_slice(extra);
        let mut command = s.command(&args);
        command
            .env("SHARD_C_URL", shard_c.url("shard_c"))
            .env("TENANTS_URL", tenants.url("postgres"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command.spawn().expect("spawn orch")
    };
    let child = backfill(&["--max-rate", "800"]);
    let mut updated_at_stop = 0;
    for _ in 0..400 {
        std::thread::sleep(Duration::from_millis(50));
        updated_at_stop = shard_b
            .value("shard_b", "SELECT coalesce(sum(rows_updated), 0) FROM orch.backfill_workers WHERE to_regclass('orch.backfill_workers') IS NOT NULL")
            .unwrap()
            .parse::<u64>()
            .unwrap();
        if updated_at_stop >= 300 {
            break;
        }
    }
    assert!(updated_at_stop >= 300, "shard_b's backfill did not start");
    // The backfill commits its batches with synchronous_commit off (a batch
    // lost in a crash is lost with its cursor, and redone); one synchronous
    // commit flushes the WAL of those seen so far, so they must survive. It
    // must write WAL: PostgreSQL does not flush at the commit of a
    // transaction that wrote none (`SELECT txid_current()` did not, and the
    // test failed when the WAL writer had not flushed yet).
    shard_b.execute(
        "shard_b",
        "CREATE TABLE flush_marker (x int); INSERT INTO flush_marker VALUES (1)",
    );
    shard_b.stop_immediate();
    let run = Run::from(child.wait_with_output().unwrap(), &["advance"]);
    assert_ne!(run.code, 0, "{run:?}");
    let failed_line = run
        .stdout
        .lines()
        .find(|l| l.starts_with(&b_label))
        .unwrap_or_default();
    assert!(failed_line.contains("FAILED"), "{}", run.stdout);
    assert_eq!(
        run.stdout.matches("backfill-loc: done").count(),
        21,
        "the others finish: {}",
        run.stdout
    );

    // Status names the stopped server, with its error.
    orch(&["status", "--targets", "fleet"])
        .code(6)
        .stdout_has("posts-location: 3/5 backfill-loc: 21 done")
        .stdout_has("not read: 1 of 22 targets")
        .stdout_has(&format!("{b_label}: cannot connect"));

    // Restarted, it shows as interrupted, and a rerun resumes it where its
    // cursor stood (not from the start) while the others wait for confirm.
    shard_b.restart();
    let kept: u64 = shard_b
        .value(
            "shard_b",
            "SELECT coalesce(sum(rows_updated), 0) FROM orch.backfill_workers",
        )
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        kept >= updated_at_stop,
        "the restart lost flushed progress: {kept} < {updated_at_stop}"
    );
    let scanned: u64 = shard_b
        .value(
            "shard_b",
            "SELECT sum(rows_scanned) FROM orch.backfill_workers",
        )
        .unwrap()
        .parse()
        .unwrap();
    orch(&["status", "--targets", "fleet"])
        .success()
        .stdout_has(&format!("1 interrupted: {b_label}"));
    let rerun = Run::from(backfill(&[]).wait_with_output().unwrap(), &["advance"]);
    rerun.success();
    assert_eq!(
        rerun.stdout.matches("done, waits for confirm").count(),
        21,
        "{}",
        rerun.stdout
    );
    let resumed = rerun
        .stderr
        .lines()
        .chain(rerun.stdout.lines())
        .find(|l| l.starts_with(&b_label) && l.contains("done before"))
        .unwrap_or_else(|| panic!("no resume line for shard_b: {rerun:?}"));
    let before: u64 = resumed
        .rsplit("rows, ")
        .next()
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{resumed}"));
    let b_lines: Vec<&str> = rerun
        .stderr
        .lines()
        .filter(|l| l.starts_with(&b_label))
        .collect();
    assert_eq!(
        before,
        scanned,
        "shard_b resumes exactly where its cursor stood: {resumed}\n{}",
        b_lines.join("\n")
    );
    let updated_after: u64 = shard_b
        .value(
            "shard_b",
            "SELECT sum(rows_updated) FROM orch.backfill_workers",
        )
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        updated_after >= updated_at_stop,
        "the cursor went back: {updated_after} < {updated_at_stop}"
    );
    orch(&[
        "confirm",
        "posts-location",
        "--targets",
        "fleet",
        "--by",
        "ops",
    ])
    .success();

    // Gate 4 and the contract, across the fleet.
    app.deploy(V3, None);
    orch(&["advance", "posts-location", "--targets", "fleet"]).success();
    app.wait_for_writes(None);
    orch(&[
        "confirm",
        "posts-location",
        "--targets",
        "fleet",
        "--by",
        "ops",
    ])
    .success();
    orch(&["advance", "posts-location", "--targets", "fleet"]).success();
    orch(&[
        "confirm",
        "posts-location",
        "--targets",
        "fleet",
        "--by",
        "ops",
    ])
    .success();
    orch(&["status", "--targets", "fleet"])
        .success()
        .stdout_has("posts-location: 22 complete");
    let json = orch(&["status", "--targets", "fleet", "--json"]);
    json.success();
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["targets"].as_array().unwrap().len(), 22);

    // No failed write but on shard_b while it was down; every post right.
    for (name, written, failed) in app.stop() {
        assert!(written > 0, "{name} wrote nothing");
        if name != b_label {
            assert_eq!(failed, 0, "{name}: {failed} writes failed");
        }
    }
    each_db(&shard_b, &shard_c, &tenants, &tenant_names, |server, db| {
        let wrong = server
            .value(db, "SELECT count(*) FROM posts WHERE loc IS NULL")
            .unwrap();
        assert_eq!(wrong, "0", "{db}: posts without loc");
        let lat = server.value(db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'posts' AND column_name IN ('lat', 'lng')").unwrap();
        assert_eq!(lat, "0", "{db}: lat and lng are dropped");
        let count: u64 = server
            .value(db, "SELECT count(*) FROM posts")
            .unwrap()
            .parse()
            .unwrap();
        assert!(count >= ROWS, "{db}: {count} posts");
    });
}
