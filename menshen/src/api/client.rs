//! The LEAP v5 client endpoints. Anonymous, many, read-only: every answer
//! comes from the in-memory snapshot, never from the database. The lists
//! may carry an invite token (see [`super::invite`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, RawQuery, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use menshen_model::{Bridge, EipService, Gateway, Provider};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SharedState;
use super::cached::{IfNoneMatch, respond, respond_list};
use super::error::ApiError;
use super::invite::InviteToken;
use super::responses::{BadQuery, BridgeRateLimited, NotModified};
use crate::geo::client_ip::Network;
use crate::inventory::{Cached, Snapshot};
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
    /// Fills in the client's position and country from its address when
    /// `cc` did not.
    pub fn locate(&self, state: &SharedState, query: &mut ClientQuery) {
        if query.cc.is_none() && query.near.is_none() {
            (query.near, query.country) = state.locator.locate(self.0);
        }
    }
}

/// What a request for a list (or the v3 service description) brings: its
/// raw query, the client's address, the tags it holds and its invite token.
/// Every part is taken as it comes; none refuses a request.
pub struct ListRequest {
    /// Parsed with [`ClientQuery::parse`].
    pub raw: Option<String>,
    pub addr: ClientAddr,
    pub if_none_match: IfNoneMatch,
    pub token: InviteToken,
}

impl FromRequestParts<SharedState> for ListRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let RawQuery(raw) = RawQuery::from_request_parts(parts, state).await?;
        Ok(ListRequest {
            raw,
            addr: ClientAddr::from_request_parts(parts, state).await?,
            if_none_match: IfNoneMatch::from_request_parts(parts, state).await?,
            token: InviteToken::from_request_parts(parts, state).await?,
        })
    }
}

impl ListRequest {
    /// `answer` for this request's query: parsed for `kind` (400 when it
    /// does not parse), granted the invite token's buckets and placed at the
    /// client's address. The token's verdict is added to the response
    /// either way.
    pub fn answer(
        self,
        state: &SharedState,
        snapshot: &Snapshot,
        kind: ResourceKind,
        answer: impl FnOnce(&ClientQuery, &IfNoneMatch) -> Response,
    ) -> Response {
        let invited = self.token.check(state, snapshot);
        let response = ClientQuery::parse(self.raw.as_deref(), kind, snapshot)
            .map_err(ApiError::from)
            .map(|query| {
                let mut query = invited.grant(query);
                self.addr.locate(state, &mut query);
                query.network = Some(Network::of(self.addr.0));
                answer(&query, &self.if_none_match)
            });
        invited.finish(response)
    }
}

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(provider))
        .routes(routes!(service))
        .routes(routes!(gateways))
        .routes(routes!(bridges))
}

/// The query of `/api/5/gateways` and of the OpenVPN configuration, for
/// the OpenAPI document only: the handlers parse the raw query
/// ([`ClientQuery::parse`]) to treat an empty value as an absent one and
/// name a bad parameter. Values are case-insensitive; unknown parameters
/// are ignored.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct GatewayQuery {
    /// The client's country (ISO 3166-1 alpha-2): the list is ordered for
    /// it, nearest first. Without it, from the client's address.
    #[param(example = "NL")]
    cc: Option<String>,
    /// Only this location (a key of the service's `locations`).
    loc: Option<String>,
    /// Only this port.
    #[param(minimum = 1, maximum = 65535)]
    port: Option<u16>,
    /// Only this transport: `tcp` or `udp`.
    tr: Option<String>,
    /// Also experimental gateways (`true`, `1`, `yes`; `false`, `0`, `no`).
    experimental: Option<bool>,
    /// Least loaded first, wherever they are, instead of nearest first
    /// (`true`, `1`, `yes`; `false`, `0`, `no`).
    byload: Option<bool>,
}

/// The query of `/api/5/bridges`, for the OpenAPI document only (see
/// [`GatewayQuery`]).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct BridgeQuery {
    /// The client's country (ISO 3166-1 alpha-2): the list is ordered for
    /// it, nearest first. Without it, from the client's address.
    #[param(example = "NL")]
    cc: Option<String>,
    /// Only this location (a key of the service's `locations`).
    loc: Option<String>,
    /// Only this port.
    #[param(minimum = 1, maximum = 65535)]
    port: Option<u16>,
    /// Only this transport: `tcp`, `kcp` or `quic`.
    tr: Option<String>,
    /// Only this bridge type: `obfs4` or `obfs4-hop`.
    #[param(rename = "type")]
    kind: Option<String>,
    /// Also experimental bridges (`true`, `1`, `yes`; `false`, `0`, `no`).
    experimental: Option<bool>,
}

