//! Admin tokens: `/admin/v1/tokens`, as `menshen admin list` and `menshen
//! admin revoke` do. Tokens are minted on the command line only.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Viewer};
use crate::api::SharedState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{AdminRefusals, ViewerRefusals};
use crate::store::{AdminTokenRow, now_millis, valid_jti};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(list_tokens, revoke_subject))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SubjectQuery {
    /// Revoke every admin token of this subject issued up to now.
    subject: Option<String>,
}

/// A subject's tokens, revoked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SubjectRevoked {
    subject: String,
    /// Unix ms: tokens of the subject issued up to this moment (their
    /// `iat` second included) are refused; later ones work.
    revoked_until_millis: i64,
    /// How many recorded, unexpired tokens of the subject this stopped.
    recorded_tokens_revoked: u64,
}

/// Every admin token minted with `menshen admin token` (ids, never the
/// tokens), newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/tokens",
    responses(
        (status = 200, description = "Every recorded admin token, newest first.", body = Vec<AdminTokenRow>),
        ViewerRefusals,
    ),
)]
async fn list_tokens(
    _viewer: Viewer,
    State(state): State<SharedState>,
) -> Result<Json<Vec<AdminTokenRow>>, ApiError> {
    let rows = state.store.list_admin_tokens().await?;
    Ok(Json(rows))
}

/// Revokes one admin token by its id: every replica refuses it from its
/// next request on (this one before answering).
#[utoipa::path(
    delete,
    path = "/admin/v1/tokens/{jti}",
    params(("jti" = String, Path, description = "The token's id (`jti`, 32 hex digits).")),
    responses(
        (status = 200, description = "Revoked.", body = AdminTokenRow),
        (status = 400, description = "Not a token id.", body = ErrorBody),
        (status = 404, description = "No admin token with this id was minted.", body = ErrorBody),
        (status = 409, description = "Already revoked.", body = ErrorBody),
        AdminRefusals,
    ),
)]
async fn revoke_token(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(jti): Path<String>,
) -> Result<Json<AdminTokenRow>, ApiError> {
    if !valid_jti(&jti) {
        return Err(ApiError::bad_request(
            "invalid_jti",
            "not an admin token id: 32 lowercase hex digits, as `menshen admin token` printed it",
        ));
    }
    let now = now_millis();
    let audit = who.audit("admin_token.revoke", format!("admin_token/{jti}"), now);
    let row = state.store.revoke_admin_token(&jti, now, audit).await?;
    tracing::info!(jti = %jti, subject = %row.subject, by = %who.subject, "admin token revoked");
    Ok(Json(row))
}

/// Revokes every admin token of a subject issued up to now (recorded or
/// not); tokens minted for it afterwards work.
#[utoipa::path(
    delete,
    path = "/admin/v1/tokens",
    params(SubjectQuery),
    responses(
        (status = 200, description = "Revoked.", body = SubjectRevoked),
        (status = 400, description = "No `subject`, or one that is empty or too long.", body = ErrorBody),
        AdminRefusals,
    ),
)]
async fn revoke_subject(
    Admin(who): Admin,
    State(state): State<SharedState>,
    query: Result<Query<SubjectQuery>, QueryRejection>,
) -> Result<Json<SubjectRevoked>, ApiError> {
    let Query(query) = query?;
    let subject = query.subject.as_deref().map(str::trim).unwrap_or("");
    if subject.is_empty() || subject.len() > 256 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "give subject=NAME (1-256 characters): whose tokens to revoke",
        ));
    }
    let now = now_millis();
    let audit = who.audit(
        "admin_token.revoke_subject",
        format!("admin_subject/{subject}"),
        now,
    );
    let count = state
        .store
        .revoke_admin_subject(subject, now, audit)
        .await?;
    tracing::info!(subject = %subject, by = %who.subject, "admin tokens of a subject revoked");
    Ok(Json(SubjectRevoked {
        subject: subject.to_owned(),
        revoked_until_millis: now,
        recorded_tokens_revoked: count,
    }))
}
