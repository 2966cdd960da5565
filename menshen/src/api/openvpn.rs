//! OpenVPN credentials and client configurations. Every answer holds a
//! fresh private key: nothing here is cached, by us or by anyone between.

use std::fmt::Write as _;

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;
use axum::routing::get;
use menshen_model::Gateway;
use serde_json::{Map, Value};

use super::SharedState;
use super::client::ClientAddr;
use super::error::ApiError;
use super::invite::{InviteToken, Invited};
use crate::inventory::Snapshot;
use crate::pki::ClientCredentials;
use crate::select::{self, ClientQuery};
use crate::store::ResourceKind;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/api/5/openvpn/cert", get(cert))
        .route("/api/5/openvpn/config", get(config))
        .route("/api/autoconf", get(config))
}

/// `GET /api/5/openvpn/cert`: a fresh key and client certificate, and the
/// CA certificate, as `<key>`, `<cert>` and `<ca>` sections.
async fn cert(State(state): State<SharedState>) -> Result<Response, ApiError> {
    let credentials = state
        .pki
        .issue_for_request()
        .await
        .map_err(ApiError::internal)?;
    Ok(plain_text(credentials.leap_text()))
}

/// `GET /api/5/openvpn/config?cc=&loc=&port=&tr=` (and `/api/autoconf`): a
/// complete OpenVPN client configuration with fresh credentials inline,
/// for the gateways `/api/5/gateways` would list first for this request
/// (invite token included). 503 when no gateway is available for it.
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

async fn config_for(
    state: &SharedState,
    snapshot: &Snapshot,
    raw: Option<&str>,
    addr: &ClientAddr,
    invited: &Invited,
) -> Result<Response, ApiError> {
    let mut query = invited.grant(ClientQuery::parse(raw, ResourceKind::Gateway, snapshot)?);
    addr.locate(state, &mut query);
    let remotes = remotes(
        // A fresh order for every configuration: it is never cached.
        &select::gateways(snapshot, &query, rand::random()),
        state.openvpn_max_remotes,
    );
    if remotes.is_empty() {
        return Err(ApiError::unavailable(
            "no gateway is available for this request",
        ));
    }
    let credentials = state
        .pki
        .issue_for_request()
        .await
        .map_err(ApiError::internal)?;
    Ok(plain_text(client_config(
        &snapshot.openvpn_configuration,
        &remotes,
        &credentials,
    )))
}

fn plain_text(body: String) -> Response {
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
        let proto = match g.transport.as_str() {
            "udp" => "udp",
            "tcp" => "tcp",
            _ => continue,
        };
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
