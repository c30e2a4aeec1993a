//! The health throttle against a real streaming standby: a backfill waits
//! while the standby's replay lag is over `max_replica_lag`, says so in its
//! progress and in `orch status`, and goes on by itself once the standby
//! catches up. Also `max_wal_rate`.

use std::process::{Command, Stdio};
use std::time::Duration;

use orch::pg_server::{PgServer, PgStandby, ServerOptions};
use tokio::runtime::Runtime;

use super::{SUM_PLAN_SET, SUM_PLAN_WHERE, numbers_table, plan, progress, sum_plan, wrong_rows};
use crate::support::{Run, Session, finish, wait_until};

/// A primary of its own (the shared test server has no standby) and a
/// streaming standby of it.
struct Replicated {
    runtime: Runtime,
    primary: PgServer,
    standby: PgStandby,
    project: tempfile::TempDir,
}

impl Replicated {
    fn start() -> Replicated {
        let primary = PgServer::start(ServerOptions::default()).expect("a primary");
        let standby = primary.start_standby().expect("a standby of it");
        let project = tempfile::Builder::new()
            .prefix("orch-project-")
            .tempdir()
            .unwrap();
        for sub in ["migrations", "plans"] {
            std::fs::create_dir_all(project.path().join(sub)).unwrap();
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Replicated {
            runtime,
            primary,
            standby,
            project,
        }
    }

    fn query(&self, conninfo: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        self.runtime.block_on(async {
            let settings =
                orch::connect::ConnectionSettings::from_connection_string(conninfo).unwrap();
            let client = settings.connect("orch test").await.unwrap();
            client
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect()
        })
    }

    fn on_primary(&self, sql: &str) -> Option<String> {
        self.query(&self.primary.connection_string("postgres"), sql)
            .pop()
            .and_then(|mut row| row.pop().flatten())
    }

    fn on_standby(&self, sql: &str) -> Option<String> {
        self.query(&self.standby.connection_string("postgres"), sql)
            .pop()
            .and_then(|mut row| row.pop().flatten())
    }

    fn orch(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
        command
            .args(args)
            .current_dir(self.project.path())
            .env("DATABASE_URL", self.primary.connection_string("postgres"))
            .env("ORCH_OPERATOR", "tester")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }
}

#[test]
fn a_lagging_standby_pauses_the_backfill_until_it_catches_up() {
    let r = Replicated::start();
    r.on_primary(
        "CREATE TABLE t (id serial PRIMARY KEY, a int NOT NULL, b int NOT NULL, s int, touched int NOT NULL DEFAULT 0);
         INSERT INTO t (a, b) SELECT g, g * 2 FROM generate_series(1, 20000) AS g;
         ANALYZE t;",
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            r.on_primary("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND replay_lsn >= pg_current_wal_lsn()")
                .as_deref()
                == Some("1")
        }),
        "the standby never caught up"
    );
    assert_eq!(
        r.on_standby("SELECT count(*) FROM t").as_deref(),
        Some("20000")
    );
    // Replay stops; the standby still receives WAL and reports its position.
    r.on_standby("SELECT pg_wal_replay_pause()");
    std::fs::write(
        r.project.path().join("plans/fill.yaml"),
        plan(
            "t",
            SUM_PLAN_SET,
            SUM_PLAN_WHERE,
            "      max_batch: 500\n      max_rows_per_second: 5000\n      max_replica_lag: 1s\n",
        ),
    )
    .unwrap();
    let child = r.orch(&["advance", "fill"]).spawn().unwrap();
    let waiting = || r.on_primary("SELECT string_agg(waiting, '; ') FROM orch.backfill_workers");
    assert!(
        wait_until(Duration::from_secs(60), || {
            r.on_primary("SELECT to_regclass('orch.backfill_workers') IS NOT NULL")
                .as_deref()
                == Some("t")
                && waiting().is_some_and(|w| w.starts_with("waiting for replica lag "))
        }),
        "the backfill never waited for the standby"
    );
    let scanned = || {
        r.on_primary("SELECT sum(rows_scanned) FROM orch.backfill_workers")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let (before, status) = (scanned(), r.orch(&["status"]).output().unwrap());
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("waiting for replica lag ") && status.contains(" > 1 s"),
        "{status}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(scanned(), before, "no batch runs while the standby lags");
    assert!(before < 20_000, "it waited in the middle ({before} rows)");
    r.on_standby("SELECT pg_wal_replay_resume()");
    let run = finish(child, &["advance", "fill"]);
    run.success()
        .stdout_has("backfill finished")
        .stderr_has("backfill: worker 0 waiting for replica lag ")
        .stderr_has("backfill: worker 0 goes on");
    assert_eq!(waiting(), None, "the wait is cleared");
    assert_eq!(
        r.on_primary("SELECT count(*) FROM t WHERE s IS DISTINCT FROM a + b OR touched <> 1")
            .as_deref(),
        Some("0")
    );
    assert!(wait_until(Duration::from_secs(60), || {
        r.on_standby("SELECT count(*) FROM t WHERE s IS DISTINCT FROM a + b")
            .as_deref()
            == Some("0")
    }));
}

#[test]
fn a_wal_rate_over_its_limit_slows_the_backfill() {
    let s = Session::new();
    numbers_table(&s, 60_000);
    // Updating 60,000 rows writes several MB of WAL; at most 1 MB/s. The
    // pauses keep the run longer than the rate's window (half a second),
    // however fast the batches are.
    sum_plan(
        &s,
        "      max_batch: 2000\n      pause: 30ms\n      max_wal_rate: 1MB/s\n",
    );
    let run: Run = s.orch(&["advance", "fill"]);
    run.success()
        .stderr_has("waiting for the WAL rate ")
        .stderr_has(" MB/s > 1.0 MB/s");
    assert_eq!(wrong_rows(&s), "0");
    assert_eq!(progress(&s).0, 60_000);
}
