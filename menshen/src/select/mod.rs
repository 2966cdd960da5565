//! Which gateways and bridges a client gets, and in what order.
//!
//! Filters (`loc`, `port`, `tr`, `type`) narrow the list; [`order`] sorts
//! it for the client's position: `cc` when given, else the GeoIP position of
//! its address (see `geo::Locator`). Experimental resources are listed only for `experimental=true`; resources
//! in a bucket (invite-only) are listed only to requests whose invite token
//! grants that bucket (`ClientQuery::buckets`).

pub mod order;

use menshen_model::{Bridge, Gateway};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::geo::{self, GridPoint};
use crate::inventory::Snapshot;
use crate::inventory::validate::{BRIDGE_TYPES, GATEWAY_TRANSPORTS};

/// What `tr` may be on the bridge list: the bridge transports, and `udp`,
/// which a client may ask for and simply gets none of.
const BRIDGE_QUERY_TRANSPORTS: &[&str] = &["tcp", "udp", "kcp", "quic"];
use crate::store::ResourceKind;

/// A bad query parameter: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParameter {
    pub parameter: &'static str,
    pub message: String,
}

/// A client's request for a list, validated and normalised (canonical case),
/// usable as a cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClientQuery {
    /// Uppercase ISO 3166-1 alpha-2.
    pub cc: Option<&'static str>,
    /// A location label, as the inventory spells it.
    pub loc: Option<String>,
    pub port: Option<u16>,
    pub tr: Option<&'static str>,
    /// Bridge type; ignored for gateways.
    pub kind: Option<&'static str>,
    /// Whether experimental resources are wanted too.
    pub experimental: bool,
    /// Gateways least loaded first, wherever they are (`byload=true`).
    pub byload: bool,
    /// Where the client is: from `cc`, or filled in from its address.
    pub near: Option<GridPoint>,
    /// Invite-only buckets this request may see, sorted, without duplicates
    /// (granted by the request's invite token; empty when anonymous).
    pub buckets: Vec<String>,
}

/// Transports a client may ask for on each list.
fn transports(kind: ResourceKind) -> &'static [&'static str] {
    match kind {
        ResourceKind::Gateway => GATEWAY_TRANSPORTS,
        ResourceKind::Bridge => BRIDGE_QUERY_TRANSPORTS,
    }
}

fn one_of(
    parameter: &'static str,
    value: &str,
    allowed: &[&'static str],
) -> Result<&'static str, BadParameter> {
    allowed
        .iter()
        .find(|a| a.eq_ignore_ascii_case(value))
        .copied()
        .ok_or_else(|| BadParameter {
            parameter,
            message: format!(
                "{parameter} must be one of {}, not {:?}",
                allowed.join(", "),
                value
            ),
        })
}

/// `true`, `1`, `yes` or `false`, `0`, `no`, any case.
fn boolean(parameter: &'static str, value: &str) -> Result<bool, BadParameter> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(BadParameter {
            parameter,
            message: format!("{parameter} must be true or false, not {value:?}"),
        }),
    }
}

impl ClientQuery {
    /// Parses a raw query string for the list of `kind`. An empty value is
    /// the same as an absent parameter; values are case-insensitive;
    /// parameters this endpoint does not know are ignored.
    pub fn parse(
        raw: Option<&str>,
        kind: ResourceKind,
        snapshot: &Snapshot,
    ) -> Result<ClientQuery, BadParameter> {
        let mut query = ClientQuery::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let value = value.trim();
            let parameter: &'static str = match name.as_ref() {
                "cc" => "cc",
                "loc" => "loc",
                "port" => "port",
                "tr" => "tr",
                "type" if kind == ResourceKind::Bridge => "type",
                "experimental" => "experimental",
                "byload" if kind == ResourceKind::Gateway => "byload",
                _ => continue,
            };
            if value.is_empty() {
                continue;
            }
            if seen.contains(&parameter) {
                return Err(BadParameter {
                    parameter,
                    message: format!("{parameter} is given more than once"),
                });
            }
            seen.push(parameter);
            match parameter {
                "cc" => {
                    let country = geo::country(value).ok_or_else(|| BadParameter {
                        parameter,
                        message: format!(
                            "cc must be an ISO 3166-1 alpha-2 country code, not {value:?}"
                        ),
                    })?;
                    query.cc = Some(country.code);
                    query.near = Some(GridPoint::of(country.position));
                }
                "loc" => {
                    let label = snapshot.location_label(value).ok_or_else(|| BadParameter {
                        parameter,
                        message: format!("no location named {value:?}"),
                    })?;
                    query.loc = Some(label.to_owned());
                }
                "port" => {
                    let port = value
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| BadParameter {
                            parameter,
                            message: format!(
                                "port must be a number from 1 to 65535, not {value:?}"
                            ),
                        })?;
                    query.port = Some(port);
                }
                "tr" => query.tr = Some(one_of(parameter, value, transports(kind))?),
                "type" => query.kind = Some(one_of(parameter, value, BRIDGE_TYPES)?),
                "experimental" => query.experimental = boolean(parameter, value)?,
                "byload" => query.byload = boolean(parameter, value)?,
                _ => unreachable!("only known parameters reach here"),
            }
        }
        Ok(query)
    }

    fn admits(&self, c: Candidate<'_>) -> bool {
        (c.bucket.is_empty() || self.buckets.iter().any(|b| b == c.bucket))
            && (self.experimental || !c.experimental)
            && self.loc.as_deref().is_none_or(|l| l == c.location)
            && self.port.is_none_or(|p| i64::from(p) == c.port)
            && self.tr.is_none_or(|t| t == c.transport)
            && self.kind.is_none_or(|k| k == c.kind)
    }
}

