//! The migration lint as people meet it: `orch check` (and `--json`),
//! `migrate up` refusing before anything runs or proceeding past an
//! `-- orch:allow` (audited), `advance` and the phase's role. The rules
//! themselves are pinned by the corpus in `tests/fixtures/lint` (a unit
//! test of `src/lint/corpus.rs`).

use crate::support::Session;

/// The four migrations, each of which `orch check` said "ok" to
/// and `migrate up` applied.
const DANGEROUS: &[(&str, &str)] = &[
    (
        "2_index_posts.sql",
        "-- migrate:up\nCREATE INDEX posts_user_id_idx ON posts (user_id);\n",
    ),
    (
        "3_title_type.sql",
        "-- migrate:up\nALTER TABLE posts ALTER COLUMN title TYPE varchar(100);\n",
    ),
    (
        "4_score.sql",
        "-- migrate:up\nALTER TABLE posts ADD COLUMN score float DEFAULT random()*10;\n",
    ),
    (
        "5_drop_user_id.sql",
        "-- migrate:up\nALTER TABLE posts DROP COLUMN user_id;\n",
    ),
];

const CREATE_POSTS: &str = "-- migrate:up\nCREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint, title text);\n-- migrate:down\nDROP TABLE posts;\n";

fn dangerous_session() -> Session {
    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS);
    for (file, text) in DANGEROUS {
        s.migration(file, text);
    }
    s
}

/// Regression: these passed `orch check` with "ok".
#[test]
fn check_reports_each_hazard_at_its_line_and_column_with_lock_and_fix() {
    let s = dangerous_session();
    let run = s.orch(&["check"]);
    run.code(4)
        .stdout_has("migrations/2_index_posts.sql:2:1: create-index-not-concurrently: error: CREATE INDEX on posts without CONCURRENTLY")
        .stdout_has("  lock: SHARE on the table for the whole index build")
        .stdout_has("  fix: CREATE INDEX CONCURRENTLY, alone in a `transaction:false` section")
        .stdout_has("migrations/3_title_type.sql:2:19: column-type-rewrite: error: ALTER COLUMN posts.title TYPE varchar(100) (from text) rewrites posts")
        .stdout_has("migrations/4_score.sql:2:50: volatile-default: error: ADD COLUMN posts.score with a volatile default")
        .stdout_has("migrations/5_drop_user_id.sql:2:19: drop-column: error: DROP COLUMN posts.user_id outside a plan")
        .stdout_has("this belongs in a plan's contract phase")
        .stdout_lacks("ok: migrations")
        .stderr_has("migrations: the lint found 4 error(s) (listed above)")
        .stderr_has("-- orch:allow RULE-ID: why it is safe here");
    // The table is created in the first migration: its statements are fine.
    assert!(!run.stdout.contains("1_posts.sql"), "{}", run.stdout);
}

#[test]
fn check_json_is_one_array_of_findings_on_stdout() {
    let s = dangerous_session();
    let run = s.orch(&["check", "--json"]);
    run.code(4).stderr_has("the lint found 4 error(s)");
    let findings: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", run.stdout));
    let findings = findings.as_array().expect("an array");
    assert_eq!(findings.len(), 4);
    let first = &findings[0];
    assert_eq!(first["file"], "migrations/2_index_posts.sql");
    assert_eq!(first["line"], 2);
    assert_eq!(first["column"], 1);
    assert_eq!(first["rule"], "create-index-not-concurrently");
    assert_eq!(first["severity"], "error");
    assert!(first["lock"].as_str().unwrap().starts_with("SHARE"));
    assert!(first["recipe"].as_str().unwrap().contains("CONCURRENTLY"));
    assert!(first["allowed"].is_null());
    // Clean: an empty array, exit 0.
    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS);
    let run = s.orch(&["check", "--json"]);
    run.success().stderr_has("ok: migrations (1 migrations");
    assert_eq!(run.stdout.trim(), "[]");
}

/// Regression: a syntax error on line 4 passed `orch check` and `migrate up
/// --dry-run`, and was reported at line 2 (the section start).
#[test]
fn a_syntax_error_is_found_offline_at_its_real_line_and_column() {
    let s = Session::new();
    s.migration(
        "1_posts.sql",
        "-- migrate:up\nCREATE TABLE posts (id bigint PRIMARY KEY);\nALTER TABLE posts ADD COLUMN title text;\nALTER TABLE posts ADD COLUMN;\n",
    );
    s.orch(&["check"]).code(3).stdout_has(
        "migrations/1_posts.sql:4:29: syntax-error: error: syntax error: expected name",
    );
    s.orch(&["migrate", "up", "--dry-run"])
        .code(3)
        .stderr_has("migrations/1_posts.sql:4:29: syntax-error");
    assert!(!s.has_table("posts"));
}

