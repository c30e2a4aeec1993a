//! The test harness: a real PostgreSQL for every test binary run (the server
//! at `DATABASE_URL` when set, else a throwaway one started here), one fresh
//! database per test, and a `Session` builder that reads like a user at a
//! terminal: write files, run `orch`, check output, then check the database.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub mod programs;
pub mod servers;
pub mod tools;

use orch::connect::ConnectionSettings;
use orch::pg_server::{PgServer, ServerOptions, database_url_or_throwaway};
use tokio::runtime::Runtime;

/// The server test databases are created on: the one at `DATABASE_URL`, or
/// a throwaway one started here (stopped by its watchdog when we exit).
struct Server {
    /// Kept alive for the whole test run (None with DATABASE_URL).
    _local: Option<PgServer>,
    admin: ConnectionSettings,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

fn server() -> &'static Server {
    SERVER.get_or_init(
        || match database_url_or_throwaway(ServerOptions::default()) {
            Ok((local, admin)) => Server {
                _local: local,
                admin,
            },
            Err(e) => {
                eprintln!("cannot run database tests: {e}");
                panic!("cannot run database tests: {e}");
            }
        },
    )
}

/// Connection settings for the maintenance database of the test server.
fn admin_settings() -> ConnectionSettings {
    server().admin.clone()
}

/// A fresh, empty database, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub settings: ConnectionSettings,
    runtime: Runtime,
}

impl TestDb {
    pub fn new() -> TestDb {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let name = format!(
            "orch_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        let admin = admin_settings();
        runtime.block_on(async {
            let client = admin
                .connect("orch test harness")
                .await
                .expect("connect to the test server");
            client
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
                .await
                .expect("create test database");
        });
        let settings = admin.with_dbname(&name);
        TestDb {
            name,
            settings,
            runtime,
        }
    }

    /// Connection string for child processes (includes any password; never print it).
    pub fn connection_string(&self) -> String {
        self.settings.to_connection_string()
    }

    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// A new connection, driven by this database's runtime.
    pub fn connect(&self) -> Conn<'_> {
        let client = self
            .block_on(self.settings.connect("orch test session"))
            .expect("connect to test database");
        Conn { db: self, client }
    }

    /// Run SQL and return every row as text cells (NULL -> None).
    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.connect().query(sql)
    }

    /// The single value of a one-row, one-column query.
    pub fn value(&self, sql: &str) -> Option<String> {
        let rows = self.query(sql);
        assert_eq!(rows.len(), 1, "{sql} returned {} rows", rows.len());
        rows[0][0].clone()
    }

    pub fn execute(&self, sql: &str) {
        self.connect().execute(sql)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = admin_settings();
        let name = self.name.clone();
        self.runtime.block_on(async move {
            if let Ok(client) = admin.connect("orch test harness").await {
                let _ = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            }
        });
    }
}

/// One extra session on a test database, e.g. to hold a lock.
pub struct Conn<'a> {
    db: &'a TestDb,
    pub client: tokio_postgres::Client,
}

