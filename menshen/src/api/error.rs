//! The one error type of the HTTP API: a status and a JSON body that names
//! the problem. Internal details are logged once and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::inventory::validate::FieldError;
use crate::select::BadParameter;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    /// Seconds, for a `Retry-After` header.
    retry_after: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiError)]
pub(crate) struct ErrorBody {
    /// A stable, machine-readable code, e.g. `invalid_parameter`.
    #[schema(value_type = String, example = "invalid_parameter")]
    error: &'static str,
    /// What went wrong, for people.
    message: String,
    /// The query parameter at fault (400 `invalid_parameter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "port")]
    parameter: Option<&'static str>,
    /// The fields at fault (422 `invalid_fields`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    fields: Vec<FieldError>,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error,
                message: message.into(),
                parameter: None,
                fields: Vec::new(),
            },
            retry_after: None,
        }
    }

    pub fn bad_parameter(bad: BadParameter) -> ApiError {
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", bad.message);
        err.body.parameter = Some(bad.parameter);
        err
    }

    pub fn bad_request(error: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error, message)
    }

    /// Who are you: no credentials, or ones that are not valid.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// Known, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// Refused because of the state of things, e.g. a location still in use.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// The request body did not arrive in time.
    pub fn request_timeout() -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the request body did not arrive in time",
        )
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {limit} bytes"),
        )
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this path",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// Too busy now; worth trying again after `retry_after`.
    pub fn busy(message: impl Into<String>, retry_after: std::time::Duration) -> ApiError {
        let mut err = ApiError::unavailable(message);
        err.retry_after = Some(retry_after.as_secs_f64().ceil().max(1.0) as u64);
        err
    }

    /// This client (its address, or its network: `from`) asked too often;
    /// it may again after `retry_after`.
    pub fn rate_limited(what: &str, from: &str, retry_after: std::time::Duration) -> ApiError {
        let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many {what} from this {from}; try again in {seconds} s"),
        );
        err.retry_after = Some(seconds);
        err
    }

    /// The store cannot be reached (or cannot take writes) now: 503 with
    /// `Retry-After`. Clients are still served; writes should be retried.
    pub fn store_unavailable() -> ApiError {
        let mut err = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the database cannot be reached; nothing was changed, try again shortly",
        );
        err.retry_after = Some(STORE_RETRY_AFTER_SECS);
        err
    }

    /// A failed database operation: 503 when the database cannot be
    /// reached, else an internal error.
    pub fn store(err: sqlx::Error) -> ApiError {
        if crate::store::is_unavailable(&err) {
            tracing::info!(error = %err, "write refused: the store is unavailable");
            ApiError::store_unavailable()
        } else {
            ApiError::internal(err)
        }
    }

    /// Input that parsed but broke the rules, field by field.
    pub fn invalid_fields(fields: Vec<FieldError>) -> ApiError {
        let mut err = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_fields",
            "some fields are invalid; nothing was changed",
        );
        err.body.fields = fields;
        err
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A failure on our side. The cause is logged here, once.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

/// What `Retry-After` says while the store is unavailable: agents come back
/// about a second after it does.
pub const STORE_RETRY_AFTER_SECS: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        if unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(why) => ApiError::conflict(why),
            StoreError::Invalid { field, message } => {
                ApiError::invalid_fields(vec![FieldError::new(field, message)])
            }
            StoreError::NotAuthorized => {
                ApiError::unauthorized("the agent token is no longer valid")
            }
            StoreError::HostTaken(host) => ApiError::forbidden(format!(
                "host {host:?} belongs to another agent or is defined by hand"
            )),
            StoreError::TooMany { kind, count, max } => ApiError::invalid_fields(vec![
                crate::inventory::validate::check_count(count, max, kind.list())
                    .unwrap_or_else(|| FieldError::new(kind.list(), "too many")),
            ]),
            StoreError::Unreadable(why) => ApiError::internal(why),
            StoreError::Database(err) => ApiError::store(err),
        }
    }
}

impl From<BadParameter> for ApiError {
    fn from(bad: BadParameter) -> Self {
        ApiError::bad_parameter(bad)
    }
}

/// A query string that does not parse into what the route takes.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", rejection.body_text())
    }
}
