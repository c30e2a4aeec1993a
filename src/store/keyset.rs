//! The SQL of the keyset walk: finding a table's walkable key (unique,
//! NOT NULL, btree-indexed), splitting it into ranges, and the batch
//! statements (built from quoted identifiers and the plan's `set`/`where`
//! fragments, with every value bound) that walk one range in key order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::backfill::{
    BatchDone, BatchError, BatchFailure, BatchLimits, BatchRange, BatchResult, CursorStatements,
    Table, quote_ident,
};

/// One key column and its SQL type (from `format_type`, so it is valid SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyColumn {
    pub name: String,
    pub sql_type: String,
}

/// A table and the unique, NOT NULL, btree-indexed key its backfill walks.
#[derive(Debug, Clone)]
pub struct TableKey {
    pub table: Table,
    pub columns: Vec<KeyColumn>,
}

impl TableKey {
    /// The key's columns, as recorded in `key_columns`.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

/// Unique btree indexes without predicate or expressions, with their columns
/// in index order and whether all are NOT NULL; the primary key first.
const KEY_CANDIDATES: &str = "
    SELECT i.indisprimary,
           array_agg(a.attname::text ORDER BY k.ord),
           array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.ord),
           bool_and(a.attnotnull)
    FROM pg_index i
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
    CROSS JOIN LATERAL unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indisvalid
      AND i.indpred IS NULL AND i.indexprs IS NULL
    GROUP BY i.indexrelid, i.indisprimary
    ORDER BY i.indisprimary DESC, count(*), i.indexrelid";

/// The statements of one table's batches, prepared once per connection.
pub struct KeysetStatements {
    /// Each pair: [from the table's start, after a cursor].
    probe: [Statement; 2],
    tail: [Statement; 2],
    update: [Statement; 2],
    /// The first half of a range's rows (made room in), when the walk
    /// makes room; the second half's update is always prepared, to finish
    /// a range an earlier run made room in.
    lead: Option<[Statement; 2]>,
    complete: [Statement; 2],
    /// This transaction's HOT updates of the table, so far.
    hot_updates: Statement,
    table_oid: i64,
    /// Cleared once making room stops paying: a lead updates too few rows,
    /// or the rest of a range is not updated in place.
    leading: AtomicBool,
    /// After the rest of a range was not updated in place: the batches
    /// until the walk tries making room again (0: it does not).
    room_retry: AtomicU64,
    /// Set by a batch over its statement timeout: the next batches finish
    /// the oldest range made room in `size` keys at a time, until it is done.
    capped: AtomicBool,
    cursor: CursorStatements,
    key_len: usize,
    /// Plan the range updates without plain index scans (`by_pages`).
    by_pages: bool,
}

/// A lead that updates fewer rows than this share of its keys stops the
/// worker's leads: with few rows to move the pages gain little room, and
/// each range would be read twice.
const LEAD_WORTH: f64 = 0.2;
/// Finishing a range made room in with fewer HOT updates than this share
/// of its rows stops the worker's leads: the pages did not get the room
/// (their old versions could not be pruned yet: a transaction older than
/// the lead still runs somewhere on the server, whatever its database).
const ROOM_WORTH: f64 = 0.1;
/// ... judged on at least this many rows.
const ROOM_SAMPLE: u64 = 200;
/// Batches without making room, after the rest of a range was not updated
/// in place, before the walk tries again (a few seconds at the batch target:
/// an autovacuum's ANALYZE of a big table, say, holds the pruning back for
/// about that long).
const ROOM_RETRY: u64 = 50;
/// Ranges made room in before the oldest is finished: by then the
/// transaction that made room is older than any batch another worker is
/// running, so the pages can be pruned (one batch later, the other
/// worker's batch in flight may have started before it committed).
const ROOM_DEPTH: usize = 2;

/// Text of the batch statements for a key, `set` and `where`. Each comes
/// in two forms: from the start of the table, and after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSql {
    /// The key `$n` keys on (an index-only walk, no sort).
    pub probe: [String; 2],
    /// The range's last key and row count, for its final, short batch.
    pub tail: [String; 2],
    /// The update of the batch's key range.
    pub update: [String; 2],
    /// The update of the first half of the range's rows (`first_half`).
    pub lead: [String; 2],
    /// The update of the rest, once the first half is done.
    pub complete: [String; 2],
}

