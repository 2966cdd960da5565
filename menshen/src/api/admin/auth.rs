//! Who is calling the admin API: menshen's own admin tokens (`menshen admin
//! token`), and, when configured, tokens of an external OpenID Connect
//! provider whose role claim names `admin` or `viewer`. Agent and invite
//! tokens are never accepted here.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::api::error::ApiError;
use crate::api::{AppState, SharedState};
use crate::auth::admin::Role;
use crate::auth::oidc::OidcError;
use crate::auth::{self, TokenError};
use crate::store::AuditEntry;

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who: recorded in the audit log.
    pub subject: String,
    pub role: Role,
}

impl Principal {
    /// The audit entry of this operator's `action` on `target`, at
    /// `at_millis`.
    pub fn audit(&self, action: &str, target: impl Into<String>, at_millis: i64) -> AuditEntry {
        AuditEntry::new(&self.subject, action, target, at_millis)
    }
}

/// Why an operator was not let in.
#[derive(Debug)]
pub enum Refusal {
    /// Who are you: 401.
    Token(TokenError),
    /// A valid token of the OpenID Connect provider that names no menshen
    /// role: 403.
    NoRole,
}

/// Checks a bearer token and says who presented it: a menshen admin token
/// first, then (when configured) the OpenID Connect provider's.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, Refusal> {
    let own = match state.signing_key.verify_admin_token(token) {
        Ok(claims) => {
            // Checked against this replica's snapshot: no database round trip.
            let revoked = state.inventory.current().admin_revocations.revokes(
                &claims.jti,
                &claims.sub,
                claims.iat,
            );
            if revoked {
                return Err(Refusal::Token(TokenError::Revoked));
            }
            return Ok(Principal {
                subject: claims.sub,
                role: claims.role,
            });
        }
        Err(err) => err,
    };
    let Some(oidc) = &state.oidc else {
        return Err(Refusal::Token(own));
    };
    // An expired menshen token is reported as such, not handed on.
    if matches!(own, TokenError::Expired) {
        return Err(Refusal::Token(own));
    }
    match oidc.verify(token).await {
        Ok(principal) => {
            let role = match principal.role.as_deref() {
                Some("admin") => Role::Admin,
                Some("viewer") => Role::Viewer,
                _ => return Err(Refusal::NoRole),
            };
            Ok(Principal {
                subject: format!("oidc:{}", principal.subject),
                role,
            })
        }
        Err(OidcError::Expired) => Err(Refusal::Token(TokenError::Expired)),
        Err(err) => Err(Refusal::Token(TokenError::Invalid(err.to_string()))),
    }
}

async fn principal(parts: &Parts, state: &SharedState) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let result = match auth::bearer(header) {
        Ok(token) => authenticate(state, token).await,
        Err(err) => Err(Refusal::Token(err)),
    };
    result.map_err(|refusal| match refusal {
        Refusal::Token(err) => {
            tracing::info!(reason = %err, "admin token refused");
            ApiError::unauthorized(match err {
                TokenError::Missing => "an admin token is required: Authorization: Bearer <token>",
                TokenError::Expired => "the admin token has expired",
                TokenError::Invalid(_) => "the admin token is not valid",
                TokenError::Revoked => "the admin token has been revoked",
            })
        }
        Refusal::NoRole => {
            tracing::info!("OpenID Connect token without a menshen role refused");
            ApiError::forbidden("the token names no menshen role (admin or viewer)")
        }
    })
}

/// An operator who may read: any role.
pub struct Viewer(pub Principal);

/// An operator who may change things: role `admin`.
pub struct Admin(pub Principal);

impl FromRequestParts<SharedState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        principal(parts, state).await.map(Viewer)
    }
}

impl FromRequestParts<SharedState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let principal = principal(parts, state).await?;
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
