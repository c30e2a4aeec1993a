//! `orch demo`: the posts plan under live simulated traffic. It starts a
//! throwaway PostgreSQL (or uses `--database-url`), creates and fills the
//! posts table, runs a simulated application (`app`), walks
//! `plans/posts-location.yaml` through the same engine calls as `orch
//! advance` / `orch confirm`, and verifies (`verify`) that no write failed
//! and no row was lost. `--naive` runs the textbook one-transaction
//! migration under the same traffic instead, to show what the plan avoids.

pub mod accounting;
pub mod app;
pub mod samples;
pub mod timeline;
pub mod verify;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use crate::connect::ConnectionSettings;
use crate::engine::lock_retry::LockRetryPolicy;
use crate::engine::migrator::{MigrateOptions, UpTarget};
use crate::engine::plan_runner::PlanOptions;
use crate::engine::workspace::{Folders, Workspace};
use crate::error::{Error, Result};
use crate::events::{Event, Reporter};
use crate::pg_server::{PgServer, ServerOptions};
use crate::plan::BackfillOverrides;
use crate::stop::StopSignal;
use crate::timefmt;
use accounting::{Moved, StageStats};
use app::{App, AppOptions, AppVersion};
use samples::Dropped;
use timeline::Timeline;
use verify::Verification;

const PLAN: &str = "posts-location";
const OPERATOR: &str = "demo operator";

/// The repository's posts migrations and plan, built into the binary so the
/// demo runs from anywhere and never touches the current directory.
const PROJECT_FILES: [(&str, &str); 4] = [
    (
        "migrations/20240101000000_create_posts.sql",
        include_str!("../../migrations/20240101000000_create_posts.sql"),
    ),
    (
        "migrations/20240102000000_add_posts_loc.sql",
        include_str!("../../migrations/20240102000000_add_posts_loc.sql"),
    ),
    (
        "migrations/20240103000000_drop_posts_lat_lng.sql",
        include_str!("../../migrations/20240103000000_drop_posts_lat_lng.sql"),
    ),
    (
        "plans/posts-location.yaml",
        include_str!("../../plans/posts-location.yaml"),
    ),
];

/// The textbook migration `--naive` runs: one transaction, under traffic.
pub const NAIVE_MIGRATION: &str = "BEGIN;
ALTER TABLE posts ADD COLUMN loc POINT;
UPDATE posts SET loc = point(lng, lat);
ALTER TABLE posts DROP COLUMN lat, DROP COLUMN lng;
COMMIT;";

/// How to run the demo.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub database_url: Option<String>,
    pub rows: u64,
    pub writers: usize,
    /// Writes per second per writer.
    pub rate: u32,
    pub naive: bool,
    /// Hold a long transaction on posts for this long while phase 1 runs.
    pub long_reader: Option<Duration>,
    /// Traffic time in each stage besides the work itself.
    pub dwell: Duration,
    pub policy: LockRetryPolicy,
    pub backfill_workers: Option<u32>,
}

/// What the demo shows at the end.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub mode: &'static str,
    pub server: String,
    pub rows: u64,
    pub stages: Vec<StageStats>,
    /// Operations that started in one stage and count in another (see `accounting`).
    pub moved: Vec<Moved>,
    /// Operations past the sample limit: counted, in no stage.
    pub dropped: Dropped,
    pub verification: Verification,
    pub passed: bool,
    /// Why it did not pass, in one sentence.
    pub problem: Option<String>,
    /// Write latency over time, from the same samples as `stages`.
    #[serde(skip)]
    pub timeline: Timeline,
}

/// Where the demo runs: a throwaway server it owns, or the given database.
struct Target {
    settings: ConnectionSettings,
    server: Option<PgServer>,
    description: String,
}

/// Passes progress and lock waits to the operator's reporter and keeps the
/// engine's other events for the narration.
struct Narrator<'a> {
    inner: &'a dyn Reporter,
    kept: Mutex<Vec<Event>>,
}

impl Reporter for Narrator<'_> {
    fn report(&self, event: Event) {
        match event {
            Event::LockRetry { .. }
            | Event::BackfillStarted { .. }
            | Event::BackfillBatch { .. }
            | Event::Warning { .. } => self.inner.report(event),
            Event::BackfillEnded { .. } => {
                self.inner.report(event.clone());
                self.kept.lock().unwrap().push(event);
            }
            other => self.kept.lock().unwrap().push(other),
        }
    }
}

