//! Where things are: countries, client positions and distances.

pub mod client_ip;
pub mod geoip;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;

use axum::http::HeaderMap;

use client_ip::{TrustedProxies, client_ip};
use geoip::GeoIp;

/// Finds a client's position from its address, when it does not send `cc`.
#[derive(Debug, Default)]
pub struct Locator {
    geoip: Option<GeoIp>,
    trusted: TrustedProxies,
}

impl Locator {
    /// Opens the GeoIP database, if any; errors name the file.
    pub fn new(geoip_db: Option<&Path>, trusted: TrustedProxies) -> anyhow::Result<Locator> {
        let geoip = geoip_db.map(GeoIp::open).transpose()?;
        if let Some(db) = &geoip {
            tracing::info!(database_type = %db.database_type, "GeoIP database loaded");
        }
        Ok(Locator { geoip, trusted })
    }

    /// The client's address: the peer's, or a trusted proxy's word for it.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        client_ip(peer.ip(), headers, &self.trusted)
    }

    /// Whether clients can be placed by their address (a GeoIP database
    /// is loaded).
    pub fn places_addresses(&self) -> bool {
        self.geoip.is_some()
    }

    /// Where the client at `ip` is, on the grid, and in which country (its
    /// place in [`countries`]), as far as the GeoIP database knows.
    pub fn locate(&self, ip: IpAddr) -> (Option<GridPoint>, Option<u8>) {
        match self.geoip.as_ref().and_then(|db| db.lookup(ip)) {
            Some(found) => (
                found.position.map(GridPoint::of),
                found.country.and_then(country_index),
            ),
            None => (None, None),
        }
    }
}

/// Where a location is, for ordering.
#[derive(Debug, Clone, Copy, Default)]
pub struct Place {
    pub position: Option<Position>,
    /// Whole hours from UTC.
    pub timezone: Option<i64>,
}

/// A point on Earth, in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub lat: f64,
    pub lon: f64,
}

/// A client position rounded to whole degrees: precise enough to order
/// locations, coarse enough to share cached answers between clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GridPoint {
    pub lat: i16,
    pub lon: i16,
}

impl GridPoint {
    pub fn of(p: Position) -> GridPoint {
        GridPoint {
            lat: p.lat.round().clamp(-90.0, 90.0) as i16,
            lon: p.lon.round().clamp(-180.0, 180.0) as i16,
        }
    }

    pub fn position(self) -> Position {
        Position {
            lat: f64::from(self.lat),
            lon: f64::from(self.lon),
        }
    }

    /// The whole-hour timezone offset this longitude would have.
    pub fn timezone_estimate(self) -> i64 {
        (f64::from(self.lon) / 15.0).round() as i64
    }
}

const EARTH_RADIUS_KM: f64 = 6371.0;

/// Great-circle distance in kilometres (haversine).
pub fn distance_km(a: Position, b: Position) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// A country: its code, name and representative position.
#[derive(Debug, Clone, PartialEq)]
pub struct Country {
    /// ISO 3166-1 alpha-2, uppercase.
    pub code: &'static str,
    pub name: &'static str,
    pub position: Position,
}

/// The country table; its source is named at the top of the file.
const COUNTRIES_TSV: &str = include_str!("../../data/countries.tsv");

/// Every country, sorted by code.
pub fn countries() -> &'static [Country] {
    static TABLE: OnceLock<Vec<Country>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table: Vec<Country> = COUNTRIES_TSV
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let mut f = line.split('\t');
                let (code, lat, lon, name) = (f.next(), f.next(), f.next(), f.next());
                // The table is part of the source; a broken line is a bug
                // that the tests catch.
                Country {
                    code: code.expect("code"),
                    position: Position {
                        lat: lat.and_then(|v| v.parse().ok()).expect("latitude"),
                        lon: lon.and_then(|v| v.parse().ok()).expect("longitude"),
                    },
                    name: name.expect("name"),
                }
            })
            .collect();
        table.sort_by(|a, b| a.code.cmp(b.code));
        table
    })
}

