//! Property tests of everything that reads untrusted text: the command
//! line, plan files, migration files, the SQL lexer, connection strings,
//! orch.toml, `.env` and `${VAR}` in target URLs.
//! The one property is that none of them panics, whatever it is given;
//! each also keeps the invariants its callers rely on (offsets inside the
//! text, errors that render).
//!
//! Inputs are both structured (plan YAML built from real field names with
//! random values, SQL built from quotes, comments and dollar quotes, argv
//! built from orch's real flags) and random. `cargo test` runs a few hundred
//! cases of each; a longer run is `PROPTEST_CASES=100000 cargo test --lib
//! fuzz`. Failing inputs proptest finds are saved in
//! `proptest-regressions/fuzz.txt` (committed, replayed first on every
//! run); those that needed a fix also have a unit test beside the fix.

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use crate::backfill::sizing::BatchSizer;
use crate::cli::args::Cli;
use crate::config::{self as orch_config, Environment};
use crate::connect::ConnectionSettings;
use crate::engine::lock_retry::LockRetryPolicy;
use crate::migration::MigrationSet;
use crate::migration::source::{dbmate, goose, node_pg_migrate};
use crate::plan::LoadedPlan;
use crate::plan::validate::validate;
use crate::sql_text::{self, Fragment};

/// A few hundred cases per property by default (the suite stays fast);
/// `PROPTEST_CASES` raises it for a long run.
fn config() -> Config {
    Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(300),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/fuzz.txt",
        ))),
        ..Config::default()
    }
}

/// Pieces SQL is made of where lexers go wrong: every kind of quote and
/// comment, opened and not closed, nested, next to placeholders and casts.
const SQL_PIECES: &[&str] = &[
    "SELECT",
    "select",
    " ",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "'",
    "''",
    "'x'",
    "E'",
    "e'\\''",
    "\\",
    "\"",
    "\"\"",
    "\"id\"",
    "$$",
    "$",
    "$1",
    "$a$",
    "$a_1$",
    "$é$",
    "--",
    "-- c\n",
    "/*",
    "*/",
    "/* /* */",
    "(",
    ")",
    "[",
    "]",
    ";",
    ":",
    "::",
    ":=",
    ":name",
    ":gate_opened_at",
    ":'v'",
    ":\"v\"",
    "1",
    "1.5e",
    "x",
    "é",
    "ß",
    "\u{0}",
    "\u{feff}",
    "BEGIN",
    "ATOMIC",
    "END",
    "CASE",
    "from",
    "where",
    "returning",
    "FROM",
    "set",
    "=",
    ",",
    "U&'",
    "B'",
    "X'",
    "N'",
    "&",
    "||",
    "CREATE INDEX CONCURRENTLY i ON t (c)",
    "VACUUM",
    "-- migrate:up",
    "-- migrate:down",
];

fn sql() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(prop::sample::select(SQL_PIECES), 0..40)
            .prop_map(|pieces| pieces.concat()),
        1 => any::<String>(),
        1 => "[ -~\n]{0,80}",
    ]
}

/// Values a plan field may get: plausible ones, wrong types, YAML oddities.
fn yaml_value() -> impl Strategy<Value = String> {
    let plausible = prop::sample::select(&[
        "p",
        "add",
        "migration",
        "deploy",
        "backfill",
        "check",
        "expand",
        "contract",
        "add_loc",
        "drop_lat_lng",
        "posts",
        "true",
        "false",
        "null",
        "~",
        "0",
        "-1",
        "1",
        "64",
        "65",
        "18446744073709551616",
        "1e999",
        "100ms",
        "10s",
        "1h",
        "0ms",
        "25h",
        "-5ms",
        "1.5s",
        "[]",
        "{}",
        "[id]",
        "[a, b]",
        "\"\"",
        "''",
        "|\n    x",
        ">\n    x",
        "&a",
        "*a",
        "!!str x",
        "!!binary aGk=",
        "? x",
        "- x",
        "x: y",
        "'\\'",
        "\"\\u0000\"",
        "é",
        ".nan",
        ".inf",
        "loc = point(lng, lat)",
        "loc IS NULL",
        "SELECT true",
        "SELECT :gate_opened_at < now()",
        "true) OR (true",
        "x; DROP TABLE t",
        "/* x",
    ])
    .prop_map(str::to_string);
    prop_oneof![4 => plausible, 1 => "[ -~]{0,12}", 1 => sql().prop_map(|s| format!("{s:?}"))]
}

