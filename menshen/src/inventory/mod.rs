//! The in-memory view clients are served from.
//!
//! A [`Snapshot`] is built from the store's [`Inventory`] and never changes;
//! a new one replaces it atomically when the store changes, when a pushed
//! resource expires, and periodically as a backstop. Client requests read
//! the current snapshot and never touch the database.

pub mod edit;
pub mod invites;
pub mod validate;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::http::HeaderValue;
use menshen_model::{Bridge, EipService, Gateway, Location, format_timezone};
use tokio::sync::watch;

use crate::geo::Position;
use crate::select::ClientQuery;
use crate::store::{Inventory, Outages, OverrideRow, ResourceKind, ResourceRow, Store, now_millis};
use crate::telemetry::Metrics;

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
    /// Seed of the random orderings; a fresh one per snapshot when `None`.
    pub order_seed: Option<u64>,
    /// Distinct random orderings kept per request (see `select`).
    pub order_variants: usize,
    /// Bytes of cached list responses kept per snapshot.
    pub response_cache_bytes: usize,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            ttl_millis: 60_000,
            ca_fingerprint: String::new(),
            api_versions: vec!["5".into()],
            order_seed: None,
            order_variants: DEFAULT_ORDER_VARIANTS,
            response_cache_bytes: DEFAULT_RESPONSE_CACHE_BYTES,
        }
    }
}

/// Default number of orderings kept per distinct request.
pub const DEFAULT_ORDER_VARIANTS: usize = 8;

/// Where a location is, for ordering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Place {
    pub position: Option<Position>,
    /// Whole hours from UTC.
    pub timezone: Option<i64>,
}

/// Shortest time between the starts of two reloads caused by change
/// notifications: at most ten a second, however many changes come in.
pub const MIN_RELOAD_GAP: Duration = Duration::from_millis(100);

/// Upper bound on distinct requests with cached responses per snapshot;
/// beyond it responses are still served, just computed each time.
const MAX_CACHED_RESPONSES: usize = 4096;

/// Upper bound on the bytes of cached list responses per snapshot (every
/// variant of every request); beyond it responses are computed each time.
pub const DEFAULT_RESPONSE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// An immutable view of the inventory at one moment.
pub struct Snapshot {
    pub built_at_millis: i64,
    pub provider: Cached,
    pub service: Cached,
    /// Gateways clients may be given, in stable order.
    pub gateways: Vec<Gateway>,
    /// Bridges clients may be given, in stable order.
    pub bridges: Vec<Bridge>,
    /// Lowercased label to label.
    labels: HashMap<String, String>,
    /// Label to where it is.
    places: HashMap<String, Place>,
    /// Seed of this snapshot's random orderings.
    seed: u64,
    order_variants: usize,
    /// Bytes held by the response caches, and the most they may hold.
    cached_bytes: AtomicUsize,
    cache_budget: usize,
    /// The service's OpenVPN options, for served client configurations.
    pub openvpn_configuration: serde_json::Map<String, serde_json::Value>,
    /// The service as `/api/5/service` answers it, for the v3 description.
    pub eip_service: EipService,
    /// When the next listed resource expires, if any does.
    pub next_expiry_millis: Option<i64>,
    pub location_count: usize,
    gateway_responses: ResponseCache,
    bridge_responses: ResponseCache,
    /// Invites by id, to check tokens against (see [`Snapshot::grant`]).
    invites: HashMap<String, invites::Invite>,
}

/// Keyed by validated queries only (countries, labels, ports, granted
/// buckets: a bounded set), so a fast hasher without flooding resistance
/// is safe here.
type ResponseCache = RwLock<HashMap<ClientQuery, Arc<Variants>, foldhash::fast::RandomState>>;

/// The orderings of one request, each made on first use.
struct Variants(Vec<OnceLock<Arc<Cached>>>);

