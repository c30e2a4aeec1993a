//! `orch check`: what it says of plans, offline and against the database.

use crate::support::Session;

const RENAME_PLAN: &str = "plan: rename-name
phases:
  - id: add-full-name
    kind: migration
    role: expand
    title: Add full_name
    migration: add_full_name
  - id: deploy-dual-write
    kind: deploy
    title: Deploy the version writing name and full_name
    instructions: deploy v2
  - id: deploy-full-name-only
    kind: deploy
    title: Deploy the version writing only full_name
    instructions: deploy v3
  - id: drop-name
    kind: migration
    role: contract
    title: Drop name
    migration: drop_name
    reversible: false
    guard:
      - name: nothing left to copy
        sql: SELECT NOT EXISTS (SELECT 1 FROM users WHERE full_name IS NULL)
";

fn rename_session(expand: &str) -> Session {
    let s = Session::new();
    s.execute("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)");
    s.migration(
        "20240101000000_add_full_name.sql",
        &format!(
            "-- migrate:up\n{expand}\n-- migrate:down\nALTER TABLE users DROP COLUMN full_name;\n"
        ),
    )
    .migration(
        "20240102000000_drop_name.sql",
        "-- migrate:up\nALTER TABLE users DROP COLUMN name;\n",
    )
    .plan("rename-name.yaml", RENAME_PLAN);
    s
}

/// Regression: a new user's rename plan passed `check --online` although
/// the version deployed at the last gate could not insert a user (name was
/// still NOT NULL without a default).
#[test]
fn online_check_warns_when_a_gate_expects_writes_to_stop_on_a_required_column() {
    let s = rename_session("ALTER TABLE users ADD COLUMN full_name text;");
    s.orch(&["check", "--online"])
        .success()
        .stdout_has("phase 3 deploy-full-name-only: warning: phase 4 (drop-name) drops users.name")
        .stdout_has(
            "users.name is NOT NULL without a default and no phase before the gate relaxes it",
        )
        .stdout_has("ALTER TABLE users ALTER COLUMN name DROP NOT NULL");
    // Offline, the database's columns are unknown: nothing to say.
    s.orch(&["check"]).success().stdout_lacks("warning");
}

#[test]
fn relaxing_the_old_column_in_the_expand_step_satisfies_the_check() {
    for expand in [
        "ALTER TABLE users ADD COLUMN full_name text, ALTER COLUMN name DROP NOT NULL;",
        "ALTER TABLE users ADD COLUMN full_name text;\nALTER TABLE users ALTER name SET DEFAULT '';",
    ] {
        let s = rename_session(expand);
        s.orch(&["check", "--online"])
            .success()
            .stdout_lacks("warning");
    }
    // A column that is already nullable needs nothing.
    let s = rename_session("ALTER TABLE users ADD COLUMN full_name text;");
    s.execute("ALTER TABLE users ALTER COLUMN name DROP NOT NULL");
    s.orch(&["check", "--online"])
        .success()
        .stdout_lacks("warning");
}

/// Regression: a sync phase whose `down` fills the old column from the new
/// one (rename-column's plan) was warned about as if nothing filled it.
#[test]
fn a_sync_phase_filling_the_old_column_satisfies_the_check() {
    let plan = |down: &str| {
        RENAME_PLAN.replace(
            "  - id: deploy-dual-write\n    kind: deploy\n    title: Deploy the version writing name and full_name\n    instructions: deploy v2\n",
            &format!(
                "  - id: sync-full-name\n    kind: sync\n    title: Keep them in step\n    sync: {{table: users, old: [name], new: [full_name], up: {{full_name: name}}{down}}}\n"
            ),
        )
    };
    let s = rename_session("ALTER TABLE users ADD COLUMN full_name text;");
    s.plan("rename-name.yaml", &plan(", down: {name: full_name}"));
    s.orch(&["check", "--online"])
        .success()
        .stdout_lacks("warning");
    // Without `down`, nothing fills name: the warning stands.
    s.plan("rename-name.yaml", &plan(""));
    s.orch(&["check", "--online"])
        .success()
        .stdout_has("users.name is NOT NULL without a default");
}

/// `check --online` passes, says `expected` of the plan, and leaves the
/// database as it was.
#[track_caller]
fn check_online_changes_nothing(s: &Session, expected: &[&str]) {
    let before = s.fingerprint();
    let run = s.orch(&["check", "--online"]);
    run.success().stdout_lacks("deferred");
    for text in expected {
        run.stdout_has(text);
    }
    assert_eq!(
        s.fingerprint(),
        before,
        "check --online changed the database"
    );
}

