//! `menshen import`: a LEAP API v3 provider (`eip-service.json`, optionally
//! its `provider.json`) turned into a provider file, so that a provider
//! moving to v5 keeps its locations, gateways, bridges and OpenVPN options.
//!
//! v3 lists a gateway once with every transport, protocol and port it
//! offers (`capabilities.transport`, or `capabilities.protocols`/`ports` in
//! older files); v5 lists one entry per endpoint. Each endpoint becomes a
//! hand-defined gateway (OpenVPN) or bridge (obfs4) whose `host` is the v3
//! host when it offers a single endpoint of that kind (gateways and bridges
//! are apart in v5, and Android merges the two by host), else the host with
//! the protocol and port appended (`vpn1.example.org-udp1194`). So what
//! menshen serves at `/3/config/eip-service.json` imports back unchanged.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Table;

use super::file::ProviderFile;
use menshen_model::GatewayType;

use crate::inventory::validate::{Policy, valid_label};

#[derive(Debug, Deserialize)]
struct EipService {
    #[serde(default)]
    gateways: Vec<V3Gateway>,
    #[serde(default)]
    locations: BTreeMap<String, V3Location>,
    #[serde(default)]
    openvpn_configuration: Map<String, Value>,
    #[serde(default)]
    serial: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct V3Gateway {
    host: String,
    #[serde(default)]
    ip_address: String,
    /// `ip_address6` as clients read it; `ip6_address` in some files.
    #[serde(default, alias = "ip6_address")]
    ip_address6: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    capabilities: Capabilities,
}

#[derive(Debug, Default, Deserialize)]
struct Capabilities {
    #[serde(default)]
    transport: Vec<TransportEntry>,
    /// v1/v2: protocols and ports directly on the capabilities.
    #[serde(default)]
    protocols: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
}

/// A transport entry: `"openvpn"` in some v3 files, an object in others.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TransportEntry {
    Name(String),
    Full(Transport),
}

#[derive(Debug, Deserialize)]
struct Transport {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    protocols: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    options: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct V3Location {
    #[serde(default)]
    name: String,
    #[serde(default)]
    country_code: String,
    #[serde(default)]
    hemisphere: String,
    #[serde(default)]
    timezone: Value,
}

/// v3 `provider.json`: the fields v5 keeps.
#[derive(Debug, Default, Deserialize)]
struct V3Provider {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    api_uri: String,
    #[serde(default)]
    name: Map<String, Value>,
    #[serde(default)]
    description: Map<String, Value>,
    #[serde(default)]
    languages: Vec<String>,
    #[serde(default)]
    default_language: String,
    #[serde(default)]
    services: Vec<String>,
}

/// What the import needs besides the v3 files.
#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// Overrides `provider.json`'s domain (required without it).
    pub domain: Option<String>,
    /// Overrides `provider.json`'s api_uri (required without it).
    pub api_uri: Option<String>,
}

/// One endpoint of a v3 gateway.
struct Endpoint {
    kind: String,
    transport: String,
    port: i64,
    options: Map<String, Value>,
}

