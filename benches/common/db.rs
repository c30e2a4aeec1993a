//! A fresh, empty database on the benchmark's server, shared by the
//! benchmarks that apply migrations into one database per run.

use orch::connect::ConnectionSettings;
use tokio::runtime::Runtime;

/// Drop `name` if it is there and create it empty; its connection settings.
pub fn fresh_database(
    runtime: &Runtime,
    admin: &ConnectionSettings,
    name: &str,
) -> ConnectionSettings {
    runtime.block_on(async {
        let client = admin.connect("orch bench").await.unwrap();
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await
            .unwrap();
    });
    admin.with_dbname(name)
}