/// What names the snapshot's documents among its signed answers, by the
/// name of their handler.
#[allow(non_upper_case_globals)]
mod document {
    pub const provider: u64 = 1;
    pub const service: u64 = 2;

    /// The service for clients in `country`, where it differs.
    pub const fn service_in(country: u8) -> u64 {
        0x100 + country as u64
    }
}

/// `response` with the signature of `body` (named `key`) when answers are
/// signed and it has a body (a 304 has none to sign).
fn signed(snapshot: &Snapshot, mut response: Response, key: u64, body: &[u8]) -> Response {
    if let Some(signatures) = &snapshot.signatures
        && response.status() == axum::http::StatusCode::OK
    {
        sign_with(&mut response, signatures.header(key, body));
    }
    response
}

fn sign_with(response: &mut Response, signature: axum::http::HeaderValue) {
    response
        .headers_mut()
        .insert(crate::sign::HEADER_NAME, signature);
}

/// A route answering a ready document of the snapshot, as `$pick` chooses
/// it for the client, with its entity tag.
macro_rules! document_route {
    (
        $(#[$doc:meta])* $handler:ident: $path:literal, $body:ty, $description:literal,
        cache_control: $cache_control:literal, $pick:ident
    ) => {
        $(#[$doc])*
        #[utoipa::path(
            get,
            path = $path,
            params(IfNoneMatch),
            responses(
                (status = 200, description = $description, body = $body,
                    headers(
                        ("ETag" = String, description = "Entity tag of this answer"),
                        ("Cache-Control" = String, description = $cache_control),
                        ("x-menshen-signature" = String, description = "With --list-key-file: `kid=…; exp=…; sig=…`, an Ed25519 signature covering the exact body (its SHA-256; see `menshen verify`)"),
                    )),
                NotModified,
            ),
        )]
        async fn $handler(
            State(state): State<SharedState>,
            addr: ClientAddr,
            if_none_match: IfNoneMatch,
        ) -> Response {
            let snapshot = state.inventory.current();
            let document = $pick(&state, &snapshot, &addr);
            let mut response = respond(document.cached, &if_none_match);
            if document.private {
                private(&mut response);
            }
            signed(&snapshot, response, document.key, &document.cached.body)
        }
    };
}

/// A ready document as one client is given it.
struct Document<'a> {
    cached: &'a Cached,
    /// What names its body among the snapshot's signed answers.
    key: u64,
    /// Whether it depends on the client, so that no shared cache may give
    /// it to another.
    private: bool,
}

fn provider_document<'a>(_: &SharedState, snapshot: &'a Snapshot, _: &ClientAddr) -> Document<'a> {
    Document {
        cached: &snapshot.provider,
        key: document::provider,
        private: false,
    }
}

/// The service for the client's country: where resources are blocked in
/// some, their clients are told which locations have anything for them.
fn service_document<'a>(
    state: &SharedState,
    snapshot: &'a Snapshot,
    addr: &ClientAddr,
) -> Document<'a> {
    if !snapshot.service_varies() || !state.locator.places_addresses() {
        return Document {
            cached: &snapshot.service,
            key: document::service,
            private: false,
        };
    }
    let (_, country) = state.locator.locate(addr.0);
    let (cached, own) = snapshot.service_for(country);
    Document {
        cached,
        key: own.map_or(document::service, document::service_in),
        private: true,
    }
}

document_route! {
    /// The provider description.
    provider: "/provider.json", Provider, "The provider description.",
    cache_control: "`no-cache`", provider_document
}

document_route! {
    /// Service settings and locations.
    ///
    /// A location's `healthy` and `has_bridges` say whether it has a
    /// public gateway or bridge for this client: where operators blocked
    /// resources in some countries (`blocked_in`), clients there (placed by
    /// GeoIP) are not told of what they would not be given.
    service: "/api/5/service", EipService, "Service settings and locations.",
    cache_control: "`no-cache`; `private, no-cache` with --geoip-db where resources are blocked in some countries", service_document
}

