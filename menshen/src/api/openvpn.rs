//! OpenVPN credentials and client configurations. Every answer holds a
//! fresh private key: nothing here is cached, by us or by anyone between.

use std::fmt::Write as _;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;
use menshen_model::{Gateway, GatewayTransport};
use serde_json::{Map, Value};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::SharedState;
use super::client::{ClientAddr, GatewayQuery};
use super::error::{ApiError, ErrorBody};
use super::invite::{InviteToken, Invited};
use super::responses::{BadQuery, CertNotIssued, CertRateLimited};
use crate::inventory::Snapshot;
use crate::pki::workers::Refused;
use crate::pki::{ClientCredentials, KeyType};
use crate::select::{self, BadParameter, ClientQuery};
use crate::store::ResourceKind;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::default()
        .routes(routes!(cert))
        .routes(routes!(config))
        .routes(routes!(autoconf))
}

/// What `/api/5/openvpn/cert` answers, shortened.
const CERT_EXAMPLE: &str = "<key>\n-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----\n</key>\n\
<cert>\n-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n</cert>\n\
<ca>\n-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n</ca>\n";

/// A fresh key and client certificate, and the CA certificate.
///
/// Sections `<key>`, `<cert>` and `<ca>`, each delimiter on a line of its
/// own. A new key pair and certificate for every request; never cached.
/// With `--cert-rate-limit`, each client address may get so many (this and
/// configurations together).
#[utoipa::path(
    get,
    path = "/api/5/openvpn/cert",
    operation_id = "openvpn_cert",
    params(CertQuery),
    responses(
        (status = 200, description = "PEM key, client certificate and CA certificate in `<key>`, `<cert>` and `<ca>` sections.",
            body = String, content_type = "text/plain",
            headers(("Cache-Control" = String, description = "`no-store`")),
            example = json!(CERT_EXAMPLE)),
        (status = 400, description = "A bad or unoffered `algo` (`invalid_parameter`).", body = ErrorBody),
        CertRateLimited,
        CertNotIssued,
        (status = 503, description = "Too many certificates are being issued right now (`unavailable`).",
            body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    ),
)]
async fn cert(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    addr: ClientAddr,
) -> Result<Response, ApiError> {
    let key_type = requested_key_type(raw.as_deref(), state.pki.offered())?;
    limit(&state, &addr)?;
    let credentials = issue(&state, key_type).await?;
    Ok(plain_text(credentials.leap_text()))
}

/// The query of `/api/5/openvpn/cert`, for the OpenAPI document only.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct CertQuery {
    /// The kind of key wanted: `ed25519`, `ecdsa` (P-256) or `rsa` (2048
    /// bits), among those the provider offers. Without it, the provider's
    /// default (`--client-key-type`).
    #[param(example = "ed25519")]
    algo: Option<String>,
}

/// The key type a request asks for with `algo=`, if it asks; a 400 naming
/// `algo` for an unknown one, or one the provider does not offer.
fn requested_key_type(raw: Option<&str>, offered: &[KeyType]) -> Result<Option<KeyType>, ApiError> {
    let mut wanted = None;
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let value = value.trim();
        if name != "algo" || value.is_empty() {
            continue;
        }
        let bad = |message: String| {
            ApiError::from(BadParameter {
                parameter: "algo",
                message,
            })
        };
        if wanted.is_some() {
            return Err(bad("algo is given more than once".into()));
        }
        let key_type = KeyType::from_algo(value).ok_or_else(|| {
            bad(format!(
                "algo must be one of rsa, ecdsa, ed25519, not {value:?}"
            ))
        })?;
        if !offered.contains(&key_type) {
            let names: Vec<&str> = offered.iter().map(|k| k.algo()).collect();
            return Err(bad(format!(
                "this provider does not issue {} keys; it offers {}",
                key_type.algo(),
                names.join(", ")
            )));
        }
        wanted = Some(key_type);
    }
    Ok(wanted)
}

/// Takes one from the client's allowance of certificates, when limited.
pub(super) fn limit(state: &SharedState, addr: &ClientAddr) -> Result<(), ApiError> {
    match &state.cert_limit {
        Some(limiter) => limiter
            .check(addr.0)
            .map_err(|wait| ApiError::rate_limited("certificate requests", "address", wait)),
        None => Ok(()),
    }
}

/// Fresh credentials with a key of `key_type` (`None`: the default), made
/// on the issuing threads.
pub(super) async fn issue(
    state: &SharedState,
    key_type: Option<KeyType>,
) -> Result<ClientCredentials, ApiError> {
    let pki = state.pki.clone();
    let made = match state.issuers.run(move || pki.issue_for(key_type)).await {
        Ok(Ok(credentials)) => credentials,
        Ok(Err(err)) => return Err(ApiError::internal(err)),
        Err(Refused::Busy) => {
            return Err(ApiError::busy(
                "too many certificates are being issued; try again shortly",
                Duration::from_secs(1),
            ));
        }
        Err(Refused::Failed) => return Err(ApiError::internal("issuing a certificate panicked")),
    };
    state
        .metrics
        .certificate_issued(key_type.unwrap_or(state.pki.key_type()));
    Ok(made)
}

