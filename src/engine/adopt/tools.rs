//! `orch migrate adopt` against each tool's tracking table as the tool
//! itself creates and fills it (the DDL and the inserts of its own source,
//! named in `store/tracking/`), on a real PostgreSQL; node-pg-migrate's also
//! by running the tool itself when npm is there. The folders are
//! dbmate-format files whose `tool_id` is what the tool calls each
//! migration, standing in for each tool's own folder reader (which sets
//! it): the matching is the same when the readers plug in.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::engine::lock_retry::LockRetryPolicy;
use crate::engine::migrator::{MigrateOptions, UpTarget};
use crate::events::Silent;
use crate::store::test_db::{TestDb, programs};

fn migration(version: i64, name: &str, tool_id: &str, sql: &str) -> Migration {
    let mut m = crate::migration::source::dbmate::parse_file(
        Path::new(&format!("migrations/{version}_{name}.sql")),
        &format!("-- migrate:up\n{sql}\n-- migrate:down\nSELECT 1;\n"),
    )
    .unwrap();
    m.tool_id = tool_id.to_string();
    m
}

fn folder(tool: Format, files: Vec<Migration>) -> MigrationSet {
    MigrationSet {
        dir: "migrations".into(),
        format: tool,
        files,
        notes: Vec::new(),
    }
}

fn options() -> MigrateOptions {
    MigrateOptions {
        policy: LockRetryPolicy::default(),
        dry_run: false,
        allow_out_of_order: false,
        allow_changed: false,
        actor: "tester".into(),
        lock_wait: Duration::from_secs(10),
        cancel_orphans: false,
    }
}

async fn adopt(db: &TestDb, set: &MigrationSet, from: Option<Format>) -> Result<Adopted> {
    let (store, owners, options) = (db.store().await, Owners::new(), options());
    let migrator = Migrator {
        store: &store,
        set,
        owners: &owners,
        options: &options,
        reporter: &Silent,
    };
    migrator.adopt(from).await
}

async fn up(db: &TestDb, set: &MigrationSet) -> Result<Vec<String>> {
    let (store, owners, options) = (db.store().await, Owners::new(), options());
    let migrator = Migrator {
        store: &store,
        set,
        owners: &owners,
        options: &options,
        reporter: &Silent,
    };
    Ok(migrator.up(UpTarget::All).await?.applied)
}

/// One tool's history.
struct Case {
    tool: Format,
    /// The table as the tool creates it, and its rows as the tool writes them.
    setup: &'static str,
    /// The folder: version and what the tool calls it.
    files: &'static [(i64, &'static str)],
    /// The versions the tool's table says are applied.
    applied: &'static [i64],
    /// When the tool applied them, where it keeps that (rows set it in the
    /// past, so it is told from now).
    kept_time: Option<&'static str>,
}

