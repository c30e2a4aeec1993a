//! `orch.toml`, the project's configuration: defaults for the folders, their
//! format, lock_timeout, lock_retries and statement_timeout, and named groups
//! of target databases (`--targets NAME`). Found by walking up from the
//! current directory (or given with `--config`); unknown keys are errors
//! at file:line. `docs/config.md` lists every key and the precedence
//! (flag, then environment, then this file, then orch's default).

pub(crate) mod dotenv;
mod expand;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Result};
use crate::migration::source::Format;
use crate::timefmt::{parse_duration, parse_lock_timeout};

pub use expand::Environment;

/// The file's name, looked for in the current directory and its parents.
pub const FILE_NAME: &str = "orch.toml";

/// A value from the file and where it was written (1-based line, column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub line: usize,
    pub column: usize,
}

/// The project's settings as the file gives them; `None`: not in the file.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file read; None when there is none.
    pub path: Option<PathBuf>,
    /// Relative paths in the file are relative to the file's directory.
    pub migrations_dir: Option<PathBuf>,
    pub plans_dir: Option<PathBuf>,
    pub format: Option<Format>,
    pub lock_timeout: Option<Duration>,
    pub lock_retries: Option<u32>,
    pub statement_timeout: Option<Duration>,
    pub targets: BTreeMap<String, TargetGroup>,
}

/// `[targets.NAME]`: databases given by URL, and/or the databases a query
/// lists on one server. URLs are kept as written (`${VAR}` unexpanded)
/// until the group is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub name: String,
    /// `urls = [...]`: each one target.
    pub urls: Vec<Located<String>>,
    /// `url = "..."`: one target, or with `databases` the server to list them on.
    pub url: Option<Located<String>>,
    /// `databases = "SELECT datname ..."`: run on `url`'s server; every
    /// database it returns (first column) is a target.
    pub databases: Option<Located<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    migrations_dir: Option<Spanned<String>>,
    plans_dir: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    lock_timeout: Option<Spanned<String>>,
    lock_retries: Option<Spanned<u32>>,
    statement_timeout: Option<Spanned<String>>,
    #[serde(default)]
    targets: BTreeMap<String, Spanned<RawTarget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    urls: Option<Vec<Spanned<String>>>,
    url: Option<Spanned<String>>,
    databases: Option<Spanned<String>>,
}

impl Config {
    /// `--config PATH` (it must exist), else the first `orch.toml` in
    /// `start` or a parent directory, else no file (every setting unset).
    pub fn find_and_load(explicit: Option<&Path>, start: &Path) -> Result<Config> {
        let path = match explicit {
            Some(path) => {
                if !path.is_file() {
                    return Err(Error::Usage(format!(
                        "--config {}: no such file",
                        path.display()
                    )));
                }
                path.to_path_buf()
            }
            None => match start
                .ancestors()
                .map(|d| d.join(FILE_NAME))
                .find(|p| p.is_file())
            {
                Some(path) => path,
                None => return Ok(Config::default()),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            context: "cannot read the config file".to_string(),
            path: path.clone(),
            source,
        })?;
        Config::parse(&path, &text)
    }

