//! How times and durations are shown to people.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// `2026-11-26 10:49:19 UTC`
pub fn utc(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `0.4 ms`, `850 ms`, `2.4 s`, `3m 05s`, `1h 02m`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 10 {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// `500ms`, `2s`, `1m`, or a bare number of milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 500ms or 2s ({e})"))
}

/// A lock_timeout: a duration, not 0: 0 would remove the bound on how
/// long the application queues behind orch's DDL, which is the point of orch.
pub fn parse_lock_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout.is_zero() {
        return Err("0 would let orch's DDL wait for its lock for ever while every writer queues behind it; give a bound such as 500ms".to_string());
    }
    Ok(timeout)
}

/// `60s`, `2m`, `1m30s`, `0`: a duration that must name its unit (except
/// 0), for flags where a bare number would be misread (`--timeout 60` is
/// not 60 ms).
pub fn parse_duration_with_unit(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Ok(Duration::ZERO),
        Ok(n) => Err(format!(
            "{text:?} has no unit; write {n}s for seconds or {n}ms for milliseconds"
        )),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("{text:?} is not a duration like 60s or 2m ({e})")),
    }
}

/// Milliseconds as a duration string.
pub fn millis(ms: i64) -> String {
    duration(Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert!(
            parse_duration("fast")
                .unwrap_err()
                .contains("is not a duration like 500ms")
        );
    }

    #[test]
    fn durations_with_units() {
        let parse = parse_duration_with_unit;
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(
            parse("60").unwrap_err(),
            "\"60\" has no unit; write 60s for seconds or 60ms for milliseconds"
        );
        assert!(
            parse("soon")
                .unwrap_err()
                .contains("is not a duration like 60s")
        );
        assert!(parse("-1s").is_err());
    }

    #[test]
    fn durations_read_naturally() {
        let cases = [
            (0, "0.0 ms"),
            (7, "7.0 ms"),
            (850, "850 ms"),
            (2_400, "2.4 s"),
            (185_000, "3m 05s"),
            (3_720_000, "1h 02m"),
        ];
        for (ms, text) in cases {
            assert_eq!(duration(Duration::from_millis(ms)), text);
        }
    }
}
