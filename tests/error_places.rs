//! Where a failed migration is reported: PostgreSQL's error position mapped
//! to the file's line and column, else the line where the failing
//! statement starts; by `orch migrate up` and by a plan's migration phase,
//! for sections sent whole and for `transaction:false` ones.

use crate::support::Session;

/// Six lines that parse; PostgreSQL refuses line 4 (the type `nosuchtype`
/// at column 28) once the two statements before it ran. (A syntax error
/// never gets this far: the lint reports it at its line before anything
/// runs, see the last test.)
const SYNTAX_ERROR: &str = "-- migrate:up
CREATE TABLE a (id int);
CREATE TABLE b (id int);
ALTER TABLE a ADD COLUMN x nosuchtype;
CREATE TABLE c (id int);
-- migrate:down
";

/// The 3rd statement (line 5, `nope` at column 13) names a table that does
/// not exist; the two before it ran.
const MISSING_TABLE: &str = "-- migrate:up
CREATE TABLE a (id int);
CREATE TABLE b
  (id int);
INSERT INTO nope VALUES (1);
CREATE TABLE c (id int);

-- migrate:down
";

const PLAN: &str = "plan: p
phases:
  - id: run-it
    kind: migration
    title: Run it
    migration: broken
";

#[test]
fn a_syntax_error_is_reported_at_its_line_and_column_not_the_sections_start() {
    // Guards against the whole section failing at its first line: PostgreSQL
    // parses a script sent whole before running any of it.
    let s = Session::new();
    s.migration("1_broken.sql", SYNTAX_ERROR);
    s.orch(&["migrate", "up"])
        .code(1)
        .stderr_has("error: migrations/1_broken.sql:4:28: migration 1_broken (up) failed: type \"nosuchtype\" does not exist (SQLSTATE 42704)");
    assert!(!s.has_table("a"));
}

#[test]
fn a_runtime_error_is_reported_at_its_statement() {
    let s = Session::new();
    s.migration("1_broken.sql", MISSING_TABLE);
    s.orch(&["migrate", "up"])
        .code(1)
        .stderr_has("error: migrations/1_broken.sql:5:13: migration 1_broken (up) failed: relation \"nope\" does not exist (SQLSTATE 42P01)");
    assert!(!s.has_table("a"), "the section is rolled back");
}

#[test]
fn an_error_without_a_position_is_reported_at_the_line_its_statement_starts() {
    let s = Session::new();
    s.migration(
        "1_broken.sql",
        "-- migrate:up
CREATE TABLE a (id int PRIMARY KEY);
INSERT INTO a VALUES (1);

INSERT INTO a
  VALUES (1);
-- migrate:down
",
    );
    s.orch(&["migrate", "up"]).code(1).stderr_has(
        "error: migrations/1_broken.sql:5: migration 1_broken (up) failed: duplicate key value",
    );
}

#[test]
fn statement_by_statement_sections_map_positions_too() {
    let s = Session::new();
    s.migration(
        "1_broken.sql",
        "-- migrate:up transaction:false
CREATE TABLE a (id int);
CREATE TABLE b (id int);   SELECT *
  FROM  nope;
-- migrate:down
",
    );
    s.orch(&["migrate", "up"])
        .code(1)
        .stderr_has("error: migrations/1_broken.sql:4:9: migration 1_broken (up) failed: relation \"nope\" does not exist (SQLSTATE 42P01)")
        .stderr_has("its first 2 statement(s) did run and stay applied");
    assert_eq!(
        s.value("SELECT dirty->>'line' FROM orch.migrations WHERE version = 1")
            .as_deref(),
        Some("3"),
        "the dirty record names where the failed statement starts"
    );
}

#[test]
fn a_plan_phase_reports_the_same_places() {
    for (text, place) in [
        (
            SYNTAX_ERROR,
            "migrations/1_broken.sql:4:28: migration 1_broken (up) failed: type \"nosuchtype\"",
        ),
        (
            MISSING_TABLE,
            "migrations/1_broken.sql:5:13: migration 1_broken (up) failed: relation \"nope\"",
        ),
    ] {
        let s = Session::new();
        s.migration("1_broken.sql", text);
        s.plan("p.yaml", PLAN);
        s.orch(&["advance", "p"]).code(1).stderr_has(place);
        s.orch(&["status", "p"]).stdout_has(place);
    }
}

#[test]
fn goose_statements_are_placed_in_their_file() {
    let s = Session::new();
    s.migration(
        "00001_broken.sql",
        "-- +goose Up
CREATE TABLE a (id int);
-- +goose StatementBegin
SELECT 1;
SELECT * FROM
   nope;
-- +goose StatementEnd

-- +goose Down
DROP TABLE a;
",
    );
    s.orch(&["migrate", "up"]).code(1).stderr_has(
        "migrations/00001_broken.sql:6:4: migration 1_broken (up) failed: relation \"nope\"",
    );
}

#[test]
fn a_syntax_error_is_refused_at_its_line_before_anything_runs() {
    let s = Session::new();
    s.migration(
        "1_broken.sql",
        "-- migrate:up\nCREATE TABLE a (id int);\nCREATE TABLE b (id int);\nALTER TABLEE a ADD COLUMN x int;\nCREATE TABLE c (id int);\n-- migrate:down\n",
    );
    for args in [
        &["check"][..],
        &["migrate", "up", "--dry-run"],
        &["migrate", "up"],
    ] {
        let run = s.orch(args);
        let out = format!("{}{}", run.stdout, run.stderr);
        assert_ne!(run.code, 0, "{out}");
        assert!(
            out.contains("migrations/1_broken.sql:4:1: syntax-error"),
            "{args:?}: {out}"
        );
        assert_eq!(
            out.matches("syntax-error").count(),
            1,
            "one per line: {out}"
        );
    }
    assert!(!s.has_table("a"));
}
