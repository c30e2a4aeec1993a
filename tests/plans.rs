//! Plans end to end: `orch advance / confirm / rollback / status / checklist
//! / check` driving the real binary against a real PostgreSQL.

use std::time::Duration;

use crate::support::{Run, SMALL_PLAN, Session, finish, wait_until};

const PLAN: &str = "posts-location";

/// The repository's migrations and plans, the posts table created by
/// `orch migrate up`, and `rows` posts written by application v1.
fn posts_session(rows: usize) -> Session {
    let s = Session::new();
    s.with_repository_files();
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 20240101000000_create_posts")
        .stdout_has("stopped before 20240102000000_add_posts_loc: it belongs to plan posts-location, phase 1 (add-loc)");
    s.execute(&format!(
        "INSERT INTO posts (url, lat, lng)
         SELECT 'https://example.com/' || g, (g % 180) - 90 + 0.5, (g % 360) - 180 + 0.25
         FROM generate_series(1, {rows}) AS g"
    ));
    s
}

fn v2_writes(s: &Session, n: usize) {
    s.execute(&format!(
        "INSERT INTO posts (url, lat, lng, loc)
         SELECT 'https://v2.example.com/' || g, 10.5, 20.25, point(20.25, 10.5) FROM generate_series(1, {n}) AS g"
    ));
}

fn v3_writes(s: &Session, n: usize) {
    s.execute(&format!(
        "INSERT INTO posts (url, loc) SELECT 'https://v3.example.com/' || g, point(1, 2) FROM generate_series(1, {n}) AS g"
    ));
}

fn phase_state(s: &Session, id: &str) -> String {
    phase_state_of(s, PLAN, id)
}

