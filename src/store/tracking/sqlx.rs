//! sqlx's `_sqlx_migrations`: `version bigint primary key, description text,
//! installed_on timestamptz default now(), success boolean, checksum bytea,
//! execution_time bigint`, one row per applied migration; `success = false`
//! is a migration that failed (sqlx refuses to go on: "dirty")
//! (launchbadge/sqlx, sqlx-postgres/src/migrate.rs,
//! `ensure_migrations_table`, `dirty_version`).

use super::{Read, Shape, ToolApplied, ToolRecord};
use crate::migration::source::Format;
use crate::store::Store;

pub(super) const SHAPE: Shape = Shape {
    tool: Format::Sqlx,
    table: "_sqlx_migrations",
    has: &["version", "description", "installed_on", "success"],
    lacks: &[],
};

pub(super) async fn read(store: &Store, table: &str) -> Read {
    let rows = store
        .client()
        .query(
            &format!(
                "SELECT version, description, installed_on, success FROM {table} ORDER BY version"
            ),
            &[],
        )
        .await?;
    let mut records = Vec::new();
    let mut unfinished = Vec::new();
    for row in &rows {
        let (version, description, success): (i64, String, bool) =
            (row.get(0), row.get(1), row.get(3));
        if success {
            records.push(ToolRecord {
                id: version.to_string(),
                applied_at: row.get(2),
            });
        } else {
            unfinished.push(format!(
                "version {version} ({description}) has success = false: it failed"
            ));
        }
    }
    Ok((ToolApplied::Each(records), unfinished))
}
