//! AWS's `cron(...)` rotation schedules, in UTC: `cron(<minutes> <hours> <day-of-month>
//! <month> <day-of-week> <year>)` with AWS's (Quartz's) syntax: day-of-week 1–7 for
//! SUN–SAT or their names, `?` in exactly one of the two day fields, `L`, `W` and `#`.
//! The evaluation is croner's; this module checks AWS's rules around it and gives it
//! keyledger's clock.

use std::cmp::Ordering;

use croner::parser::CronParser;
use croner::{CivilDate, CivilDateTime, CivilTime, Cron, CronDateTime, Resolution, Weekday};
use time::OffsetDateTime;

use crate::Rejection;
use crate::timestamp::Timestamp;

/// The shortest time between two rotations AWS allows.
const MIN_GAP_SECS: i64 = 4 * 3600;

/// A refusal of `expression` for `why`, with how AWS writes one.
fn bad(expression: &str, why: &str) -> Rejection {
    Rejection::invalid(format!(
        "ScheduleExpression {expression:?} {why}; write cron(<minutes> <hours> <day-of-month> \
         <month> <day-of-week> <year>) in UTC with ? in one of the day fields, e.g. \
         cron(0 16 1,15 * ? *)"
    ))
}

/// A parsed `cron(...)` schedule.
#[derive(Debug, Clone)]
pub struct CronSchedule(Cron);

impl CronSchedule {
    /// Parses `cron(...)` as a request states it, with what to do when it is not one AWS
    /// accepts: also refused when it rotates more often than every four hours.
    pub fn parse(expression: &str) -> Result<Self, Rejection> {
        Self::parse_with_gap(expression).map(|(schedule, _)| schedule)
    }

    /// [`parse`](Self::parse), with the shortest time between two rotations found, in
    /// seconds.
    pub fn parse_with_gap(expression: &str) -> Result<(Self, i64), Rejection> {
        let schedule = Self::compile(expression)?;
        match schedule.shortest_gap() {
            None if search_from()
                .and_then(|at| schedule.next_after(at))
                .is_some() =>
            {
                Err(bad(
                    expression,
                    "occurs only once, and a rotation schedule must repeat",
                ))
            }
            None => Err(bad(expression, "never occurs")),
            Some(gap) if gap < MIN_GAP_SECS => Err(bad(
                expression,
                "rotates more often than every 4 hours, the shortest interval",
            )),
            Some(gap) => Ok((schedule, gap)),
        }
    }

    /// Reads `cron(...)` without the check of how often it rotates: for a rule already
    /// stored, which keeps rotating as it did when it was accepted, whatever a later
    /// version of that check would say.
    pub fn compile(expression: &str) -> Result<Self, Rejection> {
        let inner = expression
            .strip_prefix("cron(")
            .and_then(|r| r.strip_suffix(')'))
            .ok_or_else(|| bad(expression, "is not a cron expression"))?;
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [_, _, dom, _, dow, _] = fields[..] else {
            return Err(bad(
                expression,
                &format!("has {} fields, not 6", fields.len()),
            ));
        };
        if (dom == "?") == (dow == "?") {
            return Err(bad(
                expression,
                "must have ? in exactly one of day-of-month and day-of-week",
            ));
        }
        let cron = CronParser::builder()
            .alternative_weekdays(true)
            // AWS's (Quartz's) `4/12`: from 4, every 12, as its own docs write hours.
            .sloppy_ranges(true)
            .build()
            .parse(&format!("0 {}", fields.join(" ")))
            .map_err(|e| bad(expression, &format!("does not parse ({e})")))?;
        Ok(Self(cron))
    }

