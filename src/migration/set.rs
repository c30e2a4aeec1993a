//! All migrations of a folder, in the order of its format, with the
//! cross-migration rules (unique versions) that hold whatever
//! [`MigrationSource`] they came from, and how plans refer to them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::file::Migration;
use crate::migration::source::{self, Format, MigrationSource, Resolved};

/// The migrations of one folder, in apply order.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    /// The folder the migrations came from, named in messages.
    pub dir: PathBuf,
    /// The folder's format.
    pub format: Format,
    /// The migrations, in apply order: by the format's order, then version.
    pub files: Vec<Migration>,
    /// What the source ignored and why, for commands to show as warnings.
    pub notes: Vec<String>,
}

impl Default for MigrationSet {
    fn default() -> MigrationSet {
        MigrationSet {
            dir: PathBuf::new(),
            format: Format::Dbmate,
            files: Vec::new(),
            notes: Vec::new(),
        }
    }
}

impl MigrationSet {
    /// Load the folder `dir` in `format`, or in the format detected from
    /// what it holds. A missing directory is an empty set. Every problem is
    /// reported, not just the first.
    pub fn load(dir: &Path, format: Option<Format>) -> Result<MigrationSet> {
        let Some(forced) = format else {
            return Self::resolve(source::open(source::detect(dir)?, dir).as_ref());
        };
        let mut set = Self::resolve(source::open(forced, dir).as_ref())?;
        if set.files.is_empty()
            && let Ok(Some(looks)) = source::detect_signs(dir)
            && looks != forced
        {
            set.notes.push(format!(
                "{}: no {forced} migrations found, but the folder holds {looks} migrations; leave out --format (or ORCH_MIGRATIONS_FORMAT) to read it as {looks}",
                dir.display()
            ));
        }
        Ok(set)
    }

    /// The migrations `source` yields, in order, once every problem it found
    /// and every duplicate version is reported (together).
    pub fn resolve(source: &dyn MigrationSource) -> Result<MigrationSet> {
        let Resolved {
            migrations: mut files,
            mut problems,
            notes,
        } = source.resolve()?;
        files.sort_by(|a, b| (&a.order, a.version).cmp(&(&b.order, b.version)));
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
            format: source.format(),
            files,
            notes,
        })
    }

    /// The migration with this version.
    pub fn by_version(&self, version: i64) -> Option<&Migration> {
        self.files.iter().find(|f| f.version == version)
    }

    /// Where the migration with this version is in apply order.
    pub fn position(&self, version: i64) -> Option<usize> {
        self.files.iter().position(|f| f.version == version)
    }

    /// The migration a plan refers to: by version when `reference` is a
    /// version of the folder, else by name, which must then be unique.
    /// The error says why none is found (none, or which files share it).
    pub fn find(&self, reference: &str) -> std::result::Result<&Migration, String> {
        if let Ok(version) = reference.parse::<i64>()
            && let Some(file) = self.by_version(version)
        {
            return Ok(file);
        }
        let named: Vec<&Migration> = self.files.iter().filter(|f| f.name == reference).collect();
        match named.as_slice() {
            [one] => Ok(one),
            [] => {
                let known: Vec<&str> = self.files.iter().map(|f| f.name.as_str()).collect();
                Err(format!(
                    "no migration named {reference:?} in {} (known: {})",
                    self.dir.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            }
            several => {
                let files: Vec<String> = several
                    .iter()
                    .map(|f| format!("{} (version {})", f.path.display(), f.version))
                    .collect();
                Err(format!(
                    "migration name {reference:?} is ambiguous: {}; refer to one by its version, e.g. `migration: {}`",
                    files.join(" and "),
                    several[0].version
                ))
            }
        }
    }

    /// The migration a plan's `reference` names, when it names exactly one.
    pub fn by_reference(&self, reference: &str) -> Option<&Migration> {
        self.find(reference).ok()
    }
}

/// `orch migrate create`: write a new migration `name` in the folder's
/// format, with a version no migration has (two created in the same second
/// get different ones), never overwriting a file.
pub fn create(
    set: &MigrationSet,
    name: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<PathBuf>> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(Error::Usage(format!(
            "migration name {name:?} may only contain letters, digits, _ and -"
        )));
    }
    // Real folders may repeat a name, but a new one must not: a plan that
    // refers to the name would become ambiguous.
    if let Some(existing) = set.files.iter().find(|f| f.name == name) {
        return Err(Error::Usage(format!(
            "a migration named {name:?} exists already: {} (a second one would make plans that refer to {name:?} ambiguous); choose another name",
            existing.path.display()
        )));
    }
    source::open(set.format, &set.dir).create(set, name, now)
}

