//! Liveness and readiness for orchestrators.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SharedState;
use super::error::{ApiError, ErrorBody};
use crate::store::now_millis;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

/// The answer of `/readyz`.
// Fields in alphabetical order, as the answer has always had them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Bridges in the snapshot, listed or not.
    bridges: usize,
    /// Gateways in the snapshot, listed or not.
    gateways: usize,
    /// How old the snapshot clients are served from is.
    snapshot_age_millis: i64,
    /// Always `ready`.
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
    /// `sqlite` or `postgres`.
    #[schema(value_type = String, example = "postgres")]
    store: &'static str,
}

/// The process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    responses((status = 200, description = "The process is up.", body = Health)),
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The store answers and a snapshot is loaded.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses(
        (status = 200, description = "Ready to serve.", body = Readiness),
        (status = 503, description = "The store does not answer (in time).", body = ErrorBody),
    ),
)]
async fn readyz(State(state): State<SharedState>) -> Result<Json<Readiness>, ApiError> {
    // What the background check last saw: answered at once, never waiting
    // for a store that does not answer.
    if !state.store.health().is_up() {
        return Err(ApiError::unavailable("the store does not answer"));
    }
    let snapshot = state.inventory.snapshot();
    Ok(Json(Readiness {
        bridges: snapshot.bridges.len(),
        gateways: snapshot.gateways.len(),
        snapshot_age_millis: now_millis().saturating_sub(snapshot.built_at_millis),
        status: "ready",
        store: state.store.engine_name(),
    }))
}
