//! Where the PostgreSQL server binaries (`initdb`, `postgres`) are installed.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tracing::debug;

use super::start_error;
use crate::Result;

pub(super) const NOT_FOUND: &str = "no PostgreSQL server binaries (initdb and postgres) found: looked at \
$ORCH_PG_BINDIR (unset), initdb on PATH, pg_config --bindir, /usr/lib/postgresql/*/bin, \
/usr/pgsql-*/bin and /usr/local/pgsql/bin; install the `postgresql` package \
(Debian/Ubuntu: apt-get install postgresql) or set ORCH_PG_BINDIR to the directory holding them";

/// Find the directory holding `initdb` and `postgres` (see `NOT_FOUND` for
/// the order), honouring `ORCH_PG_BINDIR`.
pub fn find_bin_dir() -> Result<PathBuf> {
    let found = BinSearch {
        override_dir: std::env::var_os("ORCH_PG_BINDIR").map(PathBuf::from),
        path: std::env::var_os("PATH"),
        root: PathBuf::from("/"),
    }
    .find()?;
    debug!(bin_dir = %found.display(), "found PostgreSQL server binaries");
    Ok(found)
}

/// The inputs of the search, explicit so tests need not change the environment.
pub(super) struct BinSearch {
    pub(super) override_dir: Option<PathBuf>,
    pub(super) path: Option<OsString>,
    /// `/` except in tests.
    pub(super) root: PathBuf,
}

impl BinSearch {
    pub(super) fn find(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.override_dir {
            if has_server(dir) {
                return Ok(dir.clone());
            }
            let shown = dir.display();
            return Err(start_error(format!(
                "ORCH_PG_BINDIR={shown} does not contain initdb and postgres; point it at the directory that does (e.g. /usr/lib/postgresql/15/bin) or unset it"
            )));
        }
        self.initdb_on_path()
            .or_else(|| self.pg_config_bindir())
            .or_else(|| self.known_dirs().into_iter().find(|dir| has_server(dir)))
            .ok_or_else(|| start_error(NOT_FOUND.to_string()))
    }

    fn initdb_on_path(&self) -> Option<PathBuf> {
        let initdb = fs::canonicalize(search_path(self.path.as_ref()?, "initdb")?).ok()?;
        initdb
            .parent()
            .filter(|dir| has_server(dir))
            .map(Path::to_path_buf)
    }

    fn pg_config_bindir(&self) -> Option<PathBuf> {
        let pg_config = search_path(self.path.as_ref()?, "pg_config")?;
        let output = Command::new(pg_config)
            .arg("--bindir")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
        (output.status.success() && has_server(&dir)).then_some(dir)
    }

    /// Highest version first within each family.
    fn known_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = versioned(&self.root.join("usr/lib/postgresql"), "");
        dirs.extend(versioned(&self.root.join("usr"), "pgsql-"));
        dirs.push(self.root.join("usr/local/pgsql/bin"));
        dirs
    }
}

/// `<parent>/<prefix><version>/bin`, highest version first.
fn versioned(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let entries = fs::read_dir(parent).into_iter().flatten().flatten();
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .strip_prefix(prefix)?
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>();
            Some((version.ok()?, entry.path().join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

pub(super) fn search_path(path: &OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|file| is_executable(file))
}

pub(super) fn is_executable(file: &Path) -> bool {
    fs::metadata(file).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn has_server(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))
}
