use super::*;
use crate::geo::{Place, Position};

use crate::inventory::catalog::{CatalogBuilder, Item};
use rand::SeedableRng;
use rand::rngs::SmallRng;

struct R {
    name: &'static str,
    location: &'static str,
    load: f64,
    overloaded: bool,
}

fn r(name: &'static str, location: &'static str, load: f64, overloaded: bool) -> R {
    R {
        name,
        location,
        load,
        overloaded,
    }
}

fn places(label: &str) -> Place {
    let at = |lat, lon| Place {
        position: Some(Position { lat, lon }),
        timezone: None,
    };
    match label {
        "amsterdam" => at(52.37, 4.89),
        "paris" => at(48.86, 2.35),
        "tokyo" => at(35.68, 139.69),
        "miami" => at(25.76, -80.19),
        // no coordinates, only a timezone
        "somewhere-utc9" => Place {
            position: None,
            timezone: Some(9),
        },
        _ => Place::default(),
    }
}

/// Resources and their catalog, each one's JSON its name.
struct World {
    rows: Vec<R>,
    catalog: Catalog,
}

fn catalog<const N: usize>(items: [R; N]) -> World {
    let mut b = CatalogBuilder::new("test");
    for (i, r) in items.iter().enumerate() {
        b.push(Item {
            json: format!("{:?}", r.name).into_bytes(),
            index: i as u32,
            location: r.location,
            place: places(r.location),
            load: r.load,
            overloaded: r.overloaded,
            port: 1194,
            transport: "udp",
            kind: "openvpn",
            experimental: false,
            bucket: "",
            blocked_in: Default::default(),
        });
    }
    World {
        catalog: b.finish(),
        rows: items.into(),
    }
}

/// The names in the order a client at `near` gets them.
fn order(world: &World, near: Option<GridPoint>, rng: &mut SmallRng) -> Vec<&'static str> {
    let catalog = &world.catalog;
    let mut s = Scratch::default();
    s.pick(catalog, None, false, |_| true);
    s.order(catalog, near, rng);
    s.ordered()
        .map(|i| {
            let entry = &catalog.entries()[i as usize];
            let name = world.rows[entry.index as usize].name;
            assert_eq!(catalog.json(entry), format!("{name:?}").as_bytes());
            name
        })
        .collect()
}

#[test]
fn nearest_location_first() {
    let items = catalog([
        r("ams", "amsterdam", 0.1, false),
        r("par", "paris", 0.1, false),
        r("tyo", "tokyo", 0.1, false),
        r("mia", "miami", 0.1, false),
    ]);
    let mut rng = SmallRng::seed_from_u64(1);
    let berlin = GridPoint { lat: 53, lon: 13 };
    let list = order(&items, Some(berlin), &mut rng);
    assert_eq!(list, ["ams", "par", "mia", "tyo"]);
    let sao_paulo = GridPoint { lat: -24, lon: -47 };
    let list = order(&items, Some(sao_paulo), &mut rng);
    assert_eq!(list[0], "mia");
}

#[test]
fn timezone_stands_in_for_missing_coordinates() {
    let items = catalog([
        r("ams", "amsterdam", 0.1, false),
        r("tz9", "somewhere-utc9", 0.1, false),
        r("nowhere", "unknown", 0.1, false),
    ]);
    let mut rng = SmallRng::seed_from_u64(1);
    let seoul = GridPoint { lat: 38, lon: 127 };
    let list = order(&items, Some(seoul), &mut rng);
    assert_eq!(list, ["tz9", "ams", "nowhere"]);
}

#[test]
fn load_spreads_and_overloaded_is_never_first() {
    let items = catalog([
        r("light", "paris", 0.1, false),
        r("heavy", "paris", 0.8, false),
        r("full", "paris", 0.95, true),
    ]);
    let mut rng = SmallRng::seed_from_u64(42);
    let near = Some(GridPoint { lat: 49, lon: 2 });
    let mut first = std::collections::HashMap::new();
    for _ in 0..10_000 {
        let list = order(&items, near, &mut rng);
        *first.entry(list[0]).or_insert(0) += 1;
        assert_eq!(list[2], "full", "overloaded last");
    }
    let light = first["light"];
    let heavy = first["heavy"];
    assert_eq!(light + heavy, 10_000);
    // spare capacity 0.9 against 0.2: light first about 82% of the time
    assert!((7_800..8_600).contains(&light), "light first {light} times");
    assert!(heavy > 1_000, "heavy still gets clients: {heavy}");
}

#[test]
fn overloaded_ones_come_least_loaded_first() {
    let items = catalog([
        r("fuller", "paris", 0.99, true),
        r("room", "paris", 0.5, false),
        r("full", "paris", 0.95, true),
    ]);
    let mut rng = SmallRng::seed_from_u64(5);
    let near = Some(GridPoint { lat: 49, lon: 2 });
    assert_eq!(order(&items, near, &mut rng), ["room", "full", "fuller"]);
    assert_eq!(order(&items, None, &mut rng), ["room", "full", "fuller"]);
}

#[test]
fn full_locations_come_after_ones_with_room() {
    let items = catalog([
        r("ams", "amsterdam", 1.0, true),
        r("tyo", "tokyo", 0.5, false),
    ]);
    let mut rng = SmallRng::seed_from_u64(3);
    let near = Some(GridPoint { lat: 52, lon: 5 });
    let list = order(&items, near, &mut rng);
    assert_eq!(list, ["tyo", "ams"]);
}

