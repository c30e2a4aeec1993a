//! node-pg-migrate folders (salsita/node-pg-migrate): flat
//! `<timestamp>_<name>.<ext>` files, `.sql` ones with `-- Up Migration` /
//! `-- Down Migration` comments (see `sql_file`) and `.js`, `.cjs`, `.mjs`
//! and `.ts` ones of one plain shape (see `js_file`). They apply in
//! node-pg-migrate's order: by the time their prefix stands for (13 digits:
//! milliseconds since 1970; 17 digits: a UTC time `YYYYMMDDhhmmssSSS`; else
//! the number), then by name. node-pg-migrate records a migration in
//! `pgmigrations.name` by its file name without the extension.

mod js_exports;
mod js_file;
mod js_lexer;
mod sql_file;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::error::{Error, Result};
use crate::migration::file::{Migration, checksum, invalid};
use crate::migration::set::MigrationSet;
use crate::migration::source::{Format, MigrationSource, NewMigration, Resolved, write_new_file};

/// A folder of node-pg-migrate migrations.
#[derive(Debug, Clone)]
pub struct NodePgMigrateFolder {
    dir: PathBuf,
}

impl NodePgMigrateFolder {
    /// The folder at `dir` (which need not exist: then it has no migrations).
    pub fn new(dir: &Path) -> NodePgMigrateFolder {
        NodePgMigrateFolder {
            dir: dir.to_path_buf(),
        }
    }
}

/// What kind of migration a file is, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Language {
    Sql,
    JavaScript,
    TypeScript,
}

fn language(extension: &str) -> Option<Language> {
    match extension {
        "sql" => Some(Language::Sql),
        "js" | "cjs" | "mjs" => Some(Language::JavaScript),
        "ts" | "cts" | "mts" => Some(Language::TypeScript),
        _ => None,
    }
}

impl MigrationSource for NodePgMigrateFolder {
    fn format(&self) -> Format {
        Format::NodePgMigrate
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn resolve(&self) -> Result<Resolved> {
        let dir = &self.dir;
        let mut paths = Vec::new();
        match std::fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| Error::io("cannot list migrations", dir, e))?;
                    let path = entry.path();
                    // node-pg-migrate skips dot files by default.
                    let hidden = entry.file_name().to_string_lossy().starts_with('.');
                    if path.is_file() && !hidden {
                        paths.push(path);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot list migrations", dir, e)),
        }
        paths.sort();
        let mut resolved = Resolved::default();
        for path in paths {
            let known = path.extension().and_then(|e| e.to_str()).and_then(language);
            if known.is_none() {
                resolved.notes.push(format!(
                    "{}: ignored: not a migration orch reads (node-pg-migrate would try to load it as one; move it out of the folder or exclude it with --ignore-pattern)",
                    path.display()
                ));
                continue;
            }
            resolved.add(load_file(&path));
        }
        Ok(resolved)
    }

    /// An `.sql` migration named as node-pg-migrate's `create` names it:
    /// the time in milliseconds (its default), or as a UTC time
    /// `YYYYMMDDhhmmssSSS` when the folder's last migration is named so
    /// (`--migration-filename-format utc`).
    fn create(&self, set: &MigrationSet, name: &str, now: DateTime<Utc>) -> Result<Vec<PathBuf>> {
        let path = self.new_path(set, name, now);
        write_new_file(&path, template())?;
        Ok(vec![path])
    }

    /// A `.sql` migration; one that must run outside a transaction needs a
    /// `.js` file (`pgm.noTransaction()`), which orch does not write.
    fn write(
        &self,
        set: &MigrationSet,
        name: &str,
        now: DateTime<Utc>,
        content: &NewMigration,
    ) -> Result<Vec<PathBuf>> {
        if !content.one_transaction_setting(Format::NodePgMigrate, &self.dir)? {
            return Err(Error::Usage(format!(
                "{}: a node-pg-migrate migration that runs outside a transaction is a .js file calling pgm.noTransaction(); orch writes .sql files only: write {name} yourself",
                self.dir.display()
            )));
        }
        let text = format!(
            "-- Up Migration\n{}{}\n\n-- Down Migration\n{}\n",
            content.header_comments(),
            content.up.trim_end(),
            content.down.trim_end()
        );
        let path = self.new_path(set, name, now);
        write_new_file(&path, &text)?;
        Ok(vec![path])
    }
}

