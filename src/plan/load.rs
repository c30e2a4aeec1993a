//! Reading plan files: YAML syntax and types through serde_yaml, with its
//! messages rewritten as `file:line:column: field: message`, then the
//! semantic rules of `validate`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::migration::file::checksum;
use crate::plan::format::{PhaseSpec, PlanSpec};
use crate::yaml_locate::{Locations, PathSeg, render_path};

/// A plan read from its file, with what is needed to point at its parts.
#[derive(Debug, Clone)]
pub struct LoadedPlan {
    pub spec: PlanSpec,
    pub path: PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub checksum: String,
    locations: Locations,
}

impl LoadedPlan {
    pub fn name(&self) -> &str {
        &self.spec.plan
    }

    /// Parse a plan's text (syntax and types only; see `validate`).
    pub fn parse(path: &Path, text: &str) -> Result<LoadedPlan> {
        let spec: PlanSpec = serde_yaml::from_str(text).map_err(|e| yaml_error(path, &e))?;
        let locations = Locations::index(text).unwrap_or_default();
        Ok(LoadedPlan {
            spec,
            path: path.to_path_buf(),
            checksum: checksum(text.as_bytes()),
            locations,
        })
    }

    pub fn load(path: &Path) -> Result<LoadedPlan> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read plan", path, e))?;
        let text = crate::text_file::decode(bytes).map_err(|(line, column, message)| {
            Error::InvalidPlan {
                path: path.to_path_buf(),
                line,
                column,
                field: "(encoding)".to_string(),
                message,
            }
        })?;
        Self::parse(path, &text)
    }

    /// The 1-based line of the key at `path` (a field's name), else of its
    /// value or the nearest existing parent's.
    pub fn line_of(&self, path: &[PathSeg]) -> usize {
        self.locations
            .key(path)
            .unwrap_or_else(|| self.locations.nearest(path))
            .line
    }

    /// An error pointing at the value at `path` (or the nearest existing
    /// parent, for a missing field).
    pub fn error_at(&self, path: &[PathSeg], message: impl Into<String>) -> Error {
        let position = self
            .locations
            .value(path)
            .unwrap_or_else(|| self.locations.nearest(path));
        Error::InvalidPlan {
            path: self.path.clone(),
            line: position.line,
            column: position.column,
            field: render_path(path),
            message: message.into(),
        }
    }

    /// Checksum of one phase's definition: what "editing a phase" means.
    /// Comments and formatting in the YAML do not count.
    pub fn phase_checksum(&self, index: usize) -> String {
        phase_checksum(&self.spec.phases[index])
    }

    /// A phase by id or by 1-based number; returns its 0-based index.
    pub fn find_phase(&self, reference: &str) -> Option<usize> {
        if let Some(i) = self.spec.phases.iter().position(|p| p.id == reference) {
            return Some(i);
        }
        let n: usize = reference.parse().ok()?;
        (1..=self.spec.phases.len()).contains(&n).then(|| n - 1)
    }
}

/// Checksum of a phase definition (canonical JSON of the parsed phase).
pub fn phase_checksum(phase: &PhaseSpec) -> String {
    let json = serde_json::to_vec(phase).expect("a phase always serialises");
    checksum(&json)
}

/// Path segments for `phases[i].field...`.
pub fn phase_path(index: usize, rest: &[&str]) -> Vec<PathSeg> {
    let mut path = vec![PathSeg::Key("phases".into()), PathSeg::Index(index)];
    path.extend(rest.iter().map(|k| PathSeg::Key(k.to_string())));
    path
}

/// serde_yaml says e.g. `phases[2].kind: unknown variant `backfil`, expected
/// one of `migration`, ... at line 14 column 11`; we say
/// `plans/x.yaml:14:11: phases[2].kind: unknown kind "backfil" (expected one of migration, ...)`.
fn yaml_error(path: &Path, err: &serde_yaml::Error) -> Error {
    let (line, column) = err.location().map_or((1, 1), |l| (l.line(), l.column()));
    let mut text = err.to_string();
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    let (field, message) = split_field(&text);
    let (field, message) = rewrite(field, message);
    Error::InvalidPlan {
        path: path.to_path_buf(),
        line,
        column,
        field: if field.is_empty() {
            "(syntax)".to_string()
        } else {
            field
        },
        message,
    }
}

