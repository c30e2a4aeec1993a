//! The simulated application of `orch demo`: writers inserting posts and
//! updating random posts' location at a steady rate, and a reader, all in
//! the write/read mode of the app version currently "deployed". Its SQL is
//! the application's, not orch's, so it lives here and not in the store.
//!
//! Each writer owns the posts whose id is congruent to its number (modulo
//! the writer count), so the location it last wrote for a post is exactly
//! what the table must hold at the end: no two writers race on one row.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{Mutex, RwLock};
use tokio::task::JoinHandle;

use super::samples::{Measurements, OpKind};
use crate::connect::ConnectionSettings;
use crate::error::Result;

/// The deployed application version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum AppVersion {
    /// Writes and reads lat, lng.
    V1,
    /// Writes lat, lng and loc; reads lat, lng.
    V2,
    /// Writes and reads only loc.
    V3,
}

impl AppVersion {
    pub fn describe(self) -> &'static str {
        match self {
            AppVersion::V1 => "v1 (writes and reads lat, lng)",
            AppVersion::V2 => "v2 (writes lat, lng and loc; reads lat, lng)",
            AppVersion::V3 => "v3 (writes and reads only loc)",
        }
    }
}

/// The location a post must have: `loc = point(lng, lat)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    pub lng: f64,
    pub lat: f64,
}

/// Where the initial rows' locations come from (the fill uses the same formula).
pub fn initial_location(id: i64) -> Location {
    Location {
        lat: ((id * 37) % 1800 - 900) as f64 / 10.0,
        lng: ((id * 91) % 3600 - 1800) as f64 / 10.0,
    }
}

/// The SQL that fills the table with `rows` v1 posts, matching `initial_location`.
pub fn fill_sql(rows: u64) -> String {
    format!(
        "INSERT INTO posts (url, lat, lng)
         SELECT 'https://example.com/post/' || g, ((g * 37) % 1800 - 900) / 10.0, ((g * 91) % 3600 - 1800) / 10.0
         FROM generate_series(1, {rows}) AS g"
    )
}

/// How the app should behave.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub writers: usize,
    /// Writes per second per writer.
    pub rate: u32,
    /// Share of writes that are inserts (the rest are updates).
    pub insert_share: f64,
    pub initial_rows: u64,
}

struct Shared {
    version: RwLock<AppVersion>,
    stage: AtomicUsize,
    measurements: std::sync::Mutex<Measurements>,
    stop: AtomicBool,
    inserts_by_version: [AtomicU64; 3],
}

impl Shared {
    fn record(
        &self,
        kind: OpKind,
        stage: u16,
        started: Instant,
        latency: Duration,
        error: Option<&str>,
    ) {
        self.measurements
            .lock()
            .unwrap()
            .record(kind, stage, started, latency, error);
    }
}

/// What one writer wrote: post id -> the location it must have.
type Written = HashMap<i64, Location>;

/// The running application.
pub struct App {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<Result<Option<Written>>>>,
    inserted: Arc<Mutex<Vec<i64>>>,
}

/// What the app did, for verification.
pub struct AppRecord {
    /// Every post the app wrote, with the location it must have.
    pub written: Written,
    /// Ids of the posts it inserted.
    pub inserted: Vec<i64>,
}

impl App {
    /// Connect the writers and the reader and start them in v1, stage `first_stage`.
    pub async fn start(
        settings: &ConnectionSettings,
        options: &AppOptions,
        first_stage: &str,
    ) -> Result<App> {
        let shared = Arc::new(Shared {
            version: RwLock::new(AppVersion::V1),
            stage: AtomicUsize::new(0),
            measurements: std::sync::Mutex::new(Measurements::start(first_stage)),
            stop: AtomicBool::new(false),
            inserts_by_version: Default::default(),
        });
        let inserted = Arc::new(Mutex::new(Vec::new()));
        // Like a web application: every request checks a connection out of a pool.
        let pool = settings.pool("demo app", options.writers + 1)?;
        let mut tasks = Vec::new();
        for writer in 0..options.writers {
            let pool = pool.clone();
            let shared = shared.clone();
            let inserted = inserted.clone();
            let options = options.clone();
            tasks.push(tokio::spawn(async move {
                write_loop(pool, shared, writer, options, inserted)
                    .await
                    .map(Some)
            }));
        }
        let reader = pool.clone();
        let reader_shared = shared.clone();
        let rows = options.initial_rows;
        let rate = options.rate;
        tasks.push(tokio::spawn(async move {
            read_loop(reader, reader_shared, rows, rate).await;
            Ok(None)
        }));
        Ok(App {
            shared,
            tasks,
            inserted,
        })
    }

