//! Where every plan stands, from its file and its recorded state: the data
//! behind `orch status` and `orch checklist` (the CLI renders it).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backfill::BackfillProgress;
use crate::engine::dirty::resolve_commands;
use crate::engine::phases;
use crate::engine::plan_runner::confirm_command;
use crate::engine::workspace::Workspace;
use crate::error::Result;
use crate::plan::format::{BackfillSpec, SyncSpec};
use crate::plan::format::{PhaseKind, PhaseSpec, PlanSpec};
use crate::plan::records::EventRecord;
use crate::plan::records::{CheckResultRecord, PhaseRecord, PlanRecord, SyncTriggerRecord};
use crate::plan::{PhaseState, PlanSet};
use crate::store::Store;
use crate::store::migrations::{AppliedMigration, DirtyState};
use crate::timefmt;

/// One plan at a glance, and its phases in detail.
#[derive(Debug, Clone, Serialize)]
pub struct PlanStatus {
    pub plan: String,
    pub file: Option<String>,
    /// e.g. "file missing" or "file edited since the plan started".
    pub file_note: Option<String>,
    pub description: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub started_by: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
    pub total: usize,
    /// 1-based phase the plan is on (the first not confirmed); None when complete.
    pub current: Option<usize>,
    /// "not started", "complete", or the current phase's state ("interrupted"
    /// for a running phase whose process is gone).
    pub state: String,
    pub since: Option<DateTime<Utc>>,
    pub waiting_on: String,
    pub phases: Vec<PhaseStatus>,
}

/// One phase of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseStatus {
    pub position: usize,
    pub id: String,
    pub kind: PhaseKind,
    pub title: String,
    pub role: Option<String>,
    pub reversible: bool,
    /// For irreversible phases: what rolling them back would lose.
    pub rollback_loses: Option<String>,
    pub migration: Option<String>,
    /// A backfill phase's definition (for the checklist; `status --json`
    /// reports state, and the definition is in the plan file).
    #[serde(skip)]
    pub backfill: Option<BackfillSpec>,
    /// A sync phase's definition (for the checklist, as `backfill`).
    #[serde(skip)]
    pub sync: Option<SyncSpec>,
    pub instructions: Option<String>,
    pub state: PhaseState,
    pub record: Option<PhaseRecord>,
    pub progress: Option<BackfillProgress>,
    /// For a running phase: is its process alive, and its heartbeat.
    pub liveness: Option<Liveness>,
    pub checks: Vec<CheckStatus>,
    /// The migration this phase ran, when it stopped half-way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirty_migration: Option<DirtyMigration>,
    /// A sync phase's trigger, once the phase installed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<TriggerStatus>,
}

/// A sync phase's trigger: as recorded, and whether the database has it.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerStatus {
    #[serde(flatten)]
    pub record: SyncTriggerRecord,
    /// Recorded as installed but not on its table (dropped by hand): the
    /// old and new columns are not kept in step.
    pub missing: bool,
}

impl TriggerStatus {
    /// `trigger orch_sync_... on public.posts installed`.
    pub fn describe(&self) -> String {
        let mut text = self.record.describe();
        if self.missing {
            text.push_str(
                " (recorded as installed, but the table has no such trigger: it was dropped outside orch, so the columns are not kept in step)",
            );
        }
        text
    }
}

/// Whether the process running a phase is still there. Decided by the
/// plan's advisory lock (every orch acting on a plan holds it, and the
/// server frees it when the process dies), not by time: the heartbeat
/// only says how long ago the last sign of work was.
#[derive(Debug, Clone, Serialize)]
pub struct Liveness {
    /// A session holds the plan's lock.
    pub alive: bool,
    /// "last batch" (a backfill's latest committed batch) or "started"
    /// (when the phase started, for other kinds and before a first batch).
    pub activity: &'static str,
    pub last_activity_at: Option<DateTime<Utc>>,
    /// Milliseconds from then to now, by the server's clock.
    pub idle_ms: Option<i64>,
    /// The orch process that started the phase, and its host.
    pub pid: Option<i32>,
    pub host: Option<String>,
}

impl Liveness {
    /// `running (last batch 2.0 s ago, pid 1234 on web1)`, or
    /// `interrupted (no progress for 5m 03s; the process holding it is gone):
    /// run `orch advance PLAN` to resume`.
    pub fn describe(&self, plan: &str) -> String {
        let idle = self.idle_ms.map(timefmt::millis);
        if self.alive {
            let mut parts = Vec::new();
            if let Some(idle) = idle {
                parts.push(format!("{} {idle} ago", self.activity));
            }
            match (self.pid, &self.host) {
                (Some(pid), Some(host)) => parts.push(format!("pid {pid} on {host}")),
                (Some(pid), None) => parts.push(format!("pid {pid}")),
                _ => {}
            }
            if parts.is_empty() {
                "running".to_string()
            } else {
                format!("running ({})", parts.join(", "))
            }
        } else {
            let since = idle
                .map(|idle| format!("no progress for {idle}; "))
                .unwrap_or_default();
            format!(
                "interrupted ({since}the process holding it is gone): run `orch advance {plan}` to resume"
            )
        }
    }
}