fn endpoints(caps: &Capabilities) -> Vec<Endpoint> {
    let mut out = Vec::new();
    let mut add =
        |kind: &str, protocols: &[String], ports: &[String], options: &Map<String, Value>| {
            // A port-hopping bridge has no fixed port: one endpoint per
            // protocol, port 0 (none).
            let no_port = [String::from("0")];
            let ports = if ports.is_empty() && kind != GatewayType::Openvpn.as_str() {
                &no_port[..]
            } else {
                ports
            };
            for proto in protocols {
                for port in ports {
                    let Ok(port) = port.trim().parse::<i64>() else {
                        continue;
                    };
                    out.push(Endpoint {
                        kind: kind.to_owned(),
                        transport: proto.trim().to_ascii_lowercase(),
                        port,
                        options: options.clone(),
                    });
                }
            }
        };
    let no_options = Map::new();
    let mut full = false;
    for t in &caps.transport {
        if let TransportEntry::Full(t) = t {
            full = true;
            add(
                &t.kind.to_ascii_lowercase(),
                &t.protocols,
                &t.ports,
                &t.options,
            );
        }
    }
    if !full {
        // Older layout: `transport: ["openvpn"]` with shared protocols and
        // ports (and no options: only OpenVPN can be described that way).
        let openvpn = caps.transport.is_empty()
            || caps
                .transport
                .iter()
                .any(|t| matches!(t, TransportEntry::Name(n) if n.eq_ignore_ascii_case(GatewayType::Openvpn.as_str())));
        if openvpn {
            add(
                GatewayType::Openvpn.as_str(),
                &caps.protocols,
                &caps.ports,
                &no_options,
            );
        }
    }
    out
}

fn timezone(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().trim_start_matches('+').parse().ok(),
        _ => None,
    }
}

/// A label clients can send in `loc`.
fn label(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    cleaned.chars().take(64).collect()
}