    /// The shortest time, in seconds, between consecutive occurrences from 2027 through
    /// 2028 (AWS rotates at most every four hours), and at least between the first two
    /// wherever they fall; `None` if it does not occur twice. Those two years, one a
    /// leap year, hold every way consecutive occurrences meet across a day, a week, each
    /// month's end (February's of both lengths) and a year's; a pattern tied to the
    /// weekdays of a date (the nth weekday of a month) is checked over them only. The
    /// search stops at the first gap under four hours, so a schedule that is refused
    /// costs a few steps and one that is accepted at most about 4,400 (six a day).
    pub fn shortest_gap(&self) -> Option<i64> {
        let mut at = search_from()?;
        // 2029-01-01T00:00:00Z.
        let end = Timestamp::from_unix_millis(1_861_920_000_000)?.unix_millis();
        let mut previous: Option<Timestamp> = None;
        let mut shortest: Option<i64> = None;
        while let Some(next) = self.next_after(at) {
            if next.unix_millis() >= end && shortest.is_some() {
                break;
            }
            if let Some(p) = previous {
                let gap = (next.unix_millis() - p.unix_millis()) / 1000;
                shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
                if gap < MIN_GAP_SECS {
                    break;
                }
            }
            previous = Some(next);
            at = next;
        }
        shortest
    }

    /// The first occurrence strictly after `from`; `None` when there is none left.
    pub fn next_after(&self, from: Timestamp) -> Option<Timestamp> {
        let start = Utc(from.unix_millis().div_euclid(1000));
        let next = self.0.find_next_occurrence(&start, false).ok()?;
        Timestamp::from_unix_millis(next.0.checked_mul(1000)?)
    }
}

/// Where a schedule's occurrences are searched from: just before
/// 2027-01-01T00:00:00Z, so that an occurrence at that instant counts.
fn search_from() -> Option<Timestamp> {
    Timestamp::from_unix_millis(1_798_761_599_000)
}

/// A UTC instant in whole seconds, as croner searches over it.
#[derive(Debug, Clone, Copy)]
struct Utc(i64);

impl Utc {
    fn datetime(self) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(self.0).ok()
    }
}

impl CronDateTime for Utc {
    fn to_civil(&self) -> CivilDateTime {
        // Out of time's range (years ±9999) a search reads the epoch and finds nothing
        // more: croner stops at its own year limit first.
        let d = self.datetime().unwrap_or(OffsetDateTime::UNIX_EPOCH);
        CivilDateTime::new(
            CivilDate::from_parts_unchecked(
                d.year(),
                u32::from(u8::from(d.month())),
                u32::from(d.day()),
            ),
            CivilTime::from_parts_unchecked(
                u32::from(d.hour()),
                u32::from(d.minute()),
                u32::from(d.second()),
            ),
        )
    }

    fn civil_weekday(&self) -> Weekday {
        let d = self.datetime().unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Weekday::from_days_from_sunday(u32::from(d.weekday().number_days_from_sunday()))
    }

    fn resolve_civil(
        &self,
        civil: CivilDateTime,
    ) -> Result<Resolution<Self>, croner::errors::CronError> {
        let month = u8::try_from(civil.month())
            .ok()
            .and_then(|m| time::Month::try_from(m).ok())
            .ok_or(croner::errors::CronError::InvalidTime)?;
        let small = |v: u32| u8::try_from(v).map_err(|_| croner::errors::CronError::InvalidTime);
        let date = time::Date::from_calendar_date(civil.year(), month, small(civil.day())?)
            .map_err(|_| croner::errors::CronError::InvalidTime)?;
        let t = time::Time::from_hms(
            small(civil.hour())?,
            small(civil.minute())?,
            small(civil.second())?,
        )
        .map_err(|_| croner::errors::CronError::InvalidTime)?;
        Ok(Resolution::Single(Utc(date
            .with_time(t)
            .assume_utc()
            .unix_timestamp())))
    }

    fn checked_add_seconds(&self, seconds: i64) -> Option<Self> {
        self.0.checked_add(seconds).map(Utc)
    }

    fn cmp_instant(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_iso8601("t", s).unwrap()
    }

