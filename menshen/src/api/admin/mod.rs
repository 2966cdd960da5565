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

use utoipa_axum::router::OpenApiRouter;

use super::SharedState;

/// The security scheme of the admin routes in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "admin_token";

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .merge(locations::router())
        .merge(resources::router())
        .merge(agents::router())
        .merge(invites::router())
        .merge(settings::router())
        .merge(audit::router())
        .merge(tokens::router())
        .layer(super::body::limit())
}
