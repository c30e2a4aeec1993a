//! The physical walk: the table in page order, as ranges of `ctid`s (a TID
//! Range Scan per batch, no index descent per row), bounded by the table's
//! size when the backfill first starts, so the row versions the backfill
//! itself writes past that end are never visited. Its cursor is a page
//! number. A row the application moves from a page not yet visited to one
//! already visited (or past the end) is not met by pages, so a second
//! stage walks the key range once, as the keyset walk does, updating the
//! rows still matching `where`.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::backfill::walk::keyset::{KeysetBatches, KeysetWalk};
use crate::backfill::walk::{Walk, WorkerRange, WorkerWalk};
use crate::error::{Error, Result};
use crate::plan::BackfillSpec;
use crate::store::Store;
use crate::store::backfill::{BatchLimits, BatchRange, BatchResult, Table};
use crate::store::physical::{PageStatements, TID_RANGE_SCAN_SINCE, page_batch_sql};

/// What a page range records in `key_columns`: no table can have a column
/// of that name (it is a system column's), so it never means a key.
pub const PAGES: &str = "ctid";

/// Are these the `key_columns` of a page range?
pub fn is_page_range(key_columns: &[String]) -> bool {
    matches!(key_columns, [one] if one == PAGES)
}

/// A backfill walking its table by pages, then once by key.
pub struct PhysicalWalk {
    /// The catch-up stage, and the table's key.
    keys: KeysetWalk,
    set: String,
    condition: String,
    rows_per_page: f64,
}

impl PhysicalWalk {
    /// Find the table and its key; refuse a plan without `where` (the
    /// validation says why) and a server without TID Range Scans.
    pub async fn open(store: &Store, spec: &BackfillSpec) -> Result<PhysicalWalk> {
        let Some(condition) = spec.condition.clone() else {
            return Err(Error::failed(format!(
                "the backfill of {} has walk: physical but no `where`: the physical walk needs it (add `where`, or use walk: key)",
                spec.table
            )));
        };
        let version = store.server_version_num().await?;
        if version < TID_RANGE_SCAN_SINCE {
            return Err(Error::failed(format!(
                "walk: physical needs PostgreSQL 14 or later (TID Range Scans); this server is {version} (server_version_num): use walk: key"
            )));
        }
        let keys = KeysetWalk::open(store, spec).await?;
        let rows_per_page = store.table_pages(&keys.key.table).await?.rows_per_page;
        Ok(PhysicalWalk {
            keys,
            set: spec.set.clone(),
            condition,
            rows_per_page,
        })
    }

    /// Pages `[0, pages)` split evenly among `workers`.
    fn page_ranges(pages: i64, workers: u32, estimate: i64) -> Vec<WorkerRange> {
        let workers = i64::from(workers.max(1)).min(pages.max(1));
        (0..workers)
            .map(|i| (pages * i / workers, pages * (i + 1) / workers))
            .filter(|(start, end)| end > start)
            .map(|(start, end)| WorkerRange {
                start: (start > 0).then(|| vec![start.to_string()]),
                end: vec![end.to_string()],
                key_columns: vec![PAGES.to_string()],
                rows_estimate: estimate * (end - start) / pages,
            })
            .collect()
    }

    /// Pages in a batch of `size` rows.
    fn pages(&self, size: i64) -> i64 {
        ((size as f64 / self.rows_per_page).ceil() as i64).max(1)
    }
}

impl Walk for PhysicalWalk {
    fn table(&self) -> &Table {
        self.keys.table()
    }

    fn key_columns(&self) -> Vec<String> {
        vec![PAGES.to_string()]
    }

    fn describe(&self) -> String {
        format!(
            "pages (ctid ranges), then {} for the rows still matching `where`",
            self.keys.describe()
        )
    }

    fn check_resume(&self, recorded: &[String]) -> Result<()> {
        if is_page_range(recorded) {
            return Ok(());
        }
        Err(Error::refused(
            format!(
                "the backfill of {} started with walk: key, by ({}), and the plan now says walk: physical; set walk: key again to resume it, or roll the phase back to start over",
                self.table().display,
                recorded.join(", ")
            ),
            None,
        ))
    }

