//! The LEAP API v3, for older clients and community tools, served from the
//! same snapshot as v5 (`--api-v3`, on by default).
//!
//! - `/3/config/eip-service.json`: gateways grouped by host, each with
//!   every transport it offers (`capabilities.transport[]` of `{type,
//!   protocols, ports, options}`), obfs4 bridges as transports of their
//!   host; locations; the OpenVPN options. Filtered and ordered like
//!   `/api/5/gateways` for the same request; the bridges are the client
//!   network's share, as `/api/5/bridges` gives it (see `select::ring`).
//! - `/3/cert`: a fresh key and client certificate, the key first, as v3
//!   clients read it (an RSA key in the PKCS#1 form).
//!
//! Old Android clients build these paths from `api_version` alone, which
//! v5 clients need to be `"5"`; so the same documents are served at
//! `/5/config/eip-service.json` and `/5/cert` too (no v5 client asks for
//! those). The desktop client POSTs to the `/3/` paths; both methods work.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use menshen_model::v3::{Capabilities, EipService, Gateway, Location, Transport};
use menshen_model::{Bridge, Gateway as GatewayV5};
use serde_json::Value;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SharedState;
use super::cached::{IfNoneMatch, respond};
use super::client::{GatewayQuery, ListRequest, bridge_allowance, per_network};
use super::error::{ApiError, ErrorBody};
use super::invite::InviteToken;
use super::responses::{BadQuery, BridgeRateLimited, CertNotIssued, NotModified};
use crate::inventory::{Cached, Snapshot};
use crate::pki::KeyType;
use crate::select::{self, ClientQuery};
use crate::store::ResourceKind;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::with_openapi(Schemas::openapi())
        .routes(routes!(eip_service_get))
        .routes(routes!(eip_service_post))
        .routes(routes!(eip_service_by_api_version))
        .routes(routes!(cert_get))
        .routes(routes!(cert_post))
        .routes(routes!(cert_by_api_version))
}

// What the v3 routes answer, described for the document (see
// `super::responses`); never built.

/// The schemas of the answers below: answer types register none.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(EipService)))]
struct Schemas;

/// The v3 service description.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
#[response(status = 200, description = "The v3 service description.",
    headers(("ETag" = String, description = "Entity tag of this answer")))]
struct EipServiceAnswer(EipService);

/// A key and certificate in the v3 form.
#[derive(utoipa::IntoResponses)]
#[response(status = 200, description = "PEM key, then the PEM client certificate.",
    content_type = "text/plain",
    headers(("Cache-Control" = String, description = "`no-store`")))]
#[allow(dead_code)]
struct Certificate(String);

/// 404 from every v3 route while v3 is off.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 404,
    description = "API v3 is not served here (`--api-v3 false`)."
)]
#[allow(dead_code)]
struct NotServed(ErrorBody);