#[test]
fn posts_location_end_to_end() {
    let s = posts_session(3000);
    s.orch(&["confirm", PLAN, "--by", "alice"])
        .code(4)
        .stderr_has("plan posts-location has not started");

    // Phase 1: expand.
    s.orch(&["advance", PLAN])
        .success()
        .stdout_has("posts-location: running phase 1/5 add-loc (migration)")
        .stdout_has("review it, then: orch confirm posts-location add-loc --by NAME");
    assert!(s.columns("posts").contains(&"loc".to_string()));
    assert_eq!(
        s.value("SELECT plan || '/' || phase FROM orch.migrations WHERE name = 'add_posts_loc'")
            .as_deref(),
        Some("posts-location/add-loc")
    );
    // Refusal: the phase before is not confirmed.
    s.orch(&["advance", PLAN])
        .code(4)
        .stderr_has("phase 1 of 5 (add-loc) is not confirmed")
        .stderr_has("next: orch confirm posts-location add-loc --by NAME");
    s.orch(&[
        "confirm",
        PLAN,
        "add-loc",
        "--by",
        "alice",
        "--note",
        "column is there",
    ])
    .success()
    .stdout_has("phase 1 add-loc confirmed by alice")
    .stdout_has("next: `orch advance posts-location` runs phase 2 of 5 (deploy-dual-write");

    // Phase 2: gate. Confirming before v2 writes anything fails its check.
    s.orch(&["advance", PLAN])
        .success()
        .stdout_has("gate 2/5 deploy-dual-write is open")
        .stdout_has("Deploy application v2")
        .stdout_has("orch confirm posts-location deploy-dual-write --by NAME");
    s.orch(&["confirm", PLAN, "--by", "bob"])
        .code(8)
        .stderr_has("a check failed")
        .stderr_has("check \"new posts carry a correct loc\" returned false")
        .stderr_has("WHERE created_at >= :gate_opened_at");
    assert_eq!(phase_state(&s, "deploy-dual-write"), "open");
    v2_writes(&s, 20);
    s.orch(&["confirm", PLAN, "--by", "bob"])
        .success()
        .stdout_has("[ok  ] deploy-dual-write confirm check \"new posts carry a correct loc\"");

    // Phase 3: backfill.
    s.orch(&["advance", PLAN])
        .success()
        .stdout_has("backfill finished: 3000 rows updated");
    assert_eq!(
        s.value("SELECT count(*) FROM posts WHERE loc IS NULL")
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        s.value("SELECT count(*) FROM posts WHERE NOT loc ~= point(lng, lat)")
            .as_deref(),
        Some("0")
    );
    s.orch(&["confirm", PLAN, "backfill-loc", "--by", "alice"])
        .success();

    // Phase 4: gate for the loc-only version.
    s.orch(&["advance", PLAN])
        .success()
        .stdout_has("gate 4/5 deploy-write-loc-only is open");
    v2_writes(&s, 5);
    s.orch(&["confirm", PLAN, "--by", "bob"])
        .code(8)
        .stderr_has("new posts are written by the loc-only version");
    v3_writes(&s, 20);
    s.orch(&["confirm", PLAN, "--by", "bob"]).success();

    // Phase 5: contract, guarded and irreversible.
    s.orch(&["advance", PLAN])
        .success()
        .stdout_has("[ok  ] drop-lat-lng guard check \"nothing is left to copy\"")
        .stdout_has("applied 20240103000000_drop_posts_lat_lng");
    assert_eq!(s.columns("posts"), ["id", "url", "created_at", "loc"]);
    s.orch(&["rollback", PLAN])
        .code(4)
        .stderr_has("phase 5 (drop-lat-lng) of plan posts-location is irreversible")
        .stderr_has("the values of lat and lng are deleted with the columns")
        .stderr_has("orch rollback posts-location --force");
    assert_eq!(s.columns("posts"), ["id", "url", "created_at", "loc"]);
    s.orch(&["confirm", PLAN, "--by", "carol", "--note", "release 42"])
        .success()
        .stdout_has("plan posts-location is complete");
    s.orch(&["advance", PLAN])
        .success()
        .stdout_has("plan posts-location is complete");

    // The original rows kept their location, now in loc.
    assert_eq!(
        s.value(
            "SELECT count(*) FROM posts WHERE url LIKE 'https://example.com/%'
               AND loc ~= point((substr(url, 21)::int % 360) - 180 + 0.25, (substr(url, 21)::int % 180) - 90 + 0.5)"
        )
        .as_deref(),
        Some("3000")
    );
    assert_eq!(
        s.value("SELECT count(*) FROM posts").as_deref(),
        Some("3045")
    );

    // Status as JSON.
    let run = s.orch(&["status", "--json"]);
    run.success();
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let plan = &json.as_array().unwrap()[0];
    assert_eq!(plan["plan"], PLAN);
    assert_eq!(plan["state"], "complete");
    assert_eq!(plan["total"], 5);
    assert!(plan["current"].is_null());
    let confirmed_by: Vec<&str> = plan["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["record"]["confirmed_by"].as_str().unwrap())
        .collect();
    assert_eq!(confirmed_by, ["alice", "bob", "alice", "bob", "carol"]);
    assert_eq!(plan["phases"][2]["result"], serde_json::Value::Null);
    assert_eq!(plan["phases"][2]["record"]["result"]["rows_updated"], 3000);

    // The checklist.
    let checklist = s.orch(&["checklist", PLAN]);
    checklist
        .success()
        .stdout_has("# Release checklist: posts-location")
        .stdout_has(
            "- [x] **1. add-loc** (migration, expand): Add the nullable loc column — *confirmed*",
        )
        .stdout_has("confirmed by alice at ")
        .stdout_has(": \"column is there\"")
        .stdout_has("- [x] **5. drop-lat-lng** (migration, contract, irreversible)")
        .stdout_has("check `new posts carry a correct loc`: passed at")
        .stdout_has("guard `nothing is left to copy`: passed at")
        .stdout_has("confirm refused `deploy-dual-write` by bob (session tester)")
        .stdout_has("confirmed `drop-lat-lng` by carol (session tester): \"release 42\"")
        .stdout_lacks("- [ ]");
}

#[test]
fn status_checklist_and_rollback_midway() {
    let s = posts_session(50);
    s.orch(&["status"])
        .success()
        .stdout_has("posts-location  1/5 add-loc  Add the nullable loc column  not started")
        .stdout_has("orch advance posts-location starts phase 1");
    s.orch(&["advance", PLAN]).success();
    s.orch(&["confirm", PLAN, "--by", "alice"]).success();
    s.orch(&["advance", PLAN]).success();
    s.orch(&["status"])
        .success()
        .stdout_has("posts-location  2/5 deploy-dual-write  Deploy the app version that writes lat,…  open")
        .stdout_has("the deploy, then confirmation of phase 2 deploy-dual-write: orch confirm posts-location deploy-dual-write --by NAME");
    s.orch(&["status", PLAN])
        .success()
        .stdout_has("plan posts-location: phase 2 of 5 (deploy-dual-write), open: Deploy the app version that writes lat, lng and loc (v2)")
        .stdout_has("1  add-loc                migration  confirmed");
    s.orch(&["checklist", PLAN])
        .success()
        .stdout_has("- [ ] **2. deploy-dual-write** (deploy gate): Deploy the app version that writes lat, lng and loc (v2) — *open*")
        .stdout_has("    > Deploy application v2")
        .stdout_has("check `new posts carry a correct loc`: not evaluated yet");

    // Roll back the open gate, then the migration.
    s.orch(&["rollback", PLAN])
        .success()
        .stdout_has("rolled back phase 2 deploy-dual-write; it is pending now");
    // Without a phase, a rollback goes back one phase per call.
    s.orch(&["rollback", PLAN])
        .success()
        .stdout_has("name it: orch rollback posts-location add-loc");
    assert!(s.columns("posts").contains(&"loc".to_string()));
    s.orch(&["rollback", PLAN, "add-loc"]).success().stdout_has(
        "rolled back phase 1 add-loc; it is pending now (reverted 20240102000000_add_posts_loc)",
    );
    assert!(!s.columns("posts").contains(&"loc".to_string()));
    assert_eq!(s.applied(), ["20240101000000_create_posts"]);
    s.orch(&["rollback", PLAN])
        .success()
        .stdout_has("nothing to roll back");
    // And forward again.
    s.orch(&["advance", PLAN]).success();
    assert!(s.columns("posts").contains(&"loc".to_string()));
}

#[test]
fn rolling_back_a_confirmed_gate_reopens_it() {
    let s = posts_session(10);
    s.orch(&["advance", PLAN]).success();
    s.orch(&["confirm", PLAN, "--by", "a"]).success();
    s.orch(&["advance", PLAN]).success();
    v2_writes(&s, 3);
    s.orch(&["confirm", PLAN, "--by", "b"]).success();
    s.orch(&["rollback", PLAN])
        .success()
        .stdout_has("it is open now (gate reopened; confirm it again once the deploy is right)");
    assert_eq!(phase_state(&s, "deploy-dual-write"), "open");
    s.orch(&["advance", PLAN])
        .code(4)
        .stderr_has("phase 2 of 5 (deploy-dual-write) is not confirmed");
    // Repeated without a phase, the rollback does not close the reopened
    // gate too; named, it does (its second step back).
    s.orch(&["rollback", PLAN])
        .success()
        .stdout_has("To roll phase 2 (deploy-dual-write, now open) back further, name it: orch rollback posts-location deploy-dual-write");
    assert_eq!(phase_state(&s, "deploy-dual-write"), "open");
    s.orch(&["rollback", PLAN, "deploy-dual-write"])
        .success()
        .stdout_has("rolled back phase 2 deploy-dual-write; it is pending now");
}

#[test]
fn forced_rollback_of_the_irreversible_phase() {
    let s = posts_session(10);
    for (step, by) in [
        ("advance", ""),
        ("confirm", "a"),
        ("advance", ""),
        ("v2", ""),
        ("confirm", "b"),
        ("advance", ""),
        ("confirm", "c"),
        ("advance", ""),
        ("v3", ""),
        ("confirm", "d"),
        ("advance", ""),
    ] {
        match step {
            "v2" => v2_writes(&s, 2),
            "v3" => v3_writes(&s, 2),
            "confirm" => {
                s.orch(&["confirm", PLAN, "--by", by]).success();
            }
            _ => {
                s.orch(&[step, PLAN]).success();
            }
        }
    }
    assert!(!s.columns("posts").contains(&"lat".to_string()));
    s.orch(&["rollback", PLAN, "--force"])
        .success()
        .stdout_has("rolled back phase 5 drop-lat-lng; it is pending now (reverted 20240103000000_drop_posts_lat_lng)");
    assert!(s.columns("posts").contains(&"lat".to_string()));
    assert_eq!(
        s.value("SELECT detail->>'forced' FROM orch.events WHERE action = 'rolled_back'")
            .as_deref(),
        Some("true")
    );
    s.orch(&["checklist", PLAN])
        .success()
        .stdout_has("rolled back `drop-lat-lng` (**forced**: irreversible) by tester");
}

#[test]
fn migrate_down_refuses_plan_owned_migrations() {
    let s = posts_session(1);
    s.orch(&["advance", PLAN]).success();
    s.orch(&["migrate", "down"])
        .code(4)
        .stderr_has("20240102000000_add_posts_loc belongs to plan posts-location, phase 1 (add-loc); undo it with `orch rollback posts-location`");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("plan posts-location, phase 1 (add-loc)");
}

#[test]
fn a_started_plan_keeps_its_migrations_when_its_file_is_gone() {
    let s = posts_session(1);
    s.orch(&["advance", PLAN]).success();
    // A checkout without the plan file must not let the contract run.
    s.remove("plans/posts-location.yaml");
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("stopped before 20240103000000_drop_posts_lat_lng: it belongs to plan posts-location, phase 5 (drop-lat-lng)");
    s.orch(&["migrate", "down"]).code(4).stderr_has(
        "20240102000000_add_posts_loc belongs to plan posts-location, phase 1 (add-loc)",
    );
    assert_eq!(
        s.columns("posts"),
        ["id", "url", "lat", "lng", "created_at", "loc"]
    );
}

#[test]
fn the_event_log_is_append_only() {
    let s = posts_session(1);
    s.orch(&["advance", PLAN]).success();
    let conn = s.db.connect();
    for sql in [
        "UPDATE orch.events SET actor = 'someone else'",
        "DELETE FROM orch.events",
        "TRUNCATE orch.events",
    ] {
        let err = conn.try_execute(sql).expect_err(sql);
        let message = err.as_db_error().map(|e| e.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("orch.events is append-only")),
            "{sql}: {err:?}"
        );
    }
    assert_ne!(
        s.value("SELECT count(*) FROM orch.events").as_deref(),
        Some("0")
    );
}

