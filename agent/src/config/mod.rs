//! The agent's configuration: a TOML file, with the menshen URL and the
//! token overridable from the environment.
//!
//! A bad file is refused at start with its path, line and column and the
//! field at fault; nothing is guessed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use toml::Spanned;

/// The token the agent shows menshen. Never printed: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its text, surrounding whitespace removed; `None` when empty.
    pub fn new(text: &str) -> Option<Token> {
        let t = text.trim();
        (!t.is_empty()).then(|| Token(t.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Where the token comes from. The file is read again before every push, so
/// a rotated token is picked up without a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(Token),
    File(PathBuf),
}

impl TokenSource {
    pub fn read(&self) -> Result<Token, String> {
        match self {
            TokenSource::Env(t) => Ok(t.clone()),
            TokenSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
                Token::new(&text).ok_or_else(|| format!("token file {} is empty", path.display()))
            }
        }
    }
}

/// OpenVPN transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayTransport {
    Tcp,
    Udp,
}

impl GatewayTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            GatewayTransport::Tcp => "tcp",
            GatewayTransport::Udp => "udp",
        }
    }
}

/// Bridge transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeTransport {
    Tcp,
    Kcp,
    Quic,
}

impl BridgeTransport {
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeTransport::Tcp => "tcp",
            BridgeTransport::Kcp => "kcp",
            BridgeTransport::Quic => "quic",
        }
    }
}

/// Bridge types the agent knows how to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum BridgeType {
    #[serde(rename = "obfs4")]
    Obfs4,
    #[serde(rename = "obfs4-hop")]
    Obfs4Hop,
}

impl BridgeType {
    pub fn as_str(self) -> &'static str {
        match self {
            BridgeType::Obfs4 => "obfs4",
            BridgeType::Obfs4Hop => "obfs4-hop",
        }
    }
}

/// This host: what every resource reported from here shares.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// The host's name; the default `host` of its resources.
    pub name: String,
    pub ip_addr: Ipv4Addr,
    pub ip6_addr: Option<Ipv6Addr>,
    /// A location label known to menshen (a key of `service.locations`).
    pub location: String,
}

/// An OpenVPN server on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenvpnConfig {
    /// The resource id on the wire.
    pub host: String,
    pub transport: GatewayTransport,
    pub port: u16,
    /// `--management` address of this server.
    pub management: SocketAddr,
    /// Password file given to `--management`, if any.
    pub management_password_file: Option<PathBuf>,
    /// Clients this server is meant to carry; `load` = clients / capacity.
    pub capacity: NonZeroU32,
    /// `overloaded` once load is above this.
    pub overload_threshold: f64,
    /// Where the port check connects (tcp only); default `ip_addr:port`.
    pub probe_addr: SocketAddr,
    pub experimental: bool,
    pub bucket: String,
}

/// An obfs4 bridge (obfs4proxy) on this host.
#[derive(Debug, Clone, PartialEq)]
pub struct Obfs4Config {
    pub host: String,
    pub kind: BridgeType,
    pub transport: BridgeTransport,
    /// None for port-hopping bridges.
    pub port: Option<u16>,
    /// obfs4proxy's state folder (`TOR_PT_STATE_LOCATION`).
    pub state_dir: PathBuf,
    /// Where the port check connects (tcp with a port only); default `ip_addr:port`.
    pub probe_addr: Option<SocketAddr>,
    /// Further options sent as they are (e.g. the hop settings of obfs4-hop);
    /// `cert` and `iatMode` always come from obfs4proxy's state.
    pub options: Map<String, Value>,
    pub experimental: bool,
    pub bucket: String,
}

/// Retry pacing after failed pushes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// First delay after a transient failure (5xx, no connection).
    pub initial: Duration,
    /// Cap of the exponential backoff.
    pub max: Duration,
    /// Delay after menshen refused the agent (401, 403, other 4xx); at least
    /// `interval`.
    pub refused: Duration,
}