/// What the filters look at, for gateways and bridges alike.
struct Candidate<'a> {
    location: &'a str,
    port: i64,
    transport: &'a str,
    kind: &'a str,
    experimental: bool,
    bucket: &'a str,
}

impl<'a> From<&'a Gateway> for Candidate<'a> {
    fn from(g: &'a Gateway) -> Self {
        Candidate {
            location: &g.location,
            port: g.port,
            transport: &g.transport,
            kind: &g.kind,
            experimental: g.experimental,
            bucket: &g.bucket,
        }
    }
}

impl<'a> From<&'a Bridge> for Candidate<'a> {
    fn from(b: &'a Bridge) -> Self {
        Candidate {
            location: &b.location,
            port: b.port,
            transport: &b.transport,
            kind: &b.kind,
            experimental: b.experimental,
            bucket: &b.bucket,
        }
    }
}

impl order::Ranked for Gateway {
    fn location(&self) -> &str {
        &self.location
    }
    fn load(&self) -> f64 {
        self.load
    }
    fn overloaded(&self) -> bool {
        self.overloaded
    }
}

impl order::Ranked for Bridge {
    fn location(&self) -> &str {
        &self.location
    }
    fn load(&self) -> f64 {
        self.load
    }
    fn overloaded(&self) -> bool {
        self.overloaded
    }
}

/// The gateways for `query`, in the order the client should try them;
/// `seed` fixes the random part of the order.
pub fn gateways<'s>(snapshot: &'s Snapshot, query: &ClientQuery, seed: u64) -> Vec<&'s Gateway> {
    let mut admitted: Vec<&Gateway> = snapshot
        .gateways
        .iter()
        .filter(|g| query.admits((*g).into()))
        .collect();
    if query.byload {
        // Overloaded ones last, then by load; equals keep the stable order.
        admitted.sort_by(|a, b| {
            (a.overloaded, a.load)
                .partial_cmp(&(b.overloaded, b.load))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        return admitted;
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    order::order(admitted, query.near, |l| snapshot.place(l), &mut rng)
}

/// The bridges for `query`, in the order the client should try them;
/// `seed` fixes the random part of the order.
pub fn bridges<'s>(snapshot: &'s Snapshot, query: &ClientQuery, seed: u64) -> Vec<&'s Bridge> {
    let admitted = snapshot
        .bridges
        .iter()
        .filter(|b| query.admits((*b).into()))
        .collect();
    let mut rng = SmallRng::seed_from_u64(seed);
    order::order(admitted, query.near, |l| snapshot.place(l), &mut rng)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Snapshot;
    use crate::store::{Inventory, LocationRow};

    fn snapshot() -> Snapshot {
        let inventory = Inventory {
            locations: vec![LocationRow {
                label: "Paris".into(),
                display_name: "Paris".into(),
                country_code: "FR".into(),
                lat: None,
                lon: None,
                timezone: None,
                hemisphere: String::new(),
                region: String::new(),
                origin: "config".into(),
            }],
            ..Default::default()
        };
        Snapshot::build(&inventory, 0, &Default::default())
    }

    fn parse(raw: &str, kind: ResourceKind) -> Result<ClientQuery, BadParameter> {
        ClientQuery::parse(Some(raw), kind, &snapshot())
    }

    #[test]
    fn every_bridge_transport_can_be_asked_for() {
        use crate::inventory::validate::BRIDGE_TRANSPORTS;
        assert!(
            BRIDGE_TRANSPORTS
                .iter()
                .all(|t| BRIDGE_QUERY_TRANSPORTS.contains(t))
        );
    }

    #[test]
    fn values_are_normalised() {
        let q = parse("cc=de&loc=PARIS&tr=TCP&port=443", ResourceKind::Gateway).unwrap();
        assert_eq!(q.cc, Some("DE"));
        assert_eq!(q.near, Some(GridPoint { lat: 53, lon: 13 }));
        assert_eq!(q.loc.as_deref(), Some("Paris"));
        assert_eq!(q.tr, Some("tcp"));
        assert_eq!(q.port, Some(443));
    }

    #[test]
    fn empty_values_count_as_absent() {
        let q = parse("cc=&loc=&port=&tr=&type=", ResourceKind::Bridge).unwrap();
        assert_eq!(q, ClientQuery::default());
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (raw, parameter) in [
            ("tr=carrier-pigeon", "tr"),
            ("port=99999", "port"),
            ("port=0", "port"),
            ("port=-1", "port"),
            ("cc=NOTACOUNTRY", "cc"),
            ("cc=ZZ", "cc"),
            ("loc=atlantis", "loc"),
            ("tr=tcp&tr=udp", "tr"),
            ("experimental=maybe", "experimental"),
            ("byload=often", "byload"),
        ] {
            assert_eq!(
                parse(raw, ResourceKind::Gateway).unwrap_err().parameter,
                parameter,
                "{raw}"
            );
        }
        assert_eq!(
            parse("type=wireguard", ResourceKind::Bridge)
                .unwrap_err()
                .parameter,
            "type"
        );
        assert_eq!(
            parse("tr=kcp", ResourceKind::Gateway)
                .unwrap_err()
                .parameter,
            "tr"
        );
    }

    #[test]
    fn byload_is_read_on_gateways_and_ignored_on_bridges() {
        assert!(parse("byload=true", ResourceKind::Gateway).unwrap().byload);
        assert!(!parse("byload=0", ResourceKind::Gateway).unwrap().byload);
        assert!(!parse("byload=often", ResourceKind::Bridge).unwrap().byload);
    }

    #[test]
    fn unknown_parameters_are_ignored() {
        assert_eq!(
            parse("lang=en&type=obfs4", ResourceKind::Gateway).unwrap(),
            ClientQuery::default()
        );
    }
}
