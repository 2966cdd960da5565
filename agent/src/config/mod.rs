//! The agent's configuration: a TOML file, with the menshen URL, the token
//! and the metrics listener overridable from flags or the environment.
//!
//! The file is read straight into [`Config`]: each field checks itself as it
//! is read (see `de`), and what needs several fields (a `host` used twice,
//! defaults taken from another field, a bridge's options against its type)
//! is checked afterwards (see `validate`). A bad file is refused at start
//! with its path, line and column and the field at fault; nothing is guessed.

mod de;
mod sources;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

pub use menshen_model::vocab::{BridgeTransport, BridgeType, GatewayTransport, HOP_OPTIONS};
pub use sources::{Overrides, Token, TokenSource};

/// This host: what every resource reported from here shares.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The host's name; the default `host` of its resources.
    #[serde(deserialize_with = "de::name")]
    pub name: String,
    pub ip_addr: Ipv4Addr,
    #[serde(default)]
    pub ip6_addr: Option<Ipv6Addr>,
    /// A location label known to menshen (a key of `service.locations`).
    #[serde(deserialize_with = "de::name")]
    pub location: String,
}

/// An OpenVPN server on this host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenvpnConfig {
    /// The resource id on the wire; the host's name when the file leaves it
    /// out.
    #[serde(default, deserialize_with = "de::resource_host")]
    pub host: String,
    pub transport: GatewayTransport,
    #[serde(deserialize_with = "de::port")]
    pub port: u16,
    /// `--management` address of this server.
    pub management: SocketAddr,
    /// Password file given to `--management`, if any.
    #[serde(default)]
    pub management_password_file: Option<PathBuf>,
    /// Clients this server is meant to carry; `load` = clients / capacity.
    pub capacity: NonZeroU32,
    /// `overloaded` once load is above this; the file's top-level
    /// `overload_threshold` when left out here.
    #[serde(default, deserialize_with = "de::threshold")]
    pub overload_threshold: f64,
    /// Where the port check connects (tcp only); `ip_addr:port` when the
    /// file leaves it out.
    #[serde(default)]
    pub probe_addr: Option<SocketAddr>,
    #[serde(default)]
    pub experimental: bool,
    #[serde(default)]
    pub bucket: String,
}

/// An obfs4 bridge (obfs4proxy) on this host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Obfs4Config {
    /// The resource id on the wire; the host's name when the file leaves it
    /// out.
    #[serde(default, deserialize_with = "de::resource_host")]
    pub host: String,
    #[serde(rename = "type", default)]
    pub kind: BridgeType,
    #[serde(default)]
    pub transport: BridgeTransport,
    /// None for port-hopping bridges.
    #[serde(default, deserialize_with = "de::opt_port")]
    pub port: Option<u16>,
    /// obfs4proxy's state folder (`TOR_PT_STATE_LOCATION`).
    pub state_dir: PathBuf,
    /// Where the port check connects (tcp with a port only); `ip_addr:port`
    /// when the file leaves it out.
    #[serde(default)]
    pub probe_addr: Option<SocketAddr>,
    /// Further options sent as they are (e.g. the hop settings of obfs4-hop);
    /// `cert` and `iatMode` always come from obfs4proxy's state.
    #[serde(default)]
    pub options: Map<String, Value>,
    #[serde(default)]
    pub experimental: bool,
    #[serde(default)]
    pub bucket: String,
}

/// Retry pacing after failed pushes.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// First delay after a transient failure (5xx, no connection).
    #[serde(deserialize_with = "de::short")]
    pub initial: Duration,
    /// Cap of the exponential backoff.
    #[serde(deserialize_with = "de::duration")]
    pub max: Duration,
    /// Delay after menshen refused the agent (401, 403, other 4xx); at least
    /// `interval`.
    #[serde(deserialize_with = "de::duration")]
    pub refused: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            refused: Duration::from_secs(60),
        }
    }
}

/// The whole configuration, checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Base URL of menshen; required to push, not for `--dry-run`. The
    /// override's, else the file's.
    #[serde(skip)]
    pub menshen_url: Option<Url>,
    /// The file's `menshen_url` as written: checked only when no override
    /// replaces it.
    #[serde(rename = "menshen_url", default)]
    file_url: Option<Spanned<String>>,
    /// The overrides' token, else the file's `token_file`.
    #[serde(rename = "token_file", default, deserialize_with = "de::token_file")]
    pub token: Option<TokenSource>,
    /// Heartbeat interval (±10 % jitter).
    #[serde(default = "de::agent_interval", deserialize_with = "de::interval")]
    pub interval: Duration,
    /// How often the local state is looked at, to push at once on a change.
    #[serde(default = "de::secs::<2>", deserialize_with = "de::short")]
    pub check_interval: Duration,
    /// A load change smaller than this does not count as a change (it is
    /// still sent with the next heartbeat).
    #[serde(default = "de::load_step", deserialize_with = "de::fraction")]
    pub load_step: f64,
    /// Timeout of one management-interface query or port check.
    #[serde(default = "de::secs::<2>", deserialize_with = "de::short")]
    pub probe_timeout: Duration,
    /// Timeout of one HTTP request to menshen.
    #[serde(default = "de::secs::<10>", deserialize_with = "de::short")]
    pub request_timeout: Duration,
    /// PUT empty lists on SIGTERM, so clients stop being sent here at once.
    #[serde(default)]
    pub withdraw_on_exit: bool,
    /// Where `/metrics` (the agent's health and OpenVPN's clients) is
    /// served; off when None.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The `overload_threshold` of gateways that do not give their own.
    #[serde(default = "de::overload_threshold", deserialize_with = "de::threshold")]
    pub overload_threshold: f64,
    #[serde(default)]
    pub retry: RetryConfig,
    pub host: HostConfig,
    #[serde(default)]
    pub openvpn: Vec<OpenvpnConfig>,
    #[serde(default)]
    pub obfs4: Vec<Obfs4Config>,
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

/// Reads and checks the file at `path`, then applies `overrides`.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    parse(&text, path, overrides)
}

/// Checks `text` (the contents of `path`, named in errors).
pub fn parse(text: &str, path: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let mut config: Config = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim_end();
        match e.span() {
            Some(span) => located(&file, text, span, msg),
            None => ConfigError(format!("{file}: {msg}")),
        }
    })?;

    let file_url = config.file_url.take();
    config.menshen_url = match (&overrides.menshen_url, file_url) {
        (Some(url), _) => {
            Some(de::url(url).map_err(|m| ConfigError(format!("menshen URL {url:?}: {m}")))?)
        }
        (None, Some(s)) => Some(
            de::url(s.get_ref())
                .map_err(|m| located(&file, text, s.span(), &format!("menshen_url: {m}")))?,
        ),
        (None, None) => None,
    };
    config.token = overrides.token(config.token.take());
    config.metrics_listen = overrides.metrics_listen.or(config.metrics_listen);

    config
        .validate()
        .map_err(|e| match e.at.and_then(|at| at.span(text)) {
            Some(span) => located(&file, text, span, &e.message),
            None => ConfigError(format!("{file}: {}", e.message)),
        })?;
    Ok(config)
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
