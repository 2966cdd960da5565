//! Provider and service settings: `/admin/v1/provider`, `/admin/v1/service`.
//! A provider file given at start writes its own settings again then.

use axum::Json;
use axum::extract::State;
use menshen_model::Provider;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Principal, Viewer};
use crate::api::SharedState;
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::responses::{AdminBodyRefusals, ViewerRefusals};
use crate::inventory::validate::FieldError;
use crate::store::{ServiceSettings, now_millis};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(get_provider, put_provider))
        .routes(routes!(get_service, put_service))
}

async fn stored<T: serde::de::DeserializeOwned + Default>(
    state: &SharedState,
    name: &str,
) -> Result<T, ApiError> {
    match state.store.setting(name).await? {
        Some(value) => serde_json::from_value(value).map_err(ApiError::internal),
        None => Ok(T::default()),
    }
}

/// Replaces setting `name` with `value`, audited as `settings.NAME`.
async fn replace<T: serde::Serialize>(
    state: &SharedState,
    who: &Principal,
    name: &str,
    value: &T,
) -> Result<(), ApiError> {
    let now = now_millis();
    let value = serde_json::to_value(value).map_err(ApiError::internal)?;
    let audit = who.audit(&format!("settings.{name}"), format!("settings/{name}"), now);
    state
        .store
        .replace_setting(name, &value, audit, now)
        .await?;
    Ok(())
}

/// The provider description as stored (`/provider.json` adds the CA
/// fingerprint).
#[utoipa::path(
    get,
    path = "/admin/v1/provider",
    responses(
        (status = 200, description = "The provider description.", body = Provider),
        ViewerRefusals,
    ),
)]
async fn get_provider(
    _viewer: Viewer,
    State(state): State<SharedState>,
) -> Result<Json<Provider>, ApiError> {
    Ok(Json(stored(&state, "provider").await?))
}

/// Replaces the provider description. `ca_cert_fingerprint` is computed
/// from the CA, never stored.
#[utoipa::path(
    put,
    path = "/admin/v1/provider",
    request_body = Provider,
    responses(
        (status = 200, description = "Replaced.", body = Provider),
        AdminBodyRefusals,
    ),
)]
async fn put_provider(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: JsonBody,
) -> Result<Json<Provider>, ApiError> {
    let mut provider: Provider = body.object()?;
    let mut errors = Vec::new();
    if provider.domain.trim().is_empty() {
        errors.push(FieldError::new("domain", "must not be empty"));
    }
    if !(provider.api_uri.starts_with("https://") || provider.api_uri.starts_with("http://")) {
        errors.push(FieldError::new("api_uri", "must be an http(s) URL"));
    }
    if !provider.api_versions.iter().any(|v| v == "5") {
        errors.push(FieldError::new("api_versions", "must contain \"5\""));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    provider.ca_cert_fingerprint.clear();
    replace(&state, &who, "provider", &provider).await?;
    Ok(Json(provider))
}

/// The service settings as stored (`/api/5/service` adds the locations).
#[utoipa::path(
    get,
    path = "/admin/v1/service",
    responses(
        (status = 200, description = "The service settings.", body = ServiceSettings),
        ViewerRefusals,
    ),
)]
async fn get_service(
    _viewer: Viewer,
    State(state): State<SharedState>,
) -> Result<Json<ServiceSettings>, ApiError> {
    Ok(Json(stored(&state, "service").await?))
}

/// Replaces the service settings.
#[utoipa::path(
    put,
    path = "/admin/v1/service",
    request_body = ServiceSettings,
    responses(
        (status = 200, description = "Replaced.", body = ServiceSettings),
        AdminBodyRefusals,
    ),
)]
async fn put_service(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: JsonBody,
) -> Result<Json<ServiceSettings>, ApiError> {
    let service: ServiceSettings = body.object()?;
    let mut errors = Vec::new();
    if service.auth.trim().is_empty() {
        errors.push(FieldError::new("auth", "must not be empty"));
    }
    for (key, value) in &service.openvpn_configuration {
        if !matches!(value, Value::String(_) | Value::Bool(true)) {
            errors.push(FieldError::new(
                format!("openvpn_configuration.{key}"),
                "must be a string or true",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    replace(&state, &who, "service", &service).await?;
    Ok(Json(service))
}
