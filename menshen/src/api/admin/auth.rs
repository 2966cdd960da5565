//! Who is calling the admin API. Today only menshen's own admin tokens
//! (`menshen admin token`) are accepted; [`authenticate`] is the one place
//! where another verifier (an OpenID Connect provider's tokens) can be
//! added, mapping its claims to a [`Principal`].

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::api::error::ApiError;
use crate::api::{AppState, SharedState};
use crate::auth::admin::Role;
use crate::auth::{self, TokenError};

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who: recorded in the audit log.
    pub subject: String,
    pub role: Role,
}

/// Checks a bearer token and says who presented it.
pub fn authenticate(state: &AppState, token: &str) -> Result<Principal, TokenError> {
    let claims = state.signing_key.verify_admin_token(token)?;
    Ok(Principal {
        subject: claims.sub,
        role: claims.role,
    })
}

fn principal(parts: &Parts, state: &SharedState) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    auth::bearer(header)
        .and_then(|token| authenticate(state, token))
        .map_err(|err| {
            tracing::info!(reason = %err, "admin token refused");
            ApiError::unauthorized(match err {
                TokenError::Missing => "an admin token is required: Authorization: Bearer <token>",
                TokenError::Expired => "the admin token has expired",
                TokenError::Invalid(_) => "the admin token is not valid",
            })
        })
}

/// An operator who may read: any role.
pub struct Viewer(pub Principal);

/// An operator who may change things: role `admin`.
pub struct Admin(pub Principal);

impl FromRequestParts<SharedState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        principal(parts, state).map(Viewer)
    }
}

impl FromRequestParts<SharedState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let principal = principal(parts, state)?;
        match principal.role {
            Role::Admin => Ok(Admin(principal)),
            Role::Viewer => {
                tracing::info!(subject = %principal.subject, "viewer tried to change something");
                Err(ApiError::forbidden(
                    "this token may only read (role viewer)",
                ))
            }
        }
    }
}
