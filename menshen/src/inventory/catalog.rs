//! The listed gateways or bridges of one snapshot, each encoded once, with
//! what choosing and ordering need to know of them.
//!
//! A list answer is assembled from these ready bytes (see `select`): the
//! matching entries are picked, ordered and concatenated; nothing is
//! encoded, and nothing is kept, per request.

use std::sync::Arc;

use crate::geo::{CountrySet, Place, Position};
use crate::select::ring::Ring;

/// One resource as given to [`CatalogBuilder::push`].
#[derive(Debug, Clone)]
pub struct Item<'a> {
    /// Its JSON, exactly as a list carries it.
    pub json: Vec<u8>,
    /// Where it is in the snapshot's own list of this kind.
    pub index: u32,
    pub location: &'a str,
    pub place: Place,
    pub load: f64,
    pub overloaded: bool,
    pub port: i64,
    pub transport: &'a str,
    pub kind: &'a str,
    pub experimental: bool,
    /// Empty for public resources.
    pub bucket: &'a str,
    /// Where operators blocked it: not given to clients there.
    pub blocked_in: CountrySet,
}

/// A resource as the read path sees it: where its bytes are, and the few
/// fields filters and ordering look at.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    start: u32,
    len: u32,
    /// xxh3 of its bytes: what a list's entity tag is made of.
    pub hash: u64,
    /// Spare capacity (1 − load, at least [`MIN_WEIGHT`]): how likely it
    /// comes first among the others of its location.
    pub weight: f64,
    /// `weight` in units of 2⁻²⁴ (at least 1), for drawing with integers.
    pub share: u32,
    /// Index into the snapshot's `gateways` or `bridges`.
    pub index: u32,
    /// The port, or 0 when it has none in 1..=65535.
    pub port: u16,
    /// Index into the catalog's transports.
    pub transport: u16,
    /// Index into the catalog's types.
    pub kind: u16,
    /// Index into the catalog's buckets plus one; 0 for public resources.
    pub bucket: u16,
    pub experimental: bool,
    /// Index into the catalog's sets of countries it is blocked in plus
    /// one; 0 for one blocked nowhere.
    pub blocked: u32,
}

/// The entries of one location: those with room first (in the order they
/// were pushed), then the overloaded ones, least loaded first.
#[derive(Debug, Clone)]
pub struct Group {
    pub label: Arc<str>,
    /// The location's position as a unit vector, for distances.
    pub unit: Option<[f64; 3]>,
    /// Whole hours from UTC, for locations without coordinates.
    pub timezone: Option<i64>,
    pub start: u32,
    /// Entries from here to `end` are overloaded.
    pub open_end: u32,
    pub end: u32,
    /// Every entry is public, not experimental and blocked nowhere: a query
    /// that filters on nothing but those takes the whole group, with
    /// [`Group::whole`].
    pub plain: bool,
    /// The whole group's sums, for taking it without looking at each entry.
    pub whole: GroupSums,
}

/// Sums over a group's entries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupSums {
    /// Wrapping sum of the entries' hashes.
    pub hash_sum: u64,
    /// Sum of the entries' JSON lengths.
    pub json_bytes: usize,
    /// Sum of the weights of those with room.
    pub capacity: f64,
}

/// Weight of a resource with no spare capacity left that is not (yet)
/// flagged overloaded: rarely first, never excluded.
pub const MIN_WEIGHT: f64 = 0.02;

/// Spare capacity as an ordering weight.
pub fn spare(load: f64) -> f64 {
    if load.is_nan() {
        return MIN_WEIGHT;
    }
    (1.0 - load).clamp(MIN_WEIGHT, 1.0)
}

/// A weight (at most 1) as a whole number of 2⁻²⁴ units, at least 1: a
/// location's shares add up without overflow and are drawn from with one
/// multiplication.
pub fn share(weight: f64) -> u32 {
    ((weight.clamp(0.0, 1.0) * f64::from(1u32 << 24)).round() as u32).max(1)
}

