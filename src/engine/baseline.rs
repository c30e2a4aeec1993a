//! `orch migrate baseline VERSION`: for a database no tool tracked, mark
//! every migration up to and including VERSION (in the folder's apply
//! order) as applied without running it (Flyway's and pgroll's word).
//!
//! A plan's migration up to VERSION is refused, not marked: a plan applies
//! its migrations between deploy gates, backfills and checks, and a
//! baseline cannot tell whether those happened. Marking it would leave the
//! plan unable to apply it (already applied) while nothing says its gates
//! were passed; the operator baselines up to the migration before it and
//! lets the plan run, or removes the phase when its change is already in.

use std::collections::HashSet;

use crate::engine::dirty::refuse_dirty;
use crate::engine::migrator::Migrator;
use crate::error::{Error, Result};
use crate::migration::{Migration, MigrationSet};
use crate::plan::Owners;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::migrations::{AppliedMigration, Origin};
use crate::timefmt;

/// What `baseline` did.
#[derive(Debug, Clone)]
pub struct Baselined {
    /// The migrations marked now, in apply order (`<version>_<name>`).
    pub marked: Vec<String>,
    /// Those up to VERSION orch had recorded already.
    pub already: usize,
}

/// What a baseline marks: the migrations up to VERSION orch has no row for.
#[derive(Debug)]
pub struct BaselinePlan<'a> {
    pub mark: Vec<&'a Migration>,
    pub already: usize,
}

/// Decide what `baseline version` marks, refusing (changing nothing) when
/// VERSION has no file, a plan owns a migration to mark, or orch already
/// tracks this database otherwise (history beyond VERSION, or some of the
/// migrations up to it recorded and some not).
pub fn plan_baseline<'a>(
    set: &'a MigrationSet,
    applied: &[AppliedMigration],
    owners: &Owners,
    version: i64,
) -> Result<BaselinePlan<'a>> {
    refuse_dirty(applied, "baseline")?;
    let Some(last) = set.position(version) else {
        return Err(Error::Usage(format!(
            "baseline {version}: there is no migration with that version in {}",
            set.dir.display()
        )));
    };
    let upto = &set.files[..=last];
    let mut problems = Vec::new();
    for row in applied {
        let when = format!("on {} by {}", timefmt::utc(&row.applied_at), row.applied_by);
        match set.position(row.version) {
            Some(p) if p <= last => {}
            Some(_) => problems.push(format!(
                "orch records {} as applied ({when}), which comes after {version}: this database's history goes beyond the baseline",
                row.id()
            )),
            None => problems.push(format!(
                "orch records {} as applied ({when}), and its file is missing",
                row.id()
            )),
        }
    }
    let recorded: HashSet<i64> = applied.iter().map(|a| a.version).collect();
    let mark: Vec<&Migration> = upto
        .iter()
        .filter(|m| !recorded.contains(&m.version))
        .collect();
    if !applied.is_empty() && !mark.is_empty() {
        let shown: Vec<String> = mark.iter().take(3).map(|m| m.id()).collect();
        let more = match mark.len() {
            n if n > 3 => format!(" and {} more", n - 3),
            _ => String::new(),
        };
        problems.push(format!(
            "orch already tracks this database: it records {} of the {} migrations up to {version} as applied, but not {}{more}; a baseline would record those as applied without running them (apply them with `orch migrate up`)",
            upto.len() - mark.len(),
            upto.len(),
            shown.join(", ")
        ));
    }
    let mut next = None;
    if let Some((position, owner)) = mark.iter().find_map(|m| {
        owners
            .of(m.version, &m.name)
            .map(|o| (set.position(m.version).unwrap_or(0), o))
    }) {
        let owned = &set.files[position];
        problems.push(format!(
            "{} belongs to plan {}, phase {} ({}): a plan applies its migration between its deploy gates and checks, and a baseline cannot tell whether those happened",
            owned.id(),
            owner.plan,
            owner.position,
            owner.phase
        ));
        next = Some(match position.checked_sub(1) {
            Some(before) => format!(
                "`orch migrate baseline {}` (the migration before it), then `orch advance {}`; if the plan's change is already in the database, remove phase {} from the plan first",
                set.files[before].version, owner.plan, owner.phase
            ),
            None => format!(
                "`orch advance {}` applies it; if the plan's change is already in the database, remove phase {} from the plan first",
                owner.plan, owner.phase
            ),
        });
    }
    if !problems.is_empty() {
        return Err(Error::refused(
            format!(
                "refusing to baseline {version}; nothing was recorded:\n  - {}",
                problems.join("\n  - ")
            ),
            next,
        ));
    }
    Ok(BaselinePlan {
        already: upto.len() - mark.len(),
        mark,
    })
}

