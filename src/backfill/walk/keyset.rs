//! The keyset walk: the table in key order (a unique, NOT NULL, btree-indexed
//! key), cut into key ranges at evenly spaced keys; each batch updates the
//! rows up to the key `size` keys after the cursor, which is a key.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::backfill::walk::{Walk, WorkerRange, WorkerWalk, physical};
use crate::error::{Error, Result};
use crate::plan::BackfillSpec;
use crate::store::Store;
use crate::store::backfill::{BatchLimits, BatchRange, BatchResult, Table};
use crate::store::keyset::{KeysetStatements, TableKey, batch_sql};

/// A backfill walking its table by key.
pub struct KeysetWalk {
    pub(crate) key: TableKey,
    set: String,
    condition: Option<String>,
    /// Update each range in two halves (`make_room`, default on).
    make_room: bool,
}

impl KeysetWalk {
    /// Find the phase's table and the key to walk.
    pub async fn open(store: &Store, spec: &BackfillSpec) -> Result<KeysetWalk> {
        Ok(KeysetWalk {
            key: store.backfill_key(&spec.table, spec.key.as_deref()).await?,
            set: spec.set.clone(),
            condition: spec.condition.clone(),
            make_room: spec.make_room.unwrap_or(true),
        })
    }

    /// Split points at evenly spaced row offsets, then the last key.
    pub(crate) async fn cut_at(
        &self,
        store: &Store,
        workers: u32,
        estimate: i64,
    ) -> Result<Vec<WorkerRange>> {
        let key = &self.key;
        let Some(last) = store.key_at(key, 0, true).await? else {
            return Ok(Vec::new());
        };
        let mut bounds: Vec<Vec<String>> = Vec::new();
        for i in 1..workers as i64 {
            if let Some(split) = store
                .key_at(key, i * estimate / i64::from(workers), false)
                .await?
                && bounds.last() != Some(&split)
                && split != last
            {
                bounds.push(split);
            }
        }
        bounds.push(last);
        let mut start = None;
        let count = bounds.len() as i64;
        Ok(bounds
            .into_iter()
            .map(|end| WorkerRange {
                start: start.replace(end.clone()),
                end,
                key_columns: key.column_names(),
                rows_estimate: estimate / count,
            })
            .collect())
    }
}

impl Walk for KeysetWalk {
    fn table(&self) -> &Table {
        &self.key.table
    }

    fn key_columns(&self) -> Vec<String> {
        self.key.column_names()
    }

    fn describe(&self) -> String {
        format!("key ({})", self.key.column_names().join(", "))
    }

    fn check_resume(&self, recorded: &[String]) -> Result<()> {
        if recorded == self.key.column_names() {
            return Ok(());
        }
        if physical::is_page_range(recorded) {
            return Err(Error::refused(
                format!(
                    "the backfill of {} started with walk: physical (by pages) and the plan now says walk: key; set walk: physical again to resume it, or roll the phase back to start over",
                    self.key.table.display
                ),
                None,
            ));
        }
        Err(Error::refused(
            format!(
                "the backfill of {} started walking key ({}) but the key is now ({}); roll the phase back to start over",
                self.key.table.display,
                recorded.join(", "),
                self.key.column_names().join(", ")
            ),
            None,
        ))
    }

    fn cut<'a>(
        &'a self,
        store: &'a Store,
        workers: u32,
        rows_estimate: i64,
    ) -> BoxFuture<'a, Result<Vec<WorkerRange>>> {
        self.cut_at(store, workers, rows_estimate).boxed()
    }

    fn prepare<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<Box<dyn WorkerWalk>>> {
        async move {
            let statements = store
                .prepare_keyset(
                    &self.key,
                    &self.set,
                    self.condition.as_deref(),
                    self.make_room,
                )
                .await?;
            Ok(Box::new(KeysetBatches(statements)) as Box<dyn WorkerWalk>)
        }
        .boxed()
    }

    fn update_sql(&self) -> String {
        let [_, after_cursor] = batch_sql(&self.key, &self.set, self.condition.as_deref()).update;
        after_cursor
    }

    fn describe_batch(
        &self,
        _key_columns: &[String],
        after: Option<&[String]>,
        end: Option<&[String]>,
        size: i64,
    ) -> String {
        let upper = match end {
            Some(last) => format!("through {}", describe_key(&self.key, Some(last))),
            None => format!("up to {size} keys"),
        };
        format!("after key {}, {upper}", describe_key(&self.key, after))
    }
}

/// The keyset statements prepared on one worker's connection.
pub(crate) struct KeysetBatches(pub(crate) KeysetStatements);

impl WorkerWalk for KeysetBatches {
    fn run_batch<'a>(
        &'a self,
        store: &'a Store,
        range: &'a BatchRange<'a>,
        size: i64,
        limits: BatchLimits,
    ) -> BoxFuture<'a, BatchResult> {
        store.run_keyset_batch(&self.0, range, size, limits).boxed()
    }
}

/// `(id)=(41000)` or `(table start)`.
pub fn describe_key(key: &TableKey, values: Option<&[String]>) -> String {
    match values {
        None => "(table start)".to_string(),
        Some(values) => format!(
            "({})=({})",
            key.column_names().join(", "),
            values.join(", ")
        ),
    }
}