/// The whole configuration, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Base URL of menshen; required to push, not for `--dry-run`.
    pub menshen_url: Option<Url>,
    pub token: Option<TokenSource>,
    /// Heartbeat interval (±10 % jitter).
    pub interval: Duration,
    /// How often the local state is looked at, to push at once on a change.
    pub check_interval: Duration,
    /// A load change smaller than this does not count as a change (it is
    /// still sent with the next heartbeat).
    pub load_step: f64,
    /// Timeout of one management-interface query or port check.
    pub probe_timeout: Duration,
    /// Timeout of one HTTP request to menshen.
    pub request_timeout: Duration,
    /// PUT empty lists on SIGTERM, so clients stop being sent here at once.
    pub withdraw_on_exit: bool,
    /// Where `/metrics` (the agent's health and OpenVPN's clients) is
    /// served; off when None.
    pub metrics_listen: Option<SocketAddr>,
    pub retry: RetryConfig,
    pub host: HostConfig,
    pub openvpn: Vec<OpenvpnConfig>,
    pub obfs4: Vec<Obfs4Config>,
}

/// Values that may override the file (from flags or the environment).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub menshen_url: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub token: Option<Token>,
    pub token_file: Option<PathBuf>,
}

/// Why a configuration was refused. The text names the file, line and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    menshen_url: Option<Spanned<String>>,
    token_file: Option<PathBuf>,
    #[serde(default = "default_interval", deserialize_with = "de_interval")]
    interval: Duration,
    #[serde(default = "default_check_interval", deserialize_with = "de_short")]
    check_interval: Duration,
    #[serde(default = "default_load_step", deserialize_with = "de_fraction")]
    load_step: f64,
    #[serde(default = "default_probe_timeout", deserialize_with = "de_short")]
    probe_timeout: Duration,
    #[serde(default = "default_request_timeout", deserialize_with = "de_short")]
    request_timeout: Duration,
    #[serde(default)]
    withdraw_on_exit: bool,
    metrics_listen: Option<SocketAddr>,
    #[serde(default = "default_threshold", deserialize_with = "de_threshold")]
    overload_threshold: f64,
    #[serde(default)]
    retry: RawRetry,
    host: RawHost,
    #[serde(default)]
    openvpn: Vec<RawOpenvpn>,
    #[serde(default)]
    obfs4: Vec<RawObfs4>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default = "default_retry_initial", deserialize_with = "de_short")]
    initial: Duration,
    #[serde(default = "default_retry_max", deserialize_with = "de_duration")]
    max: Duration,
    #[serde(default = "default_retry_refused", deserialize_with = "de_duration")]
    refused: Duration,
}

impl Default for RawRetry {
    fn default() -> Self {
        RawRetry {
            initial: default_retry_initial(),
            max: default_retry_max(),
            refused: default_retry_refused(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(deserialize_with = "de_name")]
    name: String,
    ip_addr: Ipv4Addr,
    ip6_addr: Option<Ipv6Addr>,
    #[serde(deserialize_with = "de_name")]
    location: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenvpn {
    host: Option<Spanned<String>>,
    transport: GatewayTransport,
    #[serde(deserialize_with = "de_port")]
    port: u16,
    management: SocketAddr,
    management_password_file: Option<PathBuf>,
    capacity: NonZeroU32,
    #[serde(default, deserialize_with = "de_opt_threshold")]
    overload_threshold: Option<f64>,
    probe_addr: Option<SocketAddr>,
    #[serde(default)]
    experimental: bool,
    #[serde(default)]
    bucket: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObfs4 {
    host: Option<Spanned<String>>,
    #[serde(rename = "type", default = "default_bridge_type")]
    kind: BridgeType,
    #[serde(default = "default_bridge_transport")]
    transport: BridgeTransport,
    #[serde(default, deserialize_with = "de_opt_port")]
    port: Option<u16>,
    state_dir: PathBuf,
    probe_addr: Option<SocketAddr>,
    #[serde(default)]
    options: Map<String, Value>,
    #[serde(default)]
    experimental: bool,
    #[serde(default)]
    bucket: String,
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}
fn default_check_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_load_step() -> f64 {
    0.05
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_threshold() -> f64 {
    0.9
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}
fn default_retry_refused() -> Duration {
    Duration::from_secs(60)
}
fn default_bridge_type() -> BridgeType {
    BridgeType::Obfs4
}
fn default_bridge_transport() -> BridgeTransport {
    BridgeTransport::Tcp
}

/// A duration as `"15s"`, `"1m 30s"`, `"500ms"`, or a number of seconds.
fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {t:?} ({e}); write e.g. \"15s\", \"500ms\" or \"2m\""
            ))
        }),
    }
}

