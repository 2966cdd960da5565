//! Serving ready bytes with an entity tag, answering `If-None-Match`.

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;

use crate::inventory::Cached;

/// Whether an `If-None-Match` header matches `etag` (weak comparison, as
/// RFC 9110 asks for this header).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// 200 with the body, or 304 when the client already has these bytes.
pub fn respond(cached: &Cached, request_headers: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&cached.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let not_modified = none_match(request_headers, &cached.etag);
    let mut response = if not_modified {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(cached.body.clone()));
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(cached.content_type));
        r
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
        assert!(!none_match(&h, "\"a\""));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"b\", W/\"a\""));
        assert!(none_match(&h, "\"a\""));
        assert!(!none_match(&h, "\"c\""));
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(none_match(&h, "\"c\""));
    }
}