    /// Start attributing operations to a new stage.
    pub fn begin_stage(&self, name: &str) {
        let mut measurements = self.shared.measurements.lock().unwrap();
        let index = measurements.begin_stage(name);
        self.shared
            .stage
            .store(usize::from(index), Ordering::SeqCst);
    }

    /// "Deploy" a version: wait until no operation of the old version is in
    /// flight (the old instances drain), then every new operation uses the new one.
    pub async fn deploy(&self, version: AppVersion) {
        *self.shared.version.write().await = version;
    }

    /// Inserts done so far by a version.
    pub fn inserts_by(&self, version: AppVersion) -> u64 {
        self.shared.inserts_by_version[version as usize].load(Ordering::SeqCst)
    }

    /// Wait until `version` has inserted at least `n` more posts (or timeout).
    pub async fn wait_for_inserts(&self, version: AppVersion, n: u64, timeout: Duration) -> bool {
        let start = self.inserts_by(version);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.inserts_by(version) >= start + n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Stop every task; return what the app wrote and what it measured.
    pub async fn stop(self) -> Result<(AppRecord, Measurements)> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut written = Written::new();
        for task in self.tasks {
            if let Some(part) = task.await.expect("app task panicked")? {
                written.extend(part);
            }
        }
        let measurements = {
            let mut measurements = self.shared.measurements.lock().unwrap();
            measurements.finish();
            std::mem::replace(&mut *measurements, Measurements::start(""))
        };
        let inserted = self.inserted.lock().await.clone();
        Ok((AppRecord { written, inserted }, measurements))
    }
}

/// PostgreSQL's message for a failed statement (what the app would log).
fn error_text(e: &tokio_postgres::Error) -> String {
    crate::error::PgDiagnostic::from_driver(e).map_or_else(|| e.to_string(), |d| d.message)
}

/// A location with one decimal, exactly representable as NUMERIC and
/// round-tripping through float8 unchanged.
fn random_location() -> Location {
    Location {
        lat: fastrand::i32(-900..=900) as f64 / 10.0,
        lng: fastrand::i32(-1800..=1800) as f64 / 10.0,
    }
}

