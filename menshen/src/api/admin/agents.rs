//! Agents: `/admin/v1/agents`, as `menshen agent` does.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Admin, Viewer};
use crate::api::SharedState;
use crate::api::body::JsonBody;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::{AdminBodyRefusals, AdminRefusals, ViewerRefusals};
use crate::auth::{random_id, valid_agent_name};
use crate::inventory::validate::FieldError;
use crate::store::{AgentRow, now_millis};

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(revoke_agent))
}

/// Default lifetime of an agent token: 365 days.
const DEFAULT_TTL_SECS: i64 = 365 * 86_400;

/// An agent to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    /// 1-64 lowercase letters, digits, '-', '_' or '.'.
    name: String,
    /// How long the token is valid, in seconds (default 365 days).
    #[serde(default)]
    ttl_secs: Option<i64>,
}

/// A created agent and its token, shown only now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedAgent {
    name: String,
    /// `Authorization: Bearer <token>` for the agent; not kept by menshen.
    token: String,
    /// Unix ms when the token expires.
    expires_millis: i64,
}

/// Every agent, revoked ones too.
#[utoipa::path(
    get,
    path = "/admin/v1/agents",
    responses(
        (status = 200, description = "Every agent, by name.", body = Vec<AgentRow>),
        ViewerRefusals,
    ),
)]
async fn list_agents(
    _viewer: Viewer,
    State(state): State<SharedState>,
) -> Result<Json<Vec<AgentRow>>, ApiError> {
    Ok(Json(state.store.list_agents().await?))
}

/// Creates an agent (or a revoked one anew) and returns its token, once.
#[utoipa::path(
    post,
    path = "/admin/v1/agents",
    request_body = NewAgent,
    responses(
        (status = 201, description = "Created; the token is shown only now.", body = CreatedAgent),
        (status = 409, description = "An agent with this name exists.", body = ErrorBody),
        AdminBodyRefusals,
    ),
)]
async fn create_agent(
    Admin(who): Admin,
    State(state): State<SharedState>,
    body: JsonBody,
) -> Result<(StatusCode, Json<CreatedAgent>), ApiError> {
    let input: NewAgent = body.object()?;
    let mut errors = Vec::new();
    if !valid_agent_name(&input.name) {
        errors.push(FieldError::new(
            "name",
            "use 1-64 lowercase letters, digits, '-', '_' or '.'",
        ));
    }
    let ttl_secs = input.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if !(60..=10 * 365 * 86_400).contains(&ttl_secs) {
        errors.push(FieldError::new("ttl_secs", "must be 60 s to 10 years"));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    let now = now_millis();
    let token_id = random_id(16);
    let expires_millis = now + ttl_secs * 1000;
    let audit = who
        .audit("agent.create", format!("agent/{}", input.name), now)
        .after(serde_json::json!({"name": input.name, "expires_millis": expires_millis}));
    state
        .store
        .create_agent(&input.name, &token_id, now, audit)
        .await?;
    let token = state
        .signing_key
        .mint_agent_token(&input.name, &token_id, now / 1000, ttl_secs);
    Ok((
        StatusCode::CREATED,
        Json(CreatedAgent {
            name: input.name,
            token,
            expires_millis,
        }),
    ))
}

/// Revokes an agent: its token stops working and what it reported leaves
/// the lists at once.
#[utoipa::path(
    delete,
    path = "/admin/v1/agents/{name}",
    params(("name" = String, Path, description = "The agent's name.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 404, description = "No such agent, or already revoked.", body = ErrorBody),
        AdminRefusals,
    ),
)]
async fn revoke_agent(
    Admin(who): Admin,
    State(state): State<SharedState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let now = now_millis();
    let audit = who
        .audit("agent.revoke", format!("agent/{name}"), now)
        .before(serde_json::json!({"name": name}));
    state.store.revoke_agent(&name, now, audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
