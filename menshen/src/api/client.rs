//! The LEAP v5 client endpoints. Anonymous, many, read-only: every answer
//! comes from the in-memory snapshot, never from the database. The lists
//! may carry an invite token (see [`super::invite`]).

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::routing::get;

use super::SharedState;
use super::cached::{IfNoneMatch, respond};
use super::error::ApiError;
use super::invite::InviteToken;
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
    token: InviteToken,
) -> Response {
    let snapshot = state.inventory.snapshot();
    let invited = token.check(&state, &snapshot);
    let response = ClientQuery::parse(raw.as_deref(), ResourceKind::Gateway, &snapshot)
        .map_err(ApiError::from)
        .map(|query| {
            let query = invited.grant(query);
            let cached = snapshot.cached(ResourceKind::Gateway, &query, || {
                Cached::json(&select::gateways(&snapshot, &query))
            });
            respond(&cached, &if_none_match)
        });
    invited.finish(response)
}

/// `GET /api/5/bridges?cc=&loc=&port=&tr=&type=`: bridges for this client, in
/// the order to try them.
async fn bridges(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    if_none_match: IfNoneMatch,
    token: InviteToken,
) -> Response {
    let snapshot = state.inventory.snapshot();
    let invited = token.check(&state, &snapshot);
    let response = ClientQuery::parse(raw.as_deref(), ResourceKind::Bridge, &snapshot)
        .map_err(ApiError::from)
        .map(|query| {
            let query = invited.grant(query);
            let cached = snapshot.cached(ResourceKind::Bridge, &query, || {
                Cached::json(&select::bridges(&snapshot, &query))
            });
            respond(&cached, &if_none_match)
        });
    invited.finish(response)
}