impl NodePgMigrateFolder {
    /// The file of a new migration, numbered as the folder's newest one.
    fn new_path(&self, set: &MigrationSet, name: &str, now: DateTime<Utc>) -> PathBuf {
        let utc = set
            .files
            .last()
            .is_some_and(|m| m.tool_id.split('_').next().is_some_and(|p| p.len() == 17));
        let mut at = now;
        let version = loop {
            let version = if utc {
                utc_digits(at)
            } else {
                at.timestamp_millis()
            };
            if set.by_version(version).is_none() {
                break version;
            }
            at += chrono::Duration::milliseconds(1);
        };
        self.dir.join(format!("{version}_{name}.sql"))
    }
}

/// `at` as the 17 digits `YYYYMMDDhhmmssSSS`.
fn utc_digits(at: DateTime<Utc>) -> i64 {
    let date = i64::from(at.year()) * 10_000 + i64::from(at.month()) * 100 + i64::from(at.day());
    let time =
        i64::from(at.hour()) * 10_000 + i64::from(at.minute()) * 100 + i64::from(at.second());
    (date * 1_000_000 + time) * 1000 + i64::from(at.timestamp_subsec_millis().min(999))
}

/// Read and parse one file.
fn load_file(path: &Path) -> Result<Migration> {
    parse_file(path, &super::read_text(path)?)
}

/// Parse one file's text; `path` gives its version, name and language, and
/// is named in errors. The checksum is the file's.
pub fn parse_file(path: &Path, text: &str) -> Result<Migration> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid(path, 1, "file name is not valid UTF-8"))?;
    let (stem, extension) = file_name.rsplit_once('.').unwrap_or((file_name, ""));
    let language = language(extension).ok_or_else(|| {
        invalid(
            path,
            1,
            "not a migration orch reads: node-pg-migrate migrations are .sql, .js, .cjs, .mjs or .ts files",
        )
    })?;
    let (version, order, name) = parse_stem(stem).map_err(|message| invalid(path, 1, message))?;
    let (up, down) = match language {
        Language::Sql => sql_file::parse_sections(path, text)?,
        Language::JavaScript => js_file::parse_sections(path, text, false)?,
        Language::TypeScript => js_file::parse_sections(path, text, true)?,
    };
    Ok(Migration {
        version,
        order,
        tool_id: stem.to_string(),
        name,
        path: path.to_path_buf(),
        checksum: checksum(text.as_bytes()),
        up,
        down,
    })
}

/// `1700000000000_add-posts` -> (version, order, name).
fn parse_stem(stem: &str) -> std::result::Result<(i64, String, String), String> {
    let expected = "expected <timestamp>_<name>, e.g. 1700000000000_add-posts.sql, as `node-pg-migrate create` names files (node-pg-migrate orders migrations by that timestamp)";
    let Some((prefix, name)) = stem.split_once('_') else {
        return Err(format!(
            "malformed migration file name {stem:?}: {expected}"
        ));
    };
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "malformed migration file name {stem:?}: {expected}"
        ));
    }
    let version: i64 = prefix
        .parse()
        .map_err(|_| format!("migration version {prefix} in {stem:?} is too large"))?;
    let time = if prefix.len() == 17 {
        utc_millis(prefix).ok_or_else(|| {
            format!("the 17-digit prefix {prefix} is not a UTC time YYYYMMDDhhmmssSSS, which node-pg-migrate reads it as (it could not place this migration in order)")
        })?
    } else {
        i128::from(version)
    };
    // node-pg-migrate's time can be before 1970 (negative); the offset keeps
    // the text order the numeric one.
    let order = format!("{:025}", time + 100_000_000_000_000);
    Ok((version, order, name.to_string()))
}

