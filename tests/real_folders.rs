//! Folders in orch's own format as real projects have them: names used
//! twice, down sections nobody runs, empty downs, migrations created in the
//! same second.

use crate::support::Session;

const INDEXES_2020: &str = "-- migrate:up
CREATE TABLE posts (id bigint PRIMARY KEY, title text, body text);
CREATE INDEX posts_title ON posts (title);

-- migrate:down
DROP TABLE posts;
";

const INDEXES_2024: &str = "-- migrate:up
DROP INDEX posts_title;

-- migrate:down
-- orch:allow create-index-not-concurrently: posts is tiny; rebuilt only when this is reverted
CREATE INDEX posts_title ON posts (title);
";

const TWICE: [(&str, &str); 2] = [
    ("20200101000000_remove_unused_indexes.sql", INDEXES_2020),
    ("20240101000000_remove_unused_indexes.sql", INDEXES_2024),
];

fn plan_applying(reference: &str) -> String {
    format!(
        "plan: tidy
phases:
  - id: tidy
    kind: migration
    title: Drop the unused index
    migration: {reference}
"
    )
}

#[test]
fn a_name_used_twice_is_fine_until_a_plan_refers_to_it_by_name() {
    let s = Session::new();
    for (file, text) in TWICE {
        s.migration(file, text);
    }
    s.orch(&["check"]).success();
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 20200101000000_remove_unused_indexes")
        .stdout_has("applied 20240101000000_remove_unused_indexes");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("20200101000000")
        .stdout_has("20240101000000");
    s.orch(&["migrate", "down"]).success();
    assert_eq!(
        s.value("SELECT count(*) FROM pg_indexes WHERE indexname = 'posts_title'")
            .as_deref(),
        Some("1")
    );

    // By name: ambiguous, refused before anything runs, naming both files.
    s.plan("tidy.yaml", &plan_applying("remove_unused_indexes"));
    for args in [&["check"][..], &["advance", "tidy"]] {
        s.orch(args)
            .code(3)
            .stderr_has("plans/tidy.yaml:6:16: phases[0].migration: migration name \"remove_unused_indexes\" is ambiguous: migrations/20200101000000_remove_unused_indexes.sql (version 20200101000000) and migrations/20240101000000_remove_unused_indexes.sql (version 20240101000000); refer to one by its version, e.g. `migration: 20200101000000`");
    }
    assert_eq!(
        s.value("SELECT to_regclass('orch.plans') IS NULL OR NOT EXISTS (SELECT FROM orch.plans)")
            .as_deref(),
        Some("t")
    );

    // By version: the plan owns exactly that one.
    s.plan("tidy.yaml", &plan_applying("20240101000000"));
    s.orch(&["check"]).success();
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("nothing to apply before the next plan-owned migration");
    s.orch(&["advance", "tidy"]).success();
    assert_eq!(
        s.value("SELECT count(*) FROM pg_indexes WHERE indexname = 'posts_title'")
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        s.value("SELECT plan FROM orch.migrations WHERE version = 20240101000000")
            .as_deref(),
        Some("tidy")
    );
}

const CONCURRENT_DOWN: &str = "-- migrate:up
DROP INDEX posts_title;

-- migrate:down
CREATE INDEX CONCURRENTLY posts_title ON posts (title);
";