/// Adopt the case's history, again (nothing new), then add a migration:
/// `up` runs it and what the tool had not applied, nothing the tool did.
async fn adopt_then_up(case: Case) {
    let db = TestDb::new().await;
    db.execute(case.setup).await;
    let table = tracking::default_table(case.tool);
    let tool_rows = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1");
    let before = db.column(&tool_rows).await;
    let mut files: Vec<Migration> = case
        .files
        .iter()
        .map(|&(v, id)| migration(v, &format!("m{v}"), id, &format!("CREATE TABLE t{v} ();")))
        .collect();
    let set = folder(case.tool, files.clone());

    let adopted = adopt(&db, &set, None).await.unwrap();
    let expected: Vec<String> = case.applied.iter().map(|v| format!("{v}_m{v}")).collect();
    assert_eq!(adopted.recorded, expected, "{}", case.tool);
    assert_eq!(adopted.table, format!("public.{table}"));
    let rows = db
        .column("SELECT version || ' ' || applied_by || ' ' || origin || ' ' || state FROM orch.migrations ORDER BY version")
        .await;
    let by = format!("adopted from {} by tester adopted applied", case.tool);
    let expected_rows: Vec<String> = case.applied.iter().map(|v| format!("{v} {by}")).collect();
    assert_eq!(rows, expected_rows, "{}", case.tool);
    if let Some(at) = case.kept_time {
        let when = db
            .column(&format!(
                "SELECT bool_and(applied_at = '{at}'::timestamptz)::text FROM orch.migrations"
            ))
            .await;
        assert_eq!(when, ["true"], "{}: the tool's time is kept", case.tool);
    }
    assert_eq!(
        db.column(&tool_rows).await,
        before,
        "{}'s table is left alone",
        case.tool
    );

    let again = adopt(&db, &set, Some(case.tool)).await.unwrap();
    assert!(again.recorded.is_empty(), "{}", case.tool);
    assert_eq!(again.already, case.applied.len());

    files.push(migration(
        99_999_999_999_999,
        "added",
        "99999999999999",
        "CREATE TABLE added_by_orch ();",
    ));
    let set = folder(case.tool, files);
    // The tool's migrations do not run again; the others (pending for the
    // tool too) and the new one do.
    let pending: Vec<i64> = case
        .files
        .iter()
        .map(|&(v, _)| v)
        .filter(|v| !case.applied.contains(v))
        .collect();
    let mut expected: Vec<String> = pending.iter().map(|v| format!("{v}_m{v}")).collect();
    expected.push("99999999999999_added".to_string());
    assert_eq!(up(&db, &set).await.unwrap(), expected, "{}", case.tool);
    let mut created: Vec<String> = pending.iter().map(|v| format!("t{v}")).collect();
    created.push("added_by_orch".to_string());
    created.sort();
    let ran = db
        .column("SELECT relname::text FROM pg_class WHERE relname = 'added_by_orch' OR relname ~ '^t[0-9]+$' ORDER BY 1")
        .await;
    assert_eq!(ran, created, "{}", case.tool);
}

