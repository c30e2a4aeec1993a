//! All migrations of a folder, ordered by numeric version, with the
//! cross-migration rules (unique versions and names) that hold whatever
//! [`MigrationSource`] they came from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::file::Migration;
use crate::migration::source::dbmate::{self, DbmateFolder};
use crate::migration::source::{MigrationSource, Resolved};

/// The migrations of one folder, sorted by version.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    /// The folder the migrations came from, named in messages.
    pub dir: PathBuf,
    /// The migrations, sorted by version.
    pub files: Vec<Migration>,
}

impl MigrationSet {
    /// Load the dbmate-style folder `dir`: every `*.sql` file (other files
    /// are ignored). A missing directory is an empty set. Every problem is
    /// reported, not just the first.
    pub fn load(dir: &Path) -> Result<MigrationSet> {
        Self::resolve(&DbmateFolder::new(dir))
    }

    /// The migrations `source` yields, sorted by version, once every problem
    /// it found and every duplicate version or name is reported (together).
    pub fn resolve(source: &dyn MigrationSource) -> Result<MigrationSet> {
        let Resolved {
            migrations: mut files,
            mut problems,
        } = source.resolve()?;
        files.sort_by_key(|f| f.version);
        problems.extend(duplicates(&files));
        if !problems.is_empty() {
            return Err(if problems.len() == 1 {
                problems.remove(0)
            } else {
                Error::Invalid(problems)
            });
        }
        Ok(MigrationSet {
            dir: source.dir().to_path_buf(),
            files,
        })
    }

    /// The migration with this version.
    pub fn by_version(&self, version: i64) -> Option<&Migration> {
        self.files.iter().find(|f| f.version == version)
    }

    /// The migration with this name.
    pub fn by_name(&self, name: &str) -> Option<&Migration> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// `orch migrate create`: write a new dbmate-style file
/// `<dir>/<UTC YYYYMMDDHHMMSS>_<name>.sql` from the template, never
/// overwriting a file.
pub fn create(
    dir: &Path,
    set: &MigrationSet,
    name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(Error::Usage(format!(
            "migration name {name:?} may only contain letters, digits, _ and -"
        )));
    }
    if let Some(existing) = set.by_name(name) {
        return Err(Error::Usage(format!(
            "a migration named {name:?} exists already: {}",
            existing.path.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io("cannot create the migrations directory", dir, e))?;
    let path = dir.join(dbmate::new_file_name(name, now));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io("cannot create migration file", &path, e))?;
    std::io::Write::write_all(&mut file, dbmate::template().as_bytes())
        .map_err(|e| Error::io("cannot write migration file", &path, e))?;
    Ok(path)
}

fn duplicates(files: &[Migration]) -> Vec<Error> {
    let mut problems = Vec::new();
    let mut versions: HashMap<i64, &Migration> = HashMap::new();
    let mut names: HashMap<&str, &Migration> = HashMap::new();
    for file in files {
        if let Some(first) = versions.insert(file.version, file) {
            problems.push(Error::InvalidMigration {
                path: file.path.clone(),
                line: 1,
                message: format!(
                    "version {} is also used by {} (numeric value counts: leading zeros do not make versions different)",
                    file.version,
                    first.path.display()
                ),
            });
        }
        if let Some(first) = names.insert(&file.name, file) {
            problems.push(Error::InvalidMigration {
                path: file.path.clone(),
                line: 1,
                message: format!(
                    "name {:?} is also used by {} (plans refer to migrations by name, so names must be unique)",
                    file.name,
                    first.path.display()
                ),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn orders_by_numeric_version_not_file_name() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "9_b.sql", "-- migrate:up\nSELECT 1;\n");
        write(dir.path(), "10_c.sql", "-- migrate:up\nSELECT 1;\n");
        write(dir.path(), "2_a.sql", "-- migrate:up\nSELECT 1;\n");
        write(dir.path(), "README.md", "not a migration");
        let set = MigrationSet::load(dir.path()).unwrap();
        let names: Vec<&str> = set.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn missing_directory_is_empty() {
        let set = MigrationSet::load(Path::new("/nonexistent/orch/migrations")).unwrap();
        assert!(set.files.is_empty());
    }

    #[test]
    fn duplicate_versions_and_names_are_reported_together() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1_a.sql", "-- migrate:up\n");
        write(dir.path(), "01_b.sql", "-- migrate:up\n");
        write(dir.path(), "2_a.sql", "-- migrate:up\n");
        write(dir.path(), "bad.sql", "-- migrate:up\n");
        let err = MigrationSet::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("version 1 is also used by"), "{err}");
        assert!(err.contains("name \"a\" is also used by"), "{err}");
        assert!(
            err.contains("bad.sql:1: malformed migration file name"),
            "{err}"
        );
    }

    /// A second, test-only source whose migrations keep up and down in
    /// separate files (as golang-migrate does): proof that the seam is real.
    struct InMemory(Vec<(i64, &'static str)>);

    impl MigrationSource for InMemory {
        fn dir(&self) -> &Path {
            Path::new("memory")
        }

        fn resolve(&self) -> Result<Resolved> {
            let mut resolved = Resolved::default();
            for &(version, name) in &self.0 {
                let section = |kind: &str| crate::migration::Section {
                    path: format!("memory/{version}_{name}.{kind}.sql").into(),
                    sql: format!("\nSELECT '{kind}';\n"),
                    marker_line: 0,
                    transactional: true,
                };
                resolved.add(Ok(Migration {
                    version,
                    name: name.to_string(),
                    path: format!("memory/{version}_{name}.up.sql").into(),
                    checksum: crate::migration::file::checksum(name.as_bytes()),
                    up: section("up"),
                    down: Some(section("down")),
                }));
            }
            if self.0.is_empty() {
                resolved.add(Err(crate::migration::file::invalid(
                    Path::new("memory/0_empty.up.sql"),
                    1,
                    "nothing here",
                )));
            }
            Ok(resolved)
        }
    }

    #[test]
    fn any_source_gets_the_sets_rules() {
        let set = MigrationSet::resolve(&InMemory(vec![(10, "c"), (2, "a"), (9, "b")])).unwrap();
        assert_eq!(set.dir, Path::new("memory"));
        let names: Vec<&str> = set.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let down = set.by_name("b").unwrap().down.as_ref().unwrap();
        let statement = &crate::sql_text::split_statements(&down.sql)[0];
        assert_eq!(
            (down.path.as_path(), down.file_line(statement.offset)),
            (Path::new("memory/9_b.down.sql"), 2)
        );

        let err = MigrationSet::resolve(&InMemory(vec![(1, "a"), (1, "b"), (2, "a")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory/1_b.up.sql:1: version 1 is also used by memory/1_a.up.sql"),
            "{err}"
        );
        assert!(err.contains("name \"a\" is also used by"), "{err}");

        let err = MigrationSet::resolve(&InMemory(vec![])).unwrap_err();
        assert_eq!(err.to_string(), "memory/0_empty.up.sql:1: nothing here");
    }
}