/// What `/api/5/openvpn/config` and `/api/autoconf` answer, besides
/// [`BadQuery`], [`CertRateLimited`] and [`CertNotIssued`]; for the
/// document only.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum ConfigAnswers {
    #[response(status = 200, description = "An OpenVPN client configuration that `openvpn --config` connects with.",
        content_type = "text/plain",
        headers(
            ("Cache-Control" = String, description = "`no-store`"),
            ("x-menshen-auth-token-status" = String, description = "`accepted` or `rejected`; absent without a token"),
        ))]
    Config(String),
    #[response(status = 503, description = "No gateway is available for this request, or too many certificates are being issued right now (then with `Retry-After`).",
        headers(("Retry-After" = u64, description = "Seconds to wait, when issuance is busy")))]
    Unavailable(ErrorBody),
}

/// A complete OpenVPN client configuration, fresh credentials inline.
///
/// Its `remote` lines are the gateways `/api/5/gateways` would list first
/// for the same request (invite token included). Never cached. Counts
/// against the same per-address allowance as `/api/5/openvpn/cert`.
#[utoipa::path(
    get,
    path = "/api/5/openvpn/config",
    operation_id = "openvpn_config",
    params(GatewayQuery, CertQuery, InviteToken),
    responses(ConfigAnswers, BadQuery, CertRateLimited, CertNotIssued)
)]
async fn config(
    State(state): State<SharedState>,
    RawQuery(raw): RawQuery,
    addr: ClientAddr,
    token: InviteToken,
) -> Response {
    let snapshot = state.inventory.snapshot();
    let invited = token.check(&state, &snapshot);
    invited.finish(config_for(&state, &snapshot, raw.as_deref(), &addr, &invited).await)
}

/// The same configuration as `/api/5/openvpn/config`, at a shorter path.
#[utoipa::path(
    get,
    path = "/api/autoconf",
    params(GatewayQuery, CertQuery, InviteToken),
    responses(ConfigAnswers, BadQuery, CertRateLimited, CertNotIssued)
)]
async fn autoconf(
    state: State<SharedState>,
    raw: RawQuery,
    addr: ClientAddr,
    token: InviteToken,
) -> Response {
    config(state, raw, addr, token).await
}

async fn config_for(
    state: &SharedState,
    snapshot: &Snapshot,
    raw: Option<&str>,
    addr: &ClientAddr,
    invited: &Invited,
) -> Result<Response, ApiError> {
    limit(state, addr)?;
    let mut query = invited.grant(ClientQuery::parse(raw, ResourceKind::Gateway, snapshot)?);
    let key_type = requested_key_type(raw, state.pki.offered())?;
    addr.locate(state, &mut query);
    let remotes = remotes(
        &select::gateways(snapshot, &query, &mut state.inventory.rng()),
        state.openvpn_max_remotes,
    );
    if remotes.is_empty() {
        return Err(ApiError::unavailable(
            "no gateway is available for this request",
        ));
    }
    let credentials = issue(state, key_type).await?;
    Ok(plain_text(client_config(
        &snapshot.openvpn_configuration,
        &remotes,
        &credentials,
    )))
}

