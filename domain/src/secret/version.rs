//! Versions of a secret's value, as AWS Secrets Manager has them: every stored payload
//! is an immutable version; staging labels (`current`, `previous`, `pending`) point at
//! versions; a version without a label is deprecated and destroyed once retention
//! allows.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Rejection;
use crate::ids::{CommandId, KeyId, ProjectId, SecretId, VersionId};
use crate::secret::SecretCommand;
use crate::secret::payload::ContentType;
use crate::timestamp::Timestamp;

/// A staging label: one of AWS's three built-in labels, or a custom one.
///
/// Built-ins are written as `current`, `previous` and `pending` and parse from those
/// or from AWS's names (`AWSCURRENT`, …) in any case; anything else is a custom label,
/// case-sensitive, as AWS keeps it. So a custom label never spells a built-in, and the
/// log's JSON stays unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Stage {
    /// The version reads get by default (AWSCURRENT).
    Current,
    /// The version that was current before (AWSPREVIOUS); follows `current` as it moves.
    Previous,
    /// A version being prepared, e.g. during rotation (AWSPENDING).
    Pending,
    /// A label of the user's.
    Custom(StageLabel),
}

/// A custom staging label: 1 to 256 visible characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageLabel(String);

impl StageLabel {
    /// The longest label (AWS's).
    pub const MAX_LEN: usize = 256;

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The most labels one version carries (AWS's quota).
pub const MAX_LABELS_PER_VERSION: usize = 20;

impl Stage {
    /// The built-in stages.
    pub const ALL: [Stage; 3] = [Self::Current, Self::Previous, Self::Pending];

    /// The native name (a custom label as it is).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Custom(l) => l.as_str(),
            builtin => builtin.builtin_name().unwrap_or_default(),
        }
    }

    /// The native name of a built-in stage; `None` for a custom label.
    pub fn builtin_name(&self) -> Option<&'static str> {
        match self {
            Self::Current => Some("current"),
            Self::Previous => Some("previous"),
            Self::Pending => Some("pending"),
            Self::Custom(_) => None,
        }
    }

    /// The name AWS Secrets Manager uses (a custom label as it is).
    pub fn aws_name(&self) -> &str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Previous => "AWSPREVIOUS",
            Self::Pending => "AWSPENDING",
            Self::Custom(l) => l.as_str(),
        }
    }

    /// Parses a native or an AWS name of a built-in stage, in any case; any other
    /// text of 1 to 256 visible characters is a custom label.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if let Some(builtin) = Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s) || st.aws_name().eq_ignore_ascii_case(s))
        {
            return Ok(builtin);
        }
        crate::secret::fields::visible_text("staging label", s, StageLabel::MAX_LEN)
            .map(|l| Self::Custom(StageLabel(l)))
    }
}

impl TryFrom<String> for Stage {
    type Error = Rejection;

    fn try_from(s: String) -> Result<Self, Rejection> {
        Self::parse(&s)
    }
}

impl From<Stage> for String {
    fn from(s: Stage) -> Self {
        match s {
            Stage::Custom(l) => l.0,
            builtin => builtin.as_str().to_owned(),
        }
    }
}

/// A client request token: makes a write of a new version safe to retry. The same
/// token with the same payload returns the version already stored; with another
/// payload it is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientToken(String);