fn de_bounded<'de, D: Deserializer<'de>>(
    d: D,
    min: Duration,
    max: Duration,
) -> Result<Duration, D::Error> {
    let v = de_duration(d)?;
    if v < min || v > max {
        return Err(serde::de::Error::custom(format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(v)
}

fn de_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    de_bounded(d, Duration::from_secs(1), Duration::from_secs(3600))
}

fn de_short<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    de_bounded(d, Duration::from_millis(100), Duration::from_secs(300))
}

fn de_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(serde::de::Error::custom(
            "must be a fraction of capacity above 0 and at most 1 (e.g. 0.9)",
        ));
    }
    Ok(v)
}

fn de_opt_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    de_threshold(d).map(Some)
}

fn de_fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(serde::de::Error::custom("must be between 0 and 1"));
    }
    Ok(v)
}

fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = u16::deserialize(d)?;
    if v == 0 {
        return Err(serde::de::Error::custom("port must be between 1 and 65535"));
    }
    Ok(v)
}

fn de_opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    de_port(d).map(Some)
}

fn de_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if v.trim().is_empty() || v.trim() != v {
        return Err(serde::de::Error::custom(
            "must not be empty nor start or end with spaces",
        ));
    }
    Ok(v)
}

// ---- loading ----

/// Reads and checks the file at `path`, then applies `overrides`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    parse(&text, path, overrides)
}

