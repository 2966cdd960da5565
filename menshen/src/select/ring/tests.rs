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
