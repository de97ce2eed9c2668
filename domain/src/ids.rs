//! Identifiers, each parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Rejection;

/// True for characters that may appear in a NATS subject token without changing
/// which subjects it addresses.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

/// `s` if it is 1 to `max` such characters; otherwise a rejection naming `what`.
/// (By bytes: every byte of a non-ASCII character is outside ASCII, so refused.)
fn token<'a>(s: &'a str, what: &str, max: usize) -> Result<&'a str, Rejection> {
    if s.is_empty() || s.len() > max || !s.bytes().all(is_token_char) {
        return Err(Rejection::invalid(format!(
            "{what} {s:?} is not valid: use 1 to {max} ASCII letters, digits, '-' or '_'"
        )));
    }
    Ok(s)
}

/// A project (tenant). Its id becomes a token of NATS subjects
/// (`keyledger.events.<project>.…`), so it only admits ASCII letters, digits, `-` and
/// `_`: never `.`, `*`, `>` or whitespace, so a project can never address another's
/// subjects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProjectId(String);

impl ProjectId {
    /// Longest accepted project id.
    pub const MAX_LEN: usize = 64;

    /// Parses a project id.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        token(s, "project id", Self::MAX_LEN).map(|s| Self(s.to_owned()))
    }
}
parsed_string!(ProjectId);

/// A user as named by the identity provider (the token's `sub`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    /// Longest accepted user id.
    pub const MAX_LEN: usize = 255;

    /// Parses a user id: 1 to 255 characters, no control characters.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() || s.chars().count() > Self::MAX_LEN || s.chars().any(char::is_control) {
            return Err(Rejection::invalid(format!(
                "user id {s:?} is not valid: use 1 to {} characters without control characters",
                Self::MAX_LEN
            )));
        }
        Ok(Self(s.to_owned()))
    }
}
parsed_string!(UserId);

/// A role name from a token (`admin`, `creator`, ...). Stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Role(String);

impl Role {
    /// Parses a role: 1 to 64 ASCII letters, digits, `-`, `_` or `:` (Keystone's
    /// `key-manager:service-admin`); folded to lower case.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() || s.len() > 64 || !s.bytes().all(|c| is_token_char(c) || c == b':') {
            return Err(Rejection::invalid(format!(
                "role {s:?} is not valid: use 1 to 64 ASCII letters, digits, '-', '_' or ':'"
            )));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}
parsed_string!(Role);

/// A service principal (a token's `service` claim): a workload such as the order
/// worker or a rotation job, acting for itself rather than for a person.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ServiceName(String);

impl ServiceName {
    /// Parses a service name: 1 to 64 ASCII letters, digits, `-` or `_`.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        token(s, "service name", 64).map(|s| Self(s.to_owned()))
    }
}
parsed_string!(ServiceName);

/// The id a client gives a command so that retrying it is safe: the same command id
/// yields one commit and the same reply. Used as the JetStream `Nats-Msg-Id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CommandId(String);

impl CommandId {
    /// Longest accepted command id.
    pub const MAX_LEN: usize = 64;

    /// Parses a command id: 1 to 64 ASCII letters, digits, `-` or `_` (a UUID fits).
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.bytes().all(is_token_char) {
            return Err(Rejection::invalid(format!(
                "command_id {s:?} is not valid: use 1 to {} ASCII letters, digits, '-' or '_' \
                 (a UUID works)",
                Self::MAX_LEN
            )));
        }
        Ok(Self(s.to_owned()))
    }

    /// A command id from a UUID the caller generated.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id.to_string())
    }

    /// What starts the command ids keyledger generates ([`Self::generated`]).
    pub const GENERATED_PREFIX: &'static str = "kl-v7-";

    /// A command id keyledger generates (its HTTP API for each command it sends, the
    /// command service for a command sent without one) from a fresh UUIDv7: `kl-v7-`
    /// and the UUID's 32 hex digits. A create under such an id gets a secret id led by
    /// the UUID's time ([`SecretId::for_create`]). The prefix keeps that rule to ids
    /// no keyledger before it generated, and no client chooses without reading this:
    /// a client's own command id may have been sent to an older command service,
    /// which derived the secret id by the hash alone, and a retry must find that
    /// secret.
    pub fn generated(v7: Uuid) -> Self {
        Self(format!("{}{}", Self::GENERATED_PREFIX, v7.simple()))
    }

    /// The UUIDv7 in a command id of the [`Self::generated`] form.
    fn generated_uuid(&self) -> Option<Uuid> {
        let hex = self.0.strip_prefix(Self::GENERATED_PREFIX)?;
        let uuid = Uuid::try_parse(hex).ok().filter(|_| hex.len() == 32)?;
        (uuid.get_version_num() == 7 && uuid.get_variant() == uuid::Variant::RFC4122)
            .then_some(uuid)
    }
}
parsed_string!(CommandId);