/// Regression (issue 11): `check --online` failed on the repository's own
/// plan before phase 1 ran (`column "loc" does not exist`: the backfill was
/// compiled against today's schema, without the column phase 1 adds). Each
/// phase is checked against the schema as it will be when it runs, at every
/// point of the plan, and the check changes nothing.
#[test]
fn check_online_passes_the_example_plan_at_every_phase() {
    const PLAN: &str = "posts-location";
    let s = Session::new();
    s.with_repository_files();
    s.orch(&["migrate", "up"]).success();
    s.execute(
        "INSERT INTO posts (url, lat, lng)
         SELECT 'https://example.com/' || g, g % 90, g % 180 FROM generate_series(1, 200) AS g",
    );
    let p = "plans/posts-location.yaml";
    check_online_changes_nothing(
        &s,
        &[
            &format!(
                "{p}: phase 1 add-loc: applies to the schema it will meet (tried, then rolled back)"
            ),
            &format!("{p}: phase 2 deploy-dual-write: 1 check compiles"),
            &format!("{p}: phase 3 backfill-loc: public.posts: key (id), 200 rows (counted"),
            &format!(
                "{p}: phase 5 drop-lat-lng: 1 guard compiles; applies to the schema it will meet"
            ),
        ],
    );
    let v2 = "INSERT INTO posts (url, lat, lng, loc)
              SELECT 'https://v2.example.com/' || g, 1, 2, point(2, 1) FROM generate_series(1, 3) AS g";
    let v3 = "INSERT INTO posts (url, loc)
              SELECT 'https://v3.example.com/' || g, point(2, 1) FROM generate_series(1, 3) AS g";
    let steps: [(&[&str], Option<&str>); 10] = [
        (&["advance", PLAN], None),
        (&["confirm", PLAN, "--by", "alice"], None),
        (&["advance", PLAN], Some(v2)),
        (&["confirm", PLAN, "--by", "bob"], None),
        (&["advance", PLAN], None),
        (&["confirm", PLAN, "--by", "alice"], None),
        (&["advance", PLAN], Some(v3)),
        (&["confirm", PLAN, "--by", "bob"], None),
        (&["advance", PLAN], None),
        (&["confirm", PLAN, "--by", "carol"], None),
    ];
    for (args, then) in steps {
        s.orch(args).success();
        let applied_everything = s.columns("posts") == ["id", "url", "created_at", "loc"];
        let expected: Vec<String> = if applied_everything {
            vec![
                format!("{p}: phase 1 add-loc: applied"),
                format!(
                    "{p}: phase 3 backfill-loc: not checked: it ran before phase 5 (drop-lat-lng) changed the schema"
                ),
                format!("{p}: phase 5 drop-lat-lng: applied"),
            ]
        } else {
            vec![
                format!("{p}: phase 1 add-loc: applied"),
                format!("{p}: phase 3 backfill-loc: public.posts: key (id)"),
                format!(
                    "{p}: phase 5 drop-lat-lng: 1 guard compiles; applies to the schema it will meet"
                ),
            ]
        };
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        check_online_changes_nothing(&s, &expected);
        if let Some(sql) = then {
            s.execute(sql);
        }
    }
    s.orch(&["status", PLAN]).success().stdout_has("complete");
}

/// On a fresh database (nothing applied, not even the migration that
/// creates posts), the preview first applies what `orch migrate up` would,
/// then checks the plan against that; a pending migration that does not
/// apply is named at its file:line:column.
#[test]
fn check_online_on_a_fresh_database_applies_the_pending_migrations_first() {
    let s = Session::new();
    s.with_repository_files();
    let p = "plans/posts-location.yaml";
    check_online_changes_nothing(
        &s,
        &[
            &format!(
                "{p}: phase 1 add-loc: the preview first applies what `orch migrate up` applies before this plan: 20240101000000_create_posts"
            ),
            &format!("{p}: phase 1 add-loc: applies to the schema it will meet"),
            &format!("{p}: phase 3 backfill-loc: public.posts: key (id)"),
            &format!(
                "{p}: phase 5 drop-lat-lng: 1 guard compiles; applies to the schema it will meet"
            ),
        ],
    );
    assert!(!s.has_table("posts"));
    s.write(
        "migrations/20240101000000_create_posts.sql",
        "-- migrate:up\nCREATE TABLE posts (\n    id SERIAL PRIMARY KEY,\n    lat NUMERIC, lng NUMERIC, created_at timestamptz NOT NULL DEFAULT now(),\n    url VARCHAR(300) DEFAULT no_such_function()\n);\n-- migrate:down\nDROP TABLE posts;\n",
    );
    s.orch(&["check", "--online"])
        .code(4)
        .stderr_has("20240101000000_create_posts (migrations/20240101000000_create_posts.sql:5:")
        .stderr_has("which `orch migrate up` applies before this plan, does not apply: ")
        .stderr_has("function no_such_function() does not exist")
        .stdout_has("deferred: pending migration 20240101000000_create_posts does not apply")
        .stdout_lacks("ok: plans/posts-location.yaml");
    assert!(!s.has_table("posts"));
}

