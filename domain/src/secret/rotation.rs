//! Rotation, as AWS Secrets Manager runs it, with a NATS service where AWS calls a
//! Lambda function: a handler named by the secret is asked for four steps in order
//! (`createSecret`, `setSecret`, `testSecret`, `finishSecret`) against a new version
//! that carries AWSPENDING until the handler's `finishSecret` makes it AWSCURRENT.
//!
//! The configuration, every run, every step's outcome and every cancellation are events
//! of the secret, so history and audit show them. The timing of retries and leases
//! comes from keyledger's rotation runner in its commands; the rules here only check
//! that each outcome follows the run it belongs to.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Rejection;
use crate::ids::{SecretId, VersionId};
use crate::secret::schedule::CronSchedule;
use crate::timestamp::Timestamp;

/// The name of a rotation handler: the NATS service on `keyledger.rotate.<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HandlerName(String);

impl HandlerName {
    /// The longest name (AWS's limit on a Lambda function name).
    pub const MAX_LEN: usize = 64;

    /// Parses a bare name, or the name inside a Lambda function ARN
    /// (`arn:aws:lambda:<region>:<account>:function:<name>`), so configurations written
    /// for AWS keep working. A name is 1 to 64 letters, digits, `-` and `_`: one NATS
    /// subject token.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        let name = match s.strip_prefix("arn:") {
            Some(rest) => {
                let parts: Vec<&str> = rest.split(':').collect();
                match parts.as_slice() {
                    [_, "lambda", _, _, "function", name] => *name,
                    _ => {
                        return Err(Rejection::invalid(format!(
                            "RotationLambdaARN {s:?} is not a Lambda function ARN; give the \
                             rotation handler's name (the NATS service on \
                             keyledger.rotate.<name>), or \
                             arn:aws:lambda:<region>:<account>:function:<name>"
                        )));
                    }
                }
            }
            None => s,
        };
        let ok = !name.is_empty()
            && name.len() <= Self::MAX_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(Rejection::invalid(format!(
                "rotation handler {name:?} is not a valid name: use 1 to {} letters, digits, \
                 '-' or '_' (it names the NATS subject keyledger.rotate.<name>)",
                Self::MAX_LEN
            )));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HandlerName {
    type Error = Rejection;

    fn try_from(s: String) -> Result<Self, Rejection> {
        Self::parse(&s)
    }
}

impl From<HandlerName> for String {
    fn from(h: HandlerName) -> Self {
        h.0
    }
}

impl std::fmt::Display for HandlerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How often a secret rotates: AWS's `RotationRules`, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationRules {
    /// `AutomaticallyAfterDays`: 1 to 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatically_after_days: Option<u16>,
    /// `ScheduleExpression`: `rate(<n> hours|days)` or `cron(...)` (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_expression: Option<String>,
    /// `Duration`: the rotation window, `<n>h` with n from 1 to 24.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

impl RotationRules {
    /// Checks AWS's rules; `None` members stay unset.
    pub fn parse(
        after_days: Option<i64>,
        expression: Option<&str>,
        duration: Option<&str>,
    ) -> Result<Self, Rejection> {
        let rules = Self {
            automatically_after_days: after_days
                .map(|d| {
                    u16::try_from(d)
                        .ok()
                        .filter(|d| (1..=1000).contains(d))
                        .ok_or_else(|| {
                            Rejection::invalid(format!(
                                "AutomaticallyAfterDays is {d}; rotate every 1 to 1000 days"
                            ))
                        })
                })
                .transpose()?,
            schedule_expression: expression.map(str::to_owned),
            duration: duration.map(str::to_owned),
        };
        if rules.automatically_after_days.is_some() && rules.schedule_expression.is_some() {
            return Err(Rejection::invalid(
                "give AutomaticallyAfterDays or ScheduleExpression, not both",
            ));
        }
        if rules.automatically_after_days.is_none() && rules.schedule_expression.is_none() {
            return Err(Rejection::invalid(
                "RotationRules needs AutomaticallyAfterDays (1 to 1000) or a ScheduleExpression \
                 such as rate(30 days)",
            ));
        }
        let shortest = match &rules.schedule_expression {
            Some(e) if e.starts_with("cron(") => {
                let (_, gap) = CronSchedule::parse_with_gap(e)?;
                Duration::from_secs(u64::try_from(gap).unwrap_or(u64::MAX))
            }
            Some(e) => rate(e)?,
            None => rules.interval(),
        };
        if let Some(d) = &rules.duration
            && window(d)? > shortest
        {
            return Err(Rejection::invalid(format!(
                "Duration {d} is longer than the time between rotations; the rotation window \
                 must end before the next one opens"
            )));
        }
        Ok(rules)
    }