#[test]
fn up_refuses_before_anything_runs_and_dry_run_too() {
    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS);
    s.orch(&["migrate", "up"]).success();
    s.execute(
        "INSERT INTO posts SELECT g, g % 10, 'p' FROM generate_series(1, 1000) g; ANALYZE posts",
    );
    s.migration(
        "2_more.sql",
        "-- migrate:up\nCREATE TABLE tags (id bigint PRIMARY KEY, name text);\n",
    );
    s.migration("3_index_posts.sql", DANGEROUS[0].1);
    for args in [&["migrate", "up"][..], &["migrate", "up", "--dry-run"]] {
        s.orch(args)
            .code(4)
            .stderr_has("refusing to apply migrations: the lint found 1 error(s), and nothing ran")
            // The database says how big the table is.
            .stderr_has("migrations/3_index_posts.sql:2:1: create-index-not-concurrently: error: CREATE INDEX on posts without CONCURRENTLY blocks writes to posts until the index is built; posts has ~1,000 rows: this blocks writes for the whole build")
            .stderr_has("  fix: CREATE INDEX CONCURRENTLY");
        // Not even 2_more, which is fine on its own.
        assert_eq!(s.applied(), ["1_posts"]);
        assert!(!s.has_table("tags"));
    }
    // Offline, check cannot tell the size; --online can.
    s.orch(&["check"]).code(4).stdout_lacks("rows");
    s.orch(&["check", "--online"])
        .code(4)
        .stdout_has("posts has ~1,000 rows: this blocks writes for the whole build");
    // Up to the one before it is fine.
    s.orch(&["migrate", "up", "--to", "2"]).success();
    assert_eq!(s.applied(), ["1_posts", "2_more"]);
}

#[test]
fn a_table_created_earlier_in_the_same_run_is_new_but_not_once_applied() {
    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS)
        .migration("2_index_posts.sql", DANGEROUS[0].1);
    // One run: posts is created by the migration before, so it is empty.
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 2_index_posts");

    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS);
    s.orch(&["migrate", "up"]).success();
    s.migration("2_index_posts.sql", DANGEROUS[0].1);
    // Another run: posts may hold rows by now.
    s.orch(&["migrate", "up"])
        .code(4)
        .stderr_has("create-index-not-concurrently");
}

#[test]
fn an_allowed_finding_runs_and_is_audited_with_its_reason() {
    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS);
    s.orch(&["migrate", "up"]).success();
    s.migration(
        "2_drop_user_id.sql",
        "-- migrate:up\n-- orch:allow drop-column: no release since v41 reads user_id (INC-7)\nALTER TABLE posts DROP COLUMN user_id;\n-- migrate:down\nALTER TABLE posts ADD COLUMN user_id bigint;\n",
    );
    s.orch(&["check"])
        .success()
        .stdout_has("migrations/2_drop_user_id.sql:3:19: drop-column: allowed (no release since v41 reads user_id (INC-7)): DROP COLUMN posts.user_id");
    s.orch(&["migrate", "up"])
        .success()
        .stderr_has("warning: migrations/2_drop_user_id.sql:3:19: drop-column: allowed (no release since v41 reads user_id (INC-7))")
        .stdout_has("applied 2_drop_user_id");
    assert_eq!(s.columns("posts"), ["id", "title"]);
    // Outside a plan, the allowance is an event without a plan, recorded
    // with the migration: orch.migrations loses its row on `down`, the
    // audit log keeps it.
    let rows = s.query(
        "SELECT plan IS NULL, actor, detail->>'migration', detail->>'rule', detail->>'reason', detail->>'line'
         FROM orch.events WHERE action = 'lint_allowed'",
    );
    let got: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| r.into_iter().map(Option::unwrap).collect())
        .collect();
    assert_eq!(
        got,
        [[
            "t",
            "tester",
            "2_drop_user_id",
            "drop-column",
            "no release since v41 reads user_id (INC-7)",
            "3"
        ]]
    );
    s.orch(&["migrate", "down"]).success();
    assert_eq!(
        s.value("SELECT count(*) FROM orch.events WHERE action = 'lint_allowed'")
            .as_deref(),
        Some("1")
    );
}

const DROP_PLAN: &str = "plan: drop-user-id
phases:
  - id: drop-user-id
    kind: migration
    role: ROLE
    title: Drop posts.user_id
    migration: drop_user_id
    guard:
      - name: nothing reads it
        sql: SELECT true
