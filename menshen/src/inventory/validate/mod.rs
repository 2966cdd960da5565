//! The rules what clients are sent must satisfy, in one place: gateways
//! and bridges (wherever they come from: the provider file, an agent, an
//! operator), locations, labels and buckets. Each rule answers with
//! [`FieldError`]s that name the field at fault.

mod address;
mod location;
mod resources;
#[cfg(test)]
mod tests;

use serde::Serialize;

pub use address::{non_public_v4, non_public_v6};
pub use location::{LocationInput, check_location, location_problems, valid_label};
pub use resources::{check_bridges, check_gateways};

use menshen_model::{BridgeTransport, BridgeType, GatewayTransport, GatewayType};

pub const GATEWAY_TRANSPORTS: &[&str] = GatewayTransport::NAMES;
pub const BRIDGE_TRANSPORTS: &[&str] = BridgeTransport::NAMES;
pub const GATEWAY_TYPES: &[&str] = GatewayType::NAMES;
pub const BRIDGE_TYPES: &[&str] = BridgeType::NAMES;

pub(super) const MAX_HOST_LEN: usize = 253;
pub const MAX_BUCKET_LEN: usize = 64;

/// Default of `--max-resources-per-agent`.
pub const DEFAULT_MAX_RESOURCES_PER_AGENT: usize = 64;

/// Length of an obfs4 bridge's `cert`: a node id (20 bytes) and a public key
/// (32 bytes).
pub(super) const OBFS4_CERT_BYTES: usize = 52;

/// The options an obfs4 bridge may carry.
pub(super) const OBFS4_OPTIONS: &[&str] = &menshen_model::vocab::OBFS4_OPTIONS;

/// The options an obfs4-hop bridge may carry besides [`OBFS4_OPTIONS`]
/// (whole numbers, see [`menshen_model::vocab::hop_option_range`]).
pub(super) const HOP_OPTIONS: &[&str] = &menshen_model::vocab::HOP_OPTIONS;

/// What the operator allows beyond the rules every gateway and bridge
/// follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Addresses that are not public unicast (loopback, private,
    /// documentation, ...) may be handed to clients: for labs and tests
    /// (`--allow-private-addresses`).
    pub allow_private_addresses: bool,
}

impl Policy {
    /// Labs and tests: any address.
    pub const LAB: Policy = Policy {
        allow_private_addresses: true,
    };
}

/// At most `max` resources per agent: the error naming the limit when
/// `count` is above it.
pub fn check_count(count: usize, max: usize, list: &str) -> Option<FieldError> {
    (count > max).then(|| {
        FieldError::new(
            list,
            format!(
                "an agent may claim at most {max} gateways and bridges \
                 (--max-resources-per-agent); this would be {count}"
            ),
        )
    })
}

/// One problem with one field of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `gateways[2].ip_addr`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What is wrong with a bucket name, if anything: at most
/// [`MAX_BUCKET_LEN`] characters, no spaces or control characters. The
/// empty name is the public bucket.
pub fn bucket_problem(name: &str) -> Option<String> {
    if name.len() > MAX_BUCKET_LEN {
        Some(format!("is longer than {MAX_BUCKET_LEN} characters"))
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain spaces or control characters".into())
    } else {
        None
    }
}

/// A bucket an invite or override may name: not the public one, and
/// within [`bucket_problem`]'s rules.
pub fn valid_bucket(name: &str) -> bool {
    !name.is_empty() && bucket_problem(name).is_none()
}
