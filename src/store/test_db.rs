//! For tests of the store and the engine against a real PostgreSQL: a
//! fresh database per test, on the server at `DATABASE_URL` or else on a
//! throwaway one this test binary starts once (as the integration tests'
//! harness does), and the other tools' programs the integration tests use.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::connect::ConnectionSettings;
use crate::pg_server::{PgServer, ServerOptions, database_url_or_throwaway};
use crate::store::Store;

/// npm-installed tools and the URL they connect with, shared with the
/// integration tests.
#[path = "../../tests/support/programs.rs"]
pub(crate) mod programs;

struct Server {
    /// Kept running for the whole test binary (None with DATABASE_URL).
    _local: Option<PgServer>,
    admin: ConnectionSettings,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

fn admin() -> ConnectionSettings {
    SERVER
        .get_or_init(|| {
            let (local, admin) = database_url_or_throwaway(ServerOptions::default())
                .unwrap_or_else(|e| panic!("cannot run database tests: {e}"));
            Server {
                _local: local,
                admin,
            }
        })
        .admin
        .clone()
}

/// A fresh, empty database, dropped with the value.
pub(crate) struct TestDb {
    pub name: String,
    pub settings: ConnectionSettings,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = tokio::task::spawn_blocking(admin).await.unwrap();
        let name = format!(
            "orch_unit_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        let client = admin.connect("orch unit test").await.unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await
            .unwrap();
        TestDb {
            settings: admin.with_dbname(&name),
            name,
        }
    }

    /// A store on this database.
    pub async fn store(&self) -> Store {
        Store::open(&self.settings, "orch unit test").await.unwrap()
    }

    pub async fn execute(&self, sql: &str) {
        let client = self.settings.connect("orch unit test").await.unwrap();
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Every row of `sql` as text cells (NULL: None).
    pub async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let client = self.settings.connect("orch unit test").await.unwrap();
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        messages
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
    }

    /// The one column of `sql`'s rows, NULL as "NULL".
    pub async fn column(&self, sql: &str) -> Vec<String> {
        self.query(sql)
            .await
            .into_iter()
            .map(|r| r[0].clone().unwrap_or_else(|| "NULL".to_string()))
            .collect()
    }

    /// A `postgresql://` URL, for other tools.
    pub fn url(&self) -> String {
        programs::url_of(&self.settings.to_connection_string())
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropped inside a test's runtime, which cannot be blocked on.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(client) = admin().connect("orch unit test").await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
