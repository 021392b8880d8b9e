//! Timestamps as the contract writes them: RFC 3339, UTC, milliseconds, `Z`.

use time::OffsetDateTime;
use time::macros::format_description;

pub fn fmt(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

pub fn fmt_opt(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(fmt)
}

/// Postgres keeps microseconds; the API shows milliseconds. Truncating at creation keeps what
/// is stored and what is shown identical.
pub fn now_ms() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let ms = now.millisecond();
    now.replace_millisecond(ms).unwrap_or(now)
}

/// Unix milliseconds (as agents send them) as a time; `None` out of range.
pub fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// [`from_unix_ms`], or now when out of range.
pub fn from_unix_ms_or_now(ms: i64) -> OffsetDateTime {
    from_unix_ms(ms).unwrap_or_else(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn formats_with_milliseconds_and_z() {
        assert_eq!(
            fmt(datetime!(2026-03-22 08:30:00.123456 +02:00)),
            "2026-03-22T06:30:00.123Z"
        );
        assert_eq!(
            fmt(datetime!(2026-03-22 08:30:00 UTC)),
            "2026-03-22T08:30:00.000Z"
        );
    }

    #[test]
    fn now_has_no_sub_millisecond_part() {
        assert_eq!(now_ms().nanosecond() % 1_000_000, 0);
    }
}
