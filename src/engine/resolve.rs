//! `orch migrate resolve VERSION --applied | --rolled-back`: the operator
//! fixed a dirty migration's database by hand and says how it ended:
//! applied (its row becomes an applied one) or rolled back (its row goes).
//! `--file-removed` and `--accept-changed` settle an applied migration
//! whose file was removed or changed on purpose, so `up` goes on.

use crate::engine::migrator::Migrator;
use crate::error::{Error, Result};
use crate::migration::MigrationSet;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::migrations::{AppliedMigration, RecordState};

/// How the operator says a dirty migration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// All of it is in the database now.
    Applied,
    /// None of it is left.
    RolledBack,
    /// Applied, and its file was removed on purpose: keep the record,
    /// marked so, and stop asking for the file.
    FileRemoved,
    /// Applied, and its file was changed on purpose in a way that changes
    /// nothing applied (e.g. its down section fixed): record the file's
    /// checksum now.
    AcceptChanged,
}

/// What `resolve` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `<version>_<name>`.
    pub id: String,
    /// Whether a record changed (false: it already said so).
    pub changed: bool,
    /// What was done, in words.
    pub summary: String,
    /// What the plan whose phase ran it does next, if a plan ran it.
    pub plan_note: Option<String>,
}

/// What resolving `version` writes (nothing when the record already says
/// so), refusing a migration that is not dirty when the answer would not
/// be true of it. `actor` is who resolves.
pub fn plan_resolve(
    set: &MigrationSet,
    applied: &[AppliedMigration],
    version: i64,
    resolution: Resolution,
    actor: &str,
) -> Result<(Resolved, Option<Bookkeeping>)> {
    if matches!(
        resolution,
        Resolution::FileRemoved | Resolution::AcceptChanged
    ) {
        return plan_settle_file(set, applied, version, resolution);
    }
    let Some(row) = applied.iter().find(|a| a.version == version) else {
        let Some(file) = set.by_version(version) else {
            return Err(Error::Usage(format!(
                "resolve {version}: there is no migration with that version (no file in {}, no record)",
                set.dir.display()
            )));
        };
        return match resolution {
            Resolution::RolledBack => Ok((
                Resolved {
                    id: file.id(),
                    changed: false,
                    summary: format!(
                        "{} is not recorded (not applied); nothing to resolve",
                        file.id()
                    ),
                    plan_note: None,
                },
                None,
            )),
            _ => Err(Error::refused(
                format!(
                    "{} is not recorded, so it is not dirty: resolve only settles a migration that stopped half-way",
                    file.id()
                ),
                Some("`orch migrate status` shows which migration is dirty, if any".to_string()),
            )),
        };
    };
    let id = row.id();
    if !row.is_dirty() {
        return match resolution {
            Resolution::Applied => Ok((
                Resolved {
                    id: id.clone(),
                    changed: false,
                    summary: format!("{id} is applied and not dirty; nothing to resolve"),
                    plan_note: None,
                },
                None,
            )),
            _ => Err(Error::refused(
                format!(
                    "{id} is applied, not dirty: resolve only settles a migration that stopped half-way"
                ),
                Some(format!("to revert {id}, `orch migrate down`")),
            )),
        };
    }
    let down = row.dirty.as_ref().is_some_and(|d| d.direction == "down");
    let plan_note = match (&row.plan, &row.phase) {
        (Some(plan), Some(phase)) => Some(match (resolution, down) {
            (Resolution::Applied, false) => format!(
                "plan {plan}'s phase {phase} failed with it: `orch advance {plan}` records the phase done without running anything"
            ),
            (_, false) => format!(
                "plan {plan}'s phase {phase} failed with it: `orch advance {plan}` runs it again, `orch rollback {plan} {phase}` moves it back to pending"
            ),
            (Resolution::Applied, true) => {
                format!("plan {plan}'s phase {phase} stays as it was, its migration applied")
            }
            (_, true) => format!(
                "plan {plan}'s phase {phase} is still recorded as done: `orch rollback {plan} {phase}` records it rolled back without running anything"
            ),
        }),
        _ => None,
    };
    let (summary, record) = match resolution {
        Resolution::Applied => (
            format!("resolved {id}: recorded as applied"),
            Bookkeeping::MigrationResolved {
                version,
                applied_by: format!("resolved by {actor}"),
            },
        ),
        _ => (
            format!("resolved {id}: rolled back, its record removed"),
            Bookkeeping::MigrationReverted { version },
        ),
    };
    Ok((
        Resolved {
            id,
            changed: true,
            summary,
            plan_note,
        },
        Some(record),
    ))
}

