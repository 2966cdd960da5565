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

use super::auth::{Admin, Principal, Viewer};
use crate::api::SharedState;
use crate::api::body::JsonBody;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{AdminBodyRefusals, AdminRefusals, ViewerRefusals};
use crate::inventory::edit::{AdminResource, Overrides, new_resource};
use crate::inventory::validate::{FieldError, Policy};
use crate::store::{ResourceKind, ResourceRow, now_millis};

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
    let inventory = state.store.load_inventory().await?;
    let ttl = state.resource_ttl.as_millis() as i64;
    let mut list = AdminResource::list(&inventory, kind, now_millis(), ttl);
    // What this replica leaves out as dysfunctional is not listed either.
    let snapshot = state.inventory.current();
    for r in &mut list {
        r.listed &= !snapshot.probes.excludes(kind, &r.host);
    }
    Ok(list)
}

/// The label of location `name` (ignoring case) in the current snapshot.
fn location_label(state: &SharedState) -> impl Fn(&str) -> Option<String> + use<> {
    let snapshot = state.inventory.snapshot();
    move |name| snapshot.location_label(name).map(str::to_owned)
}

/// What makes a resource row of a body, checked: [`new_resource`] of a
/// gateway or a bridge.
type NewResource = fn(
    serde_json::Value,
    &dyn Fn(&str) -> Option<String>,
    i64,
    &Policy,
) -> Result<ResourceRow, Vec<FieldError>>;

async fn create(
    state: &SharedState,
    who: &Principal,
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
    let audit = who.audit(
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
    who: &Principal,
    kind: ResourceKind,
    host: &str,
) -> Result<StatusCode, ApiError> {
    let audit = who.audit(
        &format!("{}.delete", kind.as_str()),
        format!("{}/{host}", kind.as_str()),
        now_millis(),
    );
    state.store.delete_resource(kind, host, audit).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_overrides(
    state: &SharedState,
    who: &Principal,
    kind: ResourceKind,
    host: String,
    body: JsonBody,
) -> Result<Json<AdminResource>, ApiError> {
    let input: Overrides = body.object()?;
    let over = input
        .check(kind, &host)
        .map_err(|e| ApiError::invalid_fields(vec![e]))?;
    let audit = who.audit(
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

/// The four routes of one kind of resource, described in the same words for
/// gateways and bridges: `$list` and `$create` at `/admin/v1/$plural`,
/// `$delete` at `/admin/v1/$plural/{host}` and `$set_overrides` at
/// `/admin/v1/$plural/{host}/overrides`. `$defaults` says what a created one
/// gets unless the body says otherwise.
macro_rules! resource_routes {
    (
        $kind:expr, $name:literal, $plural:literal, $wire:ty, $new:expr, $defaults:literal,
        $list:ident, $create:ident, $delete:ident, $set_overrides:ident $(,)?
    ) => {
        #[utoipa::path(
            get,
            path = concat!("/admin/v1/", $plural),
            summary = concat!("Every ", $name, ", with its status."),
            responses(
                (status = 200, description = concat!("Every ", $name, ", by host."), body = Vec<AdminResource>),
                ViewerRefusals,
            ),
        )]
        async fn $list(
            _viewer: Viewer,
            State(state): State<SharedState>,
        ) -> Result<Json<Vec<AdminResource>>, ApiError> {
            Ok(Json(list(&state, $kind).await?))
        }

        #[utoipa::path(
            post,
            path = concat!("/admin/v1/", $plural),
            summary = concat!("Defines a ", $name, " by hand (origin `admin`: it never expires)."),
            request_body(content = $wire, description = concat!("As clients see it; ", $defaults)),
            responses(
                (status = 201, description = "Created.", body = AdminResource),
                (status = 409, description = concat!("A ", $name, " with this host exists."), body = ErrorBody),
                AdminBodyRefusals,
            ),
        )]
        async fn $create(
            Admin(who): Admin,
            State(state): State<SharedState>,
            body: JsonBody,
        ) -> Result<(StatusCode, Json<AdminResource>), ApiError> {
            create(&state, &who, body, $new).await
        }

        #[utoipa::path(
            delete,
            path = concat!("/admin/v1/", $plural, "/{host}"),
            summary = concat!(
                "Deletes a ", $name, " defined through this API. Ones from the provider file\n",
                "or an agent are refused (409): they would come back; put them in\n",
                "maintenance instead."
            ),
            params(("host" = String, Path, description = concat!("The ", $name, "'s host."))),
            responses(
                (status = 204, description = "Deleted."),
                (status = 404, description = concat!("No such ", $name, "."), body = ErrorBody),
                (status = 409, description = "Defined in the provider file or reported by an agent.", body = ErrorBody),
                AdminRefusals,
            ),
        )]
        async fn $delete(
            Admin(who): Admin,
            State(state): State<SharedState>,
            Path(host): Path<String>,
        ) -> Result<StatusCode, ApiError> {
            delete(&state, &who, $kind, &host).await
        }

        #[utoipa::path(
            put,
            path = concat!("/admin/v1/", $plural, "/{host}/overrides"),
            summary = concat!(
                "Sets what operators decide about a ", $name, ": maintenance, `experimental`,\n",
                "`bucket`. Kept apart from the ", $name, ", so agents' pushes do not undo it."
            ),
            params(("host" = String, Path, description = concat!("The ", $name, "'s host."))),
            request_body = Overrides,
            responses(
                (status = 200, description = concat!("Set; the ", $name, " as it is now."), body = AdminResource),
                (status = 404, description = concat!("No such ", $name, "."), body = ErrorBody),
                AdminBodyRefusals,
            ),
        )]
        async fn $set_overrides(
            Admin(who): Admin,
            State(state): State<SharedState>,
            Path(host): Path<String>,
            body: JsonBody,
        ) -> Result<Json<AdminResource>, ApiError> {
            set_overrides(&state, &who, $kind, host, body).await
        }
    };
}

resource_routes!(
    ResourceKind::Gateway,
    "gateway",
    "gateways",
    Gateway,
    new_resource::<Gateway>,
    "`type` defaults to `openvpn`, `healthy` to true.",
    list_gateways,
    create_gateway,
    delete_gateway,
    set_gateway_overrides,
);

resource_routes!(
    ResourceKind::Bridge,
    "bridge",
    "bridges",
    Bridge,
    new_resource::<Bridge>,
    "`type` defaults to `obfs4`, `transport` to `tcp`, `healthy` to true.",
    list_bridges,
    create_bridge,
    delete_bridge,
    set_bridge_overrides,
);