/// The migration a phase ran that stopped half-way (dirty).
#[derive(Debug, Clone, Serialize)]
pub struct DirtyMigration {
    pub version: i64,
    /// `<version>_<name>`.
    pub migration: String,
    pub dirty: Option<DirtyState>,
}

impl DirtyMigration {
    fn of(row: &AppliedMigration) -> DirtyMigration {
        DirtyMigration {
            version: row.version,
            migration: row.id(),
            dirty: row.dirty.clone(),
        }
    }

    /// What the plan waits on while it is dirty.
    fn waiting_on(&self) -> String {
        let place = self
            .dirty
            .as_ref()
            .map(|d| format!(" at {}", d.place()))
            .unwrap_or_default();
        format!(
            "migration {} stopped half-way{place} and is dirty: fix the database by hand, then {}",
            self.migration,
            resolve_commands(self.version)
        )
    }
}

/// A guard or check with its latest result.
#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    /// "guard" (before the phase runs) or "check" (before it is confirmed).
    pub purpose: &'static str,
    pub name: String,
    pub sql: String,
    pub last: Option<CheckResultRecord>,
}

/// Status of every plan in the files and in the database (or just `only`).
pub async fn plan_statuses(workspace: &Workspace, only: Option<&str>) -> Result<Vec<PlanStatus>> {
    let (store, plans) = (&workspace.store, &workspace.plans);
    let recorded = store.all_plan_states().await?;
    let mut names: Vec<String> = plans.plans.iter().map(|p| p.name().to_string()).collect();
    for (record, _) in &recorded {
        if !names.contains(&record.name) {
            names.push(record.name.clone());
        }
    }
    names.sort();
    let dirty: Vec<AppliedMigration> = store
        .applied_migrations()
        .await?
        .into_iter()
        .filter(|a| a.is_dirty())
        .collect();
    let mut out = Vec::new();
    for name in names.into_iter().filter(|n| only.is_none_or(|o| o == n)) {
        let loaded = plans.get(&name);
        let state = recorded.iter().find(|(r, _)| r.name == name);
        let mut unreadable = None;
        let spec: PlanSpec = match (loaded, state) {
            (Some(plan), _) => plan.spec.clone(),
            (None, Some((record, phases))) => {
                match serde_json::from_value(record.definition.clone()) {
                    Ok(spec) => spec,
                    Err(e) => {
                        unreadable = Some(format!(
                            "file missing and the definition recorded in the database cannot be read ({e}): shown from its phase records; a newer orch may have written it (upgrade orch, or restore {}/{name}.yaml)",
                            plans.dir.display()
                        ));
                        spec_from_records(&name, phases)
                    }
                }
            }
            (None, None) => continue,
        };
        let results = store.check_results(&name).await?;
        let mut progress = Vec::new();
        for phase in &spec.phases {
            let live = phases::work(phase.kind)
                .progress(store, &name, phase)
                .await?;
            progress.push((phase.id.clone(), live));
        }
        let liveness = match state {
            Some((_, phases)) => liveness(store, &name, phases, &progress).await?,
            None => None,
        };
        let triggers = match state {
            Some((_, phases)) => triggers(store, phases).await?,
            None => Vec::new(),
        };
        let file_note = match (loaded, state) {
            _ if unreadable.is_some() => unreadable,
            (None, Some(_)) => Some("file missing: shown as recorded".to_string()),
            (Some(plan), Some((record, _))) if plan.checksum != record.checksum => {
                Some("file edited since last used (applied at the next command)".to_string())
            }
            _ => None,
        };
        out.push(build(
            &name,
            &spec,
            loaded.map(|p| p.path.display().to_string()),
            file_note,
            state,
            &results,
            Live {
                progress: &progress,
                liveness,
                dirty: &dirty,
                triggers: &triggers,
            },
        ));
    }
    Ok(out)
}

/// One plan from its file alone, with no state read: every phase pending,
/// no check evaluated (`orch checklist` without a database).
pub fn file_status(plans: &PlanSet, name: &str) -> Result<PlanStatus> {
    let plan = plans.require(name)?;
    Ok(build(
        name,
        &plan.spec,
        Some(plan.path.display().to_string()),
        None,
        None,
        &[],
        Live {
            progress: &[],
            liveness: None,
            dirty: &[],
            triggers: &[],
        },
    ))
}

