//! The demo's final verification: every post has the location its last
//! write gave it, and no post is lost.

use std::collections::HashSet;

use serde::Serialize;
use tokio_postgres::Client;

use crate::demo::app::{AppRecord, Location, initial_location};
use crate::error::{Error, Result};

/// What the verification found.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Initial posts plus posts the app inserted.
    pub rows_expected: u64,
    pub rows_found: u64,
    /// Expected posts that are not in the table.
    pub rows_missing: u64,
    /// Posts whose loc differs from their last write (or is NULL).
    pub rows_wrong: u64,
    /// Posts nobody wrote (should be none).
    pub rows_unexpected: u64,
    pub lat_lng_dropped: bool,
    /// A few examples of problems, for the report.
    pub examples: Vec<String>,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.rows_missing == 0
            && self.rows_wrong == 0
            && self.rows_unexpected == 0
            && self.rows_found == self.rows_expected
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Compare the table with what the application wrote. `expect_loc` is
/// false for the naive run, where loc may not exist.
pub async fn verify(client: &Client, initial_rows: u64, app: &AppRecord) -> Result<Verification> {
    let has = |column: &'static str| async move {
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'posts' AND column_name = $1)",
                &[&column],
            )
            .await
            .map(|r| r.get::<_, bool>(0))
            .map_err(|e| Error::db("cannot inspect posts", e))
    };
    let has_loc = has("loc").await?;
    let lat_lng_dropped = !has("lat").await? && !has("lng").await?;
    let sql = if has_loc {
        "SELECT id, loc[0], loc[1] FROM posts"
    } else {
        "SELECT id, lng::float8, lat::float8 FROM posts"
    };
    let rows = client
        .query(sql, &[])
        .await
        .map_err(|e| Error::db("cannot read posts", e))?;
    let inserted: HashSet<i64> = app.inserted.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut v = Verification {
        rows_expected: initial_rows + inserted.len() as u64,
        rows_found: rows.len() as u64,
        rows_missing: 0,
        rows_wrong: 0,
        rows_unexpected: 0,
        lat_lng_dropped,
        examples: Vec::new(),
    };
    for row in &rows {
        let id = i64::from(row.get::<_, i32>(0));
        seen.insert(id);
        let found = (row.get::<_, Option<f64>>(1), row.get::<_, Option<f64>>(2));
        let expected: Option<Location> = match app.written.get(&id) {
            Some(l) => Some(*l),
            None if id >= 1 && id as u64 <= initial_rows => Some(initial_location(id)),
            None if inserted.contains(&id) => None,
            None => {
                v.rows_unexpected += 1;
                continue;
            }
        };
        let Some(expected) = expected else { continue };
        let ok = matches!(found, (Some(lng), Some(lat)) if close(lng, expected.lng) && close(lat, expected.lat));
        if !ok {
            v.rows_wrong += 1;
            if v.examples.len() < 5 {
                v.examples.push(format!(
                    "post {id}: loc is {} but its last write says point({}, {})",
                    match found {
                        (Some(x), Some(y)) => format!("point({x}, {y})"),
                        _ => "NULL".to_string(),
                    },
                    expected.lng,
                    expected.lat
                ));
            }
        }
    }
    let missing_initial = (1..=initial_rows as i64)
        .filter(|id| !seen.contains(id))
        .count() as u64;
    let missing_inserted = inserted.iter().filter(|id| !seen.contains(id)).count() as u64;
    v.rows_missing = missing_initial + missing_inserted;
    if v.rows_missing > 0 {
        v.examples.push(format!(
            "{} posts the app wrote are missing",
            v.rows_missing
        ));
    }
    Ok(v)
}
