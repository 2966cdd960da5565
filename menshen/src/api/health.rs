//! Liveness and readiness for orchestrators.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SharedState;
use crate::store::now_millis;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// The answer of `/healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process is up, whatever the store's state.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
    /// `sqlite` or `postgres`.
    #[schema(value_type = String, example = "postgres")]
    store: &'static str,
    /// Whether the store answered its last round trip (a reload, the
    /// change listener, or the check every few seconds).
    store_up: bool,
    /// Why the store does not answer; only while it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "pool timed out while waiting for an open connection")]
    store_error: Option<String>,
}

/// The answer of `/readyz`.
// Fields in alphabetical order, as the answer has always had them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Bridges in the snapshot, listed or not.
    bridges: usize,
    /// Gateways in the snapshot, listed or not.
    gateways: usize,
    /// How many snapshots this process has swapped in since its first (0):
    /// one more after every rebuild, whether or not anything changed.
    #[schema(example = 42)]
    generation: u64,
    /// How old the snapshot clients are served from is.
    snapshot_age_millis: i64,
    /// Always `ready`.
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
    /// `sqlite` or `postgres`.
    #[schema(value_type = String, example = "postgres")]
    store: &'static str,
    /// Whether the store answered its last round trip; readiness does not
    /// depend on it.
    store_up: bool,
}

/// The process is up; the body tells how the store is.
///
/// Always 200 while menshen runs, also when the store does not answer:
/// menshen then keeps serving clients from its last snapshot. Answered
/// from memory, without asking the store.
#[utoipa::path(
    get,
    path = "/healthz",
    responses((status = 200, description = "The process is up.", body = Health)),
)]
async fn healthz(State(state): State<SharedState>) -> Json<Health> {
    let health = state.store.health();
    let store_up = health.is_up();
    Json(Health {
        status: "ok",
        store: state.store.engine_name(),
        store_up,
        store_error: if store_up { None } else { health.error() },
    })
}

/// A snapshot is loaded: clients can be served.
///
/// Ready does not mean the store answers: while it does not, menshen
/// serves the last snapshot, so that a database outage does not take every
/// replica out of rotation (`store_up` and `/healthz` show it). menshen
/// answers only once its first snapshot is loaded, so whenever it answers
/// it is ready. Answered from memory, without asking the store.
#[utoipa::path(
    get,
    path = "/readyz",
    responses((status = 200, description = "Ready to serve clients.", body = Readiness)),
)]
async fn readyz(State(state): State<SharedState>) -> Json<Readiness> {
    let snapshot = state.inventory.snapshot();
    Json(Readiness {
        bridges: snapshot.bridges.len(),
        gateways: snapshot.gateways.len(),
        generation: state.inventory.generation(),
        snapshot_age_millis: now_millis().saturating_sub(snapshot.built_at_millis),
        status: "ready",
        store: state.store.engine_name(),
        store_up: state.store.health().is_up(),
    })
}
