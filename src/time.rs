//! Timestamps: stored as Unix microseconds, shown as RFC 3339 in UTC the way Django's
//! `isoformat()` prints them (`2026-01-21T22:30:00.123456+00:00`).

use chrono::{DateTime, SecondsFormat, Utc};

pub fn rfc3339(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// `YYYY-MM-DD` of a timestamp, in UTC.
pub fn day(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// Unix microseconds of the UTC midnight that starts the day of `us`.
pub fn start_of_day(us: i64) -> i64 {
    us.div_euclid(DAY_US) * DAY_US
}

/// How file names carry a UTC time (`20261124T181500Z`): sortable, no separators a shell or
/// a file system would mind.
pub const FILE_STAMP: &str = "%Y%m%dT%H%M%SZ";

/// The current UTC time as a file-name stamp.
pub fn file_stamp_now() -> String {
    chrono::Utc::now().format(FILE_STAMP).to_string()
}

pub const HOUR_US: i64 = 3_600_000_000;
pub const DAY_US: i64 = 86_400_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_django_isoformat() {
        assert_eq!(
            rfc3339(1_768_170_600_123_456),
            "2026-01-11T22:30:00.123456+00:00"
        );
        assert_eq!(day(1_768_170_600_123_456), "2026-01-11");
        assert_eq!(start_of_day(1_768_170_600_123_456), 1_768_089_600_000_000);
    }
}