const PHASE_FIELDS: &[&str] = &[
    "id",
    "kind",
    "title",
    "instructions",
    "role",
    "migration",
    "reversible",
    "rollback_loses",
    "unknown_field",
];

const BACKFILL_FIELDS: &[&str] = &[
    "table",
    "key",
    "set",
    "where",
    "batch_time",
    "min_batch",
    "max_batch",
    "pause",
    "max_rows_per_second",
    "workers",
    "vacuum_every",
    "make_room",
    "bogus",
];

fn fields(names: &'static [&'static str]) -> impl Strategy<Value = Vec<(&'static str, String)>> {
    prop::collection::vec((prop::sample::select(names), yaml_value()), 0..8)
}

fn checks() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((yaml_value(), yaml_value()), 0..3)
}

/// One phase as YAML lines (indented under `phases:`).
fn phase() -> impl Strategy<Value = String> {
    (
        fields(PHASE_FIELDS),
        prop::option::of(fields(BACKFILL_FIELDS)),
        prop::option::of(checks()),
        prop::option::of(checks()),
    )
        .prop_map(|(fields, backfill, checks, guard)| {
            // The first key follows the list's dash; the others are indented.
            let mut lines: Vec<String> = Vec::new();
            for (key, value) in &fields {
                lines.push(format!("{key}: {value}"));
            }
            if let Some(backfill) = &backfill {
                lines.push("backfill:".to_string());
                for (key, value) in backfill {
                    lines.push(format!("  {key}: {value}"));
                }
            }
            for (name, list) in [("checks", &checks), ("guard", &guard)] {
                if let Some(list) = list {
                    lines.push(format!(
                        "{name}:{}",
                        if list.is_empty() { " []" } else { "" }
                    ));
                    for (check, sql) in list {
                        lines.push(format!("  - name: {check}"));
                        lines.push(format!("    sql: {sql}"));
                    }
                }
            }
            if lines.is_empty() {
                return "  - {}\n".to_string();
            }
            let mut text = String::new();
            for (i, line) in lines.iter().enumerate() {
                text.push_str(if i == 0 { "  - " } else { "    " });
                text.push_str(line);
                text.push('\n');
            }
            text
        })
}