#[test]
fn failed_phase_is_recorded_and_retried() {
    let s = Session::new();
    s.migration("1_create_t.sql", "-- migrate:up\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1), (1);\nCREATE UNIQUE INDEX ON t (a);\n-- migrate:down\nDROP TABLE t;\n");
    s.plan("small.yaml", SMALL_PLAN);
    s.orch(&["advance", "small"])
        .code(1)
        .stderr_has("migrations/1_create_t.sql:4:")
        .stderr_has("SQLSTATE 23505");
    assert!(
        !s.has_table("t"),
        "the failed phase leaves the database as it was"
    );
    assert_eq!(s.applied(), Vec::<String>::new());
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'add-t'")
            .as_deref(),
        Some("failed")
    );
    s.orch(&["status"])
        .success()
        .stdout_has("failed (migrations/1_create_t.sql:4:");
    s.orch(&["status", "small"])
        .success()
        .stdout_has("phase add-t failed: migrations/1_create_t.sql:4:");
    // Fix the (not yet applied) migration and retry.
    s.migration("1_create_t.sql", "-- migrate:up\nCREATE TABLE t (a int);\nCREATE UNIQUE INDEX ON t (a);\n-- migrate:down\nDROP TABLE t;\n");
    s.orch(&["advance", "small"]).success();
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'add-t'")
            .as_deref(),
        Some("done")
    );
    assert!(s.has_table("t"));
}

