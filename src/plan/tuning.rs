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

/// When a backfill VACUUMs its table between batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VacuumPace {
    Off,
    /// Every N batches (all workers' batches counted).
    Batches(u64),
    /// Each time the rows visited since the last VACUUM reach `AUTO_SHARE`
    /// of the table's (estimated) rows, on a table of at least
    /// `AUTO_MIN_ROWS` rows.
    Auto,
}

/// `vacuum_every: auto` VACUUMs each time this share of the table was visited.
pub const AUTO_SHARE: f64 = 0.2;
/// Smaller tables are left to autovacuum.
pub const AUTO_MIN_ROWS: u64 = 100_000;

impl VacuumPace {
    /// For messages: `every 20 batches`, `auto (...)`, `off`.
    pub fn describe(self) -> String {
        match self {
            VacuumPace::Off => "off".to_string(),
            VacuumPace::Batches(n) => format!("every {n} batches"),
            VacuumPace::Auto => format!(
                "auto: each time {:.0}% of the table's rows were visited, on tables of {AUTO_MIN_ROWS} rows or more",
                AUTO_SHARE * 100.0
            ),
        }
    }
}

pub fn vacuum_every(n: u64) -> Result<u64, String> {
    if n >= 1 {
        Ok(n)
    } else {
        Err("vacuum_every must be at least 1 (or auto, or off)".to_string())
    }
}

/// `vacuum_every` from the plan.
pub fn vacuum_pace(every: &crate::plan::VacuumEvery) -> Result<VacuumPace, String> {
    match every {
        crate::plan::VacuumEvery::Batches(n) => vacuum_every(*n).map(VacuumPace::Batches),
        crate::plan::VacuumEvery::Word(word) => vacuum_word(word),
        crate::plan::VacuumEvery::Other(_) => {
            Err("vacuum_every is a number of batches (at least 1), auto or off".to_string())
        }
    }
}

/// `--vacuum-every` on the command line: N, auto or off.
pub fn vacuum_arg(text: &str) -> Result<VacuumPace, String> {
    match text.trim().parse::<u64>() {
        Ok(n) => vacuum_every(n).map(VacuumPace::Batches),
        Err(_) => vacuum_word(text.trim()),
    }
}

fn vacuum_word(word: &str) -> Result<VacuumPace, String> {
    match word {
        "auto" => Ok(VacuumPace::Auto),
        "off" => Ok(VacuumPace::Off),
        other => Err(format!(
            "vacuum_every {other:?} is not a number of batches, auto or off"
        )),
    }
}

/// The default `max_replica_lag`: a backfill never lets a standby fall
/// further behind than this.
pub const DEFAULT_MAX_REPLICA_LAG: Duration = Duration::from_secs(10);

/// `max_replica_lag`: a duration of at least 100ms, or `off` (None).
pub fn max_replica_lag(text: &str) -> Result<Option<Duration>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    let lag = duration(text)
        .map_err(|e| format!("max_replica_lag: {e}, or `off` to never wait for standbys"))?;
    if lag < Duration::from_millis(100) {
        return Err(
            "max_replica_lag must be at least 100ms (or `off` to never wait for standbys)"
                .to_string(),
        );
    }
    Ok(Some(lag))
}

/// `max_wal_rate`: bytes per second, written `32MB/s` (kB, MB, GB: powers
/// of 1024, as PostgreSQL's own settings).
pub fn max_wal_rate(text: &str) -> Result<u64, String> {
    let problem = || {
        format!(
            "max_wal_rate {text:?} is not a rate like 32MB/s (kB/s, MB/s or GB/s, at least 1MB/s)"
        )
    };
    let amount = text.trim().strip_suffix("/s").ok_or_else(problem)?;
    let (number, unit) = amount
        .find(|c: char| !c.is_ascii_digit())
        .map(|at| amount.split_at(at))
        .ok_or_else(problem)?;
    let scale: u64 = match unit.trim() {
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return Err(problem()),
    };
    let bytes = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .ok_or_else(problem)?;
    if bytes < 1 << 20 {
        return Err(problem());
    }
    Ok(bytes)
}

/// `synchronous_commit` of each batch: a value PostgreSQL takes.
pub fn synchronous_commit(text: &str) -> Result<&'static str, String> {
    ["off", "local", "remote_write", "on", "remote_apply"]
        .into_iter()
        .find(|v| *v == text.trim())
        .ok_or_else(|| {
            format!("synchronous_commit {text:?} is not one of off, local, remote_write, on, remote_apply")
        })
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
        assert_eq!(vacuum_arg("20"), Ok(VacuumPace::Batches(20)));
        assert_eq!(vacuum_arg("auto"), Ok(VacuumPace::Auto));
        assert_eq!(vacuum_arg("off"), Ok(VacuumPace::Off));
        assert!(vacuum_arg("0").is_err());
        assert!(vacuum_arg("sometimes").is_err());
        assert!(duration("100").unwrap_err().contains("has no unit"));
        assert_eq!(duration("100ms"), Ok(ms(100)));
    }

    #[test]
    fn health_limits() {
        assert_eq!(max_replica_lag("5s"), Ok(Some(Duration::from_secs(5))));
        assert_eq!(max_replica_lag("off"), Ok(None));
        assert!(
            max_replica_lag("50ms")
                .unwrap_err()
                .contains("at least 100ms")
        );
        assert!(max_replica_lag("5").unwrap_err().contains("has no unit"));
        for (text, bytes) in [
            ("32MB/s", 32 << 20),
            ("2GB/s", 2 << 30),
            ("4096kB/s", 4 << 20),
        ] {
            assert_eq!(max_wal_rate(text), Ok(bytes), "{text}");
        }
        for bad in [
            "32MB",
            "32 MB/s/s",
            "MB/s",
            "512kB/s",
            "3TB/s",
            "-1MB/s",
            "",
        ] {
            assert!(max_wal_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(synchronous_commit("on"), Ok("on"));
        assert!(synchronous_commit("yes").is_err());
    }
}
