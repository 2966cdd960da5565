//! The rules for locations, and the one shape a location is written in
//! (by operators, and by the provider file under its label).

use serde::Deserialize;

use super::FieldError;
use crate::store::{LocationRow, Origin};

/// A location as operators write it.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LocationInput {
    /// 1-64 letters, digits, '-', '_' or '.'; unique ignoring case. Taken
    /// from the path when updating.
    pub label: String,
    pub display_name: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// Whole hours from UTC, -12 to 14.
    pub timezone: Option<i64>,
    /// `N` or `S`; from `lat` when left out.
    pub hemisphere: String,
    pub region: String,
}

impl From<LocationRow> for LocationInput {
    fn from(l: LocationRow) -> Self {
        LocationInput {
            label: l.label,
            display_name: l.display_name,
            country_code: l.country_code,
            lat: l.lat,
            lon: l.lon,
            timezone: l.timezone,
            hemisphere: l.hemisphere,
            region: l.region,
        }
    }
}

impl LocationInput {
    /// The location as stored: the country code in capitals and the
    /// hemisphere from `lat` when it was left out. Check it first with
    /// [`location_problems`].
    pub fn to_row(&self, origin: Origin) -> LocationRow {
        let hemisphere = match (self.hemisphere.as_str(), self.lat) {
            ("", Some(lat)) if lat < 0.0 => "S".to_owned(),
            ("", Some(_)) => "N".to_owned(),
            (h, _) => h.to_owned(),
        };
        LocationRow {
            label: self.label.clone(),
            display_name: self.display_name.clone(),
            country_code: self.country_code.to_ascii_uppercase(),
            lat: self.lat,
            lon: self.lon,
            timezone: self.timezone,
            hemisphere,
            region: self.region.clone(),
            origin: origin.as_str().into(),
        }
    }
}

/// A location label as clients may send it in `loc`.
pub fn valid_label(label: &str) -> bool {
    (1..=64).contains(&label.len())
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Everything wrong with a location, each error naming its field
/// (`label`, `lat`, ...).
pub fn location_problems(input: &LocationInput) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));
    if !valid_label(&input.label) {
        err(
            "label",
            "a label is 1-64 letters, digits, '-', '_' or '.'".into(),
        );
    }
    if input.display_name.trim().is_empty() {
        err("display_name", "must not be empty".into());
    }
    if crate::geo::country(&input.country_code).is_none() {
        err(
            "country_code",
            format!("{:?} is not an ISO 3166-1 alpha-2 code", input.country_code),
        );
    }
    match (input.lat, input.lon) {
        (Some(lat), Some(lon)) => {
            if !(-90.0..=90.0).contains(&lat) {
                err("lat", format!("{lat} is outside -90..90"));
            }
            if !(-180.0..=180.0).contains(&lon) {
                err("lon", format!("{lon} is outside -180..180"));
            }
        }
        (None, None) => {}
        (Some(_), None) => err("lon", "lat is given, so lon is required".into()),
        (None, Some(_)) => err("lat", "lon is given, so lat is required".into()),
    }
    if let Some(tz) = input.timezone
        && !(-12..=14).contains(&tz)
    {
        err("timezone", format!("{tz} is outside -12..14 hours"));
    }
    if !matches!(input.hemisphere.as_str(), "" | "N" | "S") {
        err("hemisphere", "must be N or S".into());
    }
    errors
}

/// An operator's location, checked, as stored (origin `admin`).
pub fn check_location(input: &LocationInput) -> Result<LocationRow, Vec<FieldError>> {
    let errors = location_problems(input);
    if errors.is_empty() {
        Ok(input.to_row(Origin::Admin))
    } else {
        Err(errors)
    }
}
