//! A secret's access-control list, with Barbican's semantics for the `read` operation
//! and optional AWS-style conditions.
//!
//! - `project_access` (default `true`): members of the secret's project may read it
//!   as their roles allow. `false` makes the secret private. Then only its creator,
//!   the project's admins and the listed users may read it.
//! - `users`: users who may read the secret and decrypt its payload, from any project.
//! - `conditions`: limits on the grants this ACL makes (listed users and project
//!   access). They restrict neither the creator nor project admins: those are the
//!   secret's owners, and they must always be able to repair its ACL.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Rejection;
use crate::ids::UserId;
use crate::timestamp::Timestamp;

/// Most users one ACL may list.
pub const MAX_ACL_USERS: usize = 256;
/// Most source networks one ACL may list.
pub const MAX_SOURCE_CIDRS: usize = 32;

/// The read ACL of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    /// Whether the project's members may read the secret as their roles allow.
    pub project_access: bool,
    /// Users granted read and decrypt, from any project.
    pub users: BTreeSet<UserId>,
    /// Limits on the grants above.
    #[serde(default, skip_serializing_if = "Conditions::is_empty")]
    pub conditions: Conditions,
}

impl Default for Acl {
    fn default() -> Self {
        Self {
            project_access: true,
            users: BTreeSet::new(),
            conditions: Conditions::default(),
        }
    }
}

impl Acl {
    /// Whether `user` is listed.
    pub fn lists(&self, user: &UserId) -> bool {
        self.users.contains(user)
    }
}

/// An ACL change as a request states it: absent fields keep their value under
/// [`AclChange::Merge`] and take the default under [`AclChange::Replace`], except
/// `conditions`, which an absent field keeps under both (see [`AclChange::apply`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclPatch {
    /// New `project_access`.
    pub project_access: Option<bool>,
    /// New user list.
    pub users: Option<BTreeSet<UserId>>,
    /// New conditions.
    pub conditions: Option<Conditions>,
}

/// How an ACL changes (Barbican's `PUT`, `PATCH` and `DELETE` on `/acl`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclChange {
    /// Replace the whole ACL.
    Replace(AclPatch),
    /// Change only the fields given.
    Merge(AclPatch),
    /// Back to the default: project access, nobody listed, no conditions.
    Reset,
}

impl AclChange {
    /// The ACL after this change to `current`.
    ///
    /// Conditions are keyledger's own: Barbican's clients neither show nor send them,
    /// and change an ACL by reading its users and project access and putting them
    /// back (`openstack acl user add`, `ACL.submit()`). So a replacement that does not
    /// state conditions keeps the current ones: otherwise such a client would lift a
    /// secret's network or time limits without its user knowing. `"conditions": {}`
    /// lifts them, and so does a reset.
    pub fn apply(&self, current: &Acl) -> Acl {
        let (base, patch) = match self {
            Self::Replace(p) => (Acl::default(), p),
            Self::Merge(p) => (current.clone(), p),
            Self::Reset => return Acl::default(),
        };
        Acl {
            project_access: patch.project_access.unwrap_or(base.project_access),
            users: patch.users.clone().unwrap_or(base.users),
            conditions: patch
                .conditions
                .clone()
                .unwrap_or_else(|| current.conditions.clone()),
        }
    }
}

