//! golang-migrate's folders, read as its file source reads them
//! (`source/parse.go`, `source/iofs`): `N_title.up.ext` and
//! `N_title.down.ext`, a numeric version of any width, applied in numeric
//! order; golang-migrate records only the newest version, as a bigint, in
//! `schema_migrations`.
//!
//! Transactions follow its PostgreSQL driver (`database/postgres`), which
//! sends each file whole as one Exec: PostgreSQL runs the statements of
//! such a string as one implicit transaction, or a file holding a single
//! statement on its own (so `CREATE INDEX CONCURRENTLY` works alone in its
//! file, and fails next to anything else). See [`section`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::migration::file::{Migration, Section, checksum, invalid, numeric_order};
use crate::migration::set::MigrationSet;
use crate::migration::source::{
    Format, MigrationSource, NewMigration, Resolved, entry_name, folder_entries, new_version,
    read_text, write_new_file,
};
use crate::migration::transactional::{Unfit, unfit_for_transaction};
use crate::sql_text::{self, leading_words};

/// A folder of golang-migrate migration files.
#[derive(Debug, Clone)]
pub struct GolangMigrateFolder {
    dir: PathBuf,
}

impl GolangMigrateFolder {
    /// The folder at `dir` (which need not exist: then it has no migrations).
    pub fn new(dir: &Path) -> GolangMigrateFolder {
        GolangMigrateFolder {
            dir: dir.to_path_buf(),
        }
    }
}

/// The up and down files of one version.
#[derive(Default)]
struct Files {
    up: Option<PathBuf>,
    down: Option<PathBuf>,
}

