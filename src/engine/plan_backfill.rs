//! `orch backfill PLAN PHASE`: run a backfill phase that already ran (done
//! or confirmed) once more, over the rows that still match its `where`:
//! rows an application version that lags behind wrote after the backfill
//! (the contract's guard then names this command). The phase's state and
//! result stay as they were; the re-run is recorded in the audit log, keeps
//! its own cursor rows (`store::backfill::rerun_key`), and batches, reports
//! progress, pauses and stops on Ctrl-C like the first run.

use serde_json::json;

use crate::backfill::{self, BackfillEnd, BackfillJob};
use crate::engine::plan_runner::{PlanEngine, confirm_command};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::plan::format::PhaseKind;
use crate::plan::records::PhaseRecord;
use crate::plan::{AuditAction, LoadedPlan, PhaseState};
use crate::store::backfill::rerun_key;

impl PlanEngine<'_> {
    /// `orch backfill PLAN PHASE`: re-run a finished backfill phase.
    pub async fn rerun_backfill(&self, name: &str, phase: &str) -> Result<()> {
        self.locked(name, self.rerun_locked(name, phase)).await
    }

    async fn rerun_locked(&self, name: &str, reference: &str) -> Result<()> {
        let plan = self.plan(name)?;
        let index = self.phase_index(plan, reference)?;
        let spec = &plan.spec.phases[index];
        let Some(backfill_spec) = spec
            .backfill
            .as_ref()
            .filter(|_| spec.kind == PhaseKind::Backfill)
        else {
            return Err(Error::refused(
                format!(
                    "phase {} ({}) of plan {name} is a {} phase, not a backfill; `orch backfill` re-runs backfill phases only ({})",
                    index + 1,
                    spec.id,
                    spec.kind.name(),
                    backfills_of(plan)
                ),
                None,
            ));
        };
        let Some((_, phases)) = self.sync(plan, false).await? else {
            return Err(Error::refused(
                format!(
                    "plan {name} has not started, so its backfill {} has not run; `orch advance` runs it in its turn",
                    spec.id
                ),
                Some(format!("orch advance {name}")),
            ));
        };
        let current = &phases[index];
        if !matches!(current.state, PhaseState::Done | PhaseState::Confirmed) {
            return Err(not_run_yet(name, index, current));
        }
        let key = rerun_key(&spec.id);
        let recorded = self.store.backfill_workers(name, &key).await?;
        let resumed = recorded.iter().any(|r| !r.done);
        if !recorded.is_empty() && !resumed {
            // The previous re-run finished: this one walks the table as it is now.
            self.store.clear_backfill_workers(name, &key).await?;
        }
        self.store
            .set_pause_request(name, current.position, false)
            .await?;
        self.store
            .commit_bookkeeping(&[self.event(
                name,
                Some(&spec.id),
                AuditAction::BackfillRerunStarted,
                json!({ "resumed": resumed, "phase_state": current.state.name() }),
            )])
            .await?;
        self.reporter.report(Event::Info {
            message: format!(
                "{} backfill {} of plan {name} over the rows that still match its where (the phase stays {})",
                if resumed {
                    "resuming the re-run of"
                } else {
                    "re-running"
                },
                spec.id,
                current.state.name()
            ),
        });
        let job = BackfillJob {
            connection: self.store.settings(),
            plan: name,
            phase: &key,
            position: current.position,
            spec: backfill_spec,
            overrides: &self.options.backfill,
            lock_timeout: self.options.policy.lock_timeout,
            reporter: self.reporter,
            stop: self.stop,
            fences: self.store.fences(),
        };
        let outcome = backfill::run(job).await;
        let _ = self
            .store
            .set_pause_request(name, current.position, false)
            .await;
        let (word, detail) = match &outcome {
            Ok(BackfillEnd::Finished(stats)) => ("finished", json!(stats)),
            Ok(BackfillEnd::Paused(stats)) => ("paused", json!(stats)),
            Ok(BackfillEnd::Interrupted(stats)) => ("interrupted", json!(stats)),
            Err(e) => ("failed", json!({ "error": e.to_string() })),
        };
        self.store
            .commit_bookkeeping(&[self.event(
                name,
                Some(&spec.id),
                AuditAction::BackfillRerunEnded,
                json!({ "outcome": word, "result": detail }),
            )])
            .await?;
        let again = format!("orch backfill {name} {}", spec.id);
        match outcome? {
            BackfillEnd::Finished(stats) => {
                let next = match current.state {
                    PhaseState::Done => confirm_command(name, &spec.id),
                    _ => format!("orch advance {name}"),
                };
                self.reporter.report(Event::Info {
                    message: format!(
                        "re-run of backfill {} finished: {} rows updated ({} visited); phase {} stays {}; next: {next}",
                        spec.id,
                        stats.rows_updated,
                        stats.rows_scanned,
                        spec.id,
                        current.state.name()
                    ),
                });
                Ok(())
            }
            BackfillEnd::Paused(_) => {
                self.reporter.report(Event::Info {
                    message: format!(
                        "re-run paused on request; `{again}` continues it from its saved cursor"
                    ),
                });
                Ok(())
            }
            BackfillEnd::Interrupted(_) => Err(Error::Interrupted {
                resume: format!("`{again}` continues the re-run from its saved cursor"),
            }),
        }
    }
}

/// The refusal for a backfill phase that has not run to its end once.
fn not_run_yet(plan: &str, index: usize, phase: &PhaseRecord) -> Error {
    let what = match phase.state {
        PhaseState::Pending => {
            "has not run yet; `orch advance` runs it once the phases before it are confirmed"
        }
        PhaseState::Failed => "failed; `orch advance` retries it from its cursor",
        _ => "has not finished its first run; `orch advance` resumes it",
    };
    Error::refused(
        format!(
            "refusing to re-run backfill phase {} ({}) of plan {plan}: it is {} and {what}; `orch backfill` re-runs a backfill that ran to its end",
            index + 1,
            phase.id,
            phase.state.name()
        ),
        Some(format!("orch advance {plan}")),
    )
}

/// `backfill phases: fill` or `it has no backfill phase`.
fn backfills_of(plan: &LoadedPlan) -> String {
    let ids: Vec<&str> = plan
        .spec
        .phases
        .iter()
        .filter(|p| p.kind == PhaseKind::Backfill)
        .map(|p| p.id.as_str())
        .collect();
    if ids.is_empty() {
        format!("plan {} has no backfill phase", plan.name())
    } else {
        format!("its backfill phases: {}", ids.join(", "))
    }
}

/// The backfill phase that ran last before phase `index`, if any: the
/// command that re-runs it is the fix for a guard failing on rows written
/// after it (by an application version that lags behind).
pub(crate) fn earlier_backfill(plan: &LoadedPlan, index: usize) -> Option<&str> {
    plan.spec.phases[..index]
        .iter()
        .rev()
        .find(|p| p.kind == PhaseKind::Backfill)
        .map(|p| p.id.as_str())
}
