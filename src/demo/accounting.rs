//! The per-phase table's figures, from the app's samples. Each operation
//! counts in the stage in which it started; one still running when the
//! next stage began (it spanned a boundary) counts in the stage in which it
//! spent most of its time, and is listed apart as moved. So a write that
//! started a moment before the textbook migration and waited behind it for
//! a second counts in the migration's row, not in the baseline's.

use serde::Serialize;

use super::samples::{Measurements, OpKind, Sample};

/// Write and read figures of one stage (one plan phase).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StageStats {
    pub stage: String,
    pub seconds: f64,
    pub writes_ok: u64,
    pub writes_failed: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    /// Latency percentiles over every write attempt (failed ones included).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_error: Option<String>,
}

/// Operations that started in one stage and count in a later one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moved {
    pub from: String,
    pub to: String,
    pub writes: u64,
    pub writes_failed: u64,
    pub reads: u64,
    pub reads_failed: u64,
    /// The longest of them (writes and reads).
    pub max_ms: f64,
}

/// The table's rows and the operations moved between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Accounts {
    pub stages: Vec<StageStats>,
    pub moved: Vec<Moved>,
}

/// The stage a sample counts in: the one it started in, or, if it ran on
/// into later stages, the one in which it spent most of its time (the
/// earliest of equals).
pub fn home_stage(m: &Measurements, sample: &Sample) -> usize {
    let first = usize::from(sample.stage).min(m.stages.len() - 1);
    let start = u64::from(sample.start_us);
    let end = sample.end_us();
    let mut best = (first, 0u64);
    for index in first..m.stages.len() {
        let stage_start = u64::from(m.stages[index].start_us);
        if index > first && stage_start >= end {
            break;
        }
        let stage_end = if index + 1 == m.stages.len() {
            u64::MAX
        } else {
            u64::from(m.stage_end_us(index))
        };
        let overlap = end.min(stage_end).saturating_sub(start.max(stage_start));
        if overlap > best.1 {
            best = (index, overlap);
        }
    }
    best.0
}

/// The nearest-rank quantile `q` of sorted microseconds, in milliseconds.
pub fn quantile_ms(sorted_micros: &[u32], q: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let index = ((sorted_micros.len() as f64 - 1.0) * q).round() as usize;
    f64::from(sorted_micros[index]) / 1000.0
}

