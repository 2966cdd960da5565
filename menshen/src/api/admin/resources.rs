//! Gateways and bridges as operators see them: `/admin/v1/gateways` and
//! `/admin/v1/bridges`. Lists show every resource with its status; the ones
//! defined here (origin `admin`) can be created and deleted; any can be put
//! in maintenance or given an `experimental` or `bucket` that outlives the
//! agent's pushes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use menshen_model::{Bridge, Gateway};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Viewer};
use crate::api::SharedState;
use crate::api::error::{ApiError, ErrorBody};
use crate::auth::invite::valid_bucket;
use crate::config::file::{bridge_row, gateway_row};
use crate::inventory::Status;
use crate::inventory::validate::{FieldError, check_bridges, check_gateways};
use crate::store::{AuditEntry, Origin, OverrideRow, ResourceKind, ResourceRow, now_millis};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(list_gateways, create_gateway))
        .routes(routes!(delete_gateway))
        .routes(routes!(set_gateway_overrides))
        .routes(routes!(list_bridges, create_bridge))
        .routes(routes!(delete_bridge))
        .routes(routes!(set_bridge_overrides))
}

/// What an operator set on a resource; `null` means the resource's own value.
#[derive(Debug, Default, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    /// Replaces the resource's `experimental`.
    experimental: Option<bool>,
    /// Replaces the resource's `bucket` (`""`: public).
    bucket: Option<String>,
    /// Left out of client lists, without being deleted.
    maintenance: bool,
}

/// A gateway or bridge, as operators see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminResource {
    /// `gateway` or `bridge`.
    kind: String,
    host: String,
    ip_addr: String,
    ip6_addr: String,
    location: String,
    port: i64,
    transport: String,
    #[serde(rename = "type")]
    r#type: String,
    load: f64,
    overloaded: bool,
    healthy: bool,
    /// As clients see it, with `overrides` applied.
    experimental: bool,
    /// As clients see it, with `overrides` applied.
    bucket: String,
    /// Bridges: the `auth` and `options` clients get.
    #[serde(skip_serializing_if = "String::is_empty")]
    auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    options: Option<Map<String, Value>>,
    /// Unix ms of the last heartbeat (agents) or of the definition.
    last_seen_millis: i64,
    /// `config` (the provider file), `admin` (this API) or `agent`.
    origin: String,
    /// The agent that reports it.
    agent: Option<String>,
    status: Status,
    /// Whether clients may be given it (subject to their filters and invites).
    listed: bool,
    overrides: Overrides,
}

fn view(row: &ResourceRow, over: Option<&OverrideRow>, now: i64, ttl_millis: i64) -> AdminResource {
    let status = Status::of(row, over, now, ttl_millis);
    AdminResource {
        kind: row.kind.as_str().into(),
        host: row.host.clone(),
        ip_addr: row.ip_addr.clone(),
        ip6_addr: row.ip6_addr.clone(),
        location: row.location.clone(),
        port: row.port,
        transport: row.transport.clone(),
        r#type: row.kind_type.clone(),
        load: row.load,
        overloaded: row.overloaded,
        healthy: row.healthy,
        experimental: over
            .and_then(|o| o.experimental)
            .unwrap_or(row.experimental),
        bucket: over
            .and_then(|o| o.bucket.clone())
            .unwrap_or_else(|| row.bucket.clone()),
        auth: row.auth.clone(),
        options: (row.kind == ResourceKind::Bridge).then(|| row.options_map()),
        last_seen_millis: row.last_seen_millis,
        origin: row.origin.clone(),
        agent: row.agent.clone(),
        status,
        listed: status.listed(),
        overrides: over
            .map(|o| Overrides {
                experimental: o.experimental,
                bucket: o.bucket.clone(),
                maintenance: o.maintenance,
            })
            .unwrap_or_default(),
    }
}

async fn list(state: &SharedState, kind: ResourceKind) -> Result<Vec<AdminResource>, ApiError> {
    // Straight from the store, so that a change is seen at once.
    let inventory = state
        .store
        .load_inventory()
        .await
        .map_err(ApiError::internal)?;
    let now = now_millis();
    let ttl = state.resource_ttl.as_millis() as i64;
    Ok(inventory
        .resources
        .iter()
        .filter(|r| r.kind == kind)
        .map(|r| {
            let over = inventory
                .overrides
                .iter()
                .find(|o| o.kind == kind && o.host == r.host);
            view(r, over, now, ttl)
        })
        .collect())
}

/// The single error of a one-item list check, without the `[0]`.
fn one(errors: Vec<FieldError>) -> ApiError {
    ApiError::invalid_fields(
        errors
            .into_iter()
            .map(|e| FieldError::new(e.field.trim_start_matches("[0]."), e.message))
            .collect(),
    )
}

/// Fills in what the provider file would default.
fn with_defaults(mut body: Value, defaults: &[(&str, Value)]) -> Value {
    if let Value::Object(map) = &mut body {
        for (key, value) in defaults {
            map.entry(*key).or_insert_with(|| value.clone());
        }
    }
    body
}

