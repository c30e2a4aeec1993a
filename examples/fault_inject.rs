//! Fault injection: `kill -9` orch at random points of every kind of work
//! it does, resume, and check that the result is exact: every row of a
//! backfill updated exactly once (a `touched` counter incremented by the
//! backfill's `set`, under a concurrent writer, with 1 and 4 workers),
//! every migration recorded exactly when it was applied (its table and its
//! row in a log exist exactly when orch recorded it), and plan phases whose
//! state, columns, bookkeeping and audit events agree after a killed
//! `advance`, `confirm` or `rollback`. Not part of `cargo test`; see
//! docs/faults.md for the figures of the last run.
//!
//!     cargo build --bin orch --example fault_inject
//!     target/debug/examples/fault_inject --trials 40 --seed 15
//!
//! Uses the server at DATABASE_URL when set, else a throwaway PostgreSQL;
//! the orch binary is `ORCH_BIN`, else the one beside this program's folder
//! (`target/debug/orch`). Exits 1 when a trial was not exact.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orch::connect::ConnectionSettings;
use orch::pg_server::{ServerOptions, database_url_or_throwaway};
use tokio::runtime::Runtime;
use tokio_postgres::Client;

struct Args {
    trials: usize,
    seed: u64,
    rows: i64,
    migrations: usize,
}

fn args() -> Args {
    let mut args = Args {
        trials: 12,
        seed: fastrand::u64(..),
        rows: 20_000,
        migrations: 60,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} takes a whole number"))
        };
        match flag.as_str() {
            "--trials" => args.trials = value("--trials") as usize,
            "--seed" => args.seed = value("--seed"),
            "--rows" => args.rows = value("--rows") as i64,
            "--migrations" => args.migrations = value("--migrations") as usize,
            other => {
                eprintln!(
                    "unknown argument {other:?}; usage: fault_inject [--trials N] [--seed N] [--rows N] [--migrations N]"
                );
                std::process::exit(2);
            }
        }
    }
    args
}

/// The kinds of work a trial kills.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    Backfill { workers: u32 },
    Phases,
    MigrateUp,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario::Backfill { workers: 1 },
    Scenario::Backfill { workers: 4 },
    Scenario::Phases,
    Scenario::MigrateUp,
];

/// What the run counts.
#[derive(Default)]
struct Figures {
    trials: usize,
    /// Kills that landed while orch was running.
    kills: usize,
    /// Kills planned for after orch had already finished.
    missed: usize,
    exact: usize,
    failures: Vec<String>,
}

/// One trial's project folder and database.
struct Trial<'a> {
    dir: tempfile::TempDir,
    settings: ConnectionSettings,
    orch: &'a Path,
    runtime: &'a Runtime,
    rng: fastrand::Rng,
    kills: usize,
    missed: usize,
}