fn is_live(r: &ResourceRow, now: i64, ttl_millis: i64) -> bool {
    is_live_despite(r, now, ttl_millis, &Outages::default())
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
        if over.is_some_and(|o| o.maintenance) {
            Status::Maintenance
        } else if !r.healthy {
            Status::Unhealthy
        } else if !r.expires() {
            Status::HandDefined
        } else if is_live(r, now, ttl_millis) {
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

/// A stored row as a client sees it.
pub fn to_gateway(r: &ResourceRow) -> Gateway {
    Gateway {
        host: r.host.clone(),
        ip_addr: r.ip_addr.clone(),
        ip6_addr: r.ip6_addr.clone(),
        location: r.location.clone(),
        port: r.port,
        transport: r.transport.clone(),
        kind: r.kind_type.clone(),
        load: r.load,
        overloaded: r.overloaded,
        healthy: r.healthy,
        experimental: r.experimental,
        bucket: r.bucket.clone(),
        last_seen_millis: r.last_seen_millis,
    }
}

/// A stored row as a client sees it.
pub fn to_bridge(r: &ResourceRow) -> Bridge {
    Bridge {
        host: r.host.clone(),
        ip_addr: r.ip_addr.clone(),
        ip6_addr: r.ip6_addr.clone(),
        location: r.location.clone(),
        port: r.port,
        transport: r.transport.clone(),
        kind: r.kind_type.clone(),
        load: r.load,
        overloaded: r.overloaded,
        healthy: r.healthy,
        experimental: r.experimental,
        bucket: r.bucket.clone(),
        last_seen_millis: r.last_seen_millis,
        auth: r.auth.clone(),
        options: r.options_map(),
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
        // resources come sorted by (kind, host) from the store; order them by
        // location, then host
        let mut live: Vec<&ResourceRow> = effective
            .iter()
            .map(|r| r.as_ref())
            .filter(|r| is_live_despite(r, now, ttl_millis, outages))
            .collect();
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
            match r.kind {
                ResourceKind::Gateway => gateways.push(to_gateway(r)),
                ResourceKind::Bridge => bridges.push(to_bridge(r)),
            }
        }

        // What the service says about a location is the same for every
        // client, so only public, non-experimental resources count.
        let public = |bucket: &str, experimental: bool| bucket.is_empty() && !experimental;
        let locations: BTreeMap<String, Location> = inventory
            .locations
            .iter()
            .map(|l| {
                let healthy = gateways
                    .iter()
                    .any(|g| g.location == l.label && public(&g.bucket, g.experimental));
                let has_bridges = bridges
                    .iter()
                    .any(|b| b.location == l.label && public(&b.bucket, b.experimental));
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
            .map(|l| (l.label.to_ascii_lowercase(), l.label.clone()))
            .collect();
        let places = inventory
            .locations
            .iter()
            .map(|l| {
                let position = l.lat.zip(l.lon).map(|(lat, lon)| Position { lat, lon });
                (
                    l.label.clone(),
                    Place {
                        position,
                        timezone: l.timezone,
                    },
                )
            })
            .collect();
        let service = EipService {
            auth: inventory.service.auth.clone(),
            locations,
            openvpn_configuration: inventory.service.openvpn_configuration.clone(),
            serial: inventory.service.serial,
            version: inventory.service.version,
        };

        let mut provider = inventory.provider.clone();
        provider.ca_cert_fingerprint = options.ca_fingerprint.clone();
        provider.api_versions = options.api_versions.clone();

        Snapshot {
            built_at_millis: now,
            provider: Cached::json(&provider),
            service: Cached::json(&service),
            gateways,
            bridges,
            labels,
            places,
            seed: options.order_seed.unwrap_or_else(rand::random),
            order_variants: options.order_variants.max(1),
            cached_bytes: AtomicUsize::new(0),
            cache_budget: options.response_cache_bytes,
            openvpn_configuration: inventory.service.openvpn_configuration.clone(),
            eip_service: service,
            next_expiry_millis: next_expiry,
            location_count: inventory.locations.len(),
            gateway_responses: RwLock::default(),
            bridge_responses: RwLock::default(),
            invites: invites::index(&inventory.invites),
        }
    }

    /// The label of the location called `name`, ignoring case.
    pub fn location_label(&self, name: &str) -> Option<&str> {
        self.labels
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Where location `label` is.
    pub fn place(&self, label: &str) -> Place {
        self.places.get(label).copied().unwrap_or_default()
    }

    /// A ready response for `query` on the list of `kind`. Up to
    /// `order_variants` different orderings are kept per query, each made
    /// by `make` from its own seed on first use and kept for the life of
    /// this snapshot; each request gets one of them at random, except that
    /// a client already holding one (`held` says which entity tags it
    /// holds) gets that one back, so that it can be answered 304.
    pub fn cached(
        &self,
        kind: ResourceKind,
        query: &ClientQuery,
        held: impl Fn(&str) -> bool,
        make: impl FnOnce(u64) -> Cached,
    ) -> Arc<Cached> {
        let cache = match kind {
            ResourceKind::Gateway => &self.gateway_responses,
            ResourceKind::Bridge => &self.bridge_responses,
        };
        let variant = if self.order_variants > 1 {
            rand::random_range(0..self.order_variants)
        } else {
            0
        };
        // Only needed when the variant is made; computed then.
        let seed = || {
            let mut h = std::hash::DefaultHasher::new();
            (self.seed, kind, query, variant).hash(&mut h);
            h.finish()
        };
        let existing = cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(query)
            .cloned();
        let variants = match existing {
            Some(v) => v,
            None => {
                let mut cache = cache.write().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= MAX_CACHED_RESPONSES && !cache.contains_key(query) {
                    // Full: serve without keeping.
                    return Arc::new(make(seed()));
                }
                cache
                    .entry(query.clone())
                    .or_insert_with(|| {
                        Arc::new(Variants(
                            (0..self.order_variants).map(|_| OnceLock::new()).collect(),
                        ))
                    })
                    .clone()
            }
        };
        if let Some(known) = variants
            .0
            .iter()
            .filter_map(OnceLock::get)
            .find(|c| held(&c.etag))
        {
            return known.clone();
        }
        let slot = &variants.0[variant];
        if let Some(made) = slot.get() {
            return made.clone();
        }
        let made = Arc::new(make(seed()));
        let size = made.body.len();
        let within_budget = self
            .cached_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + size <= self.cache_budget).then_some(used + size)
            })
            .is_ok();
        if !within_budget {
            return made;
        }
        match slot.set(made.clone()) {
            Ok(()) => made,
            // Another request made the same variant meanwhile: keep one.
            Err(_) => {
                self.cached_bytes.fetch_sub(size, Ordering::Relaxed);
                slot.get().cloned().unwrap_or(made)
            }
        }
    }
}

/// Holds the current snapshot and keeps it fresh.
pub struct InventoryHandle {
    current: ArcSwap<Snapshot>,
    /// The last inventory read from the store, to rebuild from when only
    /// time has passed.
    source: Mutex<Arc<Inventory>>,
    options: SnapshotOptions,
    metrics: Arc<Metrics>,
    /// The store's outages, which do not count towards TTLs.
    store: Store,
    /// The store's change count that the current snapshot includes (see
    /// [`InventoryHandle::includes`]).
    built: watch::Sender<u64>,
}

impl InventoryHandle {
    /// Loads the inventory from the store and builds the first snapshot.
    pub async fn load(
        store: &Store,
        options: SnapshotOptions,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let seen = store.change_count();
        let inventory = Arc::new(store.load_inventory().await?);
        let snapshot = Snapshot::build(&inventory, now_millis(), &options);
        metrics.observe_snapshot(&snapshot);
        Ok(InventoryHandle {
            current: ArcSwap::from_pointee(snapshot),
            source: Mutex::new(inventory),
            options,
            metrics,
            store: store.clone(),
            built: watch::channel(seen).0,
        })
    }

    /// The inventory the current snapshot was built from (heartbeat times
    /// may lag the store by up to the reload interval).
    pub fn inventory(&self) -> Arc<Inventory> {
        self.source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    fn rebuild(&self, inventory: Option<Inventory>) {
        let _span = tracing::info_span!("snapshot.rebuild").entered();
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inventory) = inventory {
            *source = Arc::new(inventory);
        }
        let outages = self.store.health().outages();
        let snapshot = Snapshot::build_despite(&source, now_millis(), &self.options, &outages);
        self.metrics.observe_snapshot(&snapshot);
        self.current.store(Arc::new(snapshot));
    }

    /// Reads the store again and swaps in a new snapshot.
    #[tracing::instrument(name = "snapshot.reload", skip_all)]
    pub async fn reload(&self, store: &Store) -> anyhow::Result<()> {
        let seen = store.change_count();
        let inventory = store.load_inventory().await?;
        self.rebuild(Some(inventory));
        self.built.send_if_modified(|built| {
            let newer = seen > *built;
            if newer {
                *built = seen;
            }
            newer
        });
        Ok(())
    }

    /// Waits (at most `patience`) until the current snapshot includes every
    /// change the store had announced when its count was `change` (see
    /// [`Store::change_count`]): a replica serves its own writes on the
    /// next read. Returns whether it does.
    pub async fn includes(&self, change: u64, patience: Duration) -> bool {
        let mut built = self.built.subscribe();
        tokio::time::timeout(patience, built.wait_for(|b| *b >= change))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Keeps the snapshot fresh until `shutdown` fires: reloads on change
    /// notifications, every `reload_interval`, when the store comes back
    /// after an outage, and when a pushed resource's TTL runs out (its agent
    /// may have reported meanwhile through another replica, so the store is
    /// asked, not the old copy). A change is reloaded at once when the last
    /// reload began at least [`MIN_RELOAD_GAP`] ago, else when that gap is
    /// over, so that a burst of changes costs at most one reload per gap.
    pub async fn run(
        self: Arc<Self>,
        store: Store,
        reload_interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut changes = store.subscribe();
        changes.borrow_and_update();
        let mut health = store.health().subscribe();
        health.borrow_and_update();
        let mut last_reload: Option<tokio::time::Instant> = None;
        loop {
            let next_expiry = self.snapshot().next_expiry_millis;
            let until_expiry = next_expiry
                .map(|at| Duration::from_millis(at.saturating_sub(now_millis()).max(0) as u64));
            tokio::select! {
                _ = shutdown.changed() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Some(at) = last_reload {
                        // Coalesce: changes during the gap share one reload.
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            () = tokio::time::sleep_until(at + MIN_RELOAD_GAP) => {}
                        }
                    }
                }
                changed = health.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    health.borrow_and_update();
                }
                _ = tokio::time::sleep(reload_interval) => {}
                _ = sleep_opt(until_expiry) => {}
            }
            changes.borrow_and_update();
            last_reload = Some(tokio::time::Instant::now());
            self.reload_logged(&store).await;
        }
    }

    async fn reload_logged(&self, store: &Store) {
        if let Err(err) = self.reload(store).await {
            self.metrics.reload_failed();
            if let Some(db) = err.downcast_ref::<sqlx::Error>()
                && crate::store::is_unavailable(db)
            {
                store.health().unreachable(db);
            }
            tracing::warn!(error = %err, "inventory reload failed; serving the previous snapshot");
            // Time still passes (outside outages): drop what has expired by now.
            self.rebuild(None);
        }
    }
}