#[test]
fn a_down_section_unfit_for_a_transaction_blocks_only_down() {
    let s = Session::new();
    s.migration("1_posts.sql", INDEXES_2020)
        .migration("2_drop_index.sql", CONCURRENT_DOWN);
    s.orch(&["check"]).success().stdout_has(
        "warning: migrations/2_drop_index.sql:5: this statement cannot run inside a transaction",
    );
    s.orch(&["migrate", "up"]).success();
    let before = s.applied();

    s.orch(&["migrate", "down"]).code(3).stderr_has(
        "migrations/2_drop_index.sql:5: this statement cannot run inside a transaction",
    );
    assert_eq!(s.applied(), before);
    assert_eq!(
        s.value("SELECT count(*) FROM pg_indexes WHERE indexname = 'posts_title'")
            .as_deref(),
        Some("0")
    );

    s.migration(
        "2_drop_index.sql",
        &CONCURRENT_DOWN.replace("-- migrate:down", "-- migrate:down transaction:false"),
    );
    s.orch(&["migrate", "down", "--allow-changed"])
        .success()
        .stdout_has("reverted 2_drop_index");
    assert_eq!(
        s.value("SELECT count(*) FROM pg_indexes WHERE indexname = 'posts_title'")
            .as_deref(),
        Some("1")
    );
}

#[test]
fn an_empty_down_section_is_nothing_to_undo_only_when_it_says_so() {
    let s = Session::new();
    s.migration("1_posts.sql", INDEXES_2020).migration(
        "2_analyze.sql",
        "-- migrate:up\nANALYZE posts;\n\n-- migrate:down\n\n",
    );
    s.orch(&["migrate", "up"]).success();
    s.orch(&["migrate", "down"])
        .code(4)
        .stderr_has("migrations/2_analyze.sql has no down section (or an empty one)")
        .stderr_has("-- nothing to undo");
    assert_eq!(s.applied().len(), 2);

    s.migration(
        "2_analyze.sql",
        "-- migrate:up\nANALYZE posts;\n\n-- migrate:down\n-- Nothing to undo.\n",
    );
    s.orch(&["migrate", "down", "--allow-changed"])
        .success()
        .stdout_has("reverted 2_analyze");
    assert_eq!(s.applied(), ["1_posts"]);
    assert!(s.has_table("posts"));
}

#[test]
fn migrations_created_in_one_second_get_different_versions() {
    let s = Session::new();
    for name in ["a", "b", "c", "d"] {
        s.orch(&["migrate", "create", name]).success();
    }
    let mut versions: Vec<String> = std::fs::read_dir(s.path("migrations"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.split('_').next().unwrap().to_string()
        })
        .collect();
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 4, "{versions:?}");
    s.orch(&["check"]).success();
    s.orch(&["migrate", "create", "a"])
        .code(2)
        .stderr_has("a migration named \"a\" exists already");
}

const TABLE_T: &str = "-- migrate:up
CREATE TABLE t (a int);
CREATE INDEX t_a ON t (a);

-- migrate:down
DROP INDEX CONCURRENTLY t_a;
DROP TABLE t;
";

#[test]
fn a_file_changed_or_removed_on_purpose_is_settled_and_up_goes_on() {
    let s = Session::new();
    s.migration("1_t.sql", TABLE_T).migration(
        "2_u.sql",
        "-- migrate:up\nCREATE TABLE u ();\n-- migrate:down\nDROP TABLE u;\n",
    );
    s.orch(&["migrate", "up"]).success();

    // The fix orch suggests for the down section changes the file...
    s.migration(
        "1_t.sql",
        &TABLE_T.replace("-- migrate:down", "-- migrate:down transaction:false"),
    );
    s.migration(
        "3_v.sql",
        "-- migrate:up\nCREATE TABLE v ();\n-- migrate:down\nDROP TABLE v;\n",
    );
    s.orch(&["migrate", "up"])
        .code(4)
        .stderr_has("migrations/1_t.sql was changed after it was applied")
        .stderr_has("`orch migrate resolve 1 --accept-changed`");
    // ...which the operator accepts, and up goes on.
    s.orch(&["migrate", "resolve", "1", "--accept-changed"])
        .success()
        .stdout_has(
            "resolved 1_t: migrations/1_t.sql as it is now is recorded as the applied file",
        );
    s.orch(&["migrate", "resolve", "1", "--accept-changed"])
        .success()
        .stdout_has("unchanged since it was applied; nothing to resolve");
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 3_v");

    // An applied file removed on purpose: up asks for it until told.
    s.remove("migrations/2_u.sql");
    s.migration(
        "4_w.sql",
        "-- migrate:up\nCREATE TABLE w ();\n-- migrate:down\nDROP TABLE w;\n",
    );
    s.orch(&["migrate", "up"])
        .code(4)
        .stderr_has("migration 2_u is applied (on ")
        .stderr_has("`orch migrate resolve 2 --file-removed`");
    s.orch(&["migrate", "resolve", "2", "--accept-changed"])
        .code(4)
        .stderr_has("2_u's file is missing");
    s.orch(&["migrate", "resolve", "2", "--file-removed"])
        .success()
        .stdout_has("its record is kept");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("applied, file removed");
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 4_w");
    assert_eq!(s.applied(), ["1_t", "2_u", "3_v", "4_w"]);
    s.orch(&["migrate", "resolve", "3", "--file-removed"])
        .code(4)
        .stderr_has("3_v's file is there");
    s.orch(&["migrate", "resolve", "3"])
        .code(2)
        .stderr_has("--file-removed");
}

