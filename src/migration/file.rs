//! One migration, whatever folder format it came from: its version, name,
//! up and down sections (each naming its own file and line) and checksum.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::sql_text;

/// One section (up or down) of a migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The file the section's SQL was read from, named in error messages
    /// (formats differ: one file with both sections, or one file each).
    pub path: PathBuf,
    /// The section's SQL.
    pub sql: String,
    /// 1-based line in `path` just before the SQL starts: the marker line
    /// in a file with markers; 0 when the SQL is the whole file.
    pub marker_line: usize,
    /// False when the section must run outside a transaction (dbmate's
    /// `transaction:false`).
    pub transactional: bool,
    /// True when a column in `sql` is the same column in `path` (false where
    /// orch put the SQL together from JavaScript string literals), so an
    /// error position can be reported as `file:line:column`.
    pub exact_columns: bool,
}

impl Section {
    /// 1-based line in `path` of a byte offset inside `sql`.
    pub fn file_line(&self, offset_in_sql: usize) -> usize {
        self.marker_line + sql_text::line_of_offset(&self.sql, offset_in_sql)
    }

    /// 1-based line and, when `exact_columns`, 1-based column (counted in
    /// characters) in `path` of a byte offset inside `sql`.
    pub fn file_position(&self, offset_in_sql: usize) -> (usize, Option<usize>) {
        let mut offset = offset_in_sql.min(self.sql.len());
        while !self.sql.is_char_boundary(offset) {
            offset -= 1;
        }
        let line_start = self.sql[..offset].rfind('\n').map_or(0, |i| i + 1);
        let column = self.sql[line_start..offset].chars().count() + 1;
        (self.file_line(offset), self.exact_columns.then_some(column))
    }

    /// True when the section holds no statement (only comments/whitespace).
    pub fn is_empty(&self) -> bool {
        sql_text::split_statements(&self.sql).is_empty()
    }

    /// True when the section is empty on purpose: it holds no statement and
    /// says so with a comment line `-- nothing to undo` (any case, in any
    /// format). An empty down section without it is taken for one not yet
    /// written, and `down` refuses it.
    pub fn says_nothing_to_undo(&self) -> bool {
        self.is_empty()
            && self.sql.lines().any(|line| {
                line.trim().strip_prefix("--").is_some_and(|c| {
                    c.trim()
                        .trim_end_matches('.')
                        .eq_ignore_ascii_case(NOTHING_TO_UNDO)
                })
            })
    }
}

/// The comment that marks an empty down section as intended.
pub const NOTHING_TO_UNDO: &str = "nothing to undo";

/// One migration, as a [`MigrationSource`](crate::migration::MigrationSource)
/// yields it and orch applies it.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The numeric version: unique in the folder, and the key of orch's
    /// history.
    pub version: i64,
    /// What migrations apply in order of (then by version): the folder
    /// format's own order, e.g. [`numeric_order`] or diesel's text order.
    pub order: String,
    /// What the folder's own tool calls the migration in its tracking table
    /// (dbmate's and diesel's version text, node-pg-migrate's file name...),
    /// so `orch migrate adopt` can match its rows to files.
    pub tool_id: String,
    /// The name plans refer to the migration by.
    pub name: String,
    /// Where the migration is, as shown to people (status, refusals): its
    /// file, or for formats with one file per section, what its source
    /// chooses (the up file or the migration's folder).
    pub path: PathBuf,
    /// Hex SHA-256 of what the source read, recorded when the migration is
    /// applied, so a later change to it is noticed.
    pub checksum: String,
    /// The section `migrate up` runs.
    pub up: Section,
    /// The section `migrate down` runs, if the migration has one.
    pub down: Option<Section>,
}

impl Migration {
    /// `<version>_<name>`, as shown to people.
    pub fn id(&self) -> String {
        format!("{}_{}", self.version, self.name)
    }
}

/// The order key of formats that apply migrations in numeric version order.
pub fn numeric_order(version: i64) -> String {
    format!("{version:020}")
}

/// Hex SHA-256, the checksum recorded for applied migrations.
pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The checksum of a migration read from several files (diesel's `up.sql`
/// and `metadata.toml`): each file's label and length go in with its bytes,
/// so moving text from one file to another changes it too.
pub fn checksum_of_files(files: &[(&str, &[u8])]) -> String {
    let mut hasher = Sha256::new();
    for (label, bytes) in files {
        hasher.update(label.as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    }
    hex::encode(hasher.finalize())
}

/// A problem with a migration at `path:line`, as sources and their checks report it.
pub fn invalid(path: &Path, line: usize, message: impl Into<String>) -> Error {
    Error::InvalidMigration {
        path: PathBuf::from(path),
        line,
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_map_to_file_lines_and_character_columns() {
        let mut section = Section {
            path: "m/1_a.sql".into(),
            sql: "SELECT 1;\r\n  SELECT 'é', nope;\n".to_string(),
            marker_line: 3,
            exact_columns: true,
            transactional: true,
        };
        let nope = section.sql.find("nope").unwrap();
        let cases = [(0, (4, Some(1))), (7, (4, Some(8))), (nope, (5, Some(15)))];
        for (offset, expected) in cases {
            assert_eq!(section.file_position(offset), expected, "{offset}");
        }
        // Past the end, and inside a character: clamped back.
        let end = section.sql.len();
        assert_eq!(section.file_position(end + 5), (6, Some(1)));
        let inside_e = section.sql.find('é').unwrap() + 1;
        assert_eq!(section.file_position(inside_e), (5, Some(11)));
        section.exact_columns = false;
        assert_eq!(section.file_position(nope), (5, None));
    }
}
