//! The seam between a backfill and how it walks its table: how the table is
//! cut into worker ranges when the backfill first starts, how one batch finds
//! its bounds and runs (in one transaction with its cursor update), and how
//! ranges and cursors, stored as `text[]`, are described. One file per walk.
//!
//! Dispatch is through trait objects with boxed futures: the walk is chosen
//! at run time, a box per batch costs nothing beside its round trips, and the
//! coordinator and worker loop stay single, non-generic code that no new walk
//! touches.

pub mod command;
pub mod keyset;
pub mod physical;

use futures_util::future::BoxFuture;

use crate::error::Result;
use crate::plan::{BackfillSpec, WalkKind};
use crate::store::Store;
use crate::store::backfill::{BatchLimits, BatchRange, BatchResult, Table};

/// A worker's range as a walk cuts it, in the walk's own `text[]` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRange {
    /// Where the range starts (exclusive for keys); None is the table's start.
    pub start: Option<Vec<String>>,
    /// Where it ends (inclusive for keys, exclusive for pages).
    pub end: Vec<String>,
    /// What `start`, `end` and the cursor hold (recorded in `key_columns`).
    pub key_columns: Vec<String>,
    /// The rows this range visits (for progress).
    pub rows_estimate: i64,
}

/// How one backfill walks its table.
pub trait Walk: Send + Sync {
    /// The table walked.
    fn table(&self) -> &Table;

    /// What the cursor's `text[]` holds, recorded in `key_columns` and shown
    /// in events and stats (the key's columns, for the keyset walk).
    fn key_columns(&self) -> Vec<String>;

    /// The walk in a few words for `orch check --online`: `key (id)`.
    fn describe(&self) -> String;

    /// Refuse to resume ranges cut by another walk, or over another key;
    /// `recorded` is their `key_columns`.
    fn check_resume(&self, recorded: &[String]) -> Result<()>;

    /// Ranges run in stages, lowest first, each once every range of the
    /// stage before is done; a range's stage follows from its
    /// `key_columns`. One stage unless a walk says otherwise.
    fn stage(&self, _key_columns: &[String]) -> u32 {
        0
    }

    /// Cut the table into at most `workers` disjoint ranges covering it as it
    /// is now (`rows_estimate` rows); none when it is empty.
    fn cut<'a>(
        &'a self,
        store: &'a Store,
        workers: u32,
        rows_estimate: i64,
    ) -> BoxFuture<'a, Result<Vec<WorkerRange>>>;

    /// Prepare the batches of one worker on its own connection.
    fn prepare<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<Box<dyn WorkerWalk>>>;

    /// The statement that updates one batch's rows, its bounds as
    /// parameters, for `orch advance --dry-run`.
    fn update_sql(&self) -> String;

    /// A batch in messages, from the cursor it starts after and the end it
    /// found, if any, else its `size`: `after key (id)=(4), through (id)=(9)`.
    /// `key_columns` says what the values are (the range's).
    fn describe_batch(
        &self,
        key_columns: &[String],
        after: Option<&[String]>,
        end: Option<&[String]>,
        size: i64,
    ) -> String;
}

/// A walk's batches, prepared on one worker's connection.
pub trait WorkerWalk: Send + Sync {
    /// One batch of at most `size` steps after the recorded cursor, with the
    /// cursor's move, in one transaction on `store` (the connection prepared).
    fn run_batch<'a>(
        &'a self,
        store: &'a Store,
        range: &'a BatchRange<'a>,
        size: i64,
        limits: BatchLimits,
    ) -> BoxFuture<'a, BatchResult>;
}

/// The walk of a backfill phase: `walk: key` (the default) or `physical`.
pub async fn open(store: &Store, spec: &BackfillSpec) -> Result<Box<dyn Walk>> {
    if spec.command.is_some() {
        return Ok(Box::new(command::CommandWalk::open(store, spec).await?));
    }
    Ok(match spec.walk.unwrap_or(WalkKind::Key) {
        WalkKind::Key => Box::new(keyset::KeysetWalk::open(store, spec).await?),
        WalkKind::Physical => Box::new(physical::PhysicalWalk::open(store, spec).await?),
    })
}
