//! How single fields of the file are read and checked, and their defaults.
//! An error here is reported by the TOML reader at the value at fault.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::TokenSource;

pub fn agent_interval() -> Duration {
    menshen_model::AGENT_INTERVAL
}

/// `N` seconds.
pub fn secs<const N: u64>() -> Duration {
    Duration::from_secs(N)
}

pub fn load_step() -> f64 {
    0.05
}

pub fn overload_threshold() -> f64 {
    0.9
}

/// A duration as `"15s"`, `"1m 30s"`, `"500ms"`, or a number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Secs(u64),
        Text(String),
    }
    match Written::deserialize(d)? {
        Written::Secs(s) => Ok(Duration::from_secs(s)),
        Written::Text(t) => humantime::parse_duration(&t).map_err(|e| {
            D::Error::custom(format!(
                "invalid duration {t:?} ({e}); write e.g. \"15s\", \"500ms\" or \"2m\""
            ))
        }),
    }
}

/// A [`duration`] from `MIN_MS` to `MAX_MS` milliseconds.
fn within<'de, D: Deserializer<'de>, const MIN_MS: u64, const MAX_MS: u64>(
    d: D,
) -> Result<Duration, D::Error> {
    let (min, max) = (Duration::from_millis(MIN_MS), Duration::from_millis(MAX_MS));
    let v = duration(d)?;
    if v < min || v > max {
        return Err(D::Error::custom(format!(
            "must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(v)
}

/// The heartbeat interval: 1 s to 1 h.
pub fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    within::<D, 1_000, 3_600_000>(d)
}

/// Checks, timeouts and the first retry: 100 ms to 5 min.
pub fn short<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    within::<D, 100, 300_000>(d)
}

pub fn threshold<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(v > 0.0 && v <= 1.0) {
        return Err(D::Error::custom(
            "must be a fraction of capacity above 0 and at most 1 (e.g. 0.9)",
        ));
    }
    Ok(v)
}

pub fn fraction<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = f64::deserialize(d)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(D::Error::custom("must be between 0 and 1"));
    }
    Ok(v)
}

pub fn port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let v = u16::deserialize(d)?;
    if v == 0 {
        return Err(D::Error::custom("port must be between 1 and 65535"));
    }
    Ok(v)
}

pub fn opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    port(d).map(Some)
}

/// A name that is neither empty nor padded with spaces.
pub fn name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    unpadded(d, "must not be empty nor start or end with spaces")
}

/// A resource's own `host`: a [`name`], said to be the host.
pub fn resource_host<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    unpadded(d, "host must not be empty nor start or end with spaces")
}

fn unpadded<'de, D: Deserializer<'de>>(d: D, complaint: &str) -> Result<String, D::Error> {
    let v = String::deserialize(d)?;
    if v.trim().is_empty() || v.trim() != v {
        return Err(D::Error::custom(complaint));
    }
    Ok(v)
}

pub fn token_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TokenSource>, D::Error> {
    PathBuf::deserialize(d).map(|p| Some(TokenSource::File(p)))
}

/// menshen's base URL: http or https, with a host, without a query.
pub fn url(s: &str) -> Result<Url, String> {
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