/// The unit vector of a position: the dot product of two is the cosine of
/// the angle between them, so nearer means larger.
pub fn unit(p: Position) -> [f64; 3] {
    let (lat, lon) = (p.lat.to_radians(), p.lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

/// Everything a list of one kind may hold, ready to be assembled.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Every entry's JSON, one after another, each followed by a comma:
    /// a list is these runs copied one after another, between brackets
    /// (the last comma becoming the closing one).
    bytes: Box<[u8]>,
    entries: Box<[Entry]>,
    /// By label.
    groups: Box<[Group]>,
    transports: Vec<Box<str>>,
    kinds: Vec<Box<str>>,
    buckets: Vec<Box<str>>,
    /// The distinct sets of countries entries are blocked in.
    blocked: Vec<CountrySet>,
    /// Distinguishes the entity tags of lists of different kinds.
    salt: u64,
    /// How the public entries are shared out among client networks, when
    /// they are (bridges).
    ring: Option<Ring>,
    /// Between every two groups, [`Catalog::between`] row by row, when
    /// made ([`Catalog::with_distances`]; empty otherwise).
    between: Box<[f32]>,
}

/// Collects items, in any order, into a [`Catalog`].
#[derive(Debug)]
pub struct CatalogBuilder<'a> {
    items: Vec<Item<'a>>,
    salt: u64,
}

/// Index of `value` in `table`, added when new. Tables are tiny (a few
/// transports, types and buckets): a scan is cheapest.
fn intern(table: &mut Vec<Box<str>>, value: &str) -> usize {
    match table.iter().position(|t| &**t == value) {
        Some(i) => i,
        None => {
            table.push(value.into());
            table.len() - 1
        }
    }
}

/// Validation allows a handful of transports and types, and buckets are
/// few; past 65,535 distinct ones, the rest share the last index.
fn small(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

impl<'a> CatalogBuilder<'a> {
    /// `salt` tells this list's entity tags from another kind's.
    pub fn new(salt: &str) -> CatalogBuilder<'a> {
        CatalogBuilder {
            items: Vec::new(),
            salt: xxhash_rust::xxh3::xxh3_64(salt.as_bytes()),
        }
    }

    pub fn push(&mut self, item: Item<'a>) {
        self.items.push(item);
    }

    pub fn finish(mut self) -> Catalog {
        // By location, those with room first in the order pushed, then the
        // overloaded least loaded first; the sort is stable.
        self.items.sort_by(|a, b| {
            a.location
                .cmp(b.location)
                .then(a.overloaded.cmp(&b.overloaded))
                .then_with(|| {
                    if a.overloaded {
                        a.load.total_cmp(&b.load)
                    } else {
                        std::cmp::Ordering::Equal
                    }
                })
        });
        let total: usize = self.items.iter().map(|i| i.json.len() + 1).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut entries = Vec::with_capacity(self.items.len());
        let mut groups: Vec<Group> = Vec::new();
        let mut transports = Vec::new();
        let mut kinds = Vec::new();
        let mut buckets = Vec::new();
        let mut blocked: Vec<CountrySet> = Vec::new();
        for item in &self.items {
            let at = entries.len() as u32;
            if groups.last().is_none_or(|g| &*g.label != item.location) {
                groups.push(Group {
                    label: item.location.into(),
                    unit: item.place.position.map(unit),
                    timezone: item.place.timezone,
                    start: at,
                    open_end: at,
                    end: at,
                    plain: true,
                    whole: GroupSums::default(),
                });
            }
            let group = groups.last_mut().expect("pushed above");
            group.end = at + 1;
            let hash = xxhash_rust::xxh3::xxh3_64(&item.json);
            let weight = spare(item.load);
            if !item.overloaded {
                group.open_end = at + 1;
                group.whole.capacity += weight;
            }
            group.plain &=
                item.bucket.is_empty() && !item.experimental && item.blocked_in.is_empty();
            group.whole.hash_sum = group.whole.hash_sum.wrapping_add(hash);
            group.whole.json_bytes += item.json.len();
            let start = bytes.len() as u32;
            bytes.extend_from_slice(&item.json);
            bytes.push(b',');
            let bucket = if item.bucket.is_empty() {
                0
            } else {
                intern(&mut buckets, item.bucket) + 1
            };
            // Few resources are blocked anywhere, and most of them in the
            // same few countries: a scan is cheapest.
            let blocked_id = if item.blocked_in.is_empty() {
                0
            } else {
                match blocked.iter().position(|b| *b == item.blocked_in) {
                    Some(i) => i + 1,
                    None => {
                        blocked.push(item.blocked_in);
                        blocked.len()
                    }
                }
            };
            entries.push(Entry {
                start,
                len: item.json.len() as u32,
                hash,
                weight,
                share: share(weight),
                index: item.index,
                port: u16::try_from(item.port).unwrap_or(0),
                transport: small(intern(&mut transports, item.transport)),
                kind: small(intern(&mut kinds, item.kind)),
                bucket: small(bucket),
                experimental: item.experimental,
                blocked: blocked_id as u32,
            });
        }
        Catalog {
            between: Box::default(),
            bytes: bytes.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
            groups: groups.into_boxed_slice(),
            transports,
            kinds,
            buckets,
            blocked,
            salt: self.salt,
            ring: None,
        }
    }
}