impl MigrationSource for GolangMigrateFolder {
    fn format(&self) -> Format {
        Format::GolangMigrate
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn resolve(&self) -> Result<Resolved> {
        let mut resolved = Resolved::default();
        let mut versions: BTreeMap<i64, Files> = BTreeMap::new();
        for path in folder_entries(&self.dir)? {
            let name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            if name.starts_with('.') {
                continue;
            }
            let parsed = if path.is_file() {
                FileName::parse(&name)
            } else {
                None
            };
            let Some(file) = parsed else {
                resolved.notes.push(format!(
                    "{}: ignored: not a golang-migrate migration (expected N_title.up.sql or N_title.down.sql)",
                    path.display()
                ));
                continue;
            };
            // A migration's name is shown and recorded: it must be text.
            if let Err(problem) = entry_name(&path) {
                resolved.problems.push(problem);
                continue;
            }
            let version = match file.version() {
                Ok(version) => version,
                Err(message) => {
                    resolved.problems.push(invalid(&path, 1, message));
                    continue;
                }
            };
            let files = versions.entry(version).or_default();
            let slot = if file.up {
                &mut files.up
            } else {
                &mut files.down
            };
            if let Some(first) = slot {
                // golang-migrate refuses the whole folder with this message.
                resolved.problems.push(invalid(
                    &path,
                    1,
                    format!(
                        "duplicate migration file: {name} (version {version} has another {} file: {})",
                        if file.up { "up" } else { "down" },
                        first.display()
                    ),
                ));
                continue;
            }
            *slot = Some(path);
        }
        for (version, files) in versions {
            match files {
                Files {
                    up: Some(up),
                    down,
                } => resolved.add(load_migration(version, &up, down.as_deref())),
                Files {
                    up: None,
                    down: Some(down),
                } => resolved.problems.push(invalid(
                    &down,
                    1,
                    format!(
                        "a down file without an up file: no {version}_*.up.sql has version {version} (golang-migrate would record it as an empty migration); add the up file, or remove this one"
                    ),
                )),
                Files {
                    up: None,
                    down: None,
                } => {}
            }
        }
        Ok(resolved)
    }

    fn create(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PathBuf>> {
        let version = next_sequence(set).unwrap_or_else(|| new_version(set, now).to_string());
        let up = self.dir.join(format!("{version}_{name}.up.sql"));
        let down = self.dir.join(format!("{version}_{name}.down.sql"));
        // golang-migrate's `create` writes both files empty.
        write_new_file(&up, "")?;
        write_new_file(&down, "")?;
        Ok(vec![up, down])
    }

    /// `.up.sql` and `.down.sql`. golang-migrate runs a file as one
    /// statement list without a transaction of its own; orch runs a file
    /// holding only a statement that cannot run in a transaction outside
    /// one, so such a section must be that statement alone.
    fn write(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
        content: &NewMigration,
    ) -> Result<Vec<PathBuf>> {
        for (in_transaction, sql) in [
            (content.up_in_transaction, &content.up),
            (content.down_in_transaction, &content.down),
        ] {
            if !in_transaction && sql_text::split_statements(sql).len() > 1 {
                return Err(crate::error::Error::Usage(format!(
                    "{}: in a golang-migrate folder a statement that cannot run in a transaction needs a migration of its own; orch cannot write this one",
                    self.dir.display()
                )));
            }
        }
        let version = next_sequence(set).unwrap_or_else(|| new_version(set, now).to_string());
        let up = self.dir.join(format!("{version}_{name}.up.sql"));
        let down = self.dir.join(format!("{version}_{name}.down.sql"));
        let up_text = format!("{}{}\n", content.header_comments(), content.up.trim_end());
        write_new_file(&up, &up_text)?;
        write_new_file(&down, &format!("{}\n", content.down.trim_end()))?;
        Ok(vec![up, down])
    }
}

/// The next version of a folder numbered in sequence (`migrate create
/// -seq`): the newest version plus one, zero-padded to the width it is
/// written with. None when the folder is numbered by time (its newest
/// version has ten digits or more: a Unix time or a `YYYYMMDDHHMMSS`), or
/// has no migration yet.
fn next_sequence(set: &MigrationSet) -> Option<String> {
    let newest = set.files.iter().max_by_key(|m| m.version)?;
    if newest.version >= 1_000_000_000 {
        return None;
    }
    let written = newest.path.file_name()?.to_str()?.split('_').next()?;
    Some(format!(
        "{:0width$}",
        newest.version + 1,
        width = written.len()
    ))
}

/// Read the migration of `version` from its up file and optional down file.
fn load_migration(version: i64, up: &Path, down: Option<&Path>) -> Result<Migration> {
    let up_name = entry_name(up)?;
    let title = FileName::parse(up_name).map_or("", |f| f.title);
    let up_text = read_text(up)?;
    let down = match down {
        Some(path) => Some(section(path, read_text(path)?)),
        None => None,
    };
    Ok(Migration {
        version,
        order: numeric_order(version),
        // schema_migrations.version is a bigint: no leading zeros.
        tool_id: version.to_string(),
        name: title.to_string(),
        path: up.to_path_buf(),
        // What ran when the migration was applied; a down file written
        // later changes nothing that was applied.
        checksum: checksum(up_text.as_bytes()),
        up: section(up, up_text),
        down,
    })
}

/// A golang-migrate file as orch runs it, doing what golang-migrate's
/// PostgreSQL driver does with it in its default mode (the whole file in
/// one Exec, no transaction of its own):
///
/// - a file wrapped in `BEGIN; ... COMMIT;` (as golang-migrate's tutorial
///   writes them) runs in orch's transaction instead: the same atomicity,
///   and orch's bookkeeping row joins it;
/// - a file whose only statement cannot run in a transaction (`CREATE
///   INDEX CONCURRENTLY`, `VACUUM`...) runs outside one, as golang-migrate
///   runs it;
/// - any other file runs in a transaction: PostgreSQL runs several
///   statements sent as one string in one implicit transaction, so a
///   statement unfit for one there fails under golang-migrate too, and
///   orch's check reports it before anything runs.
fn section(path: &Path, text: String) -> Section {
    let statements = sql_text::split_statements(&text);
    let alone_outside = matches!(statements.as_slice(), [only]
        if unfit_for_transaction(only.text).is_some_and(Unfit::needs_no_transaction));
    let sql = without_outer_transaction(&text, &statements).unwrap_or_else(|| text.clone());
    Section {
        path: path.to_path_buf(),
        sql,
        marker_line: 0,
        transactional: !alone_outside,
        exact_columns: true,
    }
}

/// `text` with an outer `BEGIN; ... COMMIT;` turned into comments (which
/// keeps every line where it is), when the file has one and no other
/// transaction control.
fn without_outer_transaction(text: &str, statements: &[sql_text::Statement<'_>]) -> Option<String> {
    let [first, middle @ .., last] = statements else {
        return None;
    };
    let words = |s: &sql_text::Statement<'_>| leading_words(s.text, 3);
    let begins = matches!(
        words(first)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["begin"] | ["begin", "work" | "transaction"] | ["start", "transaction"]
    );
    let commits = matches!(
        words(last)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["commit" | "end"] | ["commit" | "end", "work" | "transaction"]
    );
    let more_control = middle
        .iter()
        .any(|s| unfit_for_transaction(s.text) == Some(Unfit::TransactionControl));
    if !begins || !commits || more_control {
        return None;
    }
    let mut sql = String::with_capacity(text.len() + 12);
    sql.push_str(&text[..first.offset]);
    sql.push_str(&format!("/* {} */", first.text));
    let first_end = first.offset + first.text.len();
    sql.push_str(&text[first_end..last.offset]);
    sql.push_str(&format!("/* {} */", last.text));
    sql.push_str(&text[last.offset + last.text.len()..]);
    Some(sql)
}

/// A file name golang-migrate's `^([0-9]+)_(.*)\.(down|up)\.(.*)$` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileName<'a> {
    digits: &'a str,
    title: &'a str,
    up: bool,
}

impl<'a> FileName<'a> {
    fn parse(name: &'a str) -> Option<FileName<'a>> {
        let digits_end = name.bytes().take_while(u8::is_ascii_digit).count();
        if digits_end == 0 || name.as_bytes().get(digits_end) != Some(&b'_') {
            return None;
        }
        let digits = &name[..digits_end];
        let rest = &name[digits_end + 1..];
        // The title is greedy: the direction is the last `.up.` or `.down.`.
        let (title_end, up) = (0..rest.len()).rev().find_map(|i| {
            let tail = &rest.as_bytes()[i..];
            if tail.starts_with(b".up.") {
                Some((i, true))
            } else if tail.starts_with(b".down.") {
                Some((i, false))
            } else {
                None
            }
        })?;
        Some(FileName {
            digits,
            title: &rest[..title_end],
            up,
        })
    }

    fn version(&self) -> std::result::Result<i64, String> {
        self.digits.parse::<i64>().map_err(|_| {
            format!(
                "version {} is too large for orch's 64-bit versions",
                self.digits
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    fn resolve(dir: &tempfile::TempDir) -> Resolved {
        GolangMigrateFolder::new(dir.path()).resolve().unwrap()
    }

    fn section_of(text: &str) -> Section {
        section(Path::new("m/1_a.up.sql"), text.to_string())
    }

    #[test]
    fn file_names_as_golang_migrate_matches_them() {
        // (file name, (digits, title, up) when golang-migrate takes it)
        type Parsed<'a> = Option<(&'a str, &'a str, bool)>;
        let cases: &[(&str, Parsed)] = &[
            (
                "000001_create_users_table.up.sql",
                Some(("000001", "create_users_table", true)),
            ),
            (
                "1485949617_movies.down.sql",
                Some(("1485949617", "movies", false)),
            ),
            ("1_a.up.txt", Some(("1", "a", true))),
            ("1_.up.sql", Some(("1", "", true))),
            ("1_a.down.up.sql", Some(("1", "a.down", true))),
            ("1_a.up.", Some(("1", "a", true))),
            ("1_a.sql", None),
            ("1.up.sql", None),
            ("_a.up.sql", None),
            ("a_1.up.sql", None),
            ("1_a.upsql", None),
            ("README.md", None),
            ("1_é.up.sql", Some(("1", "é", true))),
        ];
        for (name, expected) in cases {
            let got = FileName::parse(name).map(|f| (f.digits, f.title, f.up));
            assert_eq!(got, *expected, "{name}");
        }
    }

    /// golang-migrate keeps one row in `schema_migrations`: the version as
    /// a bigint, so `000042` is recorded as 42.
    #[test]
    fn tool_id_is_the_bigint_golang_migrate_records() {
        let dir = folder(&[
            ("000042_a.up.sql", "SELECT 1;"),
            ("20240102030405_b.up.sql", "SELECT 1;"),
        ]);
        let resolved = resolve(&dir);
        let ids: Vec<&str> = resolved
            .migrations
            .iter()
            .map(|m| m.tool_id.as_str())
            .collect();
        assert_eq!(ids, ["42", "20240102030405"]);
        assert_eq!(resolved.migrations[0].version, 42);
        assert_eq!(resolved.migrations[0].name, "a");
    }

    #[test]
    fn numeric_order_whatever_the_width() {
        let dir = folder(&[
            ("10_c.up.sql", "SELECT 1;"),
            ("9_b.up.sql", "SELECT 1;"),
            ("0001_a.up.sql", "SELECT 1;"),
        ]);
        let set = MigrationSet::resolve(&GolangMigrateFolder::new(dir.path())).unwrap();
        let names: Vec<&str> = set.files.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn pairs_missing_downs_orphans_and_duplicates() {
        let dir = folder(&[
            ("000001_a.up.sql", "CREATE TABLE a ();\n"),
            ("000001_a.down.sql", "DROP TABLE a;\n"),
            ("000002_b.up.sql", "CREATE TABLE b ();\n"),
            ("000003_c.down.sql", "DROP TABLE c;\n"),
            ("000004_d.up.sql", "SELECT 1;\n"),
            ("4_dd.up.sql", "SELECT 2;\n"),
            ("README.md", "notes"),
            (".gitkeep", ""),
        ]);
        let resolved = resolve(&dir);
        let names: Vec<(&str, bool)> = resolved
            .migrations
            .iter()
            .map(|m| (m.name.as_str(), m.down.is_some()))
            .collect();
        assert_eq!(names, [("a", true), ("b", false), ("d", false)]);
        let a = &resolved.migrations[0];
        assert_eq!(a.path, dir.path().join("000001_a.up.sql"));
        assert_eq!(
            a.down.as_ref().unwrap().path,
            dir.path().join("000001_a.down.sql")
        );
        let problems: Vec<String> = resolved.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].ends_with(&format!(
                "4_dd.up.sql:1: duplicate migration file: 4_dd.up.sql (version 4 has another up file: {})",
                dir.path().join("000004_d.up.sql").display()
            )),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("000003_c.down.sql:1: a down file without an up file"),
            "{problems:?}"
        );
        assert_eq!(resolved.notes.len(), 1, "{:?}", resolved.notes);
        assert!(resolved.notes[0].contains("README.md: ignored"));
    }

    #[test]
    fn names_that_are_not_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        for name in [&b"1_caf\xe9.up.sql"[..], b"caf\xe9.txt"] {
            let path = dir.path().join(std::ffi::OsStr::from_bytes(name));
            std::fs::write(path, "SELECT 1;").unwrap();
        }
        let resolved = GolangMigrateFolder::new(dir.path()).resolve().unwrap();
        assert!(resolved.migrations.is_empty());
        let err = resolved.problems[0].to_string();
        assert!(err.contains(":1: the name is not valid UTF-8"), "{err}");
        assert_eq!(resolved.notes.len(), 1, "{:?}", resolved.notes);
    }

    #[test]
    fn too_large_a_version_names_the_file() {
        let dir = folder(&[("99999999999999999999_a.up.sql", "SELECT 1;")]);
        let err = resolve(&dir).problems[0].to_string();
        assert!(
            err.contains(
                "99999999999999999999_a.up.sql:1: version 99999999999999999999 is too large"
            ),
            "{err}"
        );
    }

    #[test]
    fn transactions_as_the_postgres_driver_runs_files() {
        // (file, transactional)
        let cases: &[(&str, bool)] = &[
            ("CREATE TABLE a ();\nCREATE TABLE b ();\n", true),
            ("CREATE INDEX CONCURRENTLY i ON t (a);\n", false),
            ("-- why\nDROP INDEX CONCURRENTLY IF EXISTS i;\n", false),
            ("REINDEX INDEX CONCURRENTLY i;", false),
            // Next to another statement it runs in the implicit
            // transaction, and fails there: orch's check reports it.
            (
                "CREATE TABLE a ();\nCREATE INDEX CONCURRENTLY i ON a (x);\n",
                true,
            ),
            ("CREATE INDEX i ON t (a);\n", true),
            ("", true),
        ];
        for (text, transactional) in cases {
            let s = section_of(text);
            assert_eq!(s.transactional, *transactional, "{text:?}");
            assert_eq!(s.sql, *text);
        }
    }

    #[test]
    fn an_outer_begin_commit_becomes_orchs_transaction() {
        let text = "BEGIN;\n\nCREATE TYPE mood AS ENUM ('happy');\nALTER TABLE users ADD COLUMN mood mood;\n\nCOMMIT;\n";
        let s = section_of(text);
        assert!(s.transactional);
        assert_eq!(
            s.sql,
            "/* BEGIN */;\n\nCREATE TYPE mood AS ENUM ('happy');\nALTER TABLE users ADD COLUMN mood mood;\n\n/* COMMIT */;\n"
        );
        assert!(
            crate::migration::transactional::check_transactional_statements(
                &s,
                Format::GolangMigrate
            )
            .is_ok()
        );
        let statements = sql_text::split_statements(&s.sql);
        assert_eq!(statements.len(), 2);
        assert_eq!(s.file_line(statements[1].offset), 4);

        for kept in [
            // Other transaction control: orch's check reports it.
            "BEGIN;\nSELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\nCOMMIT;\n",
            "BEGIN ISOLATION LEVEL SERIALIZABLE;\nSELECT 1;\nCOMMIT;\n",
            "BEGIN;\nSELECT 1;\n",
            "SELECT 1;\nCOMMIT;\n",
        ] {
            let s = section_of(kept);
            assert_eq!(s.sql, kept);
            assert!(
                crate::migration::transactional::check_transactional_statements(
                    &s,
                    Format::GolangMigrate
                )
                .is_err(),
                "{kept}"
            );
        }

        // CREATE INDEX CONCURRENTLY inside BEGIN/COMMIT fails under
        // golang-migrate; orch reports it before running.
        let s = section_of("begin work;\nCREATE INDEX CONCURRENTLY i ON t (a);\nend;\n");
        let err = crate::migration::transactional::check_transactional_statements(
            &s,
            Format::GolangMigrate,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("m/1_a.up.sql:2: this statement cannot run"),
            "{err}"
        );
    }

    #[test]
    fn checksum_covers_the_up_file_only() {
        let dir = folder(&[("1_a.up.sql", "SELECT 1;\n")]);
        let before = resolve(&dir).migrations[0].checksum.clone();
        std::fs::write(dir.path().join("1_a.down.sql"), "SELECT 2;\n").unwrap();
        assert_eq!(resolve(&dir).migrations[0].checksum, before);
    }

    #[test]
    fn create_continues_a_sequence_or_uses_a_timestamp() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let cases: &[(&[&str], &str)] = &[
            (&[], "20240102030405_add_x"),
            (&["000001_a.up.sql", "000002_b.up.sql"], "000003_add_x"),
            (&["1_a.up.sql", "9_b.up.sql"], "10_add_x"),
            (&["0099_a.up.sql"], "0100_add_x"),
            (&["1485949617_a.up.sql"], "20240102030405_add_x"),
            (&["20240102030405_a.up.sql"], "20240102030406_add_x"),
        ];
        for (existing, expected) in cases {
            let files: Vec<(&str, &str)> = existing.iter().map(|f| (*f, "SELECT 1;")).collect();
            let dir = folder(&files);
            let source = GolangMigrateFolder::new(dir.path());
            let set = MigrationSet::resolve(&source).unwrap();
            let written = source.create(&set, "add_x", now).unwrap();
            assert_eq!(
                written,
                [
                    dir.path().join(format!("{expected}.up.sql")),
                    dir.path().join(format!("{expected}.down.sql"))
                ],
                "{existing:?}"
            );
            let set = MigrationSet::resolve(&source).unwrap();
            let created = set.find("add_x").unwrap();
            assert!(created.up.is_empty() && created.down.is_some());
        }
    }
}