fn plan_text() -> impl Strategy<Value = String> {
    let structured = (
        prop::option::of(yaml_value()),
        prop::option::of(yaml_value()),
        prop::collection::vec(phase(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(plan, description, phases, list_key)| {
            let mut text = String::new();
            if let Some(plan) = plan {
                text.push_str(&format!("plan: {plan}\n"));
            }
            if let Some(description) = description {
                text.push_str(&format!("description: {description}\n"));
            }
            if list_key {
                text.push_str("phases:\n");
            }
            for phase in phases {
                text.push_str(&phase);
            }
            text
        });
    prop_oneof![
        6 => structured,
        // A structured plan cut or spliced at a random place.
        2 => (plan_text_leaf(), any::<prop::sample::Index>(), "[ -~\t\n]{0,6}").prop_map(
            |(text, at, insert)| {
                let mut at = at.index(text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                format!("{}{insert}{}", &text[..at], &text[at..])
            }
        ),
        1 => any::<String>(),
    ]
}

/// A small well-formed plan, for splicing.
fn plan_text_leaf() -> impl Strategy<Value = String> {
    Just(
        "plan: p\nphases:\n  - id: add\n    kind: migration\n    role: expand\n    title: Add\n    \
         migration: add_loc\n  - id: fill\n    kind: backfill\n    title: Fill\n    backfill:\n      \
         table: posts\n      set: loc = point(lng, lat)\n      where: loc IS NULL\n      \
         batch_time: 100ms\n    checks:\n      - name: done\n        sql: SELECT true\n"
            .to_string(),
    )
}

/// The migrations plans in this file may refer to.
fn migrations() -> MigrationSet {
    let file = |name: &str, version: i64| {
        dbmate::parse_file(
            Path::new(&format!("migrations/{version}_{name}.sql")),
            "-- migrate:up\nSELECT 1;\n-- migrate:down\nSELECT 2;\n",
        )
        .unwrap()
    };
    MigrationSet {
        dir: "migrations".into(),
        files: vec![file("add_loc", 2), file("drop_lat_lng", 3)],
        ..MigrationSet::default()
    }
}

/// Load, validate and use a plan the way `check` and `advance` do.
fn exercise_plan(text: &str) {
    match LoadedPlan::parse(Path::new("plans/p.yaml"), text) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(plan) => {
            for problem in validate(&plan, &migrations()) {
                let _ = problem.to_string();
            }
            for index in 0..plan.spec.phases.len() {
                let _ = plan.phase_checksum(index);
            }
            let _ = plan.find_phase("1");
            let _ = plan.find_phase("18446744073709551617");
        }
    }
}

fn migration_text() -> impl Strategy<Value = String> {
    let header = prop::sample::select(&[
        "-- migrate:up\n",
        "-- migrate:down\n",
        "-- migrate:up transaction:false\n",
        "-- migrate:down transaction:false\n",
        "-- migrate:up transaction:maybe\n",
        "--migrate:up\n",
        "-- migrate:sideways\n",
        "",
    ]);
    prop_oneof![
        4 => prop::collection::vec((header, sql()), 0..4).prop_map(|sections| {
            sections
                .into_iter()
                .map(|(header, body)| format!("{header}{body}\n"))
                .collect::<String>()
        }),
        1 => any::<String>(),
    ]
}

fn migration_file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("20240101000000_add_loc.sql".to_string()),
        1 => "[0-9]{0,22}_[a-z_é-]{0,6}(\\.sql)?",
        1 => any::<String>().prop_map(|s| s.replace('/', "")),
    ]
}

/// Lines goose reads: its annotations, right and wrong, and SQL around them.
const GOOSE_PIECES: &[&str] = &[
    "-- +goose Up\n",
    "-- +goose Down\n",
    "-- +goose up\n",
    "-- +goose StatementBegin\n",
    "-- +goose StatementEnd\n",
    "-- +goose NO TRANSACTION\n",
    "-- +goose ENVSUB ON\n",
    "-- +goose ENVSUB OFF\n",
    "  -- +goose Up\n",
    "-- +goose Sideways\n",
    "--+goose Up +goose Down\n",
    "SELECT 1;\n",
    "SELECT 1\n",
    "SELECT '$HOME';\n",
    "CREATE FUNCTION f() RETURNS int AS $$\n",
    "BEGIN RETURN 1; END;\n",
    "$$ LANGUAGE plpgsql;\n",
    "-- comment;\n",
    "   \n",
    "\n",
    "\r\n",
];