/// Milliseconds since 1970 of `YYYYMMDDhhmmssSSS`, as JavaScript's `Date`
/// parses `YYYY-MM-DDThh:mm:ss.SSSZ`: a day up to 31 in any month (past the
/// month's end it runs into the next), and 24:00:00.000 for the next day's
/// start.
fn utc_millis(digits: &str) -> Option<i128> {
    let field = |range: std::ops::Range<usize>| digits.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hour, minute, second, milli) = (
        field(8..10)?,
        field(10..12)?,
        field(12..14)?,
        field(14..17)?,
    );
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && minute < 60
        && second < 60
        && (hour < 24 || (hour == 24 && minute == 0 && second == 0 && milli == 0));
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, 1) + day - 1;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(i128::from(seconds) * 1000 + i128::from(milli))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A new `.sql` migration, as node-pg-migrate's template has it.
pub fn template() -> &'static str {
    "-- Up Migration\n\n\n-- Down Migration\n\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn times_as_node_pg_migrate_reads_them() {
        // Checked against node 20: new Date('...Z').valueOf().
        let cases: &[(&str, Option<i128>)] = &[
            ("20200513070724505", Some(1589353644505)),
            ("20230230000000000", Some(1677715200000)),
            ("20240229000000000", Some(1709164800000)),
            ("20230101240000000", Some(1672617600000)),
            ("00000101000000000", Some(-62167219200000)),
            ("20230101240001000", None),
            ("20231301000000000", None),
            ("20230100000000000", None),
            ("20230132000000000", None),
            ("20230101236000000", None),
        ];
        for (digits, expected) in cases {
            assert_eq!(utc_millis(digits), *expected, "{digits}");
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn file_names_give_version_order_and_name() {
        let (version, order, name) = parse_stem("1700000000000_add-posts").unwrap();
        assert_eq!((version, name.as_str()), (1700000000000, "add-posts"));
        let (utc_version, utc_order, _) = parse_stem("20231114221320001_b").unwrap();
        assert_eq!(utc_version, 20231114221320001);
        // 2023-11-14T22:13:20.001Z is 1700000000001 ms: right after the first.
        assert!(order < utc_order);
        let (_, dbmate_order, _) = parse_stem("20240101000000_c").unwrap();
        assert!(
            utc_order < dbmate_order,
            "a 14-digit prefix is a plain number"
        );
        for (stem, expected) in [
            ("add-posts", "malformed migration file name"),
            ("1700000000000", "malformed migration file name"),
            ("17000x_a", "malformed migration file name"),
            ("99999999999999999999_a", "too large"),
            ("20231301000000000_a", "not a UTC time"),
        ] {
            let err = parse_stem(stem).unwrap_err();
            assert!(err.contains(expected), "{stem}: {err}");
        }
    }

    #[test]
    fn resolve_reads_sql_and_js_in_node_pg_migrate_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "1700000000002_c.js",
            "exports.up = (pgm) => { pgm.sql(`SELECT 3`) };\nexports.down = false;\n",
        );
        write(
            d,
            "20231114221320001_b.sql",
            "-- Up Migration\nSELECT 2;\n-- Down Migration\nSELECT -2;\n",
        );
        write(d, "1700000000000_a.sql", "-- Up Migration\nSELECT 1;\n");
        write(d, "notes.txt", "not a migration");
        write(d, ".eslintrc.js", "module.exports = {};");
        let set = MigrationSet::resolve(&NodePgMigrateFolder::new(d)).unwrap();
        let ids: Vec<&str> = set.files.iter().map(|m| m.tool_id.as_str()).collect();
        assert_eq!(
            ids,
            ["1700000000000_a", "20231114221320001_b", "1700000000002_c"]
        );
        assert_eq!(set.files[2].name, "c");
        assert!(set.files[2].down.is_none());
        assert_eq!(set.notes.len(), 1);
        assert!(
            set.notes[0].contains("notes.txt: ignored"),
            "{:?}",
            set.notes
        );

        write(
            d,
            "1700000000003_d.js",
            "exports.up = (pgm) => { pgm.addColumn('t', {}) };\n",
        );
        let err = MigrationSet::resolve(&NodePgMigrateFolder::new(d))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1700000000003_d.js:1: pgm.addColumn(...)"),
            "{err}"
        );
    }

    #[test]
    fn create_names_files_as_node_pg_migrate_does() {
        let now = DateTime::parse_from_rfc3339("2023-11-14T22:13:20.005Z")
            .unwrap()
            .to_utc();
        let dir = tempfile::tempdir().unwrap();
        let folder = NodePgMigrateFolder::new(dir.path());
        let set = MigrationSet::resolve(&folder).unwrap();
        let first = folder.create(&set, "add_posts", now).unwrap();
        assert!(
            first[0].ends_with("1700000000005_add_posts.sql"),
            "{first:?}"
        );
        let set = MigrationSet::resolve(&folder).unwrap();
        let second = folder.create(&set, "add_tags", now).unwrap();
        assert!(
            second[0].ends_with("1700000000006_add_tags.sql"),
            "{second:?}"
        );
        let set = MigrationSet::resolve(&folder).unwrap();
        assert_eq!(set.files.len(), 2);
        assert!(set.files[0].up.is_empty());
        assert!(set.files[0].down.as_ref().is_some_and(|d| d.is_empty()));

        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "20200101000000000_a.sql",
            "-- Up Migration\nSELECT 1;\n",
        );
        let folder = NodePgMigrateFolder::new(dir.path());
        let set = MigrationSet::resolve(&folder).unwrap();
        let created = folder.create(&set, "b", now).unwrap();
        assert!(
            created[0].ends_with("20231114221320005_b.sql"),
            "{created:?}"
        );
    }
}