fn parse_resource<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    defaults: &[(&str, Value)],
) -> Result<T, ApiError> {
    let value: Value = super::parse(body)?;
    if !value.is_object() {
        return Err(ApiError::invalid_fields(vec![FieldError::new(
            "",
            "the body must be a JSON object",
        )]));
    }
    let value = with_defaults(value, defaults);
    serde_path_to_error::deserialize(value).map_err(|err| {
        ApiError::invalid_fields(vec![FieldError::new(
            err.path().to_string(),
            err.inner().to_string(),
        )])
    })
}

fn canonical_location(state: &SharedState, location: &mut String) {
    if let Some(label) = state.inventory.snapshot().location_label(location) {
        *location = label.to_owned();
    }
}

async fn create(
    state: &SharedState,
    who: &str,
    row: ResourceRow,
) -> Result<(StatusCode, Json<AdminResource>), ApiError> {
    let target = format!("{}/{}", row.kind.as_str(), row.host);
    let audit = AuditEntry::new(
        who,
        &format!("{}.create", row.kind.as_str()),
        target,
        now_millis(),
    );
    state.store.create_resource(&row, audit).await?;
    let ttl = state.resource_ttl.as_millis() as i64;
    Ok((
        StatusCode::CREATED,
        Json(view(&row, None, now_millis(), ttl)),
    ))
}

async fn delete(
    state: &SharedState,
    who: &str,
    kind: ResourceKind,
    host: &str,
) -> Result<StatusCode, ApiError> {
    let audit = AuditEntry::new(
        who,
        &format!("{}.delete", kind.as_str()),
        format!("{}/{host}", kind.as_str()),
        now_millis(),
    );
    state.store.delete_resource(kind, host, audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_overrides(
    state: &SharedState,
    who: &str,
    kind: ResourceKind,
    host: String,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AdminResource>, ApiError> {
    let input: Overrides = super::parse(body)?;
    if let Some(bucket) = &input.bucket
        && !bucket.is_empty()
        && !valid_bucket(bucket)
    {
        return Err(ApiError::invalid_fields(vec![FieldError::new(
            "bucket",
            "a bucket is 1-64 characters, without spaces or control characters",
        )]));
    }
    let over = OverrideRow {
        kind,
        host: host.clone(),
        experimental: input.experimental,
        bucket: input.bucket,
        maintenance: input.maintenance,
    };
    let audit = AuditEntry::new(
        who,
        &format!("{}.overrides", kind.as_str()),
        format!("{}/{host}", kind.as_str()),
        now_millis(),
    );
    state.store.set_override(&over, audit).await?;
    let (row, over) = state.store.resource(kind, &host).await?;
    let ttl = state.resource_ttl.as_millis() as i64;
    Ok(Json(view(&row, Some(&over), now_millis(), ttl)))
}

/// Every gateway, with its status.
#[utoipa::path(
    get,
    path = "/admin/v1/gateways",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every gateway, by host.", body = Vec<AdminResource>),
        (status = 401, description = "No admin token, or one that is not valid.", body = ErrorBody),
    ),
)]
async fn list_gateways(
    _viewer: Viewer,
    State(state): State<SharedState>,
) -> Result<Json<Vec<AdminResource>>, ApiError> {
    Ok(Json(list(&state, ResourceKind::Gateway).await?))
}

/// Defines a gateway by hand (origin `admin`: it never expires).
#[utoipa::path(
    post,
    path = "/admin/v1/gateways",
    tag = "admin",
    security(("admin_token" = [])),
    request_body(content = Gateway, description = "As clients see it; `type` defaults to `openvpn`, `healthy` to true."),
    responses(
        (status = 201, description = "Created.", body = AdminResource),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "No admin token, or one that is not valid.", body = ErrorBody),
        (status = 403, description = "The token may only read.", body = ErrorBody),
        (status = 409, description = "A gateway with this host exists.", body = ErrorBody),
        (status = 422, description = "Some fields are invalid, listed in `fields`.", body = ErrorBody),
    ),
)]
async fn create_gateway(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AdminResource>), ApiError> {
    let mut g: Gateway = parse_resource(
        body,
        &[("type", "openvpn".into()), ("healthy", true.into())],
    )?;
    g.transport.make_ascii_lowercase();
    g.kind.make_ascii_lowercase();
    canonical_location(&state, &mut g.location);
    g.last_seen_millis = now_millis();
    let snapshot = state.inventory.snapshot();
    let errors = check_gateways(std::slice::from_ref(&g), "", &|l| {
        snapshot.location_label(l) == Some(l)
    });
    if !errors.is_empty() {
        return Err(one(errors));
    }
    create(&state, &who.subject, gateway_row(&g, Origin::Admin, None)).await
}

/// Deletes a gateway defined through this API. Ones from the provider file
/// or an agent are refused (409): they would come back; put them in
/// maintenance instead.
#[utoipa::path(
    delete,
    path = "/admin/v1/gateways/{host}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("host" = String, Path, description = "The gateway's host.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No admin token, or one that is not valid.", body = ErrorBody),
        (status = 403, description = "The token may only read.", body = ErrorBody),
        (status = 404, description = "No such gateway.", body = ErrorBody),
        (status = 409, description = "Defined in the provider file or reported by an agent.", body = ErrorBody),
    ),
)]
async fn delete_gateway(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(host): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(&state, &who.subject, ResourceKind::Gateway, &host).await
}