    fn stage(&self, key_columns: &[String]) -> u32 {
        u32::from(!is_page_range(key_columns))
    }

    fn cut<'a>(
        &'a self,
        store: &'a Store,
        workers: u32,
        rows_estimate: i64,
    ) -> BoxFuture<'a, Result<Vec<WorkerRange>>> {
        async move {
            let pages = store.table_pages(self.table()).await?.pages;
            if pages == 0 {
                return Ok(Vec::new());
            }
            let mut ranges = Self::page_ranges(pages, workers, rows_estimate);
            // The catch-up: every key that exists now, once, by one worker.
            let catch_up = self.keys.cut_at(store, 1, rows_estimate).await?;
            ranges.extend(catch_up);
            Ok(ranges)
        }
        .boxed()
    }

    fn prepare<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, Result<Box<dyn WorkerWalk>>> {
        async move {
            let pages = store
                .prepare_pages(self.table(), &self.set, &self.condition)
                .await?;
            let keys = store
                .prepare_keyset(&self.keys.key, &self.set, Some(&self.condition), false)
                .await?;
            Ok(Box::new(PhysicalBatches {
                pages,
                keys: KeysetBatches(keys),
                rows_per_page: self.rows_per_page,
            }) as Box<dyn WorkerWalk>)
        }
        .boxed()
    }

    fn update_sql(&self) -> String {
        page_batch_sql(self.table(), &self.set, &self.condition)
    }

    fn describe_batch(
        &self,
        key_columns: &[String],
        after: Option<&[String]>,
        end: Option<&[String]>,
        size: i64,
    ) -> String {
        if !is_page_range(key_columns) {
            let by_key = self.keys.describe_batch(key_columns, after, end, size);
            return format!("of the catch-up by key {by_key}");
        }
        let from = after.and_then(|a| a.first()).map_or("0", String::as_str);
        match end.and_then(|e| e.first()) {
            Some(to) => format!("of pages {from} to {to} (exclusive)"),
            None => format!("of up to {} pages from page {from}", self.pages(size)),
        }
    }
}

/// A physical walk's statements on one worker's connection: page batches
/// for page ranges, keyset batches for the catch-up.
struct PhysicalBatches {
    pages: PageStatements,
    keys: KeysetBatches,
    rows_per_page: f64,
}

impl WorkerWalk for PhysicalBatches {
    fn run_batch<'a>(
        &'a self,
        store: &'a Store,
        range: &'a BatchRange<'a>,
        size: i64,
        limits: BatchLimits,
    ) -> BoxFuture<'a, BatchResult> {
        if !is_page_range(range.key_columns) {
            return self.keys.run_batch(store, range, size, limits);
        }
        let pages = ((size as f64 / self.rows_per_page).ceil() as i64).max(1);
        store
            .run_page_batch(&self.pages, range, pages, self.rows_per_page, limits)
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_split_evenly_and_cover_the_table_once() {
        let ranges = PhysicalWalk::page_ranges(10, 3, 1000);
        let bounds: Vec<(Option<Vec<String>>, Vec<String>)> = ranges
            .iter()
            .map(|r| (r.start.clone(), r.end.clone()))
            .collect();
        let s = |n: &str| vec![n.to_string()];
        assert_eq!(
            bounds,
            vec![
                (None, s("3")),
                (Some(s("3")), s("6")),
                (Some(s("6")), s("10"))
            ]
        );
        assert_eq!(ranges.iter().map(|r| r.rows_estimate).sum::<i64>(), 1000);
        assert!(ranges.iter().all(|r| is_page_range(&r.key_columns)));
        // More workers than pages: one range per page.
        assert_eq!(PhysicalWalk::page_ranges(2, 8, 10).len(), 2);
    }

    #[test]
    fn only_the_system_column_marks_pages() {
        assert!(is_page_range(&["ctid".to_string()]));
        assert!(!is_page_range(&["id".to_string()]));
        assert!(!is_page_range(&["ctid".to_string(), "id".to_string()]));
    }
}
