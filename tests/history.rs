//! Taking over a history (`orch migrate adopt` after dbmate itself ran,
//! `orch migrate baseline`) and a half-applied migration (`dirty`, and
//! `orch migrate resolve`), end to end. Each refusal is checked to change
//! nothing: the application's schema and orch's table stay as they were.
//! The other tools' tables are covered one by one, as each tool writes
//! them, in src/engine/adopt/tools.rs.

use crate::support::tools::{npm_program, schema, url};
use crate::support::{SMALL_PLAN, Session};

const A: &str = "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n";
const B: &str = "-- migrate:up\nCREATE TABLE b (id int);\n-- migrate:down\nDROP TABLE b;\n";
const C: &str = "-- migrate:up\nCREATE TABLE c (id int);\n-- migrate:down\nDROP TABLE c;\n";

/// Rows as text cells.
type Rows = Vec<Vec<Option<String>>>;

/// What a refusal must leave as it was: the schema (without orch's and the
/// tools' tables), orch's rows, and dbmate's.
fn everything(s: &Session) -> (String, Rows, Rows) {
    let orch = match s
        .value("SELECT to_regclass('orch.migrations') IS NOT NULL")
        .as_deref()
    {
        Some("t") => s.query("SELECT to_jsonb(m)::text FROM orch.migrations m ORDER BY version"),
        _ => Vec::new(),
    };
    let dbmate = match s
        .value("SELECT to_regclass('schema_migrations') IS NOT NULL")
        .as_deref()
    {
        Some("t") => s.query("SELECT to_jsonb(m)::text FROM schema_migrations m ORDER BY 1"),
        _ => Vec::new(),
    };
    (schema(&s.db), orch, dbmate)
}

/// Run orch, expect `code` and `text` on stderr, and that nothing changed.
#[track_caller]
fn refused(s: &Session, args: &[&str], code: i32, text: &str) {
    let before = everything(s);
    s.orch(args).code(code).stderr_has(text);
    assert_eq!(everything(s), before, "orch {args:?} changed something");
}

/// The migrations dbmate applied, run by dbmate itself when npm is there,
/// else its table as its source writes it (with the same rows).
fn dbmate_ran(s: &Session) {
    match npm_program(&["dbmate"], "dbmate") {
        Ok(dbmate) => {
            let output = std::process::Command::new(dbmate)
                .args(["--url", &url(&s.db), "-d"])
                .arg(s.path("migrations"))
                .args(["--no-dump-schema", "migrate"])
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "dbmate migrate failed:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Err(why) => {
            eprintln!(
                "skipped: running dbmate itself ({why}); its table is made as its source makes it"
            );
            s.execute(
                "create table if not exists public.schema_migrations (version varchar(255) primary key);
                 CREATE TABLE a (id int); insert into public.schema_migrations (version) values ('1');
                 CREATE TABLE b (id int); insert into public.schema_migrations (version) values ('2');",
            );
        }
    }
}

