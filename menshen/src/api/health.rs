//! Liveness and readiness for orchestrators.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use super::SharedState;
use super::error::ApiError;
use crate::store::now_millis;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// `GET /healthz`: the process is up.
async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: the store answers and a snapshot is loaded.
async fn readyz(State(state): State<SharedState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: store does not answer");
            return Err(ApiError::unavailable("the store does not answer"));
        }
        Err(_) => return Err(ApiError::unavailable("the store did not answer in time")),
    }
    let snapshot = state.inventory.snapshot();
    Ok(Json(json!({
        "status": "ready",
        "store": state.store.engine_name(),
        "snapshot_age_millis": now_millis().saturating_sub(snapshot.built_at_millis),
        "gateways": snapshot.gateways.len(),
        "bridges": snapshot.bridges.len(),
    })))
}