#[test]
fn a_plan_may_name_its_migration_by_version_key() {
    let s = Session::new();
    for (file, text) in TWICE {
        s.migration(file, text);
    }
    s.plan(
        "tidy.yaml",
        &plan_applying("20200101000000").replace("migration: ", "version: "),
    );
    s.orch(&["check"]).success();
    s.orch(&["advance", "tidy"]).success();
    assert_eq!(
        s.value("SELECT plan FROM orch.migrations WHERE version = 20200101000000")
            .as_deref(),
        Some("tidy")
    );
}

#[test]
fn what_a_folder_leaves_unread_is_said_by_every_command() {
    let s = Session::new();
    crate::support::tools::copy_fixture("formats/diesel", &s.path("migrations"));
    s.orch(&["migrate", "status"])
        .success()
        .stderr_has("README.md");
    // (The fixture's last migration indexes an existing table without
    // CONCURRENTLY, which the lint reports too.)
    s.orch(&["check"])
        .code(4)
        .stdout_has("note: ")
        .stdout_has("README.md");
    s.orch(&["--format", "goose", "migrate", "status"])
        .success()
        .stderr_has("no goose migrations found, but the folder holds diesel migrations");
}

/// orch's own format is dbmate's: a folder written from dbmate's README
/// gives the schema dbmate itself gives (run from npm when npm has it, else
/// psql applying the up sections), and reverts and re-applies.
#[test]
fn a_dbmate_folder_gives_what_dbmate_gives() {
    use crate::support::tools::{copy_fixture, npm_program, psql, schema, url};
    let s = Session::new();
    copy_fixture("formats/dbmate", &s.path("migrations"));
    s.orch(&["check"]).success().stdout_has("dbmate format");
    s.orch(&["migrate", "up"]).success();
    let by_orch = schema(&s.db);

    let other = Session::new();
    copy_fixture("formats/dbmate", &other.path("migrations"));
    match npm_program(&["dbmate"], "dbmate") {
        Ok(dbmate) => {
            let output = std::process::Command::new(dbmate)
                .args(["--url", &url(&other.db), "-d"])
                .arg(other.path("migrations"))
                .args(["--no-dump-schema", "migrate"])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "dbmate migrate failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Err(why) => {
            eprintln!("skipped: running dbmate itself ({why}); psql applies the up sections");
            let mut names: Vec<_> = std::fs::read_dir(other.path("migrations"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for path in names {
                let text = std::fs::read_to_string(path).unwrap();
                let up = text.split("-- migrate:down").next().unwrap();
                psql(&other.db, up);
            }
        }
    }
    assert_eq!(by_orch, schema(&other.db));

    s.orch(&["migrate", "down", "3"]).success();
    assert!(!s.has_table("users"));
    s.orch(&["migrate", "up"]).success();
    assert_eq!(schema(&s.db), by_orch);
}
