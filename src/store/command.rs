//! The SQL of a command backfill (a program computes the values): reading a
//! batch without locking it, writing the program's answers in one short
//! transaction with the cursor (a row is written only if its `reads` columns
//! still hold what the program was given), the rows to visit again
//! (`orch.backfill_queue`), and the rows the program rejected or left out
//! (`orch.backfill_errors`).

use std::collections::HashSet;
use std::time::Instant;

use tokio_postgres::Statement;
use tokio_postgres::types::ToSql;

use crate::error::{Error, PgDiagnostic, Result};
use crate::store::Store;
use crate::store::backfill::{
    BatchDone, BatchError, BatchFailure, BatchLimits, BatchRange, CursorStatements, Table,
    quote_ident,
};
use crate::store::backfill_errors::MESSAGE_CAP;
use crate::store::keyset::{KeyColumn, TableKey};

/// What a command backfill reads and writes of its table.
#[derive(Debug, Clone)]
pub struct CommandShape {
    pub key: TableKey,
    pub reads: Vec<KeyColumn>,
    pub writes: Vec<KeyColumn>,
    pub condition: Option<String>,
}

/// One row of a batch as the program is given it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRow {
    pub key: Vec<String>,
    /// The `reads` columns as PostgreSQL's text output, None for NULL.
    pub values: Vec<Option<String>>,
}

/// Where a batch's rows came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchSource {
    /// The walk in key order: the batch's last key (the new cursor) and
    /// whether it reached the range's end.
    Walk {
        last: Option<Vec<String>>,
        at_end: bool,
    },
    /// Rows queued for another visit, all of pass `pass`.
    Queue { pass: i32, keys: Vec<Vec<String>> },
}

/// A batch read without locks.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    /// The cursor it starts after, as read; the write checks it still is.
    pub cursor: Option<Vec<String>>,
    pub source: BatchSource,
    /// The rows that match `where`, for the program.
    pub rows: Vec<ReadRow>,
    /// Keys visited (what the batch size counts).
    pub visited: i64,
}

/// What the program answered for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The `writes` columns' new values, in `writes` order.
    Set(Vec<Option<String>>),
    /// The program refused the row, saying why.
    Rejected(String),
    /// The program did not answer for the row.
    LeftOut,
}

/// What a committed command batch did.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub done: BatchDone,
    /// Rows not written because they changed since they were read: queued
    /// for the next pass.
    pub requeued: Vec<Vec<String>>,
    /// Rows the program rejected, over the whole phase.
    pub rejected_total: i64,
}

/// The statements of one command backfill, prepared on a worker's connection.
pub struct CommandStatements {
    read_cursor: Statement,
    /// [from the range's start, after a cursor].
    read_walk: [Statement; 2],
    read_queue_keys: Statement,
    read_queued_rows: Statement,
    write: Statement,
    dequeue: Statement,
    enqueue: Statement,
    record_errors: Statement,
    counts: Statement,
    cursor: CursorStatements,
    key_len: usize,
}

/// The text of a command backfill's statements (pure, pinned by unit tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSql {
    pub read_walk: [String; 2],
    pub read_queued_rows: String,
    pub write: String,
    pub dequeue: String,
    pub enqueue: String,
    pub record_errors: String,
}

/// `unnest($first::text[], ...) AS orch_v(orch_k0, ...)` over `names`.
fn unnest(first: usize, names: &[String]) -> String {
    let params: Vec<String> = (0..names.len())
        .map(|i| format!("${}::text[]", first + i))
        .collect();
    format!(
        "unnest({}) AS orch_v({})",
        params.join(", "),
        names.join(", ")
    )
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("orch_{prefix}{i}")).collect()
}

/// `ARRAY[orch_v.orch_k0, ...]`: a key as `orch.backfill_*.key` holds it.
fn key_array(k: usize) -> String {
    let parts: Vec<String> = names("k", k)
        .iter()
        .map(|n| format!("orch_v.{n}"))
        .collect();
    format!("ARRAY[{}]::text[]", parts.join(", "))
}

