//! Benchmark: a large real-world migrations folder, applied as it is. The
//! folder is lemmy's: the 233 diesel migrations published inside the
//! `lemmy_db_schema` 0.19.21 crate on crates.io (the folder lemmy 0.19.21
//! embeds and runs). Each run applies it to two fresh databases on a durable
//! (fsync on) throwaway server: with psql, one `up.sql` at a time in diesel's
//! order, each in its own transaction as diesel runs it; and with
//! `orch migrate up --migrations-dir DIR`. Then `pg_dump --schema-only` of
//! the two must be identical (less pg_dump's random `\restrict` lines, orch's
//! schema and diesel's tracking table).
//!
//!     cargo bench --bench real_folder                 # or: -- --runs 5
//!     cargo bench --bench real_folder -- --psql-only  # fetch, and check psql applies it
//!     cargo bench --bench real_folder -- --dir PATH   # a diesel folder obtained otherwise
//!
//! The crate is fetched with cargo into `~/.cargo/registry` (see [`fetch`]).
//! Uses the server at DATABASE_URL instead when that is set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[path = "common/db.rs"]
mod db;
#[path = "common/lemmy.rs"]
mod lemmy;

use lemmy::{CRATE, CRATE_VERSION, DieselMigration, EXPECTED_MIGRATIONS, diesel_migrations, fetch};
use orch::connect::ConnectionSettings;
use orch::pg_server::{ServerOptions, database_url_or_throwaway};

/// Other tools' tracking tables, left out of the comparison with orch's
/// schema (psql creates none; orch might keep diesel's table for interop).
const TRACKING_TABLES: &[&str] = &["public.__diesel_schema_migrations"];

struct Args {
    runs: usize,
    psql_only: bool,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        runs: 3,
        psql_only: false,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--psql-only" => args.psql_only = true,
            "--dir" => args.dir = Some(it.next().expect("--dir PATH").into()),
            _ => {} // cargo bench passes --bench
        }
    }
    assert!(args.runs > 0, "--runs must be at least 1");
    args
}

