//! The health throttle: before each batch a worker looks at the server (its
//! standbys' replay lag, the rate it writes WAL) and waits while either is
//! over the plan's limit (`max_replica_lag`, `max_wal_rate`), saying why;
//! it goes on by itself once both are back under.

use std::time::{Duration, Instant};

use crate::backfill::RunSettings;
use crate::store::health::ServerHealth;

/// The shortest span the WAL rate is measured over.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// How often a waiting worker looks again.
pub const RECHECK: Duration = Duration::from_millis(500);

/// One worker's view of the server's health over its batches.
#[derive(Debug, Clone)]
pub struct HealthGate {
    max_replica_lag: Option<Duration>,
    max_wal_rate: Option<u64>,
    /// The WAL position of the sample the rate is measured from.
    last: Option<(Instant, i64)>,
    /// Bytes of WAL per second over the latest window.
    wal_rate: Option<f64>,
}

impl HealthGate {
    pub fn new(settings: &RunSettings) -> HealthGate {
        HealthGate {
            max_replica_lag: settings.max_replica_lag,
            max_wal_rate: settings.max_wal_rate,
            last: None,
            wal_rate: None,
        }
    }

    /// Is there anything to watch?
    pub fn active(&self) -> bool {
        self.max_replica_lag.is_some() || self.max_wal_rate.is_some()
    }

    /// Why to wait, given a look at the server at `now`; None to go on.
    pub fn verdict(&mut self, health: ServerHealth, now: Instant) -> Option<String> {
        match self.last {
            Some((at, bytes)) if now.duration_since(at) >= RATE_WINDOW => {
                let seconds = now.duration_since(at).as_secs_f64();
                self.wal_rate = Some((health.wal_bytes - bytes).max(0) as f64 / seconds);
                self.last = Some((now, health.wal_bytes));
            }
            Some(_) => {}
            None => self.last = Some((now, health.wal_bytes)),
        }
        if let Some(max) = self.max_replica_lag
            && health.replica_lag > max
        {
            return Some(format!(
                "waiting for replica lag {:.1} s > {}",
                health.replica_lag.as_secs_f64(),
                seconds(max)
            ));
        }
        if let (Some(max), Some(rate)) = (self.max_wal_rate, self.wal_rate)
            && rate > max as f64
        {
            return Some(format!(
                "waiting for the WAL rate {:.1} MB/s > {:.1} MB/s",
                rate / MB,
                max as f64 / MB
            ));
        }
        None
    }
}

const MB: f64 = (1 << 20) as f64;

/// `5 s`, `2.5 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(lag: Option<u64>, wal: Option<u64>) -> HealthGate {
        HealthGate {
            max_replica_lag: lag.map(Duration::from_secs),
            max_wal_rate: wal,
            last: None,
            wal_rate: None,
        }
    }

    fn health(lag_ms: u64, wal_bytes: i64) -> ServerHealth {
        ServerHealth {
            replica_lag: Duration::from_millis(lag_ms),
            standbys: 1,
            wal_bytes,
        }
    }

    #[test]
    fn waits_while_a_standby_is_too_far_behind() {
        let mut g = gate(Some(5), None);
        let now = Instant::now();
        assert_eq!(g.verdict(health(4_900, 0), now), None);
        assert_eq!(
            g.verdict(health(7_240, 0), now).as_deref(),
            Some("waiting for replica lag 7.2 s > 5 s")
        );
        assert_eq!(g.verdict(health(0, 0), now), None);
        assert!(!gate(None, None).active());
    }

    #[test]
    fn waits_while_the_wal_rate_is_over_its_limit() {
        let mut g = gate(None, Some(32 << 20));
        let t0 = Instant::now();
        assert_eq!(g.verdict(health(0, 0), t0), None, "no rate from one sample");
        // 20 MB in 400 ms: too short a window to measure, still no rate.
        assert_eq!(
            g.verdict(health(0, 20 << 20), t0 + Duration::from_millis(400)),
            None
        );
        // 40 MB in 1 s.
        assert_eq!(
            g.verdict(health(0, 40 << 20), t0 + Duration::from_secs(1))
                .as_deref(),
            Some("waiting for the WAL rate 40.0 MB/s > 32.0 MB/s")
        );
        // Nothing written for the next second: under the limit again.
        assert_eq!(
            g.verdict(health(0, 40 << 20), t0 + Duration::from_secs(2)),
            None
        );
    }

    #[test]
    fn replica_lag_is_said_before_the_wal_rate() {
        let mut g = gate(Some(1), Some(1 << 20));
        let t0 = Instant::now();
        g.verdict(health(0, 0), t0);
        let why = g.verdict(health(2_000, 100 << 20), t0 + Duration::from_secs(1));
        assert_eq!(why.as_deref(), Some("waiting for replica lag 2.0 s > 1 s"));
    }
}
