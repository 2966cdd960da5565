//! Serving ready bytes with an entity tag, answering `If-None-Match`.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

use crate::inventory::Cached;
use crate::select::Answer;

/// The request's `If-None-Match` values, taken without copying the other
/// headers.
#[derive(Debug, Default)]
pub struct IfNoneMatch(Vec<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch(
            parts
                .headers
                .get_all(IF_NONE_MATCH)
                .iter()
                .cloned()
                .collect(),
        ))
    }
}

impl utoipa::IntoParams for IfNoneMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("If-None-Match")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Entity tags the client holds: 304 when one is current",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ]
    }
}

impl IfNoneMatch {
    pub fn from_headers(headers: &HeaderMap) -> IfNoneMatch {
        IfNoneMatch(headers.get_all(IF_NONE_MATCH).iter().cloned().collect())
    }

    /// Whether `etag` is among the tags (weak comparison, as RFC 9110 asks
    /// for this header).
    pub fn matches(&self, etag: &str) -> bool {
        self.0
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
    }
}

/// 200 with the body, or 304 when the client already has these bytes.
pub fn respond(cached: &Cached, if_none_match: &IfNoneMatch) -> Response {
    let body = (!if_none_match.matches(&cached.etag)).then(|| cached.body.clone());
    reply(cached.etag_header.clone(), body, cached.content_type)
}

/// A list answer: 200 with its JSON, or 304 when there is no body because
/// the client holds the tag (see `select::answer`).
pub fn respond_list(answer: Answer) -> Response {
    // Quotes and hex digits: always a valid header value.
    let etag = HeaderValue::from_str(answer.etag.as_str()).expect("hex etag");
    reply(etag, answer.body, "application/json")
}

/// 200 with `body`, or 304 without one; tagged `etag` either way.
fn reply(etag: HeaderValue, body: Option<Bytes>, content_type: &'static str) -> Response {
    let mut response = match body {
        None => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
        Some(body) => {
            let mut r = Response::new(Body::from(body));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        }
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, etag);
    // Clients may keep it, but must ask again before using it.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_exact_weak_listed_and_star() {
        let mut h = HeaderMap::new();
        assert!(!IfNoneMatch::from_headers(&h).matches("\"a\""));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"b\", W/\"a\""));
        assert!(IfNoneMatch::from_headers(&h).matches("\"a\""));
        assert!(!IfNoneMatch::from_headers(&h).matches("\"c\""));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(IfNoneMatch::from_headers(&h).matches("\"c\""));
    }
}