fn main() -> ExitCode {
    let args = args();
    let (dir, source) = match &args.dir {
        Some(dir) => (dir.clone(), format!("diesel folder {}", dir.display())),
        None => match fetch() {
            Ok(dir) => (
                dir,
                format!(
                    "lemmy {CRATE_VERSION}'s diesel migrations (crate {CRATE} {CRATE_VERSION}, AGPL-3.0)"
                ),
            ),
            Err(why) => {
                eprintln!(
                    "real_folder: cannot obtain {CRATE} {CRATE_VERSION} from crates.io: {why}"
                );
                eprintln!(
                    "  fetch it by hand with `cargo fetch --manifest-path target/bench-real-folder/Cargo.toml`, \
                     or pass a diesel folder obtained otherwise: cargo bench --bench real_folder -- --dir PATH"
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let migrations = match diesel_migrations(&dir) {
        Ok(migrations) => migrations,
        Err(why) => {
            eprintln!("real_folder: {}: {why}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    if args.dir.is_none() && migrations.len() != EXPECTED_MIGRATIONS {
        eprintln!(
            "real_folder: {}: {} migrations, expected {EXPECTED_MIGRATIONS} in {CRATE} {CRATE_VERSION}",
            dir.display(),
            migrations.len()
        );
        return ExitCode::FAILURE;
    }

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_server, admin) = database_url_or_throwaway(ServerOptions {
        durable: true,
        ..ServerOptions::default()
    })
    .expect("a PostgreSQL to benchmark against");
    let create_db = |name: &str| db::fresh_database(&runtime, &admin, name);
    let missing = runtime.block_on(missing_extensions(&admin, &migrations));
    if !missing.is_empty() {
        eprintln!(
            "real_folder: the folder creates extensions this server lacks: {} (Debian: the postgresql package's contrib)",
            missing.join(", ")
        );
        return ExitCode::FAILURE;
    }

    let lines: usize = migrations.iter().map(|m| m.lines).sum();
    let outside = migrations.iter().filter(|m| !m.in_transaction).count();
    println!(
        "real-folder benchmark: {source}, median of {} runs, durable local server",
        args.runs
    );
    println!("  folder: {}", dir.display());
    println!(
        "  files: {} migrations ({} up.sql, {lines} lines), diesel's order, {}",
        migrations.len(),
        migrations.len(),
        if outside == 0 {
            "each in its own transaction".to_string()
        } else {
            format!("{outside} outside a transaction (metadata.toml)")
        }
    );

    let orch = env!("CARGO_BIN_EXE_orch");
    let mut psql_times = Vec::new();
    let mut orch_times = Vec::new();
    let mut differences = Vec::new();
    for run in 0..args.runs {
        let by_psql = create_db(&format!("bench_real_psql_{run}"));
        match apply_with_psql(&migrations, &by_psql) {
            Ok(elapsed) => psql_times.push(elapsed),
            Err(why) => {
                eprintln!("real_folder: psql could not apply the folder: {why}");
                return ExitCode::FAILURE;
            }
        }
        if args.psql_only {
            continue;
        }
        let by_orch = create_db(&format!("bench_real_orch_{run}"));
        match apply_with_orch(orch, &dir, &by_orch) {
            Ok(elapsed) => orch_times.push(elapsed),
            Err(why) => {
                report_psql(&psql_times);
                eprintln!("real_folder: `orch migrate up --migrations-dir DIR` failed: {why}");
                return ExitCode::FAILURE;
            }
        }
        if let Some(difference) = compare(&schema(&by_psql), &schema(&by_orch)) {
            differences.push((run, difference));
        }
    }

    report_psql(&psql_times);
    if args.psql_only {
        let schema = schema(&admin.with_dbname("bench_real_psql_0"));
        println!("  schema: {}", summary(&schema));
        return ExitCode::SUCCESS;
    }
    let (psql, orch) = (median(psql_times), median(orch_times));
    println!(
        "  orch migrate up --migrations-dir DIR:   {:>8.3} s",
        orch.as_secs_f64()
    );
    println!(
        "  orch / psql time: {:.2} (orch is {:.1}x {} than psql one file at a time)",
        orch.as_secs_f64() / psql.as_secs_f64(),
        (psql.as_secs_f64() / orch.as_secs_f64()).max(orch.as_secs_f64() / psql.as_secs_f64()),
        if orch <= psql { "faster" } else { "slower" }
    );
    let pg_dump = "pg_dump --schema-only, less \\restrict lines, orch's schema, diesel's table";
    if differences.is_empty() {
        println!("  schemas identical ({pg_dump}): yes");
        ExitCode::SUCCESS
    } else {
        println!(
            "  schemas identical ({pg_dump}): NO, in {} of {} runs",
            differences.len(),
            args.runs
        );
        for (run, difference) in differences {
            println!("  run {run}: {difference}");
        }
        ExitCode::FAILURE
    }
}

fn report_psql(times: &[Duration]) {
    if let Some(psql) = (!times.is_empty()).then(|| median(times.to_vec())) {
        println!(
            "  psql, one up.sql at a time:            {:>8.3} s",
            psql.as_secs_f64()
        );
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// Extensions the folder creates that the server does not have.
async fn missing_extensions(
    admin: &ConnectionSettings,
    migrations: &[DieselMigration],
) -> Vec<String> {
    let mut wanted: Vec<String> = Vec::new();
    for migration in migrations {
        let sql = std::fs::read_to_string(&migration.up).unwrap_or_default();
        let words: Vec<String> = sql
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|w| !w.is_empty())
            .map(|w| w.trim_matches('"').to_lowercase())
            .collect();
        for (i, pair) in words.windows(2).enumerate() {
            if pair[0] != "create" || pair[1] != "extension" {
                continue;
            }
            let rest = &words[i + 2..];
            let name = match rest {
                [a, b, c, name, ..] if [a, b, c] == ["if", "not", "exists"] => name,
                [name, ..] => name,
                [] => continue,
            };
            if !wanted.contains(name) {
                wanted.push(name.clone());
            }
        }
    }
    let client = admin.connect("orch bench").await.unwrap();
    let mut missing = Vec::new();
    for name in wanted {
        let rows = client
            .query(
                "SELECT 1 FROM pg_available_extensions WHERE name = $1",
                &[&name],
            )
            .await
            .unwrap();
        if rows.is_empty() {
            missing.push(name);
        }
    }
    missing
}

/// Each `up.sql` with its own psql process, in order, as a person applying
/// the folder by hand would: `ON_ERROR_STOP`, and `--single-transaction`
/// where diesel runs the migration in a transaction.
fn apply_with_psql(
    migrations: &[DieselMigration],
    db: &ConnectionSettings,
) -> Result<Duration, String> {
    let psql = pg_program("psql");
    let conninfo = db.to_connection_string();
    let started = Instant::now();
    for migration in migrations {
        let mut command = Command::new(&psql);
        command.args(["--no-psqlrc", "--quiet", "-v", "ON_ERROR_STOP=1"]);
        if migration.in_transaction {
            command.arg("--single-transaction");
        }
        let output = command
            .arg("--file")
            .arg(&migration.up)
            .arg(&conninfo)
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", psql.display()))?;
        if !output.status.success() {
            return Err(format!(
                "{}: {}",
                migration.name,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    Ok(started.elapsed())
}

/// `orch migrate up --migrations-dir DIR`, the folder as it is (its format
/// detected, as a user would run it), from an empty working directory.
fn apply_with_orch(orch: &str, dir: &Path, db: &ConnectionSettings) -> Result<Duration, String> {
    let cwd = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = Command::new(orch)
        .args(["migrate", "up", "--migrations-dir"])
        .arg(dir)
        .current_dir(cwd.path())
        .env("DATABASE_URL", db.to_connection_string())
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {orch}: {e}"))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        return Err(format!(
            "exit {}: {}",
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(elapsed)
}

/// A PostgreSQL client program, beside the server binaries orch finds
/// (so client and server are the same release), else on PATH.
fn pg_program(name: &str) -> PathBuf {
    orch::pg_server::find_bin_dir()
        .map(|dir| dir.join(name))
        .ok()
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// `pg_dump --schema-only` of `db`, less the `\restrict`/`\unrestrict`
/// lines (a random key each dump), orch's schema and tracking tables.
fn schema(db: &ConnectionSettings) -> String {
    let output = Command::new(pg_program("pg_dump"))
        .args(["--schema-only", "--exclude-schema=orch"])
        .args(
            TRACKING_TABLES
                .iter()
                .map(|t| format!("--exclude-table={t}")),
        )
        .arg(db.to_connection_string())
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// None when the dumps are the same; else how many lines each has that the
/// other lacks, the first few of them, and where both dumps were written.
fn compare(by_psql: &str, by_orch: &str) -> Option<String> {
    if by_psql == by_orch {
        return None;
    }
    let scratch = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-real-folder");
    let (a, b) = (
        scratch.join("schema-psql.sql"),
        scratch.join("schema-orch.sql"),
    );
    let written = std::fs::create_dir_all(&scratch)
        .and_then(|()| std::fs::write(&a, by_psql))
        .and_then(|()| std::fs::write(&b, by_orch))
        .is_ok();
    let only_psql = lines_missing_from(by_psql, by_orch);
    let only_orch = lines_missing_from(by_orch, by_psql);
    let mut text = format!(
        "{} lines only in psql's dump, {} only in orch's",
        only_psql.len(),
        only_orch.len()
    );
    if only_psql.is_empty() && only_orch.is_empty() {
        text.push_str(" (the same lines in another order)");
    }
    for (side, lines) in [("psql", &only_psql), ("orch", &only_orch)] {
        for line in lines.iter().take(10) {
            text.push_str(&format!("\n      only {side}: {line}"));
        }
    }
    if written {
        text.push_str(&format!("\n    diff {} {}", a.display(), b.display()));
    }
    Some(text)
}

/// The lines of `a` (with repeats) that `b` does not have as often.
fn lines_missing_from<'a>(a: &'a str, b: &str) -> Vec<&'a str> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for line in b.lines() {
        *counts.entry(line).or_default() += 1;
    }
    a.lines()
        .filter(|line| {
            let count = counts.entry(line).or_default();
            *count -= 1;
            *count < 0
        })
        .collect()
}

/// What the schema holds, counted from its dump.
fn summary(schema: &str) -> String {
    let count = |prefix: &str| schema.lines().filter(|l| l.starts_with(prefix)).count();
    format!(
        "{} tables, {} views, {} functions, {} indexes, {} triggers, {} types, {} extensions ({} lines of pg_dump)",
        count("CREATE TABLE "),
        count("CREATE VIEW ") + count("CREATE MATERIALIZED VIEW "),
        count("CREATE FUNCTION "),
        count("CREATE INDEX ") + count("CREATE UNIQUE INDEX "),
        count("CREATE TRIGGER "),
        count("CREATE TYPE "),
        count("CREATE EXTENSION "),
        schema.lines().count()
    )
}
