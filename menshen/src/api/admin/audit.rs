//! `GET /admin/v1/audit`: every change, newest first.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Viewer;
use crate::api::SharedState;
use crate::api::error::{ApiError, ErrorBody};
use crate::api::responses::ViewerRefusals;
use crate::store::AuditRow;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default().routes(routes!(list_audit))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// At most this many entries (1-1000, default 100).
    limit: Option<i64>,
    /// Only entries with an id below this one (to page back).
    before: Option<i64>,
}

/// The audit log: who changed what, when, before and after. Newest first.
#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "Audit entries, newest first.", body = Vec<AuditRow>),
        (status = 400, description = "A bad `limit` or `before`.", body = ErrorBody),
        ViewerRefusals,
    ),
)]
async fn list_audit(
    _viewer: Viewer,
    State(state): State<SharedState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditRow>>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit must be 1-1000",
        ));
    }
    Ok(Json(state.store.list_audit(limit, query.before).await?))
}