/// A route of the v3 API at one of the paths and methods v3 clients use:
/// `$handler` answers as `$answer` does (given the state and the extracted
/// `$arg`s), described by `$spec` (its params and responses).
macro_rules! v3_route {
    (
        $(#[$doc:meta])*
        $handler:ident: $method:ident $path:literal, $operation_id:literal,
        $answer:ident($($arg:ident: $arg_ty:ty),*) -> $out:ty,
        $($spec:tt)*
    ) => {
        $(#[$doc])*
        #[utoipa::path($method, path = $path, operation_id = $operation_id, $($spec)*)]
        async fn $handler(State(state): State<SharedState>, $($arg: $arg_ty),*) -> $out {
            $answer(&state, $($arg),*).await
        }
    };
}

v3_route! {
    /// The v3 service description: gateways with their transports, locations
    /// and OpenVPN options.
    ///
    /// The gateways and bridges `/api/5/gateways` and `/api/5/bridges` would
    /// list for the same request, grouped by host, in the same order.
    eip_service_get: get "/3/config/eip-service.json", "v3_eip_service",
    eip_service(request: ListRequest) -> Response,
    params(GatewayQuery, InviteToken, IfNoneMatch),
    responses(EipServiceAnswer, NotModified, BadQuery, BridgeRateLimited, NotServed)
}

v3_route! {
    /// The v3 service description, as the desktop client asks for it (POST).
    eip_service_post: post "/3/config/eip-service.json", "v3_eip_service_post",
    eip_service(request: ListRequest) -> Response,
    params(GatewayQuery, InviteToken, IfNoneMatch),
    responses(EipServiceAnswer, NotModified, BadQuery, BridgeRateLimited, NotServed)
}

v3_route! {
    /// The v3 service description at the path old Android clients build from
    /// `api_version` (`"5"`).
    eip_service_by_api_version: get "/5/config/eip-service.json", "v3_eip_service_by_api_version",
    eip_service(request: ListRequest) -> Response,
    params(GatewayQuery, InviteToken, IfNoneMatch),
    responses(EipServiceAnswer, NotModified, BadQuery, BridgeRateLimited, NotServed)
}

/// What the v3 routes answer when v3 is off.
fn v3_off() -> ApiError {
    ApiError::not_found("API v3 is not served here (--api-v3 false)")
}

async fn eip_service(state: &SharedState, request: ListRequest) -> Response {
    if !state.api_v3 {
        return v3_off().into_response();
    }
    if let Err(refused) = bridge_allowance(state, &request) {
        return refused.into_response();
    }
    let snapshot = state.inventory.snapshot();
    request.answer(
        state,
        &snapshot,
        ResourceKind::Gateway,
        |query, if_none_match| {
            let document = describe(&snapshot, query, &mut state.inventory.rng());
            per_network(&snapshot, respond(&tagged_by_set(&document), if_none_match))
        },
    )
}

/// The document's bytes, tagged by what it holds rather than by its
/// order: every ordering of the same hosts has the same tag, so a client
/// revalidating gets 304 whichever order it was given.
fn tagged_by_set(document: &EipService) -> Cached {
    let mut canonical = document.clone();
    canonical.gateways.sort_by(|a, b| a.host.cmp(&b.host));
    let tag = Cached::json(&canonical);
    let mut cached = Cached::json(document);
    cached.etag = tag.etag;
    cached.etag_header = tag.etag_header;
    cached
}

/// The v3 service description for `query`.
pub fn describe(snapshot: &Snapshot, query: &ClientQuery, rng: &mut impl rand::Rng) -> EipService {
    let gateways = select::gateways(snapshot, query, rng);
    let bridges = select::bridges(snapshot, query, rng);
    EipService {
        gateways: group_by_host(&gateways, &bridges),
        locations: snapshot
            .eip_service
            .locations
            .iter()
            .map(|(label, l)| {
                let location = Location {
                    country_code: l.country_code.clone(),
                    hemisphere: l.hemisphere.clone(),
                    name: l.display_name.clone(),
                    timezone: timezone_of(&l.timezone, &l.lon),
                };
                (label.clone(), location)
            })
            .collect(),
        openvpn_configuration: snapshot.openvpn_configuration.clone(),
        serial: snapshot.eip_service.serial,
        version: 3,
    }
}

/// The timezone v3 clients need (the desktop client fails on an empty
/// one): the location's, else estimated from its longitude, else `"0"`.
fn timezone_of(timezone: &str, lon: &str) -> String {
    if !timezone.is_empty() {
        return timezone.to_owned();
    }
    let hours = lon
        .parse::<f64>()
        .ok()
        .map_or(0, |lon| (lon / 15.0).round() as i32);
    menshen_model::format_timezone(hours)
}

/// One v3 gateway per host, in the order hosts first appear; a bridge
/// joins a gateway of the same host at the same addresses and location,
/// else stands as a host of its own.
fn group_by_host(gateways: &[&GatewayV5], bridges: &[&Bridge]) -> Vec<Gateway> {
    let mut out: Vec<Gateway> = Vec::new();
    let mut by_host: HashMap<String, usize> = HashMap::new();
    for g in gateways {
        let transport = Transport {
            kind: g.kind.clone(),
            protocols: vec![g.transport.clone()],
            ports: vec![g.port.to_string()],
            options: Default::default(),
        };
        let host = host(&g.host, &g.ip_addr, &g.ip6_addr, &g.location);
        add(&mut out, &mut by_host, host, transport);
    }
    for b in bridges {
        let transport = Transport {
            kind: b.kind.clone(),
            protocols: vec![b.transport.clone()],
            ports: if b.port > 0 {
                vec![b.port.to_string()]
            } else {
                Vec::new()
            },
            // Every value a string: the desktop client decodes the options
            // as a map of strings.
            options: b
                .options
                .iter()
                .filter_map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some((k.clone(), text))
                })
                .collect(),
        };
        let host = host(&b.host, &b.ip_addr, &b.ip6_addr, &b.location);
        add(&mut out, &mut by_host, host, transport);
    }
    out
}

/// A v3 host without transports yet.
fn host(host: &str, ip_addr: &str, ip6_addr: &str, location: &str) -> Gateway {
    Gateway {
        host: host.to_owned(),
        ip_address: ip_addr.to_owned(),
        ip_address6: ip6_addr.to_owned(),
        location: location.to_owned(),
        capabilities: Capabilities::default(),
    }
}

fn add(
    out: &mut Vec<Gateway>,
    by_host: &mut HashMap<String, usize>,
    host: Gateway,
    transport: Transport,
) {
    let same = |existing: &Gateway| {
        existing.ip_address == host.ip_address
            && existing.ip_address6 == host.ip_address6
            && existing.location == host.location
    };
    match by_host.get(&host.host) {
        Some(&i) if same(&out[i]) => out[i].capabilities.transport.push(transport),
        known => {
            if known.is_none() {
                by_host.insert(host.host.clone(), out.len());
            }
            let mut host = host;
            host.capabilities.transport.push(transport);
            out.push(host);
        }
    }
}

v3_route! {
    /// A fresh key and client certificate in the v3 form: the key (RSA, in
    /// PKCS#1, where the provider offers RSA), then the certificate, in PEM.
    cert_get: get "/3/cert", "v3_cert",
    cert() -> Result<Response, ApiError>,
    responses(Certificate, NotServed, CertNotIssued)
}

v3_route! {
    /// The v3 client certificate, as the desktop client asks for it (POST).
    cert_post: post "/3/cert", "v3_cert_post",
    cert() -> Result<Response, ApiError>,
    responses(Certificate, NotServed, CertNotIssued)
}

v3_route! {
    /// The v3 client certificate at the path old Android clients build from
    /// `api_version` (`"5"`).
    cert_by_api_version: get "/5/cert", "v3_cert_by_api_version",
    cert() -> Result<Response, ApiError>,
    responses(Certificate, NotServed, CertNotIssued)
}

async fn cert(state: &SharedState) -> Result<Response, ApiError> {
    if !state.api_v3 {
        return Err(v3_off());
    }
    // v3 clients read RSA keys; newer ones Ed25519 and ECDSA too.
    let key_type = state
        .pki
        .offered()
        .contains(&KeyType::Rsa2048)
        .then_some(KeyType::Rsa2048);
    let credentials = super::openvpn::issue(state, key_type).await?;
    Ok(super::openvpn::plain_text(credentials.v3_text()))
}