/// The preview never waits behind the application: a session holding posts
/// keeps phase 1's ALTER from its lock for the preview's short
/// lock_timeout, then the check says what it could not do (exit 0) and the
/// session's transaction is untouched.
#[test]
fn check_online_defers_what_waits_for_a_lock() {
    let s = Session::new();
    s.with_repository_files();
    s.orch(&["migrate", "up"]).success();
    let blocker = s.db.connect();
    blocker.execute("BEGIN; SELECT count(*) FROM posts;");
    let before = s.fingerprint();
    let p = "plans/posts-location.yaml";
    s.orch(&["check", "--online"])
        .success()
        .stdout_has(&format!("{p}: phase 1 add-loc: deferred: could not take the lock 20240102000000_add_posts_loc needs within 100 ms (the application or another session holds it); run `orch check --online` again"))
        .stdout_has(&format!("{p}: phase 3 backfill-loc: deferred: phase 1 (add-loc): could not take the lock"))
        .stdout_has(&format!("{p}: phase 5 drop-lat-lng: deferred: phase 1 (add-loc)"));
    assert_eq!(s.fingerprint(), before);
    blocker.execute("COMMIT");
}

/// A `transaction:false` migration cannot run in the preview's transaction:
/// its index statements are left out (they change no column) and the rest
/// runs; a backfill keyed on the unique index left out is deferred, not
/// failed.
#[test]
fn check_online_leaves_out_concurrent_index_builds() {
    let s = Session::new();
    s.execute("CREATE TABLE t (a int NOT NULL, b int)");
    s.migration(
        "1_add_c.sql",
        "-- migrate:up transaction:false\nALTER TABLE t ADD COLUMN c int;\nCREATE UNIQUE INDEX CONCURRENTLY t_a ON t (a);\n-- migrate:down\nALTER TABLE t DROP COLUMN c;\n",
    )
    .plan(
        "fill.yaml",
        "plan: fill\nphases:\n  - id: add-c\n    kind: migration\n    title: Add c\n    migration: add_c\n  - id: fill\n    kind: backfill\n    title: Fill c\n    backfill:\n      table: t\n      key: [a]\n      set: c = b\n      where: c IS NULL\n",
    );
    let before = s.columns("t");
    s.orch(&["check", "--online"])
        .success()
        .stdout_has("phase 1 add-c: applies to the schema it will meet (tried, then rolled back); left out of the preview: the statement(s) at line 3 of migrations/1_add_c.sql, which cannot run in a transaction and change no column")
        .stdout_has("phase 2 fill: deferred: phase 1 (add-c) builds a unique index on its table CONCURRENTLY, which the preview cannot do in a transaction; without it: ")
        .stdout_has("has no usable key");
    assert_eq!(s.columns("t"), before);
    assert_eq!(
        s.value("SELECT count(*) FROM pg_indexes WHERE tablename = 't'")
            .as_deref(),
        Some("0")
    );
}

/// What the preview finds wrong is an error at its place in the plan file:
/// a migration that does not apply to the schema it will meet, a check
/// that does not compile there or does not return a boolean.
#[test]
fn check_online_points_at_what_will_not_work() {
    let s = Session::new();
    s.execute("CREATE TABLE t (a int PRIMARY KEY, b int)");
    s.migration(
        "1_add_c.sql",
        "-- migrate:up\nALTER TABLE t ADD COLUMN c int;\n-- migrate:down\nALTER TABLE t DROP COLUMN c;\n",
    )
    .migration(
        "2_drop_d.sql",
        "-- migrate:up\nALTER TABLE t DROP COLUMN d;\n-- migrate:down\nSELECT 1;\n",
    )
    .plan(
        "p.yaml",
        "plan: p
phases:
  - id: add-c
    kind: migration
    title: Add c
    migration: add_c
    checks:
      - name: c is there
        sql: SELECT count(c) >= 0 FROM t
      - name: a count
        sql: SELECT count(*) FROM t
  - id: gate
    kind: deploy
    title: Deploy
    instructions: deploy
    checks:
      - name: typo
        sql: SELECT bool_and(cc IS NOT NULL) FROM t WHERE :gate_opened_at IS NOT NULL
  - id: drop-d
    kind: migration
    title: Drop d
    migration: drop_d
",
    );
    s.orch(&["check", "--online"])
        .code(3)
        .stderr_has("plans/p.yaml:11:14: phases[0].checks[1].sql: check \"a count\" returns int8, not one boolean")
        .stderr_has("phases[1].checks[0].sql: check \"typo\" does not compile against the schema as it will be when this phase is confirmed: column \"cc\" does not exist")
        .stderr_has("phases[2].migration: 2_drop_d (migrations/2_drop_d.sql:2:1) does not apply to the schema as it will be when this phase runs: column \"d\" of relation \"t\" does not exist");
    assert_eq!(s.columns("t"), ["a", "b"]);
}
