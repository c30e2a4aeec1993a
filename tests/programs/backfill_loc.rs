//! The test suite's backfill program (not a user tool): it speaks orch's
//! command-backfill protocol (docs/backfill.md) and computes
//! `loc = (lng,lat)` from `lat` and `lng`, rejecting a row whose latitude is
//! outside [-90, 90]. Built as a binary of the package so plain `cargo test`
//! builds it and the tests find it through `CARGO_BIN_EXE_orch-test-backfill`.
//!
//! Options, for the tests' faults:
//!   --slow-ms N        sleep N ms before answering each batch
//!   --hang             never answer (reads its input, then sleeps)
//!   --crash-every N    exit abruptly (status 3) in the middle of every Nth batch
//!   --fail-at-start    write a message to stderr and exit 2 before reading
//!   --pid-file PATH    write its pid to PATH (the tests kill -9 it)
//!   --leave-out-odd    answer nothing for rows with an odd first key
//!   --log PATH         append a line per batch: its rows and the microseconds
//!                      from its first line in to its last line out
//!   --lenient-if-exists PATH
//!                      while PATH exists (relative to where it runs: the
//!                      project's root), clamp an out-of-range latitude
//!                      instead of rejecting the row (the "fixed" program)

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Default)]
struct Options {
    slow_ms: u64,
    hang: bool,
    crash_every: Option<u64>,
    fail_at_start: bool,
    pid_file: Option<String>,
    leave_out_odd: bool,
    log: Option<String>,
    lenient_if_exists: Option<String>,
}

fn options() -> Options {
    let mut options = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--slow-ms" => options.slow_ms = number(args.next()),
            "--hang" => options.hang = true,
            "--crash-every" => options.crash_every = Some(number(args.next()).max(1)),
            "--fail-at-start" => options.fail_at_start = true,
            "--pid-file" => options.pid_file = args.next(),
            "--leave-out-odd" => options.leave_out_odd = true,
            "--log" => options.log = args.next(),
            "--lenient-if-exists" => options.lenient_if_exists = args.next(),
            other => {
                eprintln!("unknown option {other:?}");
                std::process::exit(64);
            }
        }
    }
    options
}

fn number(text: Option<String>) -> u64 {
    text.and_then(|t| t.parse().ok()).unwrap_or_else(|| {
        eprintln!("expected a number");
        std::process::exit(64)
    })
}

/// The answer for one row: its new `loc`, or why not.
fn answer(key: &Value, row: &Value, lenient: bool) -> Value {
    let field = |name: &str| row.get(name).and_then(Value::as_str);
    let (Some(lat), Some(lng)) = (field("lat"), field("lng")) else {
        return json!({"key": key, "set": {"loc": null}});
    };
    match (lat.parse::<f64>(), lng.parse::<f64>()) {
        (Ok(lat_value), Ok(_)) if lenient && !(-90.0..=90.0).contains(&lat_value) => {
            let clamped = lat_value.clamp(-90.0, 90.0);
            json!({"key": key, "set": {"loc": format!("({lng},{clamped})")}})
        }
        (Ok(lat_value), Ok(_)) if !(-90.0..=90.0).contains(&lat_value) => {
            json!({"key": key, "error": format!("latitude {lat} is out of range")})
        }
        // The text PostgreSQL gave, as it gave it: point's input reads it exactly.
        (Ok(_), Ok(_)) => json!({"key": key, "set": {"loc": format!("({lng},{lat})")}}),
        _ => json!({"key": key, "error": format!("cannot read lat {lat:?} / lng {lng:?}")}),
    }
}

fn main() {
    let options = options();
    if options.fail_at_start {
        eprintln!("loc: cannot load the geodesy model: models/geo.bin not found");
        std::process::exit(2);
    }
    if let Some(path) = &options.pid_file {
        let _ = std::fs::write(path, std::process::id().to_string());
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut pending: Vec<Value> = Vec::new();
    let mut batches: u64 = 0;
    let mut batch_started: Option<Instant> = None;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { return };
        let started = *batch_started.get_or_insert_with(Instant::now);
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            eprintln!("loc: not JSON: {line}");
            std::process::exit(65);
        };
        if value.get("end_of_batch") == Some(&Value::Bool(true)) {
            batches += 1;
            batch_started = None;
            let rows = pending.len();
            if options.hang {
                eprintln!("loc: thinking very hard");
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
            if options.slow_ms > 0 {
                std::thread::sleep(Duration::from_millis(options.slow_ms));
            }
            let lenient = options
                .lenient_if_exists
                .as_ref()
                .is_some_and(|path| std::path::Path::new(path).exists());
            let crash = options
                .crash_every
                .is_some_and(|n| batches.is_multiple_of(n));
            for (i, row) in pending.drain(..).enumerate() {
                if crash && i > 0 {
                    let _ = out.flush();
                    eprintln!("loc: crashing in the middle of batch {batches}");
                    std::process::exit(3);
                }
                let key = &row["key"];
                let odd = key
                    .get(0)
                    .and_then(Value::as_str)
                    .and_then(|k| k.parse::<i64>().ok())
                    .is_some_and(|k| k % 2 != 0);
                if options.leave_out_odd && odd {
                    continue;
                }
                let _ = writeln!(out, "{}", answer(key, &row["row"], lenient));
            }
            if crash {
                eprintln!("loc: crashing at the end of batch {batches}");
                std::process::exit(3);
            }
            let _ = writeln!(out, "{}", json!({"end_of_batch": true}));
            let _ = out.flush();
            if let Some(path) = &options.log
                && let Ok(mut log) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
            {
                let _ = writeln!(log, "{rows} {}", started.elapsed().as_micros());
            }
        } else {
            pending.push(value);
        }
    }
}
