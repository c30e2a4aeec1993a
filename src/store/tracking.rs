//! Other migration tools' tracking tables, read (never written) so that
//! `orch migrate adopt` can take over their history. One file per tool
//! under `tracking/`: the table's name and the columns that tell it from
//! another tool's table of the same name, and how to read what it says is
//! applied. Each was checked against the tool's own source (see
//! docs/migrations.md, "Taking over another tool's history").

mod dbmate;
mod diesel;
mod golang_migrate;
mod goose;
mod node_pg_migrate;
mod sqlx;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::migration::source::Format;
use crate::store::Store;

/// What another tool's tracking table says is applied.
#[derive(Debug, Clone)]
pub struct ToolHistory {
    pub tool: Format,
    /// The table, schema-qualified: `public.schema_migrations`.
    pub table: String,
    pub applied: ToolApplied,
    /// What the tool itself marks as failed or half-done, in words naming
    /// the version (golang-migrate's `dirty`, sqlx's `success = false`).
    pub unfinished: Vec<String>,
}

/// The tool's applied migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolApplied {
    /// One row per applied migration.
    Each(Vec<ToolRecord>),
    /// golang-migrate's one row: every migration up to and including this
    /// version is applied (None: the table is empty, nothing is).
    UpTo(Option<i64>),
}

/// One applied migration as the tool records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRecord {
    /// What the tool calls the migration: its version or file name, as
    /// text (`Migration::tool_id` is matched against it).
    pub id: String,
    /// When the tool applied it, where it keeps that.
    pub applied_at: Option<DateTime<Utc>>,
}

/// A tool's table as orch recognises it.
struct Shape {
    tool: Format,
    /// The table name the tool uses by default (in the schema it finds
    /// through the search path, as an unqualified name does).
    table: &'static str,
    /// Columns it has, and columns it has not (dbmate's `schema_migrations`
    /// is golang-migrate's without `dirty`).
    has: &'static [&'static str],
    lacks: &'static [&'static str],
}

const SHAPES: [Shape; 6] = [
    dbmate::SHAPE,
    diesel::SHAPE,
    golang_migrate::SHAPE,
    goose::SHAPE,
    sqlx::SHAPE,
    node_pg_migrate::SHAPE,
];

/// A tracking table found in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTable {
    pub tool: Format,
    /// Schema-qualified and quoted as SQL needs it.
    pub table: String,
}

/// The table name `tool` uses by default.
pub fn default_table(tool: Format) -> &'static str {
    SHAPES
        .iter()
        .find(|s| s.tool == tool)
        .map(|s| s.table)
        .expect("every format has a shape")
}

impl Store {
    /// The other tools' tracking tables this database has, in the order of
    /// `Format::ALL`.
    pub async fn tracking_tables(&self) -> Result<Vec<FoundTable>> {
        let names: Vec<&str> = SHAPES.iter().map(|s| s.table).collect();
        let rows = self
            .client()
            .query(
                "SELECT t.name, format('%I.%I', n.nspname, c.relname), array_agg(a.attname::text)
                 FROM unnest($1::text[]) AS t(name)
                 JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name))
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                 GROUP BY 1, 2",
                &[&names],
            )
            .await
            .map_err(|e| Error::db("cannot look for other tools' tracking tables", e))?;
        let mut found = Vec::new();
        for shape in &SHAPES {
            for row in &rows {
                let name: String = row.get(0);
                let columns: Vec<String> = row.get(2);
                let has = |c: &&str| columns.iter().any(|col| col == c);
                if name == shape.table && shape.has.iter().all(has) && !shape.lacks.iter().any(has)
                {
                    found.push(FoundTable {
                        tool: shape.tool,
                        table: row.get(1),
                    });
                }
            }
        }
        Ok(found)
    }

    /// What the table `found` says is applied.
    pub async fn tool_history(&self, found: &FoundTable) -> Result<ToolHistory> {
        let table = found.table.as_str();
        let read = match found.tool {
            Format::Dbmate => dbmate::read(self, table).await,
            Format::Diesel => diesel::read(self, table).await,
            Format::GolangMigrate => golang_migrate::read(self, table).await,
            Format::Goose => goose::read(self, table).await,
            Format::Sqlx => sqlx::read(self, table).await,
            Format::NodePgMigrate => node_pg_migrate::read(self, table).await,
        };
        let (applied, unfinished) =
            read.map_err(|e| Error::db(format!("cannot read {}'s table {table}", found.tool), e))?;
        Ok(ToolHistory {
            tool: found.tool,
            table: table.to_string(),
            applied,
            unfinished,
        })
    }
}

/// What one tool's `read` gives back.
type Read = std::result::Result<(ToolApplied, Vec<String>), tokio_postgres::Error>;