    /// The time between two rotations.
    pub fn interval(&self) -> Duration {
        let day = Duration::from_secs(86_400);
        match (self.automatically_after_days, &self.schedule_expression) {
            (Some(days), _) => day * u32::from(days),
            // Checked when parsed; a rule read back from an older log that no longer
            // parses rotates daily rather than never.
            (None, Some(e)) => rate(e).unwrap_or(day),
            (None, None) => day,
        }
    }

    /// The rotation window (`Duration`), when one is set.
    pub fn window(&self) -> Option<Duration> {
        self.duration.as_deref().and_then(|d| window(d).ok())
    }

    /// When the scheduled rotation of `secret` whose window opens at `open` starts.
    /// AWS starts a rotation at some point in its window; keyledger picks a point in
    /// the window's first half (so the four steps have the rest to finish), spread by
    /// the secret's id so that secrets on one schedule do not all rotate at once, and
    /// the same for every runner, so that the start stays one. With no window it is
    /// the opening.
    pub fn start_in_window(&self, open: Timestamp, secret: SecretId) -> Timestamp {
        let Some(half) = self.window().map(|w| w.as_millis() / 2).filter(|h| *h > 0) else {
            return open;
        };
        // FNV-1a over the id and the opening: stable across builds and platforms.
        let seed = secret
            .as_uuid()
            .as_bytes()
            .iter()
            .chain(open.unix_millis().to_le_bytes().iter())
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        let offset = u128::from(seed) % half;
        open.plus(Duration::from_millis(u64::try_from(offset).unwrap_or(0)))
            .unwrap_or(open)
    }

    /// When the rotation window after one at `from` opens: a cron schedule's next
    /// occurrence, or `from` plus the interval.
    pub fn next_after(&self, from: Timestamp) -> Option<Timestamp> {
        match &self.schedule_expression {
            // Compiled without the intake's checks: a rule accepted once keeps rotating.
            Some(e) if e.starts_with("cron(") => CronSchedule::compile(e).ok()?.next_after(from),
            _ => from.plus(self.interval()),
        }
    }
}

/// Parses `rate(<n> hours)` (4 to 23) or `rate(<n> days)` (1 to 1000), AWS's bounds.
/// (A `cron(...)` expression is [`CronSchedule`]'s.)
fn rate(expression: &str) -> Result<Duration, Rejection> {
    let bad = |why: &str| {
        Rejection::invalid(format!(
            "ScheduleExpression {expression:?} {why}; use rate(<n> hours) with n from 4 to 23, \
             rate(<n> days) with n from 1 to 1000, cron(...), or AutomaticallyAfterDays"
        ))
    };
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad("is not a rate expression"))?;
    let (n, unit) = inner
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("has no unit"))?;
    let n: u64 = n
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| n.parse().ok())
        .flatten()
        .ok_or_else(|| bad("does not start with a number"))?;
    match unit.trim() {
        "hour" | "hours" if (4..=23).contains(&n) => Ok(Duration::from_secs(n * 3600)),
        "day" | "days" if (1..=1000).contains(&n) => Ok(Duration::from_secs(n * 86_400)),
        "hour" | "hours" | "day" | "days" => Err(bad("is out of range")),
        _ => Err(bad("has an unknown unit")),
    }
}

/// Parses a rotation window, `<n>h` with n from 1 to 24.
fn window(duration: &str) -> Result<Duration, Rejection> {
    duration
        .strip_suffix('h')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| (1..=24).contains(n))
        .map(|n| Duration::from_secs(n * 3600))
        .ok_or_else(|| {
            Rejection::invalid(format!(
                "Duration {duration:?} is not a rotation window; give hours from 1h to 24h"
            ))
        })
}

