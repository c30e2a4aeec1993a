//! Other tools the tests compare orch with: PostgreSQL's own clients
//! (`psql` to apply files one at a time, `pg_dump` to compare schemas) and
//! other migration tools installed from npm when npm is there.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::TestDb;

/// A PostgreSQL client program (`psql`, `pg_dump`), beside the server
/// binaries orch finds, else on PATH.
pub fn pg_program(name: &str) -> PathBuf {
    if let Ok(dir) = orch::pg_server::find_bin_dir() {
        let path = dir.join(name);
        if path.exists() {
            return path;
        }
    }
    PathBuf::from(name)
}

/// Run `sql` with psql on `db` as one script (`ON_ERROR_STOP`), as a
/// person applying a migration file by hand would; panics on failure.
pub fn psql(db: &TestDb, sql: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("script.sql");
    std::fs::write(&file, sql).unwrap();
    let output = Command::new(pg_program("psql"))
        .arg("--no-psqlrc")
        .arg("-q")
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg("-f")
        .arg(&file)
        .arg(db.connection_string())
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "psql failed on:\n{sql}\n--- stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `pg_dump --schema-only` of `db`, without what differs between two
/// databases of the same schema (comments, `\restrict` lines, SET lines)
/// and without orch's own schema and other tools' tracking tables.
pub fn schema(db: &TestDb) -> String {
    let output = Command::new(pg_program("pg_dump"))
        .args([
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--exclude-schema=orch",
        ])
        .args(
            TRACKING_TABLES
                .iter()
                .map(|t| format!("--exclude-table={t}")),
        )
        .arg(db.connection_string())
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            !line.starts_with("--")
                && !line.starts_with("\\restrict")
                && !line.starts_with("\\unrestrict")
                && !line.starts_with("SET ")
                && !line.starts_with("SELECT pg_catalog.set_config")
                && !line.trim().is_empty()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Other tools' tracking tables (and their sequences), left out of schema
/// comparisons.
const TRACKING_TABLES: &[&str] = &[
    "public.schema_migrations",
    "public.__diesel_schema_migrations",
    "public.goose_db_version*",
    "public._sqlx_migrations",
    "public.pgmigrations*",
];

pub use super::programs::npm_program;

/// A `postgresql://` URL for `db`, as node-postgres and Go drivers take it
/// (a socket directory goes in `?host=`).
pub fn url(db: &TestDb) -> String {
    super::programs::url_of(&db.connection_string())
}

/// Copy the fixture folder `tests/fixtures/<relative>` into `to`.
pub fn copy_fixture(relative: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative);
    copy_dir(&from, to);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
