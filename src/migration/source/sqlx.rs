//! sqlx's folders, read as sqlx reads them (sqlx-core's `migrate/source.rs`
//! and `migration_type.rs`): `VERSION_desc.sql` (simple: up only) and
//! `VERSION_desc.up.sql` / `VERSION_desc.down.sql` (reversible), both kinds
//! in one folder if need be, applied in numeric version order; a file that
//! starts with `-- no-transaction` runs outside a transaction. sqlx records
//! each applied version (a bigint) in `_sqlx_migrations`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::file::{Migration, Section, checksum, invalid, numeric_order};
use crate::migration::set::MigrationSet;
use crate::migration::source::{
    Format, MigrationSource, NewMigration, Resolved, decode_text, entry_name, folder_entries,
    new_version, write_new_file,
};

/// A folder of sqlx migration files.
#[derive(Debug, Clone)]
pub struct SqlxFolder {
    dir: PathBuf,
}

impl SqlxFolder {
    /// The folder at `dir` (which need not exist: then it has no migrations).
    pub fn new(dir: &Path) -> SqlxFolder {
        SqlxFolder {
            dir: dir.to_path_buf(),
        }
    }
}

/// What a file is to sqlx, from the end of its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `VERSION_desc.sql`: an up-only migration.
    Simple,
    /// `VERSION_desc.up.sql`.
    Up,
    /// `VERSION_desc.down.sql`.
    Down,
}

/// The files of one version: the up file (simple or `.up.sql`) and the
/// down file.
#[derive(Default)]
struct Files {
    up: Option<PathBuf>,
    down: Option<PathBuf>,
}