#[test]
fn adopt_what_dbmate_applied_then_up_runs_only_the_new_migration() {
    let s = Session::new();
    s.migration("1_a.sql", A).migration("2_b.sql", B);
    dbmate_ran(&s);
    assert!(s.has_table("a") && s.has_table("b"));

    s.orch(&["migrate", "adopt"])
        .success()
        .stdout_has("adopted 2 migrations from dbmate's public.schema_migrations, recorded as applied without running them:")
        .stdout_has("  1_a\n  2_b\n")
        .stdout_has("public.schema_migrations was left as it is: dbmate still reads its own history, so the team can switch back to dbmate");
    assert_eq!(s.applied(), ["1_a", "2_b"]);
    assert_eq!(
        s.query("SELECT DISTINCT applied_by, origin, attempts::text FROM orch.migrations"),
        [[
            Some("adopted from dbmate by tester".to_string()),
            Some("adopted".to_string()),
            Some("0".to_string())
        ]]
    );
    assert_eq!(
        s.value("SELECT count(*) FROM schema_migrations").as_deref(),
        Some("2"),
        "dbmate's table is left alone"
    );
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("applied  ")
        .stdout_has("adopted from dbmate by tester");
    let status = s.orch(&["migrate", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json[0]["state"], "applied");
    assert_eq!(json[0]["applied"]["origin"], "adopted");

    // Again: orch agrees already, nothing changes.
    let before = everything(&s);
    s.orch(&["migrate", "adopt", "--from", "dbmate"])
        .success()
        .stdout_has("nothing to adopt: orch already records all 2 migrations dbmate applied");
    assert_eq!(everything(&s), before);

    s.migration("3_c.sql", C);
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 3_c")
        .stdout_lacks("1_a")
        .stdout_lacks("2_b");
    assert_eq!(s.applied(), ["1_a", "2_b", "3_c"]);

    // Now orch's history goes beyond dbmate's: adopting again is refused.
    refused(
        &s,
        &["migrate", "adopt"],
        4,
        "orch records 3_c as applied (on ",
    );
}

#[test]
fn adopt_refusals_change_nothing() {
    let s = Session::new();
    s.migration("1_a.sql", A).migration("2_b.sql", B);
    refused(
        &s,
        &["migrate", "adopt"],
        4,
        "nothing to adopt: this database has no other tool's tracking table (looked for dbmate's schema_migrations, diesel's __diesel_schema_migrations, golang-migrate's schema_migrations, goose's goose_db_version, sqlx's _sqlx_migrations, node-pg-migrate's pgmigrations",
    );
    assert_eq!(
        s.value("SELECT to_regnamespace('orch') IS NULL").as_deref(),
        Some("t")
    );
    s.execute(
        "create table if not exists public.schema_migrations (version varchar(255) primary key);
         insert into public.schema_migrations (version) values ('1'), ('3');",
    );
    refused(
        &s,
        &["migrate", "adopt"],
        4,
        "dbmate's table public.schema_migrations records \"3\" as applied, but migrations has no migration dbmate calls so",
    );
    refused(
        &s,
        &["migrate", "adopt", "--from", "goose"],
        4,
        "this database has no goose tracking table",
    );
    refused(
        &s,
        &["migrate", "adopt", "--from", "golang-migrate"],
        4,
        "(the public.schema_migrations here is dbmate's)",
    );
    s.execute("DELETE FROM schema_migrations WHERE version = '3'");
    s.execute(
        "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id));",
    );
    refused(
        &s,
        &["migrate", "adopt"],
        2,
        "the tracking tables of more than one tool: dbmate's public.schema_migrations and goose's public.goose_db_version; say whose history to adopt with --from TOOL",
    );
    refused(
        &s,
        &["migrate", "adopt", "--from", "goose"],
        2,
        "public.goose_db_version is goose's tracking table, but migrations is read as a dbmate folder",
    );
    // orch's own history disagrees: it applied 2_b, which dbmate did not.
    s.orch(&["migrate", "up"]).success();
    refused(
        &s,
        &["migrate", "adopt", "--from", "dbmate"],
        4,
        "orch records 2_b as applied (on ",
    );
}

#[test]
fn baseline_marks_up_to_a_version_once_and_refuses_what_it_cannot_know() {
    let s = Session::new();
    s.migration("1_a.sql", A)
        .migration("2_b.sql", B)
        .migration("3_c.sql", C);
    s.execute("CREATE TABLE a (id int); CREATE TABLE b (id int);");
    refused(
        &s,
        &["migrate", "baseline", "7"],
        2,
        "baseline 7: there is no migration with that version in migrations",
    );
    s.orch(&["migrate", "baseline", "2"]).success().stdout_has(
        "marked 2 migrations as applied without running them (baseline 2):\n  1_a\n  2_b\n",
    );
    assert_eq!(s.applied(), ["1_a", "2_b"]);
    assert_eq!(
        s.value(
            "SELECT string_agg(DISTINCT applied_by || ' ' || origin, ',') FROM orch.migrations"
        )
        .as_deref(),
        Some("baseline by tester baseline")
    );
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("baseline by tester");
    let before = everything(&s);
    s.orch(&["migrate", "baseline", "2"])
        .success()
        .stdout_has("nothing to mark: orch already records all 2 migrations up to 2 as applied");
    assert_eq!(everything(&s), before);
    // Only part of what is up to 3 is recorded: orch tracks this database.
    refused(
        &s,
        &["migrate", "baseline", "3"],
        4,
        "orch already tracks this database: it records 2 of the 3 migrations up to 3 as applied, but not 3_c",
    );
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 3_c");
    refused(
        &s,
        &["migrate", "baseline", "1"],
        4,
        "orch records 2_b as applied (on ",
    );
}

#[test]
fn baseline_refuses_a_plans_migration_naming_the_plan() {
    let s = Session::new();
    s.migration("1_a.sql", A)
        .migration(
            "2_create_t.sql",
            "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n",
        )
        .plan("small.yaml", SMALL_PLAN);
    refused(
        &s,
        &["migrate", "baseline", "2"],
        4,
        "2_create_t belongs to plan small, phase 1 (add-t)",
    );
    s.orch(&["migrate", "baseline", "2"]).code(4).stderr_has(
        "next: `orch migrate baseline 1` (the migration before it), then `orch advance small`",
    );
    s.orch(&["migrate", "baseline", "1"]).success();
    s.orch(&["advance", "small"]).success();
}

/// A `transaction:false` section whose second statement fails.
const HALF: &str = "-- migrate:up transaction:false
CREATE TABLE half (id int);
CREATE INDEX CONCURRENTLY half_nope ON nope (id);
CREATE INDEX CONCURRENTLY half_id ON half (id);

-- migrate:down transaction:false
DROP INDEX CONCURRENTLY IF EXISTS half_id;
DROP TABLE half;
";

#[test]
fn a_half_applied_migration_is_dirty_until_resolved() {
    let s = Session::new();
    s.migration("1_a.sql", A).migration("2_half.sql", HALF);
    s.orch(&["migrate", "up"])
        .code(1)
        .stdout_has("applied 1_a")
        .stderr_has("migrations/2_half.sql:3: migration 2_half (up) failed: relation \"nope\" does not exist")
        .stderr_has("its first 1 statement(s) did run and stay applied; the migration is recorded as dirty")
        .stderr_has("`orch migrate resolve 2 --applied` or `orch migrate resolve 2 --rolled-back`");
    assert!(s.has_table("half"), "the first statement stays applied");
    assert_eq!(
        s.value("SELECT state || ' ' || (dirty->>'file') || ':' || (dirty->>'line') || ' ' || (dirty->>'statement') || '/' || (dirty->>'statements') || ' ' || (dirty->>'sqlstate') FROM orch.migrations WHERE version = 2")
            .as_deref(),
        Some("dirty migrations/2_half.sql:3 2/3 42P01")
    );
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("2        half  dirty")
        .stdout_has("stopped at migrations/2_half.sql:3 (statement 2 of 3, up): relation \"nope\" does not exist (SQLSTATE 42P01); fix by hand, then `orch migrate resolve 2 --applied` or `--rolled-back`")
        .stdout_has("2 migrations, 0 pending, 1 dirty");
    let status = s.orch(&["migrate", "status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json[1]["state"], "dirty");
    assert_eq!(json[1]["applied"]["dirty"]["file"], "migrations/2_half.sql");
    assert_eq!(json[1]["applied"]["dirty"]["line"], 3);
    s.orch(&["migrate", "status", "--exit-code"])
        .code(9)
        .stderr_has("1 dirty (stopped half-way; `orch migrate resolve`)");

    // Nothing runs until it is resolved.
    s.migration("3_c.sql", C);
    for args in [
        &["migrate", "up"][..],
        &["migrate", "down"],
        &["migrate", "redo"],
        &["migrate", "up", "--dry-run"],
        &["migrate", "baseline", "1"],
    ] {
        refused(
            &s,
            args,
            4,
            "migration 2_half is dirty: its up section runs outside a transaction and stopped half-way at migrations/2_half.sql:3 (statement 2 of 3; the 1 before it ran and stay applied): relation \"nope\" does not exist",
        );
    }
    s.orch(&["migrate", "up"]).code(4).stderr_has(
        "next: `orch migrate resolve 2 --applied` (all of it is in the database now) or `orch migrate resolve 2 --rolled-back` (none of it is left)",
    );

    // The operator undoes it by hand, and says so.
    s.execute("DROP TABLE half");
    s.orch(&["migrate", "resolve", "2", "--rolled-back"])
        .success()
        .stdout_has("resolved 2_half: rolled back, its record removed");
    assert_eq!(s.applied(), ["1_a"]);
    s.orch(&["migrate", "resolve", "2", "--rolled-back"])
        .success()
        .stdout_has("2_half is not recorded (not applied); nothing to resolve");

    // Fixed file, run again: applied. Breaking it once more, then
    // finishing by hand: resolved as applied.
    s.migration("2_half.sql", &HALF.replace(" ON nope ", " ON half "));
    s.orch(&["migrate", "up", "1"])
        .success()
        .stdout_has("applied 2_half");
    s.orch(&["migrate", "down"])
        .success()
        .stdout_has("reverted 2_half");
    s.migration("2_half.sql", HALF);
    s.orch(&["migrate", "up"]).code(1);
    s.execute("CREATE INDEX half_id ON half (id)");
    s.orch(&["migrate", "resolve", "2", "--applied"])
        .success()
        .stdout_has("resolved 2_half: recorded as applied");
    assert_eq!(
        s.value("SELECT state || ' ' || origin || ' ' || applied_by || ' ' || (dirty IS NULL) FROM orch.migrations WHERE version = 2")
            .as_deref(),
        Some("applied resolved resolved by tester true")
    );
    s.orch(&["migrate", "resolve", "2", "--applied"])
        .success()
        .stdout_has("2_half is applied and not dirty; nothing to resolve");
    refused(
        &s,
        &["migrate", "resolve", "2", "--rolled-back"],
        4,
        "2_half is applied, not dirty",
    );
    refused(
        &s,
        &["migrate", "resolve", "3", "--applied"],
        4,
        "3_c is not recorded, so it is not dirty",
    );
    refused(
        &s,
        &["migrate", "resolve", "9", "--applied"],
        2,
        "no migration with that version",
    );
    refused(
        &s,
        &["migrate", "resolve", "2"],
        2,
        "<--applied|--rolled-back|--file-removed|--accept-changed>",
    );
    s.orch(&["migrate", "up"])
        .success()
        .stdout_has("applied 3_c");
}

#[test]
fn a_first_statement_that_fails_changed_nothing_and_is_not_dirty() {
    let s = Session::new();
    s.migration(
        "1_idx.sql",
        "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON nope (id);\nCREATE TABLE later ();\n",
    );
    s.orch(&["migrate", "up"])
        .code(1)
        .stderr_has("relation \"nope\" does not exist");
    assert!(s.applied().is_empty());
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("pending");
}

#[test]
fn a_down_section_stopped_half_way_leaves_the_applied_migration_dirty() {
    let s = Session::new();
    s.migration(
        "1_two.sql",
        "-- migrate:up\nCREATE TABLE one (); CREATE TABLE two ();\n-- migrate:down transaction:false\nDROP TABLE two;\nDROP TABLE nope;\nDROP TABLE one;\n",
    );
    s.orch(&["migrate", "up"]).success();
    s.orch(&["migrate", "down"])
        .code(1)
        .stderr_has("migrations/1_two.sql:5: migration 1_two (down) failed")
        .stderr_has("recorded as dirty");
    assert_eq!(
        s.value(
            "SELECT state || ' ' || (dirty->>'direction') FROM orch.migrations WHERE version = 1"
        )
        .as_deref(),
        Some("dirty down")
    );
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("(statement 2 of 3, down)");
    s.execute("DROP TABLE one");
    s.orch(&["migrate", "resolve", "1", "--rolled-back"])
        .success();
    assert!(s.applied().is_empty());
}

#[test]
fn a_plan_phase_stopped_half_way_shows_the_dirty_migration_and_resumes_once_resolved() {
    let s = Session::new();
    s.migration(
        "1_create_t.sql",
        "-- migrate:up transaction:false\nCREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY t_x ON t (nope);\n-- migrate:down\nDROP TABLE t;\n",
    )
    .plan("small.yaml", SMALL_PLAN);
    s.orch(&["advance", "small"])
        .code(1)
        .stderr_has("recorded as dirty");
    s.orch(&["status", "small"])
        .success()
        .stdout_has("failed")
        .stdout_has("the migration is recorded as dirty")
        .stdout_has("waiting on: migration 1_create_t stopped half-way at migrations/1_create_t.sql:3 (statement 2 of 2, up) and is dirty: fix the database by hand, then `orch migrate resolve 1 --applied`");
    s.orch(&["status", "--exit-code"])
        .code(9)
        .stderr_has("small (migration 1_create_t is dirty)");
    let status = s.orch(&["status", "small", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(
        json[0]["phases"][0]["dirty_migration"]["dirty"]["line"], 3,
        "{json}"
    );
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("dirty")
        .stdout_has("(statement 2 of 2, up)")
        .stdout_has("plan small, phase 1 (add-t)");
    assert_eq!(
        s.value("SELECT plan || ' ' || phase FROM orch.migrations WHERE state = 'dirty'")
            .as_deref(),
        Some("small add-t")
    );
    refused(
        &s,
        &["advance", "small"],
        4,
        "refusing to run phase 1 (add-t) of plan small: migration 1_create_t is dirty",
    );
    refused(
        &s,
        &["rollback", "small"],
        4,
        "refusing to roll back phase 1 (add-t) of plan small: migration 1_create_t is dirty",
    );
    // Finished by hand: the phase is done without running anything again.
    s.execute("ALTER TABLE t ADD COLUMN nope int; CREATE INDEX t_x ON t (nope)");
    s.orch(&["migrate", "resolve", "1", "--applied"])
        .success()
        .stdout_has("plan small's phase add-t failed with it: `orch advance small` records the phase done without running anything");
    s.orch(&["advance", "small"])
        .success()
        .stdout_has("1_create_t was resolved as applied by hand (resolved by tester");
    s.orch(&["confirm", "small", "--by", "alice"]).success();
}

#[test]
fn a_schema_2_database_is_read_as_it_is_and_upgraded_by_the_next_write() {
    // Guards against a database of the previous orch (schema 2, without
    // state, origin and dirty on orch.migrations) breaking migrate status
    // or the next migration.
    let s = Session::new();
    s.migration("1_a.sql", A);
    s.orch(&["migrate", "up"]).success();
    s.execute(
        "ALTER TABLE orch.migrations DROP COLUMN state, DROP COLUMN origin, DROP COLUMN dirty;
         UPDATE orch.meta SET schema_version = 2",
    );
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("1        a     applied");
    assert_eq!(
        s.value("SELECT schema_version FROM orch.meta").as_deref(),
        Some("2"),
        "status does not write"
    );
    s.migration("2_half.sql", HALF);
    s.orch(&["migrate", "up"])
        .code(1)
        .stderr_has("recorded as dirty");
    assert_eq!(
        s.value("SELECT schema_version FROM orch.meta").as_deref(),
        Some("7")
    );
    assert_eq!(
        s.query("SELECT version::text, state, origin FROM orch.migrations ORDER BY version"),
        [
            ["1", "applied", "ran"].map(|v| Some(v.to_string())),
            ["2", "dirty", "ran"].map(|v| Some(v.to_string())),
        ]
    );
}

#[test]
fn a_plan_rollback_stopped_half_way_is_recorded_once_resolved() {
    let s = Session::new();
    s.migration(
        "1_create_t.sql",
        "-- migrate:up\nCREATE TABLE t (a int); CREATE TABLE u ();\n-- migrate:down transaction:false\nDROP TABLE u;\nDROP TABLE nope;\nDROP TABLE t;\n",
    )
    .plan("small.yaml", SMALL_PLAN);
    s.orch(&["advance", "small"]).success();
    s.orch(&["rollback", "small"])
        .code(1)
        .stderr_has("migration 1_create_t (down) failed")
        .stderr_has("recorded as dirty");
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("(statement 2 of 3, down)");
    refused(
        &s,
        &["rollback", "small", "add-t"],
        4,
        "migration 1_create_t is dirty: its down section",
    );
    s.execute("DROP TABLE t");
    s.orch(&["migrate", "resolve", "1", "--rolled-back"])
        .success()
        .stdout_has("`orch rollback small add-t` records it rolled back without running anything");
    s.orch(&["rollback", "small", "add-t"])
        .success()
        .stdout_has(
            "1_create_t was already reverted (resolved as rolled back by hand); nothing ran",
        );
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'add-t'")
            .as_deref(),
        Some("pending")
    );
    s.execute("CREATE TABLE nope ()");
    s.orch(&["advance", "small"]).success();
}

#[test]
fn hundreds_of_migrations_are_summed_up() {
    let s = Session::new();
    for v in 1..=120 {
        s.migration(&format!("{v}_m{v}.sql"), "-- migrate:up\nSELECT 1;\n");
    }
    s.orch(&["migrate", "baseline", "120"])
        .success()
        .stdout_has("marked 120 migrations as applied without running them (baseline 120):\n  1_m1\n  2_m2\n  3_m3\n  4_m4\n  5_m5\n  ... 110 more ...\n  116_m116\n");
    assert_eq!(s.applied().len(), 120);
}
