//! The application's write latency over time, for `orch demo --plot`: the
//! writes cut into 250 ms buckets by the time they started, p50/p99/max of
//! each, the failed writes, and the stages on the same time axis. Computed
//! from the same samples as the per-phase table.

use std::time::Duration;

use super::accounting::quantile_ms;
use super::samples::{Measurements, OpKind};

/// The width of one bucket.
pub const BUCKET: Duration = Duration::from_millis(250);

/// The writes that started within one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Where the bucket starts, in seconds since the app started.
    pub start_s: f64,
    pub writes: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// One stage on the time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpan {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// A failed write: when it started and how long it took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailedWrite {
    pub start_s: f64,
    pub latency_ms: f64,
}

/// What the plot draws.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub bucket_seconds: f64,
    /// Only buckets in which some write started, in time order.
    pub buckets: Vec<Bucket>,
    pub stages: Vec<StageSpan>,
    pub failed_writes: Vec<FailedWrite>,
    /// When the app stopped, in seconds since it started.
    pub end_s: f64,
}

/// Cut the writes into buckets of `width` by start time.
pub fn timeline(m: &Measurements, width: Duration) -> Timeline {
    let width_us = width.as_micros().max(1) as u64;
    let mut by_bucket: std::collections::BTreeMap<u64, (Vec<u32>, u64)> = Default::default();
    let mut failed_writes = Vec::new();
    for sample in m.samples.iter().filter(|s| s.kind == OpKind::Write) {
        let entry = by_bucket
            .entry(u64::from(sample.start_us) / width_us)
            .or_default();
        entry.0.push(sample.latency_us);
        if sample.error.is_some() {
            entry.1 += 1;
            failed_writes.push(FailedWrite {
                start_s: f64::from(sample.start_us) / 1e6,
                latency_ms: f64::from(sample.latency_us) / 1000.0,
            });
        }
    }
    failed_writes.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    let buckets = by_bucket
        .into_iter()
        .map(|(index, (mut micros, failed))| {
            micros.sort_unstable();
            Bucket {
                start_s: (index * width_us) as f64 / 1e6,
                writes: micros.len() as u64,
                failed,
                p50_ms: quantile_ms(&micros, 0.5),
                p99_ms: quantile_ms(&micros, 0.99),
                max_ms: micros.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
            }
        })
        .collect();
    let stages = m
        .stages
        .iter()
        .enumerate()
        .map(|(index, mark)| StageSpan {
            name: mark.name.clone(),
            start_s: f64::from(mark.start_us) / 1e6,
            end_s: f64::from(m.stage_end_us(index)) / 1e6,
        })
        .collect();
    Timeline {
        bucket_seconds: width.as_secs_f64(),
        buckets,
        stages,
        failed_writes,
        end_s: f64::from(m.ended_us) / 1e6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::samples::Sample;

    fn op(kind: OpKind, start_us: u32, latency_us: u32, failed: bool) -> Sample {
        Sample {
            start_us,
            latency_us,
            stage: 0,
            kind,
            error: failed.then_some(0),
        }
    }

    #[test]
    fn buckets_writes_by_start_time_with_percentiles() {
        let mut samples = Vec::new();
        // Bucket 0 (0-250 ms): 100 writes of 1..=100 ms, the slowest failed.
        for ms in 1..=100u32 {
            samples.push(op(OpKind::Write, ms * 2000, ms * 1000, ms == 100));
        }
        // Nothing starts in 250-500 ms; bucket 2 has one slow write that
        // started at 600 ms and one read (not plotted).
        samples.push(op(OpKind::Write, 600_000, 1_200_000, true));
        samples.push(op(OpKind::Read, 510_000, 9_000_000, false));
        // A write on a bucket's first microsecond belongs to it.
        samples.push(op(OpKind::Write, 750_000, 2_000, false));
        let m = Measurements::synthetic(
            &[("0 baseline", 0), ("1 work", 500_000)],
            1_000_000,
            samples,
        );
        let t = timeline(&m, BUCKET);
        assert_eq!(
            t.buckets,
            [
                Bucket {
                    start_s: 0.0,
                    writes: 100,
                    failed: 1,
                    p50_ms: 51.0,
                    p99_ms: 99.0,
                    max_ms: 100.0,
                },
                Bucket {
                    start_s: 0.5,
                    writes: 1,
                    failed: 1,
                    p50_ms: 1200.0,
                    p99_ms: 1200.0,
                    max_ms: 1200.0,
                },
                Bucket {
                    start_s: 0.75,
                    writes: 1,
                    failed: 0,
                    p50_ms: 2.0,
                    p99_ms: 2.0,
                    max_ms: 2.0,
                },
            ]
        );
        assert_eq!(
            t.failed_writes,
            [
                FailedWrite {
                    start_s: 0.2,
                    latency_ms: 100.0
                },
                FailedWrite {
                    start_s: 0.6,
                    latency_ms: 1200.0
                },
            ]
        );
        assert_eq!(
            t.stages,
            [
                StageSpan {
                    name: "0 baseline".to_string(),
                    start_s: 0.0,
                    end_s: 0.5
                },
                StageSpan {
                    name: "1 work".to_string(),
                    start_s: 0.5,
                    end_s: 1.0
                },
            ]
        );
        assert_eq!(t.end_s, 1.0);
    }
}