#[test]
fn without_a_position_locations_are_weighted_by_spare_capacity() {
    let items = catalog([
        r("ams1", "amsterdam", 0.1, false),
        r("ams2", "amsterdam", 0.1, false),
        r("tyo", "tokyo", 0.9, false),
    ]);
    let mut rng = SmallRng::seed_from_u64(7);
    let mut amsterdam_first = 0;
    for _ in 0..10_000 {
        let list = order(&items, None, &mut rng);
        if list[0].starts_with("ams") {
            amsterdam_first += 1;
        }
    }
    // capacity 1.8 against 0.1: Amsterdam first about 95% of the time
    assert!(
        (9_300..9_700).contains(&amsterdam_first),
        "{amsterdam_first}"
    );
}

#[test]
fn the_logarithm_is_close() {
    for i in 1..100_000 {
        let u = f64::from(i) / 100_000.0;
        assert!((ln(u) - u.ln()).abs() < 2e-6, "{u}");
    }
    assert_eq!(ln(1.0), 0.0);
    assert!((ln(f64::MIN_POSITIVE) - f64::MIN_POSITIVE.ln()).abs() < 1e-3);
}

#[test]
fn the_set_is_found_whatever_the_order() {
    let items = catalog([
        r("a", "paris", 0.1, false),
        r("b", "paris", 0.2, false),
        r("c", "tokyo", 0.3, false),
    ]);
    let items = &items.catalog;
    let mut s = Scratch::default();
    let all = s.pick(items, None, false, |_| true);
    assert_eq!(all.count, 3);
    assert_eq!(all.json_bytes, 9);
    let paris = s.pick(items, Some("paris"), false, |_| true);
    assert_eq!(paris.count, 2);
    assert_ne!(paris.hash_sum, all.hash_sum);
    let none = s.pick(items, Some("paris"), false, |e| e.weight < 0.5);
    assert_eq!(none, Found::default());
}

#[test]
fn drawing_in_turn_gives_each_order_its_probability() {
    // weights 0.8, 0.4, 0.2 (sum 1.4): P(a, b, c) = 0.8/1.4 * 0.4/0.6
    let w = [
        r("a", "x", 0.2, false),
        r("b", "x", 0.6, false),
        r("c", "x", 0.8, false),
    ];
    let world = catalog(w);
    let entries = world.catalog.entries();
    let mut rng = SmallRng::seed_from_u64(11);
    let mut counts = std::collections::HashMap::new();
    let n = 60_000;
    for _ in 0..n {
        let mut open: Vec<u64> = (0..3).collect();
        weighted_in_turn(&mut open, entries, &mut rng);
        let names: Vec<u32> = open.iter().map(|&p| entry_of(p)).collect();
        *counts.entry(names).or_insert(0u32) += 1;
    }
    let weight = |i: u32| entries[i as usize].weight;
    let total: f64 = (0..3).map(weight).sum();
    assert_eq!(counts.len(), 6, "every order occurs");
    for (order, seen) in counts {
        let first = weight(order[0]) / total;
        let second = weight(order[1]) / (total - weight(order[0]));
        let expected = first * second;
        let got = f64::from(seen) / f64::from(n);
        assert!(
            (got - expected).abs() < 0.01,
            "{order:?}: {got:.4} against {expected:.4}"
        );
    }
}

#[test]
fn snapped_orders_start_at_the_nearest_location_and_go_on_from_there() {
    let items = catalog([
        r("ams", "amsterdam", 0.1, false),
        r("par", "paris", 0.1, false),
        r("tyo", "tokyo", 0.1, false),
        r("mia", "miami", 0.1, false),
    ]);
    let snapped = |near: GridPoint| {
        let catalog = &items.catalog;
        let mut s = Scratch::default();
        s.pick(catalog, None, false, |_| true);
        s.order_from(catalog, Some(near), true, &mut SmallRng::seed_from_u64(1));
        s.ordered()
            .map(|i| items.rows[catalog.entries()[i as usize].index as usize].name)
            .collect::<Vec<_>>()
    };
    // From Amsterdam on, wherever in its neighbourhood the client is: Paris,
    // then Miami (7,100 km from Amsterdam) before Tokyo (9,300 km).
    let berlin = GridPoint { lat: 53, lon: 13 };
    let rotterdam = GridPoint { lat: 52, lon: 4 };
    assert_eq!(snapped(berlin), ["ams", "par", "mia", "tyo"]);
    assert_eq!(snapped(rotterdam), snapped(berlin));
    // A client in Anchorage is nearest to Tokyo (5,500 km; Miami 6,400 km,
    // Amsterdam 7,400 km): from Tokyo, Amsterdam (9,300 km) and Paris (9,700
    // km) come before Miami (11,900 km).
    let anchorage = GridPoint { lat: 61, lon: -150 };
    assert_eq!(snapped(anchorage), ["tyo", "ams", "par", "mia"]);
    let own = order(&items, Some(anchorage), &mut SmallRng::seed_from_u64(1));
    assert_eq!(own, ["tyo", "mia", "ams", "par"], "from the client itself");
}
