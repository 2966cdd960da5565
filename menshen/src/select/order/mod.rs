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
//!
//! Every request gets its own random draw. The work is a pass over the
//! catalog's entries and a sort of each location's picks and of the
//! locations: no encoding, and nothing allocated but the answer itself
//! (the working space, [`Scratch`], is reused by each thread).

use std::cell::RefCell;

use rand::Rng;

use crate::geo::GridPoint;
use crate::inventory::catalog::{Catalog, Entry, unit};

/// Kilometres one hour of timezone difference stands for.
const KM_PER_TIMEZONE_HOUR: f64 = 40_075.0 / 24.0;

const EARTH_RADIUS_KM: f64 = 6371.0;

/// A location chosen for a list, with its picks.
#[derive(Debug, Clone, Copy)]
struct Pick {
    /// Nothing picked here has room.
    full: bool,
    /// Index of the catalog's group.
    group: u32,
    /// Its entries' place in [`Scratch::picked`].
    start: u32,
    /// Picks from here to `end` are overloaded, in the catalog's order.
    open_end: u32,
    end: u32,
    /// Spare capacity of its picks with room.
    capacity: f64,
}

/// Working space of one answer, kept per thread and reused: it grows to the
/// largest catalog served, never with what clients send.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Location after location, each pick's sort key (the bits of a
    /// non-negative `f32`, which sort as integers do) in the high half and
    /// its entry's index in the low half: sorting these is sorting by key.
    picked: Vec<u64>,
    groups: Vec<Pick>,
    /// The order of `groups`, made by [`Scratch::order`]: each one's sort
    /// key packed with its index (see [`group_key`]).
    order: Vec<u64>,
}

fn entry_of(pick: u64) -> u32 {
    pick as u32
}

fn keyed(key: f64, entry: u32) -> u64 {
    (u64::from((key as f32).to_bits()) << 32) | u64::from(entry)
}

/// A location's place in the list as one integer, so that ordering the
/// locations is sorting integers: those with room before full ones, then
/// by `key` (non-negative: a distance or a random draw; the bits of a
/// non-negative `f32` sort as integers do), then by `index` (the
/// catalog's order, which is by label).
fn group_key(full: bool, key: f64, index: u32) -> u64 {
    let bits = (key.max(0.0) as f32).to_bits();
    (u64::from(full) << 63) | (u64::from(bits) << 32) | u64::from(index)
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch space.
pub fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with_borrow_mut(f)
}

/// What [`Scratch::pick`] found: enough to tag the set and size the answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    pub count: usize,
    /// Wrapping sum of the picked entries' hashes: the same for any order.
    pub hash_sum: u64,
    /// Sum of the picked entries' JSON lengths.
    pub json_bytes: usize,
}

/// An exponentially distributed draw (rate 1): -ln(u) for a uniform u in
/// (0, 1], with a logarithm good to about 1e-6 that costs half of `f64::ln`
/// (one is drawn for every resource of every answer).
fn exp1(rng: &mut impl Rng) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    -ln(u)
}

/// ln(v) for a positive, normal v: its exponent, and ln of its mantissa m
/// in [1, 2) from the series of atanh((m - 1) / (m + 1)).
fn ln(v: f64) -> f64 {
    let bits = v.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let series =
        t * (2.0 + t2 * (2.0 / 3.0 + t2 * (2.0 / 5.0 + t2 * (2.0 / 7.0 + t2 * (2.0 / 9.0)))));
    exponent as f64 * std::f64::consts::LN_2 + series
}

/// Up to this many resources with room in a location are ordered by
/// drawing them one after another ([`weighted_in_turn`]); more by an
/// exponential race and a sort, which scales better. Both give every order
/// the same probability.
const SEQUENTIAL_MAX: usize = 24;

/// Orders `open` (entry indices, as [`Scratch::pick`] leaves them) by
/// weighted sampling without replacement: each next one is drawn from those
/// left with probability proportional to its weight. This is the order the
/// exponential race (Efraimidis–Spirakis) gives, for fewer draws and no sort.
fn weighted_in_turn(open: &mut [u64], entries: &[Entry], rng: &mut impl Rng) {
    let n = open.len();
    if n < 2 {
        return;
    }
    // Shares are at most 2^24 each, so that their sum times a 32-bit draw
    // fits in 64 bits.
    let mut shares = [0u32; SEQUENTIAL_MAX];
    let shares = &mut shares[..n];
    let mut total = 0u64;
    for (s, p) in shares.iter_mut().zip(open.iter()) {
        *s = entries[entry_of(*p) as usize].share;
        total += u64::from(*s);
    }
    for k in 0..n - 1 {
        // uniform in 0..total
        let mut target = (u64::from(rng.next_u32()) * total) >> 32;
        let mut chosen = n - 1;
        let mut j = k;
        while j < n - 1 {
            let s = u64::from(shares[j]);
            if target < s {
                chosen = j;
                break;
            }
            target -= s;
            j += 1;
        }
        total -= u64::from(shares[chosen]);
        open.swap(k, chosen);
        shares.swap(k, chosen);
    }
}

