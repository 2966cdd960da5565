//! Writes through this replica: refused at once while the store is
//! unreachable, and visible to the writer's next read.

use std::time::Duration;

use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use super::SharedState;
use super::error::ApiError;

/// Marks the answer to a write that changed nothing clients see (an
/// agent's bare heartbeat): it is not held back for a rebuild.
#[derive(Debug, Clone, Copy)]
pub struct Unchanged;

/// Longest a successful write waits for the snapshot to include it.
const OWN_WRITE_PATIENCE: Duration = Duration::from_secs(2);

/// Whether `request` writes to the store: the agent and admin APIs' writes.
/// Clients' POSTs (the v3 routes) only read and are served during outages.
fn is_write(request: &Request) -> bool {
    let path = request.uri().path();
    !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) && (path.starts_with("/admin/") || path.starts_with("/api/5/agent/"))
}

/// Refuses writes with 503 while the store is known to be unreachable, and
/// answers a successful write only once this replica's snapshot includes
/// it, so that a list read right after one's own change shows it.
pub async fn own_writes(state: &SharedState, request: Request, next: Next) -> Response {
    if !is_write(&request) {
        return next.run(request).await;
    }
    if !state.store.health().is_up() {
        return ApiError::store_unavailable().into_response();
    }
    let before = state.store.change_count();
    let response = next.run(request).await;
    let after = state.store.change_count();
    // Nothing announced meanwhile, or nothing changed by this write (a bare
    // heartbeat while others' changes come in): nothing to wait for.
    let unchanged = response.extensions().get::<Unchanged>().is_some();
    if response.status().is_success() && after != before && !unchanged {
        // A store that went away right after the write cannot be reloaded
        // from: answer (the write is stored) instead of waiting in vain.
        let mut health = state.store.health().subscribe();
        let included = tokio::select! {
            included = state
                .inventory
                .includes(after, OWN_WRITE_PATIENCE)
                .instrument(tracing::info_span!("snapshot.wait")) => included,
            _ = health.wait_for(|up| !*up) => false,
        };
        if !included {
            tracing::debug!("a write was answered before the snapshot included it");
        }
    }
    response
}
