//! diesel's `__diesel_schema_migrations`: `version varchar(50) primary key,
//! run_on timestamp not null default current_timestamp`, one row per
//! applied migration (diesel-rs/diesel,
//! diesel/src/migration/setup_migration_table.sql). `run_on` has no time
//! zone: it is read in the session's, as it was written.

use super::{Read, Shape, ToolApplied, ToolRecord};
use crate::migration::source::Format;
use crate::store::Store;

pub(super) const SHAPE: Shape = Shape {
    tool: Format::Diesel,
    table: "__diesel_schema_migrations",
    has: &["version", "run_on"],
    lacks: &[],
};

pub(super) async fn read(store: &Store, table: &str) -> Read {
    let rows = store
        .client()
        .query(
            &format!("SELECT version, run_on::timestamptz FROM {table} ORDER BY version"),
            &[],
        )
        .await?;
    let records = rows
        .iter()
        .map(|r| ToolRecord {
            id: r.get(0),
            applied_at: r.get(1),
        })
        .collect();
    Ok((ToolApplied::Each(records), Vec::new()))
}