#[tokio::test(flavor = "multi_thread")]
async fn dbmate() {
    // amacneil/dbmate, pkg/driver/postgres/postgres.go: CreateMigrationsTable, InsertMigration.
    adopt_then_up(Case {
        tool: Format::Dbmate,
        setup:
            "create table if not exists public.schema_migrations (version varchar(255) primary key);
                insert into public.schema_migrations (version) values ('20240101000000');
                insert into public.schema_migrations (version) values ('20240102000000');",
        files: &[
            (20240101000000, "20240101000000"),
            (20240102000000, "20240102000000"),
            (20240103000000, "20240103000000"),
        ],
        applied: &[20240101000000, 20240102000000],
        kept_time: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn diesel() {
    // diesel-rs/diesel, diesel/src/migration/setup_migration_table.sql;
    // the harness inserts only the version (run_on: its default, here a
    // time in the past). 00000000000000 is `diesel setup`'s own migration.
    adopt_then_up(Case {
        tool: Format::Diesel,
        setup: "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
                       version VARCHAR(50) PRIMARY KEY NOT NULL,
                       run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
                );
                ALTER TABLE __diesel_schema_migrations ALTER COLUMN run_on SET DEFAULT '2023-05-06 07:08:09';
                INSERT INTO __diesel_schema_migrations (version) VALUES ('00000000000000');
                INSERT INTO __diesel_schema_migrations (version) VALUES ('20240101000000');
                ALTER TABLE __diesel_schema_migrations ALTER COLUMN run_on SET DEFAULT CURRENT_TIMESTAMP;",
        files: &[
            (0, "00000000000000"),
            (20240101000000, "20240101000000"),
            (20240102000000, "20240102000000"),
        ],
        applied: &[0, 20240101000000],
        kept_time: Some("2023-05-06 07:08:09"),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn golang_migrate() {
    // golang-migrate/migrate, database/postgres/postgres.go: ensureVersionTable, SetVersion.
    adopt_then_up(Case {
        tool: Format::GolangMigrate,
        setup: r#"CREATE TABLE IF NOT EXISTS "public"."schema_migrations" (version bigint not null primary key, dirty boolean not null);
                TRUNCATE "public"."schema_migrations";
                INSERT INTO "public"."schema_migrations" (version, dirty) VALUES (2, false);"#,
        files: &[(1, "1"), (2, "2"), (3, "3")],
        applied: &[1, 2],
        kept_time: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn goose() {
    // pressly/goose, database/dialect/postgres.go: CreateTable, InsertVersion
    // (version 0 is the row goose writes when it creates the table).
    adopt_then_up(Case {
        tool: Format::Goose,
        setup: "CREATE TABLE goose_db_version (
                    id integer PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,
                    version_id bigint NOT NULL,
                    is_applied boolean NOT NULL,
                    tstamp timestamp NOT NULL DEFAULT now()
                );
                ALTER TABLE goose_db_version ALTER COLUMN tstamp SET DEFAULT '2023-05-06 07:08:09';
                INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true);
                INSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true);
                INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, true);
                ALTER TABLE goose_db_version ALTER COLUMN tstamp SET DEFAULT now();",
        files: &[(1, "00001"), (2, "00002"), (3, "00003")],
        applied: &[1, 2],
        kept_time: Some("2023-05-06 07:08:09"),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn goose_before_v3_logged_downs() {
    // pressly/goose, internal/dialect/dialectquery/postgres.go: the older
    // table; a down was a row with is_applied = false, and the latest row
    // of a version decides.
    adopt_then_up(Case {
        tool: Format::Goose,
        setup: "CREATE TABLE goose_db_version (
                    id serial NOT NULL,
                    version_id bigint NOT NULL,
                    is_applied boolean NOT NULL,
                    tstamp timestamp NULL default now(),
                    PRIMARY KEY(id)
                );
                INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true);
                INSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true);
                INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, true);
                INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, false);",
        files: &[(1, "1"), (2, "2"), (3, "3")],
        applied: &[1],
        kept_time: None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlx() {
    // launchbadge/sqlx, sqlx-postgres/src/migrate.rs: ensure_migrations_table,
    // execute_migration, then the execution_time update.
    adopt_then_up(Case {
        tool: Format::Sqlx,
        setup: "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
                    version BIGINT PRIMARY KEY,
                    description TEXT NOT NULL,
                    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
                    success BOOLEAN NOT NULL,
                    checksum BYTEA NOT NULL,
                    execution_time BIGINT NOT NULL
                );
                ALTER TABLE _sqlx_migrations ALTER COLUMN installed_on SET DEFAULT '2023-05-06 07:08:09';
                INSERT INTO _sqlx_migrations ( version, description, success, checksum, execution_time )
                VALUES ( 20240101000000, 'create a', TRUE, '\\x01', -1 );
                UPDATE _sqlx_migrations SET execution_time = 1200 WHERE version = 20240101000000;
                ALTER TABLE _sqlx_migrations ALTER COLUMN installed_on SET DEFAULT now();",
        files: &[
            (20240101000000, "20240101000000"),
            (20240102000000, "20240102000000"),
        ],
        applied: &[20240101000000],
        kept_time: Some("2023-05-06 07:08:09"),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_pg_migrate() {
    // salsita/node-pg-migrate, src/runner.ts (ensureMigrationsTable) and
    // src/migration.ts (_getMarkAsRun): named by the file name without
    // its extension.
    adopt_then_up(Case {
        tool: Format::NodePgMigrate,
        setup: r#"CREATE TABLE "public"."pgmigrations" (id SERIAL PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL);
                INSERT INTO "public"."pgmigrations" (name, run_on) VALUES ('1700000000000_m1700000000000', '2023-05-06 07:08:09');"#,
        files: &[
            (1700000000000, "1700000000000_m1700000000000"),
            (1700000000001, "1700000000001_m1700000000001"),
        ],
        applied: &[1700000000000],
        kept_time: Some("2023-05-06 07:08:09"),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn node_pg_migrate_itself() {
    let program = tokio::task::spawn_blocking(|| {
        programs::npm_program(&["node-pg-migrate@7", "pg@8"], "node-pg-migrate")
    })
    .await
    .unwrap();
    let program = match program {
        Ok(program) => program,
        Err(why) => {
            eprintln!(
                "skipped: running node-pg-migrate itself ({why}); its table as its source writes it is tested by node_pg_migrate"
            );
            return;
        }
    };
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("1700000000000_create-a.sql"),
        "-- Up Migration\nCREATE TABLE a (id int);\n\n-- Down Migration\nDROP TABLE a;\n",
    )
    .unwrap();
    let url = db.url();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .args(["up", "-m"])
            .arg(&migrations)
            .env("DATABASE_URL", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "node-pg-migrate up failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut files = vec![migration(
        1700000000000,
        "create-a",
        "1700000000000_create-a",
        "CREATE TABLE a (id int);",
    )];
    let set = folder(Format::NodePgMigrate, files.clone());
    let adopted = adopt(&db, &set, None).await.unwrap();
    assert_eq!(adopted.recorded, ["1700000000000_create-a"]);
    let kept = db
        .column("SELECT (o.applied_at = p.run_on::timestamptz)::text FROM orch.migrations o, pgmigrations p")
        .await;
    assert_eq!(kept, ["true"]);
    files.push(migration(
        1700000000001,
        "create-b",
        "1700000000001_create-b",
        "CREATE TABLE b (id int);",
    ));
    let set = folder(Format::NodePgMigrate, files);
    assert_eq!(up(&db, &set).await.unwrap(), ["1700000000001_create-b"]);
}

/// A refusal leaves orch's schema uncreated and the tool's table as it was.
async fn refused(setup: &str, tool: Format, files: &[(i64, &str)], expected: &str) {
    let db = TestDb::new().await;
    db.execute(setup).await;
    let table = tracking::default_table(tool);
    let tool_rows = format!("SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1");
    let before = db.column(&tool_rows).await;
    let set = folder(
        tool,
        files
            .iter()
            .map(|&(v, id)| migration(v, &format!("m{v}"), id, "SELECT 1;"))
            .collect(),
    );
    let err = adopt(&db, &set, None).await.unwrap_err();
    assert_eq!(err.code(), 4, "{err}");
    assert!(
        err.to_string().contains(expected),
        "{expected:?} not in {err}"
    );
    assert_eq!(
        db.column("SELECT (to_regnamespace('orch') IS NULL)::text")
            .await,
        ["true"]
    );
    assert_eq!(db.column(&tool_rows).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dirty_or_failed_history_is_refused_naming_the_version() {
    refused(
        r#"CREATE TABLE IF NOT EXISTS "public"."schema_migrations" (version bigint not null primary key, dirty boolean not null);
           INSERT INTO "public"."schema_migrations" (version, dirty) VALUES (2, true);"#,
        Format::GolangMigrate,
        &[(1, "1"), (2, "2")],
        "golang-migrate's table public.schema_migrations is not clean: version 2 is dirty (dirty = true): it failed half-way",
    )
    .await;
    refused(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
             version BIGINT PRIMARY KEY, description TEXT NOT NULL,
             installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL,
             checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL);
         INSERT INTO _sqlx_migrations VALUES (1, 'one', now(), TRUE, '\\x01', 5), (2, 'two', now(), FALSE, '\\x02', -1);",
        Format::Sqlx,
        &[(1, "1"), (2, "2")],
        "version 2 (two) has success = false: it failed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_version_without_a_file_is_refused_naming_it() {
    refused(
        "CREATE TABLE goose_db_version (id serial NOT NULL, version_id bigint NOT NULL, is_applied boolean NOT NULL, tstamp timestamp NULL default now(), PRIMARY KEY(id));
         INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (7, true);",
        Format::Goose,
        &[(1, "1"), (2, "2")],
        "records \"7\" as applied, but migrations has no migration goose calls so",
    )
    .await;
}
