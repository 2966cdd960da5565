//! What the file's fields cannot check alone: each resource's `host` (the
//! host's name unless given, and never twice), the values that default to
//! another field's, a bridge's port and options against its type, and the
//! retry delays against each other.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use menshen_model::vocab::{OBFS4_OPTIONS, hop_option_range};
use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};

use super::{BridgeType, Config, HOP_OPTIONS};

/// A check that failed.
pub(super) struct Invalid {
    pub message: String,
    /// The value at fault, when the file wrote it.
    pub at: Option<Written>,
}

impl Invalid {
    fn new(message: String) -> Invalid {
        Invalid { message, at: None }
    }
}

/// Where the file wrote a value: `key` of entry `index` of `[[table]]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    table: &'static str,
    index: usize,
    key: &'static str,
}

impl Written {
    /// The value's place in `text`, the file the configuration was read from.
    pub fn span(self, text: &str) -> Option<Range<usize>> {
        let doc = DeTable::parse(text).ok()?;
        let (_, entries) = doc
            .get_ref()
            .iter()
            .find(|(k, _)| k.get_ref() == self.table)?;
        let DeValue::Array(entries) = entries.get_ref() else {
            return None;
        };
        let DeValue::Table(entry) = entries.get(self.index)?.get_ref() else {
            return None;
        };
        let (_, value) = entry.iter().find(|(k, _)| k.get_ref() == self.key)?;
        Some(value.span())
    }
}

impl Config {
    /// Checks what needs several fields, and fills in the values that default
    /// to another field's: a resource's `host` (the host's name), a gateway's
    /// `overload_threshold` (the file's) and the port checks' `probe_addr`
    /// (`ip_addr:port`).
    pub(super) fn validate(&mut self) -> Result<(), Invalid> {
        let ip = IpAddr::V4(self.host.ip_addr);
        let mut seen = Vec::new();
        for (i, g) in self.openvpn.iter_mut().enumerate() {
            g.host = unique_host(&g.host, &self.host.name, &seen, "openvpn", i)?;
            seen.push(g.host.clone());
            // 0 is refused when written: it means "not written".
            if g.overload_threshold == 0.0 {
                g.overload_threshold = self.overload_threshold;
            }
            g.probe_addr.get_or_insert(SocketAddr::new(ip, g.port));
        }

        let mut seen = Vec::new();
        for (i, b) in self.obfs4.iter_mut().enumerate() {
            b.host = unique_host(&b.host, &self.host.name, &seen, "obfs4", i)?;
            seen.push(b.host.clone());
            let name = &b.host;
            let complain = |m: String| Invalid::new(format!("obfs4[{i}] ({name}): {m}"));
            if !b.kind.hops() && b.port.is_none() {
                return Err(complain(format!(
                    "`port` is required for type \"{}\"",
                    b.kind
                )));
            }
            if let Some(key) = OBFS4_OPTIONS.iter().find(|k| b.options.contains_key(**k)) {
                return Err(complain(format!(
                    "options.{key} is read from the bridge's state in state_dir; remove it here"
                )));
            }
            check_hop_options(b.kind, &b.options).map_err(complain)?;
            if b.probe_addr.is_none() {
                b.probe_addr = b.port.map(|p| SocketAddr::new(ip, p));
            }
        }

        if self.retry.max < self.retry.initial {
            return Err(Invalid::new(
                "retry.max must not be below retry.initial".into(),
            ));
        }
        Ok(())
    }
}

/// The wire `host` of entry `index` of `[[table]]`: its own (`own`, empty
/// when not written), else the host's name; refused when an earlier entry
/// (`seen`) has it.
fn unique_host(
    own: &str,
    default: &str,
    seen: &[String],
    table: &'static str,
    index: usize,
) -> Result<String, Invalid> {
    let name = if own.is_empty() { default } else { own };
    if seen.iter().any(|s| s == name) {
        let message = format!(
            "{table}[{index}].host: {name:?} is used twice; give each [[{table}]] its own `host`"
        );
        return Err(if own.is_empty() {
            Invalid::new(format!("{table}[{index}]: {message}"))
        } else {
            Invalid {
                message,
                at: Some(Written {
                    table,
                    index,
                    key: "host",
                }),
            }
        });
    }
    Ok(name.to_owned())
}

/// Options of an `obfs4-hop` bridge must be whole numbers in menshen's
/// ranges where they are hop settings, with the port range in order; a
/// plain obfs4 bridge does not hop, so it carries none of them.
fn check_hop_options(kind: BridgeType, options: &Map<String, Value>) -> Result<(), String> {
    let number = |key: &str| -> Result<Option<i64>, String> {
        let range = hop_option_range(key);
        match options.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) if n.as_i64().is_some_and(|v| range.contains(&v)) => {
                Ok(n.as_i64())
            }
            Some(other) => Err(format!(
                "options.{key} must be a whole number in {}-{}, not {other}",
                range.start(),
                range.end()
            )),
        }
    };
    if !kind.hops() {
        if let Some(key) = HOP_OPTIONS.iter().find(|k| options.contains_key(**k)) {
            return Err(format!(
                "options.{key} is a port-hopping setting; use type = \"{}\"",
                BridgeType::Obfs4Hop
            ));
        }
        return Ok(());
    }
    let mut values = Vec::with_capacity(HOP_OPTIONS.len());
    for key in HOP_OPTIONS {
        values.push(number(key)?);
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
