//! `PUT /api/5/agent/gateways` and `PUT /api/5/agent/bridges`: agents push
//! the whole current set of what runs on their host.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse as _, Response};
use menshen_model::{Bridge, Gateway};
use tracing::Instrument as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SharedState;
use super::body::JsonBody;
use super::error::{ApiError, ErrorBody};
use crate::auth::{self, TokenError};
use crate::inventory::resource::ResourceBody;
use crate::inventory::validate::check_count;
use crate::store::{AgentPush, Origin, ResourceKind, ResourceRow, StoreError, now_millis};
use crate::telemetry::PushOutcome;

/// Longest a push waits for its transaction before it is answered 503 (the
/// transaction still finishes or rolls back on its own); below the agent's
/// request timeout, so that the agent hears why.
const WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The security scheme of the agent routes in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "agent_token";

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(put_gateways))
        .routes(routes!(put_bridges))
        .layer(super::body::limit())
}

/// An agent that presented a valid token (its revocation is checked when
/// writing, in the same transaction).
pub struct Agent {
    pub name: String,
    pub token_id: String,
}

impl FromRequestParts<SharedState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &SharedState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let verified = auth::bearer(header).and_then(|t| state.signing_key.verify_agent_token(t));
        match verified {
            Ok(claims) => Ok(Agent {
                name: claims.sub,
                token_id: claims.jti,
            }),
            Err(err) => {
                tracing::info!(reason = %err, "agent token refused");
                Err(ApiError::unauthorized(match err {
                    TokenError::Missing => {
                        "an agent token is required: Authorization: Bearer <token>"
                    }
                    TokenError::Expired => "the agent token has expired",
                    TokenError::Invalid(_) => "the agent token is not valid",
                    TokenError::Revoked => "the agent token has been revoked",
                }))
            }
        }
    }
}

async fn push(
    state: &SharedState,
    agent: &Agent,
    kind: ResourceKind,
    rows: Vec<ResourceRow>,
) -> Result<(StatusCode, Vec<ResourceRow>, bool), ApiError> {
    let ttl = state.resource_ttl.as_millis() as i64;
    let now = rows.first().map_or_else(now_millis, |r| r.last_seen_millis);
    if !state.store.health().is_up() {
        return Err(ApiError::store_unavailable());
    }
    // Written in a task of its own: a client that hangs up mid-way must not
    // cut a transaction short.
    let write = {
        let store = state.store.clone();
        let (name, token_id) = (agent.name.clone(), agent.token_id.clone());
        let count = rows.len();
        let max = state.max_resources_per_agent;
        tokio::spawn(
            async move {
                let push = AgentPush {
                    agent: &name,
                    token_id: &token_id,
                    kind,
                    rows: &rows,
                    stale_before: now - ttl,
                    max_resources: max,
                };
                store
                    .push_agent_resources(&push)
                    .await
                    .map(|pushed| (pushed, count))
            }
            .in_current_span(),
        )
    };
    let (pushed, count) = tokio::time::timeout(WRITE_DEADLINE, write)
        .await
        .map_err(|_| {
            tracing::warn!(agent = %agent.name, "push not stored within {WRITE_DEADLINE:?}");
            ApiError::store_unavailable()
        })?
        .map_err(ApiError::internal)?
        .map_err(|err| {
            match &err {
                StoreError::NotAuthorized => {
                    tracing::info!(agent = %agent.name, "push from a revoked or replaced token refused");
                }
                StoreError::HostTaken(host) => {
                    tracing::warn!(agent = %agent.name, %host, "push refused: host belongs to someone else");
                }
                StoreError::TooMany { count, max, .. } => {
                    tracing::warn!(agent = %agent.name, count, max, "push refused: too many resources");
                }
                StoreError::Database(db) if crate::store::is_unavailable(db) => {
                    state.store.health().failed(db);
                }
                _ => {}
            }
            ApiError::from(err)
        })?;
    tracing::debug!(agent = %agent.name, kind = kind.as_str(), count, changed = pushed.changed, "push stored");
    let status = if pushed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, pushed.stored, pushed.changed))
}