pub fn command_sql(shape: &CommandShape) -> CommandSql {
    let table = &shape.key.table.qualified;
    let k = shape.key.columns.len();
    let col = |c: &KeyColumn| format!("{table}.{}", quote_ident(&c.name));
    let key_cols: Vec<String> = shape.key.columns.iter().map(col).collect();
    let key_list = key_cols.join(", ");
    let key_text: Vec<String> = key_cols.iter().map(|c| format!("{c}::text")).collect();
    let key_text = format!("ARRAY[{}]::text[]", key_text.join(", "));
    let reads_text: Vec<String> = shape
        .reads
        .iter()
        .map(|c| format!("{}::text", col(c)))
        .collect();
    let reads_text = format!("ARRAY[{}]::text[]", reads_text.join(", "));
    let condition = shape
        .condition
        .as_ref()
        .map(|c| format!("({c}\n)"))
        .unwrap_or_else(|| "true".to_string());
    let typed = |first: usize| -> String {
        let typed: Vec<String> = shape
            .key
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("(${}::text)::{}", first + i, c.sql_type))
            .collect();
        format!("({})", typed.join(", "))
    };
    let tuple = format!("({key_list})");
    let select = format!("SELECT {key_text}, {reads_text}, coalesce({condition}, false)");
    let read_walk = [
        format!(
            "{select} FROM {table} WHERE {tuple} <= {} ORDER BY {key_list} LIMIT ${}::int8",
            typed(1),
            k + 1
        ),
        format!(
            "{select} FROM {table} WHERE {tuple} > {} AND {tuple} <= {} ORDER BY {key_list} LIMIT ${}::int8",
            typed(1),
            typed(k + 1),
            2 * k + 1
        ),
    ];
    let key_names = names("k", k);
    let key_match: Vec<String> = shape
        .key
        .columns
        .iter()
        .zip(&key_names)
        .map(|(c, n)| format!("{} = orch_v.{n}::{}", col(c), c.sql_type))
        .collect();
    let key_match = key_match.join(" AND ");
    let read_queued_rows = format!(
        "{select} FROM {table} JOIN {} ON {key_match} ORDER BY {key_list}",
        unnest(1, &key_names)
    );
    let read_names = names("r", shape.reads.len());
    let write_names = names("w", shape.writes.len());
    let all: Vec<String> = key_names
        .iter()
        .chain(&read_names)
        .chain(&write_names)
        .cloned()
        .collect();
    let assignments: Vec<String> = shape
        .writes
        .iter()
        .zip(&write_names)
        .map(|(c, n)| format!("{} = orch_v.{n}::{}", quote_ident(&c.name), c.sql_type))
        .collect();
    let unchanged: Vec<String> = shape
        .reads
        .iter()
        .zip(&read_names)
        .map(|(c, n)| format!(" AND {}::text IS NOT DISTINCT FROM orch_v.{n}", col(c)))
        .collect();
    let write = format!(
        "UPDATE {table} SET {}\n FROM {}\n WHERE {key_match}{}\n AND {condition}\n RETURNING {key_text}",
        assignments.join(", "),
        unnest(1, &all),
        unchanged.concat()
    );
    let queue_key = key_array(k);
    let dequeue = format!(
        "DELETE FROM orch.backfill_queue q USING {}
         WHERE q.plan = ${} AND q.phase = ${} AND q.key = {queue_key}",
        unnest(1, &key_names),
        k + 1,
        k + 2
    );
    let enqueue = format!(
        "INSERT INTO orch.backfill_queue (plan, phase, worker, key, pass)
         SELECT ${p}, ${}, ${}, {queue_key}, ${} FROM {}
         ON CONFLICT (plan, phase, key) DO UPDATE SET pass = excluded.pass, worker = excluded.worker",
        k + 2,
        k + 3,
        k + 4,
        unnest(1, &key_names),
        p = k + 1
    );
    let mut error_names = key_names.clone();
    error_names.extend(["orch_kind".to_string(), "orch_message".to_string()]);
    let record_errors = format!(
        "INSERT INTO orch.backfill_errors (plan, phase, worker, key, kind, message)
         SELECT ${}, ${}, ${}, {queue_key}, orch_v.orch_kind, left(orch_v.orch_message, {cap}) FROM {}
         ON CONFLICT (plan, phase, key) DO UPDATE
           SET worker = excluded.worker, kind = excluded.kind, message = excluded.message,
               recorded_at = clock_timestamp()",
        k + 3,
        k + 4,
        k + 5,
        unnest(1, &error_names),
        cap = MESSAGE_CAP
    );
    CommandSql {
        read_walk,
        read_queued_rows,
        write,
        dequeue,
        enqueue,
        record_errors,
    }
}