/// A stand-in definition from a plan's phase rows, for a plan whose
/// recorded definition cannot be read: ids, kinds and states still show.
fn spec_from_records(name: &str, phases: &[PhaseRecord]) -> PlanSpec {
    PlanSpec {
        plan: name.to_string(),
        description: None,
        phases: phases
            .iter()
            .map(|p| PhaseSpec {
                id: p.id.clone(),
                kind: p.kind,
                title: "(definition unreadable)".to_string(),
                instructions: None,
                role: None,
                migration: None,
                backfill: None,
                sync: None,
                guard: Vec::new(),
                checks: Vec::new(),
                reversible: true,
                rollback_loses: None,
            })
            .collect(),
    }
}

/// What is going on now, beside the records: each phase's live progress,
/// and the liveness of the running phase (with its 1-based position).
struct Live<'a> {
    progress: &'a [(String, Option<BackfillProgress>)],
    liveness: Option<(usize, Liveness)>,
    /// Dirty migrations (any plan's).
    dirty: &'a [AppliedMigration],
    /// Sync phases' triggers, by 1-based position.
    triggers: &'a [(usize, TriggerStatus)],
}

/// The triggers a plan's sync phases recorded, each looked up on its table
/// when recorded as installed.
async fn triggers(store: &Store, phases: &[PhaseRecord]) -> Result<Vec<(usize, TriggerStatus)>> {
    let mut out = Vec::new();
    for phase in phases {
        let Some(record) = SyncTriggerRecord::of(phase) else {
            continue;
        };
        let missing = record.installed && !store.sync_trigger_exists(&record).await?;
        out.push((phase.position as usize, TriggerStatus { record, missing }));
    }
    Ok(out)
}

/// The liveness of a plan's current phase when it is running, with its
/// 1-based position.
async fn liveness(
    store: &Store,
    plan: &str,
    phases: &[PhaseRecord],
    progress: &[(String, Option<BackfillProgress>)],
) -> Result<Option<(usize, Liveness)>> {
    let Some(phase) = phases
        .iter()
        .find(|p| p.state != PhaseState::Confirmed)
        .filter(|p| p.state == PhaseState::Running)
    else {
        return Ok(None);
    };
    let alive = store.plan_lock_holder(plan).await?.is_some();
    let last_batch = progress
        .iter()
        .find(|(id, _)| *id == phase.id)
        .and_then(|(_, p)| p.as_ref())
        .filter(|p| p.batches_done > 0)
        .and_then(|p| p.updated_at);
    let (activity, at) = match last_batch {
        Some(at) => ("last batch", Some(at)),
        None => ("started", phase.started_at),
    };
    let now = store.server_time().await?;
    Ok(Some((
        phase.position as usize,
        Liveness {
            alive,
            activity,
            last_activity_at: at,
            idle_ms: at.map(|at| (now - at).num_milliseconds().max(0)),
            pid: phase.run_pid,
            host: phase.run_host.clone(),
        },
    )))
}

/// The event log of one plan (for the checklist).
pub async fn plan_events(workspace: &Workspace, plan: &str) -> Result<Vec<EventRecord>> {
    workspace.store.events(plan).await
}