/// The steps of a rotation, in order, as AWS's rotation functions name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Step {
    /// Create the new value and store it as the AWSPENDING version.
    #[serde(rename = "createSecret")]
    Create,
    /// Set the new value in the service the secret is for.
    #[serde(rename = "setSecret")]
    Set,
    /// Check that the new value works.
    #[serde(rename = "testSecret")]
    Test,
    /// Move AWSCURRENT to the new version.
    #[serde(rename = "finishSecret")]
    Finish,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 4] = [Self::Create, Self::Set, Self::Test, Self::Finish];

    /// The name handlers receive in `Step`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "createSecret",
            Self::Set => "setSecret",
            Self::Test => "testSecret",
            Self::Finish => "finishSecret",
        }
    }

    /// The step after this one; `None` after `finishSecret`.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::Create => Some(Self::Set),
            Self::Set => Some(Self::Test),
            Self::Test => Some(Self::Finish),
            Self::Finish => None,
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rotation under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// The version being made (the ClientRequestToken handlers receive).
    pub version: VersionId,
    /// When it started.
    pub started: Timestamp,
    /// The step to ask for next.
    pub step: Step,
    /// Which attempt of that step comes next (from 1).
    pub attempt: u32,
    /// When the runner should act on it: at once after a start, after a retry delay
    /// after a failure, or when a runner's lease lapses.
    pub due: Timestamp,
    /// Why the last attempt failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A secret's rotation: its handler, its schedule and the run under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// The handler.
    pub handler: HandlerName,
    /// The schedule; `None` rotates only when asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<RotationRules>,
    /// Whether rotation is on (CancelRotateSecret turns it off).
    pub enabled: bool,
    /// When a rotation last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotated: Option<Timestamp>,
    /// When the next scheduled rotation starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Timestamp>,
    /// The rotation under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
    /// Why the last run failed for good, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

impl Rotation {
    /// When keyledger's runner must act next on `secret`: the run's due time, or the
    /// scheduled start in the rotation window that opens at `next`.
    pub fn due(&self, secret: SecretId) -> Option<Timestamp> {
        match &self.run {
            Some(run) => Some(run.due),
            None if self.enabled => {
                let open = self.next?;
                Some(
                    self.rules
                        .as_ref()
                        .map_or(open, |r| r.start_in_window(open, secret)),
                )
            }
            None => None,
        }
    }
}

/// The most characters of a failure's reason the log keeps.
pub const MAX_REASON_CHARS: usize = 1000;

/// A failure's reason as the log keeps it: control, formatting and line-breaking
/// characters (which could forge log lines or reorder text) replaced by U+FFFD, and
/// at most [`MAX_REASON_CHARS`] characters. A handler's words are untrusted.
pub fn clean_reason(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if crate::secret::fields::refused(c, true) {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .take(MAX_REASON_CHARS + 1)
        .collect();
    if out.chars().count() > MAX_REASON_CHARS {
        out = out.chars().take(MAX_REASON_CHARS - 1).collect();
        out.push('…');
    }
    out
}

/// A secret whose rotation needs keyledger's runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRotation {
    /// The project owning the secret.
    pub project: crate::ids::ProjectId,
    /// The secret.
    pub secret: crate::ids::SecretId,
    /// Its rotation as the read model last saw it.
    pub rotation: Rotation,
}

