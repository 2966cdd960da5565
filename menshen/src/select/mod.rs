//! Which gateways and bridges a client gets, and in what order.
//!
//! Filters (`loc`, `port`, `tr`, `type`) narrow the list; [`order`] sorts
//! it for the client's position: `cc` when given, else the GeoIP position of
//! its address (see `geo::Locator`). Experimental resources are listed only
//! for `experimental=true`; resources in a bucket (invite-only) are listed
//! only to requests whose invite token grants that bucket
//! (`ClientQuery::buckets`). Public bridges may be shared out: each client
//! network is given a few (see [`ring`]).
//!
//! An answer is assembled from the snapshot's [`Catalog`]: the matching
//! entries, ordered for this request, their ready JSON concatenated. Its
//! entity tag names the set, not the order, so that a client revalidating
//! gets 304 whichever order it was given.

pub mod order;
mod query;
pub mod ring;

use axum::body::Bytes;
use menshen_model::{Bridge, Gateway};
use rand::{Rng, SeedableRng as _};

use crate::inventory::Snapshot;
use crate::inventory::catalog::Catalog;
use crate::store::ResourceKind;
use order::with_scratch;
pub use query::{BadParameter, ClientQuery};

/// An entity tag as it goes into a header: 16 hex digits in quotes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Etag([u8; 18]);

impl Etag {
    /// The tag of a list of the entries `found` describes, in any order:
    /// the same on every replica with the same inventory.
    fn of(catalog: &Catalog, found: &order::Found) -> Etag {
        let mut input = [0u8; 24];
        input[..8].copy_from_slice(&catalog.salt().to_le_bytes());
        input[8..16].copy_from_slice(&found.hash_sum.to_le_bytes());
        input[16..].copy_from_slice(&(found.count as u64).to_le_bytes());
        let hash = xxhash_rust::xxh3::xxh3_64(&input);
        let mut tag = [b'"'; 18];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, digit) in tag[1..17].iter_mut().enumerate() {
            *digit = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        }
        Etag(tag)
    }

    pub fn as_str(&self) -> &str {
        // Quotes and hex digits only.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Etag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A list answer: its tag and, unless the client holds that tag already,
/// its bytes.
#[derive(Debug)]
pub struct Answer {
    pub etag: Etag,
    /// `None` when the client holds `etag` (answer 304).
    pub body: Option<Bytes>,
}

/// The list of `catalog` for `query`, in an order drawn with `rng`; no body
/// when `held` says the client has this set's tag already.
pub fn answer(
    catalog: &Catalog,
    query: &ClientQuery,
    rng: &mut impl Rng,
    held: impl Fn(&str) -> bool,
) -> Answer {
    assemble(catalog, query, rng, held, None).0
}

/// [`answer`] for a signed list: its order is one of `variants` per set
/// (drawn with `rng`), each the same for the same set, and its locations
/// come nearest first from the location nearest to the client (not from
/// the client's own position), so that bodies repeat and each is signed
/// once. Also returns what names the body:
/// the same number for the same bytes (within this catalog).
pub fn answer_repeatable(
    catalog: &Catalog,
    query: &ClientQuery,
    rng: &mut impl Rng,
    held: impl Fn(&str) -> bool,
    variants: u32,
) -> (Answer, u64) {
    assemble(catalog, query, rng, held, Some(variants.max(1)))
}

fn assemble(
    catalog: &Catalog,
    query: &ClientQuery,
    rng: &mut impl Rng,
    held: impl Fn(&str) -> bool,
    variants: Option<u32>,
) -> (Answer, u64) {
    let filter = query.filter(catalog);
    with_scratch(|scratch| {
        let found = scratch.pick(catalog, filter.loc, filter.admits_plain(), |e| {
            filter.admits(catalog, e)
        });
        let etag = Etag::of(catalog, &found);
        if held(etag.as_str()) {
            return (Answer { etag, body: None }, 0);
        }
        let key = match variants {
            None => {
                scratch.order_for(catalog, query, false, rng);
                0
            }
            Some(variants) => {
                // The variant, with the set, the catalog and how it is
                // ordered, seeds the draw: the within-location orders
                // (drawn first, location by location in the catalog's
                // order) are then the same for the same set, and the body
                // is named by the seed and the order of the locations.
                let variant = rng.random_range(0..variants);
                let mut seed = [0u8; 29];
                seed[..8].copy_from_slice(&catalog.salt().to_le_bytes());
                seed[8..16].copy_from_slice(&found.hash_sum.to_le_bytes());
                seed[16..24].copy_from_slice(&(found.count as u64).to_le_bytes());
                seed[24..28].copy_from_slice(&variant.to_le_bytes());
                // Ordered by load, the same set makes another body.
                seed[28] = u8::from(query.byload);
                let seed = xxhash_rust::xxh3::xxh3_64(&seed);
                let mut drawn = rand::rngs::SmallRng::seed_from_u64(seed);
                // Ordered from the location nearest to the client, so that
                // clients near the same location share bodies.
                scratch.order_for(catalog, query, true, &mut drawn);
                scratch.order_fingerprint(seed)
            }
        };
        // `[`, each entry and the comma after it, the last comma becoming
        // the `]`.
        let size = found.json_bytes + found.count + 1;
        let mut out = Vec::with_capacity(size.max(2));
        out.push(b'[');
        scratch.write_json(catalog, &mut out);
        match out.last_mut() {
            Some(last) if found.count > 0 => *last = b']',
            _ => out.push(b']'),
        }
        debug_assert_eq!(out.len(), size.max(2));
        (
            Answer {
                etag,
                body: Some(Bytes::from(out)),
            },
            key,
        )
    })
}

/// The gateways for `query`, in the order the client should try them
/// (as `/api/5/gateways` would list them), drawn with `rng`.
pub fn gateways<'s>(
    snapshot: &'s Snapshot,
    query: &ClientQuery,
    rng: &mut impl Rng,
) -> Vec<&'s Gateway> {
    ordered(
        snapshot,
        ResourceKind::Gateway,
        &snapshot.gateways,
        query,
        rng,
    )
}

