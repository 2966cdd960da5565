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

/// The two routes of one setting, `/admin/v1/$name`: `$get` reads it as
/// stored, `$put` replaces it with a body that `$check` accepts (and may
/// clear what is never stored).
macro_rules! setting_routes {
    (
        $name:literal, $ty:ty, $check:expr,
        $(#[$get_doc:meta])* $get:ident: $get_description:literal,
        $(#[$put_doc:meta])* $put:ident $(,)?
    ) => {
        $(#[$get_doc])*
        #[utoipa::path(
            get,
            path = concat!("/admin/v1/", $name),
            responses(
                (status = 200, description = $get_description, body = $ty),
                ViewerRefusals,
            ),
        )]
        async fn $get(
            _viewer: Viewer,
            State(state): State<SharedState>,
        ) -> Result<Json<$ty>, ApiError> {
            Ok(Json(stored(&state, $name).await?))
        }

        $(#[$put_doc])*
        #[utoipa::path(
            put,
            path = concat!("/admin/v1/", $name),
            request_body = $ty,
            responses(
                (status = 200, description = "Replaced.", body = $ty),
                AdminBodyRefusals,
            ),
        )]
        async fn $put(
            Admin(who): Admin,
            State(state): State<SharedState>,
            body: JsonBody,
        ) -> Result<Json<$ty>, ApiError> {
            let value = $check(body.object()?).map_err(ApiError::invalid_fields)?;
            replace(&state, &who, $name, &value).await?;
            Ok(Json(value))
        }
    };
}

setting_routes!(
    "provider",
    Provider,
    checked_provider,
    /// The provider description as stored (`/provider.json` adds the CA
    /// fingerprint).
    get_provider: "The provider description.",
    /// Replaces the provider description. `ca_cert_fingerprint` is computed
    /// from the CA, never stored.
    put_provider,
);

setting_routes!(
    "service",
    ServiceSettings,
    checked_service,
    /// The service settings as stored (`/api/5/service` adds the locations).
    get_service: "The service settings.",
    /// Replaces the service settings.
    put_service,
);

/// A provider description to store, or what is wrong with it.
fn checked_provider(mut provider: Provider) -> Result<Provider, Vec<FieldError>> {
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
        return Err(errors);
    }
    provider.ca_cert_fingerprint.clear();
    Ok(provider)
}

/// Service settings to store, or what is wrong with them.
fn checked_service(service: ServiceSettings) -> Result<ServiceSettings, Vec<FieldError>> {
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
    if errors.is_empty() {
        Ok(service)
    } else {
        Err(errors)
    }
}