impl MigrationSource for SqlxFolder {
    fn format(&self) -> Format {
        Format::Sqlx
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
            let file = match parsed {
                None => {
                    resolved.notes.push(format!(
                        "{}: ignored: not a sqlx migration (expected VERSION_description.sql, .up.sql or .down.sql)",
                        path.display()
                    ));
                    continue;
                }
                Some(Err(message)) => {
                    resolved.problems.push(invalid(&path, 1, message));
                    continue;
                }
                Some(Ok(file)) => file,
            };
            // A migration's name is shown and recorded: it must be text.
            if let Err(problem) = entry_name(&path) {
                resolved.problems.push(problem);
                continue;
            }
            let files = versions.entry(file.version).or_default();
            let slot = match file.kind {
                Kind::Simple | Kind::Up => &mut files.up,
                Kind::Down => &mut files.down,
            };
            if let Some(first) = slot {
                resolved.problems.push(invalid(
                    &path,
                    1,
                    format!(
                        "version {} is also used by {} (numeric value counts: leading zeros do not make versions different)",
                        file.version,
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
                        "a down file without an up file: no {version}_*.up.sql (or .sql) has version {version}, so sqlx never runs it; add the up file, or remove this one"
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
        let written = if reversible(set) {
            let up = self.dir.join(format!("{version}_{name}.up.sql"));
            let down = self.dir.join(format!("{version}_{name}.down.sql"));
            write_new_file(&up, "-- Write the migration here.\n")?;
            write_new_file(&down, "-- Write what undoes the up migration here.\n")?;
            vec![up, down]
        } else {
            let path = self.dir.join(format!("{version}_{name}.sql"));
            write_new_file(&path, "-- Write the migration here.\n")?;
            vec![path]
        };
        Ok(written)
    }

    /// A reversible migration (`.up.sql` and `.down.sql`), each file
    /// starting with `-- no-transaction` when it must run outside one.
    fn write(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
        content: &NewMigration,
    ) -> Result<Vec<PathBuf>> {
        let version = next_sequence(set).unwrap_or_else(|| new_version(set, now).to_string());
        let file = |in_transaction: bool, header: &str, sql: &str| {
            let mut text = String::new();
            if !in_transaction {
                text.push_str("-- no-transaction\n");
            }
            text.push_str(header);
            text.push_str(sql.trim_end());
            text.push('\n');
            text
        };
        let up = self.dir.join(format!("{version}_{name}.up.sql"));
        let down = self.dir.join(format!("{version}_{name}.down.sql"));
        write_new_file(
            &up,
            &file(
                content.up_in_transaction,
                &content.header_comments(),
                &content.up,
            ),
        )?;
        write_new_file(&down, &file(content.down_in_transaction, "", &content.down))?;
        Ok(vec![up, down])
    }
}

/// Whether new migrations are reversible: as `sqlx migrate add` infers it,
/// when the folder's newest migration is.
fn reversible(set: &MigrationSet) -> bool {
    set.files
        .iter()
        .max_by_key(|m| m.version)
        .is_some_and(|m| m.down.is_some() || m.path.to_string_lossy().ends_with(".up.sql"))
}

/// The next version of a folder numbered in sequence, as `sqlx migrate add`
/// infers it: when the two newest versions differ by one (or the only one
/// is 0 or 1), the newest plus one, as four digits or more. None for a
/// folder numbered by time.
fn next_sequence(set: &MigrationSet) -> Option<String> {
    let mut versions: Vec<i64> = set.files.iter().map(|m| m.version).collect();
    versions.sort_unstable();
    let next = match versions.as_slice() {
        [.., previous, latest] if latest.checked_sub(*previous) == Some(1) => latest.checked_add(1),
        [latest @ (0 | 1)] => Some(latest + 1),
        _ => None,
    }?;
    Some(format!("{next:04}"))
}

/// Read the migration of `version` from its up file (simple or `.up.sql`)
/// and optional down file.
fn load_migration(version: i64, up: &Path, down: Option<&Path>) -> Result<Migration> {
    let name = match FileName::parse(entry_name(up)?) {
        Some(Ok(file)) => file.description.to_string(),
        _ => String::new(),
    };
    let up = read_section(up)?;
    let down = match down {
        Some(path) => Some(read_section(path)?),
        None => None,
    };
    Ok(Migration {
        version,
        order: numeric_order(version),
        // _sqlx_migrations.version is a bigint.
        tool_id: version.to_string(),
        name,
        path: up.path.clone(),
        // sqlx's own checksum covers the up file alone (the one it records
        // and compares); so does orch's.
        checksum: checksum(up.sql.as_bytes()),
        up,
        down,
    })
}

/// A file as one section: sqlx runs the whole file, in a transaction
/// unless its text starts with `-- no-transaction` (byte for byte: sqlx
/// checks the text as read, so not after a byte-order mark).
fn read_section(path: &Path) -> Result<Section> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read migration", path, e))?;
    let no_transaction = bytes.starts_with(b"-- no-transaction");
    Ok(Section {
        path: path.to_path_buf(),
        sql: decode_text(path, bytes)?,
        marker_line: 0,
        transactional: !no_transaction,
        exact_columns: true,
    })
}

/// A file name sqlx takes for a migration: `VERSION_description` ending in
/// `.sql`, `.up.sql` or `.down.sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileName<'a> {
    version: i64,
    kind: Kind,
    /// As written, underscores kept (sqlx shows them as spaces).
    description: &'a str,
}

impl<'a> FileName<'a> {
    /// None for a name sqlx ignores (no `_`, or not ending in `.sql`); an
    /// error for one it refuses (the part before the first `_` is not an
    /// integer: sqlx stops reading the folder there).
    fn parse(name: &'a str) -> Option<std::result::Result<FileName<'a>, String>> {
        let (version, rest) = name.split_once('_')?;
        if !rest.ends_with(".sql") {
            return None;
        }
        let Ok(version) = version.parse::<i64>() else {
            return Some(Err(format!(
                "{name:?} is not a migration file name sqlx accepts: the part before the first \"_\" must be an integer version, e.g. 0001_add_users.sql (sqlx refuses the folder too)"
            )));
        };
        if version < 0 {
            return Some(Err(format!(
                "{name:?}: version {version} is negative; sqlx documents versions as integers greater than zero"
            )));
        }
        let (kind, suffix) = if rest.ends_with(".up.sql") {
            (Kind::Up, ".up.sql")
        } else if rest.ends_with(".down.sql") {
            (Kind::Down, ".down.sql")
        } else {
            (Kind::Simple, ".sql")
        };
        Some(Ok(FileName {
            version,
            kind,
            description: rest.trim_end_matches(suffix),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        dir
    }

    fn resolve(dir: &tempfile::TempDir) -> Resolved {
        SqlxFolder::new(dir.path()).resolve().unwrap()
    }

    #[test]
    fn file_names_as_sqlx_reads_them() {
        // (file name, (version, kind, description) when sqlx takes it)
        type Parsed<'a> = Option<(i64, Kind, &'a str)>;
        let cases: &[(&str, Parsed)] = &[
            ("1_user.sql", Some((1, Kind::Simple, "user"))),
            (
                "20230101000000_create_users.up.sql",
                Some((20230101000000, Kind::Up, "create_users")),
            ),
            ("0002_b.down.sql", Some((2, Kind::Down, "b"))),
            ("3_.sql", Some((3, Kind::Simple, ""))),
            ("README.md", None),
            ("schema.sql", None),
            ("1_a.txt", None),
        ];
        for (name, expected) in cases {
            let got = FileName::parse(name).map(|f| {
                let f = f.unwrap();
                (f.version, f.kind, f.description)
            });
            assert_eq!(got, *expected, "{name}");
        }
        for refused in ["init_db.sql", "v1_a.sql", "99999999999999999999_a.sql"] {
            let err = FileName::parse(refused).unwrap().unwrap_err();
            assert!(err.contains("must be an integer version"), "{err}");
        }
        let err = FileName::parse("-2_a.sql").unwrap().unwrap_err();
        assert!(err.contains("version -2 is negative"), "{err}");
    }

    /// sqlx records `migration.version`, the file name's integer prefix,
    /// in `_sqlx_migrations.version` (a bigint).
    #[test]
    fn tool_id_is_the_version_sqlx_records() {
        let dir = folder(&[
            ("0001_user.sql", b"CREATE TABLE u ();"),
            ("20230201000000_post.up.sql", b"CREATE TABLE p ();"),
            ("20230201000000_post.down.sql", b"DROP TABLE p;"),
        ]);
        let resolved = resolve(&dir);
        let rows: Vec<(i64, &str, &str, bool)> = resolved
            .migrations
            .iter()
            .map(|m| {
                (
                    m.version,
                    m.tool_id.as_str(),
                    m.name.as_str(),
                    m.down.is_some(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (1, "1", "user", false),
                (20230201000000, "20230201000000", "post", true)
            ]
        );
    }

    #[test]
    fn simple_and_reversible_mix_in_numeric_order() {
        let dir = folder(&[
            ("10_c.up.sql", b"SELECT 1;"),
            ("10_c.down.sql", b"SELECT 1;"),
            ("9_b.sql", b"SELECT 1;"),
            ("1_a.sql", b"SELECT 1;"),
            ("notes.txt", b"x"),
        ]);
        let set = MigrationSet::resolve(&SqlxFolder::new(dir.path())).unwrap();
        let names: Vec<&str> = set.files.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(set.notes.len(), 1);
        assert!(set.notes[0].contains("notes.txt: ignored"));
        let c = &set.files[2];
        assert_eq!(c.path, dir.path().join("10_c.up.sql"));
        assert_eq!(
            c.down.as_ref().unwrap().path,
            dir.path().join("10_c.down.sql")
        );
    }

    #[test]
    fn no_transaction_on_the_first_line() {
        let dir = folder(&[
            (
                "1_idx.up.sql",
                b"-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
            ),
            ("1_idx.down.sql", b"DROP INDEX i;\n"),
            ("2_late.sql", b"SELECT 1;\n-- no-transaction\n"),
            ("3_bom.sql", b"\xEF\xBB\xBF-- no-transaction\nVACUUM;\n"),
        ]);
        let resolved = resolve(&dir);
        let flags: Vec<(bool, Option<bool>)> = resolved
            .migrations
            .iter()
            .map(|m| (m.up.transactional, m.down.as_ref().map(|d| d.transactional)))
            .collect();
        assert_eq!(flags, [(false, Some(true)), (true, None), (true, None)]);
        assert_eq!(
            resolved.migrations[2].up.sql,
            "-- no-transaction\nVACUUM;\n"
        );
    }

    #[test]
    fn problems_name_the_file() {
        let dir = folder(&[
            ("1_a.sql", b"SELECT 1;"),
            ("01_b.sql", b"SELECT 1;"),
            ("2_c.down.sql", b"SELECT 1;"),
            ("init_db.sql", b"SELECT 1;"),
            ("3_bad.sql", b"SELECT '\xff';"),
        ]);
        let problems: Vec<String> = resolve(&dir)
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect();
        let all = problems.join("\n");
        assert_eq!(problems.len(), 4, "{all}");
        assert!(
            all.contains(&format!(
                "1_a.sql:1: version 1 is also used by {}",
                dir.path().join("01_b.sql").display()
            )),
            "{all}"
        );
        assert!(
            all.contains("2_c.down.sql:1: a down file without an up file"),
            "{all}"
        );
        assert!(
            all.contains("init_db.sql:1: \"init_db.sql\" is not a migration file name"),
            "{all}"
        );
        assert!(all.contains("3_bad.sql:1: not valid UTF-8"), "{all}");
    }

    #[test]
    fn checksum_covers_the_up_file_only() {
        let dir = folder(&[("1_a.up.sql", b"SELECT 1;\n")]);
        let before = resolve(&dir).migrations[0].checksum.clone();
        std::fs::write(dir.path().join("1_a.down.sql"), "SELECT 2;\n").unwrap();
        assert_eq!(resolve(&dir).migrations[0].checksum, before);
        std::fs::write(dir.path().join("1_a.up.sql"), "SELECT 3;\n").unwrap();
        assert_ne!(resolve(&dir).migrations[0].checksum, before);
    }

    #[test]
    fn create_follows_the_folders_kind_and_numbering() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let cases: &[(&[&str], &[&str])] = &[
            (&[], &["20240102030405_add_x.sql"]),
            (&["1_a.sql", "2_b.sql"], &["0003_add_x.sql"]),
            (&["1_a.sql"], &["0002_add_x.sql"]),
            (&["5_a.sql"], &["20240102030405_add_x.sql"]),
            (
                &[
                    "20230101000000_a.sql",
                    "20230201000000_b.up.sql",
                    "20230201000000_b.down.sql",
                ],
                &[
                    "20240102030405_add_x.up.sql",
                    "20240102030405_add_x.down.sql",
                ],
            ),
            (
                &["20230101000000_a.up.sql", "20230201000000_b.sql"],
                &["20240102030405_add_x.sql"],
            ),
            (&["20240102030405_a.sql"], &["20240102030406_add_x.sql"]),
        ];
        for (existing, expected) in cases {
            let files: Vec<(&str, &[u8])> =
                existing.iter().map(|f| (*f, &b"SELECT 1;"[..])).collect();
            let dir = folder(&files);
            let source = SqlxFolder::new(dir.path());
            let set = MigrationSet::resolve(&source).unwrap();
            let written = source.create(&set, "add_x", now).unwrap();
            let expected: Vec<PathBuf> = expected.iter().map(|f| dir.path().join(f)).collect();
            assert_eq!(written, expected, "{existing:?}");
            let set = MigrationSet::resolve(&source).unwrap();
            let created = set.find("add_x").unwrap();
            assert!(created.up.is_empty());
            assert_eq!(created.down.is_some(), expected.len() == 2);
        }
    }
}
