//! Evaluating a phase's checks: bind the `:gate_opened_at`-style
//! placeholders as parameters, run each check read-only, record the result.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::events::CheckOutcome;
use crate::plan::CheckSpec;
use crate::plan::records::CheckResultRecord;
use crate::sql_text;
use crate::store::Store;
use crate::store::plans::CheckValue;

/// Times a check may refer to.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckTimes {
    pub gate_opened_at: Option<DateTime<Utc>>,
    pub phase_started_at: Option<DateTime<Utc>>,
    pub plan_started_at: Option<DateTime<Utc>>,
}

impl CheckTimes {
    fn get(&self, name: &str) -> Option<DateTime<Utc>> {
        match name {
            "gate_opened_at" => self.gate_opened_at,
            "phase_started_at" => self.phase_started_at,
            "plan_started_at" => self.plan_started_at,
            _ => None,
        }
    }
}

/// A check with its placeholders bound, ready to run.
#[derive(Debug, Clone)]
pub struct BoundCheck {
    pub name: String,
    /// The check as written, for messages.
    pub written: String,
    /// The SQL with `$n` parameters in place of the placeholders.
    pub sql: String,
    pub params: Vec<Option<DateTime<Utc>>>,
}

impl BoundCheck {
    /// Bind `check`'s placeholders, or say which one has no value yet.
    pub fn bind(check: &CheckSpec, times: &CheckTimes) -> std::result::Result<Self, String> {
        let (sql, names) = sql_text::bind_placeholders(&check.sql);
        let mut params = Vec::new();
        for name in &names {
            match times.get(name) {
                Some(t) => params.push(Some(t)),
                None => {
                    return Err(format!(
                        ":{name} has no value yet (the gate has not opened)"
                    ));
                }
            }
        }
        Ok(BoundCheck {
            name: check.name.clone(),
            written: check.sql.trim().to_string(),
            sql,
            params,
        })
    }
}

/// (passed, why not) from a check's value.
pub fn verdict(value: CheckValue) -> (bool, Option<String>) {
    match value {
        Ok(Some(true)) => (true, None),
        Ok(Some(false)) => (false, Some("returned false".to_string())),
        Ok(None) => (false, Some("returned NULL (counted as false)".to_string())),
        Err(why) => (false, Some(why)),
    }
}

/// Statement timeout for checks: they read, they should be quick.
const CHECK_TIMEOUT_MS: u64 = 30_000;

/// Evaluate `checks` in order, recording each result for `plan`/`phase`.
pub async fn evaluate(
    store: &Store,
    plan: &str,
    phase: &str,
    checks: &[CheckSpec],
    times: &CheckTimes,
    actor: &str,
) -> Result<Vec<CheckOutcome>> {
    let mut outcomes = Vec::new();
    for check in checks {
        let (passed, detail) = evaluate_one(store, check, times).await?;
        let evaluated_at = store.server_time().await?;
        store
            .record_check(
                plan,
                &CheckResultRecord {
                    phase: phase.to_string(),
                    check_name: check.name.clone(),
                    sql: check.sql.clone(),
                    passed,
                    detail: detail.clone(),
                    evaluated_at,
                    evaluated_by: actor.to_string(),
                },
            )
            .await?;
        outcomes.push(CheckOutcome {
            name: check.name.clone(),
            sql: check.sql.trim().to_string(),
            passed,
            detail,
        });
    }
    Ok(outcomes)
}

/// Evaluate `checks` without recording anything (`orch advance --dry-run`).
pub async fn evaluate_unrecorded(
    store: &Store,
    checks: &[CheckSpec],
    times: &CheckTimes,
) -> Result<Vec<CheckOutcome>> {
    let mut outcomes = Vec::new();
    for check in checks {
        let (passed, detail) = evaluate_one(store, check, times).await?;
        outcomes.push(CheckOutcome {
            name: check.name.clone(),
            sql: check.sql.trim().to_string(),
            passed,
            detail,
        });
    }
    Ok(outcomes)
}

/// (passed, why not) of one check, read-only.
async fn evaluate_one(
    store: &Store,
    check: &CheckSpec,
    times: &CheckTimes,
) -> Result<(bool, Option<String>)> {
    Ok(match BoundCheck::bind(check, times) {
        Err(why) => (false, Some(why)),
        Ok(bound) => verdict(
            store
                .evaluate_check(&bound.sql, &bound.params, CHECK_TIMEOUT_MS)
                .await?,
        ),
    })
}

/// The failures among `outcomes`, as text for a refusal message.
pub fn describe_failures(outcomes: &[CheckOutcome]) -> Option<String> {
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.passed)
        .map(|o| {
            format!(
                "check {:?} {}:\n      {}",
                o.name,
                o.detail.as_deref().unwrap_or("did not pass"),
                o.sql.replace('\n', "\n      ")
            )
        })
        .collect();
    (!failed.is_empty()).then(|| failed.join("\n  "))
}