/// Pieces of node-pg-migrate JavaScript files, well-formed and not.
const JS_PIECES: &[&str] = &[
    "exports.up = ",
    "exports.down = ",
    "exports.shorthands = undefined;\n",
    "module.exports.up = ",
    "module.exports = ",
    "export const up = ",
    "export async function down(pgm) ",
    "import { MigrationBuilder } from 'node-pg-migrate';\n",
    "(pgm) => ",
    "pgm => ",
    "async (pgm: MigrationBuilder): Promise<void> => ",
    "function (pgm, run) ",
    "{",
    "}",
    "(",
    ")",
    ";",
    "\n",
    "false",
    "pgm.sql(`SELECT 1`)",
    "pgm.sql(`CREATE TABLE t (a int);\n`)",
    "pgm.sql('SELECT \\'x\\'')",
    "pgm.sql(\"SELECT 1 -- c\")",
    "pgm.sql(`${x}`)",
    "pgm.sql(`$$`)",
    "pgm.sql(`'`)",
    "pgm.noTransaction()",
    "pgm.createTable('t', {})",
    "run()",
    "await ",
    "`",
    "'",
    "\"",
    "\\",
    "\\u{",
    "\\uD800",
    "\\x4",
    "/*",
    "*/",
    "//",
    "// nothing to undo\n",
    "/",
    ":",
    "<",
    ">",
    "=>",
    "=",
    ",",
    ".",
    "é",
    "\u{2028}",
    "#!",
    "require('x')",
];

fn goose_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(GOOSE_PIECES), 0..20)
            .prop_map(|pieces| pieces.concat()),
        1 => prop::collection::vec((prop::sample::select(GOOSE_PIECES), sql()), 0..6)
            .prop_map(|parts| parts.into_iter().map(|(a, b)| format!("{a}{b}\n")).collect()),
        1 => any::<String>(),
    ]
}

fn js_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(JS_PIECES), 0..30)
            .prop_map(|pieces| pieces.concat()),
        1 => any::<String>(),
        1 => "[ -~\n]{0,80}",
    ]
}

/// A node-pg-migrate `.sql` file: markers in their variants, and SQL.
fn node_pg_migrate_sql_text() -> impl Strategy<Value = String> {
    let marker = prop::sample::select(&[
        "-- Up Migration\n",
        "-- Down Migration\n",
        "--- up   migration\n",
        "  --\n down migration\n",
        "-- Upgrade\n",
        "\u{2028}-- up migration",
        "",
    ]);
    prop::collection::vec((marker, sql()), 0..4).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(marker, body)| format!("{marker}{body}\n"))
            .collect()
    })
}

/// What every reader promises of a migration it yields.
fn check_migration(
    migration: &crate::migration::Migration,
) -> std::result::Result<(), TestCaseError> {
    let sections = std::iter::once(&migration.up).chain(migration.down.as_ref());
    for section in sections {
        for statement in sql_text::split_statements(&section.sql) {
            prop_assert!(section.file_line(statement.offset) >= 1);
        }
        let _ = section.says_nothing_to_undo();
    }
    let _ = migration.id();
    Ok(())
}

/// Words of orch's command line: every command and flag, good and bad values.
const ARGV_WORDS: &[&str] = &[
    "migrate",
    "up",
    "down",
    "redo",
    "status",
    "create",
    "advance",
    "confirm",
    "rollback",
    "pause",
    "backfill",
    "checklist",
    "demo",
    "wait",
    "check",
    "completions",
    "man",
    "help",
    "posts-location",
    "p",
    "1",
    "add-loc",
    "--json",
    "--exit-code",
    "--by",
    "alice",
    "--note",
    "--force",
    "--lock-timeout",
    "--lock-timeout-max",
    "--lock-retries",
    "--statement-timeout",
    "--lock-wait",
    "--workers",
    "--batch-time",
    "--batch-pause",
    "--max-rate",
    "--vacuum-every",
    "--to",
    "--dry-run",
    "--allow-out-of-order",
    "--allow-changed",
    "--online",
    "--timeout",
    "--rows",
    "--writers",
    "--rate",
    "--naive",
    "--long-reader",
    "--dwell",
    "--dir",
    "--database-url",
    "--migrations-dir",
    "--plans-dir",
    "-v",
    "-vv",
    "--",
    "-",
    "0",
    "-1",
    "65",
    "500ms",
    "0ms",
    "1h",
    "25h",
    "10s",
    "1e3",
    "18446744073709551616",
    "9223372036854775808",
    "abc",
    "",
    "=",
    "--workers=0",
    "--lock-timeout=0",
    "bash",
    "zsh",
    "elvish",
    "é",
    "\u{0}",
    "--help",
    "--version",
    "-h",
    "-V",
];

