//! The one error type of the HTTP API: a status and a JSON body that names
//! the problem. Internal details are logged once and never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::inventory::validate::FieldError;
use crate::select::BadParameter;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    /// A stable, machine-readable code.
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'static str>,
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
        }
    }

    pub fn bad_parameter(bad: BadParameter) -> ApiError {
        let mut err = ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", bad.message);
        err.body.parameter = Some(bad.parameter);
        err
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<BadParameter> for ApiError {
    fn from(bad: BadParameter) -> Self {
        ApiError::bad_parameter(bad)
    }
}
