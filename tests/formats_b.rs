//! Other tools' folders read as they are: goose and node-pg-migrate. orch
//! applies a fixture folder written from each tool's documentation (the
//! format is detected, no `--format`), and builds the schema that folder's
//! SQL builds when applied by hand in the tool's order; down all the way
//! leaves nothing, and up again builds it again. For node-pg-migrate the
//! real tool, run on the same folder, builds the same schema.

use std::path::Path;
use std::process::Command;

use crate::support::tools::{copy_fixture, npm_program, psql, schema, url};
use crate::support::{Session, TestDb};

/// goose's order: numeric versions (sequential numbers before timestamps).
const GOOSE: &[&str] = &[
    "00001_create_post.sql",
    "00002_histories_partition_creation.sql",
    "00003_post_title_index.sql",
    "00004_post_author.sql",
    "20230201093158_add_users_table.sql",
];

/// node-pg-migrate's order: by the time each prefix stands for; the
/// 17-digit UTC prefix is 1700000000005 milliseconds, before ...010.
const NODE_PG_MIGRATE: &[&str] = &[
    "1700000000000_my-first-migration.js",
    "1700000000001_users-updated-at.sql",
    "20231114221320005_create-tags.sql",
    "1700000000010_tags-name-index.js",
];

fn fixture_text(folder: &str, file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder)
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The up SQL of a goose file, as a person would cut it: the lines before
/// its down annotation.
fn goose_up(_file: &str, text: &str) -> String {
    text.lines()
        .take_while(|line| !line.to_ascii_lowercase().starts_with("-- +goose down"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The up SQL of a node-pg-migrate file, as a person would cut it: an
/// `.sql` file from its up marker to its down marker, a `.js` file's
/// template literals between `exports.up` and `exports.down`.
fn node_pg_migrate_up(file: &str, text: &str) -> String {
    if file.ends_with(".sql") {
        let start = text.find("-- Up Migration").unwrap();
        let end = text.find("-- Down Migration").unwrap();
        return text[start..end].to_string();
    }
    let up = &text[text.find("exports.up").unwrap()..text.find("exports.down").unwrap()];
    let pieces: Vec<&str> = up.split('`').skip(1).step_by(2).collect();
    assert!(!pieces.is_empty(), "{file}: no SQL found");
    format!("{};\n", pieces.join(";\n"))
}

/// orch applies the fixture folder in the tool's order, builds what the
/// SQL builds by hand, reverts it all, and builds it again.
fn orch_reads_the_folder_as_the_tool_does(
    folder: &str,
    order: &[&str],
    up_sql: fn(&str, &str) -> String,
) -> Session {
    let session = Session::new();
    copy_fixture(folder, &session.path("migrations"));

    let run = session.orch(&["migrate", "up"]);
    run.success();
    let ids: Vec<String> = order
        .iter()
        .map(|file| {
            let stem = file.rsplit_once('.').unwrap().0;
            let (version, name) = stem.split_once('_').unwrap();
            format!("{}_{name}", version.parse::<i64>().unwrap())
        })
        .collect();
    let positions: Vec<usize> = ids
        .iter()
        .map(|id| {
            run.stdout
                .find(&format!("applied {id}"))
                .unwrap_or_else(|| panic!("{id} not applied:\n{}", run.stdout))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "not applied in {folder}'s order:\n{}",
        run.stdout
    );

    let by_hand = TestDb::new();
    for file in order {
        psql(&by_hand, &up_sql(file, &fixture_text(folder, file)));
    }
    let expected = schema(&by_hand);
    assert!(expected.contains("CREATE TABLE"), "{expected}");
    assert_eq!(schema(&session.db), expected);

    session
        .orch(&["migrate", "down", &order.len().to_string()])
        .success();
    assert_eq!(schema(&session.db), schema(&TestDb::new()));
    assert!(session.applied().is_empty());

    session.orch(&["migrate", "up"]).success();
    assert_eq!(schema(&session.db), expected);
    session
}

#[test]
fn goose_folder_applies_as_goose_applies_it() {
    let session = orch_reads_the_folder_as_the_tool_does("formats/goose", GOOSE, goose_up);
    // The PL/pgSQL function between StatementBegin and StatementEnd is one
    // statement, whole.
    assert_eq!(
        session
            .value("SELECT count(*) FROM pg_proc WHERE proname = 'histories_partition_creation'"),
        Some("1".to_string())
    );
    session.execute("SELECT histories_partition_creation('2024-01-01', '2024-02-01')");
    assert!(session.has_table("histories_2024_02"));
    // NO TRANSACTION: the concurrently built index is there and valid.
    assert_eq!(
        session
            .value("SELECT indisvalid FROM pg_index WHERE indexrelid = 'post_title_idx'::regclass"),
        Some("t".to_string())
    );
}

#[test]
fn node_pg_migrate_folder_applies_as_node_pg_migrate_applies_it() {
    let session = orch_reads_the_folder_as_the_tool_does(
        "formats/node-pg-migrate",
        NODE_PG_MIGRATE,
        node_pg_migrate_up,
    );
    assert_eq!(
        session.value(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'tags_name_index'::regclass"
        ),
        Some("t".to_string())
    );
}

/// Runs the real node-pg-migrate 7 on the fixture folder: it must build the
/// schema orch builds, and record each migration by the name orch gives it
/// as the tool's id (the file name without its extension), in orch's order.
#[test]
fn real_node_pg_migrate_builds_what_orch_builds() {
    let program = match npm_program(&["node-pg-migrate@7", "pg@8"], "node-pg-migrate") {
        Ok(program) => program,
        Err(why) => {
            eprintln!("skipped: cannot install node-pg-migrate from npm: {why}");
            return;
        }
    };
    let session = Session::new();
    copy_fixture("formats/node-pg-migrate", &session.path("migrations"));
    session.orch(&["migrate", "up"]).success();

    let db = TestDb::new();
    // An empty working directory: no .env or config/ of ours is picked up.
    let cwd = tempfile::tempdir().unwrap();
    let output = Command::new(&program)
        .arg("up")
        .arg("--migrations-dir")
        .arg(session.path("migrations"))
        .env("DATABASE_URL", url(&db))
        .current_dir(cwd.path())
        .output()
        .expect("run node-pg-migrate");
    assert!(
        output.status.success(),
        "node-pg-migrate up failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(schema(&db), schema(&session.db));

    let recorded: Vec<String> = db
        .query("SELECT name FROM pgmigrations ORDER BY id")
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    let stems: Vec<&str> = NODE_PG_MIGRATE
        .iter()
        .map(|file| file.rsplit_once('.').unwrap().0)
        .collect();
    assert_eq!(recorded, stems);
}

/// `orch migrate create` in a goose or node-pg-migrate folder writes a file
/// of that format, which orch then reads as one.
#[test]
fn create_writes_the_folders_format() {
    let cases: &[(&str, &str)] = &[
        ("formats/goose", "-- +goose Up\n"),
        ("formats/node-pg-migrate", "-- Up Migration\n"),
    ];
    for (folder, first_line) in cases {
        let session = Session::new();
        copy_fixture(folder, &session.path("migrations"));
        session.orch(&["migrate", "create", "add_notes"]).success();
        let created: Vec<std::path::PathBuf> = std::fs::read_dir(session.path("migrations"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with("_add_notes.sql"))
            .collect();
        assert_eq!(created.len(), 1, "{folder}: {created:?}");
        let text = std::fs::read_to_string(&created[0]).unwrap();
        assert!(text.starts_with(first_line), "{folder}: {text}");
        session.write(
            &format!(
                "migrations/{}",
                created[0].file_name().unwrap().to_string_lossy()
            ),
            &text.replacen(
                first_line,
                &format!("{first_line}CREATE TABLE notes ();\n"),
                1,
            ),
        );
        let run = session.orch(&["migrate", "up"]);
        run.success().stdout_has("_add_notes");
        assert!(session.has_table("notes"), "{folder}");
    }
}