impl Catalog {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// One minus the cosine of the angle between groups `a` and `b` (what
    /// orders by great-circle distance); infinite unless both have a
    /// position. For lists ordered from the location nearest to the client
    /// (signed answers): from the table [`Catalog::with_distances`] made,
    /// else computed.
    pub fn between(&self, a: u32, b: u32) -> f32 {
        let n = self.groups.len();
        if let Some(&d) = self.between.get(a as usize * n + b as usize) {
            return d;
        }
        let unit = |g: u32| self.groups.get(g as usize).and_then(|g| g.unit);
        match (unit(a), unit(b)) {
            (Some(u), Some(v)) => (1.0 - (u[0] * v[0] + u[1] * v[1] + u[2] * v[2])) as f32,
            _ => f32::INFINITY,
        }
    }

    /// This catalog with the distances between its groups kept, so that
    /// ordering from a location looks them up (snapshots whose answers are
    /// signed make it; it is the square of the number of locations).
    pub fn with_distances(mut self) -> Catalog {
        let n = self.groups.len() as u32;
        let table = (0..n)
            .flat_map(|a| (0..n).map(move |b| (a, b)))
            .map(|(a, b)| self.between(a, b))
            .collect();
        self.between = table;
        self
    }

    /// The ready JSON of `entry`.
    pub fn json(&self, entry: &Entry) -> &[u8] {
        &self.bytes[entry.start as usize..(entry.start + entry.len) as usize]
    }

    /// The ready JSON of `entry` and the comma after it.
    pub fn json_and_comma(&self, entry: &Entry) -> &[u8] {
        &self.bytes[entry.start as usize..=(entry.start + entry.len) as usize]
    }

    /// The length of the JSON of `entry`.
    pub fn json_len(entry: &Entry) -> usize {
        entry.len as usize
    }

    /// The index of transport `name` among this catalog's entries, if any
    /// has it.
    pub fn transport(&self, name: &str) -> Option<u16> {
        self.transports.iter().position(|t| &**t == name).map(small)
    }

    /// The index of type `name` among this catalog's entries, if any has it.
    pub fn kind(&self, name: &str) -> Option<u16> {
        self.kinds.iter().position(|t| &**t == name).map(small)
    }

    /// The name of bucket `id` (as in [`Entry::bucket`]; not 0).
    pub fn bucket(&self, id: u16) -> &str {
        self.buckets
            .get(usize::from(id).wrapping_sub(1))
            .map_or("", |b| b)
    }

    /// The sets of countries entries are blocked in, by
    /// [`Entry::blocked`] minus one.
    pub fn blocked_sets(&self) -> &[CountrySet] {
        &self.blocked
    }

    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// This catalog, its public entries shared out by `ring` (built from
    /// it).
    pub fn with_ring(self, ring: Ring) -> Catalog {
        Catalog {
            ring: Some(ring),
            ..self
        }
    }

    /// How the public entries are shared out, if they are.
    pub fn ring(&self) -> Option<&Ring> {
        self.ring.as_ref()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes this catalog holds on the heap (about: the tables' strings are
    /// not counted). It never changes after [`CatalogBuilder::finish`].
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
            + std::mem::size_of_val(&*self.entries)
            + std::mem::size_of_val(&*self.groups)
            + self.groups.iter().map(|g| g.label.len()).sum::<usize>()
            + self.ring.as_ref().map_or(0, Ring::heap_bytes)
    }
}