async fn write_loop(
    pool: Pool,
    shared: Arc<Shared>,
    writer: usize,
    options: AppOptions,
    inserted: Arc<Mutex<Vec<i64>>>,
) -> Result<Written> {
    let writers = options.writers as i64;
    let mut written = Written::new();
    let mut own_inserts: Vec<i64> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(
        1.0 / f64::from(options.rate.max(1)),
    ));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut serial = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        let version_guard = shared.version.read().await;
        let version = *version_guard;
        let stage = shared.stage.load(Ordering::SeqCst) as u16;
        let location = random_location();
        let lat = format!("{:.1}", location.lat);
        let lng = format!("{:.1}", location.lng);
        let insert = fastrand::f64() < options.insert_share;
        let started = Instant::now();
        let client = match pool.get().await {
            Ok(client) => client,
            Err(e) => {
                drop(version_guard);
                let text = format!("no connection: {e}");
                shared.record(
                    OpKind::Write,
                    stage,
                    started,
                    started.elapsed(),
                    Some(&text),
                );
                continue;
            }
        };
        let outcome: std::result::Result<i64, tokio_postgres::Error> = if insert {
            serial += 1;
            let url = format!("https://example.com/w{writer}/{serial}");
            let sql = match version {
                AppVersion::V1 => {
                    "INSERT INTO posts (url, lat, lng) VALUES ($1, $2::text::numeric, $3::text::numeric) RETURNING id"
                }
                AppVersion::V2 => {
                    "INSERT INTO posts (url, lat, lng, loc) VALUES ($1, $2::text::numeric, $3::text::numeric, point($3::text::float8, $2::text::float8)) RETURNING id"
                }
                AppVersion::V3 => {
                    "INSERT INTO posts (url, loc) VALUES ($1, point($3::text::float8, $2::text::float8)) RETURNING id"
                }
            };
            client
                .query_one(sql, &[&url, &lat, &lng])
                .await
                .map(|row| row.get::<_, i32>(0) as i64)
        } else {
            // An own post: an initial one (id = writer + 1 + k * writers) or one it inserted.
            let pick_inserted = !own_inserts.is_empty() && fastrand::f64() < 0.3;
            let id = if pick_inserted {
                own_inserts[fastrand::usize(..own_inserts.len())]
            } else {
                let slots = (options.initial_rows as i64 - writer as i64 - 1) / writers + 1;
                writer as i64 + 1 + fastrand::i64(0..slots.max(1)) * writers
            };
            let sql = match version {
                AppVersion::V1 => {
                    "UPDATE posts SET lat = $2::text::numeric, lng = $3::text::numeric WHERE id = $1"
                }
                AppVersion::V2 => {
                    "UPDATE posts SET lat = $2::text::numeric, lng = $3::text::numeric, loc = point($3::text::float8, $2::text::float8) WHERE id = $1"
                }
                AppVersion::V3 => {
                    "UPDATE posts SET loc = point($3::text::float8, $2::text::float8) WHERE id = $1"
                }
            };
            let id32 = id as i32;
            client
                .execute(sql, &[&id32, &lat, &lng])
                .await
                .map(|n| if n == 1 { id } else { -1 })
        };
        let latency = started.elapsed();
        drop(version_guard);
        match outcome {
            Ok(id) if id > 0 => {
                written.insert(id, location);
                if insert {
                    own_inserts.push(id);
                    inserted.lock().await.push(id);
                    shared.inserts_by_version[version as usize].fetch_add(1, Ordering::SeqCst);
                }
                shared.record(OpKind::Write, stage, started, latency, None);
            }
            Ok(_) => shared.record(
                OpKind::Write,
                stage,
                started,
                latency,
                Some("an update found no row"),
            ),
            Err(e) => shared.record(
                OpKind::Write,
                stage,
                started,
                latency,
                Some(&error_text(&e)),
            ),
        }
    }
    Ok(written)
}

async fn read_loop(pool: Pool, shared: Arc<Shared>, rows: u64, rate: u32) {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shared.stop.load(Ordering::SeqCst) {
        ticker.tick().await;
        let version_guard = shared.version.read().await;
        let stage = shared.stage.load(Ordering::SeqCst) as u16;
        let id = fastrand::i32(1..=rows.max(1) as i32);
        let sql = match *version_guard {
            AppVersion::V1 | AppVersion::V2 => {
                "SELECT lat::float8, lng::float8 FROM posts WHERE id = $1"
            }
            AppVersion::V3 => "SELECT loc[1], loc[0] FROM posts WHERE id = $1",
        };
        let started = Instant::now();
        let result = match pool.get().await {
            Ok(client) => client
                .query_opt(sql, &[&id])
                .await
                .map_err(|e| error_text(&e)),
            Err(e) => Err(format!("no connection: {e}")),
        };
        let latency = started.elapsed();
        drop(version_guard);
        // One text for every missing post, so the distinct texts stay few.
        let error = match &result {
            Ok(Some(_)) => None,
            Ok(None) => Some("a post the reader looked up was not found"),
            Err(text) => Some(text.as_str()),
        };
        shared.record(OpKind::Read, stage, started, latency, error);
    }
}
