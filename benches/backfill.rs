//! Benchmark: filling `posts.loc = point(lng, lat)` on a posts table of
//! 1,000,000 rows, in the same run: one big UPDATE, the tutorial's batching
//! loop, and orch's backfill (the library code `orch advance` runs) walking
//! by key (making room, the default, and in one pass) and by pages (`walk:
//! physical`), each with 1 and 2 workers, with VACUUM off and `auto` (the
//! default). Each contender gets a freshly loaded, vacuumed table on a
//! durable (fsync on) throwaway server; median of 3 runs, each figure's own
//! (each run's longest batch is printed as it ends).
//!
//!     cargo bench --bench backfill            # or: -- --rows 5000000 --runs 1 --no-tutorial
//!     cargo bench --bench backfill -- --only physical   # the single UPDATE and contenders whose name has "physical"
//!     cargo bench --bench backfill -- --vacuum off,auto,5,20   # the VACUUM paces to compare
//!
//! Uses the server at DATABASE_URL instead when that is set.

use std::time::{Duration, Instant};

use orch::connect::ConnectionSettings;
use orch::pg_server::{ServerOptions, database_url_or_throwaway};
use orch::{
    BackfillEnd, BackfillJob, BackfillOverrides, BackfillSpec, Silent, StopSignal, Store,
    VacuumEvery, WalkKind, run_backfill,
};

struct Args {
    rows: u64,
    runs: usize,
    /// Skip the tutorial loop (slow on big tables: it re-scans for NULLs).
    no_tutorial: bool,
    /// Only the single UPDATE and the contenders whose name contains this.
    only: Option<String>,
    /// The `vacuum_every` values each orch contender runs with: `off`,
    /// `auto` (the default) or a number of batches.
    vacuum: Vec<Vacuum>,
}

fn args() -> Args {
    let mut args = Args {
        rows: 1_000_000,
        runs: 3,
        no_tutorial: false,
        only: None,
        vacuum: vec![Vacuum::Off, Vacuum::Auto],
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rows" => args.rows = it.next().and_then(|v| v.parse().ok()).expect("--rows N"),
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--no-tutorial" => args.no_tutorial = true,
            "--only" => args.only = it.next(),
            "--vacuum" => {
                args.vacuum = it
                    .next()
                    .and_then(|v| v.split(',').map(Vacuum::parse).collect())
                    .expect("--vacuum off|auto|N[,...]")
            }
            _ => {}
        }
    }
    args
}

/// A contender's `vacuum_every`.
#[derive(Clone, Copy, PartialEq)]
enum Vacuum {
    Off,
    Auto,
    Every(u64),
}

