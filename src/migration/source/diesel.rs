//! diesel's folders, read as diesel reads them (diesel_migrations'
//! `file_based_migrations.rs` and `migrations_internals`): one directory per
//! migration holding `up.sql`, an optional `down.sql` and an optional
//! `metadata.toml`. The version is the directory name up to its first `_`
//! with the dashes removed, which is also what diesel records in
//! `__diesel_schema_migrations.version`; migrations apply in the text order
//! of that version.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::file::{Migration, Section, checksum, checksum_of_files, invalid};
use crate::migration::set::MigrationSet;
use crate::migration::source::{
    Format, MigrationSource, NewMigration, Resolved, entry_name, folder_entries, read_text,
    write_new_file,
};
use crate::sql_text;

/// A folder of diesel migration directories.
#[derive(Debug, Clone)]
pub struct DieselFolder {
    dir: PathBuf,
}

impl DieselFolder {
    /// The folder at `dir` (which need not exist: then it has no migrations).
    pub fn new(dir: &Path) -> DieselFolder {
        DieselFolder {
            dir: dir.to_path_buf(),
        }
    }
}

impl MigrationSource for DieselFolder {
    fn format(&self) -> Format {
        Format::Diesel
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn resolve(&self) -> Result<Resolved> {
        let mut resolved = Resolved::default();
        for path in folder_entries(&self.dir)? {
            // diesel skips hidden entries, among them its own `.gitkeep`
            // and `.diesel_lock`.
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if !path.is_dir() {
                resolved.notes.push(format!(
                    "{}: ignored: not a migration directory (diesel reads only directories holding an up.sql)",
                    path.display()
                ));
            } else if !path.join("up.sql").is_file() {
                resolved.notes.push(format!(
                    "{}: ignored: no up.sql in it (diesel itself refuses a migrations folder holding such a directory)",
                    path.display()
                ));
            } else {
                let parsed = load_migration(&path, &mut resolved.notes);
                resolved.add(parsed);
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
        let dir = self.new_dir(set, name, now)?;
        let up = dir.join("up.sql");
        let down = dir.join("down.sql");
        write_new_file(&up, "-- Write the migration here.\n")?;
        write_new_file(&down, "-- Write what undoes up.sql here.\n")?;
        Ok(vec![up, down])
    }

    /// `up.sql` and `down.sql`, with a `metadata.toml` saying
    /// `run_in_transaction = false` when they must run outside one.
    fn write(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
        content: &NewMigration,
    ) -> Result<Vec<PathBuf>> {
        let in_transaction = content.one_transaction_setting(Format::Diesel, &self.dir)?;
        let dir = self.new_dir(set, name, now)?;
        let up = dir.join("up.sql");
        let down = dir.join("down.sql");
        write_new_file(
            &up,
            &format!("{}{}\n", content.header_comments(), content.up.trim_end()),
        )?;
        write_new_file(&down, &format!("{}\n", content.down.trim_end()))?;
        let mut written = vec![up, down];
        if !in_transaction {
            let metadata = dir.join("metadata.toml");
            write_new_file(&metadata, "run_in_transaction = false\n")?;
            written.push(metadata);
        }
        Ok(written)
    }
}

impl DieselFolder {
    /// The directory of a new migration, in the folder's version style.
    fn new_dir(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<PathBuf> {
        let style = VersionStyle::of_folder(set);
        let mut at = now;
        let version_text = loop {
            let text = style.format(at);
            let version = parse_version(&text.replace('-', ""))
                .map_err(|problem| Error::Usage(format!("new diesel version {text}: {problem}")))?;
            if set.by_version(version).is_none() {
                break text;
            }
            at += chrono::Duration::seconds(1);
        };
        Ok(self.dir.join(format!("{version_text}_{name}")))
    }
}

/// Read the migration in the directory `dir` (which holds an `up.sql`).
fn load_migration(dir: &Path, notes: &mut Vec<String>) -> Result<Migration> {
    let up_path = dir.join("up.sql");
    let dir_name = entry_name(dir).map_err(|_| {
        invalid(
            &up_path,
            1,
            "the migration directory's name is not valid UTF-8; rename it",
        )
    })?;
    let name = DirName::parse(dir_name).map_err(|message| invalid(&up_path, 1, message))?;

    let metadata_path = dir.join("metadata.toml");
    let metadata = if metadata_path.is_file() {
        let text = read_text(&metadata_path)?;
        let run_in_transaction = run_in_transaction(&metadata_path, &text, notes)?;
        Some((text, run_in_transaction))
    } else {
        None
    };
    let transactional = metadata.as_ref().is_none_or(|(_, run)| *run);

    let up_text = read_text(&up_path)?;
    let down_path = dir.join("down.sql");
    let down = if down_path.is_file() {
        Some(section(&down_path, read_text(&down_path)?, transactional))
    } else {
        None
    };
    // What ran when the migration was applied: up.sql, and metadata.toml,
    // which decides how it ran. A down.sql written later changes nothing
    // that was applied.
    let checksum = match &metadata {
        None => checksum(up_text.as_bytes()),
        Some((text, _)) => checksum_of_files(&[
            ("up.sql", up_text.as_bytes()),
            ("metadata.toml", text.as_bytes()),
        ]),
    };
    Ok(Migration {
        version: name.version,
        order: name.tool_id.clone(),
        tool_id: name.tool_id,
        name: name.name,
        path: dir.to_path_buf(),
        checksum,
        up: section(&up_path, up_text, transactional),
        down,
    })
}

fn section(path: &Path, sql: String, transactional: bool) -> Section {
    Section {
        path: path.to_path_buf(),
        sql,
        marker_line: 0,
        transactional,
        exact_columns: true,
    }
}

/// A migration directory's name as diesel reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DirName {
    /// The name up to its first `_`, dashes removed: diesel's version,
    /// which it records and orders by (as text).
    tool_id: String,
    /// The same digits as a number, orch's version.
    version: i64,
    /// What follows the first `_` (spaces and all), or the whole name
    /// when it has no `_` (diesel reads such a directory too).
    name: String,
}

impl DirName {
    fn parse(dir_name: &str) -> std::result::Result<DirName, String> {
        let (raw, name) = dir_name.split_once('_').unwrap_or((dir_name, dir_name));
        let tool_id = raw.replace('-', "");
        let version = parse_version(&tool_id).map_err(|problem| {
            format!(
                "migration directory {dir_name:?}: its version {raw:?} {problem}; diesel names directories VERSION_name, e.g. 2024-01-02-030405_add_users or 20240102030405_add_users"
            )
        })?;
        Ok(DirName {
            tool_id,
            version,
            name: name.to_string(),
        })
    }
}

/// The number a dash-less diesel version stands for.
fn parse_version(digits: &str) -> std::result::Result<i64, String> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "is not a number once its dashes are removed ({digits:?}); orch keeps numeric versions"
        ));
    }
    digits
        .parse::<i64>()
        .map_err(|_| format!("({digits}) is too large for orch's 64-bit versions"))
}

