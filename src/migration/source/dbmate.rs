//! dbmate-style folders, orch's own format: flat `<version>_<name>.sql`
//! files, each with a `-- migrate:up` and an optional `-- migrate:down`
//! section (see `sections`). Files with another extension are ignored.

mod sections;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::migration::file::{Migration, checksum, invalid, numeric_order};
use crate::migration::set::MigrationSet;
use crate::migration::source::{
    Format, MigrationSource, NewMigration, Resolved, new_version, write_new_file,
};

/// A folder of dbmate-style migration files.
#[derive(Debug, Clone)]
pub struct DbmateFolder {
    dir: PathBuf,
}

impl DbmateFolder {
    /// The folder at `dir` (which need not exist: then it has no migrations).
    pub fn new(dir: &Path) -> DbmateFolder {
        DbmateFolder {
            dir: dir.to_path_buf(),
        }
    }
}

impl MigrationSource for DbmateFolder {
    fn format(&self) -> Format {
        Format::Dbmate
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn create(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PathBuf>> {
        let path = self
            .dir
            .join(format!("{}_{name}.sql", new_version(set, now)));
        write_new_file(&path, template())?;
        Ok(vec![path])
    }

    fn write(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
        content: &NewMigration,
    ) -> Result<Vec<PathBuf>> {
        let path = self
            .dir
            .join(format!("{}_{name}.sql", new_version(set, now)));
        write_new_file(&path, &render(content))?;
        Ok(vec![path])
    }

    fn resolve(&self) -> Result<Resolved> {
        let paths: Vec<PathBuf> = super::folder_entries(&self.dir)?
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "sql") && p.is_file())
            .collect();
        let mut resolved = Resolved::default();
        for path in paths {
            resolved.add(load_file(&path));
        }
        Ok(resolved)
    }
}

/// Read and parse one file.
fn load_file(path: &Path) -> Result<Migration> {
    parse_file(path, &super::read_text(path)?)
}

/// Parse one file's text; `path` gives its version and name, and is named
/// in errors. The checksum is the file's.
pub fn parse_file(path: &Path, text: &str) -> Result<Migration> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid(path, 1, "file name is not valid UTF-8"))?;
    let (version, name) = parse_file_name(file_name).map_err(|msg| invalid(path, 1, msg))?;
    let (up, down) = sections::parse_sections(path, text)?;
    let tool_id = file_name
        .split_once('_')
        .map_or_else(String::new, |(v, _)| v.to_string());
    Ok(Migration {
        version,
        order: numeric_order(version),
        tool_id,
        name,
        path: path.to_path_buf(),
        checksum: checksum(text.as_bytes()),
        up,
        down,
    })
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

/// The text of a new migration file, as `orch migrate create` writes it.
/// A new file's text: the header as comments, then both sections, each
/// marked `transaction:false` when it must run outside a transaction.
fn render(content: &NewMigration) -> String {
    let marker = |kind: &str, in_transaction: bool| match in_transaction {
        true => format!("-- migrate:{kind}\n"),
        false => format!("-- migrate:{kind} transaction:false\n"),
    };
    let mut text = content.header_comments();
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&marker("up", content.up_in_transaction));
    text.push_str(content.up.trim_end());
    text.push_str("\n\n");
    text.push_str(&marker("down", content.down_in_transaction));
    text.push_str(content.down.trim_end());
    text.push('\n');
    text
}

