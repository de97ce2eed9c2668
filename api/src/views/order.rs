//! Orders as Barbican shows them.

use projections::read::OrderRow;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::container::container_ref;
use super::{Links, secret_ref, time};

/// An order's URL.
pub fn order_ref(base: &str, id: impl std::fmt::Display) -> String {
    format!("{base}/v1/orders/{id}")
}

/// An order.
#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    /// Its URL.
    pub order_ref: String,
    /// key, asymmetric or certificate.
    #[serde(rename = "type")]
    pub order_type: String,
    /// What was asked for, as given.
    pub meta: Map<String, Value>,
    /// PENDING, ACTIVE or ERROR.
    pub status: String,
    /// Barbican's sub-status; keyledger keeps none.
    pub sub_status: &'static str,
    /// Barbican's sub-status message; keyledger keeps none.
    pub sub_status_message: &'static str,
    /// When it was placed (UTC).
    pub created: String,
    /// When it last changed (UTC).
    pub updated: String,
    /// Who placed it.
    pub creator_id: String,
    /// The secret it made (key orders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
    /// The container it made (key pairs and certificates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_ref: Option<String>,
    /// Why it failed: an HTTP status code, as a string (as Barbican stores it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_status_code: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
}

impl Order {
    /// `row` as shown.
    pub fn of(base: &str, row: &OrderRow) -> Self {
        let failed = row.error_status_code.zip(row.error_reason.clone());
        Self {
            order_ref: order_ref(base, row.id),
            order_type: row.order_type.clone(),
            meta: serde_json::from_str(&row.meta).unwrap_or_default(),
            status: row.status.clone(),
            sub_status: "Unknown",
            sub_status_message: "Unknown",
            created: time(&row.created),
            updated: time(&row.updated),
            creator_id: row.creator.to_string(),
            secret_ref: row.secret_id.as_deref().map(|id| secret_ref(base, id)),
            container_ref: row
                .container_id
                .as_deref()
                .map(|id| container_ref(base, id)),
            error_status_code: failed.as_ref().map(|(code, _)| code.to_string()),
            error_reason: failed.map(|(_, reason)| reason),
        }
    }
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    /// The page.
    pub orders: Vec<Order>,
    /// How many the caller may see in all.
    pub total: u64,
    /// Links to the pages around this one.
    #[serde(flatten)]
    pub links: Links,
}

/// An order's URL, as placing one answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderRefBody {
    /// The order's URL.
    pub order_ref: String,
}
