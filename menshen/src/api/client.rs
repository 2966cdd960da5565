//! The LEAP v5 client endpoints. Anonymous, many, read-only: every answer
//! comes from the in-memory snapshot, never from the database. The lists
//! may carry an invite token (see [`super::invite`]).

use axum::Router;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::routing::get;

use super::SharedState;
use super::cached::{IfNoneMatch, respond};
use super::error::ApiError;
use super::invite::InviteToken;
use crate::inventory::Cached;
use crate::select::{self, ClientQuery};
use crate::store::ResourceKind;

/// The client's address: the peer's, or a trusted proxy's word for it.
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<SharedState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok(ClientAddr(state.locator.client_ip(peer, &parts.headers)))
    }
}

impl ClientAddr {
    /// Fills in the client's position from its address when `cc` did not.
    pub fn locate(&self, state: &SharedState, query: &mut ClientQuery) {
        if query.near.is_none() {
            query.near = state.locator.locate(self.0);
        }
    }
}

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
    addr: ClientAddr,
    if_none_match: IfNoneMatch,
    token: InviteToken,
) -> Response {
    let snapshot = state.inventory.snapshot();
    let invited = token.check(&state, &snapshot);
    let response = ClientQuery::parse(raw.as_deref(), ResourceKind::Gateway, &snapshot)
        .map_err(ApiError::from)
        .map(|query| {
            let mut query = invited.grant(query);
            addr.locate(&state, &mut query);
            let held = |etag: &str| if_none_match.matches(etag);
            let cached = snapshot.cached(ResourceKind::Gateway, &query, held, |seed| {
                Cached::json(&select::gateways(&snapshot, &query, seed))
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
    addr: ClientAddr,
    if_none_match: IfNoneMatch,
    token: InviteToken,
) -> Response {
    let snapshot = state.inventory.snapshot();
    let invited = token.check(&state, &snapshot);
    let response = ClientQuery::parse(raw.as_deref(), ResourceKind::Bridge, &snapshot)
        .map_err(ApiError::from)
        .map(|query| {
            let mut query = invited.grant(query);
            addr.locate(&state, &mut query);
            let held = |etag: &str| if_none_match.matches(etag);
            let cached = snapshot.cached(ResourceKind::Bridge, &query, held, |seed| {
                Cached::json(&select::bridges(&snapshot, &query, seed))
            });
            respond(&cached, &if_none_match)
        });
    invited.finish(response)
}
