//! `orch migrate adopt [--from TOOL]`: take over the history another tool
//! recorded in its tracking table. Its rows are matched to the folder's
//! migrations by what that tool calls them (`Migration::tool_id`, set by
//! the folder's reader), so the folder must be that tool's; the ones orch
//! has no row for are recorded as applied (without running them), all in
//! one transaction under the migration lock. The tool's table is only
//! read, so the team can switch back to it.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use crate::engine::dirty::refuse_dirty;
use crate::engine::migrator::Migrator;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::migration::source::Format;
use crate::migration::{Migration, MigrationSet};
use crate::plan::{MigrationOwner, Owners};
use crate::store::migrations::{AppliedMigration, Origin};
use crate::store::tracking::{self, FoundTable, ToolApplied, ToolHistory};
use crate::timefmt;

/// What `adopt` did.
#[derive(Debug, Clone)]
pub struct Adopted {
    pub tool: Format,
    /// The tool's table, schema-qualified.
    pub table: String,
    /// The migrations recorded now, in apply order (`<version>_<name>`).
    pub recorded: Vec<String>,
    /// The tool's migrations orch had recorded already.
    pub already: usize,
}

/// A migration the tool applied, with when (where the tool kept that).
type Matched<'a> = (&'a Migration, Option<DateTime<Utc>>);

/// What adopting a tool's history records.
#[derive(Debug)]
pub struct AdoptPlan<'a> {
    /// The tool's migrations orch has no row for, in apply order, with
    /// when the tool applied each (where it kept that).
    pub record: Vec<Matched<'a>>,
    /// The tool's migrations orch has recorded already.
    pub already: usize,
    /// Migrations to record that a plan owns: the tool applied them outside
    /// the plan.
    pub plan_owned: Vec<(String, MigrationOwner)>,
}

/// The table to adopt: the one `--from` names, else the only one found.
/// The folder must be the tool's own (its files are matched by what the
/// tool calls them).
pub fn choose_table(
    found: &[FoundTable],
    from: Option<Format>,
    set: &MigrationSet,
) -> Result<FoundTable> {
    let chosen = match (from, found) {
        (Some(tool), _) => match found.iter().find(|f| f.tool == tool) {
            Some(table) => table.clone(),
            None => {
                let name = tracking::default_table(tool);
                let other = found
                    .iter()
                    .find(|f| f.table.ends_with(&format!(".{name}")))
                    .map(|f| format!(" (the {} here is {}'s)", f.table, f.tool))
                    .unwrap_or_default();
                return Err(Error::refused(
                    format!(
                        "nothing to adopt: this database has no {tool} tracking table ({tool} keeps its history in {name}, looked up through the search path){other}"
                    ),
                    None,
                ));
            }
        },
        (None, []) => {
            let looked: Vec<String> = Format::ALL
                .iter()
                .map(|&tool| format!("{tool}'s {}", tracking::default_table(tool)))
                .collect();
            return Err(Error::refused(
                format!(
                    "nothing to adopt: this database has no other tool's tracking table (looked for {}, through the search path)",
                    looked.join(", ")
                ),
                Some(
                    "for a database no tool tracked, `orch migrate baseline VERSION` marks what it already has"
                        .to_string(),
                ),
            ));
        }
        (None, [one]) => one.clone(),
        (None, several) => {
            let shown: Vec<String> = several
                .iter()
                .map(|f| format!("{}'s {}", f.tool, f.table))
                .collect();
            return Err(Error::Usage(format!(
                "this database has the tracking tables of more than one tool: {}; say whose history to adopt with --from TOOL (e.g. --from {})",
                shown.join(" and "),
                several[0].tool
            )));
        }
    };
    if chosen.tool != set.format {
        return Err(Error::Usage(format!(
            "{} is {}'s tracking table, but {} is read as a {} folder: adopt matches {}'s rows to the files by what {} calls them, so the folder must be {}'s; pass --format {} if it is",
            chosen.table,
            chosen.tool,
            set.dir.display(),
            set.format,
            chosen.tool,
            chosen.tool,
            chosen.tool,
            chosen.tool
        )));
    }
    Ok(chosen)
}