/// Whether a migration runs in a transaction, from its `metadata.toml`.
/// diesel reads `run_in_transaction` (a missing key is `false`: serde's
/// default for the field; only a missing file means `true`) and ignores
/// other keys. diesel silently runs in a transaction when the file is not
/// valid TOML or the value not a boolean; orch reports it instead, since
/// the author clearly meant something else.
fn run_in_transaction(path: &Path, text: &str, notes: &mut Vec<String>) -> Result<bool> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map_or(1, |span| sql_text::line_of_offset(text, span.start));
        invalid(
            path,
            line,
            format!(
                "not valid TOML: {} (diesel would silently ignore the whole file and run the migration in a transaction)",
                e.message().trim_end()
            ),
        )
    })?;
    for key in table.keys().filter(|k| *k != "run_in_transaction") {
        notes.push(format!(
            "{}: ignored key {key:?} (diesel reads only run_in_transaction)",
            path.display()
        ));
    }
    match table.get("run_in_transaction") {
        Some(toml::Value::Boolean(run)) => Ok(*run),
        Some(other) => Err(invalid(
            path,
            key_line(text, "run_in_transaction"),
            format!(
                "run_in_transaction must be true or false, not a {} (diesel would silently ignore the whole file and run the migration in a transaction)",
                other.type_str()
            ),
        )),
        None => {
            notes.push(format!(
                "{}: no run_in_transaction, so the migration runs outside a transaction (diesel's default when metadata.toml exists; write run_in_transaction = true to keep the transaction)",
                path.display()
            ));
            Ok(false)
        }
    }
}