/// The table's figures.
pub fn account(m: &Measurements) -> Accounts {
    let mut stages: Vec<StageStats> = m
        .stages
        .iter()
        .enumerate()
        .map(|(index, mark)| StageStats {
            stage: mark.name.clone(),
            seconds: f64::from(m.stage_end_us(index) - mark.start_us) / 1e6,
            ..StageStats::default()
        })
        .collect();
    let mut micros: Vec<Vec<u32>> = vec![Vec::new(); stages.len()];
    let mut moved: Vec<(usize, usize, Moved)> = Vec::new();
    for sample in &m.samples {
        let home = home_stage(m, sample);
        let stats = &mut stages[home];
        let failed = sample.error.is_some();
        match (sample.kind, failed) {
            (OpKind::Write, false) => stats.writes_ok += 1,
            (OpKind::Write, true) => stats.writes_failed += 1,
            (OpKind::Read, false) => stats.reads_ok += 1,
            (OpKind::Read, true) => stats.reads_failed += 1,
        }
        if sample.kind == OpKind::Write {
            micros[home].push(sample.latency_us);
        }
        if let Some(index) = sample.error {
            stats
                .first_error
                .get_or_insert_with(|| m.error_text(index).to_string());
        }
        let from = usize::from(sample.stage);
        if home != from {
            let position = match moved.iter().position(|(f, t, _)| (*f, *t) == (from, home)) {
                Some(position) => position,
                None => {
                    moved.push((
                        from,
                        home,
                        Moved {
                            from: m.stages[from.min(m.stages.len() - 1)].name.clone(),
                            to: m.stages[home].name.clone(),
                            writes: 0,
                            writes_failed: 0,
                            reads: 0,
                            reads_failed: 0,
                            max_ms: 0.0,
                        },
                    ));
                    moved.len() - 1
                }
            };
            let entry = &mut moved[position].2;
            match sample.kind {
                OpKind::Write => {
                    entry.writes += 1;
                    entry.writes_failed += u64::from(failed);
                }
                OpKind::Read => {
                    entry.reads += 1;
                    entry.reads_failed += u64::from(failed);
                }
            }
            entry.max_ms = entry.max_ms.max(f64::from(sample.latency_us) / 1000.0);
        }
    }
    for (stats, micros) in stages.iter_mut().zip(&mut micros) {
        micros.sort_unstable();
        stats.p50_ms = quantile_ms(micros, 0.5);
        stats.p99_ms = quantile_ms(micros, 0.99);
        stats.max_ms = micros.last().map_or(0.0, |m| f64::from(*m) / 1000.0);
    }
    moved.sort_by_key(|(from, to, _)| (*from, *to));
    Accounts {
        stages,
        moved: moved.into_iter().map(|(_, _, m)| m).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(start_ms: u32, latency_ms: u32, stage: u16, failed: bool) -> Sample {
        Sample {
            start_us: start_ms * 1000,
            latency_us: latency_ms * 1000,
            stage,
            kind: OpKind::Write,
            error: failed.then_some(0),
        }
    }

    /// The textbook migration's stages: baseline 0-1500 ms, migration
    /// 1500-2700 ms, after it 2700-5700 ms.
    fn naive(samples: Vec<Sample>) -> Measurements {
        Measurements::synthetic(
            &[
                ("0 baseline", 0),
                ("1 textbook", 1_500_000),
                ("2 after", 2_700_000),
            ],
            5_700_000,
            samples,
        )
    }

    #[test]
    fn each_operation_counts_where_it_started_or_spent_most_of_its_time() {
        // (start ms, latency ms, stage at start) -> stage it counts in
        let cases = [
            ((100, 5, 0), 0),     // inside the baseline
            ((1499, 1205, 0), 1), // began a moment before the migration, waited behind it
            ((1400, 150, 0), 0),  // ran into the migration for 50 ms of 150
            ((1600, 1100, 1), 1), // waited behind the migration, ended just after it
            ((2600, 300, 1), 2),  // most of it after the migration
            ((1000, 2000, 0), 1), // ran through three stages, longest in the middle
            ((1400, 200, 0), 0),  // 100 ms in each: the earlier
            ((5600, 900, 2), 2),  // ran past the app's stop: the last stage
            ((1500, 0, 1), 1),    // zero-length, at a boundary
        ];
        for ((start, latency, stage), expected) in cases {
            let m = naive(vec![]);
            let sample = write(start, latency, stage, false);
            assert_eq!(
                home_stage(&m, &sample),
                expected,
                "write at {start} ms for {latency} ms"
            );
        }
    }

    #[test]
    fn the_baseline_keeps_no_failure_that_the_migration_caused() {
        let m = naive(vec![
            write(100, 1, 0, false),
            write(200, 3, 0, false),
            write(1499, 1205, 0, true),
            write(1600, 1100, 1, true),
            write(2800, 1, 2, true),
        ]);
        let accounts = account(&m);
        let [baseline, textbook, after] = &accounts.stages[..] else {
            panic!("three stages: {accounts:?}")
        };
        assert_eq!((baseline.writes_ok, baseline.writes_failed), (2, 0));
        assert_eq!(baseline.max_ms, 3.0);
        assert_eq!(baseline.first_error, None);
        assert_eq!((textbook.writes_ok, textbook.writes_failed), (0, 2));
        assert_eq!(textbook.max_ms, 1205.0);
        assert_eq!(textbook.seconds, 1.2);
        assert_eq!(
            textbook.first_error.as_deref(),
            Some("column \"lat\" does not exist")
        );
        assert_eq!(after.writes_failed, 1);
        assert_eq!(
            accounts.moved,
            [Moved {
                from: "0 baseline".to_string(),
                to: "1 textbook".to_string(),
                writes: 1,
                writes_failed: 1,
                reads: 0,
                reads_failed: 0,
                max_ms: 1205.0,
            }]
        );
    }

    #[test]
    fn percentiles_are_over_writes_only_and_include_failures() {
        let mut samples: Vec<Sample> = (1..=100).map(|ms| write(ms, ms, 0, ms == 100)).collect();
        samples.push(Sample {
            kind: OpKind::Read,
            ..write(50, 500, 0, false)
        });
        let accounts = account(&naive(samples));
        let baseline = &accounts.stages[0];
        assert_eq!((baseline.writes_ok, baseline.writes_failed), (99, 1));
        assert_eq!(baseline.reads_ok, 1);
        assert_eq!(baseline.p50_ms, 51.0);
        assert_eq!(baseline.p99_ms, 99.0);
        assert_eq!(baseline.max_ms, 100.0);
    }
}