/// A stable split of a table's rows in two halves by key: even keys for an
/// integer key (rows loaded in key order alternate within each page), else
/// the parity of the key's hash by its type's hash function (of the value,
/// not of its text, which depends on session settings such as TimeZone).
/// Stable, so a range's second half is exactly the rows its first half
/// left, in any session.
pub fn first_half(key: &TableKey) -> String {
    let columns: Vec<String> = key.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let hash = |column: &String| format!("hash_array(ARRAY[{column}])");
    match (&key.columns[..], &columns[..]) {
        ([only], [column])
            if ["smallint", "integer", "bigint"].contains(&only.sql_type.as_str()) =>
        {
            format!("({column} % 2 = 0)")
        }
        (_, [column]) => format!("(({} & 1) = 0)", hash(column)),
        _ => {
            let each: Vec<String> = columns.iter().map(hash).collect();
            format!("((hash_array(ARRAY[{}]) & 1) = 0)", each.join(", "))
        }
    }
}

/// The batch statements' text (pure, so its SQL is pinned by unit tests).
pub fn batch_sql(key: &TableKey, set: &str, condition: Option<&str>) -> BatchSql {
    let k = key.columns.len();
    let columns: Vec<String> = key.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let cols = columns.join(", ");
    let tuple = format!("({cols})");
    let params = |first: usize| -> String {
        let typed: Vec<String> = key
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("(${}::text)::{}", first + i, c.sql_type))
            .collect();
        format!("({})", typed.join(", "))
    };
    let as_text: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
    let as_text = as_text.join(", ");
    let descending: Vec<String> = columns.iter().map(|c| format!("{c} DESC")).collect();
    let descending = descending.join(", ");
    let table = &key.table.qualified;
    let half = first_half(key);
    // (lower bound, upper bound) conditions for both forms; `$1..$k` is the
    // cursor (after form only), then the upper bound.
    let range = |after: bool, upper: &str| -> String {
        let upper = format!("{tuple} <= {upper}");
        if after {
            format!("{tuple} > {} AND {upper}", params(1))
        } else {
            upper
        }
    };
    let forms = [(false, params(1), k + 1), (true, params(k + 1), 2 * k + 1)];
    // Each fragment ends with a line break, so a `--` comment at its end
    // cannot swallow the rest of the statement.
    let condition = condition
        .map(|c| format!(" AND ({c}\n)"))
        .unwrap_or_default();
    BatchSql {
        probe: forms.clone().map(|(after, end, limit)| {
            format!(
                "SELECT ARRAY[{as_text}] FROM (SELECT {cols} FROM {table} WHERE {} ORDER BY {cols} OFFSET ${limit}::int8 - 1 LIMIT 1) AS probe",
                range(after, &end)
            )
        }),
        tail: forms.clone().map(|(after, end, _)| {
            let range = range(after, &end);
            format!(
                "SELECT (SELECT ARRAY[{as_text}] FROM {table} WHERE {range} ORDER BY {descending} LIMIT 1),
                        (SELECT count(*) FROM {table} WHERE {range})"
            )
        }),
        update: forms
            .clone()
            .map(|(after, hi, _)| format!("UPDATE {table} SET {set}\n WHERE {}{condition}", range(after, &hi))),
        lead: forms.clone().map(|(after, hi, _)| {
            format!(
                "UPDATE {table} SET {set}\n WHERE {}{condition} AND {half}",
                range(after, &hi)
            )
        }),
        complete: forms.map(|(after, hi, _)| {
            format!(
                "UPDATE {table} SET {set}\n WHERE {}{condition} AND NOT {half}",
                range(after, &hi)
            )
        }),
    }
}