/// Decide what adopting `history` records, refusing (changing nothing)
/// when the tool's history is unfinished, names a migration with no file,
/// or disagrees with what orch already records.
pub fn plan_adopt<'a>(
    set: &'a MigrationSet,
    history: &ToolHistory,
    applied: &[AppliedMigration],
    owners: &Owners,
) -> Result<AdoptPlan<'a>> {
    let tool = history.tool;
    refuse_dirty(applied, &format!("adopt {tool}'s history"))?;
    let mut problems = Vec::new();
    for unfinished in &history.unfinished {
        problems.push(format!(
            "{tool}'s table {} is not clean: {unfinished}; settle it with {tool} first",
            history.table
        ));
    }
    let (matched, missing) = match_rows(set, history);
    if !missing.is_empty() {
        problems.push(format!(
            "{tool}'s table {} records {} as applied, but {} has no migration {tool} calls so: restore the file(s), or point --migrations-dir at the folder {tool} ran",
            history.table,
            missing.join(", "),
            set.dir.display()
        ));
    }
    problems.extend(disagreements(history, &matched, applied));
    if !problems.is_empty() {
        return Err(Error::refused(
            format!(
                "refusing to adopt {tool}'s history ({}); nothing was recorded:\n  - {}",
                history.table,
                problems.join("\n  - ")
            ),
            None,
        ));
    }
    let recorded: HashSet<i64> = applied.iter().map(|a| a.version).collect();
    let mut record: Vec<Matched<'_>> = matched
        .iter()
        .filter(|(m, _)| !recorded.contains(&m.version))
        .copied()
        .collect();
    record.sort_by_key(|(m, _)| set.position(m.version));
    let plan_owned = record
        .iter()
        .filter_map(|(m, _)| owners.of(m.version, &m.name).map(|o| (m.id(), o.clone())))
        .collect();
    Ok(AdoptPlan {
        already: matched.len() - record.len(),
        record,
        plan_owned,
    })
}

/// The folder's migrations the tool's rows name (with when each was
/// applied), and the rows that name none (or more than one), in words.
fn match_rows<'a>(set: &'a MigrationSet, history: &ToolHistory) -> (Vec<Matched<'a>>, Vec<String>) {
    let tool = history.tool;
    let mut matched = Vec::new();
    let mut missing = Vec::new();
    match &history.applied {
        ToolApplied::Each(records) => {
            for record in records {
                let files: Vec<&Migration> = set
                    .files
                    .iter()
                    .filter(|m| same_id(tool, &m.tool_id, &record.id))
                    .collect();
                match files.as_slice() {
                    [file] => matched.push((*file, record.applied_at)),
                    [] => missing.push(format!("{:?}", record.id)),
                    several => {
                        let paths: Vec<String> = several
                            .iter()
                            .map(|m| m.path.display().to_string())
                            .collect();
                        missing.push(format!(
                            "{:?} (which matches more than one file: {})",
                            record.id,
                            paths.join(", ")
                        ));
                    }
                }
            }
        }
        ToolApplied::UpTo(None) => {}
        ToolApplied::UpTo(Some(version)) => {
            if !set
                .files
                .iter()
                .any(|m| number(&m.tool_id) == Some(*version))
            {
                missing.push(format!("version {version}"));
            }
            for m in &set.files {
                if number(&m.tool_id).is_some_and(|v| v <= *version) {
                    matched.push((m, None));
                }
            }
        }
    }
    (matched, missing)
}

