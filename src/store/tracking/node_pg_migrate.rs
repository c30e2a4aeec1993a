//! node-pg-migrate's `pgmigrations`: `id serial primary key, name
//! varchar(255) not null, run_on timestamp not null`, one row per applied
//! migration, named by its file name without the extension
//! (salsita/node-pg-migrate, src/runner.ts, `ensureMigrationsTable`).
//! `run_on` has no time zone: it is read in the session's, as written.

use super::{Read, Shape, ToolApplied, ToolRecord};
use crate::migration::source::Format;
use crate::store::Store;

pub(super) const SHAPE: Shape = Shape {
    tool: Format::NodePgMigrate,
    table: "pgmigrations",
    has: &["id", "name", "run_on"],
    lacks: &[],
};

pub(super) async fn read(store: &Store, table: &str) -> Read {
    let rows = store
        .client()
        .query(
            &format!("SELECT name, run_on::timestamptz FROM {table} ORDER BY run_on, id"),
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
