//! The in-memory view clients are served from.
//!
//! A [`Snapshot`] is built from the store's [`Inventory`] and never changes;
//! a new one replaces it atomically when the store changes, when a pushed
//! resource expires, and periodically as a backstop. Client requests read
//! the current snapshot and never touch the database.

pub mod catalog;
pub mod edit;
mod handle;
pub mod invites;
pub mod resource;
pub mod validate;

pub use handle::{InventoryHandle, MIN_RELOAD_GAP};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::HeaderValue;
use menshen_model::{Bridge, EipService, Gateway, Location, format_timezone};

use crate::geo::{CountrySet, Place, Position};
use crate::select::ring::Ring;
use crate::store::{Inventory, Outages, OverrideRow, ProbeState, ResourceKind, ResourceRow};
use catalog::{Catalog, CatalogBuilder, Item};

/// Ready response bytes with their entity tag.
#[derive(Debug)]
pub struct Cached {
    pub body: Bytes,
    /// A strong entity tag, quoted: the same bytes give the same tag on
    /// every replica.
    pub etag: String,
    pub etag_header: HeaderValue,
    pub content_type: &'static str,
}

impl Cached {
    pub fn new(body: Vec<u8>, content_type: &'static str) -> Cached {
        let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&body));
        // Hex digits in quotes are always a valid header value.
        let etag_header = HeaderValue::from_str(&etag).expect("hex etag");
        Cached {
            body: Bytes::from(body),
            etag,
            etag_header,
            content_type,
        }
    }

    pub fn json<T: serde::Serialize>(value: &T) -> Cached {
        // Serialising these plain data types cannot fail.
        let body = serde_json::to_vec(value).unwrap_or_default();
        Cached::new(body, "application/json")
    }
}

/// How snapshots are built; fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Pushed resources not heard from within this many ms are left out.
    pub ttl_millis: i64,
    /// Goes into `/provider.json`; computed from the CA certificate, not stored.
    pub ca_fingerprint: String,
    /// `api_versions` of `/provider.json`: the API versions served.
    pub api_versions: Vec<String>,
    /// Seed of the requests' random orderings, for tests and benchmarks:
    /// the n-th request draws from a generator seeded with (seed, n). Each
    /// request draws afresh from the thread's generator when `None`.
    pub order_seed: Option<u64>,
    /// How public bridges are shared out among client networks; every
    /// client gets all of them when `None`.
    pub bridges: Option<Arc<crate::select::ring::Distribution>>,
    /// Leave gateways and bridges the prober found dysfunctional out of
    /// client lists (see [`ProbeView`]).
    pub drop_dysfunctional: bool,
    /// Signs the client answers; unsigned when `None`.
    pub signer: Option<Arc<crate::sign::ListSigner>>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            ttl_millis: 60_000,
            ca_fingerprint: String::new(),
            api_versions: vec!["5".into()],
            order_seed: None,
            bridges: None,
            drop_dysfunctional: true,
            signer: None,
        }
    }
}

/// An immutable view of the inventory at one moment.
pub struct Snapshot {
    pub built_at_millis: i64,
    pub provider: Cached,
    /// `/api/5/service` for clients wherever they are.
    pub service: Cached,
    /// `/api/5/service` for clients in a country where resources are
    /// blocked, when what it says of the locations differs there (see
    /// [`Snapshot::service_for`]).
    service_by_country: HashMap<u8, Cached>,
    /// Gateways clients may be given, in stable order.
    pub gateways: Vec<Gateway>,
    /// Bridges clients may be given, in stable order.
    pub bridges: Vec<Bridge>,
    /// Lowercased label to label.
    labels: HashMap<String, Arc<str>>,
    /// What the lists are assembled from.
    gateway_catalog: Catalog,
    bridge_catalog: Catalog,
    /// The service's OpenVPN options, for served client configurations.
    pub openvpn_configuration: serde_json::Map<String, serde_json::Value>,
    /// The service as `/api/5/service` answers it, for the v3 description.
    pub eip_service: EipService,
    /// When the next listed resource expires, if any does.
    pub next_expiry_millis: Option<i64>,
    pub location_count: usize,
    /// Agent-pushed gateways and bridges, healthy by their last report, not
    /// heard from within the TTL (`stale` to operators).
    pub stale_gateways: usize,
    pub stale_bridges: usize,
    /// What the prober found, as far as clients and operators see it.
    pub probes: ProbeView,
    /// The signatures of this snapshot's answers, when they are signed.
    pub signatures: Option<crate::sign::Signatures>,
    /// Invites by id, to check tokens against (see [`Snapshot::grant`]).
    invites: HashMap<String, invites::Invite>,
    /// Admin tokens revoked before they expire, checked on each admin
    /// request.
    pub admin_revocations: crate::store::AdminRevocations,
}

