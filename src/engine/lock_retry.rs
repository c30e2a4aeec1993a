//! The retry policy for statements that need a strong table lock: a short
//! `lock_timeout` per attempt (so the application never queues behind us for
//! longer), backoff with jitter between attempts, a bounded number of
//! retries, and escalation when autovacuum is the blocker.

use std::time::Duration;

use crate::events::LockWaitSample;
use crate::timefmt;

/// How DDL waits for locks. Defaults: 500 ms per attempt, 10 retries.
#[derive(Debug, Clone)]
pub struct LockRetryPolicy {
    /// lock_timeout of the first attempt.
    pub lock_timeout: Duration,
    /// lock_timeout of the last attempt; attempts in between escalate
    /// linearly. Equal to `lock_timeout` by default: each attempt may stall
    /// the application for at most its timeout, so we keep that bound.
    pub lock_timeout_max: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// Backoff before retry i is up to `backoff_base * 2^i`, capped, jittered.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub statement_timeout: Duration,
}

impl Default for LockRetryPolicy {
    fn default() -> Self {
        LockRetryPolicy {
            lock_timeout: Duration::from_millis(500),
            lock_timeout_max: Duration::from_millis(500),
            retries: 10,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(60),
        }
    }
}

/// Margin above `deadlock_timeout`, so our waiter outlives the point at which
/// PostgreSQL cancels a blocking autovacuum.
const AUTOVACUUM_MARGIN: Duration = Duration::from_millis(500);

impl LockRetryPolicy {
    /// Total attempts.
    pub fn attempts(&self) -> u32 {
        self.retries + 1
    }

    /// lock_timeout for attempt `attempt` (0-based) from the policy alone.
    pub fn scheduled_timeout(&self, attempt: u32) -> Duration {
        let max = self.lock_timeout_max.max(self.lock_timeout);
        if self.retries == 0 {
            return self.lock_timeout;
        }
        let span = max - self.lock_timeout;
        let fraction = f64::from(attempt.min(self.retries)) / f64::from(self.retries);
        // Through f64 a huge span can round past itself, even past what a
        // Duration holds: the step never exceeds the span.
        let step = Duration::try_from_secs_f64(span.as_secs_f64() * fraction)
            .map_or(span, |step| step.min(span));
        self.lock_timeout.saturating_add(step)
    }

    /// The timeout for the next attempt, given what blocked the last one: an
    /// autovacuum worker is cancelled by a waiter only after
    /// `deadlock_timeout`, so a shorter timeout would never get past it.
    pub fn next_timeout(
        &self,
        next_attempt: u32,
        last_wait: Option<&LockWaitSample>,
        deadlock_timeout: Option<Duration>,
    ) -> (Duration, Option<String>) {
        let scheduled = self.scheduled_timeout(next_attempt);
        let autovacuum = last_wait.and_then(|w| w.blockers.iter().find(|b| b.is_autovacuum()));
        match (autovacuum, deadlock_timeout) {
            (Some(worker), Some(deadlock)) if scheduled <= deadlock => {
                let raised = deadlock + AUTOVACUUM_MARGIN;
                let note = format!(
                    "the blocker is autovacuum (pid {}: {}); PostgreSQL cancels it only after a waiter has waited deadlock_timeout = {}, so the next attempt waits up to {} instead of {}",
                    worker.pid,
                    worker.query,
                    timefmt::duration(deadlock),
                    timefmt::duration(raised),
                    timefmt::duration(scheduled)
                );
                (raised, Some(note))
            }
            _ => (scheduled, None),
        }
    }

    /// Sleep before retry number `retry` (1-based): exponential, capped, with
    /// jitter in [50%, 100%] so competing retriers spread out.
    pub fn backoff(&self, retry: u32, random_unit: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let full = self
            .backoff_base
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max);
        full.mul_f64(0.5 + 0.5 * random_unit.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Blocker;

    /// Regression (found by `fuzz::fuzz_lock_retry_policy`): a huge
    /// `--lock-timeout-max` (`18446744073709551615s` parses) panicked with
    /// "overflow when adding durations" or in `mul_f64`.
    #[test]
    fn huge_escalations_saturate_instead_of_panicking() {
        for (lock_timeout, max) in [
            (
                Duration::from_secs(5_351_759_800_866_328_576),
                Duration::MAX,
            ),
            (Duration::from_millis(500), Duration::from_secs(u64::MAX)),
        ] {
            let policy = LockRetryPolicy {
                lock_timeout,
                lock_timeout_max: max,
                retries: 1,
                ..LockRetryPolicy::default()
            };
            assert_eq!(policy.scheduled_timeout(0), lock_timeout);
            let last = policy.scheduled_timeout(1);
            assert!(last > lock_timeout && last <= max, "{last:?}");
        }
    }

    fn sample(backend_type: &str) -> LockWaitSample {
        LockWaitSample {
            waiting_for: "AccessExclusiveLock on relation posts".into(),
            blockers: vec![Blocker {
                pid: 42,
                application_name: String::new(),
                backend_type: backend_type.into(),
                state: "active".into(),
                query: "autovacuum: VACUUM public.posts".into(),
                xact_start: None,
                query_start: None,
            }],
        }
    }

    #[test]
    fn default_policy_never_exceeds_the_base_timeout_for_ordinary_blockers() {
        let policy = LockRetryPolicy::default();
        for attempt in 0..policy.attempts() {
            let (t, note) = policy.next_timeout(
                attempt,
                Some(&sample("client backend")),
                Some(Duration::from_secs(1)),
            );
            assert_eq!(t, Duration::from_millis(500));
            assert!(note.is_none());
        }
    }

    #[test]
    fn escalates_linearly_when_a_maximum_is_configured() {
        let policy = LockRetryPolicy {
            lock_timeout: Duration::from_millis(100),
            lock_timeout_max: Duration::from_millis(1100),
            retries: 4,
            ..LockRetryPolicy::default()
        };
        let got: Vec<u128> = (0..5)
            .map(|a| policy.scheduled_timeout(a).as_millis())
            .collect();
        assert_eq!(got, [100, 350, 600, 850, 1100]);
    }

    #[test]
    fn autovacuum_raises_the_timeout_above_deadlock_timeout_and_says_so() {
        let policy = LockRetryPolicy::default();
        let (t, note) = policy.next_timeout(
            1,
            Some(&sample("autovacuum worker")),
            Some(Duration::from_secs(1)),
        );
        assert_eq!(t, Duration::from_millis(1500));
        let note = note.unwrap();
        assert!(note.contains("autovacuum (pid 42"), "{note}");
        assert!(note.contains("deadlock_timeout"), "{note}");
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = LockRetryPolicy::default();
        assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(200));
        assert_eq!(policy.backoff(1, 0.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(3, 1.0), Duration::from_millis(800));
        assert_eq!(policy.backoff(30, 1.0), Duration::from_secs(5));
    }
}