/// The country with ISO 3166-1 alpha-2 code `code` (any case).
pub fn country(code: &str) -> Option<&'static Country> {
    let &[a, b] = code.as_bytes() else {
        return None;
    };
    let upper = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
    let upper = std::str::from_utf8(&upper).ok()?;
    let table = countries();
    table
        .binary_search_by(|c| c.code.cmp(upper))
        .ok()
        .map(|i| &table[i])
}

/// The place of the country with code `code` (any case) in
/// [`countries`]: a small number that [`CountrySet`] is made of.
pub fn country_index(code: &str) -> Option<u8> {
    let found = country(code)?;
    let table = countries();
    let i = table.binary_search_by(|c| c.code.cmp(found.code)).ok()?;
    u8::try_from(i).ok()
}

/// A set of countries, one bit per place in [`countries`] (250 of them):
/// asking whether it holds a client's country is one shift and mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CountrySet([u64; 4]);

impl CountrySet {
    /// The set of the countries with these codes; ones not in the table
    /// are left out (the codes are checked before they are stored).
    pub fn of<'a>(codes: impl IntoIterator<Item = &'a str>) -> CountrySet {
        let mut set = CountrySet::default();
        for i in codes.into_iter().filter_map(country_index) {
            set.insert(i);
        }
        set
    }

    pub fn insert(&mut self, country: u8) {
        self.0[usize::from(country >> 6)] |= 1 << (country & 63);
    }

    pub fn contains(&self, country: u8) -> bool {
        self.0[usize::from(country >> 6)] & (1 << (country & 63)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }

    /// The countries in either set.
    pub fn union(&self, other: &CountrySet) -> CountrySet {
        let mut both = *self;
        for (word, other) in both.0.iter_mut().zip(other.0) {
            *word |= other;
        }
        both
    }

    /// The countries in the set, in the order of [`countries`].
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(|&c| self.contains(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_sets_hold_what_was_put_in() {
        let set = CountrySet::of(["de", "RU", "ZW", "AD", "nowhere"]);
        for code in ["DE", "RU", "ZW", "AD"] {
            assert!(set.contains(country_index(code).unwrap()), "{code}");
        }
        assert!(!set.contains(country_index("FR").unwrap()));
        assert!(CountrySet::default().is_empty());
        assert!(!set.is_empty());
        assert_eq!(country_index("ZZ"), None);
        assert_eq!(
            country_index(countries().last().unwrap().code),
            Some(countries().len() as u8 - 1)
        );
    }

    #[test]
    fn every_iso_country_has_a_sane_position() {
        let table = countries();
        assert_eq!(table.len(), 250, "249 ISO 3166-1 codes and XK");
        assert!(table.windows(2).all(|w| w[0].code < w[1].code));
        for c in table {
            assert_eq!(c.code.len(), 2);
            assert!(c.code.chars().all(|ch| ch.is_ascii_uppercase()));
            assert!((-90.0..=90.0).contains(&c.position.lat), "{c:?}");
            assert!((-180.0..=180.0).contains(&c.position.lon), "{c:?}");
            assert!(!c.name.is_empty());
        }
    }

    #[test]
    fn codes_match_case_insensitively() {
        assert_eq!(country("de").unwrap().code, "DE");
        assert_eq!(country("Fr").unwrap().name, "France");
        assert!(country("XK").is_some());
        assert!(country("ZZ").is_none());
        assert!(country("NOTACOUNTRY").is_none());
        assert!(country("é").is_none());
    }

    #[test]
    fn distances_are_great_circle_kilometres() {
        let paris = Position {
            lat: 48.86,
            lon: 2.35,
        };
        let amsterdam = Position {
            lat: 52.37,
            lon: 4.89,
        };
        let tokyo = Position {
            lat: 35.68,
            lon: 139.69,
        };
        let d = distance_km(paris, amsterdam);
        assert!((420.0..440.0).contains(&d), "{d}");
        let d = distance_km(paris, tokyo);
        assert!((9650.0..9750.0).contains(&d), "{d}");
        assert_eq!(distance_km(tokyo, tokyo), 0.0);
        // across the antimeridian
        let fiji = Position {
            lat: -18.0,
            lon: 179.0,
        };
        let samoa = Position {
            lat: -13.8,
            lon: -171.8,
        };
        assert!(distance_km(fiji, samoa) < 1200.0);
    }
}
