//! `/status`: a page operators look at — every location with its gateways
//! and bridges, live/stale/unhealthy at a glance, load as a bar, last seen
//! as "12 s ago", refreshed every few seconds without reloading.
//!
//! The page itself holds no data; its script fetches `/status/data` with the
//! operator's token (viewer or admin). With `--public-status`, a request
//! without a token gets a summary instead: counts per location, no hosts or
//! addresses, from memory (anonymous requests never reach the database).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SharedState;
use super::admin::auth::Viewer;
use super::error::{ApiError, ErrorBody};
use crate::inventory::Status;
use crate::store::{Inventory, Outages, StoreError, now_millis};

const PAGE: &str = include_str!("page.html");

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(data))
}

/// The status page (HTML; its data comes from `/status/data`).
#[utoipa::path(
    get,
    path = "/status",
    tag = "operators",
    responses((status = 200, description = "The status page.", content_type = "text/html")),
)]
async fn page() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
        .into_response()
}

/// A gateway or bridge on the status page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusResource {
    /// `gateway` or `bridge`.
    kind: &'static str,
    host: String,
    #[serde(rename = "type")]
    r#type: String,
    transport: String,
    /// 0 when it has none (hopping bridges).
    port: i64,
    status: Status,
    load: f64,
    overloaded: bool,
    /// Unix ms of the last heartbeat; 0 for hand-defined resources.
    last_seen_millis: i64,
    agent: Option<String>,
    /// Countries an operator blocked it in (ISO 3166-1 alpha-2): clients
    /// there are not given it.
    blocked_in: Vec<String>,
    /// What the prober last found (`untested` while it never checked it).
    probe: crate::store::ProbeState,
    /// What answered, or why its last check failed.
    #[serde(skip_serializing_if = "String::is_empty")]
    probe_detail: String,
}

/// A location on the status page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusLocation {
    label: String,
    display_name: String,
    country_code: String,
    /// Resources by status.
    counts: BTreeMap<Status, usize>,
    /// Every resource (left out of the public summary).
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Vec<StatusResource>>,
}

/// What the status page shows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusData {
    /// The server's clock, so that "12 s ago" is right on any client.
    now_millis: i64,
    /// How long a pushed resource stays listed without a heartbeat.
    ttl_millis: i64,
    /// Whether this is the public summary (no resources).
    public: bool,
    /// Resources by status, over all locations.
    summary: BTreeMap<Status, usize>,
    locations: Vec<StatusLocation>,
    /// Whether the store answered. While it does not, the page shows this
    /// replica's last snapshot (what clients are served), as of
    /// `snapshot_millis`, and says so.
    store_up: bool,
    /// When the inventory shown was read from the store (Unix ms), or,
    /// while the store does not answer, when the snapshot shown was built.
    snapshot_millis: i64,
}

fn build(
    inventory: &Inventory,
    now: i64,
    ttl_millis: i64,
    public: bool,
    read: Read,
    outages: &Outages,
) -> StatusData {
    let mut summary = BTreeMap::new();
    let probes = inventory.probes_by_resource();
    let locations = inventory
        .locations
        .iter()
        .map(|l| {
            let mut counts = BTreeMap::new();
            let mut resources: Vec<StatusResource> = inventory
                .resources
                .iter()
                .filter(|r| r.location == l.label)
                .map(|r| {
                    let over = inventory
                        .overrides
                        .iter()
                        .find(|o| o.kind == r.kind && o.host == r.host);
                    let status = Status::despite(r, over, now, ttl_millis, outages);
                    let probe = probes.get(&(r.kind, r.host.as_str())).copied();
                    *counts.entry(status).or_insert(0) += 1;
                    *summary.entry(status).or_insert(0) += 1;
                    StatusResource {
                        kind: r.kind.as_str(),
                        host: r.host.clone(),
                        r#type: r.kind_type.clone(),
                        transport: r.transport.clone(),
                        port: r.port,
                        status,
                        load: r.load,
                        overloaded: r.overloaded,
                        last_seen_millis: if r.expires() { r.last_seen_millis } else { 0 },
                        agent: r.agent.clone(),
                        blocked_in: over.map(|o| o.blocked_in.0.clone()).unwrap_or_default(),
                        probe: probe.map(|p| p.state).unwrap_or_default(),
                        probe_detail: probe.map(|p| p.detail.clone()).unwrap_or_default(),
                    }
                })
                .collect();
            resources.sort_by(|a, b| (a.kind, &a.host).cmp(&(b.kind, &b.host)));
            StatusLocation {
                label: l.label.clone(),
                display_name: l.display_name.clone(),
                country_code: l.country_code.clone(),
                counts,
                resources: (!public).then_some(resources),
            }
        })
        .collect();
    StatusData {
        now_millis: now,
        ttl_millis,
        public,
        summary,
        locations,
        store_up: read.store_up,
        snapshot_millis: read.at_millis,
    }
}

/// Where the inventory shown comes from: read now, or this replica's last
/// snapshot while the store does not answer.
struct Read {
    store_up: bool,
    at_millis: i64,
}

/// Whether the request carries a token (and so wants the full view).
struct HasToken(bool);

impl FromRequestParts<SharedState> for HasToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        Ok(HasToken(parts.headers.contains_key(AUTHORIZATION)))
    }
}

/// The status page's data: everything for a viewer or admin token; with
/// `--public-status`, a summary (counts per location) without one.
#[utoipa::path(
    get,
    path = "/status/data",
    tag = "operators",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Locations with their gateways and bridges and how they stand.", body = StatusData),
        (status = 401, description = "No valid operator token (and no public summary).", body = ErrorBody),
        (status = 403, description = "The token names no menshen role.", body = ErrorBody),
        (status = 500, description = "The store could not be read.", body = ErrorBody),
    ),
)]
async fn data(
    State(state): State<SharedState>,
    HasToken(has_token): HasToken,
    viewer: Result<Viewer, ApiError>,
) -> Result<Json<StatusData>, ApiError> {
    let ttl = state.resource_ttl.as_millis() as i64;
    // Time the store was unreachable does not count towards TTLs, as in
    // the client lists.
    let outages = state.store.health().outages();
    // The page of `inventory` as read then; the public summary when `public`.
    let answer = |inventory: &Inventory, public: bool, read: Read| {
        Json(build(inventory, now_millis(), ttl, public, read, &outages))
    };
    let snapshot = || {
        let read = Read {
            store_up: state.store.health().is_up(),
            at_millis: state.inventory.snapshot().built_at_millis,
        };
        (state.inventory.inventory(), read)
    };
    if state.public_status && !has_token {
        let (inventory, read) = snapshot();
        return Ok(answer(&inventory, true, read));
    }
    viewer?;
    // From the store, so that heartbeat times are current; while it does
    // not answer, the last snapshot, so that operators still see what
    // clients are served.
    if state.store.health().is_up() {
        let now = now_millis();
        match state.store.load_inventory().await {
            Ok(inventory) => {
                let read = Read {
                    store_up: true,
                    at_millis: now,
                };
                return Ok(answer(&inventory, false, read));
            }
            Err(StoreError::Database(err)) if crate::store::is_unavailable(&err) => {}
            Err(err) => return Err(ApiError::internal(err)),
        }
    }
    let (inventory, mut read) = snapshot();
    read.store_up = false;
    Ok(answer(&inventory, false, read))
}