impl Store {
    /// Find `table` (`name` or `schema.name`) and the key a backfill walks:
    /// `declared` columns, or the primary key, or the narrowest unique
    /// NOT NULL key. Explains why when there is none.
    pub async fn backfill_key(&self, table: &str, declared: Option<&[String]>) -> Result<TableKey> {
        let found = self.backfill_table(table).await?;
        let oid = i64::from(found.oid);
        let rows = self
            .client()
            .query(KEY_CANDIDATES, &[&oid])
            .await
            .map_err(|e| Error::db(format!("cannot read the keys of {table}"), e))?;
        let candidates: Vec<(bool, Vec<String>, Vec<String>, bool)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let chosen = match declared {
            Some(columns) => candidates.iter().find(|c| c.1 == columns && c.3),
            None => candidates.iter().find(|c| c.3),
        };
        let Some((_, names, types, _)) = chosen else {
            let why = match declared {
                Some(columns) => format!(
                    "the declared key ({}) is not the column list of a unique btree index whose columns are all NOT NULL",
                    columns.join(", ")
                ),
                None if candidates.is_empty() => {
                    "it has no primary key and no unique index".to_string()
                }
                None => "its unique indexes include nullable columns".to_string(),
            };
            return Err(Error::failed(format!(
                "table {table} has no usable key for a backfill: {why}. A backfill walks the table in key order by ranges, so it needs a primary key, or `key:` naming the columns of a unique index that are NOT NULL"
            )));
        };
        Ok(TableKey {
            table: found,
            columns: names
                .iter()
                .zip(types)
                .map(|(n, t)| KeyColumn {
                    name: n.clone(),
                    sql_type: t.clone(),
                })
                .collect(),
        })
    }