fn argv() -> impl Strategy<Value = Vec<String>> {
    let word = prop_oneof![
        8 => prop::sample::select(ARGV_WORDS).prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop::collection::vec(word, 0..8)
        .prop_map(|words| std::iter::once("orch".to_string()).chain(words).collect())
}

/// Pieces of connection strings: URLs and key=value settings.
const CONNINFO_PIECES: &[&str] = &[
    "postgresql://",
    "postgres://",
    "postgres//",
    "mysql://",
    "u",
    ":",
    "pw",
    "@",
    "h",
    "[::1]",
    "[",
    "]",
    ",",
    "/",
    "db",
    "?",
    "&",
    "=",
    "%",
    "%2F",
    "%zz",
    "%C3",
    "port",
    "99999",
    "5432",
    "65536",
    "-1",
    "connect_timeout",
    "abc",
    "sslmode",
    "verify-full",
    "host",
    "hostaddr",
    "user",
    "dbname",
    "password",
    "options",
    "bogus",
    " ",
    "'",
    "\\",
    "target_session_attrs",
    "load_balance_hosts",
    "random",
    "keepalives",
    "channel_binding",
    "é",
];

/// orch.toml: its real keys and tables with values of every type, and
/// random text.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "migrations_dir",
        "plans_dir",
        "format",
        "lock_timeout",
        "lock_retries",
        "statement_timeout",
        "urls",
        "url",
        "databases",
        "colour",
    ]);
    let value = prop::sample::select(vec![
        "\"db/m\"",
        "\"\"",
        "\"500ms\"",
        "\"0\"",
        "\"goose\"",
        "-1",
        "10",
        "99999999999",
        "true",
        "[\"${A}\", \"b\"]",
        "[]",
        "{ x = 1 }",
        "\"${\"",
        "'''x'''",
        "1979-05-27",
    ]);
    let header = prop::sample::select(vec![
        "",
        "[targets.a]\n",
        "[targets]\n",
        "[targets.b.c]\n",
        "[[targets]]\n",
        "[x]\n",
    ]);
    let line = (header, key, value).prop_map(|(h, k, v)| format!("{h}{k} = {v}\n"));
    prop_oneof![
        prop::collection::vec(line, 0..8).prop_map(|lines| lines.concat()),
        ".{0,200}",
    ]
}

fn conninfo() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(CONNINFO_PIECES), 0..12)
            .prop_map(|pieces| pieces.concat()),
        1 => any::<String>(),
    ]
}