impl Trial<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.orch);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("DATABASE_URL", self.settings.to_connection_string())
            .env("ORCH_OPERATOR", "fault-inject")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    /// Run to completion, retrying while another (killed) orch's session
    /// still holds the lock (exit 5).
    fn run(&self, args: &[&str]) -> Output {
        for _ in 0..5 {
            let output = self.command(args).output().expect("run orch");
            if output.status.code() != Some(5) {
                return output;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.command(args).output().expect("run orch")
    }

    /// Start `args`, and `kill -9` it after a random time up to `within`.
    fn run_and_kill(&mut self, args: &[&str], within: Duration) {
        let mut child = self.command(args).spawn().expect("start orch");
        let delay = Duration::from_millis(self.rng.u64(0..=within.as_millis() as u64));
        std::thread::sleep(delay);
        match child.try_wait().expect("orch's status") {
            Some(_) => self.missed += 1,
            None => {
                child.kill().expect("kill -9 orch"); // SIGKILL on Unix
                self.kills += 1;
            }
        }
        let _ = child.wait();
    }

    /// Start `args`, and `kill -9` it once `progress` (a query's one
    /// number; an error counts as 0) reaches `target`: a random point of
    /// the work itself rather than of orch's start-up.
    fn run_and_kill_at(&mut self, args: &[&str], progress: &str, target: i64) {
        let client = self.client();
        let mut child = self.command(args).spawn().expect("start orch");
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if child.try_wait().expect("orch's status").is_some() {
                self.missed += 1;
                break;
            }
            let done = self
                .runtime
                .block_on(client.query_one(progress, &[]))
                .ok()
                .and_then(|row| row.try_get::<_, Option<i64>>(0).ok().flatten())
                .unwrap_or(0);
            if done >= target || Instant::now() > deadline {
                child.kill().expect("kill -9 orch");
                self.kills += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = child.wait();
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn client(&self) -> Client {
        self.runtime
            .block_on(self.settings.connect("fault-inject check"))
            .expect("connect to the trial's database")
    }

    fn execute(&self, sql: &str) {
        let client = self.client();
        self.runtime
            .block_on(client.batch_execute(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The single text value of a one-row, one-column query (NULL as "").
    fn value(&self, sql: &str) -> String {
        let client = self.client();
        let row = self
            .runtime
            .block_on(client.query_one(&format!("SELECT ({sql})::text"), &[]))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.get::<_, Option<String>>(0).unwrap_or_default()
    }

    fn phase_state(&self, plan: &str, phase: &str) -> String {
        let state = self.value(&format!(
            "SELECT state FROM orch.phases WHERE plan = '{plan}' AND id = '{phase}'"
        ));
        if state.is_empty() {
            "pending".to_string()
        } else {
            state
        }
    }
}

fn output_text(output: &Output) -> String {
    format!(
        "exit {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn expect_success(output: &Output, what: &str) -> Result<(), String> {
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {}", output_text(output)))
    }
}

/// A backfill of `rows` rows with `workers` workers while an application
/// writes, killed 1 to 3 times, then run to the end.
fn backfill(t: &mut Trial<'_>, rows: i64, workers: u32) -> Result<(), String> {
    t.write(
        "migrations/20240101000000_create_items.sql",
        "-- migrate:up\nCREATE TABLE items (id bigserial PRIMARY KEY, v int NOT NULL, filled int, touched int NOT NULL DEFAULT 0);\n\n-- migrate:down\nDROP TABLE items;\n",
    );
    t.write(
        "plans/fill.yaml",
        "plan: fill
phases:
  - id: fill
    kind: backfill
    title: Fill filled from v, touching each row once
    backfill:
      table: items
      set: filled = v * 2, touched = touched + 1
      where: v IS NOT NULL
      batch_time: 20ms
      max_batch: 400
",
    );
    expect_success(&t.run(&["migrate", "up"]), "migrate up")?;
    t.execute(&format!(
        "INSERT INTO items (v) SELECT g % 1000 FROM generate_series(1, {rows}) AS g"
    ));

    // The application: updates v with filled kept right, inserts new rows.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        let client = t.client();
        let seed = t.rng.u64(..);
        t.runtime.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            while !stop.load(Ordering::Relaxed) {
                let id = rng.i64(1..=rows);
                let v = rng.i32(0..1000);
                let update = client
                    .execute(
                        "UPDATE items SET v = v + 1, filled = (v + 1) * 2 WHERE id = $1",
                        &[&id],
                    )
                    .await;
                let insert = client
                    .execute("INSERT INTO items (v, filled) VALUES ($1, $1 * 2)", &[&v])
                    .await;
                if update.is_ok() && insert.is_ok() {
                    writes.fetch_add(2, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let workers_flag = workers.to_string();
    let advance = ["advance", "fill", "--workers", &workers_flag];
    let progress =
        "SELECT sum(rows_updated)::bigint FROM orch.backfill_workers WHERE plan = 'fill'";
    for _ in 0..t.rng.usize(1..=3) {
        // Mostly at a random row of the work, sometimes during start-up.
        if t.rng.u8(0..4) == 0 {
            t.run_and_kill(&advance, Duration::from_millis(300));
        } else {
            let target = t.rng.i64(0..rows);
            t.run_and_kill_at(&advance, progress, target);
        }
    }
    let last = t.run(&advance);
    stop.store(true, Ordering::Relaxed);
    t.runtime.block_on(writer).expect("the writer");

    let state = t.phase_state("fill", "fill");
    if state != "done" {
        return Err(format!(
            "the backfill phase is {state}, not done, after the last advance: {}",
            output_text(&last)
        ));
    }
    // The backfill walks the keys up to the largest when it started; the
    // rows the application inserted after that are its own.
    let walked_to = t.value(
        "SELECT max(range_end[1]::bigint) FROM orch.backfill_workers WHERE plan = 'fill' AND phase = 'fill'",
    );
    let wrong = t.value(&format!(
        "SELECT format('%s rows up to key {walked_to} not touched exactly once, %s rows after it touched, %s rows with filled <> v * 2',
                count(*) FILTER (WHERE id <= {walked_to} AND touched <> 1),
                count(*) FILTER (WHERE id > {walked_to} AND touched <> 0),
                count(*) FILTER (WHERE filled IS DISTINCT FROM v * 2))
         FROM items"
    ));
    if !wrong.starts_with("0 rows up to key")
        || !wrong.contains(", 0 rows after it touched, 0 rows with")
    {
        return Err(wrong);
    }
    let counted = t.value(
        "SELECT sum(rows_updated) FROM orch.backfill_workers WHERE plan = 'fill' AND phase = 'fill'",
    );
    if counted != walked_to {
        return Err(format!(
            "the workers counted {counted} rows updated, for {walked_to} rows updated once each"
        ));
    }
    if writes.load(Ordering::Relaxed) == 0 {
        return Err("the application wrote nothing during the backfill".to_string());
    }
    Ok(())
}

/// What a step of the phases scenario does, and the state it leaves.
struct Step {
    args: &'static [&'static str],
    phase: &'static str,
    after: &'static str,
}

const STEPS: &[Step] = &[
    Step {
        args: &["advance", "cols"],
        phase: "add-a",
        after: "done",
    },
    Step {
        args: &["confirm", "cols", "add-a"],
        phase: "add-a",
        after: "confirmed",
    },
    Step {
        args: &["advance", "cols"],
        phase: "add-b",
        after: "done",
    },
    Step {
        args: &["confirm", "cols", "add-b"],
        phase: "add-b",
        after: "confirmed",
    },
    // Each rollback names its phase: a re-run after a kill is then a no-op
    // when the first had already undone it (never a second undo).
    Step {
        args: &["rollback", "cols", "add-b"],
        phase: "add-b",
        after: "pending",
    },
    Step {
        args: &["rollback", "cols", "add-a"],
        phase: "add-a",
        after: "pending",
    },
];

/// Migration phases, confirmations and rollbacks, each perhaps killed,
/// then done: columns, bookkeeping, states and events agree at every point.
fn phases(t: &mut Trial<'_>) -> Result<(), String> {
    t.write(
        "migrations/20240101000000_create_things.sql",
        "-- migrate:up\nCREATE TABLE things (id int);\n\n-- migrate:down\nDROP TABLE things;\n",
    );
    for (version, column) in [(2, "a"), (3, "b")] {
        t.write(
            &format!("migrations/2024010{version}000000_add_{column}.sql"),
            &format!(
                "-- migrate:up\nALTER TABLE things ADD COLUMN {column} int;\n\n-- migrate:down\nALTER TABLE things DROP COLUMN {column};\n"
            ),
        );
    }
    t.write(
        "plans/cols.yaml",
        "plan: cols
phases:
  - id: add-a
    kind: migration
    role: expand
    title: Add a
    migration: add_a
  - id: add-b
    kind: migration
    role: expand
    title: Add b
    migration: add_b
",
    );
    let started = Instant::now();
    expect_success(&t.run(&["migrate", "up"]), "migrate up")?;
    // A command's run time, as the window a kill falls in.
    let mut window = started.elapsed();
    for step in STEPS {
        let mut args: Vec<&str> = step.args.to_vec();
        if args[0] == "confirm" {
            args.extend(["--by", "fault-inject"]);
        }
        if t.rng.bool() {
            t.run_and_kill(&args, window);
            phases_agree(t).map_err(|e| format!("after a killed {}: {e}", args.join(" ")))?;
        }
        // `confirm PLAN PHASE` and `rollback PLAN PHASE` act once: run
        // again whatever the killed one did (a no-op when it had finished).
        // `advance` names no phase, so, as an operator would, it is run
        // again only if the state shows the killed one had not done it.
        let names_its_phase = args[0] != "advance";
        if names_its_phase || t.phase_state("cols", step.phase) != step.after {
            let started = Instant::now();
            let output = t.run(&args);
            window = started.elapsed();
            let state = t.phase_state("cols", step.phase);
            if state != step.after {
                return Err(format!(
                    "{} left {} {state}, not {}: {}",
                    args.join(" "),
                    step.phase,
                    step.after,
                    output_text(&output)
                ));
            }
        }
        phases_agree(t).map_err(|e| format!("after {}: {e}", args.join(" ")))?;
    }
    // Each verb acted once.
    for phase in ["add-a", "add-b"] {
        let counts = t.value(&format!(
            "SELECT string_agg(action || '=' || n, ' ' ORDER BY action) FROM (
                 SELECT action, count(*) AS n FROM orch.events
                 WHERE plan = 'cols' AND phase = '{phase}'
                   AND action IN ('migration_applied', 'confirmed', 'rolled_back')
                 GROUP BY action) AS a"
        ));
        if counts != "confirmed=1 migration_applied=1 rolled_back=1" {
            return Err(format!("{phase}: events {counts}, expected each once"));
        }
    }
    Ok(())
}

/// Each migration phase's column exists exactly when its migration is
/// recorded, and its state says so.
fn phases_agree(t: &Trial<'_>) -> Result<(), String> {
    for (phase, migration, column) in [("add-a", "add_a", "a"), ("add-b", "add_b", "b")] {
        let recorded = t.value(&format!(
            "SELECT count(*) FROM orch.migrations WHERE name = '{migration}'"
        ));
        let exists = t.value(&format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'things' AND column_name = '{column}'"
        ));
        let state = t.phase_state("cols", phase);
        let confirmations = t.value(&format!(
            "SELECT count(*) FROM orch.events WHERE plan = 'cols' AND phase = '{phase}' AND action = 'confirmed'"
        ));
        let consistent = recorded == exists
            && match state.as_str() {
                "done" | "confirmed" => recorded == "1",
                "pending" => recorded == "0",
                // Killed mid-way: resumable, either side of the commit.
                "running" | "failed" => true,
                _ => false,
            }
            && (state != "confirmed" || confirmations != "0")
            && confirmations.parse::<u32>().unwrap_or(9) <= 1;
        if !consistent {
            return Err(format!(
                "{phase}: state {state}, migration recorded {recorded} time(s), column present {exists}, {confirmations} confirmation(s)"
            ));
        }
    }
    Ok(())
}

/// `migrate up` over many migrations, killed 1 to 3 times, then finished:
/// each migration's table and log row exist exactly when it is recorded.
fn migrate_up(t: &mut Trial<'_>, count: usize) -> Result<(), String> {
    t.write(
        "migrations/20230101000000_create_log.sql",
        "-- migrate:up\nCREATE TABLE log (v int NOT NULL);\n\n-- migrate:down\nDROP TABLE log;\n",
    );
    for i in 1..=count {
        t.write(
            &format!("migrations/2024010100{i:04}_m{i}.sql"),
            &format!(
                "-- migrate:up\nCREATE TABLE m{i} (x int);\nINSERT INTO log VALUES ({i});\n\n-- migrate:down\nDROP TABLE m{i};\nDELETE FROM log WHERE v = {i};\n"
            ),
        );
    }
    let progress = "SELECT count(*) FROM orch.migrations";
    for _ in 0..t.rng.usize(1..=3) {
        let target = t.rng.i64(0..=count as i64);
        t.run_and_kill_at(&["migrate", "up"], progress, target);
        migrations_agree(t, false)?;
    }
    expect_success(&t.run(&["migrate", "up"]), "the last migrate up")?;
    migrations_agree(t, true)?;
    let recorded = t.value("SELECT count(*) FROM orch.migrations");
    if recorded != (count + 1).to_string() {
        return Err(format!(
            "{recorded} migrations recorded after the last migrate up, of {}",
            count + 1
        ));
    }
    Ok(())
}

fn migrations_agree(t: &Trial<'_>, finished: bool) -> Result<(), String> {
    let schema = t.value("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'orch' AND table_name = 'migrations'");
    if schema == "0" {
        return if finished {
            Err("orch's schema is missing".to_string())
        } else {
            Ok(())
        };
    }
    if t.value("SELECT to_regclass('public.log') IS NOT NULL") == "false" {
        return Ok(());
    }
    let disagreements = t.value(
        "WITH recorded AS (
             SELECT substring(name FROM 2)::int AS i FROM orch.migrations WHERE name ~ '^m[0-9]+$'),
         tables AS (
             SELECT substring(table_name FROM 2)::int AS i FROM information_schema.tables
             WHERE table_schema = 'public' AND table_name ~ '^m[0-9]+$'),
         logged AS (SELECT v AS i, count(*) AS n FROM log GROUP BY v)
         SELECT (SELECT count(*) FROM ((SELECT i FROM recorded) EXCEPT (SELECT i FROM tables)) AS a)
              + (SELECT count(*) FROM ((SELECT i FROM tables) EXCEPT (SELECT i FROM recorded)) AS b)
              + (SELECT count(*) FROM ((SELECT i FROM recorded) EXCEPT (SELECT i FROM logged)) AS c)
              + (SELECT count(*) FROM ((SELECT i FROM logged) EXCEPT (SELECT i FROM recorded)) AS d)
              + (SELECT count(*) FROM logged WHERE n <> 1)",
    );
    if disagreements != "0" {
        return Err(format!(
            "{disagreements} migrations whose table, log row and record disagree"
        ));
    }
    Ok(())
}

fn orch_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ORCH_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("this program's path");
    // target/debug/examples/fault_inject -> target/debug/orch
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("orch"))
        .expect("a folder above this program")
}

fn main() {
    let args = args();
    let orch = orch_binary();
    if !orch.is_file() {
        eprintln!(
            "no orch binary at {}: run `cargo build --bin orch` first, or set ORCH_BIN",
            orch.display()
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (_server, admin) = database_url_or_throwaway(ServerOptions::default())
        .unwrap_or_else(|e| panic!("a PostgreSQL to inject faults against: {e}"));
    println!(
        "fault injection: {} trials, seed {}, {} backfill rows, {} migrations",
        args.trials, args.seed, args.rows, args.migrations
    );
    let mut rng = fastrand::Rng::with_seed(args.seed);
    let mut figures = Figures::default();
    let started = Instant::now();
    for number in 0..args.trials {
        let scenario = SCENARIOS[number % SCENARIOS.len()];
        let name = format!("orch_fault_{}_{number}", std::process::id());
        runtime.block_on(async {
            let client = admin.connect("fault-inject").await.unwrap();
            client
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
                .await
                .unwrap();
        });
        let mut trial = Trial {
            dir: tempfile::tempdir().unwrap(),
            settings: admin.with_dbname(&name),
            orch: &orch,
            runtime: &runtime,
            rng: fastrand::Rng::with_seed(rng.u64(..)),
            kills: 0,
            missed: 0,
        };
        let outcome = match scenario {
            Scenario::Backfill { workers } => backfill(&mut trial, args.rows, workers),
            Scenario::Phases => phases(&mut trial),
            Scenario::MigrateUp => migrate_up(&mut trial, args.migrations),
        };
        figures.trials += 1;
        figures.kills += trial.kills;
        figures.missed += trial.missed;
        let verdict = match &outcome {
            Ok(()) => {
                figures.exact += 1;
                "exact".to_string()
            }
            Err(why) => {
                figures
                    .failures
                    .push(format!("trial {number} ({scenario:?}): {why}"));
                format!("NOT EXACT: {why}")
            }
        };
        println!(
            "trial {number:>3} {:<28} kills {} (missed {}): {verdict}",
            format!("{scenario:?}"),
            trial.kills,
            trial.missed
        );
        drop(trial);
        runtime.block_on(async {
            let client = admin.connect("fault-inject").await.unwrap();
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        });
    }
    println!(
        "\ntrials: {}, kills: {} (and {} planned after orch had finished), exact resumes: {}, failures: {}, in {:.0?}",
        figures.trials,
        figures.kills,
        figures.missed,
        figures.exact,
        figures.failures.len(),
        started.elapsed()
    );
    for failure in &figures.failures {
        println!("  {failure}");
    }
    if !figures.failures.is_empty() {
        std::process::exit(1);
    }
}
