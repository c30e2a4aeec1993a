//! Seeing a plan before it runs: `orch advance --dry-run` (the next phase's
//! SQL, guard, checks, a backfill's table, key, rows and batches) and
//! `orch checklist` without a database. Neither changes anything.

use crate::support::Session;

const PLAN: &str = "posts-location";

/// The repository's migrations and plans and a posts table with `rows`
/// posts, created by hand: the database has no orch schema yet.
fn posts_without_orch(rows: usize) -> Session {
    let s = Session::new();
    s.with_repository_files();
    s.execute(&format!(
        "CREATE TABLE posts (
             id SERIAL PRIMARY KEY, url VARCHAR(300), lat NUMERIC, lng NUMERIC,
             created_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO posts (url, lat, lng)
         SELECT 'https://example.com/' || g, g % 90, g % 180 FROM generate_series(1, {rows}) AS g;"
    ));
    s
}

/// `advance --dry-run` succeeds (or exits `code`), shows `expected`, and
/// leaves the database exactly as it was.
#[track_caller]
fn dry_run_changes_nothing(s: &Session, code: i32, expected: &[&str]) -> String {
    let before = s.fingerprint();
    let run = s.orch(&["advance", PLAN, "--dry-run"]);
    run.code(code).stdout_has("dry run: nothing was changed");
    for text in expected {
        run.stdout_has(text);
    }
    assert_eq!(
        s.fingerprint(),
        before,
        "advance --dry-run changed the database"
    );
    run.stdout.clone()
}

#[test]
fn dry_run_shows_each_next_phase_and_changes_nothing() {
    let s = posts_without_orch(2500);
    let out = dry_run_changes_nothing(
        &s,
        0,
        &[
            "posts-location: advance would run phase 1/5 add-loc (migration): Add the nullable loc column",
            "note: plan posts-location has not started: this advance would start it",
            "guard: none",
            "would: apply 20240102000000_add_posts_loc (up) in one transaction, with the phase's record",
            "lock_timeout: 500 ms per attempt, up to 10 retries with backoff",
            "ALTER TABLE posts ADD COLUMN loc POINT;",
            "lint: no finding",
            "instructions:\n    Adding a nullable column without a default only changes the catalog;",
            "checks before `orch confirm`: none",
        ],
    );
    assert!(
        s.value("SELECT to_regclass('orch.meta') IS NULL")
            .as_deref()
            == Some("t"),
        "{out}"
    );

    s.orch(&["advance", PLAN]).success();
    // The phase waits for its confirmation: the dry run refuses as advance does.
    let before = s.fingerprint();
    s.orch(&["advance", PLAN, "--dry-run"])
        .code(4)
        .stderr_has("phase 1 of 5 (add-loc) is not confirmed");
    assert_eq!(s.fingerprint(), before);
    s.orch(&["confirm", PLAN, "--by", "alice"]).success();
    dry_run_changes_nothing(
        &s,
        0,
        &[
            "advance would run phase 2/5 deploy-dual-write (deploy)",
            "would: open the gate, recording when",
            "instructions:\n    Deploy application v2",
            "checks before `orch confirm`:\n    \"new posts carry a correct loc\":\n        SELECT count(*) > 0",
        ],
    );
    s.orch(&["advance", PLAN]).success();
    s.execute(
        "INSERT INTO posts (url, lat, lng, loc) SELECT 'v2', 1, 2, point(2, 1) FROM generate_series(1, 3)",
    );
    s.orch(&["confirm", PLAN, "--by", "bob"]).success();
    s.execute("ANALYZE posts");
    dry_run_changes_nothing(
        &s,
        0,
        &[
            "advance would run phase 3/5 backfill-loc (backfill)",
            "would: update the rows of public.posts in short batches, in key order",
            "    table: public.posts\n    key: (id)\n    set: loc = point(lng, lat)\n    where: loc IS NULL OR NOT loc ~= point(lng, lat)",
            "rows: ~2503 rows (estimated from pg_class.reltuples) to visit",
            "batches: about 3 at the starting size of 1000 keys; sized by time: each aims at 100 ms",
            "workers: 1",
            "sql, each batch (its key range bound as parameters):\n    UPDATE \"public\".\"posts\" SET loc = point(lng, lat)",
            "\"every post has a loc\":\n        SELECT NOT EXISTS (SELECT 1 FROM posts WHERE loc IS NULL)",
        ],
    );
    s.orch(&["advance", PLAN]).success();
    s.orch(&["confirm", PLAN, "--by", "alice"]).success();
    s.orch(&["advance", PLAN]).success();
    s.execute("INSERT INTO posts (url, loc) SELECT 'v3', point(2, 1) FROM generate_series(1, 3)");
    s.orch(&["confirm", PLAN, "--by", "bob"]).success();
    dry_run_changes_nothing(
        &s,
        0,
        &[
            "advance would run phase 5/5 drop-lat-lng (migration)",
            "guard (evaluated now, read-only, not recorded):\n    [ok  ] \"nothing is left to copy\"",
            "guard: evaluated again after the statements, inside the transaction, before the commit",
            "ALTER TABLE posts DROP COLUMN lat, DROP COLUMN lng;",
        ],
    );
    // A guard that does not hold: shown, and the dry run exits as advance would.
    s.execute("INSERT INTO posts (url, lat, lng) VALUES ('v1 straggler', 1, 2)");
    let out = dry_run_changes_nothing(
        &s,
        8,
        &["[FAIL] \"nothing is left to copy\" (returned false)"],
    );
    assert!(out.contains("drop-lat-lng"), "{out}");
    s.orch(&["advance", PLAN, "--dry-run"])
        .code(8)
        .stderr_has("`orch advance posts-location` would refuse to run phase 5 (drop-lat-lng): its guard does not hold now");
}

/// `orch checklist` works before anything exists: with no database
/// configured it renders the plan file, every phase unticked and a line
/// saying the state was not read; a database that is configured but cannot
/// be reached is an error, as everywhere.
#[test]
fn checklist_without_a_database_reads_the_plan_file() {
    let s = Session::new();
    s.with_repository_files();
    s.orch_without_database(&["checklist", PLAN])
        .success()
        .stdout_has("- State: not read: no database is configured")
        .stdout_has("- [ ] **1. add-loc** (migration, expand): Add the nullable loc column\n")
        .stdout_has("    ALTER TABLE posts ADD COLUMN loc POINT;")
        .stdout_has("    - set: `loc = point(lng, lat)`")
        .stdout_has("    > Deploy application v2")
        .stdout_has("  - guard `nothing is left to copy`\n    ```sql")
        .stdout_lacks("- [x]")
        .stdout_lacks("not evaluated yet")
        .stdout_lacks("Started:");
    s.orch_without_database(&["checklist", "posts-locatoin"])
        .code(2)
        .stderr_has("did you mean posts-location?");
    let unreachable = s
        .command_without_database(&["checklist", PLAN])
        .env("DATABASE_URL", "postgresql://127.0.0.1:1/nowhere")
        .output()
        .expect("run orch");
    let run = crate::support::Run::from(unreachable, &["checklist", PLAN]);
    run.code(6).stdout_lacks("Release checklist");
}
