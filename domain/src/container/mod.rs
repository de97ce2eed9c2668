//! The Container aggregate: Barbican's named groups of secret references. A
//! `certificate` container bundles what a TLS endpoint needs, an `rsa` container a key
//! pair, a `generic` container anything. Like secrets, containers have ACLs; services
//! that use one register as its consumers, and a container with consumers is only
//! deleted when forced.

mod decide;
mod event;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use decide::{
    Consumer, Container, ContainerCommand, ContainerState, Context, CreateContainer, RefChecks,
    authorize, check_ref, decide, evolve,
};
pub use event::{
    ConsumerChanged, ContainerCreated, ContainerDeleted, ContainerEvent, ContainerSecretAdded,
    ContainerSecretRemoved,
};

#[cfg(test)]
mod tests;

use crate::Rejection;
use crate::ids::{ProjectId, SecretId};

/// Barbican's container types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerType {
    /// Any named references.
    Generic,
    /// `public_key`, `private_key`, optional `private_key_passphrase`.
    Rsa,
    /// `certificate`, optional `private_key`, `private_key_passphrase`, `intermediates`.
    Certificate,
}

impl ContainerType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Rsa => "rsa",
            Self::Certificate => "certificate",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        match s {
            "generic" => Ok(Self::Generic),
            "rsa" => Ok(Self::Rsa),
            "certificate" => Ok(Self::Certificate),
            _ => Err(Rejection::invalid(format!(
                "container type {s:?} is not supported; use generic, rsa or certificate"
            ))),
        }
    }

    /// The reference names the type allows (`None`: any) and those it requires.
    fn names(self) -> (Option<&'static [&'static str]>, &'static [&'static str]) {
        match self {
            Self::Generic => (None, &[]),
            Self::Rsa => (
                Some(&["public_key", "private_key", "private_key_passphrase"]),
                &["public_key", "private_key"],
            ),
            Self::Certificate => (
                Some(&[
                    "certificate",
                    "private_key",
                    "private_key_passphrase",
                    "intermediates",
                ]),
                &["certificate"],
            ),
        }
    }
}

impl fmt::Display for ContainerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a reference inside a container (e.g. `certificate`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RefName(String);

impl RefName {
    /// Parses a name: up to 255 characters, no control characters; may be empty (a
    /// generic container's references need no names, as in Barbican).
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        crate::secret::fields::bounded_or_empty("secret_refs name", s, 255).map(Self)
    }
}
parsed_string!(RefName);

/// A named reference to a secret, with the project that owns the secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Its name in the container.
    pub name: RefName,
    /// The project that owns the secret.
    pub project: ProjectId,
    /// The secret.
    pub secret_id: SecretId,
}

/// Most references a container holds.
pub const MAX_REFS: usize = 50;

/// Checks a container's references against its type: allowed and required names,
/// each name once, and the size limit.
pub fn validate_refs(kind: ContainerType, refs: &[SecretRef]) -> Result<(), Rejection> {
    if refs.len() > MAX_REFS {
        return Err(Rejection::invalid(format!(
            "{} secret_refs given; a container holds at most {MAX_REFS}",
            refs.len()
        )));
    }
    let (allowed, required) = kind.names();
    let mut seen = std::collections::BTreeSet::new();
    for r in refs {
        let name = r.name.as_str();
        if let Some(allowed) = allowed
            && !allowed.contains(&name)
        {
            return Err(Rejection::invalid(format!(
                "a {kind} container cannot hold a reference named {name:?}; use {}",
                allowed.join(", ")
            )));
        }
        if !name.is_empty() && !seen.insert(name) {
            return Err(Rejection::invalid(format!(
                "secret_refs name {name:?} appears twice; each name is used once"
            )));
        }
    }
    let mut secrets = std::collections::BTreeSet::new();
    if let Some(twice) = refs.iter().find(|r| !secrets.insert(r.secret_id)) {
        return Err(Rejection::invalid(format!(
            "secret {} is referenced more than once; a container references each secret once",
            twice.secret_id
        )));
    }
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|n| !seen.contains(n))
        .collect();
    if !missing.is_empty() {
        return Err(Rejection::invalid(format!(
            "a {kind} container needs a reference named {}; add it to secret_refs",
            missing.join(" and ")
        )));
    }
    Ok(())
}