impl Scratch {
    /// Picks the entries of `catalog` that `admits` (only in location
    /// `loc`, when given), location by location, in the catalog's order.
    /// With `plain_admitted` (`admits` takes every public, non-experimental
    /// entry), a [plain](crate::inventory::catalog::Group::plain) group is
    /// taken whole without looking at its entries.
    pub fn pick(
        &mut self,
        catalog: &Catalog,
        loc: Option<&str>,
        plain_admitted: bool,
        admits: impl Fn(&Entry) -> bool,
    ) -> Found {
        self.picked.clear();
        self.groups.clear();
        let entries = catalog.entries();
        let mut found = Found::default();
        for (g, group) in catalog.groups().iter().enumerate() {
            if loc.is_some_and(|l| l != &*group.label) {
                continue;
            }
            let start = self.picked.len() as u32;
            let (open_end, capacity) = if plain_admitted && group.plain {
                let sums = &group.whole;
                found.count += (group.end - group.start) as usize;
                found.hash_sum = found.hash_sum.wrapping_add(sums.hash_sum);
                found.json_bytes += sums.json_bytes;
                self.picked.extend((group.start..group.end).map(u64::from));
                (start + (group.open_end - group.start), sums.capacity)
            } else {
                let mut capacity = 0.0;
                let take = |found: &mut Found, picked: &mut Vec<u64>, i: u32, e: &Entry| {
                    found.count += 1;
                    found.hash_sum = found.hash_sum.wrapping_add(e.hash);
                    found.json_bytes += Catalog::json_len(e);
                    picked.push(u64::from(i));
                };
                for i in group.start..group.open_end {
                    let e = &entries[i as usize];
                    if admits(e) {
                        capacity += e.weight;
                        take(&mut found, &mut self.picked, i, e);
                    }
                }
                let open_end = self.picked.len() as u32;
                for i in group.open_end..group.end {
                    let e = &entries[i as usize];
                    if admits(e) {
                        take(&mut found, &mut self.picked, i, e);
                    }
                }
                (open_end, capacity)
            };
            let end = self.picked.len() as u32;
            if end == start {
                continue;
            }
            self.groups.push(Pick {
                full: open_end == start,
                group: g as u32,
                start,
                open_end,
                end,
                capacity,
            });
        }
        found
    }

    /// Orders what [`Scratch::pick`] picked for a client at `near`, with
    /// `rng` for the random part.
    pub fn order(&mut self, catalog: &Catalog, near: Option<GridPoint>, rng: &mut impl Rng) {
        self.order_from(catalog, near, false, rng);
    }

    /// [`Scratch::order`], the locations ordered nearest first from `near`,
    /// or with `snap` from the picked location nearest to it (which comes
    /// first either way): then every client nearest to the same location
    /// gets its locations in the same order, so that signed answers repeat.
    fn order_from(
        &mut self,
        catalog: &Catalog,
        near: Option<GridPoint>,
        snap: bool,
        rng: &mut impl Rng,
    ) {
        let entries = catalog.entries();
        let groups = catalog.groups();
        // Within each location: a random order in which each resource with
        // room comes first with a probability proportional to its weight
        // (Efraimidis–Spirakis: sort by an exponential race, -ln(u) / w).
        for pick in &self.groups {
            let open = &mut self.picked[pick.start as usize..pick.open_end as usize];
            if open.len() <= SEQUENTIAL_MAX {
                weighted_in_turn(open, entries, rng);
            } else {
                for pick in open.iter_mut() {
                    let i = entry_of(*pick);
                    let w = entries[i as usize].weight;
                    *pick = keyed(exp1(rng) / w.max(f64::MIN_POSITIVE), i);
                }
                open.sort_unstable();
            }
        }
        self.order.clear();
        match near {
            Some(near) => {
                let client = unit(near.position());
                let distance =
                    |u: [f64; 3]| 1.0 - (client[0] * u[0] + client[1] * u[1] + client[2] * u[2]);
                // With `snap`: the picked location nearest to the client,
                // whose distances to the others are in the catalog.
                let from = if snap {
                    let mut nearest = None;
                    let mut least = f64::INFINITY;
                    for pick in &self.groups {
                        if let Some(u) = groups[pick.group as usize].unit {
                            let d = distance(u);
                            if d < least {
                                (least, nearest) = (d, Some(pick.group));
                            }
                        }
                    }
                    nearest
                } else {
                    None
                };
                for (n, pick) in self.groups.iter().enumerate() {
                    let group = &groups[pick.group as usize];
                    // Sorting by one minus the cosine of the angle is
                    // sorting by great-circle distance, without an
                    // arccosine.
                    let key = if let Some(u) = group.unit {
                        match from {
                            Some(from) => f64::from(catalog.between(from, pick.group)),
                            None => distance(u),
                        }
                    } else if let Some(tz) = group.timezone {
                        let d = (tz - near.timezone_estimate()).rem_euclid(24);
                        let km = d.min(24 - d) as f64 * KM_PER_TIMEZONE_HOUR;
                        1.0 - (km / EARTH_RADIUS_KM).min(std::f64::consts::PI).cos()
                    } else {
                        f64::INFINITY
                    };
                    self.order.push(group_key(pick.full, key, n as u32));
                }
            }
            None => {
                for (n, pick) in self.groups.iter().enumerate() {
                    let weight = if pick.full { 1.0 } else { pick.capacity };
                    let key = exp1(rng) / weight.max(f64::MIN_POSITIVE);
                    self.order.push(group_key(pick.full, key, n as u32));
                }
            }
        }
        self.order.sort_unstable();
    }