/// The prober's results as they bear on client lists.
///
/// Live resources the prober found dysfunctional are left out (with
/// [`SnapshotOptions::drop_dysfunctional`]), unless that would leave no
/// gateway (or no bridge) at all: when every one of a kind fails, the
/// likelier cause is the prober's own network, and taking them all out
/// would turn a monitoring fault into an outage. The kind is then
/// `suspended` and nothing of it is left out.
#[derive(Debug, Default)]
pub struct ProbeView {
    /// Left out of client lists for failing the prober's checks.
    pub excluded: HashSet<(ResourceKind, String)>,
    /// Kinds for which leaving the dysfunctional ones out is suspended.
    pub suspended: Vec<ResourceKind>,
    /// Stored resources by kind and state.
    pub counts: BTreeMap<(ResourceKind, ProbeState), usize>,
}

impl ProbeView {
    /// Whether resource `kind`/`host` is left out for failing its checks.
    pub fn excludes(&self, kind: ResourceKind, host: &str) -> bool {
        !self.excluded.is_empty() && self.excluded.contains(&(kind, host.to_owned()))
    }

    /// Works out what to leave out of `live`, and leaves it out.
    fn apply(inventory: &Inventory, live: &mut Vec<&ResourceRow>, drop: bool) -> ProbeView {
        let mut view = ProbeView::default();
        let probes = inventory.probes_by_resource();
        let state = |r: &ResourceRow| {
            probes
                .get(&(r.kind, r.host.as_str()))
                .map_or(ProbeState::Untested, |p| p.state)
        };
        for r in &inventory.resources {
            *view.counts.entry((r.kind, state(r))).or_insert(0) += 1;
        }
        if !drop {
            return view;
        }
        let mut left_out: HashSet<(ResourceKind, &str)> = HashSet::new();
        for kind in [ResourceKind::Gateway, ResourceKind::Bridge] {
            let (bad, good): (Vec<&&ResourceRow>, Vec<&&ResourceRow>) = live
                .iter()
                .filter(|r| r.kind == kind)
                .partition(|r| state(r) == ProbeState::Dysfunctional);
            if bad.is_empty() {
                continue;
            }
            if good.is_empty() {
                view.suspended.push(kind);
                continue;
            }
            left_out.extend(bad.into_iter().map(|r| (kind, r.host.as_str())));
        }
        if !left_out.is_empty() {
            live.retain(|r| !left_out.contains(&(r.kind, r.host.as_str())));
            view.excluded = left_out
                .into_iter()
                .map(|(kind, host)| (kind, host.to_owned()))
                .collect();
        }
        view
    }
}

/// Whether `r` is live at `now`, not counting time during which the store
/// was unreachable (its agent could not have been heard then).
fn is_live_despite(r: &ResourceRow, now: i64, ttl_millis: i64, outages: &Outages) -> bool {
    r.healthy
        && (!r.expires()
            || r.last_seen_millis
                .saturating_add(ttl_millis)
                .saturating_add(outages.frozen_between(r.last_seen_millis, now))
                > now)
}

/// The inventory's resources with operators' overrides applied; those in
/// maintenance are left out.
fn with_overrides(inventory: &Inventory) -> Vec<std::borrow::Cow<'_, ResourceRow>> {
    use std::borrow::Cow;
    if inventory.overrides.is_empty() {
        return inventory.resources.iter().map(Cow::Borrowed).collect();
    }
    let overrides: HashMap<(ResourceKind, &str), &OverrideRow> = inventory
        .overrides
        .iter()
        .map(|o| ((o.kind, o.host.as_str()), o))
        .collect();
    inventory
        .resources
        .iter()
        .filter_map(|r| match overrides.get(&(r.kind, r.host.as_str())) {
            Some(o) => o.apply(r).map(Cow::Owned),
            None => Some(Cow::Borrowed(r)),
        })
        .collect()
}

