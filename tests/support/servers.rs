//! Throwaway servers of a test's own, beside the shared one: a fleet test
//! starts several, creates databases on them, and stops one the way
//! `pg_ctl stop -m immediate` does, then restarts it on the same files.
//! They are always throwaway servers (even with `DATABASE_URL` set): a test
//! that stops a server must own it.

use orch::connect::ConnectionSettings;
use orch::pg_server::{PgServer, ServerOptions};
use tokio::runtime::Runtime;

pub struct OwnServer {
    pub server: PgServer,
    runtime: Runtime,
}

impl OwnServer {
    /// Start a fresh server (data, socket and log in the system temp dir;
    /// as root, run by the `postgres` OS user).
    pub fn start() -> OwnServer {
        // fsync stays off (a process crash keeps the OS's cache), but a
        // commit reaches the WAL before it returns, as on a real server, so
        // stopping the server immediately loses no committed work except
        // what chose synchronous_commit off (orch's backfill batches).
        let options = ServerOptions {
            max_connections: 100,
            settings: vec![("synchronous_commit".to_string(), "on".to_string())],
            ..ServerOptions::default()
        };
        let server =
            PgServer::start(options).unwrap_or_else(|e| panic!("cannot start a server: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        OwnServer { server, runtime }
    }

    /// `postgresql://` URL of a database on it (no password: trust auth).
    pub fn url(&self, dbname: &str) -> String {
        self.server.url(dbname)
    }

    pub fn settings(&self, dbname: &str) -> ConnectionSettings {
        ConnectionSettings::from_connection_string(&self.server.connection_string(dbname)).unwrap()
    }

    /// Run SQL in `dbname`.
    pub fn execute(&self, dbname: &str, sql: &str) {
        let settings = self.settings(dbname);
        self.runtime.block_on(async {
            let client = settings.connect("orch fleet test").await.expect("connect");
            client
                .batch_execute(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        })
    }

    /// The one value of a one-row, one-column query in `dbname`, as text.
    pub fn value(&self, dbname: &str, sql: &str) -> Option<String> {
        let settings = self.settings(dbname);
        self.runtime.block_on(async {
            let client = settings.connect("orch fleet test").await.expect("connect");
            let rows = client
                .simple_query(sql)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
            let values: Vec<Option<String>> = rows
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).map(str::to_string))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(values.len(), 1, "{sql} returned {} rows", values.len());
            values[0].clone()
        })
    }

    pub fn create_database(&self, name: &str) {
        self.execute(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE template0"),
        );
    }

    /// `pg_ctl stop -m immediate`: no checkpoint; crash recovery at restart.
    pub fn stop_immediate(&mut self) {
        self.server.stop_immediate();
    }

    pub fn restart(&mut self) {
        self.server
            .restart()
            .unwrap_or_else(|e| panic!("cannot restart the server: {e}"));
    }
}
