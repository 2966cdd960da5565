//! Bridges a censor cannot list with one request: each client network is
//! given a few of the public bridges, the same few for a while.
//!
//! The public bridges of each transport sit on a ring of points (a
//! consistent-hash ring), each bridge at [`POINTS_PER_BRIDGE`] points placed
//! by a keyed hash of its host. A request's point is a keyed hash of its
//! network ([`Network`]: IPv4 /16, IPv6 /48) and of the epoch (unix time
//! divided by `--bridge-epoch`). Its share of a transport is the first
//! `--bridges-per-client` distinct bridges clockwise from that point that
//! pass its filters (`loc`, `port`, `type`, `experimental`), or all that
//! pass when there are no more than that. So:
//!
//! - one network sees the same few bridges for a whole epoch, on every
//!   replica and across restarts, as the key is derived from the signing
//!   key (which replicas share); a new epoch gives every network a new
//!   point, and so new bridges;
//! - seeing many bridges takes many networks: each adds a few at most;
//! - adding or removing a bridge changes only the shares whose walk
//!   passes one of its points, and many points per bridge spread the
//!   networks evenly over the bridges.
//!
//! Invite-only bridges are not on the ring: a token's buckets give all of
//! their bridges, as before, besides the public share.
//!
//! The ring is built once per snapshot. A request costs one keyed hash, a
//! count of the public bridges its filters admit, a binary search and a
//! short walk (about `--bridges-per-client` divided by the part of the ring
//! its filters admit, and never more than one turn); nothing is allocated.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;

use super::query::Filter;
use crate::geo::client_ip::Network;
use crate::inventory::catalog::{Catalog, Entry};

/// Points each bridge has on its ring: more spread the networks more
/// evenly (the spread of a bridge's share shrinks with the square root),
/// at 8 bytes each per snapshot.
pub const POINTS_PER_BRIDGE: u64 = 64;

/// Default of `--bridges-per-client`: bridges of each transport a network
/// is given.
pub const DEFAULT_PER_CLIENT: usize = 2;

/// Most `--bridges-per-client` may be (0 gives every bridge instead).
pub const MAX_PER_CLIENT: usize = 16;

/// Default of `--bridge-epoch`: how long a network keeps its bridges.
pub const DEFAULT_EPOCH: &str = "24h";
/// [`DEFAULT_EPOCH`] as a duration.
pub const DEFAULT_EPOCH_LENGTH: Duration = Duration::from_secs(24 * 3600);

/// What the ring's key is derived from the signing key with.
pub const KEY_LABEL: &str = "menshen bridge distribution v1";

/// Transports a ring is kept for (bridges have three); public bridges of
/// any beyond it are not given out.
const MAX_TRANSPORTS: usize = 8;

/// Most bridges one share names.
const MAX_CHOSEN: usize = MAX_PER_CLIENT * MAX_TRANSPORTS;

/// The secret of the ring: where bridges and networks land on it. Never
/// printed.
pub struct BridgeKey(hmac::Key);

impl std::fmt::Debug for BridgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BridgeKey(<redacted>)")
    }
}

impl BridgeKey {
    pub fn new(secret: &[u8]) -> BridgeKey {
        BridgeKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The first 64 bits of HMAC-SHA256 of `domain` and `parts`.
    fn hash(&self, domain: u8, parts: &[&[u8]]) -> u64 {
        let mut context = hmac::Context::with_key(&self.0);
        context.update(&[domain]);
        for part in parts {
            context.update(part);
        }
        let tag = context.sign();
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_le_bytes(first)
    }
}

/// Where the epoch's time comes from: the system clock, or one that is set
/// from outside (tests).
#[derive(Debug, Clone, Default)]
pub struct EpochClock(Option<Arc<AtomicU64>>);

impl EpochClock {
    pub fn system() -> EpochClock {
        EpochClock(None)
    }

    /// A clock that says `unix_secs` until [`EpochClock::set`] says
    /// otherwise.
    pub fn manual(unix_secs: u64) -> EpochClock {
        EpochClock(Some(Arc::new(AtomicU64::new(unix_secs))))
    }