/// Columns as the driver binds them: one `text[]` per column.
type Columns = Vec<Vec<Option<String>>>;

/// Keys, column by column.
fn key_columns(keys: &[Vec<String>], k: usize) -> Columns {
    (0..k)
        .map(|i| keys.iter().map(|key| key.get(i).cloned()).collect())
        .collect()
}

fn params(columns: &Columns) -> Vec<&(dyn ToSql + Sync)> {
    columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect()
}

fn failure(sqlstate: &str, message: String) -> BatchFailure {
    BatchFailure {
        diagnostic: PgDiagnostic {
            sqlstate: sqlstate.to_string(),
            message,
            ..PgDiagnostic::default()
        },
        last: None,
    }
}

impl Store {
    /// The table's columns and their SQL types (`format_type`), in order.
    pub async fn table_columns(&self, table: &Table) -> Result<Vec<KeyColumn>> {
        let oid = i64::from(table.oid);
        let rows = self
            .client()
            .query(
                "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = $1::int8::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&oid],
            )
            .await
            .map_err(|e| Error::db(format!("cannot read the columns of {}", table.display), e))?;
        Ok(rows
            .iter()
            .map(|r| KeyColumn {
                name: r.get(0),
                sql_type: r.get(1),
            })
            .collect())
    }

    /// Prepare a command backfill's statements on this connection.
    pub async fn prepare_command(&self, shape: &CommandShape) -> Result<CommandStatements> {
        let sql = command_sql(shape);
        let [walk_first, walk_next] = sql.read_walk;
        Ok(CommandStatements {
            read_cursor: self
                .prepare_backfill(
                    "SELECT cursor FROM orch.backfill_workers WHERE plan = $1 AND phase = $2 AND worker = $3",
                )
                .await?,
            read_walk: [
                self.prepare_backfill(&walk_first).await?,
                self.prepare_backfill(&walk_next).await?,
            ],
            read_queue_keys: self
                .prepare_backfill(
                    "SELECT key, pass FROM orch.backfill_queue
                     WHERE plan = $1 AND phase = $2 AND worker = $3
                       AND pass = (SELECT min(pass) FROM orch.backfill_queue WHERE plan = $1 AND phase = $2 AND worker = $3)
                     ORDER BY key LIMIT $4",
                )
                .await?,
            read_queued_rows: self.prepare_backfill(&sql.read_queued_rows).await?,
            write: self.prepare_backfill(&sql.write).await?,
            dequeue: self.prepare_backfill(&sql.dequeue).await?,
            enqueue: self.prepare_backfill(&sql.enqueue).await?,
            record_errors: self.prepare_backfill(&sql.record_errors).await?,
            counts: self
                .prepare_backfill(
                    "SELECT (SELECT count(*) FROM orch.backfill_queue WHERE plan = $1 AND phase = $2 AND worker = $3),
                            (SELECT count(*) FROM orch.backfill_errors WHERE plan = $1 AND phase = $2 AND kind = 'rejected')",
                )
                .await?,
            cursor: self.prepare_cursor().await?,
            key_len: shape.key.columns.len(),
        })
    }

