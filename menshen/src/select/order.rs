//! The order of a list: nearest location first, and within a location the
//! load spread over the gateways that have room.
//!
//! - Locations by great-circle distance from the client's position to the
//!   location's; a location without coordinates by the difference between
//!   its timezone and the one the client's longitude suggests (about 1,670 km
//!   an hour, the width of a timezone at the equator); a location with
//!   neither comes last. Without a client position, locations come in a
//!   random order weighted by their spare capacity.
//! - Locations where everything is overloaded come after all others.
//! - Within a location: resources with room first, in a random order
//!   weighted by spare capacity (1 − load), so that clients spread instead of
//!   all taking the same first gateway; overloaded ones last, least loaded
//!   first.

use std::collections::BTreeMap;

use rand::Rng;

use crate::geo::{GridPoint, distance_km};
use crate::inventory::Place;

/// Weight of a resource with no spare capacity left that is not (yet)
/// flagged overloaded: rarely first, never excluded.
const MIN_WEIGHT: f64 = 0.02;

/// Kilometres one hour of timezone difference stands for.
const KM_PER_TIMEZONE_HOUR: f64 = 40_075.0 / 24.0;

/// What ordering needs to know of a gateway or bridge.
pub trait Ranked {
    fn location(&self) -> &str;
    fn load(&self) -> f64;
    fn overloaded(&self) -> bool;
}

fn spare(load: f64) -> f64 {
    (1.0 - load).clamp(MIN_WEIGHT, 1.0)
}