/// Checks `text` (the contents of `path`, named in errors).
pub fn parse(text: &str, path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim_end();
        match e.span() {
            Some(span) => located(&file, text, span, msg),
            None => ConfigError(format!("{file}: {msg}")),
        }
    })?;

    let menshen_url = match &overrides.menshen_url {
        Some(url) => {
            Some(parse_url(url).map_err(|m| ConfigError(format!("menshen URL {url:?}: {m}")))?)
        }
        None => match &raw.menshen_url {
            Some(s) => Some(
                parse_url(s.get_ref())
                    .map_err(|m| located(&file, text, s.span(), &format!("menshen_url: {m}")))?,
            ),
            None => None,
        },
    };

    let token = match (&overrides.token, &overrides.token_file, &raw.token_file) {
        (Some(t), _, _) => Some(TokenSource::Env(t.clone())),
        (None, Some(p), _) | (None, None, Some(p)) => Some(TokenSource::File(p.clone())),
        (None, None, None) => None,
    };

    let host = HostConfig {
        name: raw.host.name,
        ip_addr: raw.host.ip_addr,
        ip6_addr: raw.host.ip6_addr,
        location: raw.host.location,
    };

    let mut seen: Vec<String> = Vec::new();
    let mut openvpn = Vec::with_capacity(raw.openvpn.len());
    for (i, g) in raw.openvpn.into_iter().enumerate() {
        let name = resource_host(
            &file,
            text,
            g.host.as_ref(),
            &host.name,
            &seen,
            "openvpn",
            i,
        )?;
        seen.push(name.clone());
        openvpn.push(OpenvpnConfig {
            host: name,
            transport: g.transport,
            port: g.port,
            management: g.management,
            management_password_file: g.management_password_file,
            capacity: g.capacity,
            overload_threshold: g.overload_threshold.unwrap_or(raw.overload_threshold),
            probe_addr: g
                .probe_addr
                .unwrap_or(SocketAddr::new(IpAddr::V4(host.ip_addr), g.port)),
            experimental: g.experimental,
            bucket: g.bucket,
        });
    }

    let mut seen: Vec<String> = Vec::new();
    let mut obfs4 = Vec::with_capacity(raw.obfs4.len());
    for (i, b) in raw.obfs4.into_iter().enumerate() {
        let name = resource_host(&file, text, b.host.as_ref(), &host.name, &seen, "obfs4", i)?;
        seen.push(name.clone());
        if b.kind == BridgeType::Obfs4 && b.port.is_none() {
            return Err(ConfigError(format!(
                "{file}: obfs4[{i}] ({name}): `port` is required for type \"obfs4\""
            )));
        }
        for key in ["cert", "iatMode"] {
            if b.options.contains_key(key) {
                return Err(ConfigError(format!(
                    "{file}: obfs4[{i}] ({name}): options.{key} is read from the bridge's state in state_dir; remove it here"
                )));
            }
        }
        check_hop_options(b.kind, &b.options)
            .map_err(|m| ConfigError(format!("{file}: obfs4[{i}] ({name}): {m}")))?;
        obfs4.push(Obfs4Config {
            host: name,
            kind: b.kind,
            transport: b.transport,
            port: b.port,
            state_dir: b.state_dir,
            probe_addr: b
                .probe_addr
                .or_else(|| b.port.map(|p| SocketAddr::new(IpAddr::V4(host.ip_addr), p))),
            options: b.options,
            experimental: b.experimental,
            bucket: b.bucket,
        });
    }

    if raw.retry.max < raw.retry.initial {
        return Err(ConfigError(format!(
            "{file}: retry.max must not be below retry.initial"
        )));
    }

    Ok(Config {
        menshen_url,
        token,
        interval: raw.interval,
        check_interval: raw.check_interval,
        load_step: raw.load_step,
        probe_timeout: raw.probe_timeout,
        request_timeout: raw.request_timeout,
        withdraw_on_exit: raw.withdraw_on_exit,
        metrics_listen: overrides.metrics_listen.or(raw.metrics_listen),
        retry: RetryConfig {
            initial: raw.retry.initial,
            max: raw.retry.max,
            refused: raw.retry.refused,
        },
        host,
        openvpn,
        obfs4,
    })
}

/// The settings of obfsvpn's port hopping, as clients read them from a
/// bridge's options (LEAP API v5; obfsvpn's hopping client takes the same
/// names). Whole numbers, all of them.
pub const HOP_OPTIONS: [&str; 6] = [
    "min_hop_seconds",
    "hop_jitter",
    "min_hop_port",
    "max_hop_port",
    "port_count",
    "port_seed",
];

/// Options of an `obfs4-hop` bridge must be whole numbers where they are hop
/// settings, with the port range in order; a plain obfs4 bridge does not
/// hop, so it carries none of them.
fn check_hop_options(kind: BridgeType, options: &Map<String, Value>) -> Result<(), String> {
    let number = |key: &str| -> Result<Option<i64>, String> {
        match options.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some_and(|v| v >= 0) => Ok(n.as_i64()),
            Some(other) => Err(format!("options.{key} must be a whole number, not {other}")),
        }
    };
    if kind == BridgeType::Obfs4 {
        if let Some(key) = HOP_OPTIONS.iter().find(|k| options.contains_key(**k)) {
            return Err(format!(
                "options.{key} is a port-hopping setting; use type = \"obfs4-hop\""
            ));
        }
        return Ok(());
    }
    let mut values = Vec::with_capacity(HOP_OPTIONS.len());
    for key in HOP_OPTIONS {
        values.push(number(key)?);
    }
    for (key, value) in ["min_hop_port", "max_hop_port"]
        .iter()
        .zip([values[2], values[3]])
    {
        if value.is_some_and(|p| !(1..=65535).contains(&p)) {
            return Err(format!("options.{key} must be a port (1-65535)"));
        }
    }
    if let (Some(min), Some(max)) = (values[2], values[3])
        && min > max
    {
        return Err("options.min_hop_port must not be above max_hop_port".into());
    }
    if let (Some(min), Some(max), Some(count)) = (values[2], values[3], values[4])
        && count > max - min + 1
    {
        return Err(format!(
            "options.port_count ({count}) is more than the ports between min_hop_port and max_hop_port"
        ));
    }
    Ok(())
}

