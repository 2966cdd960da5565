//! What a client asks for: the query parameters of the list routes,
//! parsed and checked, with the position and invite buckets added later.

use std::sync::Arc;

use super::ring::Share;
use crate::geo::client_ip::Network;
use crate::geo::{self, CountrySet, GridPoint};
use crate::inventory::Snapshot;
use crate::inventory::catalog::{Catalog, Entry};
use crate::inventory::validate::{BRIDGE_TYPES, GATEWAY_TRANSPORTS};
use crate::store::ResourceKind;

/// What `tr` may be on the bridge list: the bridge transports, and `udp`,
/// which a client may ask for and simply gets none of.
pub(super) const BRIDGE_QUERY_TRANSPORTS: &[&str] = &["tcp", "udp", "kcp", "quic"];

/// The query parameters of the lists.
const PARAMETERS: [&str; 7] = ["cc", "loc", "port", "tr", "type", "experimental", "byload"];

/// A bad query parameter: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParameter {
    pub parameter: &'static str,
    pub message: String,
}

/// A client's request for a list, validated and normalised (canonical case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientQuery {
    /// Uppercase ISO 3166-1 alpha-2.
    pub cc: Option<&'static str>,
    /// A location label, as the inventory spells it.
    pub loc: Option<Arc<str>>,
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
    /// The client's country (its place in [`geo::countries`]): from `cc`,
    /// or filled in from its address. Resources blocked there are left out;
    /// `None` leaves out none.
    pub country: Option<u8>,
    /// Invite-only buckets this request may see, sorted, without duplicates
    /// (granted by the request's invite token; empty when anonymous).
    pub buckets: Vec<String>,
    /// The client's network: where public bridges are shared out (see
    /// [`super::ring`]), it is given its share of them; `None` gives all.
    pub network: Option<Network>,
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
        // Parameters seen so far, by their place in PARAMETERS.
        let mut seen = 0u8;
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
            let bit = 1 << PARAMETERS.iter().position(|p| *p == parameter).unwrap_or(0);
            if seen & bit != 0 {
                return Err(BadParameter {
                    parameter,
                    message: format!("{parameter} is given more than once"),
                });
            }
            seen |= bit;
            match parameter {
                "cc" => {
                    let country = geo::country(value).ok_or_else(|| BadParameter {
                        parameter,
                        message: format!(
                            "cc must be an ISO 3166-1 alpha-2 country code, not {value:?}"
                        ),
                    })?;
                    query.cc = Some(country.code);
                    query.country = geo::country_index(country.code);
                    query.near = Some(GridPoint::of(country.position));
                }
                "loc" => {
                    let label = snapshot.location(value).ok_or_else(|| BadParameter {
                        parameter,
                        message: format!("no location named {value:?}"),
                    })?;
                    query.loc = Some(label.clone());
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

    /// The filters of this query, against the entries of `catalog`.
    pub(super) fn filter<'q>(&'q self, catalog: &'q Catalog) -> Filter<'q> {
        // A transport or type no entry has: nothing can match.
        let none = |name: Option<&str>, find: &dyn Fn(&str) -> Option<u16>| match name {
            None => Ok(None),
            Some(n) => find(n).map(Some).ok_or(()),
        };
        let tr = none(self.tr, &|t| catalog.transport(t));
        let kind = none(self.kind, &|k| catalog.kind(k));
        let mut filter = Filter {
            loc: self.loc.as_deref(),
            port: self.port,
            tr: tr.unwrap_or(None),
            kind: kind.unwrap_or(None),
            experimental: self.experimental,
            buckets: &self.buckets,
            nothing: tr.is_err() || kind.is_err(),
            share: None,
            blocked: self.country.map(|c| (c, catalog.blocked_sets())),
        };
        // The share is chosen among what the other filters admit.
        if let (Some(network), Some(ring)) = (self.network, catalog.ring()) {
            filter.share = Some(ring.share(catalog, &filter, network));
        }
        filter
    }
}

/// A [`ClientQuery`]'s filters in the terms of one catalog.
pub(super) struct Filter<'q> {
    pub(super) loc: Option<&'q str>,
    port: Option<u16>,
    tr: Option<u16>,
    kind: Option<u16>,
    experimental: bool,
    buckets: &'q [String],
    /// Matches nothing (a transport or type no entry has).
    nothing: bool,
    /// The public entries this request is given, when they are shared out;
    /// `None`: every one that matches.
    share: Option<Share>,
    /// The client's country and the catalog's sets of countries entries
    /// are blocked in; `None` when the country is not known.
    blocked: Option<(u8, &'q [CountrySet])>,
}

impl Filter<'_> {
    /// Whether every public, non-experimental entry is admitted: nothing
    /// is filtered but experimental and invite-only ones.
    pub(super) fn admits_plain(&self) -> bool {
        !self.nothing
            && self.port.is_none()
            && self.tr.is_none()
            && self.kind.is_none()
            && self.share.is_none()
    }

    /// Whether `e` is listed for this request (`loc` aside, which the
    /// caller applies by location).
    pub(super) fn admits(&self, catalog: &Catalog, e: &Entry) -> bool {
        self.matches(e)
            && if e.bucket == 0 {
                self.share.as_ref().is_none_or(|s| s.gives(e))
            } else {
                self.buckets.iter().any(|b| b == catalog.bucket(e.bucket))
            }
    }

    /// Whether `e` passes the query's filters (`loc` aside), whoever may
    /// see it.
    pub(super) fn matches(&self, e: &Entry) -> bool {
        !self.nothing
            && (self.experimental || !e.experimental)
            && self.port.is_none_or(|p| p == e.port)
            && self.tr.is_none_or(|t| t == e.transport)
            && self.kind.is_none_or(|k| k == e.kind)
            && (e.blocked == 0
                || self.blocked.is_none_or(|(country, sets)| {
                    !sets
                        .get(e.blocked as usize - 1)
                        .is_some_and(|set| set.contains(country))
                }))
    }
}