impl ClientToken {
    /// Parses a token: 32 to 64 printable ASCII characters (a UUID fits).
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        let ok = (32..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(Rejection::invalid(format!(
                "client_request_token must be 32 to 64 printable ASCII characters without spaces \
                 (a UUID works); got {} characters",
                s.chars().count()
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id of the version this token creates in `secret`. A token that is a UUID is
    /// the version id itself, as in AWS; any other token names a version id derived
    /// from it, so a retry addresses the same version.
    pub fn version_id(&self, secret: SecretId) -> VersionId {
        if let Ok(id) = Uuid::try_parse(&self.0) {
            return VersionId::from_uuid(id);
        }
        let name = format!("{secret}/{}", self.0);
        VersionId::from_uuid(Uuid::new_v5(&TOKEN_NAMESPACE, name.as_bytes()))
    }
}

impl ClientToken {
    /// The version a payload-storing command creates when the client names no token:
    /// derived from the command id, so a retried command seals under the same version
    /// id and its reply names the version the first attempt stored.
    pub fn version_for_command(secret: SecretId, command: &CommandId) -> VersionId {
        let name = format!("{secret}/command/{command}");
        VersionId::from_uuid(Uuid::new_v5(&TOKEN_NAMESPACE, name.as_bytes()))
    }
}

const TOKEN_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_796c_6564_6765_7200_0000_0000_0002);

/// One stored value of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// Its id; bound into the payload's AAD.
    pub id: VersionId,
    /// The data key that sealed it.
    pub key_id: KeyId,
    /// Its media type.
    pub content_type: ContentType,
    /// When it was stored (unknown for versions written before versions existed).
    pub created: Option<Timestamp>,
}

/// How long deprecated versions (those without a stage) are kept: AWS's rule, more
/// than `keep` versions in all make the oldest deprecated ones go, but never one
/// younger than `min_age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Versions a secret may hold before deprecated ones are destroyed.
    pub keep: usize,
    /// The youngest a deprecated version may be when it is destroyed.
    pub min_age: Duration,
}

impl Retention {
    /// The most versions a secret holds at once: twice `keep`. Beyond it a new value
    /// is refused until retention has destroyed old deprecated versions.
    pub fn ceiling(&self) -> usize {
        self.keep.saturating_mul(2).max(2)
    }
}

impl Default for Retention {
    /// 100 versions, 24 hours.
    fn default() -> Self {
        Self {
            keep: 100,
            min_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// The bounds of a recovery window, and its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryWindow {
    /// The shortest window a deletion may ask for.
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// The window when none is given.
    pub default: Duration,
}

impl Default for RecoveryWindow {
    /// 7 to 30 days, 30 by default (AWS's).
    fn default() -> Self {
        let day = Duration::from_secs(24 * 3600);
        Self {
            min: 7 * day,
            max: 30 * day,
            default: 30 * day,
        }
    }
}

impl RecoveryWindow {
    /// Checks a requested window (the default when `None`).
    pub fn check(&self, asked: Option<Duration>) -> Result<Duration, Rejection> {
        let window = asked.unwrap_or(self.default);
        if window < self.min || window > self.max {
            return Err(Rejection::invalid(format!(
                "a recovery window of {} is out of range; choose between {} and {}, or force \
                 the deletion to skip the window",
                human(window),
                human(self.min),
                human(self.max)
            )));
        }
        Ok(window)
    }
}

/// A duration in days when it is whole days, else in seconds.
pub fn human(d: Duration) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match d.as_secs() {
        s if s % 86_400 == 0 => plural(s / 86_400, "day"),
        s => plural(s, "second"),
    }
}

/// The lifecycle rules a deployment configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifecycle {
    /// Retention of deprecated versions.
    pub retention: Retention,
    /// The recovery window of a deletion.
    pub recovery: RecoveryWindow,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_take_native_and_aws_names_and_anything_else_is_custom() {
        assert_eq!(Stage::parse("AWSCURRENT").unwrap(), Stage::Current);
        assert_eq!(Stage::parse("awsprevious").unwrap(), Stage::Previous);
        assert_eq!(Stage::parse("pending").unwrap(), Stage::Pending);
        let custom = Stage::parse("Blue-Green").unwrap();
        assert_eq!(
            (custom.as_str(), custom.aws_name()),
            ("Blue-Green", "Blue-Green")
        );
        assert_eq!(serde_json::to_string(&custom).unwrap(), "\"Blue-Green\"");
        assert_eq!(
            serde_json::to_string(&Stage::Current).unwrap(),
            "\"current\""
        );
        for bad in ["", "a\u{202E}b", "tab\there"] {
            assert!(Stage::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Stage::parse(&"x".repeat(257)).is_err());
        assert!(Stage::parse(&"x".repeat(256)).is_ok());
    }

    #[test]
    fn tokens_are_32_to_64_characters_and_name_a_stable_version() {
        assert!(ClientToken::parse(&"a".repeat(31)).is_err());
        assert!(ClientToken::parse(&"a".repeat(65)).is_err());
        assert!(ClientToken::parse(&format!("{} ", "a".repeat(40))).is_err());
        let secret = SecretId::from_uuid(Uuid::from_u128(1));
        let t = ClientToken::parse(&"t".repeat(40)).unwrap();
        assert_eq!(t.version_id(secret), t.version_id(secret));
        let uuid = "0f8e2c1a-5b7d-4e3f-9a61-2d4c8b9e7f10";
        assert_eq!(
            ClientToken::parse(uuid)
                .unwrap()
                .version_id(secret)
                .to_string(),
            uuid
        );
    }

    #[test]
    fn recovery_windows_are_bounded() {
        let w = RecoveryWindow::default();
        assert_eq!(w.check(None).unwrap(), Duration::from_secs(30 * 86_400));
        let err = w.check(Some(Duration::from_secs(86_400))).unwrap_err();
        assert_eq!(
            err.message,
            "a recovery window of 1 day is out of range; choose between 7 days and 30 days, \
             or force the deletion to skip the window"
        );
    }
}

/// Lifecycle work keyledger's scheduler does to a secret when it falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DueTask {
    /// Its expiration passed: record it and destroy the keys.
    Expire,
    /// Its recovery window ended: purge it.
    Purge,
    /// Retention lets deprecated versions go.
    Prune,
}

/// A secret found due for a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The project owning the secret.
    pub project: ProjectId,
    /// The secret.
    pub secret: SecretId,
    /// What to do.
    pub task: DueTask,
    /// The secret's aggregate version when it was found due.
    pub version: u64,
}

impl Due {
    /// The command and its id. An expiry happens once per secret; a purge or a prune
    /// once per state of the secret (a restored and re-deleted secret is a new
    /// occasion).
    pub fn command(&self) -> Result<(SecretCommand, CommandId), Rejection> {
        let (command, id) = match self.task {
            DueTask::Expire => (SecretCommand::Expire, format!("expire-{}", self.secret)),
            DueTask::Purge => (
                SecretCommand::Purge,
                format!("purge-{}-v{}", self.secret, self.version),
            ),
            DueTask::Prune => (
                SecretCommand::PruneVersions,
                format!("prune-{}-v{}", self.secret, self.version),
            ),
        };
        Ok((command, CommandId::parse(&id)?))
    }
}