/// `--file-removed` / `--accept-changed` for an applied, clean migration.
fn plan_settle_file(
    set: &MigrationSet,
    applied: &[AppliedMigration],
    version: i64,
    resolution: Resolution,
) -> Result<(Resolved, Option<Bookkeeping>)> {
    let flag = match resolution {
        Resolution::FileRemoved => "--file-removed",
        _ => "--accept-changed",
    };
    let Some(row) = applied.iter().find(|a| a.version == version) else {
        return Err(Error::refused(
            format!(
                "resolve {version} {flag}: no migration with that version is recorded as applied"
            ),
            Some("`orch migrate status` shows what is applied".to_string()),
        ));
    };
    let id = row.id();
    if row.is_dirty() {
        return Err(Error::refused(
            format!(
                "{id} is dirty: settle it first with `orch migrate resolve {version} --applied` or `--rolled-back`"
            ),
            None,
        ));
    }
    let done = |summary: String, record: Option<Bookkeeping>| {
        let resolved = Resolved {
            id: id.clone(),
            changed: record.is_some(),
            summary,
            plan_note: None,
        };
        Ok((resolved, record))
    };
    let file = set.by_version(version);
    match (resolution, file) {
        (Resolution::FileRemoved, Some(file)) => Err(Error::refused(
            format!(
                "{id}'s file is there ({}); --file-removed is for an applied migration whose file was removed",
                file.path.display()
            ),
            None,
        )),
        (Resolution::FileRemoved, None) if row.state == RecordState::Retired => done(
            format!("{id} is already recorded with its file removed; nothing to resolve"),
            None,
        ),
        (Resolution::FileRemoved, None) => done(
            format!(
                "resolved {id}: applied, its file removed on purpose; its record is kept and `up` no longer asks for the file"
            ),
            Some(Bookkeeping::MigrationRetired { version }),
        ),
        (_, None) => Err(Error::refused(
            format!(
                "{id}'s file is missing; --accept-changed needs the changed file (for a file removed on purpose: --file-removed)"
            ),
            None,
        )),
        (_, Some(file)) if file.checksum == row.checksum => done(
            format!("{id} is unchanged since it was applied; nothing to resolve"),
            None,
        ),
        (_, Some(file)) => done(
            format!(
                "resolved {id}: {} as it is now is recorded as the applied file (checksum {} was {})",
                file.path.display(),
                &file.checksum[..12.min(file.checksum.len())],
                &row.checksum[..12.min(row.checksum.len())]
            ),
            Some(Bookkeeping::MigrationChecksumAccepted {
                version,
                checksum: file.checksum.clone(),
            }),
        ),
    }
}