    /// The key of the row at `offset` in key order (0 = first), or the last
    /// key when `last` is set; None when there is no such row.
    pub async fn key_at(
        &self,
        key: &TableKey,
        offset: i64,
        last: bool,
    ) -> Result<Option<Vec<String>>> {
        let columns: Vec<String> = key.columns.iter().map(|c| quote_ident(&c.name)).collect();
        let order: Vec<String> = columns
            .iter()
            .map(|c| if last { format!("{c} DESC") } else { c.clone() })
            .collect();
        let as_text: Vec<String> = columns.iter().map(|c| format!("{c}::text")).collect();
        // The key is made text in an outer query: in the inner one it would
        // be made for every row the OFFSET skips.
        let sql = format!(
            "SELECT ARRAY[{}] FROM (SELECT {} FROM {} ORDER BY {} OFFSET $1 LIMIT 1) AS at",
            as_text.join(", "),
            columns.join(", "),
            key.table.qualified,
            order.join(", ")
        );
        let row = self
            .client()
            .query_opt(&sql, &[&offset])
            .await
            .map_err(|e| Error::db(format!("cannot read keys of {}", key.table.display), e))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Prepare a table's keyset batches on this connection.
    pub async fn prepare_keyset(
        &self,
        key: &TableKey,
        set: &str,
        condition: Option<&str>,
        make_room: bool,
    ) -> Result<KeysetStatements> {
        let sql = batch_sql(key, set, condition);
        let [probe_first, probe_next] = sql.probe;
        let [tail_first, tail_next] = sql.tail;
        let [update_first, update_next] = sql.update;
        let [lead_first, lead_next] = sql.lead;
        let [complete_first, complete_next] = sql.complete;
        let make_room = make_room && self.key_halves(key).await;
        let lead = match make_room {
            true => Some([
                self.prepare_backfill(&lead_first).await?,
                self.prepare_backfill(&lead_next).await?,
            ]),
            false => None,
        };
        Ok(KeysetStatements {
            lead,
            complete: [
                self.prepare_backfill(&complete_first).await?,
                self.prepare_backfill(&complete_next).await?,
            ],
            leading: AtomicBool::new(make_room),
            room_retry: AtomicU64::new(0),
            capped: AtomicBool::new(false),
            hot_updates: self
                .prepare_backfill("SELECT pg_stat_get_xact_tuples_hot_updated($1::int8::oid)")
                .await?,
            table_oid: i64::from(key.table.oid),
            probe: [
                self.prepare_backfill(&probe_first).await?,
                self.prepare_backfill(&probe_next).await?,
            ],
            tail: [
                self.prepare_backfill(&tail_first).await?,
                self.prepare_backfill(&tail_next).await?,
            ],
            update: [
                self.prepare_backfill(&update_first).await?,
                self.prepare_backfill(&update_next).await?,
            ],
            cursor: self.prepare_cursor().await?,
            key_len: key.columns.len(),
            by_pages: by_pages(set, condition),
        })
    }

    /// One batch in one transaction, with the cursor's move. A plain batch
    /// finds its last key (at most `size` keys after the cursor) and
    /// updates the rows in that range. A walk that makes room (`make_room`,
    /// docs/backfill.md) updates the first half of the next `size` keys'
    /// rows and records the range's end in `ahead`; `ROOM_DEPTH` batches
    /// later it updates the rest of that range, whose pages now have room
    /// for those rows' new versions, and the cursor moves to its end.
    pub async fn run_keyset_batch(
        &self,
        statements: &KeysetStatements,
        range: &BatchRange<'_>,
        size: i64,
        limits: BatchLimits,
    ) -> BatchResult {
        let started = Instant::now();
        let client = self.client();
        let mut batch_end: Option<Vec<String>> = None;
        let result: std::result::Result<BatchDone, BatchError> = async {
            let (after, ahead) = self.begin_batch_ahead(&statements.cursor, range, limits).await?;
            // The ranges made room in, in key order, each ending at a key.
            let mut pending: Vec<Vec<String>> = ahead
                .unwrap_or_default()
                .chunks(statements.key_len.max(1))
                .map(<[String]>::to_vec)
                .collect();
            // New keys start after the last range made room in.
            let from = pending.last().cloned().or_else(|| after.clone());
            let form = usize::from(from.is_some());
            let bounds = between(from.as_deref(), range.end);
            let mut updated = 0;
            let mut cursor_to = None;
            // After a statement timeout: the oldest range made room in, at
            // most `size` keys of it, and nothing else.
            if !pending.is_empty() && statements.capped.load(Ordering::Relaxed) {
                let form = usize::from(after.is_some());
                let mut probe_params = between(after.as_deref(), &pending[0]);
                probe_params.push(&size);
                if let Some(row) = client.query_opt(&statements.probe[form], &probe_params).await? {
                    let end: Vec<String> = row.get(0);
                    batch_end = Some(end.clone());
                    let updated = self
                        .update_range(statements, &statements.complete[form], &between(after.as_deref(), &end))
                        .await?;
                    let done = BatchDone {
                        last: Some(end),
                        walked: 0,
                        rows_scanned: 0,
                        rows_updated: updated,
                        range_done: false,
                        ahead: Some(pending.concat()),
                    };
                    self.commit_batch(&statements.cursor, range, &done, started)
                        .await?;
                    return Ok(done);
                }
            }
            statements.count_down_to_retry();
            let leading = statements.lead.is_some() && statements.leading.load(Ordering::Relaxed);
            // The rest of the oldest range made room in (the new cursor) is
            // finished `ROOM_DEPTH` ranges later, or at once when no range
            // is led (no lead, or no keys left to lead: known after the
            // probe). Sent with the probe when known before it.
            let oldest = pending.first().map(|end| between(after.as_deref(), end));
            let complete = &statements.complete[usize::from(after.is_some())];
            let complete_now = pending.len() >= ROOM_DEPTH || !leading;
            let mut probe_params = bounds.clone();
            probe_params.push(&size);
            let probe = client.query_opt(&statements.probe[form], &probe_params);
            // A failed finish names the range it finishes.
            if complete_now {
                batch_end = pending.first().cloned();
            }
            let (next, mut completed) = match &oldest {
                Some(params) if complete_now => {
                    let (next, completed) =
                        tokio::join!(probe, self.update_range(statements, complete, params));
                    (next?, Some(completed?))
                }
                _ => (probe.await?, None),
            };
            let next: Option<Vec<String>> = next.map(|row| row.get(0));
            if let (Some(params), None, None) = (&oldest, &completed, &next) {
                batch_end = pending.first().cloned();
                completed = Some(self.update_range(statements, complete, params).await?);
            }
            let lead = match &statements.lead {
                Some(lead) if next.is_some() && leading => Some(lead),
                _ => None,
            };
            let finished_one = completed.is_some();
            let completed = match completed {
                Some(completed) => {
                    statements.capped.store(false, Ordering::Relaxed);
                    // `batch_end` already names it (set before its update).
                    cursor_to = Some(pending.remove(0));
                    updated += completed;
                    completed
                }
                None => 0,
            };
            // Whether that range got the room; sent with the next statement.
            let judged = self.judge_room(statements, completed);
            let (mut walked, mut range_done) = (0, false);
            match (lead, next) {
                (Some(lead), Some(hi)) => {
                    batch_end = Some(hi.clone());
                    let params = between(from.as_deref(), &hi);
                    let (judged, moved) = tokio::join!(
                        judged,
                        self.update_range(statements, &lead[form], &params)
                    );
                    judged?;
                    let moved = moved?;
                    if (moved as f64) < LEAD_WORTH * size as f64 {
                        tracing::info!(
                            "making room stopped paying ({moved} rows of {size} keys to move): the next batches update whole ranges"
                        );
                        statements.leading.store(false, Ordering::Relaxed);
                        // For good: the rows to move are too few, not held.
                        statements.room_retry.store(0, Ordering::Relaxed);
                    }
                    updated += moved;
                    walked = size;
                    pending.push(hi);
                }
                // Ranges made room in are finished first, one a batch, and
                // a batch that finished one takes no whole range besides
                // (the walk's tail, or the first after making room
                // stopped): no batch updates much more than `size` keys'
                // rows.
                _ if finished_one || !pending.is_empty() => judged.await?,
                (_, Some(hi)) => {
                    judged.await?;
                    batch_end = Some(hi.clone());
                    updated += self
                        .update_range(statements, &statements.update[form], &between(from.as_deref(), &hi))
                        .await?;
                    walked = size;
                    cursor_to = Some(hi);
                }
                // Fewer than `size` keys left: the range's last batch.
                (_, None) => {
                    judged.await?;
                    let row = client.query_one(&statements.tail[form], &bounds).await?;
                    let (last, count): (Option<Vec<String>>, i64) = (row.get(0), row.get(1));
                    if let Some(last) = last {
                        debug_assert_eq!(last.len(), statements.key_len);
                        batch_end = Some(last.clone());
                        updated += self
                            .update_range(statements, &statements.update[form], &between(from.as_deref(), &last))
                            .await?;
                        cursor_to = Some(last);
                    }
                    walked = count;
                    range_done = true;
                }
            }
            let done = BatchDone {
                last: cursor_to,
                walked,
                rows_scanned: walked,
                rows_updated: updated,
                range_done,
                ahead: (!pending.is_empty()).then(|| pending.concat()),
            };
            self.commit_batch(&statements.cursor, range, &done, started)
                .await?;
            Ok(done)
        }
        .await;
        match result {
            Ok(done) => Ok(done),
            Err(BatchError::Db(e)) => {
                if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
                    statements.capped.store(true, Ordering::Relaxed);
                }
                Err(self.abandon_batch(&e, batch_end).await)
            }
            Err(BatchError::LockLost(fence)) => Err(self.abandon_fenced_batch(&fence).await),
            Err(BatchError::Bookkeeping(message)) => {
                self.rollback().await;
                Err(BatchFailure {
                    diagnostic: crate::error::PgDiagnostic {
                        sqlstate: "XX000".to_string(),
                        message,
                        ..Default::default()
                    },
                    last: None,
                })
            }
        }
    }
}

