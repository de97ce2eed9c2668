//! Who a verified client certificate stands for (mutual TLS): an operator's map from a
//! certificate's names to principals, read from a JSON file:
//!
//! ```json
//! {"nova.compute.example": {"user": "nova", "project": "p1", "roles": ["member"],
//!                           "service": "nova"}}
//! ```
//!
//! A key matches the certificate's subject common name or one of its subject
//! alternative names (DNS, URI, e-mail), verbatim. The certificate was verified by the
//! TLS handshake against the operator's client CA before it gets here; the map only
//! names who it is. A request that also carries a token is the token's.

use std::collections::BTreeMap;
use std::path::Path;

use domain::Rejection;
use domain::ids::{ProjectId, Role, ServiceName, UserId};
use domain::principal::Principal;
use serde::Deserialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer as _;

/// One entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    user: String,
    project: String,
    roles: Vec<String>,
    #[serde(default)]
    service: Option<String>,
}

/// The map from certificate names to principals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertPrincipals(BTreeMap<String, Principal>);

/// Why the map's file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("client certificate principals {path}: {problem}")]
pub struct MapError {
    path: String,
    problem: String,
}

impl CertPrincipals {
    /// Reads and checks the map in `path`.
    pub fn load(path: &Path) -> Result<Self, MapError> {
        let problem = |problem: String| MapError {
            path: path.display().to_string(),
            problem,
        };
        let text = std::fs::read(path).map_err(|e| problem(e.to_string()))?;
        let entries: BTreeMap<String, Entry> = serde_json::from_slice(&text).map_err(|e| {
            problem(format!(
                "{e}; give a JSON object from a certificate name to {{\"user\", \"project\", \
                 \"roles\", \"service\"?}}"
            ))
        })?;
        let mut map = BTreeMap::new();
        for (name, entry) in entries {
            let principal = (|| {
                Ok::<_, Rejection>(Principal {
                    user: UserId::parse(&entry.user)?,
                    project: ProjectId::parse(&entry.project)?,
                    roles: entry
                        .roles
                        .iter()
                        .map(|r| Role::parse(r))
                        .collect::<Result<_, _>>()?,
                    service: entry
                        .service
                        .as_deref()
                        .map(ServiceName::parse)
                        .transpose()?,
                })
            })()
            .map_err(|r| problem(format!("entry {name:?}: {}", r.message)))?;
            // A role the policy does not know grants nothing: a typo would leave the
            // certificate authenticated and able to do nothing, silently.
            if let Some(unknown) = principal
                .roles
                .iter()
                .find(|r| domain::roles::ProjectRole::of(r).is_none())
            {
                return Err(problem(format!(
                    "entry {name:?}: role {unknown} is not one keyledger's policy knows (admin, \
                     member, creator, observer, audit or reader)"
                )));
            }
            map.insert(name, principal);
        }
        Ok(Self(map))
    }

    /// The principal of the certificate `der`, which the handshake verified, at `now`
    /// (Unix seconds). Its validity is checked again on every request: a connection
    /// kept alive, or a TLS session resumed, outlives the handshake's check.
    pub fn principal_of(&self, der: &[u8], now: i64) -> Result<Principal, Rejection> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
            .map_err(|_| Rejection::unauthorized("the client certificate cannot be read"))?;
        let valid = x509_parser::time::ASN1Time::from_timestamp(now)
            .is_ok_and(|t| cert.validity().is_valid_at(t));
        if !valid {
            return Err(Rejection::unauthorized(format!(
                "the client certificate is not valid now (valid from {} to {}): renew it",
                cert.validity().not_before,
                cert.validity().not_after
            )));
        }
        let names = names(&cert);
        let mut found = names.iter().filter_map(|n| self.0.get(n).map(|p| (n, p)));
        let Some((name, principal)) = found.next() else {
            return Err(Rejection::unauthorized(format!(
                "the client certificate ({}) is verified but stands for no principal: map one \
                 of its names in the file of --tls-client-principals, or send a token",
                describe(&names)
            )));
        };
        if let Some((other, _)) = found.find(|(_, p)| *p != principal) {
            return Err(Rejection::unauthorized(format!(
                "the client certificate's names {name:?} and {other:?} stand for different \
                 principals in --tls-client-principals; map only one"
            )));
        }
        Ok(principal.clone())
    }
}

/// The certificate's common name(s) and subject alternative names.
fn names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    let mut names: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) | GeneralName::RFC822Name(n) => {
                    names.push((*n).to_owned())
                }
                _ => {}
            }
        }
    }
    names
}

fn describe(names: &[String]) -> String {
    if names.is_empty() {
        "with no common name or DNS, URI or e-mail name".into()
    } else {
        format!("named {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(cn: &str, sans: &[&str]) -> Vec<u8> {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    impl CertPrincipals {
        fn principal_of_now(&self, der: &[u8]) -> Result<Principal, Rejection> {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            self.principal_of(der, now)
        }
    }

    fn map(json: &str) -> Result<CertPrincipals, MapError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map.json");
        std::fs::write(&path, json).unwrap();
        CertPrincipals::load(&path)
    }

    #[test]
    fn a_name_of_the_certificate_maps_it_to_a_principal() {
        let m = map(
            r#"{"nova.example": {"user": "nova", "project": "p1", "roles": ["member"], "service": "nova"}}"#,
        )
        .unwrap();
        let by_cn = m
            .principal_of_now(&certificate("nova.example", &[]))
            .unwrap();
        assert_eq!(by_cn.user.as_str(), "nova");
        assert_eq!(by_cn.service.as_ref().map(|s| s.as_str()), Some("nova"));
        let by_san = m
            .principal_of_now(&certificate("other", &["nova.example"]))
            .unwrap();
        assert_eq!(by_san, by_cn);
        let unmapped = m
            .principal_of_now(&certificate("x", &["y.example"]))
            .unwrap_err();
        assert!(
            unmapped.message.contains("x, y.example") && unmapped.message.contains("token"),
            "{}",
            unmapped.message
        );
    }

    #[test]
    fn two_names_for_two_principals_are_refused_and_bad_files_say_why() {
        let m = map(
            r#"{"a": {"user": "a", "project": "p1", "roles": ["member"]},
                "b": {"user": "b", "project": "p1", "roles": ["member"]}}"#,
        )
        .unwrap();
        assert!(m.principal_of_now(&certificate("a", &["b"])).is_err());
        let bad =
            map(r#"{"a": {"user": "a", "project": "p1", "roles": ["not a role!"]}}"#).unwrap_err();
        assert!(bad.to_string().contains("entry \"a\""), "{bad}");
        let unknown = map(r#"{"a": {"user": "a", "project": "p1", "roles": [], "admin": true}}"#)
            .unwrap_err();
        assert!(unknown.to_string().contains("admin"), "{unknown}");
    }
}
