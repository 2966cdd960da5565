//! The OpenAPI document of the public API, built from the annotations
//! beside every handler, served at `/openapi.json`, and Swagger UI at
//! `/docs` (built in: it loads nothing from elsewhere).

use std::sync::OnceLock;

use axum::response::Response;
use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use super::SharedState;
use super::agent;
use super::cached::{IfNoneMatch, respond};
use super::error::ErrorBody;
use super::responses::NotModified;
use crate::inventory::Cached;

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where Swagger UI is served.
pub const UI_PATH: &str = "/docs";

/// What the document says beyond its paths: the title and version come
/// from the crate.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(description = "The provider API of LEAP VPN: tells clients which gateways and bridges \
        to use, and takes what agents report from the gateway hosts."),
    tags(
        (name = "client", description = "The LEAP VPN API v5 the clients ship with: anonymous \
            and read-only. Every list is served from memory."),
        (name = "client-v3", description = "The LEAP API v3, for older clients, from the same \
            inventory (`--api-v3`, on by default)."),
        (name = "agent", description = "What menshen-agent pushes from each gateway host."),
        (name = "admin", description = "What operators read and change. Role `viewer` may \
            read, `admin` may change; every change is in the audit log."),
        (name = "health", description = "Liveness and readiness, for orchestrators."),
        (name = "docs", description = "This document."),
    ),
    // Named here because the shared response sets (see `super::responses`)
    // do not register the schema of their bodies.
    components(schemas(ErrorBody)),
    modifiers(&AgentToken, &AdminToken),
)]
pub struct ApiDoc;

/// The agents' bearer token.
struct AgentToken;

impl Modify for AgentToken {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            agent::SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An agent token from `menshen agent create NAME`: \
                         `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Operators' bearer token.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            super::admin::SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An admin token from `menshen admin token --subject NAME --role \
                         admin|viewer`: `Authorization: Bearer <token>`. Agent and invite \
                         tokens are not accepted.",
                    ))
                    .build(),
            ),
        );
    }
}

/// `router` with every operation tagged `tag` and, with a `scheme`, taking
/// that security scheme: what all routes of one part of the API share,
/// said once for them.
pub fn tagged(
    tag: &str,
    scheme: Option<&str>,
    mut router: OpenApiRouter<SharedState>,
) -> OpenApiRouter<SharedState> {
    for item in router.get_openapi_mut().paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            operation.tags = Some(vec![tag.to_owned()]);
            if let Some(scheme) = scheme {
                let requirement = SecurityRequirement::new(scheme, Vec::<String>::new());
                operation.security = Some(vec![requirement]);
            }
        }
    }
    router
}

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default().routes(routes!(openapi_json))
}

/// Swagger UI at [`UI_PATH`], reading the document from [`DOCUMENT_PATH`].
pub fn swagger_ui() -> SwaggerUi {
    // No validator: Swagger UI would otherwise ask one on the Internet.
    SwaggerUi::new(UI_PATH).config(Config::new([DOCUMENT_PATH]).validator_url("none"))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    params(IfNoneMatch),
    responses(
        (status = 200, description = "The OpenAPI document of this API.",
            body = serde_json::Value, content_type = "application/json",
            headers(("ETag" = String, description = "Entity tag of this answer"))),
        NotModified,
    ),
)]
async fn openapi_json(if_none_match: IfNoneMatch) -> Response {
    // The document is fixed when the binary is built.
    static DOCUMENT: OnceLock<Cached> = OnceLock::new();
    let document = DOCUMENT.get_or_init(|| Cached::json(&super::openapi()));
    respond(document, &if_none_match)
}
