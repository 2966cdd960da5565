//! Answers that several routes give, described once for the OpenAPI
//! document. A `#[utoipa::path]` names them in its `responses(...)` next to
//! its own tuples. These types only describe; no handler returns them.
//!
//! A type named here adds no schema to the document's components (only
//! `body = ...` tuples do), so [`super::docs::ApiDoc`] registers
//! [`ErrorBody`] itself.

// Never built: they exist for their `IntoResponses` impls.
#![allow(dead_code)]

use std::collections::BTreeMap;

use utoipa::IntoResponses;
use utoipa::openapi::RefOr;
use utoipa::openapi::response::Response;

use super::error::ErrorBody;

type Responses = BTreeMap<String, RefOr<Response>>;

/// The responses of every set in `sets`, as one.
fn merged<const N: usize>(sets: [Responses; N]) -> Responses {
    sets.into_iter().flatten().collect()
}

#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "No admin token, or one that is not valid."
)]
struct NoAdminToken(ErrorBody);

#[derive(IntoResponses)]
#[response(status = 403, description = "The token may only read.")]
struct ReadOnlyToken(ErrorBody);

#[derive(IntoResponses)]
#[response(status = 400, description = "The body is not JSON.")]
struct NotJson(ErrorBody);

#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "Some fields are invalid, listed in `fields`."
)]
struct InvalidFields(ErrorBody);

/// What an admin route that reads refuses: 401.
pub struct ViewerRefusals;

impl IntoResponses for ViewerRefusals {
    fn responses() -> Responses {
        NoAdminToken::responses()
    }
}

/// What an admin route that changes something refuses: 401, and 403 for a
/// viewer's token.
pub struct AdminRefusals;

impl IntoResponses for AdminRefusals {
    fn responses() -> Responses {
        merged([NoAdminToken::responses(), ReadOnlyToken::responses()])
    }
}

/// What an admin route that changes something from a JSON body refuses:
/// [`AdminRefusals`], 400 for a body that is not JSON, 422 for invalid
/// fields.
pub struct AdminBodyRefusals;

impl IntoResponses for AdminBodyRefusals {
    fn responses() -> Responses {
        merged([
            AdminRefusals::responses(),
            NotJson::responses(),
            InvalidFields::responses(),
        ])
    }
}

/// 304 to a client whose `If-None-Match` tag is current.
#[derive(IntoResponses)]
#[response(
    status = 304,
    description = "Not modified: the `If-None-Match` tag is current.",
    headers(("ETag" = String, description = "Entity tag of the current answer"))
)]
pub struct NotModified;

/// 400 for a bad client query (see `select::ClientQuery::parse`).
#[derive(IntoResponses)]
#[response(
    status = 400,
    description = "A bad query parameter (`invalid_parameter`), named in `parameter`."
)]
pub struct BadQuery(ErrorBody);

/// 429 when a client address has had its certificates (`--cert-rate-limit`).
#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Too many certificates for this client address (`rate_limited`; with `--cert-rate-limit`).",
    headers(("Retry-After" = u64, description = "Seconds until the next may be given"))
)]
pub struct CertRateLimited(ErrorBody);

/// 429 when a client network has had its bridge lists
/// (`--bridge-rate-limit`).
#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Too many bridge lists for this client network, IPv4 /16 or IPv6 /48 (`rate_limited`; with `--bridge-rate-limit`).",
    headers(("Retry-After" = u64, description = "Seconds until the next may be given"))
)]
pub struct BridgeRateLimited(ErrorBody);

/// 500 when issuing a certificate failed.
#[derive(IntoResponses)]
#[response(status = 500, description = "The certificate could not be issued.")]
pub struct CertNotIssued(ErrorBody);