impl Narrator<'_> {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.kept.lock().unwrap())
    }

    fn say(&self, message: String) {
        self.inner.report(Event::Info { message });
    }
}

/// Run the demo.
pub async fn run(options: &DemoOptions, reporter: &dyn Reporter) -> Result<DemoReport> {
    let narrator = Narrator {
        inner: reporter,
        kept: Mutex::new(Vec::new()),
    };
    let target = target(options).await?;
    narrator.say(target.description.clone());
    // Ctrl-C (or SIGTERM) drops the walkthrough, and with it the writers'
    // pool and the demo's project directory; the server goes below.
    let result = tokio::select! {
        result = run_on(options, &target, &narrator) => result,
        () = interrupt() => Err(Error::Interrupted {
            resume: "the demo stopped; its throwaway server and files are removed (`orch demo` starts afresh)".to_string(),
        }),
    };
    if let Some(server) = target.server {
        let _ = tokio::task::spawn_blocking(move || drop(server)).await;
    }
    result
}

/// The first Ctrl-C or SIGTERM.
async fn interrupt() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    crate::stop::interrupted(&mut term).await;
}

async fn target(options: &DemoOptions) -> Result<Target> {
    if let Some(url) = &options.database_url {
        let settings = ConnectionSettings::resolve(Some(url))?;
        let db = settings.connect("orch demo").await?;
        let busy = db
            .query_one(
                "SELECT to_regclass('posts') IS NOT NULL OR to_regnamespace('orch') IS NOT NULL",
                &[],
            )
            .await
            .map_err(|e| Error::db("cannot inspect the demo database", e))?;
        if busy.get::<_, bool>(0) {
            return Err(Error::refused(
                format!(
                    "the demo needs an empty database, and {} already has a posts table or an orch schema; it will not touch them",
                    settings.describe()
                ),
                Some(
                    "create an empty database for it, or run `orch demo` without --database-url"
                        .to_string(),
                ),
            ));
        }
        let description = format!("using the database at {}", settings.describe());
        return Ok(Target {
            settings,
            server: None,
            description,
        });
    }
    let started = Instant::now();
    let server = tokio::task::spawn_blocking(|| PgServer::start(ServerOptions::default()))
        .await
        .map_err(|e| Error::ServerStart {
            message: e.to_string(),
        })??;
    let admin = ConnectionSettings::from_connection_string(&server.connection_string("postgres"))?;
    let client = admin.connect("orch demo").await?;
    client
        .batch_execute("CREATE DATABASE orch_demo")
        .await
        .map_err(|e| Error::db("cannot create the demo database", e))?;
    let description = format!(
        "started a throwaway PostgreSQL ({}) in {} (socket in {}); it is removed when the demo ends",
        server.bin_dir().display(),
        timefmt::duration(started.elapsed()),
        server.socket_dir().display()
    );
    Ok(Target {
        settings: admin.with_dbname("orch_demo"),
        server: Some(server),
        description,
    })
}

