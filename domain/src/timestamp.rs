//! Points in time, always UTC, with microsecond precision (what SQL stores and what
//! Barbican reports), from year 0 to year 9999 (what RFC 3339 can write). Every way in
//! is checked: a time outside that range is refused, never a panic.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::Rejection;

/// A UTC instant. The domain never reads the clock: the caller passes `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The earliest instant: 0000-01-01T00:00:00Z.
    pub const MIN: Self = Self(time::macros::datetime!(0000-01-01 00:00:00 UTC));
    /// The latest instant: 9999-12-31T23:59:59.999999Z.
    pub const MAX: Self = Self(time::macros::datetime!(9999-12-31 23:59:59.999_999 UTC));

    /// The instant, converted to UTC and truncated to microseconds; `None` outside
    /// years 0 to 9999 in UTC (`9999-12-31T23:59:59-01:00` is year 10000 in UTC).
    pub fn new(at: OffsetDateTime) -> Option<Self> {
        let at = at.checked_to_offset(UtcOffset::UTC)?;
        if !(0..=9999).contains(&at.year()) {
            return None;
        }
        let micros = at.microsecond();
        // Truncation to whole microseconds always yields a valid nanosecond value.
        Some(Self(at.replace_nanosecond(micros * 1_000).unwrap_or(at)))
    }

    /// The instant, clamped into the range: for clocks and certificates, whose times
    /// are always in it but must not be able to crash anything if one is not.
    pub fn saturating(at: OffsetDateTime) -> Self {
        Self::new(at).unwrap_or(if at < Self::MIN.0 {
            Self::MIN
        } else {
            Self::MAX
        })
    }

    /// The instant from milliseconds since the Unix epoch; `None` if out of range.
    pub fn from_unix_millis(ms: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(Self::new)
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(&self) -> i64 {
        // An OffsetDateTime spans years -9999..=9999, whose milliseconds fit in i64.
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// This instant plus `d`; `None` past the representable range (year 9999).
    pub fn plus(&self, d: std::time::Duration) -> Option<Self> {
        let d = time::Duration::try_from(d).ok()?;
        self.0.checked_add(d).and_then(Self::new)
    }

    /// How long after `earlier` this instant is; zero if it is not after it.
    pub fn since(&self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::try_from(self.0 - earlier.0).unwrap_or_default()
    }

    /// The instant as a `time` value (for libraries that take one).
    pub fn as_offset(&self) -> OffsetDateTime {
        self.0
    }

    /// The UTC day of the week.
    pub fn weekday(&self) -> time::Weekday {
        self.0.weekday()
    }

    /// The UTC hour of the day, 0 to 23.
    pub fn hour(&self) -> u8 {
        self.0.hour()
    }

    /// The UTC minute of the hour.
    pub fn minute(&self) -> u8 {
        self.0.minute()
    }

    /// RFC 3339 text, e.g. `2026-11-22T10:00:00.123456Z`.
    pub fn to_rfc3339(&self) -> String {
        // Formatting a UTC OffsetDateTime as RFC 3339 only fails for years outside
        // 0..=9999, which no Timestamp holds.
        self.0
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.0.to_string())
    }

    /// Barbican's form: UTC without an offset, with microseconds when there are any
    /// (Python's `isoformat()`), e.g. `2026-11-22T10:00:00.123456`. Clients such as
    /// gophercloud parse only this.
    pub fn to_naive_utc(&self) -> String {
        let t = self.0;
        let base = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        match t.microsecond() {
            0 => base,
            us => format!("{base}.{us:06}"),
        }
    }

    /// Parses an ISO-8601 date-time. A value without an offset is taken as UTC, as
    /// Barbican does (`2027-01-01T00:00:00`); `Z` and `±hh:mm` offsets are honoured.
    pub fn parse_iso8601(field: &str, s: &str) -> Result<Self, Rejection> {
        let given = s;
        let s = &python_form(s);
        let parsed = OffsetDateTime::parse(s, &Rfc3339)
            .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
            .or_else(|_| PrimitiveDateTime::parse(s, &Iso8601::DEFAULT).map(|t| t.assume_utc()));
        let Ok(at) = parsed else {
            return Err(Rejection::invalid(format!(
                "{field} {given:?} is not an ISO-8601 date-time; use e.g. 2027-01-31T23:59:59Z"
            )));
        };
        Self::new(at).ok_or_else(|| {
            Rejection::invalid(format!(
                "{field} {given:?} is outside the times keyledger keeps: years 0000 to 9999, in \
                 UTC"
            ))
        })
    }
}

