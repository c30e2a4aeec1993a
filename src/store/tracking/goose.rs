//! goose's `goose_db_version`: `id` (serial, or an identity column in newer
//! goose), `version_id bigint not null, is_applied boolean not null, tstamp
//! timestamp default now()`. A log: the latest row (by id) of a version
//! decides whether it is applied (older goose inserted `is_applied = false`
//! rows on down; newer deletes). Version 0 is the row goose inserts when it
//! creates the table, not a migration (pressly/goose,
//! database/dialect/postgres.go and internal/dialect/dialectquery/postgres.go).

use super::{Read, Shape, ToolApplied, ToolRecord};
use crate::migration::source::Format;
use crate::store::Store;

pub(super) const SHAPE: Shape = Shape {
    tool: Format::Goose,
    table: "goose_db_version",
    has: &["id", "version_id", "is_applied", "tstamp"],
    lacks: &[],
};

pub(super) async fn read(store: &Store, table: &str) -> Read {
    let rows = store
        .client()
        .query(
            &format!(
                "SELECT version_id, tstamp::timestamptz FROM (
                   SELECT DISTINCT ON (version_id) version_id, is_applied, tstamp
                   FROM {table} ORDER BY version_id, id DESC
                 ) latest
                 WHERE is_applied AND version_id <> 0
                 ORDER BY version_id"
            ),
            &[],
        )
        .await?;
    let records = rows
        .iter()
        .map(|r| ToolRecord {
            id: r.get::<_, i64>(0).to_string(),
            applied_at: r.get(1),
        })
        .collect();
    Ok((ToolApplied::Each(records), Vec::new()))
}
