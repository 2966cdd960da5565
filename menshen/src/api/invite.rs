//! The invite token a client may send with a list request, and what the
//! response says about it.
//!
//! A token that is not accepted (malformed, unknown, deleted, expired) is
//! never an error: the request is answered as an anonymous one, so that a
//! client with a stale token still gets the public list, and the
//! `x-menshen-auth-token-status: rejected` header says so. Whether a
//! bucket exists is not revealed either way.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::header::{CACHE_CONTROL, VARY};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};

use super::AppState;
use crate::inventory::Snapshot;
use crate::inventory::invites::Grant;
use crate::select::ClientQuery;
use crate::store::now_millis;

/// The request header that carries an invite token.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-menshen-auth-token");
/// The response header that says whether the token was accepted.
pub const STATUS_HEADER: HeaderName = HeaderName::from_static("x-menshen-auth-token-status");

/// The request's `x-menshen-auth-token` header, not yet checked.
#[derive(Default)]
pub struct InviteToken(Option<HeaderValue>);

// The token is a secret: never printed.
impl std::fmt::Debug for InviteToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.0.is_some() {
            "<redacted>"
        } else {
            "none"
        };
        f.debug_tuple("InviteToken").field(&shown).finish()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for InviteToken {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(InviteToken(parts.headers.get(TOKEN_HEADER).cloned()))
    }
}

impl utoipa::IntoParams for InviteToken {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name(TOKEN_HEADER.as_str())
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some(
                    "Invite token: lists the invite-only resources of the buckets it grants. \
                     One that is not accepted is no error: the answer is the anonymous one, \
                     and `x-menshen-auth-token-status: rejected` says so.",
                ))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ]
    }
}

/// What a request's token was found to be worth.
#[derive(Debug)]
pub struct Invited {
    status: Status,
    /// Sorted, without duplicates.
    buckets: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// No token, or an empty one.
    Anonymous,
    Accepted,
    Rejected,
}

impl InviteToken {
    /// Checks the token against `snapshot`, noting the use of an accepted
    /// invite (written to the store later, never on this path).
    pub fn check(&self, state: &AppState, snapshot: &Snapshot) -> Invited {
        let without = |status| Invited {
            status,
            buckets: Vec::new(),
        };
        let Some(value) = &self.0 else {
            return without(Status::Anonymous);
        };
        // Not visible ASCII: not a token of ours.
        let Ok(token) = value.to_str().map(str::trim) else {
            return without(Status::Rejected);
        };
        if token.is_empty() {
            return without(Status::Anonymous);
        }
        let now = now_millis();
        match snapshot.grant(token, now) {
            Grant::Accepted { id, buckets } => {
                state.invite_uses.record(id, now);
                tracing::debug!(invite = %id, "invite token accepted");
                Invited {
                    status: Status::Accepted,
                    buckets: buckets.to_vec(),
                }
            }
            Grant::Rejected => {
                tracing::debug!("invite token rejected");
                without(Status::Rejected)
            }
        }
    }
}

impl Invited {
    /// `query` with the buckets this request may see.
    pub fn grant(&self, mut query: ClientQuery) -> ClientQuery {
        query.buckets.clone_from(&self.buckets);
        query
    }

    /// `response` with the token's status, and with what shared caches
    /// must know: the answer depends on the token, and one that an
    /// accepted token got is not for anyone else.
    pub fn finish(&self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        let headers = response.headers_mut();
        headers.append(VARY, HeaderValue::from_static("x-menshen-auth-token"));
        match self.status {
            Status::Anonymous => {}
            Status::Accepted => {
                headers.insert(STATUS_HEADER, HeaderValue::from_static("accepted"));
                if headers.get(CACHE_CONTROL).is_some_and(|v| v == "no-cache") {
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
                }
            }
            Status::Rejected => {
                headers.insert(STATUS_HEADER, HeaderValue::from_static("rejected"));
            }
        }
        response
    }
}