/// The 1-based line where `key` is set in a TOML text (1 when not found).
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| line.trim_start().starts_with(key))
        .map_or(1, |index| index + 1)
}

/// How diesel spells versions; `create` continues the folder's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionStyle {
    /// `20240102030405`, diesel before 1.0 (and its initial setup).
    Digits,
    /// `2024-01-02-030405`, diesel 1.0 to 2.2.
    Dashed,
    /// `2024-01-02-030405-0000`, diesel 2.3 (a counter for migrations
    /// generated within the same second).
    DashedCounter,
}

impl VersionStyle {
    /// The style of the folder's newest migration, leaving out diesel's
    /// initial setup (always `00000000000000`); with none, diesel's own
    /// current style.
    fn of_folder(set: &MigrationSet) -> VersionStyle {
        set.files
            .iter()
            .rev()
            .filter(|m| m.version != 0)
            .find_map(|m| {
                let name = m.path.file_name()?.to_str()?;
                Some(VersionStyle::of(name.split('_').next()?))
            })
            .unwrap_or(VersionStyle::DashedCounter)
    }

    /// The style of one version as spelled in a directory name.
    fn of(raw: &str) -> VersionStyle {
        let widths: Vec<usize> = raw.split('-').map(str::len).collect();
        match widths.as_slice() {
            [4, 2, 2, 6] => VersionStyle::Dashed,
            [4, 2, 2, 6, 4] => VersionStyle::DashedCounter,
            _ => VersionStyle::Digits,
        }
    }

