//! Before a process that has just taken a lock runs anything: statements an
//! earlier orch process left running on the same plan or the migration
//! history (it was killed, or lost its lock) are waited for, bounded by the
//! lock wait, or with `--cancel-orphans` cancelled, then terminated; named
//! either way (pid, application_name, since when, the statement).

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::events::{Event, Reporter};
use crate::store::Store;
use crate::store::locks::LockScope;
use crate::store::orphans::Orphan;
use crate::timefmt;

/// How often to look again while waiting.
const POLL: Duration = Duration::from_millis(200);
/// How long a cancelled statement gets to end before its session is terminated.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Wait for (or cancel) what earlier orch processes left running on `scope`.
pub(crate) async fn settle(
    store: &Store,
    scope: &LockScope,
    wait: Duration,
    cancel: bool,
    reporter: &dyn Reporter,
) -> Result<()> {
    let own = own_sessions(store).await?;
    let found = store.orphans(scope, &own).await?;
    if found.is_empty() {
        return Ok(());
    }
    let what = scope.describe();
    if cancel {
        reporter.report(Event::Warning {
            message: format!(
                "cancelling {} statement(s) an earlier orch process left running on {what} (--cancel-orphans):{}",
                found.len(),
                list(&found)
            ),
        });
        for orphan in &found {
            store.stop_backend(orphan.pid, false).await?;
        }
        let left = wait_until_gone(store, scope, &own, CANCEL_GRACE.min(wait.max(POLL))).await?;
        if !left.is_empty() {
            reporter.report(Event::Warning {
                message: format!(
                    "terminating the session(s) of {} statement(s) that did not end when cancelled:{}",
                    left.len(),
                    list(&left)
                ),
            });
            for orphan in &left {
                store.stop_backend(orphan.pid, true).await?;
            }
        }
        let left = wait_until_gone(store, scope, &own, wait.max(CANCEL_GRACE)).await?;
        if left.is_empty() {
            return Ok(());
        }
        return Err(still_running(&what, &left, wait, true));
    }
    reporter.report(Event::Warning {
        message: format!(
            "waiting (up to {}) for {} statement(s) an earlier orch process left running on {what}; `--cancel-orphans` cancels them instead:{}",
            timefmt::duration(wait),
            found.len(),
            list(&found)
        ),
    });
    let left = wait_until_gone(store, scope, &own, wait).await?;
    if left.is_empty() {
        reporter.report(Event::Info {
            message: format!("the earlier orch process's statements on {what} have ended"),
        });
        return Ok(());
    }
    Err(still_running(&what, &left, wait, false))
}

/// This process's sessions that may be busy now: its working connection
/// (lock sessions are left out by name).
async fn own_sessions(store: &Store) -> Result<Vec<i32>> {
    Ok(vec![store.backend_pid().await?])
}

async fn wait_until_gone(
    store: &Store,
    scope: &LockScope,
    own: &[i32],
    wait: Duration,
) -> Result<Vec<Orphan>> {
    let started = Instant::now();
    loop {
        let left = store.orphans(scope, own).await?;
        if left.is_empty() || started.elapsed() >= wait {
            return Ok(left);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn still_running(what: &str, left: &[Orphan], wait: Duration, cancelled: bool) -> Error {
    let next = if cancelled {
        "find out why they do not end (pg_stat_activity), end them, then run the same command again"
    } else {
        "wait for them to end, or run the same command with --cancel-orphans to cancel them (pg_cancel_backend, then pg_terminate_backend)"
    };
    Error::LockTimeout {
        message: format!(
            "{} statement(s) an earlier orch process left running on {what} still run after {}{}; nothing was run\n  next: {next}",
            left.len(),
            timefmt::duration(wait),
            list(left)
        ),
    }
}

/// One line per orphan: pid, application_name, state, since, statement.
fn list(orphans: &[Orphan]) -> String {
    orphans
        .iter()
        .map(|o| {
            let since = o
                .since
                .map(|t| format!(", since {}", timefmt::utc(&t)))
                .unwrap_or_default();
            let query: String = o.query.split_whitespace().collect::<Vec<_>>().join(" ");
            let query = if query.chars().count() > 200 {
                format!("{}...", query.chars().take(200).collect::<String>())
            } else {
                query
            };
            format!(
                "\n    pid {} (application_name {:?}, {}{since}): {query}",
                o.pid, o.application_name, o.state
            )
        })
        .collect()
}
