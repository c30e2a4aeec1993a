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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::backfill::{BackfillEnd, BackfillJob, BackfillOverrides};
    use crate::events::Silent;
    use crate::plan::BackfillSpec;
    use crate::stop::StopSignal;
    use crate::store::test_db::TestDb;

    /// A batch making room updates the rest of an older range and the
    /// first half of a new one: about `size` keys' rows. The batch that
    /// finishes the last range made room in leaves the walk's tail (fewer
    /// than `size` keys) to the next batch rather than taking it too, which made
    /// it half as long again as the others (seen as the longest batch of
    /// `cargo bench --bench backfill` at 5M rows).
    #[tokio::test]
    async fn no_batch_making_room_takes_much_more_than_its_size() {
        let db = TestDb::new().await;
        // Room on every page (fillfactor 50), so making room pays whatever
        // other tests' transactions hold back on the shared server. A
        // trigger counts the rows each transaction updates.
        db.execute(
            "CREATE TABLE t (id int PRIMARY KEY, a int, b int) WITH (fillfactor = 50);
             INSERT INTO t SELECT g, g FROM generate_series(1, 10900) AS g;
             CREATE TABLE seen (tx xid8 NOT NULL);
             CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN INSERT INTO seen VALUES (pg_current_xact_id()); RETURN NEW; END$$;
             CREATE TRIGGER count_row AFTER UPDATE ON t FOR EACH ROW EXECUTE FUNCTION count_row();",
        )
        .await;
        let store = db.store().await;
        store.ensure_schema().await.unwrap();
        let spec: BackfillSpec = serde_yaml::from_str(
            "table: t\nset: b = a\nwhere: b IS NULL\nmin_batch: 1000\nmax_batch: 1000\nvacuum_every: off\n",
        )
        .unwrap();
        let stop = StopSignal::new();
        let job = BackfillJob {
            connection: &db.settings,
            plan: "p",
            phase: "fill",
            position: 1,
            spec: &spec,
            overrides: &BackfillOverrides::default(),
            lock_timeout: Duration::from_secs(5),
            reporter: &Silent,
            stop: &stop,
            fences: Vec::new(),
        };
        let end = crate::backfill::run(job).await.unwrap();
        assert!(matches!(end, BackfillEnd::Finished(_)), "{end:?}");
        let rows: Vec<u64> = db
            .column("SELECT count(*) FROM seen GROUP BY tx ORDER BY tx::text::numeric")
            .await
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(rows.iter().sum::<u64>(), 10900, "{rows:?}");
        // It made room: the first batch led half a range.
        assert!(rows[0] < 700, "the first batch did not make room: {rows:?}");
        // Each batch: 1000 rows (an integer key's halves are its even and
        // odd keys); the last range's rest and the 900 keys' tail together
        // would be 1400.
        assert!(rows.iter().all(|&n| n <= 1150), "{rows:?}");
        let wrong = db
            .column("SELECT id::text FROM t WHERE b IS DISTINCT FROM a")
            .await;
        assert!(wrong.is_empty(), "{wrong:?}");
    }
}