const GUARDED_PLAN: &str = "plan: guarded
phases:
  - id: create-t
    kind: migration
    title: Create t
    migration: create_t
  - id: verify
    kind: check
    title: t is filled
    checks:
      - name: t has rows
        sql: SELECT EXISTS (SELECT 1 FROM t)
  - id: contract
    kind: migration
    role: contract
    title: Add b
    migration: add_b
    guard:
      - name: no row lacks a
        sql: SELECT NOT EXISTS (SELECT 1 FROM t WHERE a IS NULL)
";

/// `t` with one row, the `guarded` plan with `add_b` as its contract
/// migration, and phases 1 and 2 run and confirmed.
fn guarded_session(add_b: &str, plan: &str) -> Session {
    let s = Session::new();
    s.migration(
        "1_create_t.sql",
        "-- migrate:up\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n-- migrate:down\nDROP TABLE t;\n",
    );
    s.migration("2_add_b.sql", add_b);
    s.plan("guarded.yaml", plan);
    for _ in 0..2 {
        s.orch(&["advance", "guarded"]).success();
        s.orch(&["confirm", "guarded", "--by", "a"]).success();
    }
    s
}

#[test]
fn a_guard_refuses_before_and_inside_the_contract_transaction() {
    // The second statement stands in for a writer that slips a row in
    // between the guard's first evaluation and the contract's lock.
    let s = guarded_session(
        "-- migrate:up\nALTER TABLE t ADD COLUMN b int;\nINSERT INTO t VALUES (NULL);\n",
        GUARDED_PLAN,
    );
    s.execute("INSERT INTO t VALUES (NULL)");
    s.orch(&["advance", "guarded"])
        .code(8)
        .stderr_has("refusing to run phase 3 (contract) of plan guarded: its guard does not hold")
        .stderr_has("check \"no row lacks a\" returned false");
    assert_eq!(s.columns("t"), ["a"]);
    assert_eq!(phase_state_of(&s, "guarded", "contract"), "pending");

    s.execute("DELETE FROM t WHERE a IS NULL");
    s.orch(&["advance", "guarded"])
        .code(8)
        .stdout_has("[ok  ] contract guard check \"no row lacks a\"")
        .stderr_has("2_add_b was rolled back: its guard no longer holds once its statements ran");
    assert_eq!(s.columns("t"), ["a"], "the contract left no trace");
    assert_eq!(
        s.value("SELECT count(*) FROM t WHERE a IS NULL").as_deref(),
        Some("0")
    );
    assert_eq!(phase_state_of(&s, "guarded", "contract"), "failed");

    s.migration(
        "2_add_b.sql",
        "-- migrate:up\nALTER TABLE t ADD COLUMN b int;\n",
    );
    s.orch(&["advance", "guarded"]).success();
    assert_eq!(s.columns("t"), ["a", "b"]);
}

#[test]
fn a_guard_too_slow_to_run_under_the_lock_is_checked_once_with_a_warning() {
    // Stands in for a full scan of a big table: under the contract's lock
    // it would stall the application longer than the lock_timeout.
    let s = guarded_session(
        "-- migrate:up\nALTER TABLE t ADD COLUMN b int;\n",
        &GUARDED_PLAN.replace(
            "sql: SELECT NOT EXISTS (SELECT 1 FROM t WHERE a IS NULL)",
            "sql: SELECT NOT EXISTS (SELECT 1 FROM t WHERE a IS NULL) FROM pg_sleep(0.8)",
        ),
    );
    s.orch(&["advance", "guarded", "--lock-timeout", "300ms"])
        .success()
        .stdout_has("[ok  ] contract guard check \"no row lacks a\"")
        .stderr_has("warning: 2_add_b: the guard was not evaluated again under the table's lock: there it takes longer than 300 ms");
    assert_eq!(s.columns("t"), ["a", "b"]);
    assert_eq!(phase_state_of(&s, "guarded", "contract"), "done");
}

fn phase_state_of(s: &Session, plan: &str, id: &str) -> String {
    s.value(&format!(
        "SELECT state FROM orch.phases WHERE plan = '{plan}' AND id = '{id}'"
    ))
    .unwrap()
}

