//! Benchmark: the command backfill (a program computes each batch's values)
//! next to the SQL backfill (`set`), filling `posts.loc` on the backfill
//! benchmark's posts table of 1,000,000 rows, in the same run on the same
//! server, through the library code `orch advance` runs. The program is the
//! test suite's (`tests/programs/backfill_loc.rs`), which logs, per batch,
//! the time from its first line in to its last line out: the share of the
//! run the program used.
//!
//!     cargo bench --bench backfill_command          # or: -- --rows 200000 --workers 2
//!
//! Uses the server at DATABASE_URL instead when that is set.

use std::time::{Duration, Instant};

use orch::connect::ConnectionSettings;
use orch::pg_server::{ServerOptions, database_url_or_throwaway};
use orch::{
    BackfillEnd, BackfillJob, BackfillOverrides, BackfillSpec, Silent, StopSignal, Store,
    run_backfill,
};

const PROGRAM: &str = env!("CARGO_BIN_EXE_orch-test-backfill");

struct Args {
    rows: u64,
    workers: u32,
}

fn args() -> Args {
    let mut args = Args {
        rows: 1_000_000,
        workers: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rows" => args.rows = it.next().and_then(|v| v.parse().ok()).expect("--rows N"),
            "--workers" => {
                args.workers = it.next().and_then(|v| v.parse().ok()).expect("--workers N")
            }
            _ => {}
        }
    }
    args
}

const SETUP: &str = "
    DROP TABLE IF EXISTS posts;
    CREATE TABLE posts (
        id SERIAL PRIMARY KEY, url VARCHAR(300), lat NUMERIC, lng NUMERIC,
        created_at timestamptz NOT NULL DEFAULT now(), loc POINT);";

/// What one contender did.
struct Measure {
    seconds: f64,
    batches: u64,
    batch_p50_ms: u64,
    /// The program's own time (first line in to last line out, summed over
    /// its batches), for the command backfill.
    program_seconds: Option<f64>,
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_server, admin) = database_url_or_throwaway(ServerOptions {
        durable: true,
        ..ServerOptions::default()
    })
    .expect("a PostgreSQL to benchmark against");
    let settings = runtime.block_on(async {
        let client = admin.connect("orch bench").await.unwrap();
        client
            .batch_execute("DROP DATABASE IF EXISTS bench_backfill_command")
            .await
            .unwrap();
        client
            .batch_execute("CREATE DATABASE bench_backfill_command")
            .await
            .unwrap();
        admin.with_dbname("bench_backfill_command")
    });
    println!(
        "command backfill benchmark: loc on {} posts rows, {} worker(s), durable local server",
        args.rows, args.workers
    );
    let sql = runtime.block_on(measure(&settings, &args, false));
    let command = runtime.block_on(measure(&settings, &args, true));
    println!(
        "\n  {:<40} {:>8} {:>10} {:>8} {:>10} {:>14}",
        "contender", "seconds", "rows/s", "batches", "batch p50", "program time"
    );
    for (name, m) in [
        ("SQL backfill (set: loc = point(lng, lat))", &sql),
        ("command backfill (orch-test-backfill)", &command),
    ] {
        let program = m
            .program_seconds
            .map(|p| format!("{p:.2} s ({:.0}%)", p * 100.0 / m.seconds))
            .unwrap_or_else(|| "-".to_string());
        println!(
            "  {:<40} {:>8.2} {:>10.0} {:>8} {:>7} ms {:>14}",
            name,
            m.seconds,
            args.rows as f64 / m.seconds,
            m.batches,
            m.batch_p50_ms,
            program
        );
    }
    println!(
        "\n  the command backfill runs at {:.2}x the SQL backfill's rate",
        sql.seconds / command.seconds
    );
}

async fn measure(settings: &ConnectionSettings, args: &Args, command: bool) -> Measure {
    let client = settings.connect("orch bench").await.unwrap();
    client.batch_execute(SETUP).await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO posts (url, lat, lng)
             SELECT 'https://example.com/post/' || g, ((g * 37) % 1800 - 900) / 10.0, ((g * 91) % 3600 - 1800) / 10.0
             FROM generate_series(1, {}) AS g",
            args.rows
        ))
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE posts").await.unwrap();
    client.batch_execute("CHECKPOINT").await.unwrap();
    let store = Store::open(settings, "orch bench").await.unwrap();
    store.ensure_schema().await.unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let log_path = log.path().display().to_string();
    let spec = BackfillSpec {
        table: "posts".to_string(),
        key: None,
        set: if command {
            String::new()
        } else {
            "loc = point(lng, lat)".to_string()
        },
        condition: Some("loc IS NULL".to_string()),
        batch_time: None,
        min_batch: None,
        max_batch: None,
        pause: None,
        max_rows_per_second: None,
        workers: Some(args.workers),
        vacuum_every: None,
        command: command.then(|| vec![PROGRAM.to_string(), "--log".to_string(), log_path]),
        reads: command.then(|| vec!["lat".to_string(), "lng".to_string()]),
        writes: command.then(|| vec!["loc".to_string()]),
        max_errors: None,
        command_timeout: None,
        walk: None,
        make_room: None,
        max_replica_lag: None,
        max_wal_rate: None,
        synchronous_commit: None,
    };
    let phase = if command {
        "bench-command"
    } else {
        "bench-sql"
    };
    let stop = StopSignal::new();
    let job = BackfillJob {
        connection: settings,
        plan: "bench",
        phase,
        position: 1,
        spec: &spec,
        overrides: &BackfillOverrides::default(),
        lock_timeout: Duration::from_millis(500),
        reporter: &Silent,
        stop: &stop,
        fences: Vec::new(),
    };
    let started = Instant::now();
    let stats = match run_backfill(job).await.unwrap() {
        BackfillEnd::Finished(stats) => stats,
        other => panic!("backfill did not finish: {other:?}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM posts WHERE loc IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 0, "the backfill left rows without loc");
    let wrong: i64 = client
        .query_one(
            "SELECT count(*) FROM posts WHERE NOT loc ~= point(lng::float8, lat::float8)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(wrong, 0, "the backfill computed wrong values");
    let program_seconds = command.then(|| {
        let text = std::fs::read_to_string(log.path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>() as f64
            / 1e6
    });
    eprintln!(
        "  {}: {seconds:.2} s, {} batches",
        if command { "command" } else { "sql" },
        stats.batches
    );
    Measure {
        seconds,
        batches: stats.batches,
        batch_p50_ms: stats.batch_ms_p50,
        program_seconds,
    }
}