/// What a push may be refused with, gateways or bridges; for the document
/// only (see `super::responses`).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum PushRefusals {
    #[response(
        status = 400,
        description = "The body is not JSON (`invalid_json`) or could not be read (`invalid_body`)."
    )]
    NotJson(ErrorBody),
    #[response(status = 401, description = "No agent token, or one that is not valid (anymore).",
        headers(("WWW-Authenticate" = String, description = "`Bearer`")))]
    NoToken(ErrorBody),
    #[response(
        status = 403,
        description = "A host belongs to another agent or is defined by hand."
    )]
    HostTaken(ErrorBody),
    #[response(
        status = 408,
        description = "The body did not arrive within the body timeout (`body_timeout`)."
    )]
    BodyTimeout(ErrorBody),
    #[response(status = 413, description = "The body is larger than 256 KiB.")]
    TooLarge(ErrorBody),
    #[response(
        status = 422,
        description = "Some fields are invalid (`invalid_fields`), listed in `fields`."
    )]
    InvalidFields(ErrorBody),
    #[response(status = 500, description = "The push could not be stored.")]
    NotStored(ErrorBody),
    #[response(status = 503, description = "The database cannot be reached (`store_unavailable`); nothing was stored. Retry after `Retry-After` seconds.",
        headers(("Retry-After" = u32, description = "Seconds to wait before retrying")))]
    StoreUnavailable(ErrorBody),
}

/// The push route of one kind of resource, described in the same words for
/// gateways and bridges: `$handler` at `/api/5/agent/$plural`.
macro_rules! push_route {
    ($handler:ident, $wire:ty, $name:literal, $plural:literal) => {
        #[utoipa::path(
            put,
            path = concat!("/api/5/agent/", $plural),
            summary = concat!("The agent's whole current set of ", $plural, "."),
            description = concat!(
                "New hosts are created, known ones updated, the agent's hosts left out\n",
                "retired, all in one transaction; a refused push changes nothing.\n",
                "`last_seen_millis` is the time of receipt."
            ),
            request_body(content = Vec<$wire>, content_type = "application/json",
                description = concat!("Every ", $name, " of this agent's host (at most 256 KiB).")),
            responses(
                (status = 200, description = concat!("Stored; nothing was created. The stored ", $plural, "."), body = Vec<$wire>),
                (status = 201, description = concat!("Stored; some ", $name, " was created. The stored ", $plural, "."), body = Vec<$wire>),
                PushRefusals,
            ),
        )]
        async fn $handler(
            State(state): State<SharedState>,
            agent: Result<Agent, ApiError>,
            body: Result<JsonBody, ApiError>,
        ) -> Result<Response, ApiError> {
            counted::<$wire>(&state, agent, body).await
        }
    };
}

push_route!(put_gateways, Gateway, "gateway", "gateways");
push_route!(put_bridges, Bridge, "bridge", "bridges");

/// [`put_all`], counted by outcome in the metrics, refused tokens
/// included.
async fn counted<T: ResourceBody>(
    state: &SharedState,
    agent: Result<Agent, ApiError>,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let result = match agent {
        Ok(agent) => put_all::<T>(state, &agent, body).await,
        Err(refused) => Err(refused),
    };
    let status = match &result {
        Ok(response) => response.status(),
        Err(err) => err.status(),
    };
    state
        .metrics
        .agent_pushed(T::KIND, PushOutcome::of_status(status));
    result
}

/// Parses, checks and stores an agent's whole set of `T`s; the answer is
/// the stored set.
async fn put_all<T: ResourceBody>(
    state: &SharedState,
    agent: &Agent,
    body: Result<JsonBody, ApiError>,
) -> Result<Response, ApiError> {
    let mut items: Vec<T> = body?.parse(T::LIST)?;
    if let Some(error) = check_count(items.len(), state.max_resources_per_agent, T::LIST) {
        return Err(ApiError::invalid_fields(vec![error]));
    }
    // the server's receipt time, never the agent's word
    let now = now_millis();
    let snapshot = state.inventory.snapshot();
    for item in &mut items {
        item.normalise(&|l| snapshot.location_label(l).map(str::to_owned), now);
    }
    let errors = (T::CHECK)(
        &items,
        T::LIST,
        &|l| snapshot.location_label(l) == Some(l),
        &state.policy,
    );
    if !errors.is_empty() {
        return Err(ApiError::invalid_fields(errors));
    }
    let rows = items
        .iter()
        .map(|item| (T::TO_ROW)(item, Origin::Agent, Some(&agent.name)))
        .collect();
    let (status, stored, changed) = push(state, agent, T::KIND, rows).await?;
    let items: Vec<T> = stored.iter().map(T::FROM_ROW).collect();
    let mut response = (status, Json(items)).into_response();
    if !changed {
        // A bare heartbeat: clients' lists are the same, nothing to wait for.
        response
            .extensions_mut()
            .insert(super::consistency::Unchanged);
    }
    Ok(response)
}