impl Migrator<'_> {
    /// `orch migrate resolve VERSION --applied | --rolled-back`.
    pub async fn resolve(&self, version: i64, resolution: Resolution) -> Result<Resolved> {
        self.locked(self.resolve_locked(version, resolution)).await
    }

    async fn resolve_locked(&self, version: i64, resolution: Resolution) -> Result<Resolved> {
        let applied = self.store.applied_migrations().await?;
        let (resolved, record) =
            plan_resolve(self.set, &applied, version, resolution, &self.options.actor)?;
        if let Some(record) = record {
            self.store.commit_bookkeeping(&[record]).await?;
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::Migration;
    use crate::store::migrations::{DirtyState, Origin, RecordState};
    use std::path::Path;

    fn set() -> MigrationSet {
        let file = |v: i64| -> Migration {
            crate::migration::source::dbmate::parse_file(
                Path::new(&format!("migrations/{v}_m{v}.sql")),
                "-- migrate:up transaction:false\nSELECT 1;\nSELECT 2;\n",
            )
            .unwrap()
        };
        MigrationSet {
            dir: "migrations".into(),
            files: vec![file(1), file(2)],
            ..MigrationSet::default()
        }
    }

    fn row(version: i64, dirty: Option<&str>, plan: bool) -> AppliedMigration {
        AppliedMigration {
            version,
            name: format!("m{version}"),
            checksum: "c".into(),
            applied_at: chrono::Utc::now(),
            applied_by: "tester".into(),
            duration_ms: 0,
            execution_ms: 0,
            attempts: 1,
            plan: plan.then(|| "p".to_string()),
            phase: plan.then(|| "add".to_string()),
            state: if dirty.is_some() {
                RecordState::Dirty
            } else {
                RecordState::Applied
            },
            origin: Origin::Ran,
            dirty: dirty.map(|direction| DirtyState {
                direction: direction.into(),
                file: "migrations/2_m2.sql".into(),
                line: 3,
                statement: 2,
                statements: 2,
                completed: 1,
                error: "boom".into(),
                sqlstate: None,
            }),
            locks: None,
        }
    }

    #[test]
    fn each_answer_for_each_record() {
        use Resolution::{Applied, RolledBack};
        let s = set();
        let dirty = [row(2, Some("up"), false)];
        let (r, w) = plan_resolve(&s, &dirty, 2, Applied, "tester").unwrap();
        assert!(r.changed && matches!(w, Some(Bookkeeping::MigrationResolved { version: 2, .. })));
        let (r, w) = plan_resolve(&s, &dirty, 2, RolledBack, "tester").unwrap();
        assert!(r.changed && matches!(w, Some(Bookkeeping::MigrationReverted { version: 2 })));
        // Already so: nothing to do.
        let (r, w) = plan_resolve(&s, &[row(2, None, false)], 2, Applied, "tester").unwrap();
        assert!(!r.changed && w.is_none());
        let (r, w) = plan_resolve(&s, &[], 2, RolledBack, "tester").unwrap();
        assert!(!r.changed && w.is_none());
        // Not true of a migration that is not dirty: refused.
        let err = plan_resolve(&s, &[row(2, None, false)], 2, RolledBack, "tester").unwrap_err();
        assert_eq!(err.code(), 4);
        assert!(err.to_string().contains("`orch migrate down`"), "{err}");
        assert_eq!(
            plan_resolve(&s, &[], 2, Applied, "tester")
                .unwrap_err()
                .code(),
            4
        );
        assert_eq!(
            plan_resolve(&s, &[], 9, Applied, "tester")
                .unwrap_err()
                .code(),
            2
        );
    }

    #[test]
    fn a_plan_phase_that_ran_it_is_told_what_comes_next() {
        let s = set();
        let cases = [
            (
                "up",
                Resolution::Applied,
                "`orch advance p` records the phase done",
            ),
            (
                "up",
                Resolution::RolledBack,
                "`orch advance p` runs it again",
            ),
            ("down", Resolution::Applied, "stays as it was"),
            (
                "down",
                Resolution::RolledBack,
                "`orch rollback p add` records it rolled back",
            ),
        ];
        for (direction, resolution, expected) in cases {
            let rows = [row(2, Some(direction), true)];
            let (r, _) = plan_resolve(&s, &rows, 2, resolution, "tester").unwrap();
            let note = r.plan_note.unwrap();
            assert!(note.contains(expected), "{expected:?} not in {note}");
        }
    }
}