fn duplicates(files: &[Migration]) -> Vec<Error> {
    let mut problems = Vec::new();
    let mut versions: HashMap<i64, &Migration> = HashMap::new();
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
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::file::numeric_order;

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
        let set = MigrationSet::load(dir.path(), None).unwrap();
        let names: Vec<&str> = set.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(set.format, Format::Dbmate);
    }

    #[test]
    fn missing_directory_is_empty() {
        let set = MigrationSet::load(Path::new("/nonexistent/orch/migrations"), None).unwrap();
        assert!(set.files.is_empty());
    }

    #[test]
    fn duplicate_versions_are_reported_together_and_names_may_repeat() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "1_a.sql", "-- migrate:up\n");
        write(dir.path(), "01_b.sql", "-- migrate:up\n");
        write(dir.path(), "2_a.sql", "-- migrate:up\n");
        write(dir.path(), "bad.sql", "-- migrate:up\n");
        let err = MigrationSet::load(dir.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 1 is also used by"), "{err}");
        assert!(!err.contains("name \"a\""), "{err}");
        assert!(
            err.contains("bad.sql:1: malformed migration file name"),
            "{err}"
        );
    }

    #[test]
    fn plans_refer_by_unique_name_or_by_version() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "20200101000000_remove_unused_indexes.sql",
            "-- migrate:up\nSELECT 1;\n",
        );
        write(
            dir.path(),
            "20240101000000_remove_unused_indexes.sql",
            "-- migrate:up\nSELECT 2;\n",
        );
        write(
            dir.path(),
            "20240102000000_add_loc.sql",
            "-- migrate:up\nSELECT 3;\n",
        );
        let set = MigrationSet::load(dir.path(), None).unwrap();
        assert_eq!(set.find("add_loc").unwrap().version, 20240102000000);
        assert_eq!(set.find("20240102000000").unwrap().name, "add_loc");
        assert_eq!(
            set.find("20200101000000").unwrap().name,
            "remove_unused_indexes"
        );
        let err = set.find("remove_unused_indexes").unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert!(
            err.contains("20200101000000_remove_unused_indexes.sql (version 20200101000000) and"),
            "{err}"
        );
        assert!(
            err.contains("20240101000000_remove_unused_indexes.sql"),
            "{err}"
        );
        assert!(
            set.find("nope")
                .unwrap_err()
                .contains("no migration named \"nope\"")
        );
        assert!(set.by_reference("remove_unused_indexes").is_none());
    }

    /// A second, test-only source whose migrations keep up and down in
    /// separate files and order by text: proof that the seam is real.
    struct InMemory(Vec<(i64, &'static str)>);

    impl MigrationSource for InMemory {
        fn format(&self) -> Format {
            Format::GolangMigrate
        }

        fn dir(&self) -> &Path {
            Path::new("memory")
        }

        fn create(
            &self,
            _: &MigrationSet,
            _: &str,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<PathBuf>> {
            Ok(Vec::new())
        }

        fn write(
            &self,
            _: &MigrationSet,
            _: &str,
            _: chrono::DateTime<chrono::Utc>,
            _: &crate::migration::source::NewMigration,
        ) -> Result<Vec<PathBuf>> {
            Ok(Vec::new())
        }

        fn resolve(&self) -> Result<Resolved> {
            let mut resolved = Resolved::default();
            for &(version, name) in &self.0 {
                let section = |kind: &str| crate::migration::Section {
                    path: format!("memory/{version}_{name}.{kind}.sql").into(),
                    sql: format!("\nSELECT '{kind}';\n"),
                    marker_line: 0,
                    transactional: true,
                    exact_columns: true,
                };
                resolved.add(Ok(Migration {
                    version,
                    // Text order: 10 before 9.
                    order: version.to_string(),
                    tool_id: version.to_string(),
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
    fn any_source_gets_the_sets_rules_in_its_own_order() {
        let set = MigrationSet::resolve(&InMemory(vec![(10, "c"), (2, "a"), (9, "b")])).unwrap();
        assert_eq!(set.dir, Path::new("memory"));
        assert_eq!(set.format, Format::GolangMigrate);
        let names: Vec<&str> = set.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
        assert_eq!(set.position(9), Some(2));
        let down = set.find("b").unwrap().down.as_ref().unwrap();
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

        let err = MigrationSet::resolve(&InMemory(vec![])).unwrap_err();
        assert_eq!(err.to_string(), "memory/0_empty.up.sql:1: nothing here");
        assert_eq!(numeric_order(9), "00000000000000000009");
    }
}