fn build(
    name: &str,
    spec: &PlanSpec,
    file: Option<String>,
    file_note: Option<String>,
    state: Option<&(PlanRecord, Vec<PhaseRecord>)>,
    results: &[CheckResultRecord],
    live: Live<'_>,
) -> PlanStatus {
    let Live {
        progress,
        liveness,
        dirty,
        triggers,
    } = live;
    let records: &[PhaseRecord] = state.map_or(&[], |(_, phases)| phases.as_slice());
    let phases: Vec<PhaseStatus> = spec
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let record = records
                .iter()
                .find(|r| r.position as usize == i + 1 && r.id == p.id)
                .cloned();
            let record_ran = record.as_ref().is_some_and(|r| r.state.has_run());
            let checks = p
                .guard
                .iter()
                .map(|c| ("guard", c))
                .chain(p.checks.iter().map(|c| ("check", c)))
                .map(|(purpose, c)| CheckStatus {
                    purpose,
                    name: c.name.clone(),
                    sql: c.sql.trim().to_string(),
                    last: results
                        .iter()
                        .find(|r| r.phase == p.id && r.check_name == c.name)
                        .cloned(),
                })
                .collect();
            PhaseStatus {
                position: i + 1,
                id: p.id.clone(),
                kind: p.kind,
                title: p.title.clone(),
                role: p.role.map(|r| format!("{r:?}").to_lowercase()),
                reversible: p.reversible,
                rollback_loses: p.rollback_loses.clone(),
                migration: p.migration.clone(),
                backfill: p.backfill.clone(),
                sync: p.sync.clone(),
                instructions: p.instructions.clone(),
                state: record.as_ref().map_or(PhaseState::Pending, |r| r.state),
                record,
                progress: progress
                    .iter()
                    .find(|(id, _)| *id == p.id)
                    .and_then(|(_, pr)| pr.clone()),
                liveness: liveness
                    .as_ref()
                    .filter(|(position, _)| *position == i + 1)
                    .map(|(_, l)| l.clone()),
                checks,
                dirty_migration: dirty
                    .iter()
                    .find(|a| a.plan.as_deref() == Some(name) && a.phase.as_deref() == Some(&p.id))
                    .map(DirtyMigration::of),
                trigger: triggers
                    .iter()
                    .find(|(position, _)| *position == i + 1)
                    .filter(|_| record_ran)
                    .map(|(_, t)| t.clone()),
            }
        })
        .collect();
    let total = phases.len();
    let current = phases.iter().position(|p| p.state != PhaseState::Confirmed);
    let (state_text, since, waiting_on) = match (state, current) {
        (None, _) => (
            "not started".to_string(),
            None,
            format!("orch advance {name} starts phase 1"),
        ),
        (Some((record, _)), None) => (
            "complete".to_string(),
            record.completed_at,
            "nothing: the plan is complete".to_string(),
        ),
        (Some(_), Some(i)) => {
            let p = &phases[i];
            // A pending phase has waited since the one before was confirmed.
            let since = match (p.state, i.checked_sub(1)) {
                (PhaseState::Pending, Some(before)) => {
                    phases[before].record.as_ref().and_then(|r| r.confirmed_at)
                }
                _ => p.record.as_ref().and_then(|r| r.updated_at),
            };
            let state = match &p.liveness {
                Some(l) if !l.alive => "interrupted",
                _ => p.state.name(),
            };
            // A migration a phase left half-applied blocks the plan's
            // migrations, whichever phase is current.
            let waiting = match phases.iter().find_map(|p| p.dirty_migration.as_ref()) {
                Some(dirty) => dirty.waiting_on(),
                None => waiting_on(name, p),
            };
            (state.to_string(), since, waiting)
        }
    };
    PlanStatus {
        plan: name.to_string(),
        file,
        file_note,
        description: spec.description.clone(),
        started_at: state.map(|(r, _)| r.started_at),
        started_by: state.map(|(r, _)| r.started_by.clone()),
        completed_at: state.and_then(|(r, _)| r.completed_at),
        total,
        current: current.map(|i| i + 1),
        state: state_text,
        since,
        waiting_on,
        phases,
    }
}

/// What the current phase waits on, in words, with the command to run.
fn waiting_on(plan: &str, p: &PhaseStatus) -> String {
    let which = format!("phase {} {}", p.position, p.id);
    match p.state {
        PhaseState::Pending => format!("orch advance {plan} (runs {which})"),
        PhaseState::Open => format!(
            "the deploy, then confirmation of {which}: {}",
            confirm_command(plan, &p.id)
        ),
        PhaseState::Done => format!("confirmation of {which}: {}", confirm_command(plan, &p.id)),
        PhaseState::Running => match (&p.liveness, &p.progress) {
            (Some(l), _) if !l.alive => format!("{which} {}", l.describe(plan)),
            (Some(l), Some(progress)) => {
                format!("{which} {}: {}", l.describe(plan), progress.describe())
            }
            (Some(l), None) => format!("{which} {}", l.describe(plan)),
            (None, Some(progress)) => format!("{which} running: {}", progress.describe()),
            (None, None) => {
                format!("{which} running (if its process died: orch advance {plan} resumes it)")
            }
        },
        PhaseState::Paused => format!("{which} paused: orch advance {plan} resumes it"),
        PhaseState::Failed => {
            let error = p
                .record
                .as_ref()
                .and_then(|r| r.error.as_deref())
                .and_then(|e| e.lines().next())
                .unwrap_or("failed");
            format!(
                "{which} failed ({error}): orch advance {plan} retries, orch rollback {plan} resets it"
            )
        }
        PhaseState::Confirmed => "nothing".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn liveness(alive: bool, idle_ms: Option<i64>, pid: Option<i32>) -> Liveness {
        Liveness {
            alive,
            activity: "last batch",
            last_activity_at: None,
            idle_ms,
            pid,
            host: pid.map(|_| "web1".to_string()),
        }
    }

    #[test]
    fn running_or_interrupted_in_words() {
        for (l, expected) in [
            (
                liveness(true, Some(2_000), Some(1234)),
                "running (last batch 2.0 s ago, pid 1234 on web1)",
            ),
            (liveness(true, None, None), "running"),
            (
                liveness(false, Some(303_000), Some(1234)),
                "interrupted (no progress for 5m 03s; the process holding it is gone): run `orch advance p` to resume",
            ),
            (
                liveness(false, None, None),
                "interrupted (the process holding it is gone): run `orch advance p` to resume",
            ),
        ] {
            assert_eq!(l.describe("p"), expected);
        }
    }
}
