//! Benchmark: `orch migrate up` applying 200 trivial migrations, and an `up`
//! with nothing to do, against a local durable (fsync on) throwaway server.
//! When Node.js and npm are available, node-pg-migrate runs the same 200
//! migrations on the same server in the same run, as the baseline.
//!
//!     cargo bench --bench migrations            # or: -- --migrations 500 --runs 7
//!
//! Uses the server at DATABASE_URL instead when that is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orch::connect::ConnectionSettings;
use orch::pg_server::{ServerOptions, database_url_or_throwaway};

struct Args {
    migrations: usize,
    runs: usize,
}

fn args() -> Args {
    let mut args = Args {
        migrations: 200,
        runs: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--migrations" => {
                args.migrations = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--migrations N")
            }
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[path = "common/db.rs"]
mod db;

fn main() {
    let args = args();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_server, admin) = database_url_or_throwaway(ServerOptions {
        durable: true,
        ..ServerOptions::default()
    })
    .expect("a PostgreSQL to benchmark against");
    let create_db = |name: &str| db::fresh_database(&runtime, &admin, name);

    let project = tempfile::tempdir().unwrap();
    write_orch_migrations(&project.path().join("migrations"), args.migrations);
    let orch = env!("CARGO_BIN_EXE_orch");
    println!(
        "migrations benchmark: {} trivial migrations (CREATE TABLE), median of {} runs, durable local server",
        args.migrations, args.runs
    );

    let mut apply = Vec::new();
    let mut noop = Vec::new();
    for run in 0..args.runs {
        let db = create_db(&format!("bench_orch_{run}"));
        let url = db.to_connection_string();
        apply.push(time(
            Command::new(orch)
                .args(["migrate", "up"])
                .current_dir(project.path())
                .env("DATABASE_URL", &url),
        ));
        for _ in 0..4 {
            noop.push(time(
                Command::new(orch)
                    .args(["migrate", "up"])
                    .current_dir(project.path())
                    .env("DATABASE_URL", &url),
            ));
        }
    }
    let orch_apply = median(apply);
    let orch_noop = median(noop);
    println!(
        "  orch migrate up, {} pending:      {:>8.3} s",
        args.migrations,
        orch_apply.as_secs_f64()
    );
    println!(
        "  orch migrate up, nothing pending: {:>8.3} s",
        orch_noop.as_secs_f64()
    );

    match node_pg_migrate() {
        Err(why) => println!("  node-pg-migrate baseline skipped: {why}"),
        Ok(bin) => {
            let node_project = tempfile::tempdir().unwrap();
            write_node_migrations(&node_project.path().join("migrations"), args.migrations);
            let mut apply = Vec::new();
            let mut noop = Vec::new();
            for run in 0..args.runs {
                let db = create_db(&format!("bench_node_{run}"));
                let mut command = node_command(&bin, node_project.path(), &db);
                apply.push(time(&mut command));
                for _ in 0..4 {
                    noop.push(time(&mut node_command(&bin, node_project.path(), &db)));
                }
            }
            let (node_apply, node_noop) = (median(apply), median(noop));
            println!(
                "  node-pg-migrate up, {} pending:      {:>8.3} s",
                args.migrations,
                node_apply.as_secs_f64()
            );
            println!(
                "  node-pg-migrate up, nothing pending: {:>8.3} s",
                node_noop.as_secs_f64()
            );
            println!(
                "  orch is {:.1}x faster applying, {:.1}x faster with nothing to do",
                node_apply.as_secs_f64() / orch_apply.as_secs_f64(),
                node_noop.as_secs_f64() / orch_noop.as_secs_f64()
            );
        }
    }
    println!("  targets: under 0.300 s applying 200, under 0.050 s with nothing to do");
}

fn time(command: &mut Command) -> Duration {
    let started = Instant::now();
    let output = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{:?} failed: {}",
        command,
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

fn write_orch_migrations(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 1..=n {
        std::fs::write(
            dir.join(format!("{:014}_t{i}.sql", i)),
            format!(
                "-- migrate:up\nCREATE TABLE t{i} (id int);\n\n-- migrate:down\nDROP TABLE t{i};\n"
            ),
        )
        .unwrap();
    }
}

fn write_node_migrations(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 1..=n {
        std::fs::write(
            dir.join(format!("{:013}_t{i}.js", i)),
            format!(
                "exports.up = (pgm) => {{ pgm.sql('CREATE TABLE t{i} (id int)'); }};\nexports.down = (pgm) => {{ pgm.sql('DROP TABLE t{i}'); }};\n"
            ),
        )
        .unwrap();
    }
}

/// Install node-pg-migrate (once) under target/bench-node; Err says why not.
fn node_pg_migrate() -> Result<PathBuf, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-node");
    let bin = dir.join("node_modules/.bin/node-pg-migrate");
    if bin.exists() {
        return Ok(bin);
    }
    if Command::new("npm").arg("--version").output().is_err() {
        return Err("npm is not installed".to_string());
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let status = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--silent",
            "node-pg-migrate@7",
            "pg@8",
        ])
        .current_dir(&dir)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() || !bin.exists() {
        return Err("npm install node-pg-migrate failed".to_string());
    }
    Ok(bin)
}

fn node_command(bin: &Path, project: &Path, db: &ConnectionSettings) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["up", "--migrations-dir", "migrations", "--no-check-order"])
        .current_dir(project)
        .env("DATABASE_URL", node_url(db));
    command
}

/// node-postgres wants a URL; a socket directory goes in `?host=`.
fn node_url(db: &ConnectionSettings) -> String {
    let text = db.to_connection_string();
    let field = |name: &str| {
        text.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    format!(
        "postgresql://{}@localhost:{}/{}?host={}",
        field("user"),
        field("port"),
        field("dbname"),
        field("host")
    )
}