    /// Sets a manual clock (and its clones); the system clock is not set.
    pub fn set(&self, unix_secs: u64) {
        if let Some(at) = &self.0 {
            at.store(unix_secs, Ordering::Relaxed);
        }
    }

    pub fn now_secs(&self) -> u64 {
        match &self.0 {
            Some(at) => at.load(Ordering::Relaxed),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// How public bridges are shared out: fixed for the life of the process.
#[derive(Debug)]
pub struct Distribution {
    key: BridgeKey,
    per_client: usize,
    epoch_secs: u64,
    clock: EpochClock,
}

impl Distribution {
    /// `per_client` bridges per transport (1 to [`MAX_PER_CLIENT`]) for each
    /// network, changing every `epoch` (at least a second).
    pub fn new(key: BridgeKey, per_client: usize, epoch: Duration, clock: EpochClock) -> Self {
        Distribution {
            key,
            per_client: per_client.clamp(1, MAX_PER_CLIENT),
            epoch_secs: epoch.as_secs().max(1),
            clock,
        }
    }

    pub fn per_client(&self) -> usize {
        self.per_client
    }

    /// The current epoch's number: unix time divided by the epoch's length.
    pub fn epoch(&self) -> u64 {
        self.clock.now_secs() / self.epoch_secs
    }

    /// Where `network` starts on the rings in `epoch`.
    fn point(&self, network: Network, epoch: u64) -> u64 {
        self.key
            .hash(b'n', &[&network.key().to_le_bytes(), &epoch.to_le_bytes()])
    }

    /// Where the bridge at `host` is on its ring: `POINTS_PER_BRIDGE` points
    /// from one keyed hash, spread by a bijective mix of it and their number.
    fn points(&self, host: &str) -> impl Iterator<Item = u64> {
        let seed = self.key.hash(b'b', &[host.as_bytes()]);
        (1..=POINTS_PER_BRIDGE).map(move |n| mix(seed.wrapping_add(n.wrapping_mul(GOLDEN))))
    }
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// A bijective mix of 64 bits (the finaliser of splitmix64).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Low bits of a node that hold its bridge's catalog position; the high
/// bits are its point. Catalogs beyond 2^20 entries leave the rest off the
/// ring (never given out publicly).
const POSITION_BITS: u32 = 20;
const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;

/// The ring of one transport: its nodes, each a point (high bits) and the
/// catalog position of its bridge (low bits), in ascending order.
#[derive(Debug, Default)]
struct Circle {
    nodes: Box<[u64]>,
}

/// The rings of one snapshot's public bridges, one per transport.
#[derive(Debug)]
pub struct Ring {
    distribution: Arc<Distribution>,
    /// By the catalog's transport index.
    circles: Vec<Circle>,
}

impl Ring {
    /// The rings of the public entries of `catalog`; `host` names the
    /// resource at a snapshot index ([`Entry::index`]).
    pub fn build<'a>(
        catalog: &Catalog,
        host: impl Fn(u32) -> &'a str,
        distribution: Arc<Distribution>,
    ) -> Ring {
        let mut nodes: Vec<Vec<u64>> = Vec::new();
        for (position, e) in catalog.entries().iter().enumerate() {
            let t = usize::from(e.transport);
            let position = position as u64;
            if e.bucket != 0 || t >= MAX_TRANSPORTS || position > POSITION_MASK {
                continue;
            }
            if nodes.len() <= t {
                nodes.resize_with(t + 1, Vec::new);
            }
            let points = distribution.points(host(e.index));
            nodes[t].extend(points.map(|p| (p & !POSITION_MASK) | position));
        }
        let circles = nodes
            .into_iter()
            .map(|mut nodes| {
                nodes.sort_unstable();
                Circle {
                    nodes: nodes.into_boxed_slice(),
                }
            })
            .collect();
        Ring {
            distribution,
            circles,
        }
    }

    /// The public bridges `network` is given now, among those `filter`
    /// admits.
    pub(super) fn share(&self, catalog: &Catalog, filter: &Filter<'_>, network: Network) -> Share {
        let entries = catalog.entries();
        // `loc` is not part of what `Filter::matches` checks: it is a range
        // of the catalog.
        let range: Range<u32> = match filter.loc {
            Some(label) => catalog
                .groups()
                .iter()
                .find(|g| &*g.label == label)
                .map_or(0..0, |g| g.start..g.end),
            None => 0..entries.len() as u32,
        };
        let mut share = Share::default();
        let admitted = |e: &Entry| e.bucket == 0 && filter.matches(e);
        let mut counts = [0usize; MAX_TRANSPORTS];
        for e in &entries[range.start as usize..range.end as usize] {
            if admitted(e)
                && let Some(count) = counts.get_mut(usize::from(e.transport))
            {
                *count += 1;
            }
        }
        let per = self.distribution.per_client;
        let mut point = None;
        for (t, circle) in self.circles.iter().enumerate() {
            match counts[t] {
                0 => continue,
                n if n <= per => {
                    share.whole |= 1 << t;
                    continue;
                }
                _ => {}
            }
            let point = *point.get_or_insert_with(|| {
                let epoch = self.distribution.epoch();
                self.distribution.point(network, epoch) & !POSITION_MASK
            });
            let nodes = &circle.nodes;
            let len = nodes.len();
            let start = nodes.partition_point(|n| (n & !POSITION_MASK) < point);
            let first = share.len;
            // More than `per` distinct bridges are admitted on this circle,
            // so `per` of them are found within one turn.
            for step in 0..len {
                let position = (nodes[(start + step) % len] & POSITION_MASK) as u32;
                if !range.contains(&position) {
                    continue;
                }
                let e = &entries[position as usize];
                if !admitted(e) || share.chosen[first..share.len].contains(&e.index) {
                    continue;
                }
                if !share.push(e.index) || share.len - first == per {
                    break;
                }
            }
        }
        share
    }

    /// Bytes the rings hold.
    pub fn heap_bytes(&self) -> usize {
        self.circles
            .iter()
            .map(|c| std::mem::size_of_val(&*c.nodes))
            .sum()
    }
}

/// The public bridges one request is given: named one by one, or every
/// admitted one of a transport that has no more than the share.
#[derive(Debug, Clone, Copy)]
pub(super) struct Share {
    /// Snapshot indices ([`Entry::index`]).
    chosen: [u32; MAX_CHOSEN],
    len: usize,
    /// Transports (bits by the catalog's index) of which every admitted
    /// public bridge is given.
    whole: u8,
}

impl Default for Share {
    fn default() -> Self {
        Share {
            chosen: [0; MAX_CHOSEN],
            len: 0,
            whole: 0,
        }
    }
}

impl Share {
    /// Adds a bridge; false when the share is full.
    fn push(&mut self, index: u32) -> bool {
        match self.chosen.get_mut(self.len) {
            Some(place) => {
                *place = index;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// Whether the public entry `e` (admitted by the request's filters) is
    /// in this share.
    pub(super) fn gives(&self, e: &Entry) -> bool {
        let t = usize::from(e.transport);
        (t < MAX_TRANSPORTS && self.whole & (1 << t) != 0)
            || self.chosen[..self.len].contains(&e.index)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::inventory::catalog::{CatalogBuilder, Item};
    use crate::select::ClientQuery;

    /// `n` public bridges, named `b000`…, every `transports`-th one of
    /// each transport in turn, spread over `locations` locations; and two
    /// invite-only ones.
    struct World {
        hosts: Vec<String>,
        catalog: Catalog,
    }

    const TRANSPORTS: [&str; 3] = ["tcp", "kcp", "quic"];
    const LOCATIONS: [&str; 4] = ["amsterdam", "paris", "tokyo", "miami"];

    fn world(n: usize, transports: usize, locations: usize, key: &[u8], per: usize) -> World {
        let clock = EpochClock::manual(0);
        world_with(n, transports, locations, key, per, clock)
    }

    fn world_with(
        n: usize,
        transports: usize,
        locations: usize,
        key: &[u8],
        per: usize,
        clock: EpochClock,
    ) -> World {
        let mut hosts: Vec<String> = (0..n).map(|i| format!("b{i:03}")).collect();
        hosts.extend(["invited-1".to_owned(), "invited-2".to_owned()]);
        let mut b = CatalogBuilder::new("bridges");
        for (i, host) in hosts.iter().enumerate() {
            let invited = i >= n;
            b.push(Item {
                json: format!("{host:?}").into_bytes(),
                index: i as u32,
                location: LOCATIONS[i % locations],
                place: Default::default(),
                load: 0.0,
                overloaded: false,
                port: 443,
                transport: TRANSPORTS[i % transports],
                kind: "obfs4",
                experimental: false,
                bucket: if invited { "friends" } else { "" },
                blocked_in: Default::default(),
            });
        }
        let catalog = b.finish();
        let distribution = Arc::new(Distribution::new(
            BridgeKey::new(key),
            per,
            Duration::from_secs(86_400),
            clock,
        ));
        let ring = Ring::build(&catalog, |i| hosts[i as usize].as_str(), distribution);
        World {
            catalog: catalog.with_ring(ring),
            hosts,
        }
    }

    fn net(i: u32) -> Network {
        Network::of(IpAddr::V4(Ipv4Addr::from(i << 16 | 0x0101)))
    }

    impl World {
        /// The hosts `network` is given for `query` (its filters and
        /// buckets), sorted.
        fn given(&self, query: &ClientQuery, network: Network) -> Vec<&str> {
            let mut query = query.clone();
            query.network = Some(network);
            let filter = query.filter(&self.catalog);
            let in_loc = |position: usize| {
                filter.loc.is_none_or(|l| {
                    self.catalog.groups().iter().any(|g| {
                        &*g.label == l && (g.start as usize..g.end as usize).contains(&position)
                    })
                })
            };
            let mut hosts: Vec<&str> = self
                .catalog
                .entries()
                .iter()
                .enumerate()
                .filter(|(position, e)| in_loc(*position) && filter.admits(&self.catalog, e))
                .map(|(_, e)| self.hosts[e.index as usize].as_str())
                .collect();
            hosts.sort_unstable();
            hosts
        }

        fn anonymous(&self, network: Network) -> Vec<&str> {
            self.given(&ClientQuery::default(), network)
        }

        fn transport_of(&self, host: &str) -> &'static str {
            let i = self.hosts.iter().position(|h| h == host).unwrap();
            TRANSPORTS[i % 3]
        }
    }

    const KEY: &[u8] = &[42u8; 32];

    #[test]
    fn a_network_keeps_its_few_per_transport() {
        let w = world(100, 3, 1, KEY, 2);
        for i in 0..50 {
            let given = w.anonymous(net(i));
            assert_eq!(given.len(), 6, "{given:?}");
            for t in TRANSPORTS {
                let of_t = given.iter().filter(|h| w.transport_of(h) == t).count();
                assert_eq!(of_t, 2, "{t}: {given:?}");
            }
            // The same network, another address in it, another ring built
            // with the same key (another replica): the same bridges.
            let other_host = Network::of(IpAddr::V4(Ipv4Addr::from(i << 16 | 0xfffe)));
            assert_eq!(w.anonymous(other_host), given);
            let replica = world(100, 3, 1, KEY, 2);
            assert_eq!(replica.anonymous(net(i)), given);
        }
    }

    #[test]
    fn many_networks_are_needed_to_see_many() {
        let w = world(100, 1, 1, KEY, 2);
        let mut seen = BTreeSet::new();
        let mut shares = BTreeSet::new();
        let mut growth = Vec::new();
        for i in 0..200 {
            let given = w.anonymous(net(i));
            shares.insert(given.clone());
            seen.extend(given);
            growth.push(seen.len());
        }
        assert_eq!(growth[0], 2);
        assert!(growth[9] <= 20, "{growth:?}");
        assert!(shares.len() > 150, "networks get different shares");
        assert!(growth[199] > 80, "all are handed out: {}", growth[199]);
        // Another key, other shares.
        let other = world(100, 1, 1, &[7u8; 32], 2);
        let differ = (0..50)
            .filter(|&i| other.anonymous(net(i)) != w.anonymous(net(i)))
            .count();
        assert!(differ > 40, "{differ}");
    }

    #[test]
    fn a_new_epoch_gives_new_shares() {
        let clock = EpochClock::manual(1_000);
        let w = world_with(100, 1, 1, KEY, 2, clock.clone());
        let before: Vec<_> = (0..50).map(|i| w.anonymous(net(i))).collect();
        // Later in the same epoch: the same.
        clock.set(86_399);
        assert_eq!(
            (0..50).map(|i| w.anonymous(net(i))).collect::<Vec<_>>(),
            before
        );
        clock.set(86_400);
        let after: Vec<_> = (0..50).map(|i| w.anonymous(net(i))).collect();
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(changed > 40, "{changed} of 50 changed");
    }

    #[test]
    fn filters_come_before_the_share() {
        let w = world(100, 1, 4, KEY, 2);
        let paris = ClientQuery {
            loc: Some("paris".into()),
            ..Default::default()
        };
        for i in 0..20 {
            let given = w.given(&paris, net(i));
            assert_eq!(given.len(), 2, "{given:?}");
            for host in given {
                let n: usize = host[1..].parse().unwrap();
                assert_eq!(LOCATIONS[n % 4], "paris");
            }
        }
        // A filter that admits few: all of them; none: nothing.
        let few = world(3, 1, 3, KEY, 2);
        assert_eq!(few.given(&paris, net(1)), ["b001"]);
        let tcp = ClientQuery {
            tr: Some("tcp"),
            ..Default::default()
        };
        assert_eq!(w.given(&tcp, net(1)), w.anonymous(net(1)));
        let quic = ClientQuery {
            tr: Some("quic"),
            ..Default::default()
        };
        assert!(w.given(&quic, net(1)).is_empty());
        let port = ClientQuery {
            port: Some(80),
            ..Default::default()
        };
        assert!(w.given(&port, net(1)).is_empty());
    }

    #[test]
    fn invited_requests_get_their_bucket_and_their_share() {
        let w = world(100, 1, 1, KEY, 2);
        let invited = ClientQuery {
            buckets: vec!["friends".into()],
            ..Default::default()
        };
        let anonymous = w.anonymous(net(5));
        let mut expected = anonymous.clone();
        expected.extend(["invited-1", "invited-2"]);
        expected.sort_unstable();
        assert_eq!(w.given(&invited, net(5)), expected);
        assert!(!anonymous.iter().any(|h| h.starts_with("invited")));
    }

    #[test]
    fn a_bridge_more_or_less_moves_few_shares() {
        let w = world(100, 1, 1, KEY, 2);
        let fewer = world(99, 1, 1, KEY, 2);
        let n = 2_000;
        let moved = (0..n)
            .filter(|&i| {
                let mut a = w.anonymous(net(i));
                a.retain(|h| *h != "b099");
                a != fewer.anonymous(net(i))
            })
            .count();
        // Only those that had b099 change (about 2 in 100 of the shares).
        assert!(moved < n as usize / 20, "{moved} of {n} moved");
    }

    #[test]
    fn networks_spread_evenly() {
        let w = world(100, 1, 1, KEY, 2);
        let mut per_bridge: HashMap<&str, u32> = HashMap::new();
        let n = 20_000u32;
        for i in 0..n {
            let network = Network::of(IpAddr::V4(Ipv4Addr::from(mix(u64::from(i)) as u32)));
            for host in w.anonymous(network) {
                *per_bridge.entry(host).or_default() += 1;
            }
        }
        assert_eq!(per_bridge.len(), 100, "every bridge is given out");
        let mean = f64::from(2 * n) / 100.0;
        let variance = per_bridge
            .values()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / 100.0;
        let cv = variance.sqrt() / mean;
        assert!(cv < 0.2, "coefficient of variation {cv:.3}");
    }

    #[test]
    fn the_walk_costs_nothing_kept() {
        let w = world(100, 3, 4, KEY, 2);
        let before = w.catalog.heap_bytes();
        for i in 0..1_000 {
            w.anonymous(net(i));
        }
        assert_eq!(w.catalog.heap_bytes(), before);
        // 100 bridges, 64 points each, 8 bytes a point.
        assert_eq!(
            w.catalog.ring().unwrap().heap_bytes(),
            100 * POINTS_PER_BRIDGE as usize * 8
        );
    }
}
