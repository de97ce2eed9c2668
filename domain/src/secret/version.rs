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

/// A staging label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The version reads get by default (AWSCURRENT).
    Current,
    /// The version that was current before (AWSPREVIOUS); follows `current` as it moves.
    Previous,
    /// A version being prepared, e.g. during rotation (AWSPENDING).
    Pending,
}

impl Stage {
    /// Every stage.
    pub const ALL: [Stage; 3] = [Self::Current, Self::Previous, Self::Pending];

    /// The native name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Previous => "previous",
            Self::Pending => "pending",
        }
    }

    /// The name AWS Secrets Manager uses.
    pub fn aws_name(self) -> &'static str {
        match self {
            Self::Current => "AWSCURRENT",
            Self::Previous => "AWSPREVIOUS",
            Self::Pending => "AWSPENDING",
        }
    }

    /// Parses a native or an AWS name, in any case.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s) || st.aws_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Rejection::invalid(format!(
                    "stage {s:?} is not known; use current, previous or pending (or AWSCURRENT, \
                     AWSPREVIOUS, AWSPENDING)"
                ))
            })
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
        s if s > 0 && s % 86_400 == 0 => plural(s / 86_400, "day"),
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
    fn stages_take_native_and_aws_names() {
        assert_eq!(Stage::parse("AWSCURRENT").unwrap(), Stage::Current);
        assert_eq!(Stage::parse("awsprevious").unwrap(), Stage::Previous);
        assert_eq!(Stage::parse("pending").unwrap(), Stage::Pending);
        assert!(
            Stage::parse("latest")
                .unwrap_err()
                .message
                .contains("use current")
        );
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
