//! One migration file: `<version>_<name>.sql` with dbmate-style
//! `-- migrate:up` / `-- migrate:down` sections.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::sql_text;

/// One section (up or down) of a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The SQL between this section's marker and the next marker.
    pub sql: String,
    /// 1-based line of the marker line in the file.
    pub marker_line: usize,
    /// False when the marker says `transaction:false`.
    pub transactional: bool,
}

impl Section {
    /// 1-based file line of a byte offset inside `sql`.
    pub fn file_line(&self, offset_in_sql: usize) -> usize {
        self.marker_line + sql_text::line_of_offset(&self.sql, offset_in_sql)
    }

    /// True when the section holds no statement (only comments/whitespace).
    pub fn is_empty(&self) -> bool {
        sql_text::split_statements(&self.sql).is_empty()
    }
}

/// A parsed migration file.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub version: i64,
    pub name: String,
    pub path: PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub checksum: String,
    pub up: Section,
    pub down: Option<Section>,
}

impl MigrationFile {
    /// `<version>_<name>`, the file name without `.sql`.
    pub fn id(&self) -> String {
        format!("{}_{}", self.version, self.name)
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<MigrationFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read migration", path, e))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| invalid(path, 1, format!("not valid UTF-8 ({e})")))?;
        Self::parse(path, &text)
    }

    /// Parse a file's text; `path` is used for its name and in errors.
    pub fn parse(path: &Path, text: &str) -> Result<MigrationFile> {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| invalid(path, 1, "file name is not valid UTF-8"))?;
        let (version, name) = parse_file_name(file_name).map_err(|msg| invalid(path, 1, msg))?;
        let (up, down) = parse_sections(path, text)?;
        check_transactional_statements(path, &up)?;
        if let Some(down) = &down {
            check_transactional_statements(path, down)?;
        }
        Ok(MigrationFile {
            version,
            name,
            path: path.to_path_buf(),
            checksum: checksum(text.as_bytes()),
            up,
            down,
        })
    }
}

