//! dbmate's `schema_migrations`: `version varchar(255) primary key`, one
//! row per applied migration, the version text of its file name; no time
//! (amacneil/dbmate, pkg/driver/postgres/postgres.go,
//! `CreateMigrationsTable`).

use super::{Read, Shape, ToolApplied, ToolRecord};
use crate::migration::source::Format;
use crate::store::Store;

pub(super) const SHAPE: Shape = Shape {
    tool: Format::Dbmate,
    table: "schema_migrations",
    has: &["version"],
    lacks: &["dirty"],
};

pub(super) async fn read(store: &Store, table: &str) -> Read {
    let rows = store
        .client()
        .query(
            &format!("SELECT version FROM {table} ORDER BY version"),
            &[],
        )
        .await?;
    let records = rows
        .iter()
        .map(|r| ToolRecord {
            id: r.get(0),
            applied_at: None,
        })
        .collect();
    Ok((ToolApplied::Each(records), Vec::new()))
}
