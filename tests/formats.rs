//! Other tools' migration folders, read as they are. Each fixture under
//! `tests/fixtures/formats/` is written from the tool's own documentation;
//! orch must tell its format without `--format`, apply it to the schema
//! psql gets from the same files in the tool's order, revert it all, apply
//! it again, and create new migrations the tool would recognise.

use std::path::PathBuf;

use crate::support::tools::{copy_fixture, psql, schema};
use crate::support::{Session, TestDb};

/// A project whose migrations folder is a copy of `fixture`.
fn session_with(fixture: &str) -> Session {
    let s = Session::new();
    copy_fixture(&format!("formats/{fixture}"), &s.path("migrations"));
    s
}

fn fixture_file(fixture: &str, relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats")
        .join(fixture)
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The schema psql builds from the fixture's up files, applied one after
/// the other in the order given (the tool's order).
fn schema_by_psql(fixture: &str, ups: &[&str]) -> String {
    let db = TestDb::new();
    for up in ups {
        psql(&db, &fixture_file(fixture, up));
    }
    schema(&db)
}

fn empty_schema() -> String {
    schema(&TestDb::new())
}

/// `texts` appear in `output` in this order.
#[track_caller]
fn assert_in_order(output: &str, texts: &[&str]) {
    let mut from = 0;
    for text in texts {
        match output[from..].find(text) {
            Some(at) => from += at + text.len(),
            None => panic!("{text:?} missing, or out of order, in:\n{output}"),
        }
    }
}

/// The paths `orch migrate create` printed (relative to the project),
/// relative to the migrations folder.
fn created(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("created "))
        .map(|path| {
            path.strip_prefix("migrations/")
                .unwrap_or_else(|| panic!("{path} is not in migrations/"))
                .to_string()
        })
        .collect()
}

fn is_timestamp(text: &str) -> bool {
    text.len() == 14 && text.bytes().all(|b| b.is_ascii_digit())
}

const DIESEL_UPS: &[&str] = &[
    "00000000000000_diesel_initial_setup/up.sql",
    "20151219180527_create_users/up.sql",
    "2016-01-07-082941_create_posts/up.sql",
    "2017-08-31-230457_add published to posts/up.sql",
    "2025-11-19-091444-0000_index_posts_user_id/up.sql",
    "20260102030405_add_users_email/up.sql",
];

#[test]
fn diesel_folder_applies_reverts_and_reapplies_in_diesels_order() {
    let s = session_with("diesel");
    let expected = schema_by_psql("diesel", DIESEL_UPS);

    let run = s.orch(&["migrate", "up"]);
    run.success();
    // diesel's order: the version's text, dashes removed, so the 18-digit
    // 202511190914440000 comes before 20260102030405.
    assert_in_order(
        &run.stdout,
        &[
            "applied 0_diesel_initial_setup",
            "applied 20151219180527_create_users",
            "applied 20160107082941_create_posts",
            "applied 20170831230457_add published to posts",
            "applied 202511190914440000_index_posts_user_id",
            "applied 20260102030405_add_users_email",
        ],
    );
    assert_eq!(schema(&s.db), expected);
    // run_in_transaction = false: the index was built concurrently, valid.
    assert_eq!(
        s.value("SELECT indisvalid FROM pg_index WHERE indexrelid = 'posts_user_id_idx'::regclass")
            .as_deref(),
        Some("t")
    );

    let status = s.orch(&["migrate", "status"]);
    status.success().stdout_has("6 migrations");
    assert_in_order(
        &status.stdout,
        &[
            "diesel_initial_setup",
            "create_users",
            "create_posts",
            "add published to posts",
            "index_posts_user_id",
            "add_users_email",
        ],
    );

    s.orch(&["migrate", "down"])
        .success()
        .stdout_has("reverted 20260102030405_add_users_email")
        .stdout_lacks("index_posts_user_id");
    s.orch(&["migrate", "down", "5"]).success();
    assert!(s.applied().is_empty());
    assert_eq!(schema(&s.db), empty_schema());

    s.orch(&["migrate", "up"]).success();
    assert_eq!(schema(&s.db), expected);
}

#[test]
fn diesel_create_continues_the_folder_and_parses_back() {
    let s = session_with("diesel");
    let run = s.orch(&["migrate", "create", "add_comments"]);
    run.success();
    let files = created(&run.stdout);
    assert_eq!(files.len(), 2, "{files:?}");
    // The newest migration's version is 14 digits: so is the new one's.
    let (version, rest) = files[0].split_once('_').unwrap();
    assert!(is_timestamp(version), "{files:?}");
    assert_eq!(rest, "add_comments/up.sql");
    assert_eq!(files[1], format!("{version}_add_comments/down.sql"));
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("7 migrations, 7 pending")
        .stdout_has("add_comments");
}

