//! goose folders (pressly/goose), SQL migrations only: flat
//! `<version>_<name>.sql` files with `-- +goose Up` and an optional
//! `-- +goose Down` section (see `annotations`), applied in numeric version
//! order and tracked by version in goose's `goose_db_version.version_id`.
//! Go migrations (`<version>_<name>.go`) run code orch cannot, so they are
//! refused; files without a version are ignored, as goose ignores them.

mod annotations;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::file::{Migration, checksum, invalid, numeric_order};
use crate::migration::set::MigrationSet;
use crate::migration::source::{
    Format, MigrationSource, NewMigration, Resolved, new_version, write_new_file,
};

/// A folder of goose SQL migrations.
#[derive(Debug, Clone)]
pub struct GooseFolder {
    dir: PathBuf,
}

impl GooseFolder {
    /// The folder at `dir` (which need not exist: then it has no migrations).
    pub fn new(dir: &Path) -> GooseFolder {
        GooseFolder {
            dir: dir.to_path_buf(),
        }
    }
}

impl MigrationSource for GooseFolder {
    fn format(&self) -> Format {
        Format::Goose
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn resolve(&self) -> Result<Resolved> {
        let mut resolved = Resolved::default();
        for path in files(&self.dir)? {
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(stem) = file_name.strip_suffix(".go") {
                if !stem.ends_with("_test") && version_of(file_name).is_some() {
                    resolved.problems.push(invalid(
                        &path,
                        1,
                        "a Go migration: orch reads goose's SQL migrations only, since a Go migration runs code; rewrite it as an .sql migration with the same version (its SQL between -- +goose Up and -- +goose Down)",
                    ));
                }
                continue;
            }
            if !file_name.ends_with(".sql") {
                continue;
            }
            if version_of(file_name).is_none() {
                resolved.notes.push(format!(
                    "{}: ignored, as goose ignores it: a goose migration is named <version>_<name>.sql with a version of 1 or more",
                    path.display()
                ));
                continue;
            }
            resolved.add(load_file(&path));
        }
        Ok(resolved)
    }

    /// goose's `create` with a timestamp version (its default), or, in a
    /// folder whose newest migration is numbered sequentially (`goose -s`,
    /// `goose fix`), the next sequential number as goose writes it (`%05d`).
    fn create(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PathBuf>> {
        let path = self.new_path(set, name, now);
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
        let in_transaction = content.one_transaction_setting(Format::Goose, &self.dir)?;
        let mut text = String::new();
        if !in_transaction {
            text.push_str("-- +goose NO TRANSACTION\n");
        }
        text.push_str("-- +goose Up\n");
        text.push_str(&content.header_comments());
        text.push_str(content.up.trim_end());
        text.push_str("\n\n-- +goose Down\n");
        text.push_str(content.down.trim_end());
        text.push('\n');
        let path = self.new_path(set, name, now);
        write_new_file(&path, &text)?;
        Ok(vec![path])
    }
}

impl GooseFolder {
    /// The file of a new migration: the next number in a numbered folder,
    /// else a timestamp.
    fn new_path(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> PathBuf {
        let version = match set.files.iter().map(|m| m.version).max() {
            Some(newest) if !is_timestamp(newest) => {
                let mut next = newest.saturating_add(1);
                while set.by_version(next).is_some() {
                    next = next.saturating_add(1);
                }
                format!("{next:05}")
            }
            _ => new_version(set, now).to_string(),
        };
        self.dir.join(format!("{version}_{name}.sql"))
    }
}

/// The `.sql` and `.go` files of `dir`, sorted; none for a missing folder.
fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("cannot list migrations", dir, e))?;
                let path = entry.path();
                if path.is_file() {
                    paths.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot list migrations", dir, e)),
    }
    paths.sort();
    Ok(paths)
}

/// goose's version of a file name: the digits before the first `_`, when
/// they make a number of 1 or more (goose ignores other files).
fn version_of(file_name: &str) -> Option<i64> {
    let (digits, _) = file_name.split_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok().filter(|v| *v >= 1)
}

/// Whether goose takes `version` for a timestamp (`YYYYMMDDhhmmss` from
/// 1970 on) rather than a sequential number.
fn is_timestamp(version: i64) -> bool {
    chrono::NaiveDateTime::parse_from_str(&version.to_string(), "%Y%m%d%H%M%S")
        .is_ok_and(|at| at.and_utc().timestamp() >= 0)
}

/// Read and parse one file.
fn load_file(path: &Path) -> Result<Migration> {
    parse_file(path, &super::read_text(path)?)
}

/// Parse one goose file's text; `path` gives its version and name, and is
/// named in errors. The checksum is the file's.
pub fn parse_file(path: &Path, text: &str) -> Result<Migration> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid(path, 1, "file name is not valid UTF-8"))?;
    let version = version_of(file_name).ok_or_else(|| {
        invalid(
            path,
            1,
            format!("malformed goose migration file name {file_name:?}: expected <version>_<name>.sql with a version of 1 or more, e.g. 20240101120000_add_posts.sql or 00001_add_posts.sql"),
        )
    })?;
    let name = file_name
        .split_once('_')
        .map_or("", |(_, rest)| rest)
        .strip_suffix(".sql")
        .unwrap_or_default()
        .to_string();
    let (up, down) = annotations::parse_sections(path, text)?;
    Ok(Migration {
        version,
        order: numeric_order(version),
        tool_id: version.to_string(),
        name,
        path: path.to_path_buf(),
        checksum: checksum(text.as_bytes()),
        up,
        down,
    })
}