    /// Read the next batch without locking anything: up to `size` keys after
    /// the recorded cursor, or, once the walk reached the range's end, up to
    /// `size` queued rows of the lowest pass.
    pub async fn read_command_batch(
        &self,
        st: &CommandStatements,
        range: &BatchRange<'_>,
        size: i64,
    ) -> std::result::Result<ReadBatch, BatchFailure> {
        let client = self.client();
        let db = |e: tokio_postgres::Error| failure(&sqlstate_of(&e), e.to_string());
        let recorded: Option<Vec<String>> = client
            .query_one(&st.read_cursor, &[&range.plan, &range.phase, &range.worker])
            .await
            .map_err(db)?
            .get(0);
        let cursor = recorded.or_else(|| range.start.map(<[String]>::to_vec));
        let at_end = cursor.as_deref() == Some(range.end);
        let rows = if at_end {
            let queued = client
                .query(
                    &st.read_queue_keys,
                    &[&range.plan, &range.phase, &range.worker, &size],
                )
                .await
                .map_err(db)?;
            let keys: Vec<Vec<String>> = queued.iter().map(|r| r.get(0)).collect();
            let pass: i32 = queued.first().map_or(0, |r| r.get(1));
            let columns = key_columns(&keys, st.key_len);
            let rows = if keys.is_empty() {
                Vec::new()
            } else {
                client
                    .query(&st.read_queued_rows, &params(&columns))
                    .await
                    .map_err(db)?
            };
            let visited = keys.len() as i64;
            return Ok(ReadBatch {
                cursor,
                source: BatchSource::Queue { pass, keys },
                rows: matching(&rows),
                visited,
            });
        } else {
            let mut bounds: Vec<&(dyn ToSql + Sync)> = Vec::new();
            if let Some(after) = &cursor {
                bounds.extend(after.iter().map(|v| v as &(dyn ToSql + Sync)));
            }
            bounds.extend(range.end.iter().map(|v| v as &(dyn ToSql + Sync)));
            bounds.push(&size);
            client
                .query(&st.read_walk[usize::from(cursor.is_some())], &bounds)
                .await
                .map_err(db)?
        };
        let visited = rows.len() as i64;
        let reached_end = visited < size;
        let last = if reached_end {
            Some(range.end.to_vec())
        } else {
            rows.last().map(|r| r.get::<_, Vec<String>>(0))
        };
        Ok(ReadBatch {
            cursor,
            source: BatchSource::Walk {
                at_end: reached_end || last.as_deref() == Some(range.end),
                last,
            },
            rows: matching(&rows),
            visited,
        })
    }

    /// Write a batch's answers in one transaction with its cursor: each
    /// answered row only if its `reads` columns still hold the values the
    /// program was given and it still matches `where`; the others are queued
    /// for the next pass. Rejected and left-out rows are recorded. Returns
    /// what the batch did once it committed.
    pub async fn write_command_batch(
        &self,
        st: &CommandStatements,
        range: &BatchRange<'_>,
        batch: &ReadBatch,
        answers: &[Answer],
        limits: BatchLimits,
        started: Instant,
    ) -> std::result::Result<WriteOutcome, BatchFailure> {
        let result = self
            .write_command_transaction(st, range, batch, answers, limits, started)
            .await;
        match result {
            Ok(outcome) => Ok(outcome),
            Err(WriteError::Batch(BatchError::Db(e))) => Err(self.abandon_batch(&e, None).await),
            Err(WriteError::Batch(BatchError::LockLost(fence))) => {
                Err(self.abandon_fenced_batch(&fence).await)
            }
            Err(WriteError::Batch(BatchError::Bookkeeping(message))) => {
                self.rollback().await;
                Err(failure("XX000", message))
            }
            Err(WriteError::CursorMoved) => {
                self.rollback().await;
                Err(failure(
                    "40001",
                    "the cursor moved since the batch was read".to_string(),
                ))
            }
        }
    }