#[test]
fn editing_a_phase_that_ran_is_refused_later_phases_may_change() {
    let s = Session::new();
    s.migration(
        "1_create_t.sql",
        "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n",
    );
    s.plan("small.yaml", SMALL_PLAN);
    s.orch(&["advance", "small"]).success();
    s.plan(
        "small.yaml",
        &SMALL_PLAN.replace("title: Create t", "title: Create table t"),
    );
    s.orch(&["confirm", "small", "--by", "a"])
        .code(4)
        .stderr_has("plans/small.yaml was edited where it may not be")
        .stderr_has("phase 1 (add-t) has run (done");
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'add-t'")
            .as_deref(),
        Some("done")
    );
    s.plan(
        "small.yaml",
        &SMALL_PLAN.replace("instructions: deploy it", "instructions: deploy v2 of it"),
    );
    s.orch(&["confirm", "small", "--by", "a"])
        .success()
        .stdout_has("plans/small.yaml changed since it was last used; phases that have not run were updated (gate)");
    assert_eq!(
        s.value(
            "SELECT detail->'changed_phases'->>0 FROM orch.events WHERE action = 'plan_edited'"
        )
        .as_deref(),
        Some("gate")
    );
    s.orch(&["advance", "small"])
        .success()
        .stdout_has("deploy v2 of it");

    // The migration a phase applied is history too.
    let applied = "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n";
    s.migration(
        "1_create_t.sql",
        &applied.replace("DROP TABLE t;", "DROP TABLE t CASCADE;"),
    );
    s.orch(&["rollback", "small", "--force"])
        .code(4)
        .stderr_has("migrations of phases that ran were edited")
        .stderr_has("migrations/1_create_t.sql changed after phase 1 (add-t) applied it on ");
    s.migration("1_create_t.sql", applied);
    s.orch(&["confirm", "small", "--by", "a"]).success();
}

#[test]
fn confirm_needs_a_name() {
    let s = Session::new();
    s.migration("1_create_t.sql", "-- migrate:up\nCREATE TABLE t (a int);\n");
    s.plan("small.yaml", SMALL_PLAN);
    s.orch(&["advance", "small"]).success();
    let run = Run::from(
        s.command(&["confirm", "small"])
            .env_remove("ORCH_OPERATOR")
            .output()
            .unwrap(),
        &["confirm", "small"],
    );
    run.code(2).stderr_has("--by <NAME>");
    let run = Run::from(
        s.command(&["confirm", "small"])
            .env("ORCH_OPERATOR", "dana")
            .output()
            .unwrap(),
        &["confirm", "small"],
    );
    run.success().stdout_has("confirmed by dana");
}

#[test]
fn concurrent_advance_runs_the_phase_once() {
    let s = Session::new();
    s.migration("1_create_t.sql", "-- migrate:up\nCREATE TABLE t (a int);\nSELECT pg_sleep(1.5);\nINSERT INTO t VALUES (1);\n");
    s.plan("small.yaml", SMALL_PLAN);
    let args = ["advance", "small"];
    let (a, b) = (s.spawn(&args), s.spawn(&args));
    let (a, b) = (finish(a, &args), finish(b, &args));
    // The one that ran the phase, and the other: refused, or told that the
    // plan moved while it waited and that nothing more was done.
    let ran = |r: &Run| r.code == 0 && !r.stdout.contains("moved while");
    assert!(ran(&a) != ran(&b), "{a:?}\n{b:?}");
    let other = if ran(&a) { &b } else { &a };
    assert!(
        (other.code == 5
            && other
                .stderr
                .contains("plan small is locked by another orch process (pid "))
            || (other.code == 4 && other.stderr.contains("is not confirmed"))
            || (other.code == 0
                && other
                    .stdout
                    .contains("plan small moved while this advance waited for its lock")),
        "{other:?}"
    );
    assert_eq!(s.value("SELECT count(*) FROM t").as_deref(), Some("1"));
    assert_eq!(
        s.value("SELECT count(*) FROM orch.events WHERE action = 'migration_applied'")
            .as_deref(),
        Some("1")
    );
}

#[test]
fn a_second_operator_is_told_who_holds_the_plan() {
    let s = Session::new();
    s.migration(
        "1_create_t.sql",
        "-- migrate:up\nCREATE TABLE t (a int);\nSELECT pg_sleep(3);\n",
    );
    s.plan("small.yaml", SMALL_PLAN);
    let first = s.spawn(&["advance", "small"]);
    let holding = wait_until(Duration::from_secs(20), || {
        s.value("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'orch advance small%(lock)' AND datname = current_database()")
            .as_deref()
            == Some("1")
    });
    assert!(holding, "the first advance never took the plan lock");
    s.orch(&["advance", "small", "--lock-wait", "200ms"])
        .code(5)
        .stderr_has("plan small is locked by another orch process (pid ")
        .stderr_has("application_name \"orch advance small (tester) (lock)\"");
    finish(first, &["advance", "small"]).success();
    assert_eq!(phase_state_of(&s, "small", "add-t"), "done");
}