impl Conn<'_> {
    pub fn execute(&self, sql: &str) {
        self.db
            .block_on(self.client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    pub fn try_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.db.block_on(self.client.batch_execute(sql))
    }

    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let messages = self
            .db
            .block_on(self.client.simple_query(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    pub fn pid(&self) -> i32 {
        self.query("SELECT pg_backend_pid()")[0][0]
            .as_ref()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// A project directory (migrations/, plans/) bound to a fresh database.
pub struct Session {
    pub dir: tempfile::TempDir,
    pub db: TestDb,
}

impl Session {
    pub fn new() -> Session {
        let dir = tempfile::Builder::new()
            .prefix("orch-project-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("migrations")).unwrap();
        std::fs::create_dir_all(dir.path().join("plans")).unwrap();
        Session {
            dir,
            db: TestDb::new(),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Write `migrations/<file_name>`.
    pub fn migration(&self, file_name: &str, text: &str) -> &Self {
        self.write(&format!("migrations/{file_name}"), text)
    }

    /// Write `plans/<file_name>`.
    pub fn plan(&self, file_name: &str, text: &str) -> &Self {
        self.write(&format!("plans/{file_name}"), text)
    }

    pub fn write(&self, relative: &str, text: &str) -> &Self {
        let path = self.path(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    pub fn remove(&self, relative: &str) -> &Self {
        std::fs::remove_file(self.path(relative)).unwrap();
        self
    }

    /// Copy the repository's own migrations and plans into this project.
    pub fn with_repository_files(&self) -> &Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for sub in ["migrations", "plans"] {
            for entry in std::fs::read_dir(root.join(sub)).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), self.path(sub).join(entry.file_name())).unwrap();
            }
        }
        self
    }

    /// The `orch` command, ready to run in this project against this database.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", self.db.connection_string())
            .env("ORCH_OPERATOR", "tester")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        command
    }

    /// The `orch` command with no database configured: no `DATABASE_URL`,
    /// no `PG*` variable naming a server or database, and a role no server
    /// has, so even a server at libpq's default sockets does not answer.
    pub fn command_without_database(&self, args: &[&str]) -> Command {
        let mut command = self.command(args);
        command.env_remove("DATABASE_URL");
        for name in ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE"] {
            command.env_remove(name);
        }
        command.env("PGUSER", "orch_test_no_such_role");
        command
    }

    /// Run `orch args...` with no database configured.
    pub fn orch_without_database(&self, args: &[&str]) -> Run {
        Run::from(
            self.command_without_database(args)
                .output()
                .expect("run orch"),
            args,
        )
    }

    /// Run `orch args...` to completion.
    pub fn orch(&self, args: &[&str]) -> Run {
        Run::from(self.command(args).output().expect("run orch"), args)
    }

    /// Start `orch args...` in the background.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn orch")
    }

    pub fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.db.query(sql)
    }

    pub fn value(&self, sql: &str) -> Option<String> {
        self.db.value(sql)
    }

    pub fn execute(&self, sql: &str) {
        self.db.execute(sql)
    }

    /// Does this table exist in the public schema?
    pub fn has_table(&self, table: &str) -> bool {
        self.value(&format!("SELECT to_regclass('public.{table}') IS NOT NULL"))
            .as_deref()
            == Some("t")
    }

    /// The columns of a table, in order.
    pub fn columns(&self, table: &str) -> Vec<String> {
        self.query(&format!(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}' ORDER BY ordinal_position"
        ))
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
    }

    /// Everything a command that must change nothing could change by
    /// mistake: relations and columns of every schema, sequences, orch's
    /// rows (or that it has no schema), every row of the public tables.
    pub fn fingerprint(&self) -> String {
        let mut parts = vec![
            self.value(
                "SELECT coalesce(string_agg(format('%s.%s %s', n.nspname, c.relname, c.relkind), ', ' ORDER BY 1), '')
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
            ),
            self.value(
                "SELECT coalesce(string_agg(format('%s.%s %s %s %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef), ', ' ORDER BY 1), '')
                 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
                   AND a.attnum > 0 AND NOT a.attisdropped",
            ),
            self.value(
                "SELECT coalesce(string_agg(format('%s.%s=%s', schemaname, sequencename, last_value), ', ' ORDER BY 1), '') FROM pg_sequences",
            ),
        ];
        if self
            .value("SELECT to_regclass('orch.meta') IS NOT NULL")
            .as_deref()
            == Some("t")
        {
            parts.push(self.value(
                "SELECT concat_ws(' | ',
                   (SELECT count(*) FROM orch.events), (SELECT count(*) FROM orch.check_results),
                   (SELECT string_agg(version::text, ', ' ORDER BY version) FROM orch.migrations),
                   (SELECT string_agg(plan || '/' || id || ' ' || state || ' ' || updated_at, ', ' ORDER BY plan, position) FROM orch.phases),
                   (SELECT count(*) FROM orch.plans), (SELECT count(*) FROM orch.backfill_workers))",
            ));
        } else {
            parts.push(Some("no orch schema".to_string()));
        }
        let tables =
            self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
        for table in tables.into_iter().filter_map(|r| r[0].clone()) {
            parts.push(self.value(&format!(
                "SELECT '{table}: ' || count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM \"{table}\" t"
            )));
        }
        parts
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Rows of orch.migrations as `version_name`, in version order.
    pub fn applied(&self) -> Vec<String> {
        if self
            .value("SELECT to_regclass('orch.migrations') IS NOT NULL")
            .as_deref()
            != Some("t")
        {
            return Vec::new();
        }
        self.query("SELECT version || '_' || name FROM orch.migrations ORDER BY version")
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect()
    }
}

/// The outcome of one `orch` run, with assertions that print everything on failure.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output, args: &[&str]) -> Run {
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "orch {}\n--- exit code {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success\n{}", self.describe());
        self
    }

    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "expected exit code {code}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout should contain {text:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr should contain {text:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stdout_lacks(&self, text: &str) -> &Self {
        assert!(
            !self.stdout.contains(text),
            "stdout should not contain {text:?}\n{}",
            self.describe()
        );
        self
    }
}

/// SQL for the number of sessions in the current database waiting to take
/// `mode` on `table`, e.g. orch's ALTER queued behind a long transaction.
pub fn lock_waiters(table: &str, mode: &str) -> String {
    format!(
        "SELECT count(*) FROM pg_locks
         WHERE database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND relation = '{table}'::regclass AND mode = '{mode}' AND NOT granted"
    )
}

/// Wait for a child and collect its output.
pub fn finish(child: std::process::Child, args: &[&str]) -> Run {
    Run::from(child.wait_with_output().expect("wait for orch"), args)
}

/// Poll `condition` every 20 ms for up to `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

/// A small plan for tests of the verbs: a migration (`create_t`, which the
/// test writes), a deploy gate, and a check.
pub const SMALL_PLAN: &str = "plan: small
phases:
  - id: add-t
    kind: migration
    title: Create t
    migration: create_t
  - id: gate
    kind: deploy
    title: Deploy
    instructions: deploy it
  - id: later
    kind: check
    title: Later
    checks:
      - name: t exists
        sql: SELECT to_regclass('t') IS NOT NULL
";