/// How a gateway or bridge stands, as operators see it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Taken out of client lists by an operator.
    Maintenance,
    /// Reports itself unhealthy (or is defined so): not listed.
    Unhealthy,
    /// Defined by hand (provider file or admin API): listed, never expires.
    HandDefined,
    /// Pushed by an agent within the TTL: listed.
    Live,
    /// Pushed by an agent that has not reported within the TTL: not listed.
    Stale,
}

impl Status {
    /// The status of `r` at `now`, with the same rules (and TTL) as the
    /// client lists.
    pub fn of(r: &ResourceRow, over: Option<&OverrideRow>, now: i64, ttl_millis: i64) -> Status {
        Status::despite(r, over, now, ttl_millis, &Outages::default())
    }

    /// [`Status::of`], not counting time during `outages` of the store
    /// towards the TTL, as the client lists do not.
    pub fn despite(
        r: &ResourceRow,
        over: Option<&OverrideRow>,
        now: i64,
        ttl_millis: i64,
        outages: &Outages,
    ) -> Status {
        if over.is_some_and(|o| o.maintenance) {
            Status::Maintenance
        } else if !r.healthy {
            Status::Unhealthy
        } else if !r.expires() {
            Status::HandDefined
        } else if is_live_despite(r, now, ttl_millis, outages) {
            Status::Live
        } else {
            Status::Stale
        }
    }

    /// Whether clients may be given it (subject to their filters and buckets).
    pub fn listed(self) -> bool {
        matches!(self, Status::HandDefined | Status::Live)
    }
}

