//! Provider files for tests, from one builder: each test names only the
//! locations, gateways and bridges it is about, and all share the rest.

use std::path::{Path, PathBuf};

/// A provider file being written: `vpn.test` served at
/// `https://api.vpn.test`, then what is added, in order.
#[derive(Debug, Clone)]
pub struct ProviderFile {
    text: String,
}

impl Default for ProviderFile {
    fn default() -> Self {
        Self::new()
    }
}

/// Places the tests use, with their coordinates and time zone.
const PLACES: &[(&str, &str, &str, &str, &str, i32)] = &[
    ("amsterdam", "Amsterdam", "NL", "52.37", "4.89", 1),
    ("paris", "Paris", "FR", "48.86", "2.35", 1),
    ("montreal", "Montreal", "CA", "45.50", "-73.57", -5),
    ("miami", "Miami", "US", "25.76", "-80.19", -5),
    ("seattle", "Seattle", "US", "47.61", "-122.33", -8),
    ("tokyo", "Tokyo", "JP", "35.68", "139.69", 9),
];

impl ProviderFile {
    pub fn new() -> ProviderFile {
        ProviderFile {
            text: "\n[provider]\ndomain = \"vpn.test\"\napi_uri = \"https://api.vpn.test\"\n"
                .to_owned(),
        }
    }

    /// A location without a position: its display name is its label,
    /// capitalised.
    pub fn location(mut self, label: &str, country_code: &str) -> ProviderFile {
        let mut display = label.to_owned();
        display[..1].make_ascii_uppercase();
        self.text += &format!(
            "\n[locations.{label}]\ndisplay_name = \"{display}\"\ncountry_code = \"{country_code}\"\n"
        );
        self
    }

    /// One of the known places (see [`PLACES`]), with its position and time
    /// zone.
    pub fn place(mut self, label: &str) -> ProviderFile {
        let &(_, display, country_code, lat, lon, timezone) = PLACES
            .iter()
            .find(|p| p.0 == label)
            .unwrap_or_else(|| panic!("{label} is not one of the test places"));
        self.text += &format!(
            "\n[locations.{label}]\ndisplay_name = \"{display}\"\ncountry_code = \"{country_code}\"\n\
             lat = {lat}\nlon = {lon}\ntimezone = {timezone}\n"
        );
        self
    }

    /// A hand-defined OpenVPN gateway on UDP port 1194.
    pub fn gateway(mut self, host: &str, ip_addr: &str, location: &str) -> ProviderFile {
        self.text += &format!(
            "\n[[gateway]]\nhost = \"{host}\"\nip_addr = \"{ip_addr}\"\nlocation = \"{location}\"\n\
             port = 1194\ntransport = \"udp\"\n"
        );
        self
    }

    /// A hand-defined obfs4 bridge on TCP port 443.
    pub fn bridge(mut self, host: &str, ip_addr: &str, location: &str, cert: &str) -> ProviderFile {
        self.text += &format!(
            "\n[[bridge]]\nhost = \"{host}\"\nip_addr = \"{ip_addr}\"\nlocation = \"{location}\"\n\
             port = 443\ntransport = \"tcp\"\ntype = \"obfs4\"\n\
             options = {{ cert = \"{cert}\", iatMode = \"0\" }}\n"
        );
        self
    }

    /// A line (`key = value`) more for what was added last.
    pub fn with(mut self, line: &str) -> ProviderFile {
        self.text += line;
        self.text.push('\n');
        self
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Writes the file as `dir/provider.toml` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("provider.toml");
        std::fs::write(&path, &self.text).unwrap();
        path
    }
}

impl AsRef<str> for ProviderFile {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// `examples/menshen.toml`, the provider file most end-to-end tests serve.
pub fn example() -> PathBuf {
    crate::tools::repo().join("examples/menshen.toml")
}

/// `examples/menshen.toml` up to its first gateway: the provider and its
/// locations, no gateway or bridge.
pub fn example_without_resources() -> String {
    let text = std::fs::read_to_string(example()).unwrap();
    let end = text.find("[[gateway]]").expect("the example has gateways");
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_read_as_written() {
        let file = ProviderFile::new()
            .place("amsterdam")
            .location("hidden", "IS")
            .gateway("gw.ams", "192.0.2.1", "amsterdam")
            .with("bucket = \"friends\"");
        assert_eq!(
            file.as_str(),
            r#"
[provider]
domain = "vpn.test"
api_uri = "https://api.vpn.test"

[locations.amsterdam]
display_name = "Amsterdam"
country_code = "NL"
lat = 52.37
lon = 4.89
timezone = 1

[locations.hidden]
display_name = "Hidden"
country_code = "IS"

[[gateway]]
host = "gw.ams"
ip_addr = "192.0.2.1"
location = "amsterdam"
port = 1194
transport = "udp"
bucket = "friends"
"#
        );
    }
}