/// Builds provider-file TOML from v3 `eip-service.json` text (and
/// `provider.json` text); the result is checked by parsing it back.
pub fn import(
    eip_service: &str,
    provider: Option<&str>,
    options: &ImportOptions,
) -> anyhow::Result<String> {
    let eip: EipService = serde_json::from_str(eip_service)
        .context("eip-service.json is not a v3 service description")?;
    let v3_provider: V3Provider = match provider {
        Some(text) => {
            serde_json::from_str(text).context("provider.json is not a provider description")?
        }
        None => V3Provider::default(),
    };

    let mut root = Table::new();
    let mut provider_table = Table::new();
    let domain = options.domain.clone().unwrap_or(v3_provider.domain);
    let api_uri = options.api_uri.clone().unwrap_or(v3_provider.api_uri);
    anyhow::ensure!(
        !domain.is_empty(),
        "no domain: give provider.json or --domain"
    );
    anyhow::ensure!(
        !api_uri.is_empty(),
        "no API address: give provider.json or --api-uri"
    );
    provider_table.insert("domain".into(), domain.into());
    provider_table.insert("api_uri".into(), api_uri.into());
    let text_map = |m: &Map<String, Value>| -> Table {
        m.iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), toml::Value::from(s))))
            .collect()
    };
    if !v3_provider.name.is_empty() {
        provider_table.insert("name".into(), text_map(&v3_provider.name).into());
    }
    if !v3_provider.description.is_empty() {
        provider_table.insert(
            "description".into(),
            text_map(&v3_provider.description).into(),
        );
    }
    if !v3_provider.languages.is_empty() {
        provider_table.insert("languages".into(), v3_provider.languages.clone().into());
    }
    if !v3_provider.default_language.is_empty() {
        provider_table.insert(
            "default_language".into(),
            v3_provider.default_language.into(),
        );
    }
    if !v3_provider.services.is_empty() {
        provider_table.insert("services".into(), v3_provider.services.into());
    }
    root.insert("provider".into(), provider_table.into());

    let mut service = Table::new();
    if let Some(serial) = eip.serial {
        service.insert("serial".into(), serial.into());
    }
    let mut openvpn = Table::new();
    for (key, value) in &eip.openvpn_configuration {
        match value {
            Value::String(s) => {
                openvpn.insert(key.clone(), s.clone().into());
            }
            Value::Bool(true) => {
                openvpn.insert(key.clone(), true.into());
            }
            Value::Number(n) => {
                openvpn.insert(key.clone(), n.to_string().into());
            }
            // `false` and anything else: v5 clients have no way to say it.
            _ => {}
        }
    }
    service.insert("openvpn_configuration".into(), openvpn.into());
    root.insert("service".into(), service.into());

    let mut labels = BTreeMap::new();
    let mut locations = Table::new();
    for (key, loc) in &eip.locations {
        let l = label(key);
        anyhow::ensure!(valid_label(&l), "location {key:?} has no usable label");
        let mut t = Table::new();
        let display = if loc.name.is_empty() {
            key.clone()
        } else {
            loc.name.clone()
        };
        t.insert("display_name".into(), display.into());
        t.insert(
            "country_code".into(),
            loc.country_code.to_ascii_uppercase().into(),
        );
        if let Some(tz) = timezone(&loc.timezone) {
            t.insert("timezone".into(), tz.into());
        }
        if matches!(loc.hemisphere.as_str(), "N" | "S") {
            t.insert("hemisphere".into(), loc.hemisphere.clone().into());
        }
        locations.insert(l.clone(), t.into());
        labels.insert(key.clone(), l);
    }
    root.insert("locations".into(), locations.into());

    let mut gateways = Vec::new();
    let mut bridges = Vec::new();
    for gw in &eip.gateways {
        let location = labels.get(&gw.location).with_context(|| {
            format!(
                "gateway {:?} is in unknown location {:?}",
                gw.host, gw.location
            )
        })?;
        let eps = endpoints(&gw.capabilities);
        let of_kind = |kind: &str| eps.iter().filter(|e| e.kind == kind).count();
        for ep in &eps {
            let host = if of_kind(&ep.kind) == 1 {
                gw.host.clone()
            } else {
                format!(
                    "{}-{}{}{}",
                    gw.host,
                    if ep.kind == GatewayType::Openvpn.as_str() {
                        ""
                    } else {
                        &ep.kind
                    },
                    ep.transport,
                    ep.port
                )
            };
            let mut t = Table::new();
            t.insert("host".into(), host.into());
            if !gw.ip_address.is_empty() {
                t.insert("ip_addr".into(), gw.ip_address.clone().into());
            }
            if !gw.ip_address6.is_empty() {
                t.insert("ip6_addr".into(), gw.ip_address6.clone().into());
            }
            t.insert("location".into(), location.clone().into());
            if ep.port != 0 {
                t.insert("port".into(), ep.port.into());
            }
            t.insert("transport".into(), ep.transport.clone().into());
            t.insert("type".into(), ep.kind.clone().into());
            if ep.kind == GatewayType::Openvpn.as_str() {
                gateways.push(toml::Value::from(t));
            } else {
                let options: Table = ep
                    .options
                    .iter()
                    .filter_map(|(k, v)| match v {
                        // v3 writes every option as a string; v5 keeps the
                        // hopping bridges' numbers as numbers.
                        Value::String(s)
                            if menshen_model::vocab::HOP_OPTIONS.contains(&k.as_str()) =>
                        {
                            Some((
                                k.clone(),
                                s.trim().parse::<i64>().map_or_else(
                                    |_| toml::Value::from(s.clone()),
                                    toml::Value::from,
                                ),
                            ))
                        }
                        Value::String(s) => Some((k.clone(), toml::Value::from(s.clone()))),
                        Value::Number(n) => n.as_i64().map(|n| (k.clone(), toml::Value::from(n))),
                        _ => None,
                    })
                    .collect();
                t.insert("options".into(), options.into());
                bridges.push(toml::Value::from(t));
            }
        }
    }
    root.insert("gateway".into(), gateways.into());
    root.insert("bridge".into(), bridges.into());

    let text = format!(
        "# Imported from a LEAP API v3 eip-service.json by `menshen import`.\n\
         # Check it (menshen check-config FILE), then serve it with --config.\n\n{}",
        toml::to_string(&root).context("writing TOML")?
    );
    // What is written must be a valid provider file. Its addresses are the
    // v3 document's: whether they may be served is checked where it is
    // served (check-config, serve), as for any file.
    ProviderFile::parse_with(&text, Path::new("imported provider file"), Policy::LAB)
        .map_err(|e| anyhow::anyhow!("the imported file does not check out: {e}"))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EIP: &str = include_str!("../../tests/fixtures/eip-service-v3.json");
    const PROVIDER: &str = include_str!("../../tests/fixtures/provider-v3.json");

    #[test]
    fn a_v3_service_becomes_a_provider_file() {
        let text = import(EIP, Some(PROVIDER), &ImportOptions::default()).unwrap();
        let file = ProviderFile::parse_with(&text, Path::new("x"), Policy::LAB).unwrap();
        let provider = file.provider.to_model();
        assert_eq!(provider.domain, "vpn.example.org");
        assert_eq!(provider.api_uri, "https://api.vpn.example.org:4430");
        assert_eq!(provider.name["en"], "Example VPN");

        let labels: Vec<&str> = file.locations.keys().map(String::as_str).collect();
        assert_eq!(labels, ["amsterdam", "new-york", "seattle"]);
        let ny = file.locations["new-york"].get_ref();
        assert_eq!(ny.display_name, "New York");
        assert_eq!(ny.timezone, Some(-5));
        assert_eq!(ny.country_code, "US");

        let hosts: Vec<String> = file
            .gateways
            .iter()
            .map(|g| g.get_ref().host.clone())
            .collect();
        assert_eq!(
            hosts,
            [
                "gw1.ams.vpn.example.org-tcp443",
                "gw1.ams.vpn.example.org-tcp1194",
                "gw1.ams.vpn.example.org-udp443",
                "gw1.ams.vpn.example.org-udp1194",
                "gw2.ny.vpn.example.org",
                "gw3.sea.vpn.example.org-tcp1194",
                "gw3.sea.vpn.example.org-udp1194",
            ]
        );
        let sea = file.gateways[6].get_ref();
        assert_eq!(sea.ip6_addr, "2001:db8::30");
        let ams = file.gateways[3].get_ref();
        assert_eq!((ams.port, ams.transport.as_str()), (1194, "udp"));
        assert_eq!(ams.ip_addr, "192.0.2.10");
        assert_eq!(ams.location, "amsterdam");

        assert_eq!(file.bridges.len(), 1);
        let br = file.bridges[0].get_ref();
        // The host's only obfs4 endpoint: the bridge keeps the host's name.
        assert_eq!(br.host, "gw1.ams.vpn.example.org");
        assert_eq!(
            br.options["cert"],
            "C40o35r//+hIqiPvq4osVX7Oz1b5Xz0Q59rx/ogXkGZsyxOl42wOSiSevg/Cgzfd60BQtQ"
        );
        assert_eq!(br.options["iatMode"], "0");

        let settings = file.service.to_settings();
        assert_eq!(settings.openvpn_configuration["cipher"], "AES-256-GCM");
        assert_eq!(settings.openvpn_configuration["tun-ipv6"], true);
        assert_eq!(settings.openvpn_configuration["verb"], "3");
        assert!(
            !settings
                .openvpn_configuration
                .contains_key("disabled-option")
        );
    }

    #[test]
    fn without_provider_json_domain_and_address_are_required() {
        let err = import(EIP, None, &ImportOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--domain"), "{err}");
        let options = ImportOptions {
            domain: Some("other.example".into()),
            api_uri: Some("https://api.other.example".into()),
        };
        let text = import(EIP, None, &options).unwrap();
        assert!(text.contains("other.example"));
    }

    #[test]
    fn broken_input_is_refused_with_a_reason() {
        assert!(import("{", None, &ImportOptions::default()).is_err());
        let unknown = r#"{"gateways":[{"host":"h","ip_address":"192.0.2.1","location":"nowhere",
            "capabilities":{"transport":["openvpn"],"protocols":["udp"],"ports":["1194"]}}],"locations":{}}"#;
        let options = ImportOptions {
            domain: Some("d".into()),
            api_uri: Some("https://d".into()),
        };
        let err = import(unknown, None, &options).unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