    /// Orders what was picked by load alone (`byload=true`): those with
    /// room before overloaded ones, least loaded first, ties in the
    /// catalog's order; where they are does not matter.
    pub fn order_by_load(&mut self, catalog: &Catalog) {
        let entries = catalog.entries();
        for pick in &self.groups {
            let range = pick.start as usize..pick.end as usize;
            for (n, p) in self.picked[range].iter_mut().enumerate() {
                let i = entry_of(*p);
                let overloaded = pick.start as usize + n >= pick.open_end as usize;
                let load = 1.0 - entries[i as usize].weight;
                *p = keyed(f64::from(u8::from(overloaded)) * 2.0 + load, i);
            }
        }
        self.picked.sort_unstable();
        let end = self.picked.len() as u32;
        self.groups.clear();
        self.order.clear();
        if end > 0 {
            self.groups.push(Pick {
                full: false,
                group: 0,
                start: 0,
                open_end: end,
                end,
                capacity: 0.0,
            });
            self.order.push(0);
        }
    }

    /// Orders what was picked as `query` asks: by load alone for
    /// `byload`, else for the client's position (with `snap`, from the
    /// location nearest to it; see [`Scratch::order_from`]).
    pub fn order_for(
        &mut self,
        catalog: &Catalog,
        query: &super::ClientQuery,
        snap: bool,
        rng: &mut impl Rng,
    ) {
        if query.byload {
            self.order_by_load(catalog);
        } else {
            self.order_from(catalog, query.near, snap, rng);
        }
    }

    /// The picked groups, in order (after [`Scratch::order`]).
    fn ordered_groups(&self) -> impl Iterator<Item = &Pick> + '_ {
        self.order.iter().map(|&k| &self.groups[k as u32 as usize])
    }

    /// A number naming the order of the locations picked (after
    /// [`Scratch::order`]), mixed into `seed`.
    pub fn order_fingerprint(&self, seed: u64) -> u64 {
        self.order.iter().fold(seed, |h, &k| {
            (h ^ u64::from(k as u32))
                .wrapping_mul(0x0100_0000_01b3)
                .rotate_left(29)
        })
    }

    /// The picked entries' indices, in order (after [`Scratch::order`]).
    pub fn ordered(&self) -> impl Iterator<Item = u32> + '_ {
        self.ordered_groups().flat_map(|pick| {
            self.picked[pick.start as usize..pick.end as usize]
                .iter()
                .map(|&p| entry_of(p))
        })
    }

    /// Appends the picked entries' JSON to `out` in order (after
    /// [`Scratch::order`]), each followed by a comma.
    pub fn write_json(&self, catalog: &Catalog, out: &mut Vec<u8>) {
        let entries = catalog.entries();
        for pick in self.ordered_groups() {
            for &p in &self.picked[pick.start as usize..pick.end as usize] {
                out.extend_from_slice(catalog.json_and_comma(&entries[entry_of(p) as usize]));
            }
        }
    }

    /// Bytes this scratch space holds.
    pub fn heap_bytes(&self) -> usize {
        (self.picked.capacity() + self.order.capacity()) * std::mem::size_of::<u64>()
            + self.groups.capacity() * std::mem::size_of::<Pick>()
    }
}

#[cfg(test)]
mod tests;
