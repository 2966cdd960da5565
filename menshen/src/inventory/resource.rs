//! What gateways and bridges have alike as they come in, pushed by agents
//! or defined by operators: how they are spelt, checked and stored.

use menshen_model::{Bridge, BridgeTransport, BridgeType, Gateway, GatewayType};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::validate::{FieldError, Policy, check_bridges, check_gateways};
use crate::store::{Origin, ResourceKind, ResourceRow};

/// A gateway or bridge as clients see it, and as it is given to menshen.
pub trait ResourceBody: DeserializeOwned + Serialize + Sized {
    const KIND: ResourceKind;
    /// The list's name in field errors.
    const LIST: &'static str;
    /// [`check_gateways`] or [`check_bridges`].
    const CHECK: Check<Self>;
    /// [`ResourceRow::from_gateway`] or [`ResourceRow::from_bridge`].
    const TO_ROW: ToRow<Self>;
    /// [`ResourceRow::to_gateway`] or [`ResourceRow::to_bridge`].
    const FROM_ROW: fn(&ResourceRow) -> Self;

    /// What one defined by hand has where its body says nothing.
    fn defaults() -> Vec<(&'static str, Value)>;

    /// What [`ResourceBody::normalise`] sets.
    fn heard(&mut self) -> Heard<'_>;

    /// Lowercase transport and type, the location as `location_label`
    /// spells it (when it knows it), and `now` as the time it was heard
    /// from.
    fn normalise(&mut self, location_label: &dyn Fn(&str) -> Option<String>, now: i64) {
        let heard = self.heard();
        heard.transport.make_ascii_lowercase();
        heard.kind.make_ascii_lowercase();
        if let Some(label) = location_label(heard.location) {
            *heard.location = label;
        }
        *heard.last_seen_millis = now;
    }
}

/// Checks a list, naming fields under a prefix: see [`check_gateways`].
pub type Check<T> = fn(&[T], &str, &dyn Fn(&str) -> bool, &Policy) -> Vec<FieldError>;
/// The row of a resource from `origin`, of an agent.
pub type ToRow<T> = fn(&T, Origin, Option<&str>) -> ResourceRow;

/// The fields of a gateway or bridge that menshen sets itself.
pub struct Heard<'a> {
    transport: &'a mut String,
    kind: &'a mut String,
    location: &'a mut String,
    last_seen_millis: &'a mut i64,
}

/// The [`Heard`] fields of a gateway or bridge: both name them alike.
macro_rules! heard {
    ($resource:expr) => {
        Heard {
            transport: &mut $resource.transport,
            kind: &mut $resource.kind,
            location: &mut $resource.location,
            last_seen_millis: &mut $resource.last_seen_millis,
        }
    };
}

impl ResourceBody for Gateway {
    const KIND: ResourceKind = ResourceKind::Gateway;
    const LIST: &'static str = ResourceKind::Gateway.list();
    const CHECK: Check<Self> = check_gateways;
    const TO_ROW: ToRow<Self> = ResourceRow::from_gateway;
    const FROM_ROW: fn(&ResourceRow) -> Self = ResourceRow::to_gateway;

    /// `type` is `openvpn`, `healthy` true.
    fn defaults() -> Vec<(&'static str, Value)> {
        vec![
            ("type", GatewayType::default().as_str().into()),
            ("healthy", true.into()),
        ]
    }

    fn heard(&mut self) -> Heard<'_> {
        heard!(self)
    }
}

impl ResourceBody for Bridge {
    const KIND: ResourceKind = ResourceKind::Bridge;
    const LIST: &'static str = ResourceKind::Bridge.list();
    const CHECK: Check<Self> = check_bridges;
    const TO_ROW: ToRow<Self> = ResourceRow::from_bridge;
    const FROM_ROW: fn(&ResourceRow) -> Self = ResourceRow::to_bridge;

    /// `type` is `obfs4`, `transport` `tcp`, `healthy` true.
    fn defaults() -> Vec<(&'static str, Value)> {
        vec![
            ("type", BridgeType::default().as_str().into()),
            ("transport", BridgeTransport::default().as_str().into()),
            ("healthy", true.into()),
        ]
    }

    fn heard(&mut self) -> Heard<'_> {
        heard!(self)
    }
}