impl Store {
    /// Run one of a range's updates; with `by_pages`, planned without plain
    /// index scans (the setting is the update's own: set before it and
    /// back to the default after it, sent together with it).
    async fn update_range(
        &self,
        statements: &KeysetStatements,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let client = self.client();
        if !statements.by_pages {
            return client.execute(statement, params).await;
        }
        let (off, updated, back) = tokio::join!(
            client.batch_execute("SET LOCAL enable_indexscan = off"),
            client.execute(statement, params),
            client.batch_execute("SET LOCAL enable_indexscan TO DEFAULT"),
        );
        off?;
        let updated = updated?;
        back?;
        Ok(updated)
    }

    /// Whether the key's values can be split in halves (`first_half`): a
    /// key type without a hash function cannot, and the walk then updates
    /// whole ranges (said at info level). Tried in a DO block whose handler
    /// catches the error, so it is safe inside a transaction too (the
    /// preview of `orch check --online`).
    async fn key_halves(&self, key: &TableKey) -> bool {
        let probe = format!(
            "DO $orch$ BEGIN
                 PERFORM {} FROM {} LIMIT 1;
                 PERFORM set_config('orch.key_halves', 'yes', false);
             EXCEPTION WHEN OTHERS THEN
                 PERFORM set_config('orch.key_halves', SQLERRM, false);
             END $orch$",
            first_half(key),
            key.table.qualified
        );
        let result = async {
            self.client().batch_execute(&probe).await?;
            let row = self
                .client()
                .query_one("SELECT current_setting('orch.key_halves')", &[])
                .await?;
            Ok::<String, tokio_postgres::Error>(row.get(0))
        }
        .await;
        match result {
            Ok(answer) if answer == "yes" => true,
            Ok(why) => {
                tracing::info!(
                    "not making room in {}: its key cannot be split in halves ({why})",
                    key.table.display
                );
                false
            }
            Err(e) => {
                tracing::info!("not making room in {}: {e}", key.table.display);
                false
            }
        }
    }