/// A new goose migration, as `orch migrate create` writes it.
pub fn template() -> &'static str {
    "-- +goose Up\n\n\n-- +goose Down\n\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn versions_as_goose_reads_them() {
        let cases: &[(&str, Option<i64>)] = &[
            ("20240101120000_add_posts.sql", Some(20240101120000)),
            ("00001_add_posts.sql", Some(1)),
            ("1_a_b.sql", Some(1)),
            ("1_.sql", Some(1)),
            ("0_zero.sql", None),
            ("add_posts.sql", None),
            ("12.sql", None),
            ("-1_a.sql", None),
            ("99999999999999999999_a.sql", None),
        ];
        for (name, expected) in cases {
            assert_eq!(version_of(name), *expected, "{name}");
        }
        assert!(is_timestamp(20240101120000));
        assert!(!is_timestamp(1));
        assert!(!is_timestamp(19691231235959));
    }

    #[test]
    fn parses_a_file_with_goose_ids() {
        let m = parse_file(
            Path::new("m/00002_add_posts.sql"),
            "-- +goose Up\nCREATE TABLE posts ();\n-- +goose Down\nDROP TABLE posts;\n",
        )
        .unwrap();
        assert_eq!(
            (m.version, m.name.as_str(), m.tool_id.as_str()),
            (2, "add_posts", "2")
        );
        assert_eq!(m.order, numeric_order(2));
        assert_eq!(m.checksum.len(), 64);
        let err = parse_file(Path::new("m/x.sql"), "-- +goose Up\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m/x.sql:1: malformed goose migration file name"),
            "{err}"
        );
    }

    #[test]
    fn resolve_orders_numerically_refuses_go_and_ignores_unversioned() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("10_c.sql", "-- +goose Up\nSELECT 10;\n");
        write("9_b.sql", "-- +goose Up\nSELECT 9;\n");
        write("00001_a.sql", "-- +goose Up\nSELECT 1;\n");
        write("seed.sql", "INSERT INTO t VALUES (1);\n");
        write("helpers.go", "package migrations\n");
        write("3_x_test.go", "package migrations\n");
        write("README.md", "# migrations\n");
        let set = MigrationSet::resolve(&GooseFolder::new(dir.path())).unwrap();
        let names: Vec<&str> = set.files.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(set.format, Format::Goose);
        assert_eq!(set.notes.len(), 1);
        assert!(
            set.notes[0].contains("seed.sql: ignored"),
            "{:?}",
            set.notes
        );

        write("4_fill.go", "package migrations\n");
        let err = MigrationSet::resolve(&GooseFolder::new(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("4_fill.go:1: a Go migration"), "{err}");
    }

    #[test]
    fn create_writes_goose_files_with_new_versions() {
        let dir = tempfile::tempdir().unwrap();
        let folder = GooseFolder::new(dir.path());
        let now = at("2024-01-02T03:04:05Z");
        let set = MigrationSet::resolve(&folder).unwrap();
        let first = folder.create(&set, "add_posts", now).unwrap();
        assert!(
            first[0].ends_with("20240102030405_add_posts.sql"),
            "{first:?}"
        );
        let set = MigrationSet::resolve(&folder).unwrap();
        let second = folder.create(&set, "add_tags", now).unwrap();
        assert!(
            second[0].ends_with("20240102030406_add_tags.sql"),
            "{second:?}"
        );
        let set = MigrationSet::resolve(&folder).unwrap();
        assert_eq!(set.files.len(), 2);
        assert!(set.files[0].up.is_empty());
        assert!(set.files[0].down.is_some());

        // A sequentially numbered folder gets the next number.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00007_a.sql"), "-- +goose Up\nSELECT 1;\n").unwrap();
        let folder = GooseFolder::new(dir.path());
        let set = MigrationSet::resolve(&folder).unwrap();
        let created = folder.create(&set, "b", now).unwrap();
        assert!(created[0].ends_with("00008_b.sql"), "{created:?}");
        let set = MigrationSet::resolve(&folder).unwrap();
        assert_eq!(set.files[1].version, 8);
    }
}
