//! Secrets as Barbican shows them, and their consumers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use projections::read::{SecretConsumerRow, SecretRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ACTIVE, Links, secret_ref, time};
use crate::microversion::Microversion;

/// Request header asking for keyledger's own fields (`reference`, `tags`,
/// `owning_service`) in secret objects. Barbican's clients build their objects from
/// exactly Barbican's fields and fail on any other, so they are left out otherwise.
pub const EXTENDED: &str = "x-keyledger-extended";

/// [`EXTENDED`], as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // describes a parameter; never built
pub struct Extended {
    /// `true`: keyledger's own fields (`reference`, `tags`, `owning_service`) in
    /// secret objects.
    #[param(rename = "X-Keyledger-Extended")]
    extended: Option<bool>,
}

/// Which fields a request's secret objects carry.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// `consumers` (microversion 1.1 and later).
    pub consumers: bool,
    /// keyledger's own fields ([`EXTENDED`]: `true`).
    pub extended: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Shape {
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(version) = Microversion::from_request_parts(parts, state).await;
        let extended = match parts
            .headers
            .get(EXTENDED)
            .map(|v| v.to_str().map(str::trim))
        {
            None => false,
            Some(Ok(v)) if v.eq_ignore_ascii_case("true") => true,
            Some(Ok(v)) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                return Err(crate::error::ApiError::bad_request(
                    "X-Keyledger-Extended must be true or false",
                ));
            }
        };
        Ok(Self {
            consumers: version >= Microversion::V1_1,
            extended,
        })
    }
}

/// The content type a secret's payload is served in by default.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContentTypes {
    /// `text/plain` or `application/octet-stream`.
    pub default: String,
}

/// A secret's metadata.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    /// Its URL.
    pub secret_ref: String,
    /// Its name.
    pub name: Option<String>,
    /// symmetric, public, private, passphrase, certificate or opaque.
    pub secret_type: String,
    /// Informational algorithm.
    pub algorithm: Option<String>,
    /// Informational size in bits.
    pub bit_length: Option<i64>,
    /// Informational mode.
    pub mode: Option<String>,
    /// When it expires (UTC).
    pub expiration: Option<String>,
    /// Always `ACTIVE`: secrets that are gone are not shown.
    pub status: Cow<'static, str>,
    /// When it was created (UTC).
    pub created: String,
    /// When it last changed (UTC).
    pub updated: String,
    /// Who created it.
    pub creator_id: String,
    /// The payload's content type, once a payload is stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_types: Option<ContentTypes>,
    /// Its consumers (microversion 1.1 and later), as Barbican lists them in a secret:
    /// without the times and status its consumer listing adds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Vec<ConsumerOf>>,
    /// keyledger's reference, `krn:keyledger:<project>:secret:<name>-<6 characters>`
    /// (with `X-Keyledger-Extended: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Tags (with `X-Keyledger-Extended: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// The service that manages it, if any (with `X-Keyledger-Extended: true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owning_service: Option<String>,
}

impl Secret {
    /// `row` as a request shaped `shape` sees it.
    pub fn of(base: &str, row: &SecretRow, shape: Shape) -> Self {
        Self {
            secret_ref: secret_ref(base, row.id),
            name: row.name.clone(),
            secret_type: row.secret_type.clone(),
            algorithm: row.algorithm.clone(),
            bit_length: row.bit_length,
            mode: row.mode.clone(),
            expiration: row.expiration.as_deref().map(time),
            status: Cow::Borrowed(ACTIVE),
            created: time(&row.created),
            updated: time(&row.updated),
            creator_id: row.creator.to_string(),
            content_types: row.content_type.map(|default| ContentTypes {
                default: default.to_string(),
            }),
            consumers: shape.consumers.then(|| {
                row.consumers
                    .iter()
                    .map(|c| ConsumerOf {
                        service: c.service.clone(),
                        resource_type: c.resource_type.clone(),
                        resource_id: c.resource_id.clone(),
                    })
                    .collect()
            }),
            reference: shape.extended.then(|| row.reference.clone()),
            tags: shape.extended.then(|| row.tags.clone()),
            owning_service: row
                .owning_service
                .as_ref()
                .filter(|_| shape.extended)
                .map(ToString::to_string),
        }
    }
}

/// A page of secrets.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    /// The page.
    pub secrets: Vec<Secret>,
    /// How many the caller may see in all.
    pub total: u64,
    /// Links to the pages around this one.
    #[serde(flatten)]
    pub links: Links,
}

/// A consumer as a secret lists it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsumerOf {
    /// The service, e.g. `image`.
    pub service: String,
    /// The kind of resource, e.g. `image`.
    pub resource_type: String,
    /// The resource.
    pub resource_id: String,
}

/// A secret's consumer as its consumer listing shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretConsumer {
    /// The service, e.g. `image`.
    pub service: String,
    /// The kind of resource, e.g. `image`.
    pub resource_type: String,
    /// The resource.
    pub resource_id: String,
    /// When it was registered (UTC).
    pub created: String,
    /// When it last changed (UTC): its registration.
    pub updated: String,
    /// Always `ACTIVE`.
    pub status: &'static str,
}

impl SecretConsumer {
    /// A consumer row as shown.
    pub fn of(row: &SecretConsumerRow) -> Self {
        Self {
            service: row.service.clone(),
            resource_type: row.resource_type.clone(),
            resource_id: row.resource_id.clone(),
            created: time(&row.created),
            updated: time(&row.created),
            status: ACTIVE,
        }
    }
}

/// A page of a secret's consumers.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretConsumerList {
    /// The page.
    pub consumers: Vec<SecretConsumer>,
    /// How many in all.
    pub total: u64,
    /// Links to the pages around this one.
    #[serde(flatten)]
    pub links: Links,
}