/// An aggregate's id: the last token of its subject
/// (`keyledger.events.<project>.<kind>.<id>`), so, like a project id, it admits only
/// ASCII letters, digits, `-` and `_` (a UUID fits) and can never address another
/// aggregate's subjects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AggregateId(String);

impl AggregateId {
    /// Longest accepted aggregate id.
    pub const MAX_LEN: usize = 64;

    /// Parses an aggregate id.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        token(s, "aggregate id", Self::MAX_LEN).map(|s| Self(s.to_owned()))
    }
}
parsed_string!(AggregateId);

/// Declares a UUID-backed id type.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID the caller generated.
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the hyphenated UUID form.
            pub fn parse(s: &str) -> Result<Self, Rejection> {
                Uuid::try_parse(s).map(Self).map_err(|_| {
                    Rejection::invalid(format!(
                        concat!($what, " {:?} is not a UUID (expected e.g. 0f8e2c1a-5b7d-4e3f-9a61-2d4c8b9e7f10)"),
                        s
                    ))
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A secret's id (the `{uuid}` in `/v1/secrets/{uuid}`).
    SecretId,
    "secret id"
);
uuid_id!(
    /// A container's id (the `{uuid}` in `/v1/containers/{uuid}`).
    ContainerId,
    "container id"
);
uuid_id!(
    /// An order's id (the `{uuid}` in `/v1/orders/{uuid}`).
    OrderId,
    "order id"
);
uuid_id!(
    /// One stored payload of a secret; bound into the payload's AAD.
    VersionId,
    "version id"
);
uuid_id!(
    /// A data-encryption key in the key store; bound into the payload's AAD.
    KeyId,
    "key id"
);

/// The ids of aggregates: each is a UUID, whose hyphenated form is a valid aggregate id.
macro_rules! aggregate_id_from {
    ($($name:ident),*) => {
        $(impl From<$name> for AggregateId {
            fn from(id: $name) -> Self {
                Self(id.to_string())
            }
        })*
    };
}
aggregate_id_from!(SecretId, ContainerId, OrderId);

/// How often one unique name may be created and deleted again: each create walks the
/// name's earlier incarnations ([`SecretId::for_name`]).
pub const MAX_INCARNATIONS: u32 = 1000;

/// The namespace for ids derived from command ids (see [`SecretId::for_create`]).
const CREATE_NAMESPACE: Uuid = Uuid::from_u128(0x6b65_796c_6564_6765_7200_0000_0000_0001);

impl SecretId {
    /// The id of the secret a create command makes. Derived from the project and the
    /// command id, so a retried create addresses the same aggregate, whose log then
    /// shows the command was already applied: retries are idempotent forever, not just
    /// inside JetStream's duplicate window.
    ///
    /// When keyledger generated the command id ([`CommandId::generated`]), the id is a
    /// UUIDv7: the 48-bit millisecond timestamp of the command id's UUID, then the
    /// hash's bits. Secrets created close in time then have ids close together, and
    /// the read model's indexes keyed by id take each batch of creates in a few
    /// adjacent pages instead of one page at a random place per create
    /// (docs/operations.md, Read side). The 74 bits after the time are still the
    /// hash's, so an id cannot be guessed; it tells whoever sees it when the secret was
    /// created. Any other command id gives the UUIDv5 of the hash, as it always did.
    pub fn for_create(project: &ProjectId, command: &CommandId) -> Self {
        let name = format!("{project}/{command}");
        let hashed = Uuid::new_v5(&CREATE_NAMESPACE, name.as_bytes());
        match command.generated_uuid() {
            Some(sent) => {
                let mut bytes = *hashed.as_bytes();
                bytes[..6].copy_from_slice(&sent.as_bytes()[..6]);
                // Version 7; the variant bits are already RFC 9562's (a UUIDv5's).
                bytes[6] = (bytes[6] & 0x0f) | 0x70;
                Self(Uuid::from_bytes(bytes))
            }
            None => Self(hashed),
        }
    }

    /// The id of incarnation `n` of the secret named `name` in `project`, for creates
    /// that keep names unique (AWS's). Every create of a name addresses the same
    /// aggregate until it is deleted or expires, so two creates of one name race on one
    /// subject and the second is refused; the next incarnation is only created once
    /// the previous one has ended.
    pub fn for_name(project: &ProjectId, name: &str, n: u32) -> Self {
        let name = format!("unique-name/{project}/{n}/{name}");
        Self(Uuid::new_v5(&CREATE_NAMESPACE, name.as_bytes()))
    }

    /// Which incarnation of the unique name `name` this secret is, if it is one
    /// (rather than a secret created under a name that need not be unique).
    pub fn incarnation_of(self, project: &ProjectId, name: &str) -> Option<u32> {
        (0..MAX_INCARNATIONS).find(|n| Self::for_name(project, name, *n) == self)
    }
}

impl OrderId {
    /// The id of the order a place command makes: the UUIDv5 of the project and the
    /// command id, like [`SecretId::for_create`]'s (in its own namespace).
    pub fn for_create(project: &ProjectId, command: &CommandId) -> Self {
        let name = format!("order/{project}/{command}");
        Self(Uuid::new_v5(&CREATE_NAMESPACE, name.as_bytes()))
    }
}

impl ContainerId {
    /// The id of the container a create command makes: the UUIDv5 of the project and
    /// the command id, like [`SecretId::for_create`]'s (in its own namespace).
    pub fn for_create(project: &ProjectId, command: &CommandId) -> Self {
        let name = format!("container/{project}/{command}");
        Self(Uuid::new_v5(&CREATE_NAMESPACE, name.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_names_incarnations_are_distinct_and_recognised() {
        let p = ProjectId::parse("p1").unwrap();
        let first = SecretId::for_name(&p, "db", 0);
        assert_ne!(first, SecretId::for_name(&p, "db", 1));
        assert_ne!(
            first,
            SecretId::for_name(&ProjectId::parse("p2").unwrap(), "db", 0)
        );
        // No name can spell another's incarnation: the number comes before the name.
        assert_ne!(
            SecretId::for_name(&p, "1/db", 0),
            SecretId::for_name(&p, "db", 1)
        );
        assert_eq!(
            SecretId::for_name(&p, "db", 7).incarnation_of(&p, "db"),
            Some(7)
        );
        assert_eq!(first.incarnation_of(&p, "db2"), None);
        let command = CommandId::parse("c1").unwrap();
        assert_eq!(
            SecretId::for_create(&p, &command).incarnation_of(&p, "db"),
            None
        );
    }

    #[test]
    fn project_ids_cannot_address_other_subjects() {
        for bad in ["", "a.b", "a*", ">", "a b", "a\tb", "é", &"x".repeat(65)] {
            let err = ProjectId::parse(bad).expect_err(bad);
            assert!(err.message.contains("is not valid"), "{}", err.message);
        }
        assert_eq!(ProjectId::parse("p-1_A").unwrap().as_str(), "p-1_A");
    }

    #[test]
    fn aggregate_ids_cannot_address_other_subjects() {
        for bad in ["", "a.b", "a*", ">", "a b", "é", &"x".repeat(65)] {
            let err = AggregateId::parse(bad).expect_err(bad);
            assert!(err.message.contains("is not valid"), "{}", err.message);
            let json = serde_json::to_string(bad).unwrap();
            assert!(
                serde_json::from_str::<AggregateId>(&json).is_err(),
                "{bad:?}"
            );
        }
        let secret = SecretId::from_uuid(Uuid::from_u128(7));
        assert_eq!(AggregateId::from(secret).as_str(), secret.to_string());
    }

    #[test]
    fn create_ids_are_stable_per_project_and_command() {
        let p1 = ProjectId::parse("p1").unwrap();
        let p2 = ProjectId::parse("p2").unwrap();
        let c = CommandId::parse("c-1").unwrap();
        assert_eq!(SecretId::for_create(&p1, &c), SecretId::for_create(&p1, &c));
        assert_ne!(SecretId::for_create(&p1, &c), SecretId::for_create(&p2, &c));
    }

    /// A UUIDv7 of time `ms` (Unix ms) with `rand` in its low bits.
    fn v7(ms: u64, rand: u128) -> Uuid {
        Uuid::from_u128((u128::from(ms) << 80) | (0x7 << 76) | (0b10 << 62) | rand)
    }

    #[test]
    fn a_generated_command_id_leads_its_secrets_id_with_its_time() {
        let p1 = ProjectId::parse("p1").unwrap();
        let p2 = ProjectId::parse("p2").unwrap();
        let sent = v7(1_764_000_000_000, 0x0123_4567);
        let command = CommandId::generated(sent);
        assert_eq!(command.as_str(), format!("kl-v7-{}", sent.simple()));
        assert!(CommandId::parse(command.as_str()).is_ok());
        let id = SecretId::for_create(&p1, &command);
        assert_eq!(id, SecretId::for_create(&p1, &command));
        assert_ne!(id, SecretId::for_create(&p2, &command));
        assert_eq!(id.0.get_version_num(), 7);
        assert_eq!(id.0.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.0.as_bytes()[..6], sent.as_bytes()[..6]);
        // After the time and the version come the hash's bits.
        let name = format!("p1/{command}");
        let hashed = Uuid::new_v5(&CREATE_NAMESPACE, name.as_bytes());
        assert_eq!(id.0.as_bytes()[7..], hashed.as_bytes()[7..]);
        // A later command id, whatever its random bits, sorts after, as text too.
        let led = |u: Uuid| SecretId::for_create(&p1, &CommandId::generated(u));
        let later = led(v7(1_764_000_000_001, 0));
        assert!(later > id && later.to_string() > id.to_string());
    }

    #[test]
    fn every_other_command_id_keeps_the_id_it_always_had() {
        let p1 = ProjectId::parse("p1").unwrap();
        let id = |command: &str| {
            SecretId::for_create(&p1, &CommandId::parse(command).unwrap()).to_string()
        };
        // Pinned: ids already in logs, and retries of creates an older keyledger took.
        assert_eq!(id("create-x"), "4520a4df-e7b8-5809-b8df-8973d42bd51f");
        assert_eq!(
            id(&Uuid::from_u128(7).to_string()),
            "32e60d86-66e6-50db-ace8-4d09309f14cf"
        );
        let v7 = v7(1_764_000_000_000, 0);
        let v4 = Uuid::from_u128((0x4 << 76) | (0b10 << 62) | 42);
        // A client's UUIDv7 (either form), the prefix on anything but a UUIDv7's 32
        // hex digits: all the plain hash, a UUIDv5.
        for command in [
            v7.to_string(),
            v7.simple().to_string(),
            format!("kl-v7-{v7}"),
            format!("kl-v7-{}", v4.simple()),
            format!(
                "kl-v7-{}",
                Uuid::from_u128(v7.as_u128() & !(0b11 << 62)).simple()
            ),
            "kl-v7-".to_owned() + &"7".repeat(32),
            "kl-v7-x".to_owned(),
        ] {
            let got = Uuid::parse_str(&id(&command)).unwrap();
            assert_eq!(got.get_version_num(), 5, "{command}");
        }
    }

    #[test]
    fn bad_uuid_names_the_value_and_the_form() {
        let err = SecretId::parse("nope").unwrap_err();
        assert_eq!(
            err.message,
            "secret id \"nope\" is not a UUID (expected e.g. 0f8e2c1a-5b7d-4e3f-9a61-2d4c8b9e7f10)"
        );
    }

    #[test]
    fn roles_fold_to_lower_case() {
        assert_eq!(Role::parse("Admin").unwrap().as_str(), "admin");
    }
}
