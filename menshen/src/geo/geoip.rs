//! Client positions from a MaxMind DB file (`--geoip-db`).
//!
//! Two layouts are read: GeoIP2 "City"/"Country" (`country.iso_code`,
//! `location.latitude`/`longitude`) and the flat layout of the DB-IP lite
//! files (`country_code`, `latitude`, `longitude`). No database ships with
//! menshen; see the README for redistributable ones.

use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use super::{Position, country};

/// An open GeoIP database.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
    pub database_type: String,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.database_type)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    country: Option<CountryRecord<'a>>,
    #[serde(default)]
    location: Option<LocationRecord>,
    #[serde(borrow, default)]
    country_code: Option<&'a str>,
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct LocationRecord {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
}

/// What a database says about an address.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The country, when the database names one we know.
    pub country: Option<&'static str>,
    /// The most precise position known: the record's own, else the
    /// country's representative one.
    pub position: Option<Position>,
}

fn valid(p: Position) -> bool {
    (-90.0..=90.0).contains(&p.lat) && (-180.0..=180.0).contains(&p.lon)
}

impl GeoIp {
    /// Opens and checks a database file; errors name the file.
    pub fn open(path: &Path) -> anyhow::Result<GeoIp> {
        let reader = maxminddb::Reader::open_readfile(path)
            .with_context(|| format!("cannot read the GeoIP database {}", path.display()))?;
        let database_type = reader.metadata().database_type.clone();
        Ok(GeoIp {
            reader,
            database_type,
        })
    }

    /// Where `ip` is, if the database knows.
    pub fn lookup(&self, ip: IpAddr) -> Option<Found> {
        let result = self.reader.lookup(ip).ok()?;
        let record: Record<'_> = result.decode().ok()??;
        let code = record
            .country
            .as_ref()
            .and_then(|c| c.iso_code)
            .or(record.country_code);
        let country = code.and_then(country);
        let own = match (&record.location, record.latitude, record.longitude) {
            (
                Some(LocationRecord {
                    latitude: Some(lat),
                    longitude: Some(lon),
                }),
                _,
                _,
            ) => Some(Position {
                lat: *lat,
                lon: *lon,
            }),
            (_, Some(lat), Some(lon)) => Some(Position { lat, lon }),
            _ => None,
        }
        .filter(|p| valid(*p));
        let position = own.or(country.map(|c| c.position));
        if country.is_none() && position.is_none() {
            return None;
        }
        Some(Found {
            country: country.map(|c| c.code),
            position,
        })
    }
}