async fn run_on(
    options: &DemoOptions,
    target: &Target,
    narrator: &Narrator<'_>,
) -> Result<DemoReport> {
    let project = tempfile::Builder::new()
        .prefix("orch-demo-")
        .tempdir()
        .map_err(|e| Error::io("cannot create a temp dir", std::env::temp_dir(), e))?;
    for (path, text) in PROJECT_FILES {
        let path = project.path().join(path);
        std::fs::create_dir_all(path.parent().expect("has a parent"))
            .and_then(|_| std::fs::write(&path, text))
            .map_err(|e| Error::io("cannot write demo file", &path, e))?;
    }
    let folders = Folders {
        migrations: &project.path().join("migrations"),
        format: None,
        plans: &project.path().join("plans"),
    };
    let workspace = Workspace::open(folders, &target.settings, "orch demo").await?;
    // The demo's own statements (filling posts, verifying them) are the
    // application's, not orch's: they use a connection of their own.
    let db = target.settings.connect("orch demo (app setup)").await?;

    // orch migrate up: creates posts, stops before the plan's migration.
    let migrate_options = MigrateOptions {
        policy: options.policy.clone(),
        dry_run: false,
        allow_out_of_order: false,
        allow_changed: false,
        actor: OPERATOR.to_string(),
        lock_wait: Duration::from_secs(5),
        cancel_orphans: false,
    };
    let owners = workspace.owners().await?;
    let migrator = workspace.migrator(&owners, &migrate_options, narrator);
    let up = migrator.up(UpTarget::All).await?;
    narrator.take();
    narrator.say(format!(
        "orch migrate up: applied {}{}",
        up.applied.join(", "),
        up.stopped_before
            .as_ref()
            .map(|(id, o)| format!(
                "; stopped before {id}, which belongs to plan {} phase {}",
                o.plan, o.position
            ))
            .unwrap_or_default()
    ));

    let started = Instant::now();
    db.batch_execute(&app::fill_sql(options.rows))
        .await
        .map_err(|e| Error::db("cannot fill posts", e))?;
    db.batch_execute("ANALYZE posts")
        .await
        .map_err(|e| Error::db("cannot analyze posts", e))?;
    narrator.say(format!(
        "filled posts with {} rows in {}",
        options.rows,
        timefmt::duration(started.elapsed())
    ));

    let app_options = AppOptions {
        writers: options.writers,
        rate: options.rate,
        insert_share: 0.3,
        initial_rows: options.rows,
    };
    let app = App::start(&target.settings, &app_options, "0 baseline (app v1)").await?;
    narrator.say(format!(
        "app {} running: {} writers at {} writes/s in all, 1 reader",
        AppVersion::V1.describe(),
        options.writers,
        options.writers as u32 * options.rate
    ));
    tokio::time::sleep(options.dwell).await;

    let walked = if options.naive {
        naive(options, &db, &app, narrator).await
    } else {
        walk_plan(options, &workspace, &target.settings, &app, narrator).await
    };
    let (record, measurements) = app.stop().await?;
    walked?;
    narrator.say("stopped the app; verifying every post...".to_string());
    let verification = verify::verify(&db, options.rows, &record).await?;
    let accounts = accounting::account(&measurements);
    let dropped = measurements.dropped;
    let writes_failed: u64 =
        accounts.stages.iter().map(|s| s.writes_failed).sum::<u64>() + dropped.writes_failed;
    let reads_failed: u64 =
        accounts.stages.iter().map(|s| s.reads_failed).sum::<u64>() + dropped.reads_failed;
    let problem = if writes_failed > 0 {
        Some(format!("{writes_failed} application writes failed"))
    } else if reads_failed > 0 {
        Some(format!("{reads_failed} application reads failed"))
    } else if !verification.passed() {
        Some(format!(
            "{} posts have a wrong loc and {} are missing",
            verification.rows_wrong, verification.rows_missing
        ))
    } else if !options.naive && !verification.lat_lng_dropped {
        Some("lat and lng are still there".to_string())
    } else {
        None
    };
    Ok(DemoReport {
        mode: if options.naive { "naive" } else { "plan" },
        server: target.description.clone(),
        rows: options.rows,
        stages: accounts.stages,
        moved: accounts.moved,
        dropped,
        passed: problem.is_none(),
        verification,
        problem,
        timeline: timeline::timeline(&measurements, timeline::BUCKET),
    })
}

