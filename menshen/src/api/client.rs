//! The LEAP v5 client endpoints. Anonymous, many, read-only: every answer
//! comes from the in-memory snapshot, never from the database.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;

use super::SharedState;
use super::cached::{IfNoneMatch, respond};
use super::error::ApiError;
use crate::inventory::Cached;
use crate::select::{self, ClientQuery};
use crate::store::ResourceKind;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/provider.json", get(provider))
        .route("/api/5/service", get(service))
        .route("/api/5/gateways", get(gateways))
        .route("/api/5/bridges", get(bridges))
}

/// `GET /provider.json`: the provider description.
async fn provider(State(state): State<SharedState>, if_none_match: IfNoneMatch) -> Response {
    respond(&state.inventory.snapshot().provider, &if_none_match)
}

/// `GET /api/5/service`: service settings and locations.
async fn service(State(state): State<SharedState>, if_none_match: IfNoneMatch) -> Response {
    respond(&state.inventory.snapshot().service, &if_none_match)
}

/// `GET /api/5/gateways?cc=&loc=&port=&tr=`: gateways for this client, in
/// the order to try them.
async fn gateways(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let snapshot = state.inventory.snapshot();
    let query = ClientQuery::parse(raw.as_deref(), ResourceKind::Gateway, &snapshot)?;
    let cached = snapshot.cached(ResourceKind::Gateway, &query, || {
        Cached::json(&select::gateways(&snapshot, &query))
    });
    Ok(respond(&cached, &if_none_match))
}

/// `GET /api/5/bridges?cc=&loc=&port=&tr=&type=`: bridges for this client, in
/// the order to try them.
async fn bridges(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    if_none_match: IfNoneMatch,
) -> Result<Response, ApiError> {
    let snapshot = state.inventory.snapshot();
    let query = ClientQuery::parse(raw.as_deref(), ResourceKind::Bridge, &snapshot)?;
    let cached = snapshot.cached(ResourceKind::Bridge, &query, || {
        Cached::json(&select::bridges(&snapshot, &query))
    });
    Ok(respond(&cached, &if_none_match))
}