";

fn plan_session(role: &str, migration: &str) -> Session {
    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS);
    s.orch(&["migrate", "up"]).success();
    s.migration("2_drop_user_id.sql", migration);
    s.plan("drop-user-id.yaml", &DROP_PLAN.replace("ROLE", role));
    s
}

const DROP_USER_ID: &str = "-- migrate:up\nALTER TABLE posts DROP COLUMN user_id;\n-- migrate:down\nALTER TABLE posts ADD COLUMN user_id bigint;\n";

#[test]
fn advance_refuses_an_expand_migration_that_drops_a_column() {
    let s = plan_session("expand", DROP_USER_ID);
    s.orch(&["check"]).code(4).stdout_has(
        "migrations/2_drop_user_id.sql:2:19: drop-column: error: DROP COLUMN posts.user_id in an expand phase",
    );
    s.orch(&["advance", "drop-user-id", "--dry-run"])
        .code(4)
        .stderr_has("refusing to run phase 1 (drop-user-id) of plan drop-user-id: the lint found 1 error(s), and nothing ran");
    s.orch(&["advance", "drop-user-id"])
        .code(4)
        .stderr_has("refusing to run phase 1 (drop-user-id) of plan drop-user-id: the lint found 1 error(s), and nothing ran")
        .stderr_has("removals belong in the plan's contract phase");
    assert_eq!(s.columns("posts"), ["id", "user_id", "title"]);
    assert_eq!(s.applied(), ["1_posts"]);
    // Refused before the plan was recorded: it has not started.
    assert_eq!(
        s.value("SELECT count(*) FROM orch.plans").as_deref(),
        Some("0")
    );
    s.orch(&["status", "drop-user-id"])
        .success()
        .stdout_has("not started");
}

#[test]
fn a_contract_phase_may_drop_and_an_allowed_finding_shows_in_the_checklist() {
    let s = plan_session("contract", DROP_USER_ID);
    s.orch(&["check"]).success().stdout_lacks("drop-column");
    s.orch(&["advance", "drop-user-id"]).success();
    assert_eq!(s.columns("posts"), ["id", "title"]);

    // A lock hazard is not a removal: the contract role does not excuse it,
    // an allow does, and the plan's log says why.
    let s = plan_session(
        "contract",
        "-- migrate:up\n-- orch:allow lock-table: keeps the two ALTERs in one lock order\nLOCK TABLE posts IN SHARE ROW EXCLUSIVE MODE;\nALTER TABLE posts DROP COLUMN user_id;\n-- migrate:down\nALTER TABLE posts ADD COLUMN user_id bigint;\n",
    );
    s.orch(&["advance", "drop-user-id"]).success();
    assert_eq!(
        s.value("SELECT plan || '/' || phase || ': ' || (detail->>'rule') FROM orch.events WHERE action = 'lint_allowed'")
            .as_deref(),
        Some("drop-user-id/drop-user-id: lock-table")
    );
    s.orch(&["checklist", "drop-user-id"])
        .success()
        .stdout_has("lint allowed `drop-user-id` by tester: \"lock-table at migrations/2_drop_user_id.sql:3:1: keeps the two ALTERs in one lock order\"");
}

/// The project's own example lints clean (its drop is the plan's
/// contract phase).
#[test]
fn the_example_plan_and_its_migrations_lint_clean() {
    let s = Session::new();
    s.with_repository_files();
    let run = s.orch(&["check", "--json"]);
    run.success();
    assert_eq!(run.stdout.trim(), "[]");
}

/// What `orch check` prints for the four migrations, reviewed as
/// text: each finding, its lock and its recipe.
#[test]
fn check_output_snapshot() {
    let s = dangerous_session();
    let run = s.orch(&["check"]);
    run.code(4);
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!("lint-check", run.stdout));
}

/// The database knows what the folder may not: a CHECK (col IS NOT NULL)
/// validated by hand lets SET NOT NULL skip its scan, so `migrate up`
/// (which always has the database) runs it, while `orch check` offline
/// cannot know and reports it.
#[test]
fn a_check_validated_in_the_database_spares_set_not_null() {
    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS);
    s.orch(&["migrate", "up"]).success();
    s.migration(
        "2_title_required.sql",
        "-- migrate:up\nALTER TABLE posts ALTER COLUMN title SET NOT NULL;\n",
    );
    s.orch(&["check"])
        .code(4)
        .stdout_has("migrations/2_title_required.sql:2:19: set-not-null-scan: error");
    s.orch(&["migrate", "up"])
        .code(4)
        .stderr_has("set-not-null-scan");
    s.execute(
        "ALTER TABLE posts ADD CONSTRAINT posts_title_nn CHECK (title IS NOT NULL) NOT VALID;
         ALTER TABLE posts VALIDATE CONSTRAINT posts_title_nn;",
    );
    s.orch(&["check", "--online"]).success();
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 2_title_required");
}

