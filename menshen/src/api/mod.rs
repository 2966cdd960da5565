//! The HTTP API: one module per resource, merged here. The admin API lives
//! in [`admin`].

pub mod admin;
mod agent;
mod body;
pub mod cached;
mod client;
mod consistency;
mod docs;
pub mod error;
mod health;
pub mod invite;
mod openvpn;
pub mod rate_limit;
mod responses;
mod status;
mod v3;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use crate::auth::SigningKey;
use crate::geo::Locator;
use crate::inventory::InventoryHandle;
use crate::inventory::invites::InviteUses;
use crate::pki::Pki;
use crate::pki::workers::Workers;
use crate::store::Store;
use crate::telemetry::{self, Metrics};
use error::ApiError;
use rate_limit::RateLimiter;

/// What every handler may use.
pub struct AppState {
    /// Verifies operators' tokens from an OpenID Connect provider, if one is
    /// configured.
    pub oidc: Option<Arc<crate::auth::oidc::OidcVerifier>>,
    pub store: Store,
    pub inventory: Arc<InventoryHandle>,
    pub metrics: Arc<Metrics>,
    pub signing_key: Arc<SigningKey>,
    /// How long a pushed resource stays listed without a heartbeat.
    pub resource_ttl: Duration,
    /// Issues client certificates.
    pub pki: Arc<Pki>,
    /// Where certificates are issued, off the request threads.
    pub issuers: Workers,
    /// Certificates and configurations per client address, when limited.
    pub cert_limit: Option<RateLimiter>,
    /// Bridge lists per client network, when limited.
    pub bridge_limit: Option<RateLimiter>,
    /// At most this many gateways in a served OpenVPN configuration.
    pub openvpn_max_remotes: usize,
    /// Where clients are, when they do not say.
    pub locator: Arc<Locator>,
    /// When invite tokens were used, until it is written to the store.
    pub invite_uses: Arc<InviteUses>,
    /// Whether `/status/data` gives a summary to anyone without a token.
    pub public_status: bool,
    /// Whether the LEAP API v3 routes answer.
    pub api_v3: bool,
    /// What gateways and bridges may claim beyond the common rules.
    pub policy: crate::inventory::validate::Policy,
    /// At most this many gateways and bridges per agent.
    pub max_resources_per_agent: usize,
}

pub type SharedState = Arc<AppState>;

/// Every route of the public listener but Swagger UI, with the OpenAPI
/// document built from their annotations. Each module adds its routes with
/// `OpenApiRouter::routes(routes!(handler))`, which serves a handler at the
/// path and method its `#[utoipa::path]` describes; a test checks that no
/// route is served without a description. The tag of each part of the API,
/// and the token it takes, are given here for all of its routes.
fn documented() -> OpenApiRouter<SharedState> {
    use docs::tagged;
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .merge(tagged("client", None, client::router()))
        .merge(tagged(
            "agent",
            Some(agent::SECURITY_SCHEME),
            agent::router(),
        ))
        .merge(tagged(
            "admin",
            Some(admin::SECURITY_SCHEME),
            admin::router(),
        ))
        .merge(tagged("client", None, openvpn::router()))
        .merge(tagged("client-v3", None, v3::router()))
        .merge(tagged("health", None, health::router()))
        .merge(status::router())
        .merge(tagged("docs", None, docs::router()))
}

/// The OpenAPI document of the public API, as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

/// Every route of the public listener, without the fallbacks, layers and
/// state [`router`] adds. Routes are added here, never in [`router`], so
/// that a test can list them all.
pub fn routes() -> Router<SharedState> {
    let (routes, _) = documented().split_for_parts();
    routes.merge(docs::swagger_ui())
}

/// The public router: client API, agent API, health checks and the
/// OpenAPI document.
pub fn router(state: SharedState) -> Router {
    routes()
        .fallback(|| async { ApiError::not_found("no such path") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn_with_state(state.clone(), every_request))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
            },
        ))
        .with_state(state)
}

/// What every request of the public listener goes through: counted and
/// timed (see [`telemetry::track_requests`]), and, for writes, refused
/// while the store is unreachable and answered once this replica sees them
/// (see [`consistency::own_writes`]). One middleware for both: each layer
/// costs every request.
async fn every_request(
    axum::extract::State(state): axum::extract::State<SharedState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    telemetry::track_requests(&state.metrics, request, |request| {
        consistency::own_writes(&state, request, next)
    })
    .await
}

/// The metrics router, for its own listener.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.render(),
                )
            }
        }),
    )
}