#[test]
fn refusals_for_unknown_names_and_out_of_turn_confirmations() {
    let s = posts_session(1);
    s.orch(&["advance", "no-such-plan"])
        .code(2)
        .stderr_has("no plan named \"no-such-plan\" in plans (plans: posts-location)");
    s.orch(&["advance", PLAN]).success();
    s.orch(&["confirm", PLAN, "no-such-phase", "--by", "a"])
        .code(2)
        .stderr_has("plan posts-location has no phase \"no-such-phase\" (phases: add-loc, deploy-dual-write, ");
    s.orch(&["confirm", PLAN, "deploy-dual-write", "--by", "a"])
        .code(4)
        .stderr_has("phase 2 (deploy-dual-write) of plan posts-location is pending, not waiting for confirmation")
        .stderr_has("next: orch confirm posts-location add-loc --by NAME");
    assert_eq!(phase_state(&s, "add-loc"), "done");
    assert_eq!(phase_state(&s, "deploy-dual-write"), "pending");
}

#[test]
fn a_migration_applied_outside_its_plan_is_refused() {
    let s = Session::new();
    s.migration(
        "1_create_t.sql",
        "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n",
    );
    s.orch(&["migrate", "up"]).success();
    s.plan("small.yaml", SMALL_PLAN);
    s.orch(&["advance", "small"])
        .code(4)
        .stderr_has("phase 1 (add-t) applies 1_create_t, but it is already applied (on ")
        .stderr_has("it was applied outside the plan")
        .stderr_has("next: revert it with `orch migrate down` first");
    assert_eq!(phase_state_of(&s, "small", "add-t"), "pending");
    s.orch(&["migrate", "down"]).success();
    s.orch(&["advance", "small"]).success();
    assert_eq!(
        s.value("SELECT plan || '/' || phase FROM orch.migrations")
            .as_deref(),
        Some("small/add-t")
    );
}

#[test]
fn two_plans_advance_at_the_same_time() {
    // Regression: one plan's advance must not wait for another plan's (a
    // lock shared by all plans would run them one after the other).
    // Each plan's check waits for an advisory lock this test holds, so both
    // are seen waiting side by side before the test lets them finish.
    const GATE_KEY: i64 = 7_424_242;
    let waiting_check = |name: &str| {
        format!(
            "plan: {name}\nphases:\n  - id: wait\n    kind: check\n    title: Waiting check\n    checks:\n      - name: waits for the test\n        sql: SELECT true FROM pg_advisory_xact_lock_shared({GATE_KEY})\n"
        )
    };
    let s = Session::new();
    s.plan("one.yaml", &waiting_check("one"))
        .plan("two.yaml", &waiting_check("two"));
    // Create orch's schema first so both processes start from the same state.
    s.orch(&["migrate", "up"]).success();
    let gate = s.db.connect();
    gate.execute(&format!("SELECT pg_advisory_lock({GATE_KEY})"));
    let (a, b) = (s.spawn(&["advance", "one"]), s.spawn(&["advance", "two"]));
    let checks_waiting = format!(
        "SELECT count(DISTINCT pid) FROM pg_locks
         WHERE locktype = 'advisory' AND NOT granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND classid = 0 AND objid = {GATE_KEY} AND objsubid = 1"
    );
    let both_waiting = wait_until(Duration::from_secs(60), || {
        s.value(&checks_waiting).as_deref() == Some("2")
    });
    let applications = s.query(
        "SELECT application_name, wait_event_type, query FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE 'orch advance %'",
    );
    gate.execute(&format!("SELECT pg_advisory_unlock({GATE_KEY})"));
    let (a, b) = (
        finish(a, &["advance", "one"]),
        finish(b, &["advance", "two"]),
    );
    assert!(
        both_waiting,
        "the two plans' checks never ran at the same time; orch sessions: {applications:?}\n{a:?}\n{b:?}"
    );
    a.success().stdout_has("all 1 checks passed");
    b.success().stdout_has("all 1 checks passed");
    assert_eq!(phase_state_of(&s, "one", "wait"), "done");
    assert_eq!(phase_state_of(&s, "two", "wait"), "done");
}

#[test]
fn pause_without_a_running_backfill_is_refused() {
    let s = posts_session(1);
    s.orch(&["pause", PLAN])
        .code(4)
        .stderr_has("no backfill of plan posts-location is running");
}

/// A broken plan, and the precise error `orch check` and `orch advance` give.
struct Broken {
    name: &'static str,
    yaml: &'static str,
    error: &'static str,
}

const VALID_HEAD: &str = "plan: broken\nphases:\n";