/// Durations as the command line can give them: small, huge, the largest.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..100_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        Just(Duration::MAX),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_batch_sizer(
        target_ms in 10u64..=10_000,
        min in any::<u64>(),
        max in any::<u64>(),
        batches in prop::collection::vec((any::<i64>(), duration(), 0u8..3), 0..20),
    ) {
        // As the plan gives them (u64, validated min <= max only).
        let (min, max) = (min.min(max) as i64, max as i64);
        let mut sizer = BatchSizer::new(Duration::from_millis(target_ms), min, max);
        for (rows, took, event) in batches {
            match event {
                0 => sizer.observe(rows, took),
                1 => sizer.split(),
                _ => sizer.halve(),
            }
            prop_assert!(sizer.size() >= 1);
        }
    }

    #[test]
    fn fuzz_lock_retry_policy(
        lock_timeout in duration(),
        lock_timeout_max in duration(),
        retries in any::<u32>(),
        attempt in any::<u32>(),
        unit in 0.0f64..1.0,
    ) {
        let policy = LockRetryPolicy {
            lock_timeout,
            lock_timeout_max,
            retries,
            ..LockRetryPolicy::default()
        };
        let _ = policy.scheduled_timeout(attempt);
        let _ = policy.next_timeout(attempt, None, Some(lock_timeout));
        let _ = policy.backoff(attempt, unit);
    }

    #[test]
    fn fuzz_plan_loader(text in plan_text()) {
        exercise_plan(&text);
    }

    #[test]
    fn fuzz_plan_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(text) = crate::text_file::decode(bytes) {
            exercise_plan(&text);
        }
    }

    #[test]
    fn fuzz_migration_file(name in migration_file_name(), text in migration_text()) {
        let path = Path::new("migrations").join(name);
        match dbmate::parse_file(&path, &text) {
            Ok(migration) => {
                let _ = migration.up;
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn fuzz_goose_file(name in migration_file_name(), text in goose_text()) {
        let path = Path::new("migrations").join(name);
        match goose::parse_file(&path, &text) {
            Ok(migration) => check_migration(&migration)?,
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn fuzz_node_pg_migrate_file(
        stem in prop_oneof![
            4 => Just("1700000000000_add-posts".to_string()),
            1 => "[0-9]{0,20}_?[a-z-]{0,4}",
        ],
        extension in prop::sample::select(&["js", "cjs", "ts", "sql", "txt", ""]),
        js in js_text(),
        sql in node_pg_migrate_sql_text(),
    ) {
        let path = Path::new("migrations").join(format!("{stem}.{extension}"));
        let text = if extension == "sql" { sql } else { js };
        match node_pg_migrate::parse_file(&path, &text) {
            Ok(migration) => check_migration(&migration)?,
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn fuzz_sql_text(text in sql(), position in 0usize..200) {
        for statement in sql_text::split_statements(&text) {
            prop_assert_eq!(
                &text[statement.offset..statement.offset + statement.text.len()],
                statement.text
            );
            prop_assert!(statement.line >= 1);
        }
        let _ = sql_text::fragment_problem(&text, Fragment::Expression);
        let _ = sql_text::fragment_problem(&text, Fragment::Assignments);
        let _ = sql_text::tokens(&text);
        let _ = sql_text::leading_words(&text, 3);
        for placeholder in sql_text::placeholders(&text) {
            prop_assert!(placeholder.start < placeholder.end && placeholder.end <= text.len());
        }
        let (bound, names) = sql_text::bind_placeholders(&text);
        prop_assert!(names.len() <= bound.len());
        let _ = sql_text::line_of_offset(&text, position);
        if let Some(offset) = sql_text::char_to_byte_offset(&text, position) {
            prop_assert!(text.is_char_boundary(offset));
        }
    }

    #[test]
    fn fuzz_command_line(args in argv()) {
        match Cli::try_parse_from(&args) {
            Ok(cli) => {
                let _ = format!("{cli:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    #[test]
    fn fuzz_connection_string(text in conninfo()) {
        match ConnectionSettings::resolve_with(Some(&text), |_| None) {
            Ok(settings) => {
                let _ = settings.describe();
                let _ = settings.targets();
                let _ = ConnectionSettings::from_connection_string(&settings.to_connection_string());
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    #[test]
    fn fuzz_config_file(text in config_text()) {
        match orch_config::Config::parse(Path::new("orch.toml"), &text) {
            Ok(config) => {
                let env = Environment::fixed(&[("A", "postgres://h/db")], &[]);
                for group in config.targets.values() {
                    for url in group.urls.iter().chain(&group.url) {
                        prop_assert!(url.line >= 1 && url.line <= text.lines().count().max(1));
                        let _ = env.expand(&url.value);
                    }
                }
            }
            Err(e) => {
                let shown = e.to_string();
                prop_assert!(shown.starts_with("orch.toml:"), "{}", shown);
            }
        }
    }

    #[test]
    fn fuzz_dotenv(text in ".{0,200}") {
        if let Err((line, message)) = orch_config::dotenv::parse(&text) {
            prop_assert!(line >= 1 && line <= text.lines().count());
            prop_assert!(!message.is_empty());
        }
    }
}
