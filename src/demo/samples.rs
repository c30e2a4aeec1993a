//! What the demo's simulated application measured: one small sample per
//! write and read (when it started, how long it took, whether it failed, in
//! which stage it started) and when each stage began. The per-phase table
//! (`accounting`) and the latency plot (`timeline`) are both computed from
//! these, so they always agree.

use std::time::{Duration, Instant};

/// At most this many samples are kept (16 bytes each, so 16 MiB): the demo
/// does a few hundred operations per second for a minute or two, about
/// 1/40 of it. Operations past it are only counted (`Dropped`).
pub const MAX_SAMPLES: usize = 1 << 20;

/// At most this many distinct error texts are kept; a sample whose text
/// did not fit points at `ERROR_NOT_KEPT`.
const MAX_ERROR_TEXTS: usize = 32;

/// A failed sample whose error text was not kept.
pub const ERROR_NOT_KEPT: u8 = u8::MAX;

/// What an operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Write,
    Read,
}

/// One write or read of the simulated application.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it started, in microseconds since the app started.
    pub start_us: u32,
    /// How long it took, failed or not: a write that waited two seconds
    /// and then failed still kept the user waiting.
    pub latency_us: u32,
    /// The stage (index into `Measurements::stages`) current when it started.
    pub stage: u16,
    pub kind: OpKind,
    /// `None` if it succeeded, else its error text's index in
    /// `Measurements::errors` (or `ERROR_NOT_KEPT`).
    pub error: Option<u8>,
}

impl Sample {
    pub fn end_us(&self) -> u64 {
        u64::from(self.start_us) + u64::from(self.latency_us)
    }
}

/// When a stage began, in microseconds since the app started.
#[derive(Debug, Clone, PartialEq)]
pub struct StageMark {
    pub name: String,
    pub start_us: u32,
}

/// Operations done after `MAX_SAMPLES` was reached: counted, not sampled.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Dropped {
    pub writes: u64,
    pub writes_failed: u64,
    pub reads: u64,
    pub reads_failed: u64,
}

/// Everything the app measured.
#[derive(Debug, Clone)]
pub struct Measurements {
    origin: Instant,
    /// In the order they began; the first began when the app started.
    pub stages: Vec<StageMark>,
    /// When the app stopped (the last stage's end), since it started.
    pub ended_us: u32,
    /// In the order the operations ended.
    pub samples: Vec<Sample>,
    /// Distinct error texts, as PostgreSQL (or the pool) gave them.
    pub errors: Vec<String>,
    pub dropped: Dropped,
}

impl Measurements {
    /// Start measuring now, in stage `first_stage`.
    pub fn start(first_stage: &str) -> Measurements {
        Measurements {
            origin: Instant::now(),
            stages: vec![StageMark {
                name: first_stage.to_string(),
                start_us: 0,
            }],
            ended_us: 0,
            samples: Vec::with_capacity(4096),
            errors: Vec::new(),
            dropped: Dropped::default(),
        }
    }

    fn micros(&self, at: Instant) -> u32 {
        at.saturating_duration_since(self.origin)
            .as_micros()
            .min(u128::from(u32::MAX)) as u32
    }

    /// A new stage begins now; returns its index.
    pub fn begin_stage(&mut self, name: &str) -> u16 {
        let start_us = self.micros(Instant::now());
        self.stages.push(StageMark {
            name: name.to_string(),
            start_us,
        });
        (self.stages.len() - 1) as u16
    }

    /// Record one operation that started at `started` in `stage`.
    pub fn record(
        &mut self,
        kind: OpKind,
        stage: u16,
        started: Instant,
        latency: Duration,
        error: Option<&str>,
    ) {
        if self.samples.len() >= MAX_SAMPLES {
            let failed = u64::from(error.is_some());
            match kind {
                OpKind::Write => {
                    self.dropped.writes += 1;
                    self.dropped.writes_failed += failed;
                }
                OpKind::Read => {
                    self.dropped.reads += 1;
                    self.dropped.reads_failed += failed;
                }
            }
            return;
        }
        let error = error.map(|text| self.error_index(text));
        self.samples.push(Sample {
            start_us: self.micros(started),
            latency_us: latency.as_micros().min(u128::from(u32::MAX)) as u32,
            stage,
            kind,
            error,
        });
    }

    fn error_index(&mut self, text: &str) -> u8 {
        if let Some(index) = self.errors.iter().position(|e| e == text) {
            return index as u8;
        }
        if self.errors.len() >= MAX_ERROR_TEXTS {
            return ERROR_NOT_KEPT;
        }
        self.errors.push(text.to_string());
        (self.errors.len() - 1) as u8
    }

    /// The text of an error index.
    pub fn error_text(&self, index: u8) -> &str {
        self.errors.get(usize::from(index)).map_or(
            "(one of many distinct errors; its text was not kept)",
            |e| e.as_str(),
        )
    }

    /// The app stops now.
    pub fn finish(&mut self) {
        self.ended_us = self.micros(Instant::now());
    }

    /// Where stage `index` ends: where the next begins, or where the app stopped.
    pub fn stage_end_us(&self, index: usize) -> u32 {
        self.stages
            .get(index + 1)
            .map_or(self.ended_us, |next| next.start_us)
            .max(self.stages[index].start_us)
    }

    /// Measurements made of given parts, for tests.
    #[cfg(test)]
    pub fn synthetic(stages: &[(&str, u32)], ended_us: u32, samples: Vec<Sample>) -> Measurements {
        Measurements {
            origin: Instant::now(),
            stages: stages
                .iter()
                .map(|(name, start_us)| StageMark {
                    name: name.to_string(),
                    start_us: *start_us,
                })
                .collect(),
            ended_us,
            samples,
            errors: vec!["column \"lat\" does not exist".to_string()],
            dropped: Dropped::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_small() {
        assert!(std::mem::size_of::<Sample>() <= 16);
    }

    #[test]
    fn keeps_distinct_error_texts_once() {
        let mut m = Measurements::start("0 baseline");
        let now = Instant::now();
        let stage = m.begin_stage("1 work");
        m.record(
            OpKind::Write,
            stage,
            now,
            Duration::from_millis(3),
            Some("a"),
        );
        m.record(
            OpKind::Read,
            stage,
            now,
            Duration::from_millis(1),
            Some("a"),
        );
        m.record(OpKind::Write, stage, now, Duration::from_millis(2), None);
        m.record(
            OpKind::Write,
            stage,
            now,
            Duration::from_millis(2),
            Some("b"),
        );
        m.finish();
        assert_eq!(m.errors, ["a", "b"]);
        let errors: Vec<_> = m.samples.iter().map(|s| s.error).collect();
        assert_eq!(errors, [Some(0), Some(0), None, Some(1)]);
        assert_eq!(m.samples[0].latency_us, 3000);
        assert_eq!(m.stages.len(), 2);
        assert!(m.stage_end_us(0) <= m.stage_end_us(1));
    }
}
