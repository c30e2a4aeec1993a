//! The seam where migration-folder formats plug in. A source finds and
//! parses its folder's migrations; the set's rules (unique versions and
//! names, order by version) then apply to whatever any source yields.
//! One file per format under `source/`.

pub mod dbmate;

use std::path::Path;

use crate::error::{Error, Result};
use crate::migration::file::Migration;

/// Where migrations come from: one implementation per folder format.
pub trait MigrationSource {
    /// The folder the migrations are in, named in messages.
    fn dir(&self) -> &Path;

    /// Every migration found, in any order, with every problem of every
    /// migration (so one run reports them all). `Err` only when the source
    /// cannot be read at all, e.g. its folder cannot be listed; a missing
    /// folder is no migrations.
    fn resolve(&self) -> Result<Resolved>;
}

/// What a source found: the migrations it parsed and the problems of the
/// ones it could not.
#[derive(Debug, Default)]
pub struct Resolved {
    /// The migrations parsed, in any order (the set sorts them).
    pub migrations: Vec<Migration>,
    /// Each problem found, usually an `Error::InvalidMigration` at file:line.
    pub problems: Vec<Error>,
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