/// Walk the plan as an operator would, through the engine's advance/confirm.
async fn walk_plan(
    options: &DemoOptions,
    workspace: &Workspace,
    settings: &ConnectionSettings,
    app: &App,
    narrator: &Narrator<'_>,
) -> Result<()> {
    let plan_options = PlanOptions {
        actor: OPERATOR.to_string(),
        policy: options.policy.clone(),
        plan_lock_wait: Duration::from_secs(5),
        migration_lock_wait: Duration::from_secs(5),
        backfill: BackfillOverrides {
            workers: options.backfill_workers,
            ..Default::default()
        },
        cancel_orphans: false,
        dry_run: false,
    };
    let stop = StopSignal::new();
    let engine = workspace.plan_engine(&plan_options, narrator, &stop);
    let plan = workspace
        .plans
        .get(PLAN)
        .expect("the demo plan is built in");
    let total = plan.spec.phases.len();
    for (index, phase) in plan.spec.phases.iter().enumerate() {
        let position = index + 1;
        app.begin_stage(&format!("{position} {}", phase.id));
        let long_reader = match (position, options.long_reader) {
            (1, Some(hold)) => Some(hold_posts(settings, hold, narrator).await?),
            _ => None,
        };
        let started = Instant::now();
        engine.advance(PLAN).await?;
        let mut line = format!("phase {position}/{total} {}: ", phase.id);
        let events = narrator.take();
        line.push_str(&summary(&events, started.elapsed()));
        if let Some(reader) = long_reader {
            let _ = reader.await;
        }
        if let Some(version) = match phase.id.as_str() {
            "deploy-dual-write" => Some(AppVersion::V2),
            "deploy-write-loc-only" => Some(AppVersion::V3),
            _ => None,
        } {
            app.deploy(version).await;
            line.push_str(&format!("; deployed app {}", version.describe()));
            if !app
                .wait_for_inserts(version, 10, Duration::from_secs(20))
                .await
            {
                return Err(Error::failed(format!(
                    "app {version:?} wrote nothing within 20 s"
                )));
            }
        }
        tokio::time::sleep(options.dwell).await;
        engine
            .confirm(PLAN, Some(&phase.id), OPERATOR, Some("orch demo"))
            .await?;
        let checks = narrator
            .take()
            .iter()
            .filter_map(|e| match e {
                Event::ChecksEvaluated { outcomes, .. } => {
                    Some(outcomes.iter().filter(|o| o.passed).count())
                }
                _ => None,
            })
            .sum::<usize>();
        if checks > 0 {
            line.push_str(&format!("; {checks} check(s) passed"));
        }
        line.push_str("; confirmed");
        narrator.say(line);
    }
    Ok(())
}

/// One phrase for what `advance` did, from the engine's events.
fn summary(events: &[Event], elapsed: Duration) -> String {
    let mut parts = Vec::new();
    for event in events {
        match event {
            Event::GateOpened { title, .. } => parts.push(format!("gate opened ({title})")),
            Event::PhaseDone { summary, .. } => parts.push(summary.clone()),
            Event::ChecksEvaluated {
                purpose, outcomes, ..
            } if purpose == "guard" => {
                parts.push(format!("guard passed ({} check(s))", outcomes.len()))
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        parts.push(format!("done in {}", timefmt::duration(elapsed)));
    }
    parts.join(", ")
}

/// A long-running report: holds a transaction that has read posts (so an
/// ALTER TABLE must wait for it) for `hold`, then commits.
async fn hold_posts(
    settings: &ConnectionSettings,
    hold: Duration,
    narrator: &Narrator<'_>,
) -> Result<tokio::task::JoinHandle<()>> {
    let client = settings.connect("demo long report").await?;
    client
        .batch_execute("BEGIN; SELECT count(*) FROM posts;")
        .await
        .map_err(|e| Error::db("cannot start the long report", e))?;
    narrator.say(format!(
        "a long-running report holds a transaction on posts for {}; phase 1's ALTER must wait for it",
        timefmt::duration(hold)
    ));
    Ok(tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        let _ = client.batch_execute("COMMIT").await;
    }))
}

/// `--naive`: the same change as one textbook migration, under the same traffic.
async fn naive(
    options: &DemoOptions,
    db: &Client,
    app: &App,
    narrator: &Narrator<'_>,
) -> Result<()> {
    app.begin_stage("1 textbook migration (one transaction)");
    narrator.say("running the textbook migration in one transaction: add loc, copy every row, drop lat and lng".to_string());
    let started = Instant::now();
    db.batch_execute(NAIVE_MIGRATION)
        .await
        .map_err(|e| Error::db("the textbook migration failed", e))?;
    narrator.say(format!(
        "textbook migration committed after {}: every query on posts waited behind it",
        timefmt::duration(started.elapsed())
    ));
    app.begin_stage("2 after it (app v1 still deployed)");
    tokio::time::sleep(options.dwell * 2).await;
    narrator.say("app v1 still writes lat and lng, which are gone".to_string());
    Ok(())
}
