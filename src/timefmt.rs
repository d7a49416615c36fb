//! RFC 3339 UTC timestamps from nanoseconds since the epoch, for any i64 (files can carry
//! mtimes before 1970 or far in the future; formatting must never panic).

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, now (negative if the clock is before 1970).
pub fn now_ns() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// A duration for people: `0.04 s`, `1.14 s`, `12.3 s`, `754 s`.
pub fn human_secs(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 100.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.0} s")
    }
}

/// A size for people: `512 B`, `1.7 MiB`, `609 MiB`, `2.3 GiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// `1 change`, `3 changes`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `2026-11-30T08:00:00.123456789Z`.
pub fn rfc3339_ns(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Parse an RFC 3339 time (`2026-11-30T08:00:00Z`, fractional seconds and offsets allowed) or a
/// duration meaning "that long ago" (`1h`, `2days`). Returns nanoseconds since the epoch.
pub fn parse_since(text: &str) -> Option<i64> {
    if let Ok(d) = humantime::parse_duration(text) {
        let ago = i64::try_from(d.as_nanos()).ok()?;
        return Some(now_ns().saturating_sub(ago));
    }
    let (utc, offset_s) = split_offset(text)?;
    let t = humantime::parse_rfc3339_weak(&utc).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos())
        .ok()?
        .checked_sub(offset_s.checked_mul(1_000_000_000)?)
}

/// `2026-11-30T09:00:00+01:00` -> (`2026-11-30T09:00:00Z`, 3600): humantime reads only UTC.
/// Text without a numeric offset is returned as it is, with 0.
fn split_offset(text: &str) -> Option<(String, i64)> {
    let b = text.as_bytes();
    let n = b.len();
    if n <= 6 || !matches!(b[n - 6], b'+' | b'-') || b[n - 3] != b':' || !text.contains('T') {
        return Some((text.to_string(), 0));
    }
    let hours: i64 = text[n - 5..n - 3].parse().ok()?;
    let minutes: i64 = text[n - 2..].parse().ok()?;
    let sign = if b[n - 6] == b'-' { -1 } else { 1 };
    Some((
        format!("{}Z", &text[..n - 6]),
        sign * (hours * 3600 + minutes * 60),
    ))
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ns(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_ns(1_764_489_600_000_000_001),
            "2025-11-30T08:00:00.000000001Z"
        );
        assert_eq!(rfc3339_ns(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339_ns(951_782_400 * 1_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        // Extremes must not panic.
        let _ = rfc3339_ns(i64::MIN);
        let _ = rfc3339_ns(i64::MAX);
    }

    #[test]
    fn parses_since() {
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(
            parse_since("1970-01-01T01:00:01+01:00"),
            Some(1_000_000_000)
        );
        assert_eq!(
            parse_since("1970-01-01T00:30:01-00:30"),
            Some(3_601_000_000_000)
        );
        assert_eq!(parse_since("1970-01-01T00:00:01+0é:00"), None);
        let ago = parse_since("1h").unwrap_or(0);
        assert!((now_ns() - ago - 3_600_000_000_000).abs() < 5_000_000_000);
        assert_eq!(parse_since("yesterday-ish"), None);
    }

    #[test]
    fn durations_sizes_and_counts_read_as_people_write_them() {
        use std::time::Duration;
        assert_eq!(human_secs(Duration::from_nanos(1_136_949_914)), "1.14 s");
        assert_eq!(human_secs(Duration::from_millis(1_648)), "1.65 s");
        assert_eq!(human_secs(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(human_secs(Duration::from_secs(754)), "754 s");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1_769_472), "1.7 MiB");
        assert_eq!(human_bytes(638_976_000), "609 MiB");
        assert_eq!(plural(1, "change", "changes"), "1 change");
        assert_eq!(plural(0, "change", "changes"), "0 changes");
    }
}