impl Migrator<'_> {
    /// `orch migrate baseline VERSION`.
    pub async fn baseline(&self, version: i64) -> Result<Baselined> {
        self.locked(self.baseline_locked(version)).await
    }

    async fn baseline_locked(&self, version: i64) -> Result<Baselined> {
        let applied = self.store.applied_migrations().await?;
        let plan = plan_baseline(self.set, &applied, self.owners, version)?;
        let applied_by = format!("baseline by {}", self.options.actor);
        self.mark_applied(
            plan.mark.iter().map(|m| (*m, None)),
            &applied_by,
            Origin::Baseline,
        )
        .await?;
        Ok(Baselined {
            marked: plan.mark.iter().map(|m| m.id()).collect(),
            already: plan.already,
        })
    }
}

impl Migrator<'_> {
    /// Record `marks` as applied without running them (adopt, baseline),
    /// all in one transaction; nothing when there is none.
    pub(crate) async fn mark_applied<'m>(
        &self,
        marks: impl Iterator<Item = (&'m Migration, Option<chrono::DateTime<chrono::Utc>>)>,
        applied_by: &str,
        origin: Origin,
    ) -> Result<()> {
        let rows: Vec<Bookkeeping> = marks
            .map(|(m, applied_at)| Bookkeeping::MigrationMarked {
                version: m.version,
                name: m.name.clone(),
                checksum: m.checksum.clone(),
                applied_at,
                applied_by: applied_by.to_string(),
                origin,
            })
            .collect();
        if !rows.is_empty() {
            self.store.ensure_schema().await?;
            self.store.commit_bookkeeping(&rows).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::MigrationOwner;
    use crate::store::migrations::RecordState;
    use std::path::Path;

    fn set(versions: &[i64]) -> MigrationSet {
        MigrationSet {
            dir: "migrations".into(),
            files: versions
                .iter()
                .map(|v| {
                    crate::migration::source::dbmate::parse_file(
                        Path::new(&format!("migrations/{v}_m{v}.sql")),
                        &format!("-- migrate:up\nSELECT {v};\n"),
                    )
                    .unwrap()
                })
                .collect(),
            ..MigrationSet::default()
        }
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
            attempts: 0,
            plan: None,
            phase: None,
            state: RecordState::Applied,
            origin: Origin::Baseline,
            dirty: None,
            locks: None,
        }
    }

    fn marked(plan: &BaselinePlan<'_>) -> Vec<i64> {
        plan.mark.iter().map(|m| m.version).collect()
    }

    #[test]
    fn marks_up_to_the_version_in_apply_order_once() {
        let s = set(&[1, 2, 3]);
        let plan = plan_baseline(&s, &[], &Owners::new(), 2).unwrap();
        assert_eq!((marked(&plan), plan.already), (vec![1, 2], 0));
        let done = [row(&s.files[0]), row(&s.files[1])];
        let again = plan_baseline(&s, &done, &Owners::new(), 2).unwrap();
        assert_eq!((marked(&again), again.already), (vec![], 2));
    }

    #[test]
    fn refusals_name_what_is_in_the_way() {
        let s = set(&[1, 2, 3]);
        let mut owners = Owners::new();
        owners.insert(
            "m2",
            MigrationOwner {
                plan: "p".into(),
                position: 1,
                phase: "add".into(),
            },
        );
        let err = plan_baseline(&s, &[], &Owners::new(), 7).unwrap_err();
        assert_eq!(err.code(), 2);
        assert!(err.to_string().contains("no migration with that version"));
        let none = Owners::new();
        let cases: Vec<(Vec<AppliedMigration>, &Owners, &str)> = vec![
            (
                vec![row(&s.files[2])],
                &none,
                "orch records 3_m3 as applied (on ",
            ),
            (
                vec![row(&s.files[0])],
                &none,
                "it records 1 of the 2 migrations up to 2 as applied, but not 2_m2",
            ),
            (vec![], &owners, "2_m2 belongs to plan p, phase 1 (add)"),
        ];
        for (applied, owners, expected) in cases {
            let err = plan_baseline(&s, &applied, owners, 2).unwrap_err();
            assert_eq!(err.code(), 4);
            let text = err.to_string();
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
        let err = plan_baseline(&s, &[], &owners, 2).unwrap_err().to_string();
        assert!(err.contains("`orch migrate baseline 1`"), "{err}");
    }
}