impl Vacuum {
    fn parse(text: &str) -> Option<Vacuum> {
        match text {
            "off" => Some(Vacuum::Off),
            "auto" => Some(Vacuum::Auto),
            n => n.parse().ok().map(Vacuum::Every),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Contender {
    SingleUpdate,
    TutorialLoop,
    Orch(Orch),
}

/// One way to run orch's backfill.
#[derive(Clone, Copy, PartialEq)]
struct Orch {
    walk: WalkKind,
    workers: u32,
    /// VACUUM every N batches (to show its effect on bloat).
    vacuum: Vacuum,
    /// The key walk's `make_room` (set either way; its default depends on
    /// the workers).
    make_room: bool,
}

impl Contender {
    fn name(self) -> String {
        match self {
            Contender::SingleUpdate => "single UPDATE".to_string(),
            Contender::TutorialLoop => "tutorial loop (IN (SELECT .. LIMIT 5000))".to_string(),
            Contender::Orch(o) => {
                let workers = match o.workers {
                    1 => "1 worker".to_string(),
                    n => format!("{n} workers"),
                };
                let vacuum = match o.vacuum {
                    Vacuum::Off => ", VACUUM off".to_string(),
                    Vacuum::Auto => ", VACUUM auto".to_string(),
                    Vacuum::Every(n) => format!(", VACUUM every {n}"),
                };
                let passes = match (o.walk, o.make_room) {
                    (WalkKind::Key, true) => " (making room)",
                    (WalkKind::Key, false) => " (one pass)",
                    _ => "",
                };
                format!("orch {} walk{passes}, {workers}{vacuum}", o.walk.name())
            }
        }
    }
}

#[derive(Default, Clone)]
struct Measure {
    seconds: f64,
    batch_p50_ms: Option<u64>,
    batch_max_ms: Option<u64>,
    growth_percent: f64,
    /// The longest a concurrent single-row application update waited.
    app_wait_max_ms: u64,
}

const SETUP: &str = "
    DROP TABLE IF EXISTS posts;
    CREATE TABLE posts (
        id SERIAL PRIMARY KEY, url VARCHAR(300), lat NUMERIC, lng NUMERIC,
        created_at timestamptz NOT NULL DEFAULT now(), loc POINT);";

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
            .batch_execute("DROP DATABASE IF EXISTS bench_backfill")
            .await
            .unwrap();
        client
            .batch_execute("CREATE DATABASE bench_backfill")
            .await
            .unwrap();
        admin.with_dbname("bench_backfill")
    });
    println!(
        "backfill benchmark: loc = point(lng, lat) on {} posts rows, median of {} runs, durable local server, 2 cores",
        args.rows, args.runs
    );
    let mut contenders = vec![Contender::SingleUpdate, Contender::TutorialLoop];
    for (walk, make_room) in [
        (WalkKind::Key, true),
        (WalkKind::Key, false),
        (WalkKind::Physical, false),
    ] {
        for &vacuum in &args.vacuum {
            for workers in [1, 2] {
                contenders.push(Contender::Orch(Orch {
                    walk,
                    workers,
                    vacuum,
                    make_room,
                }));
            }
        }
    }
    if args.no_tutorial {
        contenders.retain(|c| *c != Contender::TutorialLoop);
    }
    if let Some(only) = &args.only {
        contenders.retain(|c| *c == Contender::SingleUpdate || c.name().contains(only.as_str()));
    }
    let mut results: Vec<Vec<Measure>> = vec![Vec::new(); contenders.len()];
    for run in 0..args.runs {
        for (i, contender) in contenders.iter().enumerate() {
            let m = runtime.block_on(measure(&settings, *contender, args.rows, run));
            eprintln!(
                "  run {}: {:<45} {:>7.2} s",
                run + 1,
                contender.name(),
                m.seconds
            );
            results[i].push(m);
        }
    }
    // Each figure's own median over the runs (the longest batch of a
    // contender is the median of its runs' longest batches, not the longest
    // batch of its median run).
    let median = |ms: &[Measure]| -> Measure {
        fn mid<T: Copy>(mut values: Vec<T>, cmp: impl Fn(&T, &T) -> std::cmp::Ordering) -> T {
            values.sort_by(cmp);
            values[values.len() / 2]
        }
        let of = |f: fn(&Measure) -> f64| mid(ms.iter().map(f).collect(), |a, b| a.total_cmp(b));
        let of_ms =
            |f: fn(&Measure) -> Option<u64>| mid(ms.iter().map(f).collect(), |a, b| a.cmp(b));
        Measure {
            seconds: of(|m| m.seconds),
            batch_p50_ms: of_ms(|m| m.batch_p50_ms),
            batch_max_ms: of_ms(|m| m.batch_max_ms),
            growth_percent: of(|m| m.growth_percent),
            app_wait_max_ms: mid(ms.iter().map(|m| m.app_wait_max_ms).collect(), |a, b| {
                a.cmp(b)
            }),
        }
    };
    let medians: Vec<Measure> = results.iter().map(|r| median(r)).collect();
    let single = medians[0].seconds;
    println!(
        "\n  {:<45} {:>8} {:>10} {:>14} {:>10} {:>10} {:>8} {:>10}",
        "contender",
        "seconds",
        "rows/s",
        "vs UPDATE",
        "batch p50",
        "batch max",
        "growth",
        "app wait"
    );
    for (contender, m) in contenders.iter().zip(&medians) {
        let ms = |v: Option<u64>| {
            v.map(|v| format!("{v} ms"))
                .unwrap_or_else(|| "-".to_string())
        };
        println!(
            "  {:<45} {:>8.2} {:>10.0} {:>13.2}x {:>10} {:>10} {:>7.0}% {:>10}",
            contender.name(),
            m.seconds,
            args.rows as f64 / m.seconds,
            single / m.seconds,
            ms(m.batch_p50_ms),
            ms(m.batch_max_ms),
            m.growth_percent,
            ms(Some(m.app_wait_max_ms))
        );
    }
    println!("\n  targets (issue 14), each orch contender against the single UPDATE above:");
    let check = |ok: bool| if ok { "met" } else { "NOT met" };
    for (contender, m) in contenders.iter().zip(&medians) {
        let Contender::Orch(o) = contender else {
            continue;
        };
        let ratio = single / m.seconds;
        let max = m.batch_max_ms.unwrap_or(0);
        let mut line = format!("    {:<45}", contender.name());
        let wanted = if o.workers == 1 { 1.0 } else { 1.5 };
        line.push_str(&format!(
            " >= {wanted:.1}x: {ratio:.2}x {}; max batch {max} ms < 250: {}; app wait {} ms",
            check(ratio >= wanted),
            check(max < 250),
            m.app_wait_max_ms
        ));
        if o.workers == 1 {
            line.push_str(&format!(
                "; growth {:.0}% <= 40% at >= 0.9x: {}",
                m.growth_percent,
                check(m.growth_percent <= 40.0 && ratio >= 0.9)
            ));
        }
        println!("{line}");
    }
    if let Some(i) = contenders
        .iter()
        .position(|c| *c == Contender::TutorialLoop)
    {
        println!(
            "    the tutorial loop: {:.2}x the single UPDATE",
            single / medians[i].seconds
        );
    }
}