    async fn write_command_transaction(
        &self,
        st: &CommandStatements,
        range: &BatchRange<'_>,
        batch: &ReadBatch,
        answers: &[Answer],
        limits: BatchLimits,
        started: Instant,
    ) -> std::result::Result<WriteOutcome, WriteError> {
        let client = self.client();
        let k = st.key_len;
        let after = self.begin_batch(&st.cursor, range, limits).await?;
        if after != batch.cursor {
            return Err(WriteError::CursorMoved);
        }
        let (pass, last, at_end) = match &batch.source {
            BatchSource::Walk { last, at_end } => (1, last.clone(), *at_end),
            BatchSource::Queue { pass, keys } => {
                let columns = key_columns(keys, k);
                let mut p = params(&columns);
                p.push(&range.plan);
                p.push(&range.phase);
                client.execute(&st.dequeue, &p).await?;
                (*pass, None, true)
            }
        };
        // The rows answered with values: key, given reads, new writes.
        let set: Vec<(&ReadRow, &Vec<Option<String>>)> = batch
            .rows
            .iter()
            .zip(answers)
            .filter_map(|(row, answer)| match answer {
                Answer::Set(values) => Some((row, values)),
                _ => None,
            })
            .collect();
        let mut updated: HashSet<Vec<String>> = HashSet::new();
        if !set.is_empty() {
            let keys: Vec<Vec<String>> = set.iter().map(|(r, _)| r.key.clone()).collect();
            let mut columns = key_columns(&keys, k);
            let reads = set.first().map_or(0, |(r, _)| r.values.len());
            for i in 0..reads {
                columns.push(set.iter().map(|(r, _)| r.values[i].clone()).collect());
            }
            let writes = set.first().map_or(0, |(_, w)| w.len());
            for i in 0..writes {
                columns.push(set.iter().map(|(_, w)| w[i].clone()).collect());
            }
            updated = client
                .query(&st.write, &params(&columns))
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
        }
        let requeued: Vec<Vec<String>> = set
            .iter()
            .filter(|(r, _)| !updated.contains(&r.key))
            .map(|(r, _)| r.key.clone())
            .collect();
        if !requeued.is_empty() {
            let columns = key_columns(&requeued, k);
            let next = pass + 1;
            let mut p = params(&columns);
            p.extend([
                &range.plan as &(dyn ToSql + Sync),
                &range.phase,
                &range.worker,
                &next,
            ]);
            client.execute(&st.enqueue, &p).await?;
        }
        let mut error_keys = Vec::new();
        let (mut kinds, mut messages) = (Vec::new(), Vec::new());
        for (row, answer) in batch.rows.iter().zip(answers) {
            let (kind, message) = match answer {
                Answer::Set(_) => continue,
                Answer::Rejected(why) => ("rejected", why.clone()),
                Answer::LeftOut => (
                    "left_out",
                    "the program did not answer for this row".to_string(),
                ),
            };
            error_keys.push(row.key.clone());
            kinds.push(Some(kind.to_string()));
            messages.push(Some(message));
        }
        if !error_keys.is_empty() {
            let mut columns = key_columns(&error_keys, k);
            columns.push(kinds);
            columns.push(messages);
            let mut p = params(&columns);
            p.extend([
                &range.plan as &(dyn ToSql + Sync),
                &range.phase,
                &range.worker,
            ]);
            client.execute(&st.record_errors, &p).await?;
        }
        let counts = client
            .query_one(&st.counts, &[&range.plan, &range.phase, &range.worker])
            .await?;
        let (queued, rejected_total): (i64, i64) = (counts.get(0), counts.get(1));
        let scanned = match batch.source {
            BatchSource::Walk { .. } => batch.visited,
            // Visited again: not counted twice in the progress.
            BatchSource::Queue { .. } => 0,
        };
        let done = BatchDone {
            last,
            walked: batch.visited.max(1),
            rows_scanned: scanned,
            rows_updated: updated.len() as u64,
            range_done: at_end && queued == 0,
            ahead: None,
        };
        self.commit_batch(&st.cursor, range, &done, started).await?;
        Ok(WriteOutcome {
            done,
            requeued,
            rejected_total,
        })
    }
}

