//! The seam where migration-folder formats plug in. A source finds and
//! parses its folder's migrations; the set's rules (unique versions, the
//! format's order) then apply to whatever any source yields. One file per
//! format under `source/`; [`Format`] names them, [`detect`] tells them
//! apart, [`open`] makes the source of a folder.

pub mod dbmate;
mod detect;
pub mod diesel;
pub mod golang_migrate;
pub mod goose;
pub mod node_pg_migrate;
pub mod sqlx;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::file::{Migration, invalid};
use crate::migration::set::MigrationSet;

pub use detect::{detect, detect_signs};

/// Where migrations come from: one implementation per folder format.
pub trait MigrationSource {
    /// The format this source reads.
    fn format(&self) -> Format;

    /// The folder the migrations are in, named in messages.
    fn dir(&self) -> &Path;

    /// Every migration found, in any order, with every problem of every
    /// migration (so one run reports them all). `Err` only when the source
    /// cannot be read at all, e.g. its folder cannot be listed; a missing
    /// folder is no migrations.
    fn resolve(&self) -> Result<Resolved>;

    /// `orch migrate create`: write a new, empty migration `name` in this
    /// format, with a version no migration of `set` has (see
    /// [`new_version`]); never overwrite a file. Returns the files written.
    fn create(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PathBuf>>;

    /// `orch plan new`: write a new migration `name` holding `content`, in
    /// this format, with a version no migration of `set` has; never
    /// overwrite a file. Returns the files written. A format that cannot
    /// say what `content` needs (node-pg-migrate's `.sql` outside a
    /// transaction) says so instead of writing something else.
    fn write(
        &self,
        set: &MigrationSet,
        name: &str,
        now: chrono::DateTime<chrono::Utc>,
        content: &NewMigration,
    ) -> Result<Vec<PathBuf>>;
}

impl NewMigration {
    /// The header as SQL comment lines (empty when there is none).
    pub fn header_comments(&self) -> String {
        let mut text = String::new();
        for line in self.header.lines() {
            match line.is_empty() {
                true => text.push_str("--\n"),
                false => text.push_str(&format!("-- {line}\n")),
            }
        }
        text
    }

    /// Refuse content whose up and down sections disagree on running in a
    /// transaction, for a format where the setting covers both.
    pub fn one_transaction_setting(&self, format: Format, dir: &Path) -> Result<bool> {
        if self.up_in_transaction != self.down_in_transaction {
            return Err(Error::Usage(format!(
                "{}: a {format} migration runs both its sections in a transaction or neither; orch cannot write one whose up and down sections differ",
                dir.display()
            )));
        }
        Ok(self.up_in_transaction)
    }
}

/// A migration to write, with its SQL: what `orch plan new` generates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMigration {
    /// The up section's SQL (statements ending in `;`, comments allowed).
    pub up: String,
    /// Whether the up section runs in one transaction (`false` for
    /// `CREATE INDEX CONCURRENTLY` and the like).
    pub up_in_transaction: bool,
    /// The down section's SQL.
    pub down: String,
    pub down_in_transaction: bool,
    /// A comment put at the top of the file (without `--`), e.g. which plan
    /// owns the migration.
    pub header: String,
}

/// What a source found: the migrations it parsed, the problems of the
/// ones it could not, and notes about what it left alone.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The migrations parsed, in any order (the set sorts them).
    pub migrations: Vec<Migration>,
    /// Each problem found, usually an `Error::InvalidMigration` at file:line.
    pub problems: Vec<Error>,
    /// What the source ignored and why (a README, a loose file), shown as
    /// warnings.
    pub notes: Vec<String>,
}

impl Resolved {
    /// Keep a parsed migration, or the problem that kept it from parsing.
    pub fn add(&mut self, parsed: Result<Migration>) {
        match parsed {
            Ok(migration) => self.migrations.push(migration),
            Err(problem) => self.problems.push(problem),
        }
    }
}

/// The migration-folder formats orch reads as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// dbmate's, which is orch's own: `VERSION_name.sql` with
    /// `-- migrate:up` / `-- migrate:down`.
    Dbmate,
    /// diesel's: a folder per migration, `VERSION_name/up.sql` + `down.sql`.
    Diesel,
    /// golang-migrate's: `N_title.up.sql` / `N_title.down.sql`.
    GolangMigrate,
    /// goose's SQL files: `-- +goose Up` / `-- +goose Down`.
    Goose,
    /// sqlx's: `VERSION_desc.sql`, or `VERSION_desc.up.sql` / `.down.sql`.
    Sqlx,
    /// node-pg-migrate's: `.sql` with `-- Up Migration`, or plain `.js`.
    NodePgMigrate,
}

