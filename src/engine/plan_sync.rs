//! Keeping a plan's file and its recorded state consistent: a phase that has
//! run is history and may not be edited; phases that have not run may be
//! (the edit is accepted and logged), and so may a phase that failed, so the
//! operator can fix it (it starts again from pending). Pure, so the rules
//! are unit-tested.

use crate::error::Error;
use crate::migration::MigrationSet;
use crate::plan::format::PlanSpec;
use crate::plan::load::phase_checksum;
use crate::plan::records::{PhaseRecord, PlanRecord};
use crate::plan::{LoadedPlan, PhaseState};
use crate::store::migrations::AppliedMigration;
use crate::timefmt;

/// What to do about the file compared with the recorded plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Drift {
    Unchanged,
    /// Later phases were edited: replace phases from this 1-based position.
    AcceptEdit {
        first_pending: i32,
        changed: Vec<String>,
    },
}

/// A phase that ran and did not fail: its definition may not change.
fn is_history(p: &PhaseRecord) -> bool {
    p.state.has_run() && p.state != PhaseState::Failed
}

/// Compare the file with the record. Refuses when a phase that has run is
/// missing, moved or edited.
pub fn compare(
    plan: &LoadedPlan,
    record: &PlanRecord,
    phases: &[PhaseRecord],
) -> Result<Drift, Error> {
    let mut problems = Vec::new();
    let mut last_run = 0;
    for p in phases.iter().filter(|p| is_history(p)) {
        last_run = last_run.max(p.position);
        let index = (p.position - 1) as usize;
        let when = p
            .started_at
            .map(|t| format!(" on {}", timefmt::utc(&t)))
            .unwrap_or_default();
        match plan.spec.phases.get(index) {
            None => problems.push(format!(
                "phase {} ({}) has run ({}{when}) but the file no longer has it",
                p.position,
                p.id,
                p.state.name()
            )),
            Some(spec) if spec.id != p.id => problems.push(format!(
                "phase {} was {:?} when it ran ({}{when}); the file now has {:?} there (phases that ran cannot be moved or replaced)",
                p.position,
                p.id,
                p.state.name(),
                spec.id
            )),
            Some(spec) => {
                if p.definition_checksum.as_deref().is_some_and(|c| c != phase_checksum(spec)) {
                    problems.push(format!(
                        "phase {} ({}) has run ({}{when}) and its definition in the file changed since",
                        p.position,
                        p.id,
                        p.state.name()
                    ));
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::refused(
            format!(
                "{} was edited where it may not be:\n  - {}\n  phases that ran are history; only phases that have not run may change",
                plan.path.display(),
                problems.join("\n  - ")
            ),
            Some(format!(
                "revert the edit of those phases in {} (git diff shows it)",
                plan.path.display()
            )),
        ));
    }
    if plan.checksum == record.checksum {
        return Ok(Drift::Unchanged);
    }
    let before: Option<PlanSpec> = serde_json::from_value(record.definition.clone()).ok();
    let changed = plan
        .spec
        .phases
        .iter()
        .enumerate()
        .filter(|(i, spec)| {
            before
                .as_ref()
                .and_then(|b| b.phases.get(*i))
                .is_none_or(|old| old != *spec)
        })
        .map(|(_, spec)| spec.id.clone())
        .chain(
            before
                .iter()
                .flat_map(|b| b.phases.iter().skip(plan.spec.phases.len()))
                .map(|old| format!("{} (removed)", old.id)),
        )
        .collect();
    Ok(Drift::AcceptEdit {
        first_pending: last_run + 1,
        changed,
    })
}

/// The migration files of phases that ran which changed since the phase
/// applied them: like the phase's YAML, they are history (a rollback would
/// otherwise run a down section that was never reviewed with its up).
pub fn changed_migrations(
    plan: &LoadedPlan,
    phases: &[PhaseRecord],
    set: &MigrationSet,
    applied: &[AppliedMigration],
) -> Vec<String> {
    phases
        .iter()
        .filter(|p| is_history(p))
        .filter_map(|p| {
            let spec = plan.spec.phases.get((p.position - 1) as usize)?;
            let name = spec.migration.as_deref()?;
            let file = set.by_reference(name)?;
            let done = applied
                .iter()
                .find(|a| a.version == file.version && a.plan.as_deref() == Some(plan.name()))?;
            (file.checksum != done.checksum).then(|| {
                format!(
                    "{} changed after phase {} ({}) applied it on {}",
                    file.path.display(),
                    p.position,
                    p.id,
                    timefmt::utc(&done.applied_at)
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PLAN: &str = "plan: p
phases:
  - {id: one, kind: deploy, title: One, instructions: go}
  - {id: two, kind: deploy, title: Two, instructions: go}
  - {id: three, kind: deploy, title: Three, instructions: go}
";

    fn loaded(text: &str) -> LoadedPlan {
        LoadedPlan::parse(Path::new("plans/p.yaml"), text).unwrap()
    }

    fn recorded(text: &str, run: usize) -> (PlanRecord, Vec<PhaseRecord>) {
        let plan = loaded(text);
        let record = PlanRecord {
            name: "p".into(),
            file: "plans/p.yaml".into(),
            started_checksum: plan.checksum.clone(),
            checksum: plan.checksum.clone(),
            definition: serde_json::to_value(&plan.spec).unwrap(),
            started_at: chrono::Utc::now(),
            started_by: "t".into(),
            completed_at: None,
        };
        let phases = plan
            .spec
            .phases
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut r = PhaseRecord::pending("p", i as i32 + 1, &spec.id, spec.kind);
                if i < run {
                    r.state = PhaseState::Confirmed;
                    r.definition_checksum = Some(plan.phase_checksum(i));
                }
                r
            })
            .collect();
        (record, phases)
    }

    #[test]
    fn unchanged_file() {
        let (record, phases) = recorded(PLAN, 1);
        assert_eq!(
            compare(&loaded(PLAN), &record, &phases).unwrap(),
            Drift::Unchanged
        );
    }

    #[test]
    fn later_phases_may_change() {
        let (record, phases) = recorded(PLAN, 1);
        let edited = PLAN.replace("title: Three", "title: Third").replace(
            "  - {id: two, kind: deploy, title: Two, instructions: go}\n",
            "",
        );
        let got = compare(&loaded(&edited), &record, &phases).unwrap();
        assert_eq!(
            got,
            Drift::AcceptEdit {
                first_pending: 2,
                changed: vec!["three".into(), "three (removed)".into()]
            }
        );
    }

    #[test]
    fn a_phase_that_ran_may_not_change_move_or_vanish() {
        let (record, phases) = recorded(PLAN, 2);
        let cases = [
            (
                PLAN.replace("title: Two", "title: Deux"),
                "phase 2 (two) has run (confirmed) and its definition in the file changed",
            ),
            (
                PLAN.replace("id: two", "id: deux"),
                "phase 2 was \"two\" when it ran",
            ),
            (
                "plan: p\nphases:\n  - {id: one, kind: deploy, title: One, instructions: go}\n"
                    .to_string(),
                "phase 2 (two) has run (confirmed) but the file no longer has it",
            ),
        ];
        for (text, expected) in cases {
            let err = compare(&loaded(&text), &record, &phases).unwrap_err();
            assert_eq!(err.code(), 4);
            assert!(err.to_string().contains(expected), "{err}");
        }
    }

    #[test]
    fn a_failed_phase_may_be_fixed() {
        let (record, mut phases) = recorded(PLAN, 1);
        phases[1].state = PhaseState::Failed;
        phases[1].definition_checksum = Some("old".into());
        let fixed = PLAN.replace("title: Two", "title: Two fixed");
        let got = compare(&loaded(&fixed), &record, &phases).unwrap();
        assert_eq!(
            got,
            Drift::AcceptEdit {
                first_pending: 2,
                changed: vec!["two".into()]
            }
        );
    }

    #[test]
    fn comments_are_not_edits_of_phases() {
        let (record, phases) = recorded(PLAN, 3);
        let commented = format!("# reviewed by alice\n{PLAN}");
        let got = compare(&loaded(&commented), &record, &phases).unwrap();
        assert_eq!(
            got,
            Drift::AcceptEdit {
                first_pending: 4,
                changed: vec![]
            }
        );
    }
}