/// `phases[2].kind: message` -> ("phases[2].kind", "message"); serde_yaml
/// only prefixes a path when the error is below the root.
fn split_field(text: &str) -> (String, String) {
    if let Some((head, rest)) = text.split_once(": ") {
        let looks_like_path = !head.is_empty()
            && !head.contains(' ')
            && head
                .chars()
                .all(|c| c.is_alphanumeric() || "_-.[]".contains(c));
        if looks_like_path {
            return (head.trim_start_matches('.').to_string(), rest.to_string());
        }
    }
    (String::new(), text.to_string())
}

/// Rewrite serde's wording into orch's: quoted names, lists without backticks.
fn rewrite(field: String, message: String) -> (String, String) {
    let unticked = |s: &str| s.replace('`', "");
    let join = |parent: &str, child: &str| {
        if parent.is_empty() {
            child.to_string()
        } else {
            format!("{parent}.{child}")
        }
    };
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((value, expected)) = rest.split_once("`, expected ")
    {
        let what = field.rsplit('.').next().unwrap_or("value").to_string();
        let what = what.split('[').next().unwrap_or("value").to_string();
        return (
            field,
            format!(
                "unknown {what} \"{value}\" (expected {})",
                unticked(expected)
            ),
        );
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, expected)) = rest.split_once("`, expected ") {
            return (
                join(&field, name),
                format!("unknown field (expected {})", unticked(expected)),
            );
        }
        if let Some((name, _)) = rest.split_once('`') {
            return (join(&field, name), "unknown field".to_string());
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        return (join(&field, name), "required field is missing".to_string());
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        let name = rest.trim_end_matches('`');
        return (join(&field, name), "field given twice".to_string());
    }
    // serde names Rust types: say what a plan's author would.
    let mut message = unticked(&message);
    for (rust, plain) in [
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
    ] {
        if message.ends_with(rust) {
            message = format!("{}{plain}", &message[..message.len() - rust.len()]);
        }
    }
    (field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        LoadedPlan::parse(Path::new("plans/p.yaml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn type_errors_name_file_line_column_and_field() {
        let head =
            "plan: p\nphases:\n  - id: a\n    kind: migration\n    title: t\n    migration: m\n";
        let cases = [
            (
                format!("{head}  - id: b\n    kind: backfil\n    title: t\n"),
                "plans/p.yaml:8:11: phases[1].kind: unknown kind \"backfil\" (expected one of migration, deploy, backfill, check, sync)",
            ),
            (
                format!("{head}    bogus: 1\n"),
                "plans/p.yaml:7:5: phases[0].bogus: unknown field (expected one of id, kind, title,",
            ),
            (
                "plan: p\nphases:\n  - id: a\n    kind: deploy\n".to_string(),
                "plans/p.yaml:3:5: phases[0].title: required field is missing",
            ),
            (
                "plan: [1]\nphases: []\n".to_string(),
                "plans/p.yaml:1:7: plan: invalid type: sequence, expected a string",
            ),
            (
                "plan: p\nplan: q\nphases: []\n".to_string(),
                "plan: field given twice",
            ),
            ("plan: p\nphases: [\n".to_string(), "plans/p.yaml:"),
            (
                format!("{head}    reversible: maybe\n"),
                "plans/p.yaml:7:17: phases[0].reversible: invalid type: string \"maybe\", expected a boolean",
            ),
        ];
        for (text, expected) in cases {
            let got = error(&text);
            assert!(got.contains(expected), "got {got:?}, expected {expected:?}");
        }
    }

    #[test]
    fn phase_checksum_ignores_formatting() {
        let a = LoadedPlan::parse(
            Path::new("p.yaml"),
            "plan: p\nphases:\n  - {id: a, kind: deploy, title: t}\n",
        )
        .unwrap();
        let b = LoadedPlan::parse(
            Path::new("p.yaml"),
            "# comment\nplan: p\nphases:\n  - id: a\n    kind: deploy   # gate\n    title: t\n",
        )
        .unwrap();
        assert_eq!(a.phase_checksum(0), b.phase_checksum(0));
        assert_ne!(a.checksum, b.checksum);
    }
}

#[cfg(test)]
mod checksum_pins {
    use super::*;

    /// Every optional field set, so a change to how any field serialises shows.
    pub(super) const EVERY_FIELD: &str = "plan: every-field
description: all of them
phases:
  - id: m
    kind: migration
    role: contract
    title: M
    instructions: do it
    migration: drop_x
    reversible: false
    rollback_loses: x
    guard:
      - {name: g, sql: SELECT true}
    checks:
      - {name: c, sql: SELECT :phase_started_at < now()}
  - id: b
    kind: backfill
    title: B
    backfill:
      table: s.t
      key: [a, b]
      set: x = 1
      where: x IS NULL
      batch_time: 50ms
      min_batch: 10
      max_batch: 100
      pause: 1s
      max_rows_per_second: 1000
      workers: 2
      vacuum_every: 5
  - {id: d, kind: deploy, title: D, instructions: ship}
  - id: k
    kind: check
    title: K
    checks:
      - {name: c, sql: SELECT true}
";

    /// Phase checksums are stored in users' databases (`orch.phases`): a
    /// change to how a phase serialises would make every phase that ran look
    /// edited. These values must never change.
    #[test]
    fn phase_checksums_are_stable() {
        let pins: [(&str, &[(&str, &str)]); 2] = [
            (
                include_str!("../../plans/posts-location.yaml"),
                &[
                    (
                        "add-loc",
                        "4198064cecda3d7f836563ed6b68834b199c59764ae9f92049ddcf993cf4d085",
                    ),
                    (
                        "deploy-dual-write",
                        "d4cfa30bd5e21d631ad7283e2abfbf3441a3fd758c4af3b3527d31ba799618ac",
                    ),
                    (
                        "backfill-loc",
                        "7eaf75525b6208ee4d9a7b0a5a512a3f23f7233e8cfda5d85797552bdbbef646",
                    ),
                    (
                        "deploy-write-loc-only",
                        "c3974b7f91556f468e303f6aa20a67c79ec2fc90dd15ef2278e9049245ab4c49",
                    ),
                    (
                        "drop-lat-lng",
                        "f2bf5c04a7b622c83cbd923103d645c735fe67bd28da18ed61ea1cd9820483c4",
                    ),
                ],
            ),
            (
                EVERY_FIELD,
                &[
                    (
                        "m",
                        "cf16f336ea2f8746b856614809f72029b0a9969fa6fba18fc98d60bb775918c7",
                    ),
                    (
                        "b",
                        "ee156ed4dc0d1d6fbbd0869d3acc0b63e615a65ed3e826e6ba2857dfea734c0c",
                    ),
                    (
                        "d",
                        "255b34b18a91bb8e17cf68a4bc39e34319112bc24b2ed166fe30dcb593ace500",
                    ),
                    (
                        "k",
                        "776a74ab9a1e119eb2ddf14035e03226adaf3bc65526bf2eee4828c73812d88f",
                    ),
                ],
            ),
        ];
        for (text, expected) in pins {
            let plan = LoadedPlan::parse(Path::new("p.yaml"), text).unwrap();
            let got: Vec<(&str, String)> = (0..plan.spec.phases.len())
                .map(|i| (plan.spec.phases[i].id.as_str(), plan.phase_checksum(i)))
                .collect();
            let expected: Vec<(&str, String)> = expected
                .iter()
                .map(|(id, c)| (*id, c.to_string()))
                .collect();
            assert_eq!(got, expected);
        }
    }
}