/// A day of the week, written `mon` … `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    const ALL: [Self; 7] = [
        Self::Mon,
        Self::Tue,
        Self::Wed,
        Self::Thu,
        Self::Fri,
        Self::Sat,
        Self::Sun,
    ];

    /// Parses `mon` … `sun` (any case).
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Rejection::invalid(format!(
                    "weekday {s:?} is not valid: use mon, tue, wed, thu, fri, sat or sun"
                ))
            })
    }

    /// The three-letter name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mon => "mon",
            Self::Tue => "tue",
            Self::Wed => "wed",
            Self::Thu => "thu",
            Self::Fri => "fri",
            Self::Sat => "sat",
            Self::Sun => "sun",
        }
    }

    /// The UTC day of `at`.
    pub fn of(at: Timestamp) -> Self {
        match at.weekday() {
            time::Weekday::Monday => Self::Mon,
            time::Weekday::Tuesday => Self::Tue,
            time::Weekday::Wednesday => Self::Wed,
            time::Weekday::Thursday => Self::Thu,
            time::Weekday::Friday => Self::Fri,
            time::Weekday::Saturday => Self::Sat,
            time::Weekday::Sunday => Self::Sun,
        }
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// UTC hours during which a grant holds: from `from`:00 up to (not including)
/// `to`:00. A window whose `from` is after its `to` spans midnight (22 to 6). Written
/// `[from, to]`, as requests state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "[u8; 2]", try_from = "[u8; 2]")]
pub struct HourWindow {
    /// First hour, 0 to 23.
    pub from: u8,
    /// End hour, 0 to 24, not included.
    pub to: u8,
}

impl From<HourWindow> for [u8; 2] {
    fn from(w: HourWindow) -> Self {
        [w.from, w.to]
    }
}

impl TryFrom<[u8; 2]> for HourWindow {
    type Error = Rejection;

    fn try_from([from, to]: [u8; 2]) -> Result<Self, Rejection> {
        Self::parse(from.into(), to.into())
    }
}

impl HourWindow {
    /// Parses `[from, to]`.
    pub fn parse(from: i64, to: i64) -> Result<Self, Rejection> {
        let hour = |name: &str, v: i64, max: i64| {
            u8::try_from(v)
                .ok()
                .filter(|h| i64::from(*h) <= max)
                .ok_or_else(|| {
                    Rejection::invalid(format!(
                        "utc_hours {name} {v} is not an hour: use 0 to {max}"
                    ))
                })
        };
        let (from, to) = (hour("start", from, 23)?, hour("end", to, 24)?);
        if from == to || (from == 0 && to == 24) {
            return Err(Rejection::invalid(format!(
                "utc_hours [{from}, {to}] does not limit anything; leave utc_hours out to \
                 allow every hour"
            )));
        }
        Ok(Self { from, to })
    }

    fn contains(self, hour: u8) -> bool {
        if self.from < self.to {
            (self.from..self.to).contains(&hour)
        } else {
            hour >= self.from || hour < self.to
        }
    }
}

impl fmt::Display for HourWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:00-{:02}:00 UTC", self.from, self.to)
    }
}

/// Where and when the grants of an ACL hold. Every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// The request must come from one of these networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_cidrs: Vec<IpNet>,
    /// The request must come within these UTC hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_hours: Option<HourWindow>,
    /// The request must come on one of these UTC days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekdays: Option<BTreeSet<Weekday>>,
}

impl Conditions {
    /// True when nothing is limited.
    pub fn is_empty(&self) -> bool {
        self.source_cidrs.is_empty() && self.utc_hours.is_none() && self.weekdays.is_none()
    }

    /// Parses source networks (`192.168.0.0/16`, `2001:db8::/32`, or a single address).
    pub fn parse_cidrs<'a>(
        cidrs: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<IpNet>, Rejection> {
        let mut out = Vec::new();
        for s in cidrs {
            let net = s
                .parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    Rejection::invalid(format!(
                        "source_cidrs entry {s:?} is not a network: use e.g. 192.168.0.0/16 \
                         or 2001:db8::/32"
                    ))
                })?;
            out.push(canonical(net).trunc());
        }
        if out.len() > MAX_SOURCE_CIDRS {
            return Err(Rejection::invalid(format!(
                "source_cidrs lists {} networks; at most {MAX_SOURCE_CIDRS} are allowed",
                out.len()
            )));
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Checks a request from `source` at `now`; the error says which condition failed.
    pub fn check(&self, source: Option<IpAddr>, now: Timestamp) -> Result<(), ConditionFailure> {
        if !self.source_cidrs.is_empty() {
            let allowed = self.source_cidrs.clone();
            let Some(source) = source.map(|s| s.to_canonical()) else {
                return Err(ConditionFailure::UnknownSource { allowed });
            };
            // Canonical here too: a network stored before parsing made it so. (An IPv6
            // network such as `::/0` holds IPv6 sources only, as it always did.)
            if !self
                .source_cidrs
                .iter()
                .any(|net| canonical(*net).contains(&source))
            {
                return Err(ConditionFailure::SourceOutside { source, allowed });
            }
        }
        if let Some(days) = &self.weekdays {
            let today = Weekday::of(now);
            if !days.contains(&today) {
                return Err(ConditionFailure::Weekday {
                    today,
                    allowed: days.clone(),
                });
            }
        }
        if let Some(window) = self.utc_hours
            && !window.contains(now.hour())
        {
            return Err(ConditionFailure::Hours {
                hour: now.hour(),
                minute: now.minute(),
                window,
            });
        }
        Ok(())
    }
}