    /// Parse the text of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let at = |span: Option<Range<usize>>, message: String| {
            let (line, column) = span.map_or((1, 1), |s| line_column(text, s.start));
            Error::InvalidConfig {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            // toml names an unknown key itself, not the key of a bad value.
            let message = match e.span() {
                Some(span) if !message.starts_with("unknown field") => {
                    match key_at(text, line_column(text, span.start).0) {
                        Some(key) => format!("{key}: {message}"),
                        None => message,
                    }
                }
                _ => message,
            };
            at(e.span(), message)
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let dir = |value: Option<Spanned<String>>, key: &str| -> Result<Option<PathBuf>> {
            match value {
                Some(v) if v.get_ref().trim().is_empty() => {
                    Err(at(Some(v.span()), format!("{key}: must not be empty")))
                }
                Some(v) => Ok(Some(base.join(v.get_ref()))),
                None => Ok(None),
            }
        };
        let checked = |value: Option<Spanned<String>>,
                       key: &str,
                       parse: fn(&str) -> std::result::Result<Duration, String>|
         -> Result<Option<Duration>> {
            value
                .map(|v| parse(v.get_ref()).map_err(|e| at(Some(v.span()), format!("{key}: {e}"))))
                .transpose()
        };
        let format = raw
            .format
            .map(|v| {
                Format::parse(v.get_ref()).map_err(|e| at(Some(v.span()), format!("format: {e}")))
            })
            .transpose()?;
        let mut targets = BTreeMap::new();
        for (name, spanned) in raw.targets {
            let span = spanned.span();
            let target = spanned.into_inner();
            let locate = |v: Spanned<String>| {
                let (line, column) = line_column(text, v.span().start);
                Located {
                    value: v.into_inner(),
                    line,
                    column,
                }
            };
            let group = TargetGroup {
                name: name.clone(),
                urls: target
                    .urls
                    .unwrap_or_default()
                    .into_iter()
                    .map(locate)
                    .collect(),
                url: target.url.map(locate),
                databases: target.databases.map(locate),
            };
            if group.urls.is_empty() && group.url.is_none() {
                return Err(at(
                    Some(span),
                    format!(
                        "targets.{name}: names no database: give `urls = [...]`, or `url = \"...\"` (with `databases = \"SELECT ...\"` to list databases on that server)"
                    ),
                ));
            }
            if let Some(query) = &group.databases
                && query.value.trim().is_empty()
            {
                return Err(Error::InvalidConfig {
                    path: path.to_path_buf(),
                    line: query.line,
                    column: query.column,
                    message: format!("targets.{name}.databases: must not be empty"),
                });
            }
            targets.insert(name, group);
        }
        Ok(Config {
            path: Some(path.to_path_buf()),
            migrations_dir: dir(raw.migrations_dir, "migrations_dir")?,
            plans_dir: dir(raw.plans_dir, "plans_dir")?,
            format,
            lock_timeout: checked(raw.lock_timeout, "lock_timeout", parse_lock_timeout)?,
            lock_retries: raw.lock_retries.map(Spanned::into_inner),
            statement_timeout: checked(raw.statement_timeout, "statement_timeout", parse_duration)?,
            targets,
        })
    }

    /// The group `--targets NAME` names.
    pub fn target_group(&self, name: &str) -> Result<&TargetGroup> {
        if let Some(group) = self.targets.get(name) {
            return Ok(group);
        }
        let known: Vec<&str> = self.targets.keys().map(String::as_str).collect();
        Err(Error::Usage(match (&self.path, known.is_empty()) {
            (None, _) => format!(
                "--targets {name}: there is no {FILE_NAME} in this directory or its parents (or give --config PATH); target groups are defined there as [targets.{name}]"
            ),
            (Some(path), true) => format!(
                "--targets {name}: {} defines no target groups; add [targets.{name}]",
                path.display()
            ),
            (Some(path), false) => format!(
                "--targets {name}: {} defines no such group (it has: {})",
                path.display(),
                known.join(", ")
            ),
        }))
    }

    /// Where a value of this file is, for an error about it.
    pub fn error_at(&self, line: usize, column: usize, message: String) -> Error {
        Error::InvalidConfig {
            path: self
                .path
                .clone()
                .unwrap_or_else(|| PathBuf::from(FILE_NAME)),
            line,
            column,
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// The dotted key assigned on `line` (1-based): its table's header and
/// the name before `=` (`targets.shards.urls`), when the line has one.
fn key_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (name, _) = lines.get(line - 1)?.split_once('=')?;
    let name = name.trim().trim_matches('"');
    if name.is_empty() || name.starts_with('[') {
        return None;
    }
    let table = lines[..line - 1]
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(table) => format!("{table}.{name}"),
        None => name.to_string(),
    })
}