/// What a step's attempt came to, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// The handler answered without an error. The runner holds the run until `lease`.
    Done {
        /// Until when other runners leave the run to this one.
        lease: Timestamp,
    },
    /// The handler failed, timed out or was not reachable.
    Failed {
        /// Why, in words an operator can act on.
        reason: String,
        /// When to try the step again; `None` ends the run as failed.
        retry_at: Option<Timestamp>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_are_names_or_lambda_arns() {
        assert_eq!(
            HandlerName::parse("pg-rotator").unwrap().as_str(),
            "pg-rotator"
        );
        assert_eq!(
            HandlerName::parse("arn:aws:lambda:us-east-1:123456789012:function:pg_rot")
                .unwrap()
                .as_str(),
            "pg_rot"
        );
        for bad in ["", "a.b", "a b", "arn:aws:s3:::bucket", &"x".repeat(65)] {
            assert!(HandlerName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_scheduled_start_falls_in_the_first_half_of_its_window_and_is_the_same_for_everyone() {
        let open = Timestamp::parse_iso8601("t", "2026-12-03T00:00:00Z").unwrap();
        let windowed = RotationRules::parse(Some(1), None, Some("4h")).unwrap();
        let starts: Vec<Timestamp> = (0..64u128)
            .map(|n| windowed.start_in_window(open, SecretId::from_uuid(uuid::Uuid::from_u128(n))))
            .collect();
        let half = open.plus(Duration::from_secs(2 * 3600)).unwrap();
        assert!(starts.iter().all(|s| *s >= open && *s < half), "{starts:?}");
        let distinct: std::collections::BTreeSet<_> = starts.iter().collect();
        assert!(distinct.len() > 32, "spread: {}", distinct.len());
        let one = SecretId::from_uuid(uuid::Uuid::from_u128(7));
        assert_eq!(
            windowed.start_in_window(open, one),
            windowed.start_in_window(open, one)
        );
        let no_window = RotationRules::parse(Some(1), None, None).unwrap();
        assert_eq!(no_window.start_in_window(open, one), open);
    }

    #[test]
    fn rules_follow_aws_bounds() {
        let days = |d| RotationRules::parse(Some(d), None, None);
        assert_eq!(
            days(30).unwrap().interval(),
            Duration::from_secs(30 * 86_400)
        );
        assert!(days(0).is_err() && days(1001).is_err());
        let rate = |e| RotationRules::parse(None, Some(e), Some("2h"));
        assert_eq!(
            rate("rate(4 hours)").unwrap().interval(),
            Duration::from_secs(4 * 3600)
        );
        assert_eq!(
            rate("rate(10 days)").unwrap().interval(),
            Duration::from_secs(10 * 86_400)
        );
        for bad in [
            "rate(3 hours)",
            "rate(1001 days)",
            "rate(x days)",
            "every day",
            "rate(+4 hours)",
        ] {
            assert!(rate(bad).is_err(), "{bad}");
        }
        let cron = rate("cron(0 16 1,15 * ? *)").unwrap();
        let from = Timestamp::parse_iso8601("t", "2026-12-03T12:00:00Z").unwrap();
        assert_eq!(
            cron.next_after(from),
            Timestamp::parse_iso8601("t", "2026-12-15T16:00:00Z").ok()
        );
        assert!(rate("cron(0 16 1,15 * * *)").is_err());
        // Every 4 hours with a 5-hour window: the window would overlap the next.
        assert!(RotationRules::parse(None, Some("cron(0 */4 * * ? *)"), Some("5h")).is_err());
        assert!(RotationRules::parse(Some(1), Some("rate(1 days)"), None).is_err());
        assert!(RotationRules::parse(None, None, None).is_err());
        assert!(RotationRules::parse(Some(1), None, Some("25h")).is_err());
        assert!(RotationRules::parse(None, Some("rate(4 hours)"), Some("5h")).is_err());
        assert!(RotationRules::parse(Some(1), None, Some("+3h")).is_err());
    }

    #[test]
    fn reasons_are_cleaned_and_bounded() {
        assert_eq!(
            clean_reason("a\nb\u{202E}c\u{1b}[31m"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}[31m"
        );
        let long = clean_reason(&"x".repeat(5000));
        assert_eq!(long.chars().count(), MAX_REASON_CHARS);
        assert!(long.ends_with('…'));
        assert_eq!(clean_reason("fine"), "fine");
    }

    #[test]
    fn steps_go_in_aws_order() {
        let order: Vec<_> = std::iter::successors(Some(Step::Create), |s| s.next()).collect();
        assert_eq!(order, Step::ALL);
        assert_eq!(
            serde_json::to_string(&Step::Finish).unwrap(),
            "\"finishSecret\""
        );
    }
}