    fn format(self, at: chrono::DateTime<chrono::Utc>) -> String {
        match self {
            VersionStyle::Digits => at.format("%Y%m%d%H%M%S").to_string(),
            VersionStyle::Dashed => at.format("%Y-%m-%d-%H%M%S").to_string(),
            VersionStyle::DashedCounter => at.format("%Y-%m-%d-%H%M%S-0000").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn resolve(dir: &tempfile::TempDir) -> Resolved {
        DieselFolder::new(dir.path()).resolve().unwrap()
    }

    fn at(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .to_utc()
    }

    #[test]
    fn directory_names_in_every_style() {
        let cases: &[(&str, &str, i64, &str)] = &[
            (
                "00000000000000_diesel_initial_setup",
                "00000000000000",
                0,
                "diesel_initial_setup",
            ),
            (
                "20170102131034_create_users",
                "20170102131034",
                20170102131034,
                "create_users",
            ),
            (
                "2017-08-31-230457_create_posts",
                "20170831230457",
                20170831230457,
                "create_posts",
            ),
            (
                "2025-11-19-091444-0000_add_index",
                "202511190914440000",
                202511190914440000,
                "add_index",
            ),
            (
                "2024-01-02-030405_add users email",
                "20240102030405",
                20240102030405,
                "add users email",
            ),
            ("7", "7", 7, "7"),
        ];
        for (dir_name, tool_id, version, name) in cases {
            let parsed = DirName::parse(dir_name).unwrap();
            assert_eq!(
                parsed,
                DirName {
                    tool_id: tool_id.to_string(),
                    version: *version,
                    name: name.to_string()
                },
                "{dir_name}"
            );
        }
    }

    #[test]
    fn bad_directory_names_name_the_directory() {
        let cases: &[(&str, &str)] = &[
            ("create_users", "its version \"create\" is not a number"),
            ("_x", "its version \"\" is not a number"),
            ("2025-11-19-091444-000a_x", "(\"20251119091444000a\")"),
            ("+1_x", "is not a number"),
            ("99999999999999999999_x", "too large"),
        ];
        for (dir_name, expected) in cases {
            let dir = folder(&[(&format!("{dir_name}/up.sql"), "SELECT 1;")]);
            let resolved = resolve(&dir);
            assert!(resolved.migrations.is_empty(), "{dir_name}");
            let err = resolved.problems[0].to_string();
            assert!(
                err.contains(&format!(
                    "{dir_name}/up.sql:1: migration directory {dir_name:?}"
                )),
                "{err}"
            );
            assert!(err.contains(expected), "{dir_name}: {err}");
        }
    }

    /// diesel records the version, dashes removed, as text in
    /// `__diesel_schema_migrations.version` (its harness inserts
    /// `migration.name().version()`, built by `version_from_string`), and
    /// orders pending migrations by that text.
    #[test]
    fn tool_id_is_what_diesel_records_and_orders_by() {
        let dir = folder(&[
            ("00000000000000_diesel_initial_setup/up.sql", "SELECT 1;"),
            ("2025-11-19-091444-0000_index_posts/up.sql", "SELECT 1;"),
            ("20260102030405_add_email/up.sql", "SELECT 1;"),
            ("2017-08-31-230457_create_posts/up.sql", "SELECT 1;"),
        ]);
        let set = MigrationSet::resolve(&DieselFolder::new(dir.path())).unwrap();
        let rows: Vec<(&str, &str)> = set
            .files
            .iter()
            .map(|m| (m.tool_id.as_str(), m.name.as_str()))
            .collect();
        // Text order: 2025...0000 comes before 2026..., though it is the
        // larger number.
        assert_eq!(
            rows,
            [
                ("00000000000000", "diesel_initial_setup"),
                ("20170831230457", "create_posts"),
                ("202511190914440000", "index_posts"),
                ("20260102030405", "add_email"),
            ]
        );
        assert_eq!(set.format, Format::Diesel);
    }

    #[test]
    fn sections_are_the_files_whole() {
        let dir = folder(&[
            (
                "2017-08-31-230457_create_posts/up.sql",
                "CREATE TABLE posts (id int);\n",
            ),
            (
                "2017-08-31-230457_create_posts/down.sql",
                "DROP TABLE posts;\n",
            ),
            ("20170901000000_no_down/up.sql", "SELECT 1;\n"),
        ]);
        let resolved = resolve(&dir);
        let posts = &resolved.migrations[0];
        assert_eq!(
            posts.path,
            dir.path().join("2017-08-31-230457_create_posts")
        );
        assert_eq!(posts.up.path, posts.path.join("up.sql"));
        assert_eq!(posts.up.marker_line, 0);
        assert!(posts.up.transactional);
        assert_eq!(posts.up.sql, "CREATE TABLE posts (id int);\n");
        let down = posts.down.as_ref().unwrap();
        assert_eq!(
            (down.path.clone(), down.sql.as_str()),
            (posts.path.join("down.sql"), "DROP TABLE posts;\n")
        );
        assert!(resolved.migrations[1].down.is_none());
    }

    #[test]
    fn metadata_toml_decides_the_transaction() {
        let cases: &[(&str, Option<bool>, &str)] = &[
            ("run_in_transaction = false\n", Some(false), ""),
            ("run_in_transaction = true\n", Some(true), ""),
            (
                "# no key at all\n",
                Some(false),
                "no run_in_transaction, so the migration runs outside a transaction",
            ),
            (
                "run_in_transaction = false\nauthor = \"me\"\n",
                Some(false),
                "ignored key \"author\"",
            ),
            (
                "\nrun_in_transaction = \"false\"\n",
                None,
                "metadata.toml:2: run_in_transaction must be true or false, not a string",
            ),
            (
                "run_in_transaction = false\nrun_in_transaction =\n",
                None,
                "metadata.toml:2: not valid TOML",
            ),
        ];
        for (toml_text, expected, message) in cases {
            let dir = folder(&[
                ("1_idx/up.sql", "CREATE INDEX CONCURRENTLY i ON t (a);\n"),
                ("1_idx/down.sql", "DROP INDEX CONCURRENTLY i;\n"),
                ("1_idx/metadata.toml", toml_text),
            ]);
            let resolved = resolve(&dir);
            match expected {
                Some(transactional) => {
                    let m = &resolved.migrations[0];
                    assert_eq!(m.up.transactional, *transactional, "{toml_text}");
                    assert_eq!(
                        m.down.as_ref().unwrap().transactional,
                        *transactional,
                        "{toml_text}"
                    );
                    if !message.is_empty() {
                        assert!(resolved.notes[0].contains(message), "{:?}", resolved.notes);
                    }
                }
                None => {
                    let err = resolved.problems[0].to_string();
                    assert!(err.contains(message), "{toml_text}: {err}");
                }
            }
        }
    }

    #[test]
    fn other_entries_are_ignored_with_a_note() {
        let dir = folder(&[
            ("20170102131034_create_users/up.sql", "SELECT 1;"),
            ("README.md", "how to"),
            ("schema.sql", "SELECT 1;"),
            ("20170102131035_unfinished/notes.txt", "todo"),
            (".gitkeep", ""),
            (".diesel_lock", ""),
        ]);
        let resolved = resolve(&dir);
        assert_eq!(resolved.migrations.len(), 1);
        assert!(resolved.problems.is_empty());
        let notes = resolved.notes.join("\n");
        assert_eq!(resolved.notes.len(), 3, "{notes}");
        assert!(
            notes.contains("README.md: ignored: not a migration directory"),
            "{notes}"
        );
        assert!(notes.contains("schema.sql: ignored"), "{notes}");
        assert!(
            notes.contains("20170102131035_unfinished: ignored: no up.sql"),
            "{notes}"
        );
    }

    #[test]
    fn unreadable_files_are_problems_at_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path().join("1_a/up.sql");
        std::fs::create_dir_all(up.parent().unwrap()).unwrap();
        std::fs::write(&up, b"SELECT 1;\nSELECT '\xff';\n").unwrap();
        let err = DieselFolder::new(dir.path())
            .resolve()
            .unwrap()
            .problems
            .remove(0)
            .to_string();
        assert!(err.contains("1_a/up.sql:2: not valid UTF-8"), "{err}");
    }

    #[test]
    fn checksum_covers_what_ran_not_the_down_file() {
        let dir = folder(&[("1_a/up.sql", "SELECT 1;\n")]);
        let before = resolve(&dir).migrations[0].checksum.clone();
        std::fs::write(dir.path().join("1_a/down.sql"), "SELECT 2;\n").unwrap();
        assert_eq!(resolve(&dir).migrations[0].checksum, before);
        std::fs::write(
            dir.path().join("1_a/metadata.toml"),
            "run_in_transaction = true\n",
        )
        .unwrap();
        assert_ne!(resolve(&dir).migrations[0].checksum, before);
    }

    #[test]
    fn create_continues_the_folders_version_style() {
        let now = at("2024-01-02T03:04:05Z");
        let cases: &[(&[&str], &str)] = &[
            (&[], "2024-01-02-030405-0000_add_x"),
            (
                &["00000000000000_diesel_initial_setup"],
                "2024-01-02-030405-0000_add_x",
            ),
            (
                &["00000000000000_diesel_initial_setup", "20170102131034_a"],
                "20240102030405_add_x",
            ),
            (
                &["20170102131034_a", "2017-08-31-230457_b"],
                "2024-01-02-030405_add_x",
            ),
            (
                &["2017-08-31-230457_b", "2023-01-01-000000-0000_c"],
                "2024-01-02-030405-0000_add_x",
            ),
        ];
        for (existing, expected) in cases {
            let files: Vec<(String, &str)> = existing
                .iter()
                .map(|d| (format!("{d}/up.sql"), "SELECT 1;"))
                .collect();
            let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
            let dir = folder(&files);
            let source = DieselFolder::new(dir.path());
            let set = MigrationSet::resolve(&source).unwrap();
            let written = source.create(&set, "add_x", now).unwrap();
            assert_eq!(
                written,
                [
                    dir.path().join(expected).join("up.sql"),
                    dir.path().join(expected).join("down.sql")
                ],
                "{existing:?}"
            );
            let set = MigrationSet::resolve(&source).unwrap();
            let created = set.find("add_x").unwrap();
            assert!(created.up.is_empty() && created.down.is_some());
        }
    }

    #[test]
    fn create_never_reuses_a_version() {
        let now = at("2024-01-02T03:04:05Z");
        let dir = folder(&[("2024-01-02-030405_a/up.sql", "SELECT 1;")]);
        let source = DieselFolder::new(dir.path());
        let set = MigrationSet::resolve(&source).unwrap();
        let written = source.create(&set, "b", now).unwrap();
        assert!(
            written[0].ends_with("2024-01-02-030406_b/up.sql"),
            "{written:?}"
        );
        let err = source.create(&set, "b", now).unwrap_err().to_string();
        assert!(err.contains("cannot create migration file"), "{err}");
    }
}
