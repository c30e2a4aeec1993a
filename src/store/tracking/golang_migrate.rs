//! golang-migrate's `schema_migrations`: `version bigint not null primary
//! key, dirty boolean not null`, holding ONE row: every migration up to and
//! including `version` is applied; `dirty` means the last one failed
//! half-way (golang-migrate/migrate, database/postgres/postgres.go,
//! `ensureVersionTable`, `SetVersion`, `Version`). No time is kept.

use super::{Read, Shape, ToolApplied};
use crate::migration::source::Format;
use crate::store::Store;

pub(super) const SHAPE: Shape = Shape {
    tool: Format::GolangMigrate,
    table: "schema_migrations",
    has: &["version", "dirty"],
    lacks: &[],
};

pub(super) async fn read(store: &Store, table: &str) -> Read {
    let rows = store
        .client()
        .query(
            &format!("SELECT version, dirty FROM {table} ORDER BY version"),
            &[],
        )
        .await?;
    let mut unfinished = Vec::new();
    if rows.len() > 1 {
        let versions: Vec<String> = rows
            .iter()
            .map(|r| r.get::<_, i64>(0).to_string())
            .collect();
        unfinished.push(format!(
            "it holds {} rows (versions {}) where golang-migrate keeps one",
            rows.len(),
            versions.join(", ")
        ));
    }
    let mut up_to = None;
    for row in &rows {
        let (version, dirty): (i64, bool) = (row.get(0), row.get(1));
        if dirty {
            unfinished.push(format!(
                "version {version} is dirty (dirty = true): it failed half-way"
            ));
        }
        // golang-migrate's "no version" (-1) may be left dirty by a failed
        // first migration; it applies nothing.
        if version >= 0 {
            up_to = Some(version);
        }
    }
    Ok((ToolApplied::UpTo(up_to), unfinished))
}