/// `net` with an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) as the IPv4 network
/// it maps (`10.0.0.0/8`): a request's source is compared in its canonical form, an
/// IPv4 address, which the mapped form would never contain.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// Which of an ACL's conditions a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionFailure {
    /// Source networks are required and the transport does not know the source (NATS).
    UnknownSource {
        /// The allowed networks.
        allowed: Vec<IpNet>,
    },
    /// The source is outside every allowed network.
    SourceOutside {
        /// The request's source.
        source: IpAddr,
        /// The allowed networks.
        allowed: Vec<IpNet>,
    },
    /// Today (UTC) is not an allowed day.
    Weekday {
        /// Today.
        today: Weekday,
        /// The allowed days.
        allowed: BTreeSet<Weekday>,
    },
    /// The time is outside the allowed UTC hours.
    Hours {
        /// The hour now.
        hour: u8,
        /// The minute now.
        minute: u8,
        /// The allowed hours.
        window: HourWindow,
    },
}

impl fmt::Display for ConditionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: Vec<String>| items.join(", ");
        match self {
            Self::UnknownSource { allowed } => write!(
                f,
                "the request's source address is unknown, and only {} is allowed",
                list(allowed.iter().map(ToString::to_string).collect())
            ),
            Self::SourceOutside { source, allowed } => write!(
                f,
                "source {source} is outside the allowed {}",
                list(allowed.iter().map(ToString::to_string).collect())
            ),
            Self::Weekday { today, allowed } => write!(
                f,
                "{today} (UTC) is not an allowed day; allowed: {}",
                list(allowed.iter().map(ToString::to_string).collect())
            ),
            Self::Hours {
                hour,
                minute,
                window,
            } => write!(
                f,
                "the time {hour:02}:{minute:02} UTC is outside the allowed hours {window}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_iso8601("t", s).unwrap()
    }

    fn office() -> Conditions {
        Conditions {
            source_cidrs: Conditions::parse_cidrs(["192.168.0.0/16"]).unwrap(),
            utc_hours: Some(HourWindow::parse(8, 18).unwrap()),
            weekdays: Some(
                ["mon", "tue", "wed", "thu", "fri"]
                    .map(|d| Weekday::parse(d).unwrap())
                    .into(),
            ),
        }
    }

    // 2026-11-23 is a Monday.
    const MONDAY_NOON: &str = "2026-11-23T12:00:00Z";

    /// The failure of a check that must fail, in words, as a denial shows it.
    fn denial(c: &Conditions, source: Option<IpAddr>, now: Timestamp) -> String {
        c.check(source, now).unwrap_err().to_string()
    }

    #[test]
    fn each_failed_condition_is_named() {
        let c = office();
        let inside: IpAddr = "192.168.4.5".parse().unwrap();
        assert_eq!(c.check(Some(inside), at(MONDAY_NOON)), Ok(()));
        assert_eq!(
            denial(&c, Some("10.1.2.3".parse().unwrap()), at(MONDAY_NOON)),
            "source 10.1.2.3 is outside the allowed 192.168.0.0/16"
        );
        assert_eq!(
            denial(&c, Some(inside), at("2026-11-23T20:14:00Z")),
            "the time 20:14 UTC is outside the allowed hours 08:00-18:00 UTC"
        );
        assert_eq!(
            denial(&c, Some(inside), at("2026-11-22T12:00:00Z")),
            "sun (UTC) is not an allowed day; allowed: mon, tue, wed, thu, fri"
        );
        assert!(denial(&c, None, at(MONDAY_NOON)).contains("unknown"));
    }

    #[test]
    fn ipv4_mapped_sources_match_ipv4_networks() {
        let c = office();
        let mapped: IpAddr = "::ffff:192.168.1.1".parse().unwrap();
        assert_eq!(c.check(Some(mapped), at(MONDAY_NOON)), Ok(()));
    }

    #[test]
    fn ipv4_mapped_networks_are_the_ipv4_networks_they_map() {
        assert_eq!(
            Conditions::parse_cidrs(["::ffff:127.0.0.1/128", "::ffff:10.9.0.0/104"]).unwrap(),
            Conditions::parse_cidrs(["127.0.0.1/32", "10.0.0.0/8"]).unwrap()
        );
        // As stored before parsing mapped them: matched all the same.
        let stored = Conditions {
            source_cidrs: vec!["::ffff:127.0.0.1/128".parse().unwrap()],
            ..Default::default()
        };
        for source in ["127.0.0.1", "::ffff:127.0.0.1"] {
            assert_eq!(
                stored.check(Some(source.parse().unwrap()), at(MONDAY_NOON)),
                Ok(())
            );
        }
        // A network wider than the mapped range stays IPv6, and holds no IPv4 source:
        // `::/0` means every IPv6 client, as it did before.
        assert_eq!(
            Conditions::parse_cidrs(["::/64"]).unwrap(),
            vec!["::/64".parse::<IpNet>().unwrap()]
        );
        for (net, source, holds) in [
            ("::/0", "127.0.0.1", false),
            ("::/0", "2001:db8::1", true),
            ("::ffff:0:0/95", "10.1.2.3", false),
            ("2001:db8::/32", "127.0.0.1", false),
        ] {
            let c = Conditions {
                source_cidrs: Conditions::parse_cidrs([net]).unwrap(),
                ..Default::default()
            };
            assert_eq!(
                c.check(Some(source.parse().unwrap()), at(MONDAY_NOON))
                    .is_ok(),
                holds,
                "{net} {source}"
            );
        }
    }

    #[test]
    fn windows_may_span_midnight() {
        let night = HourWindow::parse(22, 6).unwrap();
        assert!(night.contains(23) && night.contains(0) && night.contains(5));
        assert!(!night.contains(6) && !night.contains(12));
        assert!(HourWindow::parse(8, 8).is_err());
        assert!(HourWindow::parse(0, 24).is_err());
        assert!(HourWindow::parse(24, 3).is_err());
    }

    #[test]
    fn bad_networks_are_named() {
        let err = Conditions::parse_cidrs(["10.0.0.0/33"]).unwrap_err();
        assert!(err.message.contains("\"10.0.0.0/33\""), "{}", err.message);
        assert_eq!(
            Conditions::parse_cidrs(["10.1.2.3/8", "10.0.0.0/8"]).unwrap(),
            Conditions::parse_cidrs(["10.0.0.0/8"]).unwrap()
        );
    }

    #[test]
    fn replace_resets_what_merge_keeps_but_the_conditions_it_does_not_state() {
        let current = Acl {
            project_access: false,
            users: [UserId::parse("bob").unwrap()].into(),
            conditions: office(),
        };
        let patch = AclPatch {
            users: Some([UserId::parse("carol").unwrap()].into()),
            ..Default::default()
        };
        let merged = AclChange::Merge(patch.clone()).apply(&current);
        assert!(!merged.project_access);
        assert_eq!(merged.conditions, office());
        assert!(merged.lists(&UserId::parse("carol").unwrap()));
        let replaced = AclChange::Replace(patch.clone()).apply(&current);
        assert!(replaced.project_access);
        assert_eq!(replaced.users, [UserId::parse("carol").unwrap()].into());
        // Conditions, which Barbican's clients never send, stay unless stated.
        assert_eq!(replaced.conditions, office());
        let lifted = AclChange::Replace(AclPatch {
            conditions: Some(Conditions::default()),
            ..patch
        })
        .apply(&current);
        assert!(lifted.conditions.is_empty());
        assert_eq!(AclChange::Reset.apply(&current), Acl::default());
    }
}
