//! How many keys the next batch takes: aim each batch at a target duration,
//! from the measured speed of recent batches, within bounds, never changing
//! too fast in one step. Pure, so it is unit-tested.

use std::time::Duration;

/// The adaptive batch size of one worker.
#[derive(Debug, Clone)]
pub struct BatchSizer {
    target: Duration,
    min: i64,
    max: i64,
    size: i64,
    /// Smoothed rows per second over recent batches.
    rate: Option<f64>,
}

/// Smoothing of the measured rate: the newest batch weighs this much.
const WEIGHT: f64 = 0.5;
/// At most this factor of growth per batch.
const MAX_GROWTH: f64 = 2.0;

impl BatchSizer {
    /// Start small (1000 keys, within bounds) and learn.
    pub fn new(target: Duration, min: i64, max: i64) -> BatchSizer {
        let min = min.max(1);
        let max = max.max(min);
        BatchSizer {
            target,
            min,
            max,
            size: 1000.clamp(min, max),
            rate: None,
        }
    }

    /// Keys the next batch should take.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// Learn from a committed batch of `rows` keys that took `took`.
    pub fn observe(&mut self, rows: i64, took: Duration) {
        if rows <= 0 {
            return;
        }
        let seconds = took.as_secs_f64().max(0.000_5);
        let measured = rows as f64 / seconds;
        let rate = match self.rate {
            Some(previous) => WEIGHT * measured + (1.0 - WEIGHT) * previous,
            None => measured,
        };
        self.rate = Some(rate);
        let ideal = rate * self.target.as_secs_f64();
        // A batch well over target shrinks at once; growth is gradual.
        let next = if took > self.target * 2 {
            (self.size as f64 * self.target.as_secs_f64() / seconds).min(ideal)
        } else {
            ideal.min(self.size as f64 * MAX_GROWTH)
        };
        self.size = (next.round() as i64).clamp(self.min, self.max);
    }

    /// A batch timed out: retry with a quarter of the keys.
    pub fn split(&mut self) {
        self.size = (self.size / 4).clamp(self.min, self.max);
        self.rate = self.rate.map(|r| r / 4.0);
    }

    /// Lock contention: halve, to touch fewer rows others may hold.
    pub fn halve(&mut self) {
        self.size = (self.size / 2).clamp(self.min, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grows_gradually_towards_the_target() {
        let mut s = BatchSizer::new(ms(150), 100, 1_000_000);
        assert_eq!(s.size(), 1000);
        // 100k rows/s: the ideal batch is 15k rows, reached by doubling.
        let mut sizes = Vec::new();
        for _ in 0..6 {
            let rows = s.size();
            s.observe(rows, Duration::from_secs_f64(rows as f64 / 100_000.0));
            sizes.push(s.size());
        }
        assert_eq!(sizes, [2000, 4000, 8000, 15000, 15000, 15000]);
    }

    #[test]
    fn shrinks_at_once_when_a_batch_is_far_over_target() {
        let mut s = BatchSizer::new(ms(100), 10, 1_000_000);
        for _ in 0..10 {
            let rows = s.size();
            s.observe(rows, Duration::from_secs_f64(rows as f64 / 50_000.0));
        }
        assert_eq!(s.size(), 5000);
        // The table got slow (say, a cold cache): 1 s for 5000 rows.
        s.observe(5000, ms(1000));
        assert!(s.size() <= 500, "{}", s.size());
    }

    #[test]
    fn stays_within_bounds() {
        let mut s = BatchSizer::new(ms(150), 100, 3000);
        for _ in 0..10 {
            let rows = s.size();
            s.observe(rows, ms(1));
        }
        assert_eq!(s.size(), 3000);
        for _ in 0..10 {
            s.observe(100, ms(5000));
        }
        assert_eq!(s.size(), 100);
        assert_eq!(s.size(), s.min);
        let tiny = BatchSizer::new(ms(150), 0, 0);
        assert_eq!(tiny.size(), 1);
    }

    #[test]
    fn split_and_halve() {
        let mut s = BatchSizer::new(ms(150), 10, 100_000);
        s.split();
        assert_eq!(s.size(), 250);
        s.halve();
        assert_eq!(s.size(), 125);
    }

    #[test]
    fn empty_batches_teach_nothing() {
        let mut s = BatchSizer::new(ms(150), 10, 100_000);
        s.observe(0, ms(1));
        assert_eq!(s.size(), 1000);
    }
}
