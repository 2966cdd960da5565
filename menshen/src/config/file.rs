//! The provider file (`--config`): what an operator writes by hand about the
//! provider, its service settings, its locations and any gateways and
//! bridges that no agent reports. See `examples/menshen.toml`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use crate::inventory::validate::{
    FieldError, Policy, check_bridges, check_gateways, location_problems,
};
use crate::store::{LocationRow, Origin, ProviderRows, ResourceRow};

pub use super::sections::{
    BridgeSection, GatewaySection, LocationSection, PolicySection, ProviderSection, ServiceSection,
};

/// A provider file that could not be used, with where and why.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {field}{sep}{message}", path.display(), sep = if field.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub path: PathBuf,
    pub line: usize,
    /// The offending field, e.g. `gateway[1].ip_addr`; empty for syntax errors.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    pub provider: ProviderSection,
    #[serde(default)]
    pub service: ServiceSection,
    /// Keyed by the location's label.
    #[serde(default)]
    pub locations: BTreeMap<String, Spanned<LocationSection>>,
    #[serde(default, rename = "gateway")]
    pub gateways: Vec<Spanned<GatewaySection>>,
    #[serde(default, rename = "bridge")]
    pub bridges: Vec<Spanned<BridgeSection>>,
    /// What this server accepts beyond the rules every gateway and bridge
    /// follows.
    #[serde(default)]
    pub policy: PolicySection,
}

/// A TOML or serde message with the Rust type names it may carry
/// (`expected f64`) said in terms of what to write instead.
fn plain_types(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected i64", "expected a whole number"),
        ("expected i32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected a sequence", "expected a list ([...])"),
        ("expected a map", "expected a table"),
        ("invalid type: sequence", "invalid type: list"),
        ("invalid type: map", "invalid type: table"),
    ];
    let mut out = message.to_owned();
    for (rust, plain) in WORDS {
        out = out.replace(rust, plain);
    }
    // `expected struct LocationSection`, and the like.
    while let Some(at) = out.find("expected struct ") {
        let end = out[at + 16..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(out.len(), |i| at + 16 + i);
        out.replace_range(at..end, "expected a table");
    }
    out
}

impl ProviderFile {
    /// Reads and checks a provider file. Errors name the file, the line and
    /// the field.
    pub fn load(path: &Path) -> Result<ProviderFile, ConfigError> {
        Self::load_with(path, Policy::default())
    }

    /// [`ProviderFile::load`], allowing what `allowed` allows besides what
    /// the file's `[policy]` does.
    pub fn load_with(path: &Path, allowed: Policy) -> Result<ProviderFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            path: path.to_owned(),
            line: 0,
            field: String::new(),
            message: format!("cannot read: {err}"),
        })?;
        Self::parse_with(&text, path, allowed)
    }

    /// Parses and checks provider file text; `path` is used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ProviderFile, ConfigError> {
        Self::parse_with(text, path, Policy::default())
    }

    /// [`ProviderFile::parse`], allowing what `allowed` allows besides what
    /// the file's `[policy]` does.
    pub fn parse_with(
        text: &str,
        path: &Path,
        allowed: Policy,
    ) -> Result<ProviderFile, ConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: ProviderFile = toml::from_str(text).map_err(|err| ConfigError {
            path: path.to_owned(),
            line: err.span().map(|s| line_of(s.start)).unwrap_or(0),
            field: String::new(),
            message: plain_types(err.message().trim()),
        })?;
        let policy = file.policy_with(allowed);
        let errors = file.check(text, &line_of, &policy);
        match errors.into_iter().next() {
            None => Ok(file),
            Some((line, e)) => Err(ConfigError {
                path: path.to_owned(),
                line,
                field: e.field,
                message: e.message,
            }),
        }
    }

    /// What works but is probably not meant, one sentence each, for
    /// `check-config` and the start-up log.
    pub fn warnings(&self) -> Vec<String> {
        let options = self.service.openvpn_configuration.get_ref();
        let mut warnings = Vec::new();
        if options.contains_key("cipher") && options.contains_key("data-ciphers") {
            warnings.push(
                "service.openvpn_configuration has both cipher and data-ciphers: the desktop \
                 client turns cipher into a second --data-ciphers, so one of them is ignored \
                 at random; keep data-ciphers only"
                    .to_owned(),
            );
        }
        warnings
    }

    /// What the file's `[policy]` allows, and what `allowed` does.
    pub fn policy_with(&self, allowed: Policy) -> Policy {
        Policy {
            allow_private_addresses: allowed.allow_private_addresses
                || self.policy.allow_private_addresses,
        }
    }

    /// Every problem, with the line it is on.
    fn check(
        &self,
        text: &str,
        line_of: &dyn Fn(usize) -> usize,
        policy: &Policy,
    ) -> Vec<(usize, FieldError)> {
        let mut errors = Vec::new();

        let options = &self.service.openvpn_configuration;
        for (key, value) in options.get_ref() {
            let ok = matches!(value, Value::String(_) | Value::Bool(true));
            if !ok {
                errors.push((
                    line_of(options.span().start),
                    FieldError::new(
                        format!("service.openvpn_configuration.{key}"),
                        "must be a string or true",
                    ),
                ));
            }
        }

        let mut labels = HashSet::new();
        for (label, loc) in &self.locations {
            let start = loc.span().start;
            let loc = loc.get_ref();
            let mut err = |field: &str, message: String| {
                errors.push((
                    key_line(text, start, field, line_of),
                    FieldError::new(format!("locations.{label}.{field}"), message),
                ))
            };
            for e in location_problems(&loc.input(label)) {
                err(&e.field, e.message);
            }
            if !labels.insert(label.to_ascii_lowercase()) {
                err("label", "differs from another location only in case".into());
            }
        }

        let location_exists = |l: &str| self.locations.contains_key(l);
        // What `$check` finds wrong with the sections `$sections`, each
        // error with the line of its item.
        macro_rules! list_errors {
            ($sections:expr, $prefix:literal, $check:ident) => {
                let models: Vec<_> = $sections.iter().map(|s| s.get_ref().to_model()).collect();
                for e in $check(&models, $prefix, &location_exists, policy) {
                    let line = item_line(&e.field, $sections, text, line_of);
                    errors.push((line, e));
                }
            };
        }
        list_errors!(&self.gateways, "gateway", check_gateways);
        list_errors!(&self.bridges, "bridge", check_bridges);
        errors
    }

    /// Everything the file defines, as the store keeps it.
    pub fn rows(&self) -> ProviderRows {
        ProviderRows {
            provider: self.provider.to_model(),
            service: self.service.to_settings(),
            locations: self.location_rows(),
            resources: self.resource_rows(),
        }
    }

    pub fn location_rows(&self) -> Vec<LocationRow> {
        self.locations
            .iter()
            .map(|(label, loc)| loc.get_ref().input(label).to_row(Origin::Config))
            .collect()
    }

    pub fn resource_rows(&self) -> Vec<ResourceRow> {
        let gateways = self
            .gateways
            .iter()
            .map(|g| ResourceRow::from_gateway(&g.get_ref().to_model(), Origin::Config, None));
        let bridges = self
            .bridges
            .iter()
            .map(|b| ResourceRow::from_bridge(&b.get_ref().to_model(), Origin::Config, None));
        gateways.chain(bridges).collect()
    }
}