/// The bridges for `query`, in the order the client should try them (as
/// `/api/5/bridges` would list them), drawn with `rng`.
pub fn bridges<'s>(
    snapshot: &'s Snapshot,
    query: &ClientQuery,
    rng: &mut impl Rng,
) -> Vec<&'s Bridge> {
    ordered(
        snapshot,
        ResourceKind::Bridge,
        &snapshot.bridges,
        query,
        rng,
    )
}

/// The resources of `kind` (`all` of them, as the snapshot holds them) for
/// `query`, in the order its answer lists them.
fn ordered<'s, T>(
    snapshot: &Snapshot,
    kind: ResourceKind,
    all: &'s [T],
    query: &ClientQuery,
    rng: &mut impl Rng,
) -> Vec<&'s T> {
    let catalog = snapshot.catalog(kind);
    let filter = query.filter(catalog);
    with_scratch(|scratch| {
        scratch.pick(catalog, filter.loc, filter.admits_plain(), |e| {
            filter.admits(catalog, e)
        });
        scratch.order_for(catalog, query, false, rng);
        let entries = catalog.entries();
        scratch
            .ordered()
            .filter_map(|i| all.get(entries[i as usize].index as usize))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::{self, GridPoint};
    use crate::inventory::Snapshot;
    use crate::store::{Inventory, LocationRow, ResourceRow};

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

    fn parse_with(raw: &str, kind: ResourceKind, snapshot: &Snapshot) -> ClientQuery {
        ClientQuery::parse(Some(raw), kind, snapshot).unwrap()
    }

    #[test]
    fn every_bridge_transport_can_be_asked_for() {
        use crate::inventory::validate::BRIDGE_TRANSPORTS;
        use crate::select::query::BRIDGE_QUERY_TRANSPORTS;
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

    /// `locations` locations, `per` gateways in each with loads spread out
    /// (every fifth overloaded), half udp and half tcp, and as many bridges.
    fn world(locations: usize, per: usize) -> Inventory {
        let countries = ["NL", "DE", "FR", "US", "JP", "BR", "ZA", "AU"];
        let mut inventory = Inventory::default();
        for l in 0..locations {
            let c = geo::country(countries[l % countries.len()]).unwrap();
            inventory.locations.push(LocationRow {
                label: format!("loc{l:02}"),
                display_name: format!("Location {l}"),
                country_code: c.code.into(),
                lat: Some(c.position.lat),
                lon: Some(c.position.lon),
                timezone: None,
                hemisphere: String::new(),
                region: String::new(),
                origin: "config".into(),
            });
            for i in 0..per {
                for kind in [ResourceKind::Gateway, ResourceKind::Bridge] {
                    let n = l * per + i;
                    let host = format!("{}{n:04}", kind.as_str());
                    inventory.resources.push(ResourceRow {
                        kind,
                        ip_addr: format!("10.0.{}.{}", n / 250, n % 250 + 1),
                        port: 1194 + (n % 3) as i64,
                        transport: if n.is_multiple_of(2) { "udp" } else { "tcp" }.into(),
                        kind_type: match kind {
                            ResourceKind::Gateway => "openvpn",
                            ResourceKind::Bridge => "obfs4",
                        }
                        .into(),
                        load: (n * 37 % 100) as f64 / 100.0,
                        overloaded: n.is_multiple_of(5),
                        ..ResourceRow::test_gateway(&host, &format!("loc{l:02}"))
                    });
                }
            }
        }
        inventory
    }

    fn hosts(body: &[u8]) -> Vec<String> {
        let list: Vec<serde_json::Value> = serde_json::from_slice(body).unwrap();
        list.iter()
            .map(|g| g["host"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn answers_are_the_ready_bytes_of_the_set_in_a_drawn_order() {
        use rand::SeedableRng;
        let s = Snapshot::build(&world(4, 5), 0, &Default::default());
        let catalog = s.catalog(ResourceKind::Gateway);
        let query = parse_with("cc=DE", ResourceKind::Gateway, &s);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        let mut orders = std::collections::HashSet::new();
        let mut tags = std::collections::HashSet::new();
        for _ in 0..50 {
            let a = answer(catalog, &query, &mut rng, |_| false);
            let body = a.body.unwrap();
            // The same bytes as encoding the list whole would give.
            let list: Vec<Gateway> = serde_json::from_slice(&body).unwrap();
            assert_eq!(serde_json::to_vec(&list).unwrap(), body);
            assert_eq!(list.len(), 20);
            orders.insert(hosts(&body));
            tags.insert(a.etag);
        }
        assert!(orders.len() > 10, "each request draws: {}", orders.len());
        assert_eq!(tags.len(), 1, "one set, one tag");
        let tag = *tags.iter().next().unwrap();

        // Held: no body, the same tag.
        let held = answer(catalog, &query, &mut rng, |t| t == tag.as_str());
        assert_eq!((held.etag, held.body), (tag, None));

        // Another set, another tag; the position alone changes nothing.
        let udp = parse_with("cc=DE&tr=udp", ResourceKind::Gateway, &s);
        assert_ne!(answer(catalog, &udp, &mut rng, |_| false).etag, tag);
        let jp = parse_with("cc=JP", ResourceKind::Gateway, &s);
        assert_eq!(answer(catalog, &jp, &mut rng, |_| false).etag, tag);
        // Bridges are another list, even when empty.
        let none = parse_with("port=9", ResourceKind::Gateway, &s);
        let bridges = s.catalog(ResourceKind::Bridge);
        assert_ne!(
            answer(catalog, &none, &mut rng, |_| false).etag,
            answer(bridges, &none, &mut rng, |_| false).etag
        );
        assert_eq!(
            answer(catalog, &none, &mut rng, |_| false).body.unwrap(),
            "[]"
        );
    }

    #[test]
    fn the_tag_is_the_same_on_every_replica() {
        use rand::SeedableRng;
        let inventory = world(3, 4);
        let a = Snapshot::build(&inventory, 0, &Default::default());
        let b = Snapshot::build(&inventory, 5_000, &Default::default());
        for raw in ["", "tr=tcp", "loc=loc01", "port=1195&cc=US"] {
            let tag = |s: &Snapshot, seed| {
                let q = parse_with(raw, ResourceKind::Gateway, s);
                let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
                answer(s.catalog(ResourceKind::Gateway), &q, &mut rng, |_| false).etag
            };
            assert_eq!(tag(&a, 1), tag(&b, 2), "{raw}");
        }
    }

    #[test]
    fn filters_pick_as_before() {
        use rand::SeedableRng;
        let s = Snapshot::build(&world(3, 4), 0, &Default::default());
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let mut list = |raw: &str, kind| {
            let q = parse_with(raw, kind, &s);
            let body = answer(s.catalog(kind), &q, &mut rng, |_| false)
                .body
                .unwrap();
            serde_json::from_slice::<Vec<serde_json::Value>>(&body).unwrap()
        };
        let all = list("", ResourceKind::Gateway);
        assert_eq!(all.len(), 12);
        let tcp_1195 = list("tr=tcp&port=1195", ResourceKind::Gateway);
        assert!(!tcp_1195.is_empty());
        assert!(
            tcp_1195
                .iter()
                .all(|g| g["transport"] == "tcp" && g["port"] == 1195)
        );
        let loc = list("loc=LOC02", ResourceKind::Gateway);
        assert_eq!(loc.len(), 4);
        assert!(loc.iter().all(|g| g["location"] == "loc02"));
        assert!(list("type=obfs4-hop", ResourceKind::Bridge).is_empty());
        assert_eq!(list("type=obfs4", ResourceKind::Bridge).len(), 12);
        assert!(list("tr=kcp", ResourceKind::Bridge).is_empty());
        // Overloaded ones last in their location.
        for g in &loc[..3] {
            assert_eq!(g["overloaded"], serde_json::Value::Null, "{loc:?}");
        }
    }

    #[test]
    fn a_fill_attack_keeps_nothing() {
        use rand::SeedableRng;
        let s = Snapshot::build(&world(8, 25), 0, &Default::default());
        let before: usize = [ResourceKind::Gateway, ResourceKind::Bridge]
            .map(|k| s.catalog(k).heap_bytes())
            .iter()
            .sum();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(9);
        let mut answered = 0;
        // Every port, every country, and both at once.
        for port in 1..=u16::MAX {
            let q = ClientQuery {
                port: Some(port),
                ..Default::default()
            };
            answered += answer(s.catalog(ResourceKind::Gateway), &q, &mut rng, |_| false)
                .body
                .unwrap()
                .len();
        }
        for c in geo::countries() {
            for kind in [ResourceKind::Gateway, ResourceKind::Bridge] {
                let q = parse_with(&format!("cc={}&port=1194", c.code), kind, &s);
                answered += answer(s.catalog(kind), &q, &mut rng, |_| false)
                    .body
                    .unwrap()
                    .len();
            }
        }
        assert!(answered > 0);
        let after: usize = [ResourceKind::Gateway, ResourceKind::Bridge]
            .map(|k| s.catalog(k).heap_bytes())
            .iter()
            .sum();
        assert_eq!(after, before, "the snapshot keeps nothing of its answers");
        // The working space is bounded by the inventory, not the requests.
        let entries = s.catalog(ResourceKind::Gateway).len();
        let scratch = order::with_scratch(|scratch| scratch.heap_bytes());
        assert!(scratch <= 2 * entries * 64, "{scratch} bytes");
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
