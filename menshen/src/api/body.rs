//! Request bodies: the one way the API reads JSON, with one size limit and
//! one set of answers for bodies that are too large, too slow, not JSON or
//! of the wrong shape.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::inventory::validate::FieldError;

/// Largest body the API reads (agents' pushes and operators' changes).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The layer that holds bodies to [`MAX_BODY_BYTES`].
pub fn limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_BODY_BYTES)
}

/// A body read whole: 413 when larger than the limit, 408 when it stops
/// arriving (see `--body-timeout`), 400 when it cannot be read. Parse it
/// with [`JsonBody::parse`].
pub struct JsonBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(JsonBody)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::payload_too_large(MAX_BODY_BYTES)
                } else if timed_out(&rejection) {
                    ApiError::request_timeout()
                } else {
                    ApiError::bad_request("invalid_body", rejection.body_text())
                }
            })
    }
}

impl JsonBody {
    /// The body as a `T`: 400 when not JSON, 422 naming the field when JSON
    /// of the wrong shape. Fields are named under `list` (the name of the
    /// whole body, e.g. `gateways`), or bare when it is empty.
    pub fn parse<T: DeserializeOwned>(&self, list: &str) -> Result<T, ApiError> {
        let mut de = serde_json::Deserializer::from_slice(&self.0);
        serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let inner = err.inner();
            if inner.is_syntax() || inner.is_eof() {
                ApiError::bad_request("invalid_json", format!("the body is not JSON: {inner}"))
            } else {
                let path = err.path().to_string();
                let path = path.trim_start_matches('?');
                let field = if path == "." {
                    list.to_owned()
                } else if path.starts_with('[') || list.is_empty() {
                    format!("{list}{path}")
                } else {
                    format!("{list}.{path}")
                };
                ApiError::invalid_fields(vec![FieldError::new(field, inner.to_string())])
            }
        })
    }

    /// The body as a `T` whose fields are named bare (operators' objects).
    pub fn object<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        self.parse("")
    }
}

/// Whether the body stopped arriving (see `--body-timeout`).
fn timed_out(rejection: &axum::extract::rejection::BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(err) = source {
        if err.is::<crate::server::BodyTimeout>() {
            return true;
        }
        source = err.source();
    }
    false
}