/// The line a field path like `gateway[3].port` points at: the line of that
/// key within the item when it is there, else the item's first line.
fn item_line<T>(
    field: &str,
    items: &[Spanned<T>],
    text: &str,
    line_of: &dyn Fn(usize) -> usize,
) -> usize {
    let Some((index, rest)) = field
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once(']'))
    else {
        return 0;
    };
    let Some(item) = index.parse::<usize>().ok().and_then(|i| items.get(i)) else {
        return 0;
    };
    let key = rest.trim_start_matches('.').split('.').next().unwrap_or("");
    key_line(text, item.span().start, key, line_of)
}

/// The line of `key = ...` in the table that starts at `start` (its header),
/// or the header's line when the key is not written there.
fn key_line(text: &str, start: usize, key: &str, line_of: &dyn Fn(usize) -> usize) -> usize {
    let body = text.get(start..).unwrap_or("");
    let mut offset = start;
    for (i, line) in body.split_inclusive('\n').enumerate() {
        // The table's keys end at the next header.
        if i > 0 && line.trim_start().starts_with('[') {
            break;
        }
        if let Some(after) = line.trim_start().strip_prefix(key)
            && !key.is_empty()
            && after.trim_start().starts_with('=')
        {
            return line_of(offset);
        }
        offset += line.len();
    }
    line_of(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[provider]
domain = "example.org"
api_uri = "https://api.example.org"

[locations.paris]
display_name = "Paris"
country_code = "FR"
lat = 48.86
lon = 2.35
timezone = 1
"#;

    fn parse(text: &str) -> Result<ProviderFile, ConfigError> {
        ProviderFile::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn a_minimal_file_loads_with_defaults() {
        let file = parse(MINIMAL).unwrap();
        let provider = file.provider.to_model();
        assert_eq!(provider.api_versions, ["5"]);
        assert_eq!(provider.services, ["openvpn"]);
        assert_eq!(provider.default_language, "en");
        assert_eq!(file.location_rows()[0].hemisphere, "N");
    }

    #[test]
    fn type_errors_say_what_to_write_not_rust_types() {
        let text = MINIMAL.replace("lat = 48.86", "lat = \"48.86\"");
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("expected a number"), "{err}");
        assert!(!err.message.contains("f64"), "{err}");
        let text = MINIMAL.replace("timezone = 1", "timezone = 1.5");
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("expected a whole number"), "{err}");
        let text = format!(
            "{MINIMAL}\n[[gateway]]\nhost = \"gw\"\nlocation = \"paris\"\nport = \"1194\"\ntransport = \"udp\"\n"
        );
        let err = parse(&text).unwrap_err();
        assert!(!err.message.contains("i64"), "{err}");
        assert_eq!(
            plain_types("expected struct LocationSection"),
            "expected a table"
        );
    }

    #[test]
    fn both_cipher_and_data_ciphers_are_warned_about() {
        assert!(parse(MINIMAL).unwrap().warnings().is_empty());
        let text = format!(
            "{MINIMAL}\n[service.openvpn_configuration]\ncipher = \"AES-256-GCM\"\ndata-ciphers = \"AES-256-GCM\"\n"
        );
        let warnings = parse(&text).unwrap().warnings();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("data-ciphers"), "{warnings:?}");
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/menshen.toml"),
        )
        .unwrap();
        let example = ProviderFile::parse(&example, Path::new("menshen.toml")).unwrap();
        assert!(example.warnings().is_empty(), "{:?}", example.warnings());
    }

    #[test]
    fn donate_period_may_be_written_as_a_number_or_a_string() {
        for value in ["30", "\"30\""] {
            let text = MINIMAL.replace(
                "api_uri = \"https://api.example.org\"",
                &format!("api_uri = \"https://api.example.org\"\ndonate_period = {value}"),
            );
            assert_eq!(
                parse(&text).unwrap().provider.to_model().donate_period,
                "30"
            );
        }
    }

    #[test]
    fn hand_defined_resources_need_public_addresses_unless_allowed() {
        let text = format!(
            "{MINIMAL}\n[[gateway]]\nhost = \"gw\"\nip_addr = \"10.0.0.1\"\nlocation = \"paris\"\nport = 1194\ntransport = \"udp\"\n"
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.field, "gateway[0].ip_addr", "{err}");
        assert!(err.message.contains("private"), "{err}");
        assert_eq!(
            err.line,
            text.lines().position(|l| l.contains("10.0.0.1")).unwrap() + 1
        );
        // allowed by the flag, or by the file itself
        assert!(ProviderFile::parse_with(&text, Path::new("x"), Policy::LAB).is_ok());
        let allowed = format!("{text}\n[policy]\nallow_private_addresses = true\n");
        let file = parse(&allowed).unwrap();
        assert!(file.policy_with(Policy::default()).allow_private_addresses);
        assert!(parse(&format!("{text}\n[policy]\nallow_everything = true\n")).is_err());

        let bridge = format!(
            "{MINIMAL}\n[[bridge]]\nhost = \"br\"\nip_addr = \"93.184.215.15\"\nlocation = \"paris\"\nport = 443\ntransport = \"tcp\"\ntype = \"obfs4\"\noptions = {{ cert = \"Y2VydA\", iatMode = \"0\" }}\n"
        );
        let err = parse(&bridge).unwrap_err();
        assert_eq!(err.field, "bridge[0].options.cert", "{err}");
    }

    #[test]
    fn syntax_errors_name_file_and_line() {
        let err = parse("[provider]\ndomain = \n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("test.toml:2: "), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_line() {
        let text = format!("{MINIMAL}\n[[gateway]]\nhost = \"gw1\"\ncolour = \"red\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("colour"), "{err}");
        let colour_line = text.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
        assert_eq!(err.line, colour_line);
    }

    #[test]
    fn bad_values_name_field_and_line() {
        let text = format!(
            "{MINIMAL}\n[[gateway]]\nhost = \"gw1\"\nip_addr = \"192.0.2.1\"\nlocation = \"paris\"\nport = 1194\ntransport = \"udp\"\n\n[[gateway]]\nhost = \"gw2\"\nip_addr = \"not-an-ip\"\nlocation = \"paris\"\nport = 1194\ntransport = \"udp\"\n"
        );
        let err = ProviderFile::parse_with(&text, Path::new("test.toml"), Policy::LAB).unwrap_err();
        assert_eq!(err.field, "gateway[1].ip_addr");
        let expected_line = text
            .lines()
            .position(|l| l.contains("not-an-ip"))
            .map(|i| i + 1)
            .unwrap();
        assert_eq!(err.line, expected_line, "{err}");
        assert!(err.to_string().contains("gateway[1].ip_addr"), "{err}");
    }

    #[test]
    fn bad_locations_are_refused() {
        let text = MINIMAL.replace("\"FR\"", "\"XX\"");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.field, "locations.paris.country_code");
        let text = MINIMAL.replace("timezone = 1", "timezone = 20");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.field, "locations.paris.timezone");
        assert_eq!(
            err.line,
            text.lines().position(|l| l == "timezone = 20").unwrap() + 1
        );
    }

    #[test]
    fn openvpn_options_are_strings_or_true() {
        let text = format!("{MINIMAL}\n[service.openvpn_configuration]\nverb = 3\n");
        let err = parse(&text).unwrap_err();
        assert_eq!(err.field, "service.openvpn_configuration.verb");
    }
}