impl Format {
    /// Every format, in the order messages list them.
    pub const ALL: &'static [Format] = &[
        Format::Dbmate,
        Format::Diesel,
        Format::GolangMigrate,
        Format::Goose,
        Format::Sqlx,
        Format::NodePgMigrate,
    ];

    /// The name `--format` takes and messages use.
    pub fn name(self) -> &'static str {
        match self {
            Format::Dbmate => "dbmate",
            Format::Diesel => "diesel",
            Format::GolangMigrate => "golang-migrate",
            Format::Goose => "goose",
            Format::Sqlx => "sqlx",
            Format::NodePgMigrate => "node-pg-migrate",
        }
    }

    /// How a migration of this format says "run me outside a transaction",
    /// as the fix in messages.
    pub fn no_transaction_hint(self) -> &'static str {
        match self {
            Format::Dbmate => {
                "add \"transaction:false\" to the section's marker line (\"-- migrate:up transaction:false\" or \"-- migrate:down transaction:false\")"
            }
            Format::Diesel => {
                "put a metadata.toml holding \"run_in_transaction = false\" beside its up.sql and down.sql"
            }
            Format::GolangMigrate => {
                "give the statement a migration of its own (a file holding only that statement runs outside a transaction)"
            }
            Format::Goose => "add the annotation \"-- +goose NO TRANSACTION\" to the file",
            Format::Sqlx => "make \"-- no-transaction\" the file's first line",
            Format::NodePgMigrate => "call pgm.noTransaction() in the migration (a .js migration)",
        }
    }

    /// How a migration of this format gets a down section, as the fix in
    /// messages.
    pub fn down_hint(self) -> &'static str {
        match self {
            Format::Dbmate => "write its \"-- migrate:down\" section",
            Format::Diesel => "write its down.sql",
            Format::GolangMigrate => "write its <version>_<title>.down.sql file",
            Format::Goose => "write its \"-- +goose Down\" section",
            Format::Sqlx => {
                "write its <version>_<description>.down.sql file (a reversible migration)"
            }
            Format::NodePgMigrate => {
                "write its \"-- Down Migration\" section (.sql) or its exports.down (.js)"
            }
        }
    }

    /// The format named `name` (`orch` is dbmate's, orch's own).
    pub fn parse(name: &str) -> std::result::Result<Format, String> {
        if name == "orch" {
            return Ok(Format::Dbmate);
        }
        Format::ALL
            .iter()
            .copied()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown migration folder format {name:?} (known: orch, {})",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The source reading `dir` in `format`.
pub fn open(format: Format, dir: &Path) -> Box<dyn MigrationSource> {
    match format {
        Format::Dbmate => Box::new(dbmate::DbmateFolder::new(dir)),
        Format::Diesel => Box::new(diesel::DieselFolder::new(dir)),
        Format::GolangMigrate => Box::new(golang_migrate::GolangMigrateFolder::new(dir)),
        Format::Goose => Box::new(goose::GooseFolder::new(dir)),
        Format::Sqlx => Box::new(sqlx::SqlxFolder::new(dir)),
        Format::NodePgMigrate => Box::new(node_pg_migrate::NodePgMigrateFolder::new(dir)),
    }
}

/// The version of a new migration created at `now`: its UTC time as
/// `YYYYMMDDHHMMSS`, moved on a second at a time past any version `set`
/// has, so two migrations created in the same second never share one.
pub fn new_version(set: &MigrationSet, now: chrono::DateTime<chrono::Utc>) -> i64 {
    let mut at = now;
    loop {
        let version: i64 = at
            .format("%Y%m%d%H%M%S")
            .to_string()
            .parse()
            .expect("a formatted timestamp is digits");
        if set.by_version(version).is_none() {
            return version;
        }
        at += chrono::Duration::seconds(1);
    }
}

/// The entries of the folder `dir`, sorted by name; a missing folder has
/// none.
pub fn folder_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("cannot list migrations", dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list migrations", dir, e))?;
        paths.push(entry.path());
    }
    paths.sort();
    Ok(paths)
}