/// The wire `host` of entry `index` of `table`: its own, or the host name.
fn resource_host(
    file: &str,
    text: &str,
    own: Option<&Spanned<String>>,
    default: &str,
    seen: &[String],
    table: &str,
    index: usize,
) -> Result<String, ConfigError> {
    let name = own.map_or(default, |s| s.get_ref().as_str());
    let complain = |msg: String| match own {
        Some(s) => located(file, text, s.span(), &msg),
        None => ConfigError(format!("{file}: {table}[{index}]: {msg}")),
    };
    if name.trim().is_empty() || name.trim() != name {
        return Err(complain(format!(
            "{table}[{index}].host must not be empty nor start or end with spaces"
        )));
    }
    if seen.iter().any(|s| s == name) {
        return Err(complain(format!(
            "{table}[{index}].host: {name:?} is used twice; give each [[{table}]] its own `host`"
        )));
    }
    Ok(name.to_owned())
}

fn parse_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not carry a query or fragment".into());
    }
    Ok(url)
}

/// `file:line:column: message`, and the line itself under it.
fn located(file: &str, text: &str, span: Range<usize>, message: &str) -> ConfigError {
    let start = span.start.min(text.len());
    let before = &text[..start];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    ConfigError(format!(
        "{file}:{line}:{column}: {message}\n  {line} | {line_text}"
    ))
}

