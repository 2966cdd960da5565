//! Locations: `/admin/v1/locations`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Viewer};
use crate::api::SharedState;
use crate::api::body::JsonBody;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{AdminBodyRefusals, AdminRefusals, ViewerRefusals};
use crate::inventory::validate::FieldError;
use crate::inventory::validate::{LocationInput, check_location};
use crate::store::{LocationRow, now_millis};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(list_locations, create_location))
        .routes(routes!(update_location, delete_location))
}

/// The same rules as for locations in the provider file.
fn check(input: &LocationInput) -> Result<LocationRow, ApiError> {
    check_location(input).map_err(ApiError::invalid_fields)
}

/// Every location.
#[utoipa::path(
    get,
    path = "/admin/v1/locations",
    responses(
        (status = 200, description = "Every location, by label.", body = Vec<LocationRow>),
        ViewerRefusals,
    ),
)]
async fn list_locations(
    _viewer: Viewer,
    State(state): State<SharedState>,
) -> Result<Json<Vec<LocationRow>>, ApiError> {
    let rows = state.store.list_locations().await?;
    Ok(Json(rows))
}

/// Creates a location.
#[utoipa::path(
    post,
    path = "/admin/v1/locations",
    request_body = LocationInput,
    responses(
        (status = 201, description = "Created.", body = LocationRow),
        (status = 409, description = "A location with this label (ignoring case) exists.", body = ErrorBody),
        AdminBodyRefusals,
    ),
)]
async fn create_location(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: JsonBody,
) -> Result<(StatusCode, Json<LocationRow>), ApiError> {
    let input: LocationInput = body.object()?;
    let row = check(&input)?;
    let audit = who.audit(
        "location.create",
        format!("location/{}", row.label),
        now_millis(),
    );
    state.store.create_location(&row, audit).await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// Replaces a location made through this API (those of the provider file
/// are changed there).
#[utoipa::path(
    put,
    path = "/admin/v1/locations/{label}",
    params(("label" = String, Path, description = "The location's label.")),
    request_body = LocationInput,
    responses(
        (status = 200, description = "Replaced.", body = LocationRow),
        (status = 404, description = "No such location.", body = ErrorBody),
        (status = 409, description = "The location is defined in the provider file.", body = ErrorBody),
        AdminBodyRefusals,
    ),
)]
async fn update_location(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(label): Path<String>,
    body: JsonBody,
) -> Result<Json<LocationRow>, ApiError> {
    let mut input: LocationInput = body.object()?;
    if !input.label.is_empty() && input.label != label {
        return Err(ApiError::invalid_fields(vec![FieldError::new(
            "label",
            "a location's label cannot be changed",
        )]));
    }
    input.label = label;
    let row = check(&input)?;
    let audit = who.audit(
        "location.update",
        format!("location/{}", row.label),
        now_millis(),
    );
    state.store.update_location(&row, audit).await?;
    Ok(Json(row))
}

/// Deletes a location made through this API, unless a gateway or bridge
/// uses it.
#[utoipa::path(
    delete,
    path = "/admin/v1/locations/{label}",
    params(("label" = String, Path, description = "The location's label.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such location.", body = ErrorBody),
        (status = 409, description = "Gateways or bridges use it, or the provider file defines it.", body = ErrorBody),
        AdminRefusals,
    ),
)]
async fn delete_location(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(label): Path<String>,
) -> Result<StatusCode, ApiError> {
    let audit = who.audit("location.delete", format!("location/{label}"), now_millis());
    state.store.delete_location(&label, audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
