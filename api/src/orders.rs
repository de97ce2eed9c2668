//! `/v1/orders`, in Barbican's shapes: place (202), list, show, delete; and the local
//! CA's certificate at `/v1/cas/local`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::ids::OrderId;
use domain::policy::{Action, Target, authorize};
use domain::subject::command;
use infra::protocol::{DeleteOrderRequest, PlaceOrderRequest};
use projections::read::OrderRow;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::access::{self, check_order};
use crate::auth::Caller;
use crate::body::Body;
use crate::consistency::{Consistent, no_content, with_seq, write};
use crate::error::ApiError;
use crate::openapi::{MinSeq, OrderPath};
use crate::paging::{PageQuery, Paging};
use crate::state::AppState;
use crate::views::base_url;
use crate::views::order::{Order, OrderList, OrderRefBody, order_ref};
use crate::views::secret::{Extended, Shape};

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no order has the id {raw:?}: order ids are UUIDs, as in the order_ref"),
        )
    })
}

/// An order to place.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderBody {
    /// key, asymmetric or certificate.
    #[serde(rename = "type")]
    #[schema(pattern = "^(key|asymmetric|certificate)$")]
    order_type: String,
    /// What to make. key: `algorithm` (aes, hmac), `bit_length` (a multiple of 8),
    /// `mode`, `name`, `expiration`, `payload_content_type`; asymmetric: `algorithm`
    /// (rsa, ec), `bit_length`, `name`, `expiration`; certificate: `subject_dn`,
    /// `subject_alt_names`, `validity_days`, `key_usage`, `ca`, `algorithm`,
    /// `bit_length`, `name`, `expiration`.
    #[serde(default)]
    meta: Map<String, Value>,
}

/// `POST /v1/orders`: 202 with `order_ref`; the order worker does the rest.
#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    request_body(content = PlaceOrderBody, content_type = "application/json"),
    responses((status = 202, description = "Placed (and run, when it ran within the order wait); `Location` is its URL", body = OrderRefBody,
        headers(("Location" = String, description = "The order's URL")))),
)]
pub async fn place(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let body: PlaceOrderBody = crate::body::json(&headers, &body, "an order")?;
    let request = PlaceOrderRequest {
        command_id: None,
        order_type: body.order_type,
        meta: body.meta,
    };
    let accepted = write(&state, command::ORDER_PLACE, &caller, &request).await?;
    settled(&state, &accepted.id).await;
    let url = order_ref(&base_url(&state, &headers), &accepted.id);
    let location = HeaderValue::from_str(&url).ok();
    let mut response =
        (StatusCode::ACCEPTED, Json(OrderRefBody { order_ref: url })).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(with_seq(response, accepted.seq))
}

/// Waits, for at most the configured order wait, until the order `id` is ACTIVE or
/// ERROR in the read model, following the projector rather than polling. Barbican
/// runs orders as they are placed by default, and its clients read the result right
/// after placing (python-barbicanclient's own tests do); an order that takes longer
/// is still PENDING, and its client polls as Barbican's API allows.
async fn settled(state: &AppState, id: &str) {
    let Ok(id) = OrderId::parse(id) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + state.config.order_wait;
    loop {
        let seen = state.read.applied();
        match state.read.get_order(id).await {
            Ok(found) if found.value.as_ref().is_some_and(|o| o.status != "PENDING") => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading an order placed just now failed");
                return;
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || state.read.wait_for(seen + 1, left).await.is_err() {
            return;
        }
    }
}

/// `GET /v1/orders`.
#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    params(PageQuery, MinSeq, Extended),
    responses((status = 200, description = "A page of the project's orders (certificate orders only with X-Keyledger-Extended: true)", body = OrderList)),
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    shape: Shape,
    headers: HeaderMap,
    paging: Paging,
) -> Result<Response, ApiError> {
    let who = &caller.principal;
    authorize(
        who,
        Action::ListOrders,
        Target::Project {
            project: &who.project,
            secret: None,
        },
        access::env(&state, &caller),
    )?;
    let _listing = state.costly.listings.start(&caller).await?;
    let page = state
        .read
        .list_orders(&who.project, paging.bounds(), |row| {
            // python-barbicanclient knows key and asymmetric orders only, and fails a
            // whole listing on a certificate order: those are keyledger's to show.
            (shape.extended || row.order_type != "certificate")
                && check_order(&state, &caller, Action::ReadSecret, row).is_ok()
        })
        .await?;
    let base = base_url(&state, &headers);
    let orders: Vec<Order> = page
        .value
        .orders
        .iter()
        .map(|o| Order::of(&base, o))
        .collect();
    let links = paging.links(
        &format!("{base}/v1/orders"),
        orders.len(),
        page.value.total,
        &[],
    );
    let body = OrderList {
        orders,
        total: page.value.total,
        links,
    };
    Ok(with_seq(Json(body).into_response(), page.seq))
}

async fn readable(
    state: &AppState,
    caller: &Caller,
    action: Action,
    id: OrderId,
) -> Result<(OrderRow, u64), ApiError> {
    let found = state.read.get_order(id).await?;
    let Some(row) = found.value else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "order {id} not found in project {}",
                caller.principal.project
            ),
        ));
    };
    check_order(state, caller, action, &row)?;
    Ok((row, found.seq))
}

/// `GET /v1/orders/{id}`.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(OrderPath, MinSeq),
    responses((status = 200, description = "The order", body = Order)),
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Consistent,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    let (row, seq) = readable(&state, &caller, Action::ReadSecret, id).await?;
    Ok(with_seq(
        Json(Order::of(&base_url(&state, &headers), &row)).into_response(),
        seq,
    ))
}

/// `DELETE /v1/orders/{id}`: 204; the secrets it made stay.
#[utoipa::path(
    delete,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(OrderPath),
    responses((status = 204, description = "Deleted; what it made stays")),
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = order_id(&id)?;
    let project = state
        .read
        .get_order(id)
        .await?
        .value
        .map(|row| row.project.into());
    let request = DeleteOrderRequest {
        command_id: None,
        project,
        id: id.to_string(),
    };
    let accepted = write(&state, command::ORDER_DELETE, &caller, &request).await?;
    Ok(no_content(accepted.seq))
}

/// `GET /v1/cas/local`: the local CA's certificate (PEM), to trust what it issues.
#[utoipa::path(
    get,
    path = "/v1/cas/local",
    tag = "orders",
    responses((status = 200, description = "The local CA's certificate, PEM", content_type = "application/x-pem-file", body = String)),
)]
pub async fn local_ca(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Response, ApiError> {
    let pem = infra::keystore::local_ca_certificate(&state.keys)
        .await
        .map_err(domain::Rejection::from)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "the local CA has no certificate yet; it is created by the first certificate \
                 order",
            )
        })?;
    let mut response = pem.into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-pem-file"),
    );
    Ok(response)
}