impl Config {
    /// The endpoint for `kind` (`gateways` or `bridges`) under the menshen URL.
    pub fn endpoint(&self, kind: &str) -> Option<Url> {
        let base = self.menshen_url.as_ref()?;
        let mut base = base.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        base.join(&format!("api/5/agent/{kind}")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
menshen_url = "https://api.example.org:4430"
token_file = "/etc/menshen-agent/token"

[host]
name = "ams1.example.org"
ip_addr = "192.0.2.10"
location = "amsterdam"

[[openvpn]]
transport = "udp"
port = 1194
management = "127.0.0.1:7505"
capacity = 100
"#;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(
            text,
            Path::new("/etc/menshen-agent.toml"),
            &Overrides::default(),
        )
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse_str(MINIMAL).unwrap();
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.check_interval, Duration::from_secs(2));
        assert!(!c.withdraw_on_exit);
        assert_eq!(c.openvpn.len(), 1);
        let g = &c.openvpn[0];
        assert_eq!(g.host, "ams1.example.org");
        assert_eq!(g.overload_threshold, 0.9);
        assert_eq!(g.probe_addr, "192.0.2.10:1194".parse().unwrap());
        assert_eq!(
            c.token,
            Some(TokenSource::File("/etc/menshen-agent/token".into()))
        );
        assert_eq!(
            c.endpoint("gateways").unwrap().as_str(),
            "https://api.example.org:4430/api/5/agent/gateways"
        );
    }

    #[test]
    fn endpoint_keeps_a_path_prefix() {
        let mut c = parse_str(MINIMAL).unwrap();
        c.menshen_url = Some(Url::parse("https://example.org/menshen").unwrap());
        assert_eq!(
            c.endpoint("bridges").unwrap().as_str(),
            "https://example.org/menshen/api/5/agent/bridges"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let o = Overrides {
            menshen_url: Some("http://127.0.0.1:9".into()),
            token: Token::new(" secret \n"),
            token_file: None,
            metrics_listen: None,
        };
        let c = parse(MINIMAL, Path::new("a.toml"), &o).unwrap();
        assert_eq!(c.menshen_url.unwrap().as_str(), "http://127.0.0.1:9/");
        assert_eq!(c.token, Some(TokenSource::Env(Token("secret".into()))));
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let o = Overrides {
            token: Token::new("s3cr3t-jwt"),
            ..Default::default()
        };
        let c = parse(MINIMAL, Path::new("a.toml"), &o).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let bad = MINIMAL.replace("capacity = 100", "capacity = 0");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(e.starts_with("/etc/menshen-agent.toml:14:"), "{e}");
        assert!(e.contains("capacity"), "{e}");

        let bad = MINIMAL.replace("capacity = 100", "capcity = 100");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(
            e.contains(":14:") && e.contains("unknown field `capcity`"),
            "{e}"
        );

        let bad = MINIMAL.replace("\"udp\"", "\"sctp\"");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(e.contains(":11:") && e.contains("sctp"), "{e}");

        let bad = MINIMAL.replace("192.0.2.10", "192.0.2.300");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(e.contains(":7:") && e.contains("ip_addr"), "{e}");

        let bad = MINIMAL.replace("https://api", "ftp://api");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(e.contains(":2:") && e.contains("menshen_url"), "{e}");

        let bad = format!("interval = \"soon\"\n{MINIMAL}");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(e.contains(":1:") && e.contains("soon"), "{e}");

        let bad = format!("overload_threshold = 1.5\n{MINIMAL}");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(e.contains(":1:") && e.contains("fraction"), "{e}");

        let bad = MINIMAL.replace("[host]\n", "[host]\nnmae = \"x\"\n");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(e.contains("nmae"), "{e}");

        let bad = MINIMAL.replace("location = \"amsterdam\"\n", "");
        let e = parse_str(&bad).unwrap_err().0;
        assert!(e.contains("missing field `location`"), "{e}");
    }

    #[test]
    fn duplicate_hosts_are_refused() {
        let twice = format!(
            "{MINIMAL}\n[[openvpn]]\ntransport = \"tcp\"\nport = 443\nmanagement = \"127.0.0.1:7506\"\ncapacity = 50\n"
        );
        let e = parse_str(&twice).unwrap_err().0;
        assert!(
            e.contains("openvpn[1].host") && e.contains("used twice"),
            "{e}"
        );

        let named = twice.replace(
            "transport = \"tcp\"",
            "host = \"ams1-tcp.example.org\"\ntransport = \"tcp\"",
        );
        let c = parse_str(&named).unwrap();
        assert_eq!(c.openvpn[1].host, "ams1-tcp.example.org");
        assert_eq!(c.openvpn[1].transport, GatewayTransport::Tcp);

        let clash = twice.replace(
            "transport = \"tcp\"",
            "host = \"ams1.example.org\"\ntransport = \"tcp\"",
        );
        let e = parse_str(&clash).unwrap_err().0;
        assert!(e.contains(":17:") && e.contains("used twice"), "{e}");
    }

    #[test]
    fn bridges() {
        let text = format!(
            "{MINIMAL}\n[[obfs4]]\nhost = \"br1.example.org\"\nport = 443\nstate_dir = \"/var/lib/obfs4\"\n\n[[obfs4]]\nhost = \"br2.example.org\"\ntype = \"obfs4-hop\"\nstate_dir = \"/var/lib/obfs4-hop\"\noptions = {{ min_hop_seconds = 5 }}\n"
        );
        let c = parse_str(&text).unwrap();
        assert_eq!(c.obfs4[0].kind, BridgeType::Obfs4);
        assert_eq!(c.obfs4[0].transport, BridgeTransport::Tcp);
        assert_eq!(
            c.obfs4[0].probe_addr,
            Some("192.0.2.10:443".parse().unwrap())
        );
        assert_eq!(c.obfs4[1].kind, BridgeType::Obfs4Hop);
        assert_eq!(c.obfs4[1].port, None);
        assert_eq!(c.obfs4[1].probe_addr, None);
        assert_eq!(c.obfs4[1].options["min_hop_seconds"], 5);

        let no_port = text.replace("port = 443\n", "");
        let e = parse_str(&no_port).unwrap_err().0;
        assert!(e.contains("obfs4[0]") && e.contains("port"), "{e}");

        let with_cert = text.replace("min_hop_seconds = 5", "cert = \"x\"");
        let e = parse_str(&with_cert).unwrap_err().0;
        assert!(e.contains("options.cert"), "{e}");

        // obfsvpn's hopping settings: whole numbers, a sane port range, and
        // only on hopping bridges.
        let hop = text.replace(
            "min_hop_seconds = 5",
            "min_hop_seconds = 5, hop_jitter = 2, min_hop_port = 49152, max_hop_port = 65535, port_count = 100, port_seed = 1234",
        );
        let c = parse_str(&hop).unwrap();
        assert_eq!(c.obfs4[1].options["port_seed"], 1234);
        for (bad, says) in [
            ("min_hop_seconds = \"5\"", "whole number"),
            ("min_hop_seconds = 1.5", "whole number"),
            ("min_hop_port = 70000", "port"),
            (
                "min_hop_port = 2000, max_hop_port = 1000",
                "above max_hop_port",
            ),
            (
                "min_hop_port = 1000, max_hop_port = 1009, port_count = 11",
                "port_count",
            ),
        ] {
            let e = parse_str(&text.replace("min_hop_seconds = 5", bad))
                .unwrap_err()
                .0;
            assert!(e.contains("obfs4[1]") && e.contains(says), "{bad}: {e}");
        }
        let plain_hops = text.replace(
            "state_dir = \"/var/lib/obfs4\"\n",
            "state_dir = \"/var/lib/obfs4\"\noptions = { port_seed = 1 }\n",
        );
        let e = parse_str(&plain_hops).unwrap_err().0;
        assert!(e.contains("obfs4[0]") && e.contains("obfs4-hop"), "{e}");
    }

    #[test]
    fn metrics_listener_from_the_file_or_the_flag() {
        let c = parse_str(&format!("metrics_listen = \"127.0.0.1:9176\"\n{MINIMAL}")).unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9176".parse().unwrap()));
        assert_eq!(parse_str(MINIMAL).unwrap().metrics_listen, None);
        let o = Overrides {
            metrics_listen: Some("0.0.0.0:9100".parse().unwrap()),
            ..Default::default()
        };
        let c = parse(MINIMAL, Path::new("a.toml"), &o).unwrap();
        assert_eq!(c.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
        let e = parse_str(&format!("metrics_listen = \"localhost\"\n{MINIMAL}"))
            .unwrap_err()
            .0;
        assert!(e.contains(":1:") && e.contains("metrics_listen"), "{e}");
    }

    #[test]
    fn the_example_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/menshen-agent.toml"
        );
        let c = load(Path::new(path), &Overrides::default()).unwrap();
        assert_eq!(c.openvpn.len(), 2);
        assert_eq!(c.obfs4.len(), 1);
        assert_eq!(c.openvpn[1].probe_addr, "192.0.2.10:1194".parse().unwrap());
    }

    #[test]
    fn durations_take_units_or_seconds() {
        let c = parse_str(&format!(
            "interval = 30\ncheck_interval = \"500ms\"\n{MINIMAL}\n[retry]\nmax = \"2m\"\n"
        ))
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(30));
        assert_eq!(c.check_interval, Duration::from_millis(500));
        assert_eq!(c.retry.max, Duration::from_secs(120));
        assert_eq!(c.retry.initial, Duration::from_secs(1));
        let e = parse_str(&format!("interval = \"10ms\"\n{MINIMAL}"))
            .unwrap_err()
            .0;
        assert!(e.contains(":1:") && e.contains("between"), "{e}");
    }
}
