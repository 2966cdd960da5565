//! Gateways and bridges as operators see them: `/admin/v1/gateways` and
//! `/admin/v1/bridges`. Lists show every resource with its status; the ones
//! defined here (origin `admin`) can be created and deleted; any can be put
//! in maintenance or given an `experimental` or `bucket` that outlives the
//! agent's pushes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use menshen_model::{Bridge, Gateway};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Viewer};
use crate::api::SharedState;
use crate::api::body::JsonBody;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{AdminBodyRefusals, AdminRefusals, ViewerRefusals};
use crate::inventory::edit::{AdminResource, Overrides, new_bridge, new_gateway};
use crate::inventory::validate::{FieldError, Policy};
use crate::store::{AuditEntry, ResourceKind, ResourceRow, now_millis};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(list_gateways, create_gateway))
        .routes(routes!(delete_gateway))
        .routes(routes!(set_gateway_overrides))
        .routes(routes!(list_bridges, create_bridge))
        .routes(routes!(delete_bridge))
        .routes(routes!(set_bridge_overrides))
}

async fn list(state: &SharedState, kind: ResourceKind) -> Result<Vec<AdminResource>, ApiError> {
    // Straight from the store, so that a change is seen at once.
    let inventory = state
        .store
        .load_inventory()
        .await
        .map_err(ApiError::internal)?;
    let ttl = state.resource_ttl.as_millis() as i64;
    Ok(AdminResource::list(&inventory, kind, now_millis(), ttl))
}

/// The label of location `name` (ignoring case) in the current snapshot.
fn location_label(state: &SharedState) -> impl Fn(&str) -> Option<String> + use<> {
    let snapshot = state.inventory.snapshot();
    move |name| snapshot.location_label(name).map(str::to_owned)
}

/// What makes a resource row of a body, checked: [`new_gateway`] or
/// [`new_bridge`].
type NewResource = fn(
    serde_json::Value,
    &dyn Fn(&str) -> Option<String>,
    i64,
    &Policy,
) -> Result<ResourceRow, Vec<FieldError>>;

async fn create(
    state: &SharedState,
    who: &str,
    body: JsonBody,
    new: NewResource,
) -> Result<(StatusCode, Json<AdminResource>), ApiError> {
    let row = new(
        body.object()?,
        &location_label(state),
        now_millis(),
        &state.policy,
    )
    .map_err(ApiError::invalid_fields)?;
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
        Json(AdminResource::of(&row, None, now_millis(), ttl)),
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
    body: JsonBody,
) -> Result<Json<AdminResource>, ApiError> {
    let input: Overrides = body.object()?;
    let over = input
        .check(kind, &host)
        .map_err(|e| ApiError::invalid_fields(vec![e]))?;
    let audit = AuditEntry::new(
        who,
        &format!("{}.overrides", kind.as_str()),
        format!("{}/{host}", kind.as_str()),
        now_millis(),
    );
    state.store.set_override(&over, audit).await?;
    let (row, over) = state.store.resource(kind, &host).await?;
    let ttl = state.resource_ttl.as_millis() as i64;
    Ok(Json(AdminResource::of(
        &row,
        Some(&over),
        now_millis(),
        ttl,
    )))
}

/// Every gateway, with its status.
#[utoipa::path(
    get,
    path = "/admin/v1/gateways",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every gateway, by host.", body = Vec<AdminResource>),
        ViewerRefusals,
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
        (status = 409, description = "A gateway with this host exists.", body = ErrorBody),
        AdminBodyRefusals,
    ),
)]
async fn create_gateway(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: JsonBody,
) -> Result<(StatusCode, Json<AdminResource>), ApiError> {
    create(&state, &who.subject, body, new_gateway).await
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
        (status = 404, description = "No such gateway.", body = ErrorBody),
        (status = 409, description = "Defined in the provider file or reported by an agent.", body = ErrorBody),
        AdminRefusals,
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
        (status = 404, description = "No such gateway.", body = ErrorBody),
        AdminBodyRefusals,
    ),
)]
async fn set_gateway_overrides(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(host): Path<String>,
    body: JsonBody,
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
        ViewerRefusals,
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
        (status = 409, description = "A bridge with this host exists.", body = ErrorBody),
        AdminBodyRefusals,
    ),
)]
async fn create_bridge(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: JsonBody,
) -> Result<(StatusCode, Json<AdminResource>), ApiError> {
    create(&state, &who.subject, body, new_bridge).await
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
        (status = 404, description = "No such bridge.", body = ErrorBody),
        (status = 409, description = "Defined in the provider file or reported by an agent.", body = ErrorBody),
        AdminRefusals,
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
        (status = 404, description = "No such bridge.", body = ErrorBody),
        AdminBodyRefusals,
    ),
)]
async fn set_bridge_overrides(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(host): Path<String>,
    body: JsonBody,
) -> Result<Json<AdminResource>, ApiError> {
    set_overrides(&state, &who.subject, ResourceKind::Bridge, host, body).await
}
