//! Version discovery, as Barbican answers it: a request that names microversion 1.1
//! or later learns the range served (`min_version`, `max_version`; status `CURRENT`),
//! one that names none gets Barbican's 1.0 shape (status `stable`), which
//! python-barbicanclient reads as "1.0 only".

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::microversion::Microversion;
use crate::state::AppState;
use crate::views::base_url;

/// A link of a version.
#[derive(Debug, Serialize, ToSchema)]
pub struct Link {
    /// `self` or `describedby`.
    pub rel: &'static str,
    /// Where.
    pub href: String,
    /// The media type, for `describedby`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub media_type: Option<&'static str>,
}

/// A media type a version speaks.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaType {
    /// `application/json`.
    pub base: &'static str,
    /// Barbican's vendor type.
    #[serde(rename = "type")]
    pub media_type: &'static str,
}

/// Version 1, as a client asking for a microversion sees it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum ApiVersion {
    /// Microversion 1.1 or later asked for: the range served.
    Current {
        /// `v1`.
        id: &'static str,
        /// `CURRENT`.
        status: &'static str,
        /// The oldest microversion served.
        min_version: String,
        /// The newest microversion served.
        max_version: String,
        /// Where it is.
        links: Vec<Link>,
    },
    /// No microversion, or 1.0, asked for: Barbican's 1.0 shape.
    Stable {
        /// `v1`.
        id: &'static str,
        /// `stable`.
        status: &'static str,
        /// Where it is.
        links: Vec<Link>,
        /// What it speaks.
        #[serde(rename = "media-types")]
        media_types: Vec<MediaType>,
    },
}

/// The versions, in Barbican's 1.0 wrapping.
#[derive(Debug, Serialize, ToSchema)]
pub struct Values {
    /// The versions.
    pub values: Vec<ApiVersion>,
}

/// `GET /`'s answer: Barbican wraps the versions in `values` at 1.0 only.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Versions {
    /// Microversion 1.1 or later asked for.
    List {
        /// The versions.
        versions: Vec<ApiVersion>,
    },
    /// No microversion, or 1.0.
    Wrapped {
        /// The versions.
        versions: Values,
    },
}

/// `GET /v1`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThisVersion {
    /// This version.
    pub version: ApiVersion,
}

/// Version 1 as a client asking for `asked` is shown it.
fn v1(base: &str, asked: Microversion) -> ApiVersion {
    let links = vec![
        Link {
            rel: "self",
            href: format!("{base}/v1/"),
            media_type: None,
        },
        Link {
            rel: "describedby",
            href: "https://docs.openstack.org/barbican/latest/api/".into(),
            media_type: Some("text/html"),
        },
    ];
    if asked >= Microversion::V1_1 {
        ApiVersion::Current {
            id: "v1",
            status: "CURRENT",
            min_version: Microversion::MIN.to_string(),
            max_version: Microversion::MAX.to_string(),
            links,
        }
    } else {
        ApiVersion::Stable {
            id: "v1",
            status: "stable",
            links,
            media_types: vec![MediaType {
                base: "application/json",
                media_type: "application/vnd.openstack.key-manager-v1+json",
            }],
        }
    }
}

/// `GET /`: every version, with 300 Multiple Choices.
#[utoipa::path(
    get,
    path = "/",
    tag = "discovery",
    responses((status = 300, description = "The versions served", body = Versions)),
)]
pub async fn root(
    State(state): State<AppState>,
    asked: Microversion,
    headers: HeaderMap,
) -> Response {
    let v1 = v1(&base_url(&state, &headers), asked);
    let body = if asked >= Microversion::V1_1 {
        Versions::List { versions: vec![v1] }
    } else {
        Versions::Wrapped {
            versions: Values { values: vec![v1] },
        }
    };
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

/// `GET /v1`: this version.
#[utoipa::path(
    get,
    path = "/v1",
    tag = "discovery",
    responses((status = 200, description = "ApiVersion 1", body = ThisVersion)),
)]
pub async fn version(
    State(state): State<AppState>,
    asked: Microversion,
    headers: HeaderMap,
) -> Json<ThisVersion> {
    Json(ThisVersion {
        version: v1(&base_url(&state, &headers), asked),
    })
}
