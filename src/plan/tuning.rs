//! The limits of a backfill's tuning, one rule each, shared by the plan
//! file's validation and the command-line overrides (`--workers`,
//! `--batch-time`, ...), so both refuse the same values with the same words.

use std::time::Duration;

use crate::timefmt::parse_duration_with_unit;

/// The longest pause between batches: longer is a mistake (a backfill that
/// should stop is paused with `orch pause`).
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

pub fn workers(n: u32) -> Result<u32, String> {
    if (1..=64).contains(&n) {
        Ok(n)
    } else {
        Err("workers must be between 1 and 64".to_string())
    }
}

pub fn batch_time(d: Duration) -> Result<Duration, String> {
    if d >= Duration::from_millis(10) && d <= Duration::from_secs(10) {
        Ok(d)
    } else {
        Err("batch_time must be between 10ms and 10s".to_string())
    }
}

pub fn pause(d: Duration) -> Result<Duration, String> {
    if d <= MAX_PAUSE {
        Ok(d)
    } else {
        Err("pause must be at most 1h (to stop a backfill for longer, `orch pause` it)".to_string())
    }
}

pub fn max_rows_per_second(n: u64) -> Result<u64, String> {
    if n >= 1 {
        Ok(n)
    } else {
        Err("max_rows_per_second must be at least 1 (leave it out for no limit)".to_string())
    }
}

pub fn vacuum_every(n: u64) -> Result<u64, String> {
    if n >= 1 {
        Ok(n)
    } else {
        Err("vacuum_every must be at least 1 (leave it out to never vacuum)".to_string())
    }
}

/// A duration of the plan file or a flag: it names its unit (`100` alone
/// is refused: milliseconds or seconds?).
pub fn duration(text: &str) -> Result<Duration, String> {
    parse_duration_with_unit(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert!(workers(0).is_err() && workers(65).is_err() && workers(64).is_ok());
        let ms = Duration::from_millis;
        assert!(batch_time(ms(0)).is_err() && batch_time(ms(9)).is_err());
        assert!(batch_time(ms(10)).is_ok() && batch_time(Duration::from_secs(11)).is_err());
        assert!(pause(Duration::ZERO).is_ok() && pause(MAX_PAUSE + ms(1)).is_err());
        assert!(max_rows_per_second(0).is_err() && max_rows_per_second(1).is_ok());
        assert!(vacuum_every(0).is_err());
        assert!(duration("100").unwrap_err().contains("has no unit"));
        assert_eq!(duration("100ms"), Ok(ms(100)));
    }
}
