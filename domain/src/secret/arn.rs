//! A secret's AWS ARN, `arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>`:
//! its reference ([`super::reference`]) in the form AWS's clients expect, and what a
//! `SecretId` that AWS's API takes (a name, a full ARN or a partial one) names.
//!
//! The account is the project: a project id of 12 digits is its own account, any other
//! answers as 12 digits derived from it, so one project is always one account and an
//! ARN names its project without a table. The region is the one the client signed for:
//! keyledger is one region wherever a client says it is.

use sha2::{Digest as _, Sha256};

use crate::Rejection;
use crate::ids::{ProjectId, SecretId};
use crate::secret::fields::SecretName;
use crate::secret::reference::suffix;

/// The AWS account id of `project`.
pub fn account_of(project: &ProjectId) -> String {
    let id = project.as_str();
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        return id.to_owned();
    }
    let digest = Sha256::digest(format!("keyledger/aws-account/v1\0{id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{:012}", u64::from_be_bytes(first) % 1_000_000_000_000)
}

/// The ARN of a secret, for a client of `region`. A secret without a name uses its id
/// as the name part, as its reference does.
pub fn arn(region: &str, project: &ProjectId, name: Option<&SecretName>, id: SecretId) -> String {
    let name = name
        .filter(|n| !n.as_str().is_empty())
        .map_or_else(|| id.to_string(), |n| n.as_str().to_owned());
    format!(
        "arn:aws:secretsmanager:{region}:{}:secret:{name}-{}",
        account_of(project),
        suffix(id)
    )
}

/// What a `SecretId` input names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretInput<'a> {
    /// A secret's name (which may itself end in `-` and six characters).
    Name(&'a str),
    /// An ARN: full (`<name>-<suffix>`) or partial (`<name>`), which `rest` cannot
    /// tell apart by itself.
    Arn {
        /// Its region.
        region: &'a str,
        /// Its account.
        account: &'a str,
        /// What follows `secret:`.
        rest: &'a str,
    },
}

impl<'a> SecretInput<'a> {
    /// Parses a `SecretId`: an ARN if it starts with `arn:`, else a name.
    pub fn parse(input: &'a str) -> Result<Self, Rejection> {
        if input.is_empty() {
            return Err(Rejection::invalid(
                "SecretId is empty; give the secret's name or ARN",
            ));
        }
        let Some(arn) = input.strip_prefix("arn:") else {
            return Ok(Self::Name(input));
        };
        let malformed = || {
            Rejection::invalid(format!(
                "SecretId {input:?} is not a secret's ARN; an ARN reads \
                 arn:aws:secretsmanager:<region>:<12-digit account>:secret:<name>, or give \
                 the secret's name"
            ))
        };
        let mut parts = arn.splitn(6, ':');
        let (Some(partition), Some(service), Some(region), Some(account), Some(rest)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(malformed());
        };
        let rest = match (rest, parts.next()) {
            ("secret", Some(rest)) if !rest.is_empty() => rest,
            _ => return Err(malformed()),
        };
        let region_ok = !region.is_empty()
            && region.len() <= 64
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !partition.starts_with("aws")
            || service != "secretsmanager"
            || !region_ok
            || account.len() != 12
            || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(malformed());
        }
        Ok(Self::Arn {
            region,
            account,
            rest,
        })
    }
}

/// `rest` as `<name>-<suffix>`, if it ends in `-` and six characters a suffix may hold:
/// the reading of a full ARN (the caller still checks that the suffix is the secret's).
pub fn split_suffix(rest: &str) -> Option<(&str, &str)> {
    let (name, tail) = rest.rsplit_once('-')?;
    (!name.is_empty() && tail.len() == 6 && tail.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some((name, tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn project(s: &str) -> ProjectId {
        ProjectId::parse(s).unwrap()
    }

    #[test]
    fn a_project_is_one_account() {
        assert_eq!(account_of(&project("123456789012")), "123456789012");
        let derived = account_of(&project("payments"));
        assert_eq!(derived.len(), 12);
        assert!(derived.bytes().all(|b| b.is_ascii_digit()), "{derived}");
        assert_eq!(derived, account_of(&project("payments")));
        assert_ne!(derived, account_of(&project("billing")));
        // Not 12 digits: derived, like any other id.
        assert_ne!(account_of(&project("12345678901")), "12345678901");
    }

    #[test]
    fn an_arn_is_the_reference_in_aws_form() {
        let p = project("payments");
        let id = SecretId::from_uuid(Uuid::from_u128(7));
        let name = SecretName::parse("db/password").unwrap();
        let arn = arn("eu-west-1", &p, Some(&name), id);
        let account = account_of(&p);
        let expected = format!(
            "arn:aws:secretsmanager:eu-west-1:{account}:secret:db/password-{}",
            suffix(id)
        );
        assert_eq!(arn, expected);
        let reference = crate::secret::reference::reference(&p, Some(&name), id);
        assert_eq!(
            arn.rsplit_once(":secret:").unwrap().1,
            reference.rsplit_once(":secret:").unwrap().1
        );
        // Parsed back: the account, the region and the full name with its suffix.
        assert_eq!(
            SecretInput::parse(&arn).unwrap(),
            SecretInput::Arn {
                region: "eu-west-1",
                account: &account,
                rest: &format!("db/password-{}", suffix(id)),
            }
        );
        assert_eq!(
            split_suffix(&format!("db/password-{}", suffix(id))),
            Some(("db/password", suffix(id).as_str()))
        );
    }

    #[test]
    fn a_secret_id_is_a_name_or_an_arn() {
        assert_eq!(SecretInput::parse("db").unwrap(), SecretInput::Name("db"));
        // A name that ends like a full ARN's name part is still a name.
        assert_eq!(
            SecretInput::parse("db-abcdef").unwrap(),
            SecretInput::Name("db-abcdef")
        );
        assert_eq!(
            SecretInput::parse("arn:aws:secretsmanager:us-east-1:123456789012:secret:a:b").unwrap(),
            SecretInput::Arn {
                region: "us-east-1",
                account: "123456789012",
                rest: "a:b"
            }
        );
        for bad in [
            "",
            "arn:",
            "arn:aws:s3:us-east-1:123456789012:secret:db",
            "arn:aws:secretsmanager:us-east-1:1234:secret:db",
            "arn:aws:secretsmanager:US-EAST-1:123456789012:secret:db",
            "arn:aws:secretsmanager:us-east-1:123456789012:key:db",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:",
            "arn:other:secretsmanager:us-east-1:123456789012:secret:db",
        ] {
            let err = SecretInput::parse(bad).unwrap_err();
            assert!(
                err.message.contains("ARN") || err.message.contains("empty"),
                "{bad}: {}",
                err.message
            );
        }
        assert_eq!(split_suffix("db"), None);
        assert_eq!(split_suffix("-abcdef"), None);
        assert_eq!(split_suffix("db-abcde"), None);
        assert_eq!(split_suffix("db-abc/ef"), None);
        assert_eq!(split_suffix("a-b-abcdef"), Some(("a-b", "abcdef")));
    }
}