/// The text of the migration file at `path`: UTF-8 with any byte-order
/// mark dropped; bytes that are not UTF-8 are a problem at their line.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read migration", path, e))?;
    decode_text(path, bytes)
}

/// [`read_text`] for bytes already read from `path`.
pub fn decode_text(path: &Path, bytes: Vec<u8>) -> Result<String> {
    crate::text_file::decode(bytes).map_err(|(line, _, message)| invalid(path, line, message))
}

/// The name of the file or folder at `path`, or a problem naming it when
/// the name is not UTF-8 (orch names migrations in text).
pub fn entry_name(path: &Path) -> Result<&str> {
    path.file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| invalid(path, 1, "the name is not valid UTF-8; rename it"))
}

/// Create `path` with `text`, refusing to overwrite anything (also a file
/// created between listing the folder and now).
pub fn write_new_file(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io("cannot create the migrations directory", parent, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io("cannot create migration file", path, e))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .map_err(|e| Error::io("cannot write migration file", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for &format in Format::ALL {
            assert_eq!(Format::parse(format.name()), Ok(format));
        }
        assert_eq!(Format::parse("orch"), Ok(Format::Dbmate));
        let err = Format::parse("flyway").unwrap_err();
        assert!(
            err.contains("unknown migration folder format \"flyway\""),
            "{err}"
        );
    }

    /// Regression guard for `orch plan new` in every folder format: what
    /// is written reads back with the same SQL and transaction settings.
    #[test]
    fn written_migrations_read_back_in_every_format() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let plain = NewMigration {
            up: "ALTER TABLE t ADD CONSTRAINT t_a_nn CHECK (a IS NOT NULL) NOT VALID;".into(),
            up_in_transaction: true,
            down: "ALTER TABLE t DROP CONSTRAINT IF EXISTS t_a_nn;".into(),
            down_in_transaction: true,
            header: "Owned by plan p.".into(),
        };
        let concurrent = NewMigration {
            up: "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a_key ON t (a);".into(),
            up_in_transaction: false,
            down: "DROP INDEX CONCURRENTLY IF EXISTS t_a_key;".into(),
            down_in_transaction: false,
            header: String::new(),
        };
        for &format in Format::ALL {
            let dir = tempfile::tempdir().unwrap();
            for (name, content) in [("add_check", &plain), ("build_key", &concurrent)] {
                let set = MigrationSet::load(dir.path(), Some(format)).unwrap();
                let written = open(format, dir.path()).write(&set, name, now, content);
                if format == Format::NodePgMigrate && !content.up_in_transaction {
                    let err = written.unwrap_err().to_string();
                    assert!(err.contains("pgm.noTransaction()"), "{err}");
                    continue;
                }
                written.unwrap_or_else(|e| panic!("{format}: {e}"));
                let set = MigrationSet::load(dir.path(), Some(format)).unwrap();
                let back = set
                    .find(name)
                    .unwrap_or_else(|e| panic!("{format}: {e}: {:?}", set.files));
                assert!(
                    back.up.sql.contains(content.up.as_str()),
                    "{format}: {}",
                    back.up.sql
                );
                assert_eq!(back.up.transactional, content.up_in_transaction, "{format}");
                let down = back
                    .down
                    .as_ref()
                    .unwrap_or_else(|| panic!("{format}: no down"));
                assert!(
                    down.sql.contains(content.down.as_str()),
                    "{format}: {}",
                    down.sql
                );
                assert_eq!(down.transactional, content.down_in_transaction, "{format}");
            }
            let set = MigrationSet::load(dir.path(), Some(format)).unwrap();
            assert!(set.notes.is_empty(), "{format}: {:?}", set.notes);
        }
    }

    #[test]
    fn new_versions_skip_versions_in_use() {
        let now = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:59Z")
            .unwrap()
            .to_utc();
        let dir = tempfile::tempdir().unwrap();
        let mut set = MigrationSet::load(dir.path(), None).unwrap();
        assert_eq!(new_version(&set, now), 20240102030459);
        for version in [20240102030459_i64, 20240102030500] {
            set.files.push(
                dbmate::parse_file(
                    Path::new(&format!("m/{version}_a.sql")),
                    "-- migrate:up\nSELECT 1;\n",
                )
                .unwrap(),
            );
        }
        assert_eq!(new_version(&set, now), 20240102030501);
    }
}