/// Hex SHA-256, the checksum recorded for applied migrations.
pub fn checksum(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn invalid(path: &Path, line: usize, message: impl Into<String>) -> Error {
    Error::InvalidMigration {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// `20240101120000_add_loc.sql` -> (20240101120000, "add_loc").
pub fn parse_file_name(file_name: &str) -> std::result::Result<(i64, String), String> {
    const EXPECTED: &str = "expected <version>_<name>.sql, e.g. 20240101120000_add_posts_loc.sql (version: digits; name: letters, digits, _ and -)";
    let stem = file_name
        .strip_suffix(".sql")
        .ok_or_else(|| format!("malformed migration file name {file_name:?}: {EXPECTED}"))?;
    let (version, name) = stem
        .split_once('_')
        .ok_or_else(|| format!("malformed migration file name {file_name:?}: {EXPECTED}"))?;
    let valid_version = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_version || !valid_name {
        return Err(format!(
            "malformed migration file name {file_name:?}: {EXPECTED}"
        ));
    }
    let version = version
        .parse::<i64>()
        .map_err(|_| format!("migration version {version} in {file_name:?} is too large"))?;
    Ok((version, name.to_string()))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Direction {
    Up,
    Down,
}

/// A `-- migrate:up [transaction:false]` line, or None for other lines.
fn parse_marker(line: &str) -> Option<std::result::Result<(Direction, bool), String>> {
    let rest = line.trim().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("migrate:")?;
    let mut words = rest.split_whitespace();
    let direction = match words.next() {
        Some("up") => Direction::Up,
        Some("down") => Direction::Down,
        other => {
            return Some(Err(format!(
                "unknown marker \"-- migrate:{}\" (expected \"-- migrate:up\" or \"-- migrate:down\")",
                other.unwrap_or("")
            )));
        }
    };
    let mut transactional = true;
    for option in words {
        match option {
            "transaction:false" => transactional = false,
            "transaction:true" => transactional = true,
            other => {
                return Some(Err(format!(
                    "unknown option {other:?} on the migrate marker (expected transaction:false)"
                )));
            }
        }
    }
    Some(Ok((direction, transactional)))
}

fn parse_sections(path: &Path, text: &str) -> Result<(Section, Option<Section>)> {
    let mut up: Option<Section> = None;
    let mut down: Option<Section> = None;
    // (direction, marker line, transactional, byte offset where its SQL starts)
    let mut current: Option<(Direction, usize, bool, usize)> = None;
    let mut preamble_end = text.len();
    let mut offset = 0;

    let mut close = |current: Option<(Direction, usize, bool, usize)>, end: usize| -> Result<()> {
        if let Some((direction, marker_line, transactional, start)) = current {
            let section = Section {
                sql: text[start..end].to_string(),
                marker_line,
                transactional,
            };
            let slot = match direction {
                Direction::Up => &mut up,
                Direction::Down => &mut down,
            };
            if let Some(first) = slot {
                let which = if direction == Direction::Up {
                    "up"
                } else {
                    "down"
                };
                return Err(invalid(
                    path,
                    marker_line,
                    format!(
                        "a second \"-- migrate:{which}\" section (the first is at line {}); a file has one of each",
                        first.marker_line
                    ),
                ));
            }
            *slot = Some(section);
        }
        Ok(())
    };

    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_start = offset;
        offset += line.len();
        if let Some(marker) = parse_marker(line) {
            let (direction, transactional) = marker.map_err(|msg| invalid(path, index + 1, msg))?;
            if current.is_none() {
                preamble_end = line_start;
            }
            close(current.take(), line_start)?;
            current = Some((direction, index + 1, transactional, offset));
        }
    }
    close(current.take(), text.len())?;

    if let Some(statement) = sql_text::split_statements(&text[..preamble_end]).first() {
        return Err(invalid(
            path,
            sql_text::line_of_offset(text, statement.offset),
            "SQL before the first \"-- migrate:up\" marker would never run; move it into a section",
        ));
    }
    let up = up.ok_or_else(|| {
        invalid(
            path,
            1,
            "no \"-- migrate:up\" section (a migration file needs one; run `orch migrate create NAME` for a template)",
        )
    })?;
    Ok((up, down))
}

/// Statements that cannot run inside a transaction (or would end orch's
/// transaction early) are refused in transactional sections, with the fix.
fn check_transactional_statements(path: &Path, section: &Section) -> Result<()> {
    if !section.transactional {
        return Ok(());
    }
    for statement in sql_text::split_statements(&section.sql) {
        let words = leading_words(statement.text, 4);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let problem = match words.as_slice() {
            ["begin", ..]
            | ["start", "transaction", ..]
            | ["commit", ..]
            | ["rollback", ..]
            | ["end", ..]
            | ["abort", ..] => Some(
                "transaction control statements are not allowed: orch wraps each migration in one transaction itself",
            ),
            ["create", "index", "concurrently", ..]
            | ["create", "unique", "index", "concurrently"]
            | ["drop", "index", "concurrently", ..]
            | ["vacuum", ..] => Some(
                "this statement cannot run inside a transaction; mark the section \"transaction:false\" (e.g. \"-- migrate:up transaction:false\")",
            ),
            ["reindex", rest @ ..] if rest.contains(&"concurrently") => Some(
                "REINDEX CONCURRENTLY cannot run inside a transaction; mark the section \"transaction:false\"",
            ),
            _ => None,
        };
        if let Some(problem) = problem {
            let line = section.file_line(statement.offset);
            return Err(invalid(path, line, problem));
        }
    }
    Ok(())
}

/// The first `n` words of a statement, lower-cased, for classification.
pub fn leading_words(statement: &str, n: usize) -> Vec<String> {
    statement
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The text of a new migration file, as `orch migrate create` writes it.
pub fn template() -> &'static str {
    "-- migrate:up\n\n\n-- migrate:down\n\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, text: &str) -> Result<MigrationFile> {
        MigrationFile::parse(Path::new(&format!("migrations/{name}")), text)
    }

    #[test]
    fn classic_rename_parses() {
        let m = parse(
            "20240102000000_rename_contents.sql",
            "-- migrate:up\nALTER TABLE comments RENAME COLUMN contents TO body;\n\n-- migrate:down\nALTER TABLE comments RENAME COLUMN body TO contents;\n",
        )
        .unwrap();
        assert_eq!(m.version, 20240102000000);
        assert_eq!(m.name, "rename_contents");
        assert_eq!(m.up.marker_line, 1);
        assert!(m.up.transactional);
        assert_eq!(
            m.up.sql.trim(),
            "ALTER TABLE comments RENAME COLUMN contents TO body;"
        );
        assert_eq!(m.down.as_ref().unwrap().marker_line, 4);
        assert_eq!(m.checksum.len(), 64);
    }

    #[test]
    fn transaction_false_marker() {
        let m = parse(
            "1_idx.sql",
            "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY i;\n",
        )
        .unwrap();
        assert!(!m.up.transactional);
        assert!(!m.down.unwrap().transactional);
    }

    #[test]
    fn file_lines_of_statements() {
        let m = parse(
            "1_a.sql",
            "-- header comment\n\n-- migrate:up\nSELECT 1;\n\nSELECT 2;\n",
        )
        .unwrap();
        let statements = sql_text::split_statements(&m.up.sql);
        assert_eq!(m.up.file_line(statements[0].offset), 4);
        assert_eq!(m.up.file_line(statements[1].offset), 6);
    }

    #[test]
    fn bad_files_name_file_and_line() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "create_posts.sql",
                "-- migrate:up\nSELECT 1;\n",
                "migrations/create_posts.sql:1: malformed migration file name",
            ),
            (
                "12x_a.sql",
                "-- migrate:up\n",
                "malformed migration file name",
            ),
            (
                "12_a b.sql",
                "-- migrate:up\n",
                "malformed migration file name",
            ),
            (
                "12_.sql",
                "-- migrate:up\n",
                "malformed migration file name",
            ),
            ("99999999999999999999_a.sql", "-- migrate:up\n", "too large"),
            (
                "1_a.sql",
                "SELECT 1;\n",
                "migrations/1_a.sql:1: SQL before the first",
            ),
            (
                "1_a.sql",
                "-- just a comment\n",
                "migrations/1_a.sql:1: no \"-- migrate:up\" section",
            ),
            (
                "1_a.sql",
                "-- migrate:down\nDROP TABLE t;\n",
                "no \"-- migrate:up\" section",
            ),
            (
                "1_a.sql",
                "-- migrate:up\nSELECT 1;\n-- migrate:down\n\n-- migrate:up\nSELECT 2;\n",
                "migrations/1_a.sql:5: a second \"-- migrate:up\" section (the first is at line 1)",
            ),
            (
                "1_a.sql",
                "-- migrate:sideways\n",
                "migrations/1_a.sql:1: unknown marker",
            ),
            (
                "1_a.sql",
                "-- migrate:up transaction:maybe\n",
                "unknown option \"transaction:maybe\"",
            ),
            (
                "1_a.sql",
                "-- migrate:up\nCREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
                "migrations/1_a.sql:3: this statement cannot run inside a transaction",
            ),
            (
                "1_a.sql",
                "-- migrate:up\nBEGIN;\nSELECT 1;\nCOMMIT;\n",
                "migrations/1_a.sql:2: transaction control",
            ),
        ];
        for (name, text, expected) in cases {
            let err = parse(name, text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{name}: {err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn empty_down_section_is_empty() {
        let m = parse(
            "1_a.sql",
            "-- migrate:up\nSELECT 1;\n-- migrate:down\n-- nothing to undo\n",
        )
        .unwrap();
        assert!(m.down.unwrap().is_empty());
        assert!(!m.up.is_empty());
    }

    #[test]
    fn markers_inside_dollar_quotes_are_still_markers_by_line() {
        // dbmate treats marker lines anywhere as markers; so do we, which keeps the
        // rule simple to explain.
        let m = parse(
            "1_a.sql",
            "-- migrate:up\nSELECT 1;\n  -- migrate:down  \nSELECT 2;\n",
        )
        .unwrap();
        assert_eq!(m.down.unwrap().marker_line, 3);
    }
}
