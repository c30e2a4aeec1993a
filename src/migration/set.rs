//! All migration files of a directory, ordered by numeric version, with
//! their cross-file rules (unique versions and names).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::file::MigrationFile;

/// The migrations of one directory, sorted by version.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    pub dir: PathBuf,
    pub files: Vec<MigrationFile>,
}

impl MigrationSet {
    /// Load every `*.sql` file of `dir` (other files are ignored). A missing
    /// directory is an empty set. Every problem is reported, not just the first.
    pub fn load(dir: &Path) -> Result<MigrationSet> {
        let mut paths = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io("cannot list migrations", dir, e))?;
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "sql") && path.is_file() {
                        paths.push(path);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot list migrations", dir, e)),
        }
        paths.sort();
        let mut problems = Vec::new();
        let mut files = Vec::new();
        for path in paths {
            match MigrationFile::load(&path) {
                Ok(file) => files.push(file),
                Err(e) => problems.push(e),
            }
        }
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
            dir: dir.to_path_buf(),
            files,
        })
    }

    pub fn by_version(&self, version: i64) -> Option<&MigrationFile> {
        self.files.iter().find(|f| f.version == version)
    }

    pub fn by_name(&self, name: &str) -> Option<&MigrationFile> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// `orch migrate create`: write `<dir>/<UTC YYYYMMDDHHMMSS>_<name>.sql` from
/// the template, never overwriting a file.
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
    let path = dir.join(format!("{}_{name}.sql", now.format("%Y%m%d%H%M%S")));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io("cannot create migration file", &path, e))?;
    std::io::Write::write_all(&mut file, crate::migration::file::template().as_bytes())
        .map_err(|e| Error::io("cannot write migration file", &path, e))?;
    Ok(path)
}

fn duplicates(files: &[MigrationFile]) -> Vec<Error> {
    let mut problems = Vec::new();
    let mut versions: HashMap<i64, &MigrationFile> = HashMap::new();
    let mut names: HashMap<&str, &MigrationFile> = HashMap::new();
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
}
