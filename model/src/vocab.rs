//! Words menshen and its agent must spell alike: the transports and types of
//! gateways and bridges as they are on the wire, the options a bridge
//! carries, and the defaults of how often agents push and how long what they
//! pushed stays listed.
//!
//! The wire types ([`crate::Gateway`], [`crate::Bridge`]) keep these as
//! strings, since a client or an older agent may send any text; these enums
//! are what a name is once it has been checked.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often an agent pushes when its configuration does not say
/// (menshen-agent's `interval`).
pub const AGENT_INTERVAL: Duration = Duration::from_secs(15);

/// How long a pushed gateway or bridge stays listed without a heartbeat when
/// menshen is not told otherwise (`--resource-ttl`): four missed heartbeats.
pub const RESOURCE_TTL: Duration = Duration::from_secs(AGENT_INTERVAL.as_secs() * 4);

/// [`RESOURCE_TTL`] written as a flag's default (clap takes text).
pub const RESOURCE_TTL_TEXT: &str = "60s";

/// A whole number of seconds written as a flag's default, like `"30s"`,
/// as a [`Duration`] at compile time: a default is then written once, as
/// the text `--help` shows, and read from there. Anything else fails to
/// compile.
pub const fn seconds(text: &str) -> Duration {
    let bytes = text.as_bytes();
    assert!(
        bytes.len() >= 2 && bytes[bytes.len() - 1] == b's',
        "not like \"30s\""
    );
    let mut secs = 0u64;
    let mut i = 0;
    while i < bytes.len() - 1 {
        assert!(bytes[i].is_ascii_digit(), "not like \"30s\"");
        secs = secs * 10 + (bytes[i] - b'0') as u64;
        i += 1;
    }
    Duration::from_secs(secs)
}

/// The options of an obfs4 bridge, read from its state: its `cert` and its
/// `iatMode`.
pub const OBFS4_OPTIONS: [&str; 2] = ["cert", "iatMode"];

/// The settings of obfsvpn's port hopping, as clients read them from an
/// `obfs4-hop` bridge's options (obfsvpn's hopping client takes the same
/// names). Whole numbers, all of them.
pub const HOP_OPTIONS: [&str; 6] = [
    "min_hop_seconds",
    "hop_jitter",
    "min_hop_port",
    "max_hop_port",
    "port_count",
    "port_seed",
];

/// The whole numbers port-hopping setting `key` (one of [`HOP_OPTIONS`])
/// may take: ports 1-65535; a jitter and a seed from 0, the seconds and the
/// count from 1; at most `u32::MAX`. menshen and its agent check by it
/// alike, so that an agent refuses at start what menshen would refuse.
pub fn hop_option_range(key: &str) -> std::ops::RangeInclusive<i64> {
    let min = match key {
        "hop_jitter" | "port_seed" => 0,
        _ => 1,
    };
    let max = if key.ends_with("_port") {
        65535
    } else {
        i64::from(u32::MAX)
    };
    min..=max
}

/// A name that is none of a vocabulary's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    pub name: String,
    /// The words it could have been, as they are on the wire.
    pub expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not one of {}",
            self.name,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

/// Enums of wire names: `as_str`, `Display`, `FromStr` and serde all
/// spell each variant as given, and `NAMES` lists them in order.
macro_rules! vocabulary {
    ($(
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)+ }
    )+) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)+
        }

        impl $name {
            /// Every variant, in the order of [`Self::NAMES`].
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            /// Every name as it is on the wire.
            pub const NAMES: &'static [&'static str] = &[$($wire,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            /// The variant spelled exactly `name`.
            fn from_str(name: &str) -> Result<Self, UnknownName> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == name)
                    .ok_or_else(|| UnknownName {
                        name: name.to_owned(),
                        expected: Self::NAMES,
                    })
            }
        }
    )+};
}

vocabulary! {
    /// How clients reach an OpenVPN gateway.
    GatewayTransport {
        Tcp = "tcp",
        Udp = "udp",
    }

    /// How clients reach a bridge; tcp when none is written.
    #[derive(Default)]
    BridgeTransport {
        #[default]
        Tcp = "tcp",
        Kcp = "kcp",
        Quic = "quic",
    }

    /// What a gateway runs (its `type`): openvpn, the only one.
    #[derive(Default)]
    GatewayType {
        #[default]
        Openvpn = "openvpn",
    }

    /// What a bridge runs (its `type`); plain obfs4 when none is written.
    #[derive(Default)]
    BridgeType {
        /// obfs4 on one port.
        #[default]
        Obfs4 = "obfs4",
        /// obfs4 with obfsvpn's port hopping (see [`HOP_OPTIONS`]); no port.
        Obfs4Hop = "obfs4-hop",
    }
}

impl BridgeType {
    /// Whether bridges of this type hop ports, and so have none of their own.
    pub const fn hops(self) -> bool {
        matches!(self, BridgeType::Obfs4Hop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_wire_names() {
        assert_eq!(GatewayTransport::NAMES, ["tcp", "udp"]);
        assert_eq!(BridgeTransport::NAMES, ["tcp", "kcp", "quic"]);
        assert_eq!(GatewayType::NAMES, ["openvpn"]);
        assert_eq!(BridgeType::NAMES, ["obfs4", "obfs4-hop"]);
        for (i, t) in BridgeType::ALL.iter().enumerate() {
            assert_eq!(t.as_str(), BridgeType::NAMES[i]);
            assert_eq!(t.to_string(), BridgeType::NAMES[i]);
            assert_eq!(BridgeType::NAMES[i].parse::<BridgeType>(), Ok(*t));
            assert_eq!(
                serde_json::to_value(t).unwrap(),
                serde_json::json!(BridgeType::NAMES[i])
            );
            assert_eq!(
                serde_json::from_value::<BridgeType>(serde_json::json!(t.as_str())).unwrap(),
                *t
            );
        }
    }

    #[test]
    fn other_names_are_refused_by_name() {
        let e = "sctp".parse::<GatewayTransport>().unwrap_err();
        assert_eq!(e.to_string(), "\"sctp\" is not one of tcp, udp");
        // Exactly as written: the wire is lowercase.
        assert!("UDP".parse::<GatewayTransport>().is_err());
        let e = serde_json::from_str::<BridgeTransport>("\"udp\"").unwrap_err();
        assert!(e.to_string().contains("udp"), "{e}");
    }

    #[test]
    fn defaults_agree() {
        assert_eq!(AGENT_INTERVAL, Duration::from_secs(15));
        assert_eq!(RESOURCE_TTL, Duration::from_secs(60));
        assert_eq!(RESOURCE_TTL_TEXT, format!("{}s", RESOURCE_TTL.as_secs()));
        assert_eq!(BridgeType::default(), BridgeType::Obfs4);
        assert_eq!(BridgeTransport::default(), BridgeTransport::Tcp);
        assert_eq!(GatewayType::default(), GatewayType::Openvpn);
        assert!(BridgeType::Obfs4Hop.hops() && !BridgeType::Obfs4.hops());
    }
}