/// A random order in which each item comes before the others with a
/// probability proportional to its weight (Efraimidis–Spirakis: sort by
/// an exponential race, -ln(u) / w).
fn weighted_shuffle<T>(items: Vec<(T, f64)>, rng: &mut impl Rng) -> Vec<T> {
    let mut keyed: Vec<(f64, T)> = items
        .into_iter()
        .map(|(item, weight)| {
            let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
            (-u.ln() / weight.max(f64::MIN_POSITIVE), item)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    keyed.into_iter().map(|(_, item)| item).collect()
}

/// How far a location is from `near`, for sorting.
fn distance(near: GridPoint, place: Place) -> f64 {
    if let Some(position) = place.position {
        return distance_km(near.position(), position);
    }
    if let Some(tz) = place.timezone {
        let d = (tz - near.timezone_estimate()).rem_euclid(24);
        return d.min(24 - d) as f64 * KM_PER_TIMEZONE_HOUR;
    }
    f64::INFINITY
}

struct Group<'s, T> {
    label: &'s str,
    ordered: Vec<&'s T>,
    capacity: f64,
    full: bool,
}

/// Orders `items` (already filtered) for a client at `near`.
pub fn order<'s, T: Ranked>(
    items: Vec<&'s T>,
    near: Option<GridPoint>,
    place: impl Fn(&str) -> Place,
    rng: &mut impl Rng,
) -> Vec<&'s T> {
    let mut by_location: BTreeMap<&'s str, Vec<&'s T>> = BTreeMap::new();
    for item in items {
        by_location.entry(item.location()).or_default().push(item);
    }
    let mut groups: Vec<Group<'s, T>> = by_location
        .into_iter()
        .map(|(label, members)| {
            let (open, mut overloaded): (Vec<&T>, Vec<&T>) =
                members.into_iter().partition(|r| !r.overloaded());
            let capacity: f64 = open.iter().map(|r| spare(r.load())).sum();
            let full = open.is_empty();
            let mut ordered = weighted_shuffle(
                open.into_iter().map(|r| (r, spare(r.load()))).collect(),
                rng,
            );
            overloaded.sort_by(|a, b| a.load().total_cmp(&b.load()));
            ordered.extend(overloaded);
            Group {
                label,
                ordered,
                capacity,
                full,
            }
        })
        .collect();

    match near {
        Some(near) => {
            let mut keyed: Vec<(bool, f64, Group<'s, T>)> = groups
                .into_iter()
                .map(|g| (g.full, distance(near, place(g.label)), g))
                .collect();
            keyed.sort_by(|a, b| {
                (a.0, a.1)
                    .partial_cmp(&(b.0, b.1))
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| a.2.label.cmp(b.2.label))
            });
            groups = keyed.into_iter().map(|(_, _, g)| g).collect();
        }
        None => {
            let (open, full): (Vec<_>, Vec<_>) = groups.into_iter().partition(|g| !g.full);
            let open: Vec<_> = open
                .into_iter()
                .map(|g| {
                    let w = g.capacity;
                    (g, w)
                })
                .collect();
            groups = weighted_shuffle(open, rng);
            groups.extend(weighted_shuffle(
                full.into_iter().map(|g| (g, 1.0)).collect(),
                rng,
            ));
        }
    }
    groups.into_iter().flat_map(|g| g.ordered).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::Position;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[derive(Debug, PartialEq)]
    struct R {
        name: &'static str,
        location: &'static str,
        load: f64,
        overloaded: bool,
    }

    impl Ranked for R {
        fn location(&self) -> &str {
            self.location
        }
        fn load(&self) -> f64 {
            self.load
        }
        fn overloaded(&self) -> bool {
            self.overloaded
        }
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

    fn names(list: &[&R]) -> Vec<&'static str> {
        list.iter().map(|r| r.name).collect()
    }

    #[test]
    fn nearest_location_first() {
        let items = [
            r("ams", "amsterdam", 0.1, false),
            r("par", "paris", 0.1, false),
            r("tyo", "tokyo", 0.1, false),
            r("mia", "miami", 0.1, false),
        ];
        let mut rng = SmallRng::seed_from_u64(1);
        let berlin = GridPoint { lat: 53, lon: 13 };
        let list = order(items.iter().collect(), Some(berlin), places, &mut rng);
        assert_eq!(names(&list), ["ams", "par", "mia", "tyo"]);
        let sao_paulo = GridPoint { lat: -24, lon: -47 };
        let list = order(items.iter().collect(), Some(sao_paulo), places, &mut rng);
        assert_eq!(names(&list)[0], "mia");
    }

    #[test]
    fn timezone_stands_in_for_missing_coordinates() {
        let items = [
            r("ams", "amsterdam", 0.1, false),
            r("tz9", "somewhere-utc9", 0.1, false),
            r("nowhere", "unknown", 0.1, false),
        ];
        let mut rng = SmallRng::seed_from_u64(1);
        let seoul = GridPoint { lat: 38, lon: 127 };
        let list = order(items.iter().collect(), Some(seoul), places, &mut rng);
        assert_eq!(names(&list), ["tz9", "ams", "nowhere"]);
    }

    #[test]
    fn load_spreads_and_overloaded_is_never_first() {
        let items = [
            r("light", "paris", 0.1, false),
            r("heavy", "paris", 0.8, false),
            r("full", "paris", 0.95, true),
        ];
        let mut rng = SmallRng::seed_from_u64(42);
        let near = Some(GridPoint { lat: 49, lon: 2 });
        let mut first = std::collections::HashMap::new();
        for _ in 0..10_000 {
            let list = order(items.iter().collect(), near, places, &mut rng);
            *first.entry(list[0].name).or_insert(0) += 1;
            assert_eq!(list[2].name, "full", "overloaded last");
        }
        let light = first["light"];
        let heavy = first["heavy"];
        assert_eq!(light + heavy, 10_000);
        // spare capacity 0.9 against 0.2: light first about 82% of the time
        assert!((7_800..8_600).contains(&light), "light first {light} times");
        assert!(heavy > 1_000, "heavy still gets clients: {heavy}");
    }

    #[test]
    fn full_locations_come_after_ones_with_room() {
        let items = [
            r("ams", "amsterdam", 1.0, true),
            r("tyo", "tokyo", 0.5, false),
        ];
        let mut rng = SmallRng::seed_from_u64(3);
        let near = Some(GridPoint { lat: 52, lon: 5 });
        let list = order(items.iter().collect(), near, places, &mut rng);
        assert_eq!(names(&list), ["tyo", "ams"]);
    }

    #[test]
    fn without_a_position_locations_are_weighted_by_spare_capacity() {
        let items = [
            r("ams1", "amsterdam", 0.1, false),
            r("ams2", "amsterdam", 0.1, false),
            r("tyo", "tokyo", 0.9, false),
        ];
        let mut rng = SmallRng::seed_from_u64(7);
        let mut amsterdam_first = 0;
        for _ in 0..10_000 {
            let list = order(items.iter().collect(), None, places, &mut rng);
            if list[0].location == "amsterdam" {
                amsterdam_first += 1;
            }
        }
        // capacity 1.8 against 0.1: Amsterdam first about 95% of the time
        assert!(
            (9_300..9_700).contains(&amsterdam_first),
            "{amsterdam_first}"
        );
    }
}