/// Formats a coordinate the way clients expect it: a decimal string.
fn coordinate(value: Option<f64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

impl Snapshot {
    /// Builds the view of `inventory` at `now` (unix ms).
    pub fn build(inventory: &Inventory, now: i64, options: &SnapshotOptions) -> Snapshot {
        Self::build_despite(inventory, now, options, &Outages::default())
    }

    /// [`Snapshot::build`], where time during `outages` of the store does
    /// not count towards pushed resources' TTL.
    pub fn build_despite(
        inventory: &Inventory,
        now: i64,
        options: &SnapshotOptions,
        outages: &Outages,
    ) -> Snapshot {
        let ttl_millis = options.ttl_millis;
        let mut gateways = Vec::new();
        let mut bridges = Vec::new();
        let mut next_expiry: Option<i64> = None;
        // What operators set (maintenance, experimental, bucket) wins over
        // the stored rows.
        let effective = with_overrides(inventory);
        // Where operators blocked resources, as sets a client's country is
        // looked up in.
        let blocked: HashMap<(ResourceKind, &str), CountrySet> = inventory
            .overrides
            .iter()
            .filter(|o| !o.blocked_in.is_empty())
            .map(|o| {
                let set = CountrySet::of(o.blocked_in.0.iter().map(String::as_str));
                ((o.kind, o.host.as_str()), set)
            })
            .collect();
        let (mut gateways_blocked, mut bridges_blocked) = (Vec::new(), Vec::new());
        // resources come sorted by (kind, host) from the store; order them by
        // location, then host
        let (mut stale_gateways, mut stale_bridges) = (0, 0);
        let mut live: Vec<&ResourceRow> = Vec::with_capacity(effective.len());
        for r in effective.iter().map(|r| r.as_ref()) {
            if is_live_despite(r, now, ttl_millis, outages) {
                live.push(r);
            } else if r.healthy && r.expires() {
                match r.kind {
                    ResourceKind::Gateway => stale_gateways += 1,
                    ResourceKind::Bridge => stale_bridges += 1,
                }
            }
        }
        let probes = ProbeView::apply(inventory, &mut live, options.drop_dysfunctional);
        live.sort_by(|a, b| (&a.location, &a.host).cmp(&(&b.location, &b.host)));
        for r in live {
            // Nothing expires while the store is unreachable.
            if r.expires() && !outages.ongoing() {
                let expiry = r
                    .last_seen_millis
                    .saturating_add(ttl_millis)
                    .saturating_add(outages.frozen_between(r.last_seen_millis, now));
                next_expiry = Some(next_expiry.map_or(expiry, |e| e.min(expiry)));
            }
            let blocked_in = blocked
                .get(&(r.kind, r.host.as_str()))
                .copied()
                .unwrap_or_default();
            match r.kind {
                ResourceKind::Gateway => {
                    gateways.push(r.to_gateway());
                    gateways_blocked.push(blocked_in);
                }
                ResourceKind::Bridge => {
                    bridges.push(r.to_bridge());
                    bridges_blocked.push(blocked_in);
                }
            }
        }

        // What the service says about a location is the same for every
        // client but where resources are blocked in its country, so only
        // public, non-experimental resources count.
        let public = |bucket: &str, experimental: bool| bucket.is_empty() && !experimental;
        // Per location: whether it has a gateway and a bridge for clients in
        // `country` (`None`: wherever they are).
        let flags = |country: Option<u8>| -> HashMap<&str, (bool, bool)> {
            let open = |set: &CountrySet| country.is_none_or(|c| !set.contains(c));
            let mut flags: HashMap<&str, (bool, bool)> = HashMap::new();
            for (g, set) in gateways.iter().zip(&gateways_blocked) {
                if public(&g.bucket, g.experimental) && open(set) {
                    flags.entry(&g.location).or_default().0 = true;
                }
            }
            for (b, set) in bridges.iter().zip(&bridges_blocked) {
                if public(&b.bucket, b.experimental) && open(set) {
                    flags.entry(&b.location).or_default().1 = true;
                }
            }
            flags
        };
        let everywhere = flags(None);
        let locations: BTreeMap<String, Location> = inventory
            .locations
            .iter()
            .map(|l| {
                let (healthy, has_bridges) = everywhere
                    .get(l.label.as_str())
                    .copied()
                    .unwrap_or_default();
                let location = Location {
                    country_code: l.country_code.clone(),
                    display_name: l.display_name.clone(),
                    label: l.label.clone(),
                    has_bridges,
                    healthy,
                    hemisphere: l.hemisphere.clone(),
                    region: l.region.clone(),
                    lat: coordinate(l.lat),
                    lon: coordinate(l.lon),
                    timezone: l
                        .timezone
                        .map(|tz| format_timezone(tz as i32))
                        .unwrap_or_default(),
                };
                (l.label.clone(), location)
            })
            .collect();
        let labels = inventory
            .locations
            .iter()
            .map(|l| (l.label.to_ascii_lowercase(), Arc::from(l.label.as_str())))
            .collect();
        let places: HashMap<&str, Place> = inventory
            .locations
            .iter()
            .map(|l| {
                let position = l.lat.zip(l.lon).map(|(lat, lon)| Position { lat, lon });
                (
                    l.label.as_str(),
                    Place {
                        position,
                        timezone: l.timezone,
                    },
                )
            })
            .collect();
        let place = |label: &str| places.get(label).copied().unwrap_or_default();
        // The catalog item of gateway or bridge `r`, the `i`th of its list,
        // blocked in the countries `blocked`.
        macro_rules! item {
            ($i:expr, $r:expr, $blocked:expr) => {
                Item {
                    json: serde_json::to_vec($r).unwrap_or_default(),
                    index: $i as u32,
                    location: &$r.location,
                    place: place(&$r.location),
                    load: $r.load,
                    overloaded: $r.overloaded,
                    port: $r.port,
                    transport: &$r.transport,
                    kind: &$r.kind,
                    experimental: $r.experimental,
                    bucket: &$r.bucket,
                    blocked_in: $blocked,
                }
            };
        }
        let mut listed = CatalogBuilder::new("gateways");
        for (i, g) in gateways.iter().enumerate() {
            listed.push(item!(i, g, gateways_blocked[i]));
        }
        let mut gateway_catalog = listed.finish();
        let mut listed = CatalogBuilder::new("bridges");
        for (i, b) in bridges.iter().enumerate() {
            listed.push(item!(i, b, bridges_blocked[i]));
        }
        let mut bridge_catalog = listed.finish();
        if let Some(distribution) = &options.bridges {
            let ring = Ring::build(
                &bridge_catalog,
                |i| bridges.get(i as usize).map_or("", |b| b.host.as_str()),
                distribution.clone(),
            );
            bridge_catalog = bridge_catalog.with_ring(ring);
        }
        // Signed lists are ordered from the location nearest to the client.
        if options.signer.is_some() {
            gateway_catalog = gateway_catalog.with_distances();
            bridge_catalog = bridge_catalog.with_distances();
        }
        let service = EipService {
            auth: inventory.service.auth.clone(),
            locations,
            openvpn_configuration: inventory.service.openvpn_configuration.clone(),
            serial: inventory.service.serial,
            version: inventory.service.version,
        };
        // Where resources are blocked in a country, its clients are told
        // which locations have anything for them there.
        let mut blocking = CountrySet::default();
        for set in gateways_blocked.iter().chain(&bridges_blocked) {
            blocking = blocking.union(set);
        }
        let mut service_by_country = HashMap::new();
        for country in blocking.iter() {
            let there = flags(Some(country));
            if there == everywhere {
                continue;
            }
            let mut variant = service.clone();
            for (label, location) in &mut variant.locations {
                (location.healthy, location.has_bridges) =
                    there.get(label.as_str()).copied().unwrap_or_default();
            }
            service_by_country.insert(country, Cached::json(&variant));
        }

        let mut provider = inventory.provider.clone();
        provider.ca_cert_fingerprint = options.ca_fingerprint.clone();
        provider.api_versions = options.api_versions.clone();
        // menshen's own keys, whatever a stored description says.
        provider.signing_keys = options
            .signer
            .as_ref()
            .map(|s| s.published())
            .unwrap_or_default();

        Snapshot {
            built_at_millis: now,
            provider: Cached::json(&provider),
            service: Cached::json(&service),
            service_by_country,
            gateways,
            bridges,
            labels,
            gateway_catalog,
            bridge_catalog,
            openvpn_configuration: inventory.service.openvpn_configuration.clone(),
            eip_service: service,
            next_expiry_millis: next_expiry,
            location_count: inventory.locations.len(),
            stale_gateways,
            stale_bridges,
            probes,
            signatures: options.signer.clone().map(crate::sign::Signatures::new),
            invites: invites::index(&inventory.invites),
            admin_revocations: inventory.admin_revocations.clone(),
        }
    }

    /// The labels of every location.
    pub fn location_labels(&self) -> impl Iterator<Item = &str> {
        self.labels.values().map(|l| &**l)
    }

    /// The label of the location called `name`, ignoring case.
    pub fn location_label(&self, name: &str) -> Option<&str> {
        self.location(name).map(|l| &**l)
    }

    /// The label of the location called `name`, ignoring case, shared.
    pub fn location(&self, name: &str) -> Option<&Arc<str>> {
        // Lowercased on the stack when short, as every real label is.
        let mut buf = [0u8; 64];
        match buf.get_mut(..name.len()) {
            Some(lower) => {
                lower.copy_from_slice(name.as_bytes());
                lower.make_ascii_lowercase();
                // ASCII lowercasing keeps UTF-8 valid.
                self.labels.get(std::str::from_utf8(lower).ok()?)
            }
            None => self.labels.get(&name.to_ascii_lowercase()),
        }
    }

    /// Whether `/api/5/service` depends on the client's country.
    pub fn service_varies(&self) -> bool {
        !self.service_by_country.is_empty()
    }

    /// `/api/5/service` for a client in `country` (its place in
    /// [`crate::geo::countries`]), and the country whose own it is (`None`:
    /// the one for clients wherever they are).
    pub fn service_for(&self, country: Option<u8>) -> (&Cached, Option<u8>) {
        match country.and_then(|c| Some((self.service_by_country.get(&c)?, c))) {
            Some((variant, c)) => (variant, Some(c)),
            None => (&self.service, None),
        }
    }

    /// What the list of `kind` is assembled from.
    pub fn catalog(&self, kind: ResourceKind) -> &Catalog {
        match kind {
            ResourceKind::Gateway => &self.gateway_catalog,
            ResourceKind::Bridge => &self.bridge_catalog,
        }
    }
}

#[cfg(test)]
mod tests;