fn corpus() -> Vec<Broken> {
    vec![
        Broken {
            name: "bad yaml indentation",
            yaml: "plan: broken\n  phases: []\n",
            error: "plans/broken.yaml:2:9: (syntax): mapping values are not allowed in this context",
        },
        Broken {
            name: "unclosed flow",
            yaml: "plan: broken\nphases: [\n",
            error: "plans/broken.yaml:3:1: (syntax): did not find expected node content",
        },
        Broken {
            name: "tab indentation",
            yaml: "plan: broken\nphases:\n\t- id: a\n",
            error: "plans/broken.yaml:3:1: (syntax): found character that cannot start any token",
        },
        Broken {
            name: "unknown top field",
            yaml: "plan: broken\nphases: []\nowner: me\n",
            error: "plans/broken.yaml:3:1: owner: unknown field (expected one of plan, description, phases)",
        },
        Broken {
            name: "unknown phase field",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: deploy\n    title: t\n    instructions: i\n    timeout: 5\n",
            error: "plans/broken.yaml:7:5: phases[0].timeout: unknown field (expected one of id, kind, title, instructions, role, migration, version, backfill, sync, guard, checks, reversible, rollback_loses)",
        },
        Broken {
            name: "misspelled kind",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: backfil\n    title: t\n",
            error: "plans/broken.yaml:4:11: phases[0].kind: unknown kind \"backfil\" (expected one of migration, deploy, backfill, check, sync)",
        },
        Broken {
            name: "missing title",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: deploy\n    instructions: i\n",
            error: "plans/broken.yaml:3:5: phases[0].title: required field is missing",
        },
        Broken {
            name: "missing plan name",
            yaml: "phases: []\n",
            error: "plans/broken.yaml:1:1: plan: required field is missing",
        },
        Broken {
            name: "phases not a list",
            yaml: "plan: broken\nphases: deploy\n",
            error: "plans/broken.yaml:2:9: phases: invalid type: string \"deploy\", expected a sequence",
        },
        Broken {
            name: "reversible not bool",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: deploy\n    title: t\n    instructions: i\n    reversible: sometimes\n",
            error: "plans/broken.yaml:7:17: phases[0].reversible: invalid type: string \"sometimes\", expected a boolean",
        },
        Broken {
            name: "workers not a number",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: backfill\n    title: t\n    backfill:\n      table: posts\n      set: a = 1\n      workers: two\n",
            error: "plans/broken.yaml:9:16: phases[0].backfill.workers: invalid type: string \"two\", expected a whole number",
        },
        Broken {
            name: "unknown backfill field",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: backfill\n    title: t\n    backfill:\n      table: posts\n      set: a = 1\n      batch: 100\n",
            error: "plans/broken.yaml:9:7: phases[0].backfill.batch: unknown field (expected one of table, key, set, command, reads, writes, max_errors, command_timeout, where, batch_time, min_batch, max_batch, pause, max_rows_per_second, workers, vacuum_every, walk, make_room, max_replica_lag, max_wal_rate, synchronous_commit)",
        },
        Broken {
            name: "check without sql",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: check\n    title: t\n    checks:\n      - name: c\n",
            error: "plans/broken.yaml:7:9: phases[0].checks[0].sql: required field is missing",
        },
        Broken {
            name: "empty phases",
            yaml: "plan: broken\nphases: []\n",
            error: "plans/broken.yaml:2:9: phases: a plan needs at least one phase",
        },
        Broken {
            name: "duplicate ids",
            yaml: "plan: broken\nphases:\n  - {id: a, kind: deploy, title: t, instructions: i}\n  - {id: a, kind: deploy, title: u, instructions: i}\n",
            error: "plans/broken.yaml:4:10: phases[1].id: duplicate phase id \"a\" (phase 1 has it too)",
        },
        Broken {
            name: "dangling migration",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: migration\n    title: t\n    migration: add_nothing\n",
            error: "plans/broken.yaml:6:16: phases[0].migration: no migration named \"add_nothing\" in migrations (known: create_t, other_t)",
        },
        Broken {
            name: "migration owned by another plan",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: migration\n    title: t\n    migration: other_t\n",
            error: "plans/owner.yaml:6:16: phases[0].migration: migration \"other_t\" is already owned by plan broken, phase 1 (a); a migration belongs to one plan",
        },
        Broken {
            name: "contract without check",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: migration\n    role: contract\n    title: t\n    migration: create_t\n",
            error: "plans/broken.yaml:5:11: phases[0].role: a contract phase needs a check before it: add a guard (e.g. that nothing is left to copy) or a check phase before it",
        },
        Broken {
            name: "invalid table identifier",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: backfill\n    title: t\n    backfill:\n      table: \"posts; DROP TABLE x\"\n      set: a = 1\n",
            error: "plans/broken.yaml:7:14: phases[0].backfill.table: \"posts; DROP TABLE x\" is not a valid table name (lowercase identifier, optionally schema-qualified; orch quotes it)",
        },
        Broken {
            name: "invalid key column",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: backfill\n    title: t\n    backfill:\n      table: posts\n      key: [id, \"Created At\"]\n      set: a = 1\n",
            error: "plans/broken.yaml:8:17: phases[0].backfill.key[1]: \"Created At\" is not a valid column name (lowercase identifier)",
        },
        Broken {
            name: "plan name mismatch",
            yaml: "plan: other-name\nphases:\n  - {id: a, kind: deploy, title: t, instructions: i}\n",
            error: "plans/broken.yaml:1:7: plan: plan \"other-name\" must be in a file named \"other-name\".yaml (it is in \"broken\")",
        },
        Broken {
            name: "deploy without instructions",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: deploy\n    title: t\n",
            error: "plans/broken.yaml:3:5: phases[0].instructions: a deploy gate tells the operator what to deploy: add instructions",
        },
        Broken {
            name: "unknown placeholder",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: deploy\n    title: t\n    instructions: i\n    checks:\n      - name: c\n        sql: SELECT now() > :opened_at\n",
            error: "plans/broken.yaml:9:14: phases[0].checks[0].sql: :opened_at is not a known placeholder (known: :gate_opened_at, :phase_started_at, :plan_started_at)",
        },
        Broken {
            name: "two statements in a check",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: check\n    title: t\n    checks:\n      - name: c\n        sql: SELECT true; DROP TABLE t\n",
            error: "plans/broken.yaml:8:14: phases[0].checks[0].sql: a check is exactly one SQL statement returning one boolean (found 2)",
        },
        Broken {
            name: "backfill section on a gate",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: deploy\n    title: t\n    instructions: i\n    backfill: {table: posts, set: a = 1}\n",
            error: "plans/broken.yaml:7:15: phases[0].backfill: a deploy phase has no backfill section (see docs/plan-format.md)",
        },
        Broken {
            name: "batch time out of range",
            yaml: "plan: broken\nphases:\n  - id: a\n    kind: backfill\n    title: t\n    backfill:\n      table: posts\n      set: a = 1\n      batch_time: 1h\n",
            error: "plans/broken.yaml:9:19: phases[0].backfill.batch_time: batch_time must be between 10ms and 10s",
        },
    ]
}

#[test]
fn malformed_plan_corpus_gives_precise_errors_and_touches_nothing() {
    let s = Session::new();
    s.migration("1_create_t.sql", "-- migrate:up\nCREATE TABLE t (a int);\n");
    s.migration(
        "2_other_t.sql",
        "-- migrate:up\nCREATE TABLE other_t (a int);\n",
    );
    s.plan("owner.yaml", "plan: owner\nphases:\n  - id: mine\n    kind: migration\n    title: t\n    migration: other_t\n");
    let corpus = corpus();
    assert!(corpus.len() >= 20);
    let _ = VALID_HEAD;
    for case in &corpus {
        s.plan("broken.yaml", case.yaml);
        let check = s.orch(&["check"]);
        assert_eq!(
            check.code, 3,
            "{}: orch check should fail with 3\n{check:?}",
            case.name
        );
        assert!(
            check.stderr.contains(case.error),
            "{}: expected {:?} in\n{}",
            case.name,
            case.error,
            check.stderr
        );
        let advance = s.orch(&["advance", "owner"]);
        assert_eq!(
            advance.code, 3,
            "{}: advance must refuse\n{advance:?}",
            case.name
        );
        assert!(
            advance.stderr.contains(case.error),
            "{}: advance stderr\n{}",
            case.name,
            advance.stderr
        );
        assert_eq!(
            s.value("SELECT to_regnamespace('orch') IS NULL").as_deref(),
            Some("t"),
            "{}: nothing may be created",
            case.name
        );
        assert!(
            !s.has_table("t") && !s.has_table("other_t"),
            "{}",
            case.name
        );
    }
    s.remove("plans/broken.yaml");
    s.orch(&["check"])
        .success()
        .stdout_has("ok: plans/owner.yaml (1 phases)");
    s.orch(&["check", "owner"]).success();
}

/// Regression: an unknown phase state used to read as `failed`, and a plan
/// whose recorded definition could not be read vanished from `status`.
/// Values orch does not know (a newer orch's, or a hand edit) are said, not
/// guessed.
#[test]
fn stored_values_orch_does_not_know_are_said_not_guessed() {
    let s = posts_session(5);
    s.orch(&["advance", PLAN]).success();

    s.execute(
        "UPDATE orch.phases SET state = 'exploded' WHERE plan = 'posts-location' AND position = 1",
    );
    s.orch(&["status"]).code(1).stderr_has(
        "orch.phases row posts-location/1 has state \"exploded\", which this orch does not know",
    );
    s.execute(
        "UPDATE orch.phases SET state = 'done' WHERE plan = 'posts-location' AND position = 1",
    );

    s.execute("INSERT INTO orch.events (plan, actor, action, detail) VALUES ('posts-location', 'x', 'teleported', '{}')");
    s.orch(&["checklist", PLAN])
        .code(1)
        .stderr_has("has action \"teleported\", which this orch does not know");

    // The plan's file is gone and its recorded definition is unreadable.
    s.remove("plans/posts-location.yaml");
    s.execute("UPDATE orch.plans SET definition = '{\"plan\": 5}' WHERE name = 'posts-location'");
    s.orch(&["status"])
        .success()
        .stdout_has("posts-location")
        .stdout_has("definition recorded in the database cannot be read");
    s.orch(&["migrate", "status"]).success().stderr_has(
        "warning: cannot read the definition of plan posts-location recorded in the database",
    );
    // Which migrations it owns is unknown, so none may run.
    s.orch(&["migrate", "up"])
        .code(4)
        .stderr_has("cannot read the definition of plan posts-location recorded in the database")
        .stderr_has("upgrade orch");
    assert_eq!(s.applied().len(), 2);
}
