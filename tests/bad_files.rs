//! Files orch cannot use are named with their line and changed nothing:
//! encodings, byte-order marks, empty migrations, entries that are no files.

use crate::support::Session;

const GATE_PLAN: &str =
    "plan: p\nphases:\n  - id: gate\n    kind: deploy\n    title: T\n    instructions: go\n";

#[test]
fn non_utf8_files_are_named_at_the_byte_that_breaks() {
    let s = Session::new();
    std::fs::create_dir_all(s.path("plans")).unwrap();
    std::fs::write(s.path("plans/p.yaml"), b"plan: p\nphases: [\xFF]\n").unwrap();
    s.orch(&["check"]).code(3).stderr_has(
        "plans/p.yaml:2:10: (encoding): not valid UTF-8: byte 0xFF starts no UTF-8 character",
    );
    s.remove("plans/p.yaml");
    std::fs::create_dir_all(s.path("migrations")).unwrap();
    std::fs::write(
        s.path("migrations/1_a.sql"),
        b"-- migrate:up\nSELECT 1;\nSELECT '\xC3(';\n",
    )
    .unwrap();
    s.orch(&["migrate", "up"])
        .code(3)
        .stderr_has("migrations/1_a.sql:3: not valid UTF-8: byte 0xC3");
    assert!(s.applied().is_empty());
}

/// Editors on Windows write a byte-order mark; it is not part of the text.
#[test]
fn a_byte_order_mark_is_accepted() {
    let s = Session::new();
    s.plan("p.yaml", &format!("\u{feff}{GATE_PLAN}"));
    s.migration(
        "1_a.sql",
        "\u{feff}-- migrate:up\nCREATE TABLE a (id int);\n",
    );
    s.orch(&["check"])
        .success()
        .stdout_has("ok: plans/p.yaml (1 phases)");
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 1_a");
}

/// Regression: an empty up section was recorded as applied.
#[test]
fn an_empty_up_section_is_refused_not_recorded() {
    let s = Session::new();
    s.migration("1_a.sql", "-- migrate:up\nCREATE TABLE a (id int);\n")
        .migration("2_b.sql", "-- migrate:up\n-- TODO\n\n-- migrate:down\n");
    s.orch(&["migrate", "up"])
        .code(4)
        .stderr_has("migrations/2_b.sql:1: the up section has no statement");
    assert!(s.applied().is_empty(), "nothing applied, not even 1_a");
    // Up to the one before it is fine.
    s.orch(&["migrate", "up", "--to", "1"]).success();
    assert_eq!(s.applied(), ["1_a"]);
}

/// Regression: a `.yaml` entry that is a directory or a looping link was
/// skipped silently, so a plan seemed not to exist.
#[test]
fn plan_entries_that_are_no_files_are_named() {
    let s = Session::new();
    s.plan("p.yaml", GATE_PLAN);
    std::fs::create_dir_all(s.path("plans/q.yaml")).unwrap();
    std::os::unix::fs::symlink("r.yaml", s.path("plans/r.yaml")).unwrap();
    s.orch(&["check"])
        .code(3)
        .stderr_has("plans/q.yaml:1:1: (file): not a plan file: it is a directory, not a file")
        .stderr_has("plans/r.yaml:1:1: (file): not a plan file: it cannot be read");
}

/// Regression: "(2 attempts)" was printed for a section of two statements
/// that never retried.
#[test]
fn attempts_count_retries_not_statements() {
    let s = Session::new();
    s.migration(
        "1_a.sql",
        "-- migrate:up transaction:false\nCREATE TABLE a (id int);\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n",
    );
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 1_a")
        .stdout_lacks("attempts");
    assert_eq!(
        s.value("SELECT attempts FROM orch.migrations").as_deref(),
        Some("1")
    );
}