/// The `.env` file of `dir` and the process's environment.
pub fn environment(dir: &Path) -> Result<Environment> {
    Ok(Environment::new(dotenv::read(&dir.join(".env"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("/project/orch.toml"), text)
    }

    #[test]
    fn reads_every_key() {
        let config = parse(
            r#"# the project's defaults
migrations_dir = "db/migrations"
plans_dir = "db/plans"
format = "goose"
lock_timeout = "250ms"
lock_retries = 3
statement_timeout = "0"

[targets.shards]
urls = ["${SHARD_1_URL}", "${SHARD_2_URL}"]

[targets.tenants]
url = "${TENANTS_URL}"
databases = "SELECT datname FROM pg_database WHERE datname LIKE 'tenant_%'"
"#,
        )
        .unwrap();
        assert_eq!(
            config.migrations_dir,
            Some(PathBuf::from("/project/db/migrations"))
        );
        assert_eq!(config.plans_dir, Some(PathBuf::from("/project/db/plans")));
        assert_eq!(config.format, Some(Format::parse("goose").unwrap()));
        assert_eq!(config.lock_timeout, Some(Duration::from_millis(250)));
        assert_eq!(config.lock_retries, Some(3));
        assert_eq!(config.statement_timeout, Some(Duration::ZERO));
        let shards = config.target_group("shards").unwrap();
        assert_eq!(shards.urls.len(), 2);
        assert_eq!((shards.urls[1].line, shards.urls[1].column), (10, 27));
        let tenants = config.target_group("tenants").unwrap();
        assert_eq!(tenants.url.as_ref().unwrap().line, 13);
        assert!(
            tenants
                .databases
                .as_ref()
                .unwrap()
                .value
                .starts_with("SELECT")
        );
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        let config = parse("").unwrap();
        assert!(config.migrations_dir.is_none() && config.lock_timeout.is_none());
        assert!(config.targets.is_empty());
    }

    /// Each bad file is refused at the line and column of the key or value
    /// at fault, naming it.
    #[test]
    fn bad_files_are_refused_at_file_line_and_key() {
        for (text, line, says) in [
            (
                "plans_dir = \"p\"\ncolour = true\n",
                2,
                "unknown field `colour`",
            ),
            (
                "[targets.a]\nurl = \"x\"\nurl_list = []\n",
                3,
                "unknown field `url_list`",
            ),
            ("lock_timeout = \"0\"\n", 1, "lock_timeout: 0 would let"),
            (
                "\n\nstatement_timeout = \"soon\"\n",
                3,
                "statement_timeout: \"soon\" is not a duration",
            ),
            ("lock_retries = -1\n", 1, "lock_retries: invalid value"),
            (
                "[targets.s]\nurls = \"one\"\n",
                2,
                "targets.s.urls: invalid type",
            ),
            (
                "format = \"flyway\"\n",
                1,
                "format: unknown migration folder format",
            ),
            (
                "migrations_dir = \"\"\n",
                1,
                "migrations_dir: must not be empty",
            ),
            ("[targets.empty]\n", 1, "targets.empty: names no database"),
            (
                "[targets.t]\nurl = \"x\"\ndatabases = \" \"\n",
                3,
                "targets.t.databases: must not be empty",
            ),
            ("plans_dir = \n", 1, ""),
            ("lock_retries = \"3\"\n", 1, "lock_retries: invalid type"),
        ] {
            let error = parse(text).unwrap_err();
            let shown = error.to_string();
            assert!(
                shown.starts_with(&format!("/project/orch.toml:{line}:")),
                "{text:?}: {shown}"
            );
            assert!(shown.contains(says), "{text:?}: {shown}");
            assert_eq!(error.code(), 3, "{text:?}");
        }
    }

    #[test]
    fn an_unknown_group_names_the_known_ones() {
        let config = parse("[targets.shards]\nurls = [\"a\"]\n").unwrap();
        let error = config.target_group("shard").unwrap_err().to_string();
        assert!(error.contains("it has: shards"), "{error}");
        let none = Config::default().target_group("x").unwrap_err().to_string();
        assert!(none.contains("there is no orch.toml"), "{none}");
    }

    #[test]
    fn the_file_is_found_in_a_parent_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "plans_dir = \"p\"\n").unwrap();
        let config = Config::find_and_load(None, &sub).unwrap();
        assert_eq!(config.plans_dir, Some(dir.path().join("p")));
        let explicit = dir.path().join("other.toml");
        std::fs::write(&explicit, "plans_dir = \"q\"\n").unwrap();
        let config = Config::find_and_load(Some(&explicit), &sub).unwrap();
        assert_eq!(config.plans_dir, Some(dir.path().join("q")));
        let missing = Config::find_and_load(Some(&dir.path().join("nope.toml")), &sub);
        assert_eq!(missing.unwrap_err().code(), 2);
    }
}