/// Gateways for this client, in the order to try them.
///
/// Unhealthy gateways, gateways whose agent stopped reporting, experimental
/// ones (unless `experimental`) and invite-only ones (unless the invite
/// token grants their bucket) are left out.
#[utoipa::path(
    get,
    path = "/api/5/gateways",
    params(GatewayQuery, InviteToken, IfNoneMatch),
    responses(
        (status = 200, description = "The gateways, in the order to try them.", body = Vec<Gateway>,
            headers(
                ("ETag" = String, description = "Entity tag of this answer"),
                ("Cache-Control" = String, description = "`no-cache`; `private, no-cache` for an accepted invite token"),
                ("x-menshen-auth-token-status" = String, description = "`accepted` or `rejected`; absent without a token"),
                ("x-menshen-signature" = String, description = "With --list-key-file: `kid=…; exp=…; sig=…`, an Ed25519 signature covering the exact body (its SHA-256; see `menshen verify`)"),
            )),
        NotModified,
        BadQuery,
    ),
)]
async fn gateways(State(state): State<SharedState>, request: ListRequest) -> Response {
    list(&state, ResourceKind::Gateway, request)
}

/// Bridges for this client, in the order to try them.
///
/// Unhealthy bridges, bridges whose agent stopped reporting, experimental
/// ones (unless `experimental`) and invite-only ones (unless the invite
/// token grants their bucket) are left out. Of the public ones, each client
/// network (IPv4 /16, IPv6 /48) is given `--bridges-per-client` of each
/// transport among those its filters admit, the same ones for a whole
/// `--bridge-epoch` (all of them with `--bridges-per-client 0`); the invite
/// token's buckets give all of theirs besides.
#[utoipa::path(
    get,
    path = "/api/5/bridges",
    params(BridgeQuery, InviteToken, IfNoneMatch),
    responses(
        (status = 200, description = "The bridges, in the order to try them.", body = Vec<Bridge>,
            headers(
                ("ETag" = String, description = "Entity tag of this answer: the same for the same bridges"),
                ("Cache-Control" = String, description = "`private, no-cache` while bridges are shared out per network or for an accepted invite token; else `no-cache`"),
                ("x-menshen-auth-token-status" = String, description = "`accepted` or `rejected`; absent without a token"),
                ("x-menshen-signature" = String, description = "With --list-key-file: `kid=…; exp=…; sig=…`, an Ed25519 signature covering the exact body (its SHA-256; see `menshen verify`)"),
            )),
        NotModified,
        BadQuery,
        BridgeRateLimited,
    ),
)]
async fn bridges(State(state): State<SharedState>, request: ListRequest) -> Response {
    if let Err(refused) = bridge_allowance(&state, &request) {
        return refused.into_response();
    }
    list(&state, ResourceKind::Bridge, request)
}

/// Counts a request that is given bridges against its network's
/// `--bridge-rate-limit`: refused (429) beyond it. The v3 service
/// description, which lists bridges too, counts against the same limit, so
/// that asking by both routes gives no more.
pub(super) fn bridge_allowance(state: &SharedState, request: &ListRequest) -> Result<(), ApiError> {
    match &state.bridge_limit {
        Some(limiter) => limiter
            .check(request.addr.0)
            .map_err(|wait| ApiError::rate_limited("bridge lists", "network", wait)),
        None => Ok(()),
    }
}

/// `response`, which depends on the client's network when public bridges
/// are shared out in `snapshot`: then no shared cache may give it to
/// another client.
pub(super) fn per_network(snapshot: &Snapshot, mut response: Response) -> Response {
    if snapshot.catalog(ResourceKind::Bridge).ring().is_some() {
        private(&mut response);
    }
    response
}

/// Marks `response` as one for this client alone.
fn private(response: &mut Response) {
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("private, no-cache"),
    );
}

/// The list of `kind` for this request, assembled from the snapshot's
/// ready bytes in an order drawn for this request.
fn list(state: &SharedState, kind: ResourceKind, request: ListRequest) -> Response {
    let snapshot = state.inventory.current();
    request.answer(state, &snapshot, kind, |query, if_none_match| {
        let catalog = snapshot.catalog(kind);
        let held = |etag: &str| if_none_match.matches(etag);
        let mut rng = state.inventory.rng();
        let response = match &snapshot.signatures {
            None => respond_list(select::answer(catalog, query, &mut rng, held)),
            Some(signatures) => {
                let variants = signatures.signer().variants();
                let (answer, key) =
                    select::answer_repeatable(catalog, query, &mut rng, held, variants);
                let signature = answer.body.as_ref().map(|body| {
                    // Gateways and bridges apart, whatever their keys.
                    signatures.header(key ^ (kind as u64).wrapping_mul(0x9e37_79b9), body)
                });
                let mut response = respond_list(answer);
                if let Some(signature) = signature {
                    sign_with(&mut response, signature);
                }
                response
            }
        };
        match kind {
            ResourceKind::Bridge => per_network(&snapshot, response),
            ResourceKind::Gateway => response,
        }
    })
}
