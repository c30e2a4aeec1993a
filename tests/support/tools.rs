//! Other tools the tests compare orch with: PostgreSQL's own clients
//! (`psql` to apply files one at a time, `pg_dump` to compare schemas) and
//! other migration tools installed from npm when npm is there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

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

/// Serialises npm installs: tests run in parallel threads.
static NPM: Mutex<()> = Mutex::new(());

/// The program `bin` of the npm package(s) `packages`, installed once into
/// the system temp dir (reused by later runs); Err says why it cannot be,
/// e.g. no npm on this machine.
pub fn npm_program(packages: &[&str], bin: &str) -> Result<PathBuf, String> {
    let _one_at_a_time = NPM.lock().unwrap_or_else(|e| e.into_inner());
    let key: String = packages
        .join("+")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = std::env::temp_dir().join("orch-test-npm").join(key);
    let program = dir.join("node_modules/.bin").join(bin);
    if program.exists() {
        return Ok(program);
    }
    match Command::new("npm").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Err("npm is not installed".to_string()),
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let output = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .args(packages)
        .current_dir(&dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() || !program.exists() {
        return Err(format!(
            "npm install {} failed: {}",
            packages.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(program)
}

/// A `postgresql://` URL for `db`, as node-postgres and Go drivers take it
/// (a socket directory goes in `?host=`).
pub fn url(db: &TestDb) -> String {
    let text = db.connection_string();
    let field = |name: &str| {
        text.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    let host = field("host");
    let password = field("password");
    let auth = if password.is_empty() {
        field("user")
    } else {
        format!("{}:{}", field("user"), password)
    };
    if host.starts_with('/') {
        format!(
            "postgresql://{auth}@localhost:{}/{}?host={host}&sslmode=disable",
            field("port"),
            field("dbname")
        )
    } else {
        format!(
            "postgresql://{auth}@{host}:{}/{}?sslmode=disable",
            field("port"),
            field("dbname")
        )
    }
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