/// `check --online` lints the pending migrations `migrate up` applies
/// together as one run, as `migrate up` does: a table one creates is new
/// (empty) in the next.
#[test]
fn check_online_lints_pending_migrations_as_the_run_migrate_up_makes() {
    let s = Session::new();
    s.migration(
        "1_tags.sql",
        "-- migrate:up\nCREATE TABLE tags (id bigint PRIMARY KEY, name text);\n-- migrate:down\nDROP TABLE tags;\n",
    )
    .migration(
        "2_tags_name.sql",
        "-- migrate:up\nCREATE UNIQUE INDEX tags_name ON tags (name);\n-- migrate:down\nDROP INDEX tags_name;\n",
    );
    // Offline, each migration is its own run: the index may be on a full table.
    s.orch(&["check"])
        .code(4)
        .stdout_has("migrations/2_tags_name.sql:2:1: create-index-not-concurrently");
    s.orch(&["check", "--online"])
        .success()
        .stdout_lacks("create-index-not-concurrently");
    s.orch(&["migrate", "up"]).success();
}

/// Down sections hold locks too: `migrate down`, `redo` and a plan's
/// rollback lint the down section (drops are its purpose; a blocking
/// index build is not), refuse before anything runs, and audit an allow.
#[test]
fn down_redo_and_rollback_lint_the_down_section() {
    let s = Session::new();
    s.migration("1_posts.sql", CREATE_POSTS);
    s.migration(
        "2_title_index.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY posts_title ON posts (title);\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY posts_title;\n",
    );
    // The tail of the folder: its down re-creates an index without
    // CONCURRENTLY on a table with rows.
    s.migration(
        "3_drop_title_index.sql",
        "-- migrate:up transaction:false\nDROP INDEX CONCURRENTLY posts_title;\n-- migrate:down\nCREATE INDEX posts_title ON posts (title);\n",
    );
    // At `orch check`, a warning: only a down or a rollback runs it.
    s.orch(&["check"])
        .success()
        .stdout_has("migrations/3_drop_title_index.sql:4:1: create-index-not-concurrently: warning: CREATE INDEX on posts without CONCURRENTLY")
        .stdout_has("(a down section: `orch migrate down`, `redo` and `orch rollback` refuse it as it is)");
    s.orch(&["migrate", "up"]).success();
    for args in [
        &["migrate", "down"][..],
        &["migrate", "down", "--dry-run"],
        &["migrate", "redo"],
    ] {
        s.orch(args)
            .code(4)
            .stderr_has("the lint found 1 error(s), and nothing ran")
            .stderr_has("migrations/3_drop_title_index.sql:4:1: create-index-not-concurrently");
    }
    assert_eq!(
        s.applied(),
        ["1_posts", "2_title_index", "3_drop_title_index"]
    );
    // An allow in the down section: it runs, and the audit log says why.
    s.write(
        "migrations/3_drop_title_index.sql",
        "-- migrate:up transaction:false\nDROP INDEX CONCURRENTLY posts_title;\n-- migrate:down\n-- orch:allow create-index-not-concurrently: posts is empty in every environment we run\nCREATE INDEX posts_title ON posts (title);\n",
    );
    s.orch(&["migrate", "down", "--allow-changed"])
        .success()
        .stderr_has(
            "create-index-not-concurrently: allowed (posts is empty in every environment we run)",
        );
    assert_eq!(
        s.value("SELECT detail->>'line' FROM orch.events WHERE action = 'lint_allowed'")
            .as_deref(),
        Some("5")
    );

    // A plan's rollback: the contract phase's down section rewrites posts.
    let s = plan_session(
        "contract",
        "-- migrate:up\nALTER TABLE posts DROP COLUMN user_id;\n-- migrate:down\nALTER TABLE posts ADD COLUMN user_id bigint DEFAULT random();\n",
    );
    s.orch(&["advance", "drop-user-id"]).success();
    s.orch(&["rollback", "drop-user-id"])
        .code(4)
        .stderr_has("refusing to roll back phase 1 (drop-user-id) of plan drop-user-id: the lint found 1 error(s)")
        .stderr_has("volatile-default");
    assert_eq!(s.columns("posts"), ["id", "title"]);
}
