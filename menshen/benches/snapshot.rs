//! What the client read path costs without HTTP around it: building a
//! snapshot, and assembling one list answer, for inventories of growing
//! size: `cargo bench -p menshen --bench snapshot`.
//!
//! A plain timing loop on one thread; figures are medians of a few runs.

use std::time::{Duration, Instant};

use menshen::geo::{self, GridPoint};
use menshen::inventory::{Snapshot, SnapshotOptions};
use menshen::select::{self, ClientQuery};
use menshen::store::{Inventory, LocationRow, ResourceKind, ResourceRow};
use rand::SeedableRng;
use rand::rngs::SmallRng;

/// `locations` locations over real countries, with `gateways` gateways and
/// `bridges` bridges spread over them (loads spread out, every tenth
/// overloaded, half udp and half tcp): like `bench/make-inventory.py`.
fn inventory(locations: usize, gateways: usize, bridges: usize) -> Inventory {
    let countries = [
        "NL", "DE", "FR", "GB", "US", "CA", "BR", "JP", "AU", "SE", "IN", "SG", "ZA", "MX", "AR",
    ];
    let mut inv = Inventory::default();
    for l in 0..locations {
        let c = geo::country(countries[l % countries.len()]).expect("country");
        inv.locations.push(LocationRow {
            label: format!("loc{l:03}"),
            display_name: format!("Location {l}"),
            country_code: c.code.into(),
            lat: Some(c.position.lat + l as f64 * 0.01),
            lon: Some(c.position.lon),
            timezone: Some((c.position.lon / 15.0).round() as i64),
            hemisphere: String::new(),
            region: String::new(),
            origin: "config".into(),
        });
    }
    let row = |kind: ResourceKind, i: usize| ResourceRow {
        kind,
        host: format!("{}{i:04}.bench.test", kind.as_str()),
        ip_addr: format!("10.{}.{}.1", i / 256 % 256, i % 256),
        ip6_addr: String::new(),
        location: format!("loc{:03}", i % locations),
        port: if kind == ResourceKind::Gateway {
            1194
        } else {
            443
        },
        transport: if i % 2 == 1 { "udp" } else { "tcp" }.into(),
        kind_type: match kind {
            ResourceKind::Gateway => "openvpn",
            ResourceKind::Bridge => "obfs4",
        }
        .into(),
        load: (i * 37 % 100) as f64 / 100.0,
        overloaded: i.is_multiple_of(10),
        healthy: true,
        experimental: false,
        bucket: String::new(),
        auth: String::new(),
        options: match kind {
            ResourceKind::Gateway => "{}".into(),
            ResourceKind::Bridge => format!(r#"{{"cert":"YmVuY2gtY2VydC{i:04}","iatMode":"0"}}"#),
        },
        last_seen_millis: 0,
        origin: "config".into(),
        agent: None,
    };
    inv.resources
        .extend((0..gateways).map(|i| row(ResourceKind::Gateway, i)));
    inv.resources
        .extend((0..bridges).map(|i| row(ResourceKind::Bridge, i)));
    inv
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Median time of one call of `f`, over `rounds` rounds of `n` calls.
fn time_each(rounds: usize, n: usize, mut f: impl FnMut(usize)) -> Duration {
    let mut times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for i in 0..n {
            f(i);
        }
        times.push(start.elapsed() / n as u32);
    }
    median(times)
}

fn main() {
    println!(
        "{:<32} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "inventory", "build ms", "answer bytes", "hot µs", "pairs µs", "geoip µs"
    );
    for (locations, gateways, bridges) in [(40, 200, 50), (50, 1000, 1000), (50, 2000, 2000)] {
        let inv = inventory(locations, gateways, bridges);
        let options = SnapshotOptions::default();
        let build = time_each(7, 3, |_| {
            std::hint::black_box(Snapshot::build(&inv, 0, &options));
        });
        let snapshot = Snapshot::build(&inv, 0, &options);
        let catalog = snapshot.catalog(ResourceKind::Gateway);
        let mut rng = SmallRng::seed_from_u64(1);
        let parse = |raw: &str| {
            ClientQuery::parse(Some(raw), ResourceKind::Gateway, &snapshot).expect("query")
        };
        let hot = parse("cc=DE");
        let bytes = select::answer(catalog, &hot, &mut rng, |_| false)
            .body
            .expect("body")
            .len();
        let n = 20_000_000 / bytes.max(1000);
        let hot_time = time_each(5, n, |_| {
            std::hint::black_box(select::answer(catalog, &hot, &mut rng, |_| false));
        });
        let pairs: Vec<ClientQuery> = geo::countries()
            .iter()
            .flat_map(|c| ["tcp", "udp"].map(|tr| parse(&format!("cc={}&tr={tr}", c.code))))
            .collect();
        let pairs_time = time_each(5, n, |i| {
            let q = &pairs[i % pairs.len()];
            std::hint::black_box(select::answer(catalog, q, &mut rng, |_| false));
        });
        // Positions anywhere on the grid, as GeoIP would place clients.
        let placed: Vec<ClientQuery> = (0..997)
            .map(|i| ClientQuery {
                near: Some(GridPoint {
                    lat: (i * 7 % 180) as i16 - 90,
                    lon: (i * 13 % 360) as i16 - 180,
                }),
                ..ClientQuery::default()
            })
            .collect();
        let geoip_time = time_each(5, n, |i| {
            let q = &placed[i % placed.len()];
            std::hint::black_box(select::answer(catalog, q, &mut rng, |_| false));
        });
        println!(
            "{:<32} {:>10.2} {:>12} {:>12.2} {:>12.2} {:>12.2}",
            format!("{gateways} gw + {bridges} br, {locations} loc"),
            build.as_secs_f64() * 1e3,
            bytes,
            hot_time.as_secs_f64() * 1e6,
            pairs_time.as_secs_f64() * 1e6,
            geoip_time.as_secs_f64() * 1e6,
        );
    }
    shared_bridges();
}

/// The bridge list given whole (`--bridges-per-client 0`) and shared out
/// per client network (2 per transport; each request from another /16,
/// with and without `loc=`); the snapshot build time without and with the
/// ring, and the ring's size.
fn shared_bridges() {
    use menshen::geo::client_ip::Network;
    use menshen::select::ring::{BridgeKey, Distribution, EpochClock};
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;

    println!(
        "\n{:<32} {:>10} {:>10} {:>12} {:>12} {:>12} {:>12}",
        "bridges", "build ms", "+ring ms", "ring KiB", "all µs", "shared µs", "loc= µs"
    );
    for (locations, bridges) in [(40, 50), (50, 1000), (50, 4000)] {
        let inv = inventory(locations, 0, bridges);
        let whole = SnapshotOptions::default();
        let shared = SnapshotOptions {
            bridges: Some(Arc::new(Distribution::new(
                BridgeKey::new(&[7; 32]),
                2,
                Duration::from_secs(86_400),
                EpochClock::system(),
            ))),
            ..SnapshotOptions::default()
        };
        let build = time_each(7, 3, |_| {
            std::hint::black_box(Snapshot::build(&inv, 0, &whole));
        });
        let build_ring = time_each(7, 3, |_| {
            std::hint::black_box(Snapshot::build(&inv, 0, &shared));
        });
        let plain = Snapshot::build(&inv, 0, &whole);
        let ringed = Snapshot::build(&inv, 0, &shared);
        let ring_bytes = ringed
            .catalog(ResourceKind::Bridge)
            .ring()
            .map_or(0, |r| r.heap_bytes());
        let mut rng = SmallRng::seed_from_u64(2);
        let networks: Vec<Network> = (0..4096u32)
            .map(|i| Network::of(IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))))
            .collect();
        let query = |loc: Option<&str>, i: usize| ClientQuery {
            near: Some(GridPoint { lat: 52, lon: 13 }),
            loc: loc.map(Into::into),
            network: Some(networks[i % networks.len()]),
            ..ClientQuery::default()
        };
        let n = 20_000;
        let mut time = |snapshot: &Snapshot, loc: Option<&str>| {
            let catalog = snapshot.catalog(ResourceKind::Bridge);
            let queries: Vec<ClientQuery> = (0..997).map(|i| query(loc, i)).collect();
            time_each(5, n, |i| {
                let q = &queries[i % queries.len()];
                std::hint::black_box(select::answer(catalog, q, &mut rng, |_| false));
            })
        };
        let all = time(&plain, None);
        let shared_time = time(&ringed, None);
        let loc_time = time(&ringed, Some("loc001"));
        println!(
            "{:<32} {:>10.2} {:>10.2} {:>12.1} {:>12.2} {:>12.2} {:>12.2}",
            format!("{bridges} br, {locations} loc"),
            build.as_secs_f64() * 1e3,
            build_ring.as_secs_f64() * 1e3,
            ring_bytes as f64 / 1024.0,
            all.as_secs_f64() * 1e6,
            shared_time.as_secs_f64() * 1e6,
            loc_time.as_secs_f64() * 1e6,
        );
    }
}