const GOLANG_MIGRATE_UPS: &[&str] = &[
    "000001_create_movies_table.up.sql",
    "000002_create_users_table.up.sql",
    "000003_add_mood_to_users.up.sql",
    "000004_index_movies_director.up.sql",
];

#[test]
fn golang_migrate_folder_applies_reverts_and_reapplies() {
    let s = session_with("golang-migrate");
    let expected = schema_by_psql("golang-migrate", GOLANG_MIGRATE_UPS);

    let run = s.orch(&["migrate", "up"]);
    run.success();
    assert_in_order(
        &run.stdout,
        &[
            "applied 1_create_movies_table",
            "applied 2_create_users_table",
            "applied 3_add_mood_to_users",
            "applied 4_index_movies_director",
        ],
    );
    assert_eq!(schema(&s.db), expected);

    let status = s.orch(&["migrate", "status"]);
    status.success().stdout_has("4 migrations");
    assert_in_order(
        &status.stdout,
        &[
            "create_movies_table",
            "create_users_table",
            "add_mood_to_users",
            "index_movies_director",
        ],
    );

    s.orch(&["migrate", "down", "3"]).success();
    // The first migration has no down file: orch will not guess one.
    s.orch(&["migrate", "down"])
        .code(4)
        .stderr_has("000001_create_movies_table.up.sql has no down section");
    // Writing it later does not make the applied migration "changed".
    s.write(
        "migrations/000001_create_movies_table.down.sql",
        "DROP TABLE movies;\nDROP TYPE award;\n",
    );
    s.orch(&["migrate", "down"])
        .success()
        .stdout_has("reverted 1_create_movies_table");
    assert_eq!(schema(&s.db), empty_schema());

    s.orch(&["migrate", "up"]).success();
    assert_eq!(schema(&s.db), expected);
}

#[test]
fn golang_migrate_create_continues_the_sequence_and_parses_back() {
    let s = session_with("golang-migrate");
    let run = s.orch(&["migrate", "create", "add_ratings"]);
    run.success();
    assert_eq!(
        created(&run.stdout),
        ["000005_add_ratings.up.sql", "000005_add_ratings.down.sql"]
    );
    // As golang-migrate's `create` writes them: empty.
    let up = std::fs::read_to_string(s.path("migrations/000005_add_ratings.up.sql")).unwrap();
    assert_eq!(up, "");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("5 migrations, 5 pending")
        .stdout_has("add_ratings");
}

const SQLX_UPS: &[&str] = &[
    "20230101000000_create_user.up.sql",
    "20230201000000_create_post.up.sql",
    "20230301000000_create_comment.up.sql",
    "20230401000000_index_comment_post.up.sql",
];

#[test]
fn sqlx_folder_applies_reverts_and_reapplies() {
    let s = session_with("sqlx");
    let expected = schema_by_psql("sqlx", SQLX_UPS);

    let run = s.orch(&["migrate", "up"]);
    run.success();
    assert_in_order(
        &run.stdout,
        &[
            "applied 20230101000000_create_user",
            "applied 20230201000000_create_post",
            "applied 20230301000000_create_comment",
            "applied 20230401000000_index_comment_post",
        ],
    );
    assert_eq!(schema(&s.db), expected);
    // `-- no-transaction`: the index was built concurrently, valid.
    assert_eq!(
        s.value(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'comment_post_id_created_at_idx'::regclass"
        )
        .as_deref(),
        Some("t")
    );

    let status = s.orch(&["migrate", "status"]);
    status.success().stdout_has("4 migrations");
    assert_in_order(
        &status.stdout,
        &[
            "create_user",
            "create_post",
            "create_comment",
            "index_comment_post",
        ],
    );

    s.orch(&["migrate", "down", "4"]).success();
    assert!(s.applied().is_empty());
    assert_eq!(schema(&s.db), empty_schema());

    s.orch(&["migrate", "up"]).success();
    assert_eq!(schema(&s.db), expected);
}

#[test]
fn sqlx_create_writes_a_reversible_pair_and_parses_back() {
    let s = session_with("sqlx");
    let run = s.orch(&["migrate", "create", "add_likes"]);
    run.success();
    let files = created(&run.stdout);
    assert_eq!(files.len(), 2, "{files:?}");
    let (version, rest) = files[0].split_once('_').unwrap();
    assert!(is_timestamp(version), "{files:?}");
    assert_eq!(rest, "add_likes.up.sql");
    assert_eq!(files[1], format!("{version}_add_likes.down.sql"));
    // Read as sqlx's (whose new files hold a comment), not as
    // golang-migrate's, whose files are named alike.
    let up = std::fs::read_to_string(s.path(&format!("migrations/{}", files[0]))).unwrap();
    assert!(up.starts_with("-- "), "{up:?}");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("5 migrations, 5 pending")
        .stdout_has("add_likes");
}
