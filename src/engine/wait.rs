//! `orch wait`: try to connect until the database accepts connections or
//! the time is up, with a short back-off between attempts (dbmate's `wait`,
//! `pg_isready` with patience).

use std::time::Duration;

use tokio::time::Instant;

use crate::connect::ConnectionSettings;
use crate::error::{Error, Result};

/// How long to keep trying, and the pauses between attempts.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    /// Give up after this long; zero makes one attempt.
    pub timeout: Duration,
    /// The pause after the first failed attempt; it doubles each time...
    pub first_pause: Duration,
    /// ...up to this.
    pub max_pause: Duration,
}

impl WaitPolicy {
    pub fn new(timeout: Duration) -> WaitPolicy {
        WaitPolicy {
            timeout,
            first_pause: Duration::from_millis(100),
            max_pause: Duration::from_secs(1),
        }
    }
}

/// A failed attempt, reported before the pause that follows it.
#[derive(Debug)]
pub struct Retry<'a> {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Always a connection error (`Error::Connect`).
    pub error: &'a Error,
}

/// Connect until a connection succeeds (returns the number of attempts) or
/// `policy.timeout` has passed (returns the last attempt's error, noting
/// how long orch waited). Errors other than a failed connection (bad
/// settings) are returned at once.
pub async fn wait_for_database(
    settings: &ConnectionSettings,
    application_name: &str,
    policy: WaitPolicy,
    mut on_retry: impl FnMut(&Retry<'_>),
) -> Result<u32> {
    let started = Instant::now();
    let deadline = deadline(started, policy.timeout);
    let mut pause = policy.first_pause;
    let mut previous: Option<Error> = None;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome = if attempt == 1 && remaining.is_zero() {
            // --timeout 0: one attempt, bounded by its connect_timeout only.
            settings.connect(application_name).await
        } else {
            match tokio::time::timeout(remaining, settings.connect(application_name)).await {
                Ok(outcome) => outcome,
                // Cut short by the deadline: the previous attempt's error
                // says more than "no answer".
                Err(_) => Err(previous
                    .take()
                    .unwrap_or_else(|| settings.no_answer(started.elapsed()))),
            }
        };
        let error = match outcome {
            Ok(_client) => return Ok(attempt),
            Err(error @ Error::Connect { .. }) => error,
            Err(other) => return Err(other),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(gave_up(error, policy.timeout, attempt));
        }
        on_retry(&Retry {
            attempt,
            error: &error,
        });
        tokio::time::sleep(pause.min(remaining)).await;
        previous = Some(error);
        pause = (pause * 2).min(policy.max_pause);
    }
}

/// `started + timeout`, or a century on when that is past what an
/// `Instant` can hold (`--timeout 300000000000years` parses).
fn deadline(started: Instant, timeout: Duration) -> Instant {
    started.checked_add(timeout).unwrap_or_else(|| {
        let century = Duration::from_secs(100 * 365 * 24 * 3600);
        started + century
    })
}

/// The last error, saying that orch stopped waiting.
fn gave_up(error: Error, timeout: Duration, attempts: u32) -> Error {
    let note = match (timeout.is_zero(), attempts) {
        (true, _) => "tried once (--timeout 0)".to_string(),
        (false, 1) => format!(
            "gave up waiting after {} (1 attempt)",
            crate::timefmt::duration(timeout)
        ),
        (false, n) => format!(
            "gave up waiting after {} ({n} attempts)",
            crate::timefmt::duration(timeout)
        ),
    };
    match error {
        Error::Connect { target, reason } => Error::Connect {
            target,
            reason: format!("{reason}\n  {note}"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (found trying huge values on every duration flag): a
    /// `--timeout` past what an Instant holds panicked with "overflow when
    /// adding duration to instant".
    #[test]
    fn a_timeout_past_any_instant_waits_a_century() {
        let now = Instant::now();
        let timeout = crate::timefmt::parse_duration_with_unit("300000000000years").unwrap();
        assert!(deadline(now, timeout) > now + Duration::from_secs(99 * 365 * 24 * 3600));
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }
}