/// Where orch's own history disagrees with the tool's, in words: a
/// migration orch records that the tool does not, or records otherwise.
fn disagreements(
    history: &ToolHistory,
    matched: &[Matched<'_>],
    applied: &[AppliedMigration],
) -> Vec<String> {
    let tool = history.tool;
    let mut problems = Vec::new();
    for row in applied {
        let recorded_when = format!("on {} by {}", timefmt::utc(&row.applied_at), row.applied_by);
        let Some((file, _)) = matched.iter().find(|(m, _)| m.version == row.version) else {
            problems.push(format!(
                "orch records {} as applied ({recorded_when}), but {tool}'s table {} does not: orch's history is not {tool}'s",
                row.id(),
                history.table
            ));
            continue;
        };
        if row.name != file.name {
            problems.push(format!(
                "orch records version {} as {:?} ({recorded_when}), but the file {tool} applied as version {} is {} ({:?})",
                row.version,
                row.name,
                row.version,
                file.path.display(),
                file.name
            ));
        } else if row.checksum != file.checksum {
            problems.push(format!(
                "orch records {} ({recorded_when}) with another checksum than {} has today: the file changed since orch recorded it; restore it as it was",
                row.id(),
                file.path.display()
            ));
        }
    }
    problems
}

/// Whether a file the tool calls `file_id` is the one its row calls
/// `recorded`: as numbers for tools whose versions are numbers (leading
/// zeros of a file name do not count), else as the same text.
fn same_id(tool: Format, file_id: &str, recorded: &str) -> bool {
    match tool {
        Format::GolangMigrate | Format::Goose | Format::Sqlx => {
            matches!((number(file_id), number(recorded)), (Some(a), Some(b)) if a == b)
        }
        Format::Dbmate | Format::Diesel | Format::NodePgMigrate => file_id == recorded,
    }
}

fn number(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

impl Migrator<'_> {
    /// `orch migrate adopt [--from TOOL]`.
    pub async fn adopt(&self, from: Option<Format>) -> Result<Adopted> {
        self.locked(self.adopt_locked(from)).await
    }

    async fn adopt_locked(&self, from: Option<Format>) -> Result<Adopted> {
        let found = self.store.tracking_tables().await?;
        let table = choose_table(&found, from, self.set)?;
        let history = self.store.tool_history(&table).await?;
        let applied = self.store.applied_migrations().await?;
        let plan = plan_adopt(self.set, &history, &applied, self.owners)?;
        for (id, owner) in &plan.plan_owned {
            self.reporter.report(Event::Warning {
                message: format!(
                    "{id} belongs to plan {}, phase {} ({}), but {} applied it outside the plan; the phase will refuse to apply it again: remove the phase from the plan, or revert {id} with `orch migrate down` so that the plan applies it",
                    owner.plan, owner.position, owner.phase, history.tool
                ),
            });
        }
        let applied_by = format!("adopted from {} by {}", history.tool, self.options.actor);
        self.mark_applied(
            plan.record.iter().map(|(m, at)| (*m, *at)),
            &applied_by,
            Origin::Adopted,
        )
        .await?;
        Ok(Adopted {
            tool: history.tool,
            table: history.table,
            recorded: plan.record.iter().map(|(m, _)| m.id()).collect(),
            already: plan.already,
        })
    }
}

#[cfg(test)]
mod tools;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrations::RecordState;
    use crate::store::tracking::ToolRecord;
    use std::path::Path;

    /// A folder of `tool` whose migrations it calls `ids` (dbmate-format
    /// files standing in for the tool's own reader, which sets tool_id).
    fn folder(tool: Format, ids: &[(i64, &str)]) -> MigrationSet {
        let files = ids
            .iter()
            .map(|&(version, id)| {
                let mut m = crate::migration::source::dbmate::parse_file(
                    Path::new(&format!("migrations/{version}_m{version}.sql")),
                    &format!("-- migrate:up\nSELECT {version};\n"),
                )
                .unwrap();
                m.tool_id = id.to_string();
                m
            })
            .collect();
        MigrationSet {
            dir: "migrations".into(),
            format: tool,
            files,
            notes: Vec::new(),
        }
    }

    fn history(tool: Format, applied: ToolApplied) -> ToolHistory {
        ToolHistory {
            tool,
            table: "public.t".into(),
            applied,
            unfinished: Vec::new(),
        }
    }

    fn each(ids: &[&str]) -> ToolApplied {
        ToolApplied::Each(
            ids.iter()
                .map(|id| ToolRecord {
                    id: id.to_string(),
                    applied_at: None,
                })
                .collect(),
        )
    }

    fn row(m: &Migration) -> AppliedMigration {
        AppliedMigration {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            applied_at: chrono::Utc::now(),
            applied_by: "tester".into(),
            duration_ms: 0,
            execution_ms: 0,
            attempts: 1,
            plan: None,
            phase: None,
            state: RecordState::Applied,
            origin: Origin::Ran,
            dirty: None,
            locks: None,
        }
    }

    fn versions(plan: &AdoptPlan<'_>) -> Vec<i64> {
        plan.record.iter().map(|(m, _)| m.version).collect()
    }

    #[test]
    fn rows_match_files_by_what_the_tool_calls_them() {
        let owners = Owners::new();
        let cases: Vec<(MigrationSet, ToolApplied, Vec<i64>)> = vec![
            // Text ids: dbmate's version text, diesel's, node-pg-migrate's names.
            (
                folder(Format::Dbmate, &[(1, "001"), (2, "002"), (3, "003")]),
                each(&["001", "002"]),
                vec![1, 2],
            ),
            (
                folder(Format::NodePgMigrate, &[(1, "1_a"), (2, "2_b")]),
                each(&["2_b"]),
                vec![2],
            ),
            // Numbers: leading zeros do not count.
            (
                folder(Format::Goose, &[(1, "00001"), (2, "00002")]),
                each(&["1", "2"]),
                vec![1, 2],
            ),
            // golang-migrate: everything up to the one row's version.
            (
                folder(Format::GolangMigrate, &[(1, "1"), (2, "2"), (10, "10")]),
                ToolApplied::UpTo(Some(2)),
                vec![1, 2],
            ),
            (
                folder(Format::GolangMigrate, &[(1, "1")]),
                ToolApplied::UpTo(None),
                vec![],
            ),
        ];
        for (set, applied, expected) in cases {
            let tool = set.format;
            let plan = plan_adopt(&set, &history(tool, applied), &[], &owners).unwrap();
            assert_eq!(versions(&plan), expected, "{tool}");
            assert_eq!(plan.already, 0);
        }
    }

    #[test]
    fn what_orch_already_records_is_kept_and_adopting_again_changes_nothing() {
        let set = folder(Format::Dbmate, &[(1, "1"), (2, "2"), (3, "3")]);
        let tool = history(Format::Dbmate, each(&["1", "2", "3"]));
        let plan = plan_adopt(&set, &tool, &[row(&set.files[0])], &Owners::new()).unwrap();
        assert_eq!((versions(&plan), plan.already), (vec![2, 3], 1));
        let all: Vec<AppliedMigration> = set.files.iter().map(row).collect();
        let plan = plan_adopt(&set, &tool, &all, &Owners::new()).unwrap();
        assert_eq!((versions(&plan), plan.already), (vec![], 3));
    }

    #[test]
    fn refusals_say_exactly_what_is_wrong() {
        let set = folder(Format::Dbmate, &[(1, "1"), (2, "2"), (3, "3")]);
        let mut unfinished = history(Format::GolangMigrate, ToolApplied::UpTo(Some(2)));
        unfinished.unfinished =
            vec!["version 2 is dirty (dirty = true): it failed half-way".into()];
        let golang = folder(Format::GolangMigrate, &[(1, "1"), (2, "2")]);
        let mut renamed = row(&set.files[0]);
        renamed.name = "other".into();
        let mut edited = row(&set.files[1]);
        edited.checksum = "0".into();
        let cases: Vec<(&MigrationSet, ToolHistory, Vec<AppliedMigration>, &str)> = vec![
            (
                &golang,
                unfinished,
                vec![],
                "golang-migrate's table public.t is not clean: version 2 is dirty (dirty = true)",
            ),
            (
                &set,
                history(Format::Dbmate, each(&["1", "4"])),
                vec![],
                "records \"4\" as applied, but migrations has no migration dbmate calls so",
            ),
            (
                &golang,
                history(Format::GolangMigrate, ToolApplied::UpTo(Some(7))),
                vec![],
                "records version 7 as applied",
            ),
            (
                &set,
                history(Format::Dbmate, each(&["1"])),
                vec![row(&set.files[0]), row(&set.files[2])],
                "orch records 3_m3 as applied (on ",
            ),
            (
                &set,
                history(Format::Dbmate, each(&["1", "2"])),
                vec![renamed],
                "orch records version 1 as \"other\"",
            ),
            (
                &set,
                history(Format::Dbmate, each(&["1", "2"])),
                vec![edited],
                "with another checksum than migrations/2_m2.sql has today",
            ),
        ];
        for (set, tool, applied, expected) in cases {
            let err = plan_adopt(set, &tool, &applied, &Owners::new()).unwrap_err();
            assert_eq!(err.code(), 4, "{err}");
            let text = err.to_string();
            assert!(text.contains(expected), "{expected:?} not in {text}");
            assert!(text.contains("nothing was recorded"), "{text}");
        }
    }

    #[test]
    fn the_table_is_the_one_named_or_the_only_one_and_the_folder_is_its_tools() {
        let set = folder(Format::Dbmate, &[(1, "1")]);
        let dbmate = FoundTable {
            tool: Format::Dbmate,
            table: "public.schema_migrations".into(),
        };
        let goose = FoundTable {
            tool: Format::Goose,
            table: "public.goose_db_version".into(),
        };
        assert_eq!(
            choose_table(std::slice::from_ref(&dbmate), None, &set).unwrap(),
            dbmate
        );
        let both = [dbmate.clone(), goose.clone()];
        let err = choose_table(&both, None, &set).unwrap_err();
        assert_eq!(err.code(), 2);
        assert!(
            err.to_string()
                .contains("dbmate's public.schema_migrations and goose's public.goose_db_version"),
            "{err}"
        );
        assert_eq!(
            choose_table(&both, Some(Format::Dbmate), &set).unwrap(),
            dbmate
        );
        let err = choose_table(&both, Some(Format::Goose), &set).unwrap_err();
        assert!(err.to_string().contains("--format goose"), "{err}");
        let err = choose_table(&[], None, &set).unwrap_err();
        assert_eq!(err.code(), 4);
        assert!(
            err.to_string().contains("no other tool's tracking table"),
            "{err}"
        );
        let err = choose_table(&[dbmate], Some(Format::GolangMigrate), &set).unwrap_err();
        assert!(
            err.to_string()
                .contains("(the public.schema_migrations here is dbmate's)"),
            "{err}"
        );
    }
}