    #[test]
    fn aws_cron_expressions_give_their_next_rotation_in_utc() {
        let twice_a_month = CronSchedule::parse("cron(0 16 1,15 * ? *)").unwrap();
        assert_eq!(
            twice_a_month.next_after(at("2026-12-03T12:00:00Z")),
            Some(at("2026-12-15T16:00:00Z"))
        );
        // Day-of-week 1-7 is SUN-SAT, as in AWS: 7 is a Saturday; SAT#2 the second one.
        let saturdays = CronSchedule::parse("cron(0 8 ? * 7 *)").unwrap();
        assert_eq!(
            saturdays.next_after(at("2026-12-03T12:00:00Z")),
            Some(at("2026-12-05T08:00:00Z"))
        );
        let second_saturday = CronSchedule::parse("cron(30 2 ? * SAT#2 *)").unwrap();
        assert_eq!(
            second_saturday.next_after(at("2026-12-03T12:00:00Z")),
            Some(at("2026-12-12T02:30:00Z"))
        );
        let last_day = CronSchedule::parse("cron(0 0 L * ? *)").unwrap();
        assert_eq!(
            last_day.next_after(at("2027-02-01T00:00:00Z")),
            Some(at("2027-02-28T00:00:00Z"))
        );
        // AWS's own examples step from a number: from 4 o'clock, every 12 hours.
        let from_four = CronSchedule::parse("cron(0 4/12 * * ? *)").unwrap();
        assert_eq!(
            from_four.next_after(at("2026-12-03T12:00:00Z")),
            Some(at("2026-12-03T16:00:00Z"))
        );
        let weekly_from_first = CronSchedule::parse("cron(0 8 1/7 * ? *)").unwrap();
        assert_eq!(
            weekly_from_first.next_after(at("2026-12-03T12:00:00Z")),
            Some(at("2026-12-08T08:00:00Z"))
        );
        // Strictly after: an occurrence at `from` itself is not the next one.
        assert_eq!(
            twice_a_month.next_after(at("2026-12-15T16:00:00Z")),
            Some(at("2027-01-01T16:00:00Z"))
        );
    }

    #[test]
    fn rare_schedules_are_accepted_and_stored_ones_compile_without_the_gap_check() {
        // Once a year, on the first instant of 2027 too; on leap days only; only from
        // 2030: each occurs twice, however far apart.
        for rare in [
            "cron(0 0 1 1 ? *)",
            "cron(0 0 29 2 ? *)",
            "cron(0 12 * * ? 2030)",
        ] {
            let schedule = CronSchedule::parse(rare);
            assert!(schedule.is_ok(), "{rare}: {:?}", schedule.err());
        }
        // A rule stored before a stricter check still has its next occurrence.
        let stored = CronSchedule::compile("cron(*/5 * * * ? *)").unwrap();
        assert_eq!(
            stored.next_after(at("2026-12-03T12:00:00Z")),
            Some(at("2026-12-03T12:05:00Z"))
        );
    }

    #[test]
    fn aws_rules_are_checked() {
        for (bad, why) in [
            ("cron(0 16 1,15 * * *)", "exactly one"),
            ("cron(0 16 ? * ? *)", "exactly one"),
            ("cron(0 16 1 *)", "fields"),
            ("cron(*/5 * * * ? *)", "4 hours"),
            // An hour apart only where one month meets the next (Jan 31 23:00, Feb 1
            // 00:00), long after the first occurrences.
            (
                "cron(0 0,23 1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31 * ? *)",
                "4 hours",
            ),
            // ... and only in a leap year (2028: Feb 29 23:00, Mar 1 00:00).
            ("cron(0 0,23 1,29 2,3 ? *)", "4 hours"),
            ("cron(0 99 1 * ? *)", "does not parse"),
            ("cron(0 0 1 1 ? 2030)", "occurs only once"),
            ("cron(0 0 1 1 ? 2020)", "never occurs"),
            ("rate(1 day)", "not a cron"),
        ] {
            let message = CronSchedule::parse(bad).unwrap_err().message;
            assert!(message.contains(why), "{bad}: {message}");
        }
    }
}