pub(super) fn plain_text(body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Where OpenVPN reaches a gateway: `remote ADDRESS PORT PROTO`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Remote {
    address: String,
    port: i64,
    proto: &'static str,
}

/// The first `max` distinct remotes of `gateways`, in order. Gateways
/// without an address, port or known transport are passed over.
fn remotes(gateways: &[&Gateway], max: usize) -> Vec<Remote> {
    let mut remotes: Vec<Remote> = Vec::new();
    for g in gateways {
        if remotes.len() >= max {
            break;
        }
        let address = if g.ip_addr.is_empty() {
            &g.ip6_addr
        } else {
            &g.ip_addr
        };
        let Ok(proto) = g.transport.parse::<GatewayTransport>() else {
            continue;
        };
        let proto = proto.as_str();
        if address.is_empty() || !(1..=65535).contains(&g.port) {
            continue;
        }
        let remote = Remote {
            address: address.clone(),
            port: g.port,
            proto,
        };
        if !remotes.contains(&remote) {
            remotes.push(remote);
        }
    }
    remotes
}

/// Options the configuration states itself from other sources.
const WRITTEN_BY_MENSHEN: &[&str] = &[
    "client",
    "tls-client",
    "pull",
    "remote",
    "ca",
    "cert",
    "key",
    "pkcs12",
];

/// One line of configuration for an entry of `openvpn_configuration`, as
/// clients read it: a string value is `key value`, `true` a bare `key`.
/// `None` for entries a configuration file cannot carry safely.
fn option_line(key: &str, value: &Value) -> Option<String> {
    let valid_key = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_key || WRITTEN_BY_MENSHEN.contains(&key) {
        return None;
    }
    match value {
        Value::Bool(true) => Some(key.to_owned()),
        Value::String(s) if s.trim().is_empty() => Some(key.to_owned()),
        // A line break would let a value add lines of its own.
        Value::String(s) if !s.chars().any(char::is_control) => Some(format!("{key} {}", s.trim())),
        Value::Number(n) => Some(format!("{key} {n}")),
        _ => None,
    }
}

/// A configuration `openvpn --config` connects with on its own.
fn client_config(
    options: &Map<String, Value>,
    remotes: &[Remote],
    credentials: &ClientCredentials,
) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("# OpenVPN client configuration. It holds a private key: keep it private.\n");
    out.push_str("client\n");
    for (key, value) in options {
        match option_line(key, value) {
            Some(line) => {
                out.push_str(&line);
                out.push('\n');
            }
            None => tracing::debug!(option = %key, "openvpn option left out of the configuration"),
        }
    }
    if !options.contains_key("dev") {
        out.push_str("dev tun\n");
    }
    // Every client certificate is signed by a CA the gateways may share:
    // only a server certificate may pass as a gateway.
    if !options.contains_key("remote-cert-tls") {
        out.push_str("remote-cert-tls server\n");
    }
    for r in remotes {
        let _ = writeln!(out, "remote {} {} {}", r.address, r.port, r.proto);
    }
    let _ = write!(
        out,
        "<ca>\n{}</ca>\n<cert>\n{}</cert>\n<key>\n{}</key>\n",
        credentials.ca_pem, credentials.cert_pem, credentials.key_pem
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gateway(ip: &str, ip6: &str, port: i64, transport: &str) -> Gateway {
        Gateway {
            host: format!("{ip}{ip6}:{port}/{transport}"),
            ip_addr: ip.into(),
            ip6_addr: ip6.into(),
            port,
            transport: transport.into(),
            ..Gateway::default()
        }
    }

    #[test]
    fn options_become_lines_as_clients_read_them() {
        assert_eq!(
            option_line("keepalive", &json!("10 30")).as_deref(),
            Some("keepalive 10 30")
        );
        assert_eq!(
            option_line("persist-key", &json!(true)).as_deref(),
            Some("persist-key")
        );
        assert_eq!(option_line("verb", &json!(3)).as_deref(), Some("verb 3"));
        assert_eq!(option_line("float", &json!(false)), None);
        assert_eq!(option_line("remote", &json!("198.51.100.1 1194")), None);
        assert_eq!(option_line("ca", &json!("/etc/ca.pem")), None);
        assert_eq!(option_line("up", &json!("x\n<ca>")), None);
        assert_eq!(option_line("bad key", &json!(true)), None);
        assert_eq!(option_line("route", &json!(["a"])), None);
    }

    #[test]
    fn remotes_are_distinct_usable_and_capped() {
        let list = [
            gateway("192.0.2.1", "", 1194, "udp"),
            gateway("192.0.2.1", "", 1194, "udp"),
            gateway("", "", 1194, "udp"),
            gateway("192.0.2.2", "", 0, "udp"),
            gateway("192.0.2.3", "", 443, "kcp"),
            gateway("", "2001:db8::4", 443, "tcp"),
            gateway("192.0.2.5", "", 53, "udp"),
            gateway("192.0.2.6", "", 80, "tcp"),
        ];
        let refs: Vec<&Gateway> = list.iter().collect();
        let got = remotes(&refs, 3);
        let lines: Vec<String> = got
            .iter()
            .map(|r| format!("{} {} {}", r.address, r.port, r.proto))
            .collect();
        assert_eq!(
            lines,
            [
                "192.0.2.1 1194 udp",
                "2001:db8::4 443 tcp",
                "192.0.2.5 53 udp"
            ]
        );
    }

    #[test]
    fn the_config_is_complete() {
        let credentials = ClientCredentials {
            key_pem: "KEY\n".into(),
            cert_pem: "CERT\n".into(),
            ca_pem: "CA\n".into(),
        };
        let options = json!({"verb": "3", "nobind": true, "client": true});
        let remotes = [Remote {
            address: "192.0.2.1".into(),
            port: 1194,
            proto: "udp",
        }];
        let text = client_config(options.as_object().unwrap(), &remotes, &credentials);
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "client",
                "nobind",
                "verb 3",
                "dev tun",
                "remote-cert-tls server",
                "remote 192.0.2.1 1194 udp",
                "<ca>",
                "CA",
                "</ca>",
                "<cert>",
                "CERT",
                "</cert>",
                "<key>",
                "KEY",
                "</key>",
            ]
        );
    }
}
