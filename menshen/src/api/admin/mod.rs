//! The admin API under `/admin/v1`: what operators read and change. Every
//! route takes an admin token (see [`auth`]); every change is one
//! transaction with its audit row, announced so that snapshots reload.

mod agents;
mod audit;
pub mod auth;
mod invites;
mod locations;
mod resources;
mod settings;
mod tokens;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use super::SharedState;
use super::error::ApiError;

/// The security scheme of the admin routes in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "admin_token";

/// Largest accepted body.
const MAX_BODY_BYTES: usize = 256 * 1024;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .merge(locations::router())
        .merge(resources::router())
        .merge(agents::router())
        .merge(invites::router())
        .merge(settings::router())
        .merge(audit::router())
        .merge(tokens::router())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// A JSON object body: 400 when not JSON, 422 naming the field when of the
/// wrong shape.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    super::agent::parse_body(body, "")
}