async fn measure(
    settings: &ConnectionSettings,
    contender: Contender,
    rows: u64,
    run: usize,
) -> Measure {
    let client = settings.connect("orch bench").await.unwrap();
    client.batch_execute(SETUP).await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO posts (url, lat, lng)
             SELECT 'https://example.com/post/' || g, ((g * 37) % 1800 - 900) / 10.0, ((g * 91) % 3600 - 1800) / 10.0
             FROM generate_series(1, {rows}) AS g"
        ))
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE posts").await.unwrap();
    client.batch_execute("CHECKPOINT").await.unwrap();
    let size = || async {
        client
            .query_one("SELECT pg_relation_size('posts')", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let before = size().await;
    // The application: one single-row update every 10 ms on rows all over
    // the table, timing each, for as long as the contender runs.
    let app = settings.connect("orch bench app").await.unwrap();
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let app_task = {
        let running = running.clone();
        let rows = rows as i64;
        tokio::spawn(async move {
            let update = app
                .prepare("UPDATE posts SET url = url WHERE id = $1")
                .await
                .unwrap();
            let mut slowest = Duration::ZERO;
            let mut i: i64 = 0;
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let id = (1 + (i * 7919) % rows) as i32;
                let t = Instant::now();
                app.execute(&update, &[&id]).await.unwrap();
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            slowest
        })
    };
    let started = Instant::now();
    let mut m = Measure::default();
    match contender {
        Contender::SingleUpdate => {
            client
                .batch_execute("UPDATE posts SET loc = point(lng, lat)")
                .await
                .unwrap();
        }
        Contender::TutorialLoop => loop {
            let n = client
                .execute(
                    "UPDATE posts SET loc = point(lng, lat) WHERE id IN (SELECT id FROM posts WHERE loc IS NULL LIMIT 5000)",
                    &[],
                )
                .await
                .unwrap();
            if n == 0 {
                break;
            }
        },
        Contender::Orch(o) => {
            let store = Store::open(settings, "orch bench").await.unwrap();
            store.ensure_schema().await.unwrap();
            let phase = format!("bench-{run}-{}", contender.name().replace(' ', "-"));
            let spec = BackfillSpec {
                table: "posts".to_string(),
                key: None,
                set: "loc = point(lng, lat)".to_string(),
                condition: Some("loc IS NULL".to_string()),
                batch_time: None,
                min_batch: None,
                max_batch: None,
                pause: None,
                max_rows_per_second: None,
                workers: Some(o.workers),
                vacuum_every: Some(match o.vacuum {
                    Vacuum::Off => VacuumEvery::Word("off".to_string()),
                    Vacuum::Auto => VacuumEvery::Word("auto".to_string()),
                    Vacuum::Every(n) => VacuumEvery::Batches(n),
                }),
                walk: Some(o.walk),
                make_room: (o.walk == WalkKind::Key).then_some(o.make_room),
                max_replica_lag: None,
                max_wal_rate: None,
                synchronous_commit: None,
                command: None,
                reads: None,
                writes: None,
                max_errors: None,
                command_timeout: None,
            };
            let stop = StopSignal::new();
            let job = BackfillJob {
                connection: settings,
                plan: "bench",
                phase: &phase,
                position: 1,
                spec: &spec,
                overrides: &BackfillOverrides::default(),
                lock_timeout: Duration::from_millis(500),
                reporter: &Silent,
                stop: &stop,
                fences: Vec::new(),
            };
            match run_backfill(job).await.unwrap() {
                BackfillEnd::Finished(stats) => {
                    eprintln!(
                        "    {} batches, {:.0} ms in batches (longest {} ms), {} ms in VACUUM ({} of them), {} ms in all",
                        stats.batches,
                        stats.batch_ms_mean * stats.batches as f64,
                        stats.batch_ms_max,
                        stats.vacuum_ms,
                        stats.vacuums,
                        stats.elapsed_ms
                    );
                    m.batch_p50_ms = Some(stats.batch_ms_p50);
                    m.batch_max_ms = Some(stats.batch_ms_max);
                }
                other => panic!("backfill did not finish: {other:?}"),
            }
        }
    }
    m.seconds = started.elapsed().as_secs_f64();
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    m.app_wait_max_ms = app_task.await.unwrap().as_millis() as u64;
    let nulls: i64 = client
        .query_one("SELECT count(*) FROM posts WHERE loc IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nulls, 0, "{} left rows without loc", contender.name());
    m.growth_percent = (size().await - before) as f64 * 100.0 / before as f64;
    m
}