/// Sets what operators decide about a gateway: maintenance, `experimental`,
/// `bucket`. Kept apart from the gateway, so agents' pushes do not undo it.
#[utoipa::path(
    put,
    path = "/admin/v1/gateways/{host}/overrides",
    tag = "admin",
    security(("admin_token" = [])),
    params(("host" = String, Path, description = "The gateway's host.")),
    request_body = Overrides,
    responses(
        (status = 200, description = "Set; the gateway as it is now.", body = AdminResource),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "No admin token, or one that is not valid.", body = ErrorBody),
        (status = 403, description = "The token may only read.", body = ErrorBody),
        (status = 404, description = "No such gateway.", body = ErrorBody),
        (status = 422, description = "Some fields are invalid, listed in `fields`.", body = ErrorBody),
    ),
)]
async fn set_gateway_overrides(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(host): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AdminResource>, ApiError> {
    set_overrides(&state, &who.subject, ResourceKind::Gateway, host, body).await
}

/// Every bridge, with its status.
#[utoipa::path(
    get,
    path = "/admin/v1/bridges",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every bridge, by host.", body = Vec<AdminResource>),
        (status = 401, description = "No admin token, or one that is not valid.", body = ErrorBody),
    ),
)]
async fn list_bridges(
    _viewer: Viewer,
    State(state): State<SharedState>,
) -> Result<Json<Vec<AdminResource>>, ApiError> {
    Ok(Json(list(&state, ResourceKind::Bridge).await?))
}

/// Defines a bridge by hand (origin `admin`: it never expires).
#[utoipa::path(
    post,
    path = "/admin/v1/bridges",
    tag = "admin",
    security(("admin_token" = [])),
    request_body(content = Bridge, description = "As clients see it; `type` defaults to `obfs4`, `transport` to `tcp`, `healthy` to true."),
    responses(
        (status = 201, description = "Created.", body = AdminResource),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "No admin token, or one that is not valid.", body = ErrorBody),
        (status = 403, description = "The token may only read.", body = ErrorBody),
        (status = 409, description = "A bridge with this host exists.", body = ErrorBody),
        (status = 422, description = "Some fields are invalid, listed in `fields`.", body = ErrorBody),
    ),
)]
async fn create_bridge(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AdminResource>), ApiError> {
    let mut b: Bridge = parse_resource(
        body,
        &[
            ("type", "obfs4".into()),
            ("transport", "tcp".into()),
            ("healthy", true.into()),
        ],
    )?;
    b.transport.make_ascii_lowercase();
    b.kind.make_ascii_lowercase();
    canonical_location(&state, &mut b.location);
    b.last_seen_millis = now_millis();
    let snapshot = state.inventory.snapshot();
    let errors = check_bridges(std::slice::from_ref(&b), "", &|l| {
        snapshot.location_label(l) == Some(l)
    });
    if !errors.is_empty() {
        return Err(one(errors));
    }
    create(&state, &who.subject, bridge_row(&b, Origin::Admin, None)).await
}

/// Deletes a bridge defined through this API. Ones from the provider file
/// or an agent are refused (409): they would come back; put them in
/// maintenance instead.
#[utoipa::path(
    delete,
    path = "/admin/v1/bridges/{host}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("host" = String, Path, description = "The bridge's host.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "No admin token, or one that is not valid.", body = ErrorBody),
        (status = 403, description = "The token may only read.", body = ErrorBody),
        (status = 404, description = "No such bridge.", body = ErrorBody),
        (status = 409, description = "Defined in the provider file or reported by an agent.", body = ErrorBody),
    ),
)]
async fn delete_bridge(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(host): Path<String>,
) -> Result<StatusCode, ApiError> {
    delete(&state, &who.subject, ResourceKind::Bridge, &host).await
}

/// Sets what operators decide about a bridge: maintenance, `experimental`,
/// `bucket`. Kept apart from the bridge, so agents' pushes do not undo it.
#[utoipa::path(
    put,
    path = "/admin/v1/bridges/{host}/overrides",
    tag = "admin",
    security(("admin_token" = [])),
    params(("host" = String, Path, description = "The bridge's host.")),
    request_body = Overrides,
    responses(
        (status = 200, description = "Set; the bridge as it is now.", body = AdminResource),
        (status = 400, description = "The body is not JSON.", body = ErrorBody),
        (status = 401, description = "No admin token, or one that is not valid.", body = ErrorBody),
        (status = 403, description = "The token may only read.", body = ErrorBody),
        (status = 404, description = "No such bridge.", body = ErrorBody),
        (status = 422, description = "Some fields are invalid, listed in `fields`.", body = ErrorBody),
    ),
)]
async fn set_bridge_overrides(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(host): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AdminResource>, ApiError> {
    set_overrides(&state, &who.subject, ResourceKind::Bridge, host, body).await
}
