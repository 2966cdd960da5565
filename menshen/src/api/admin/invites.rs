//! Invite tokens: `/admin/v1/invites`, as `menshen invite` does.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Viewer};
use crate::api::SharedState;
use crate::api::body::JsonBody;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{AdminBodyRefusals, AdminRefusals, ViewerRefusals};
use crate::auth::invite;
use crate::inventory::validate::FieldError;
use crate::inventory::validate::valid_bucket;
use crate::store::{InviteRow, InviteSelection, NewInvite, now_millis};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(list_invites, create_invites, delete_invites))
        .routes(routes!(delete_invite))
}

/// Invites to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvites {
    /// Buckets the tokens grant.
    buckets: Vec<String>,
    /// How many tokens (1-10000, default 1).
    #[serde(default = "one")]
    count: u32,
    /// How long they are valid, in seconds; without it, until deleted.
    #[serde(default)]
    expires_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

/// Created invites: the tokens are shown only now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedInvites {
    /// `x-menshen-auth-token` values for clients; menshen keeps only a hash.
    tokens: Vec<String>,
    /// Their ids, as listed.
    ids: Vec<String>,
    buckets: Vec<String>,
    expires_millis: Option<i64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete every invite that grants this bucket.
    bucket: Option<String>,
    /// Delete every invite.
    #[serde(default)]
    all: bool,
}

/// How many were deleted.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    deleted: u64,
}

/// Every invite: ids, buckets and times, never the tokens.
#[utoipa::path(
    get,
    path = "/admin/v1/invites",
    responses(
        (status = 200, description = "Every invite, oldest first.", body = Vec<InviteRow>),
        ViewerRefusals,
    ),
)]
async fn list_invites(
    _viewer: Viewer,
    State(state): State<SharedState>,
) -> Result<Json<Vec<InviteRow>>, ApiError> {
    Ok(Json(state.store.list_invites().await?))
}

/// Creates invite tokens, shown only in this answer.
#[utoipa::path(
    post,
    path = "/admin/v1/invites",
    request_body = NewInvites,
    responses(
        (status = 201, description = "Created.", body = CreatedInvites),
        AdminBodyRefusals,
    ),
)]
async fn create_invites(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: JsonBody,
) -> Result<(StatusCode, Json<CreatedInvites>), ApiError> {
    let mut input: NewInvites = body.object()?;
    let mut errors = Vec::new();
    if input.buckets.is_empty() {
        errors.push(FieldError::new("buckets", "name at least one bucket"));
    }
    for (i, bucket) in input.buckets.iter().enumerate() {
        if !valid_bucket(bucket) {
            errors.push(FieldError::new(
                format!("buckets[{i}]"),
                "use 1-64 characters, without spaces or control characters",
            ));
        }
    }
    if !(1..=10_000).contains(&input.count) {
        errors.push(FieldError::new("count", "must be 1-10000"));
    }
    if input.expires_secs == Some(0) || input.expires_secs.is_some_and(|s| s > 100 * 365 * 86_400) {
        errors.push(FieldError::new("expires_secs", "must be 1 s to 100 years"));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    input.buckets.sort();
    input.buckets.dedup();
    let now = now_millis();
    let expires_millis = input.expires_secs.map(|s| now + s as i64 * 1000);
    let mut tokens = Vec::new();
    let mut invites = Vec::new();
    for _ in 0..input.count {
        let new = invite::generate();
        invites.push(NewInvite {
            id: new.id,
            secret_hash: new.secret_hash,
            buckets: input.buckets.clone(),
            expires_millis,
        });
        tokens.push(new.token);
    }
    let ids: Vec<String> = invites.iter().map(|i| i.id.clone()).collect();
    let audit = who.audit("invite.create", "invites", now).after(
        serde_json::json!({"ids": ids, "buckets": input.buckets, "expires_millis": expires_millis}),
    );
    state.store.create_invites(&invites, now, audit).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedInvites {
            tokens,
            ids,
            buckets: input.buckets,
            expires_millis,
        }),
    ))
}

/// Deletes every invite of a bucket (`?bucket=B`) or all (`?all=true`).
#[utoipa::path(
    delete,
    path = "/admin/v1/invites",
    params(DeleteQuery),
    responses(
        (status = 200, description = "Deleted; how many.", body = Deleted),
        (status = 400, description = "Neither or both of `bucket` and `all`.", body = ErrorBody),
        AdminRefusals,
    ),
)]
async fn delete_invites(
    Admin(who): Admin,
    State(state): State<SharedState>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let Query(query) = query?;
    let (which, target) = match (&query.bucket, query.all) {
        (Some(bucket), false) if valid_bucket(bucket) => (
            InviteSelection::Bucket(bucket),
            format!("invites?bucket={bucket}"),
        ),
        (None, true) => (InviteSelection::All, "invites".to_owned()),
        _ => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "give exactly one of bucket=B (a valid bucket) or all=true",
            ));
        }
    };
    let audit = who.audit("invite.delete", target, now_millis());
    let deleted = state.store.delete_invites(which, audit).await?;
    Ok(Json(Deleted { deleted }))
}

/// Deletes one invite; its token stops working.
#[utoipa::path(
    delete,
    path = "/admin/v1/invites/{id}",
    params(("id" = String, Path, description = "The invite's id, as listed.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "No such invite.", body = ErrorBody),
        AdminRefusals,
    ),
)]
async fn delete_invite(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let audit = who.audit("invite.delete", format!("invite/{id}"), now_millis());
    let deleted = state
        .store
        .delete_invites(InviteSelection::Id(&id), audit)
        .await?;
    if deleted == 0 {
        return Err(ApiError::not_found(format!("no invite {id:?}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
