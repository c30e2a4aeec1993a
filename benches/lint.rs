//! Benchmark: `orch check` (no database) linting a folder of 300
//! migrations of the kinds real folders hold (tables, columns, indexes
//! built concurrently, constraints added NOT VALID and validated later,
//! functions), parsed and checked section by section with the folder's
//! history. The lint must take well under a second for such a folder.
//!
//!     cargo bench --bench lint                   # or: -- --migrations 1000 --runs 7
//!     cargo bench --bench lint -- --dir PATH     # a real folder (any format orch reads)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Args {
    migrations: usize,
    runs: usize,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut args = Args {
        migrations: 300,
        runs: 5,
        dir: None,
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
            "--dir" => args.dir = Some(PathBuf::from(it.next().expect("--dir PATH"))),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

/// Migration `i` of a generated folder: one of a few shapes, each clean.
fn migration(i: usize) -> String {
    let t = format!("t{}", i / 5 * 5);
    match i % 5 {
        0 => format!(
            "-- migrate:up\nCREATE TABLE {t} (\n    id bigint PRIMARY KEY,\n    name varchar(50) NOT NULL,\n    created_at timestamptz NOT NULL DEFAULT now()\n);\nCREATE INDEX {t}_created_at_idx ON {t} (created_at);\n\n-- migrate:down\nDROP TABLE {t};\n"
        ),
        1 => format!(
            "-- migrate:up\nALTER TABLE {t} ADD COLUMN note text;\nALTER TABLE {t} ADD COLUMN score int DEFAULT 0;\nALTER TABLE {t} ALTER COLUMN name TYPE varchar(100);\n\n-- migrate:down\nALTER TABLE {t} DROP COLUMN note, DROP COLUMN score;\n"
        ),
        2 => format!(
            "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY IF NOT EXISTS {t}_name_idx ON {t} (name);\n\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY IF EXISTS {t}_name_idx;\n"
        ),
        3 => format!(
            "-- migrate:up\nALTER TABLE {t} ADD CONSTRAINT {t}_note_nn CHECK (note IS NOT NULL) NOT VALID;\n\n-- migrate:down\nALTER TABLE {t} DROP CONSTRAINT {t}_note_nn;\n"
        ),
        _ => format!(
            "-- migrate:up\nALTER TABLE {t} VALIDATE CONSTRAINT {t}_note_nn;\nCREATE OR REPLACE FUNCTION {t}_touch() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  NEW.created_at := now();\n  RETURN NEW;\nEND;\n$$;\n\n-- migrate:down\nDROP FUNCTION {t}_touch();\n"
        ),
    }
}

fn check(dir: &Path) -> Duration {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["check", "--json", "--migrations-dir"])
        .arg(dir)
        .args(["--plans-dir", "/nonexistent/orch/plans"])
        .output()
        .expect("run orch check");
    let elapsed = started.elapsed();
    let findings: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("check --json prints JSON");
    let count = findings.as_array().map_or(0, Vec::len);
    eprintln!(
        "  exit {}, {count} finding(s), {elapsed:.2?}",
        output.status.code().unwrap_or(-1)
    );
    elapsed
}

fn main() {
    let args = args();
    let generated = tempfile::tempdir().unwrap();
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            for i in 0..args.migrations {
                std::fs::write(
                    generated.path().join(format!("{}_m{i}.sql", 1000 + i)),
                    migration(i),
                )
                .unwrap();
            }
            generated.path().to_path_buf()
        }
    };
    eprintln!("orch check on {}:", dir.display());
    let mut times: Vec<Duration> = (0..args.runs).map(|_| check(&dir)).collect();
    times.sort();
    println!(
        "orch check (parse, lint, every section): median {:.2?}, best {:.2?} over {} runs",
        times[times.len() / 2],
        times[0],
        times.len()
    );
}