/// The ISO-8601 form of what Python's `str(datetime)` prints, which Barbican's
/// clients send and Barbican accepts: a space between date and time, and an offset of
/// hours only (`-01`) or without a colon (`+0530`). Anything else is left as given.
fn python_form(s: &str) -> std::borrow::Cow<'_, str> {
    let b = s.as_bytes();
    let dated = b.len() > 10
        && b[..10].iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    // Byte 10 must be the separator, ASCII, so that slicing after it is safe.
    if !dated || !matches!(b[10], b' ' | b'T') {
        return s.into();
    }
    let mut out = s.to_owned();
    if b[10] == b' ' {
        out.replace_range(10..11, "T");
    }
    // The offset: a sign after the time, followed by digits only.
    if let Some(sign) = out[11..].rfind(['+', '-']).map(|i| i + 11) {
        let digits = &out[sign + 1..];
        if digits.bytes().all(|c| c.is_ascii_digit()) {
            match digits.len() {
                2 => out.push_str(":00"),
                4 => out.insert(sign + 3, ':'),
                _ => {}
            }
        }
    }
    out.into()
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let at = OffsetDateTime::parse(&s, &Rfc3339)
            .map_err(|e| serde::de::Error::custom(format!("timestamp {s:?}: {e}")))?;
        Self::new(at).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "timestamp {s:?} is outside years 0000 to 9999 in UTC"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_times_are_utc_and_offsets_are_honoured() {
        let naive = Timestamp::parse_iso8601("expiration", "2027-01-01T00:00:00").unwrap();
        let zulu = Timestamp::parse_iso8601("expiration", "2027-01-01T00:00:00Z").unwrap();
        let plus = Timestamp::parse_iso8601("expiration", "2027-01-01T02:00:00+02:00").unwrap();
        assert_eq!(naive, zulu);
        assert_eq!(zulu, plus);
        assert_eq!(zulu.to_rfc3339(), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn what_python_prints_is_read_as_barbican_reads_it() {
        let at = |s| {
            Timestamp::parse_iso8601("expiration", s)
                .unwrap()
                .to_rfc3339()
        };
        assert_eq!(
            at("2026-12-02 18:34:28.475561-01"),
            "2026-12-02T19:34:28.475561Z"
        );
        assert_eq!(at("2026-12-02 18:34:28+05:30"), "2026-12-02T13:04:28Z");
        assert_eq!(at("2026-12-02T18:34:28+0530"), "2026-12-02T13:04:28Z");
        assert_eq!(at("2026-12-02 18:34:28"), "2026-12-02T18:34:28Z");
        for bad in [
            "2026-12-02 18:34:28-1",
            "2026-12-02  18:34:28",
            "2026-12-02 ",
            "12-02 18:00",
            "2026-12-02é18:00:00",
        ] {
            assert!(
                Timestamp::parse_iso8601("expiration", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn garbage_names_the_field_and_an_example() {
        let err = Timestamp::parse_iso8601("expiration", "tomorrow").unwrap_err();
        assert_eq!(
            err.message,
            "expiration \"tomorrow\" is not an ISO-8601 date-time; use e.g. 2027-01-31T23:59:59Z"
        );
    }

    #[test]
    fn the_edges_of_the_range_parse_and_beyond_them_is_refused() {
        let last = Timestamp::parse_iso8601("t", "9999-12-31T23:59:59.999999Z").unwrap();
        assert_eq!(last, Timestamp::MAX);
        assert_eq!(last.plus(std::time::Duration::from_micros(1)), None);
        let first = Timestamp::parse_iso8601("t", "0000-01-01T00:00:00Z").unwrap();
        assert_eq!(first, Timestamp::MIN);
        for past_the_end in [
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:00:00-23:59",
            "0000-01-01T00:00:00+00:01",
        ] {
            let err = Timestamp::parse_iso8601("expiration", past_the_end).unwrap_err();
            assert!(
                err.message.contains("years 0000 to 9999"),
                "{}",
                err.message
            );
        }
        assert_eq!(Timestamp::from_unix_millis(i64::MAX), None);
        assert_eq!(Timestamp::from_unix_millis(i64::MIN), None);
    }

    #[test]
    fn barbicans_form_is_naive_utc_with_microseconds_when_there_are_any() {
        let whole = Timestamp::parse_iso8601("t", "2027-01-01T02:00:00+02:00").unwrap();
        assert_eq!(whole.to_naive_utc(), "2027-01-01T00:00:00");
        let fraction = Timestamp::parse_iso8601("t", "2026-11-22T10:00:00.1234567Z").unwrap();
        assert_eq!(fraction.to_naive_utc(), "2026-11-22T10:00:00.123456");
        assert_eq!(Timestamp::MIN.to_naive_utc(), "0000-01-01T00:00:00");
        assert_eq!(Timestamp::MAX.to_naive_utc(), "9999-12-31T23:59:59.999999");
        let back = Timestamp::parse_iso8601("t", &fraction.to_naive_utc()).unwrap();
        assert_eq!(back.to_naive_utc(), fraction.to_naive_utc());
    }

    #[test]
    fn millis_round_trip() {
        let t = Timestamp::parse_iso8601("t", "2026-11-22T10:00:00.123Z").unwrap();
        assert_eq!(Timestamp::from_unix_millis(t.unix_millis()), Some(t));
    }
}