async fn sleep_opt(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn snapshot(variants: usize, budget: usize) -> Snapshot {
        let options = SnapshotOptions {
            order_seed: Some(1),
            order_variants: variants,
            response_cache_bytes: budget,
            ..Default::default()
        };
        Snapshot::build(&Inventory::default(), 0, &options)
    }

    #[test]
    fn each_variant_is_made_once_and_a_held_one_is_given_back() {
        let s = snapshot(4, 1 << 20);
        let made = AtomicU32::new(0);
        let query = ClientQuery::default();
        let mut tags = std::collections::HashSet::new();
        for _ in 0..200 {
            let c = s.cached(
                ResourceKind::Gateway,
                &query,
                |_| false,
                |seed| {
                    made.fetch_add(1, Ordering::Relaxed);
                    Cached::new(seed.to_string().into_bytes(), "application/json")
                },
            );
            tags.insert(c.etag.clone());
        }
        assert_eq!(made.load(Ordering::Relaxed), 4);
        assert_eq!(tags.len(), 4);
        let held = tags.iter().next().unwrap().clone();
        for _ in 0..20 {
            let c = s.cached(
                ResourceKind::Gateway,
                &query,
                |t| t == held,
                |_| unreachable!(),
            );
            assert_eq!(c.etag, held);
        }
    }

    fn row(host: &str, origin: &str, last_seen_millis: i64) -> ResourceRow {
        ResourceRow {
            kind: ResourceKind::Gateway,
            host: host.into(),
            ip_addr: "192.0.2.1".into(),
            ip6_addr: String::new(),
            location: "paris".into(),
            port: 1194,
            transport: "udp".into(),
            kind_type: "openvpn".into(),
            load: 0.0,
            overloaded: false,
            healthy: true,
            experimental: false,
            bucket: String::new(),
            auth: String::new(),
            options: "{}".into(),
            last_seen_millis,
            origin: origin.into(),
            agent: (origin == "agent").then(|| "gw".into()),
        }
    }

    #[test]
    fn overrides_hide_or_change_what_clients_get() {
        let over = |host: &str, experimental, bucket: Option<&str>, maintenance| OverrideRow {
            kind: ResourceKind::Gateway,
            host: host.into(),
            experimental,
            bucket: bucket.map(str::to_owned),
            maintenance,
        };
        let inventory = Inventory {
            resources: vec![
                row("a", "config", 0),
                row("b", "agent", 1_000),
                row("c", "admin", 0),
                row("d", "config", 0),
            ],
            overrides: vec![
                over("a", None, None, true),
                over("b", Some(true), None, false),
                over("c", None, Some("friends"), false),
                // for a bridge of the same host: no effect on the gateway
                OverrideRow {
                    kind: ResourceKind::Bridge,
                    ..over("d", None, None, true)
                },
            ],
            ..Default::default()
        };
        let s = Snapshot::build(&inventory, 1_500, &SnapshotOptions::default());
        let got: Vec<(&str, bool, &str)> = s
            .gateways
            .iter()
            .map(|g| (g.host.as_str(), g.experimental, g.bucket.as_str()))
            .collect();
        assert_eq!(
            got,
            [("b", true, ""), ("c", false, "friends"), ("d", false, "")]
        );
    }

    #[test]
    fn operators_see_the_same_liveness_as_clients() {
        let ttl = 60_000;
        let maintenance = OverrideRow {
            maintenance: true,
            ..Default::default()
        };
        let mut sick = row("x", "agent", 1_000);
        sick.healthy = false;
        for (r, over, now, status) in [
            (row("x", "config", 0), None, 10_000_000, Status::HandDefined),
            (row("x", "admin", 0), None, 10_000_000, Status::HandDefined),
            (row("x", "agent", 1_000), None, 60_999, Status::Live),
            (row("x", "agent", 1_000), None, 61_000, Status::Stale),
            (sick, None, 2_000, Status::Unhealthy),
            (
                row("x", "agent", 1_000),
                Some(&maintenance),
                2_000,
                Status::Maintenance,
            ),
        ] {
            let got = Status::of(&r, over, now, ttl);
            assert_eq!(got, status, "{r:?} at {now}");
            assert_eq!(got.listed(), is_live(&r, now, ttl) && over.is_none());
        }
    }

    #[test]
    fn past_the_byte_budget_answers_are_made_but_not_kept() {
        let s = snapshot(1, 10);
        let made = AtomicU32::new(0);
        let make = |_| {
            made.fetch_add(1, Ordering::Relaxed);
            Cached::new(vec![b'x'; 8], "application/json")
        };
        let q = |loc: &str| ClientQuery {
            loc: Some(loc.into()),
            ..Default::default()
        };
        s.cached(ResourceKind::Gateway, &q("a"), |_| false, make);
        s.cached(ResourceKind::Gateway, &q("a"), |_| false, make);
        assert_eq!(made.load(Ordering::Relaxed), 1, "8 bytes fit");
        s.cached(ResourceKind::Gateway, &q("b"), |_| false, make);
        s.cached(ResourceKind::Gateway, &q("b"), |_| false, make);
        assert_eq!(made.load(Ordering::Relaxed), 3, "16 would not");
    }
}