    /// After finishing a range made room in (`completed` rows): stop making
    /// room when too few of them were updated in place.
    async fn judge_room(
        &self,
        statements: &KeysetStatements,
        completed: u64,
    ) -> std::result::Result<(), tokio_postgres::Error> {
        if completed < ROOM_SAMPLE || !statements.leading.load(Ordering::Relaxed) {
            return Ok(());
        }
        let hot: i64 = self
            .client()
            .query_one(&statements.hot_updates, &[&statements.table_oid])
            .await?
            .get(0);
        if (hot as f64) < ROOM_WORTH * completed as f64 {
            tracing::info!(
                "making room stopped paying ({hot} of {completed} rows updated in place): the next {ROOM_RETRY} batches update whole ranges, then it tries again"
            );
            statements.leading.store(false, Ordering::Relaxed);
            statements.room_retry.store(ROOM_RETRY, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl KeysetStatements {
    /// At each batch: after `ROOM_RETRY` batches without making room for
    /// want of pruning, make room again (the transaction that held the
    /// pruning back, such as an ANALYZE of the table, may have ended).
    fn count_down_to_retry(&self) {
        let left = self.room_retry.load(Ordering::Relaxed);
        if left == 0 {
            return;
        }
        self.room_retry.store(left - 1, Ordering::Relaxed);
        if left == 1 {
            tracing::info!("making room again");
            self.leading.store(true, Ordering::Relaxed);
        }
    }
}

/// Whether a range's updates are planned without plain index scans: a
/// Bitmap Heap Scan reads the range's pages in page order, each once and
/// all its rows together, where an Index Scan visits the heap row by row
/// (about 5-8% of a batch's time on a freshly loaded table,
/// docs/backfill.md). Not when `set` or `where` has a subquery: one that
/// looks rows up by key, or takes the first by an index's order, needs its
/// index scan.
pub fn by_pages(set: &str, condition: Option<&str>) -> bool {
    let has_select = |text: &str| {
        text.to_ascii_lowercase()
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == "select")
    };
    !has_select(set) && !condition.is_some_and(has_select)
}

/// The bound parameters of a key range: the lower bound's values (none
/// from the table's start), then the upper bound's.
fn between<'v>(lower: Option<&'v [String]>, upper: &'v [String]) -> Vec<&'v (dyn ToSql + Sync)> {
    lower
        .into_iter()
        .flatten()
        .chain(upper)
        .map(|v| v as &(dyn ToSql + Sync))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(columns: &[(&str, &str)]) -> TableKey {
        TableKey {
            table: Table {
                oid: 1,
                qualified: "\"public\".\"posts\"".into(),
                display: "public.posts".into(),
            },
            columns: columns
                .iter()
                .map(|(n, t)| KeyColumn {
                    name: n.to_string(),
                    sql_type: t.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn single_column_batches() {
        let sql = batch_sql(
            &key(&[("id", "integer")]),
            "loc = point(lng, lat)",
            Some("loc IS NULL"),
        );
        assert_eq!(
            sql.probe[0],
            "SELECT ARRAY[\"id\"::text] FROM (SELECT \"id\" FROM \"public\".\"posts\" WHERE (\"id\") <= (($1::text)::integer) ORDER BY \"id\" OFFSET $2::int8 - 1 LIMIT 1) AS probe"
        );
        assert_eq!(
            sql.probe[1],
            "SELECT ARRAY[\"id\"::text] FROM (SELECT \"id\" FROM \"public\".\"posts\" WHERE (\"id\") > (($1::text)::integer) AND (\"id\") <= (($2::text)::integer) ORDER BY \"id\" OFFSET $3::int8 - 1 LIMIT 1) AS probe"
        );
        assert!(
            sql.tail[1].contains("ORDER BY \"id\" DESC LIMIT 1"),
            "{}",
            sql.tail[1]
        );
        assert!(sql.tail[1].contains("(SELECT count(*) FROM \"public\".\"posts\" WHERE (\"id\") > (($1::text)::integer) AND (\"id\") <= (($2::text)::integer))"), "{}", sql.tail[1]);
        assert_eq!(
            sql.update[0],
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat)\n WHERE (\"id\") <= (($1::text)::integer) AND (loc IS NULL\n)"
        );
        assert_eq!(
            sql.update[1],
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat)\n WHERE (\"id\") > (($1::text)::integer) AND (\"id\") <= (($2::text)::integer) AND (loc IS NULL\n)"
        );
    }

    #[test]
    fn make_room_splits_a_range_in_two_stable_halves() {
        let int = key(&[("id", "bigint")]);
        assert_eq!(first_half(&int), "(\"id\" % 2 = 0)");
        let sql = batch_sql(&int, "loc = point(lng, lat)", Some("loc IS NULL"));
        assert_eq!(
            sql.lead[1],
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat)\n WHERE (\"id\") > (($1::text)::bigint) AND (\"id\") <= (($2::text)::bigint) AND (loc IS NULL\n) AND (\"id\" % 2 = 0)"
        );
        assert_eq!(
            sql.complete[0],
            "UPDATE \"public\".\"posts\" SET loc = point(lng, lat)\n WHERE (\"id\") <= (($1::text)::bigint) AND (loc IS NULL\n) AND NOT (\"id\" % 2 = 0)"
        );
        // Other keys split by the parity of their values' hash.
        assert_eq!(
            first_half(&key(&[("code", "text")])),
            "((hash_array(ARRAY[\"code\"]) & 1) = 0)"
        );
        assert_eq!(
            first_half(&key(&[("tenant", "text"), ("n", "bigint")])),
            "((hash_array(ARRAY[hash_array(ARRAY[\"tenant\"]), hash_array(ARRAY[\"n\"])]) & 1) = 0)"
        );
        // Without `where`, the halves still exclude each other.
        let sql = batch_sql(&key(&[("id", "integer")]), "x = 1", None);
        assert!(
            sql.lead[0].ends_with("<= (($1::text)::integer) AND (\"id\" % 2 = 0)"),
            "{}",
            sql.lead[0]
        );
        assert!(
            sql.complete[0].ends_with("AND NOT (\"id\" % 2 = 0)"),
            "{}",
            sql.complete[0]
        );
    }

    #[test]
    fn range_updates_read_pages_unless_a_fragment_has_a_subquery() {
        assert!(by_pages("loc = point(lng, lat)", Some("loc IS NULL")));
        assert!(by_pages("selected = true", Some("selector IS NULL")));
        assert!(!by_pages(
            "name = (SELECT name FROM users u WHERE u.id = t.user_id)",
            None
        ));
        assert!(!by_pages(
            "x = 1",
            Some("EXISTS (\nselect 1 FROM other o WHERE o.id = t.id)")
        ));
    }

    #[test]
    fn composite_keys_compare_as_rows() {
        let sql = batch_sql(&key(&[("tenant", "text"), ("n", "bigint")]), "x = 1", None);
        let range = "(\"tenant\", \"n\") > (($1::text)::text, ($2::text)::bigint) AND (\"tenant\", \"n\") <= (($3::text)::text, ($4::text)::bigint)";
        assert!(sql.probe[1].contains(range), "{}", sql.probe[1]);
        assert!(
            sql.probe[1]
                .ends_with("ORDER BY \"tenant\", \"n\" OFFSET $5::int8 - 1 LIMIT 1) AS probe"),
            "{}",
            sql.probe[1]
        );
        assert!(
            sql.tail[1].contains("ORDER BY \"tenant\" DESC, \"n\" DESC LIMIT 1"),
            "{}",
            sql.tail[1]
        );
        assert!(sql.update[1].ends_with(range), "{}", sql.update[1]);
    }
}
