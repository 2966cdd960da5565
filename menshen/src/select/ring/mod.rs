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
mod tests;