fn matching(rows: &[tokio_postgres::Row]) -> Vec<ReadRow> {
    rows.iter()
        .filter(|r| r.get::<_, bool>(2))
        .map(|r| ReadRow {
            key: r.get(0),
            values: r.get(1),
        })
        .collect()
}

fn sqlstate_of(e: &tokio_postgres::Error) -> String {
    e.code()
        .map_or_else(|| "08006".to_string(), |c| c.code().to_string())
}

/// Why a command batch's write did not commit.
enum WriteError {
    Batch(BatchError),
    /// The recorded cursor is not where the batch was read from (not
    /// expected under the plan's lock): the batch is read again.
    CursorMoved,
}

impl From<BatchError> for WriteError {
    fn from(e: BatchError) -> Self {
        WriteError::Batch(e)
    }
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> Self {
        WriteError::Batch(BatchError::Db(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(condition: Option<&str>) -> CommandShape {
        let column = |n: &str, t: &str| KeyColumn {
            name: n.to_string(),
            sql_type: t.to_string(),
        };
        CommandShape {
            key: TableKey {
                table: Table {
                    oid: 1,
                    qualified: "\"public\".\"posts\"".into(),
                    display: "public.posts".into(),
                },
                columns: vec![column("id", "integer")],
            },
            reads: vec![
                column("lat", "double precision"),
                column("lng", "double precision"),
            ],
            writes: vec![column("loc", "point")],
            condition: condition.map(str::to_string),
        }
    }

    #[test]
    fn the_write_compares_what_the_program_was_given() {
        let sql = command_sql(&shape(Some("loc IS NULL")));
        assert_eq!(
            sql.write,
            "UPDATE \"public\".\"posts\" SET \"loc\" = orch_v.orch_w0::point\n FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS orch_v(orch_k0, orch_r0, orch_r1, orch_w0)\n WHERE \"public\".\"posts\".\"id\" = orch_v.orch_k0::integer AND \"public\".\"posts\".\"lat\"::text IS NOT DISTINCT FROM orch_v.orch_r0 AND \"public\".\"posts\".\"lng\"::text IS NOT DISTINCT FROM orch_v.orch_r1\n AND (loc IS NULL\n)\n RETURNING ARRAY[\"public\".\"posts\".\"id\"::text]::text[]"
        );
    }

    #[test]
    fn the_walk_reads_in_key_order_without_locking() {
        let sql = command_sql(&shape(None));
        assert_eq!(
            sql.read_walk[1],
            "SELECT ARRAY[\"public\".\"posts\".\"id\"::text]::text[], ARRAY[\"public\".\"posts\".\"lat\"::text, \"public\".\"posts\".\"lng\"::text]::text[], coalesce(true, false) FROM \"public\".\"posts\" WHERE (\"public\".\"posts\".\"id\") > (($1::text)::integer) AND (\"public\".\"posts\".\"id\") <= (($2::text)::integer) ORDER BY \"public\".\"posts\".\"id\" LIMIT $3::int8"
        );
        for text in [&sql.read_walk[0], &sql.read_walk[1], &sql.read_queued_rows] {
            assert!(!text.contains("FOR UPDATE"), "{text}");
            assert!(!text.contains("FOR SHARE"), "{text}");
        }
    }

    #[test]
    fn keys_go_column_by_column() {
        let keys = vec![
            vec!["a".to_string(), "1".to_string()],
            vec!["b".to_string(), "2".to_string()],
        ];
        assert_eq!(
            key_columns(&keys, 2),
            vec![
                vec![Some("a".to_string()), Some("b".to_string())],
                vec![Some("1".to_string()), Some("2".to_string())]
            ]
        );
    }
}