pub fn template() -> &'static str {
    "-- migrate:up\n\n\n-- migrate:down\n\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql_text;

    fn parse(name: &str, text: &str) -> Result<Migration> {
        parse_file(Path::new(&format!("migrations/{name}")), text)
    }

    #[test]
    fn written_migrations_read_back_with_their_sections() {
        let dir = tempfile::tempdir().unwrap();
        let folder = DbmateFolder::new(dir.path());
        let set = MigrationSet::resolve(&folder).unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let content = NewMigration {
            up: "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a_key ON t (a);".into(),
            up_in_transaction: false,
            down: "DROP INDEX CONCURRENTLY IF EXISTS t_a_key;".into(),
            down_in_transaction: false,
            header: "Owned by plan p.\n\nSecond line.".into(),
        };
        let written = folder.write(&set, "build_key", now, &content).unwrap();
        assert!(written[0].ends_with("20240102030405_build_key.sql"));
        let text = std::fs::read_to_string(&written[0]).unwrap();
        assert!(
            text.starts_with(
                "-- Owned by plan p.\n--\n-- Second line.\n\n-- migrate:up transaction:false\n"
            ),
            "{text}"
        );
        let set = MigrationSet::resolve(&folder).unwrap();
        let back = set.find("build_key").unwrap();
        assert!(!back.up.transactional);
        assert!(back.up.sql.contains("CREATE UNIQUE INDEX CONCURRENTLY"));
        assert!(!back.down.as_ref().unwrap().transactional);
        // Never over an existing file: a set that does not know of a file
        // (written meanwhile) still gets a refusal, not an overwrite.
        std::fs::write(dir.path().join("20300101000000_x.sql"), "x").unwrap();
        let same = folder.write(
            &MigrationSet::default(),
            "x",
            chrono::DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
                .unwrap()
                .to_utc(),
            &content,
        );
        assert!(
            same.unwrap_err()
                .to_string()
                .contains("cannot create migration file")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("20300101000000_x.sql")).unwrap(),
            "x"
        );
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
        assert_eq!(m.up.path, m.path);
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
        ];
        for (name, text, expected) in cases {
            let err = parse(name, text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{name}: {err:?} should contain {expected:?}"
            );
        }
    }

    /// Whether a section may run in a transaction is checked for the section
    /// about to run, so a file parses whatever its sections hold.
    #[test]
    fn non_transactional_statements_are_checked_per_section() {
        use crate::migration::transactional::check_transactional_statements;
        let m = parse(
            "1_a.sql",
            "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nCREATE INDEX CONCURRENTLY i ON t (a);\nBEGIN;\n",
        )
        .unwrap();
        assert!(check_transactional_statements(&m.up, Format::Dbmate).is_ok());
        let err =
            check_transactional_statements(m.down.as_ref().unwrap(), Format::Dbmate).unwrap_err();
        assert!(
            err.to_string()
                .contains("migrations/1_a.sql:4: this statement cannot run inside a transaction"),
            "{err}"
        );
    }

    #[test]
    fn empty_down_section_is_empty() {
        let m = parse(
            "1_a.sql",
            "-- migrate:up\nSELECT 1;\n-- migrate:down\n-- nothing to undo\n",
        )
        .unwrap();
        let down = m.down.unwrap();
        assert!(down.is_empty() && down.says_nothing_to_undo());
        assert!(!m.up.is_empty() && !m.up.says_nothing_to_undo());
        let m = parse("1_a.sql", "-- migrate:up\nSELECT 1;\n-- migrate:down\n\n").unwrap();
        assert!(!m.down.unwrap().says_nothing_to_undo());
    }

    #[test]
    fn new_files_parse_back_and_never_share_a_version() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let dir = tempfile::tempdir().unwrap();
        let folder = DbmateFolder::new(dir.path());
        let set = MigrationSet::resolve(&folder).unwrap();
        let first = folder.create(&set, "add_loc", now).unwrap();
        assert!(first[0].ends_with("20240102030405_add_loc.sql"));
        let set = MigrationSet::resolve(&folder).unwrap();
        let second = folder.create(&set, "add_loc", now).unwrap();
        assert!(second[0].ends_with("20240102030406_add_loc.sql"));
        let set = MigrationSet::resolve(&folder).unwrap();
        let versions: Vec<i64> = set.files.iter().map(|m| m.version).collect();
        assert_eq!(versions, [20240102030405, 20240102030406]);
        assert!(set.files[0].up.is_empty());
    }

    #[test]
    fn resolve_reads_sql_files_only_and_every_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2_b.sql"), "-- migrate:up\nSELECT 1;\n").unwrap();
        std::fs::write(dir.path().join("1_a.sql"), "SELECT 1;\n").unwrap();
        std::fs::write(dir.path().join("bad.sql"), "-- migrate:up\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "not a migration").unwrap();
        let resolved = DbmateFolder::new(dir.path()).resolve().unwrap();
        let names: Vec<&str> = resolved
            .migrations
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["b"]);
        assert_eq!(resolved.problems.len(), 2);
    }
}
