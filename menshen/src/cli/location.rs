//! `menshen location ...`: where gateways and bridges are. The checks and
//! store calls are the admin API's own (see [`crate::inventory::edit`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Invalid;
use super::args::{ListArgs, StoreArgs, audit};
use super::input::{from_value, invalid, json_instead_of_flags};
use super::table::{json_or_table, render_table};
use crate::inventory::validate::FieldError;
use crate::inventory::validate::{LocationInput, check_location};
use crate::store::{LocationRow, now_millis};

#[derive(Debug, Subcommand)]
pub enum LocationCommand {
    /// List locations.
    List(ListArgs),
    /// Create a location, from flags or from JSON (as the admin API takes it).
    Create {
        /// The location's label: 1-64 letters, digits, '-', '_' or '.'.
        #[arg(required_unless_present = "json")]
        label: Option<String>,
        #[command(flatten)]
        fields: LocationFields,
        /// Read the location from a JSON file (`-`: standard input) instead.
        #[arg(long, value_name = "FILE|-")]
        json: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change a location made by an operator; fields not given stay as
    /// they are.
    Update {
        label: String,
        #[command(flatten)]
        fields: LocationFields,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a location made by an operator; refused while a gateway or
    /// bridge uses it.
    Delete {
        label: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// A location's fields as flags.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct LocationFields {
    /// The name users see, e.g. "Paris".
    #[arg(long = "name", value_name = "NAME")]
    display_name: Option<String>,
    /// ISO 3166-1 alpha-2 country code, e.g. FR.
    #[arg(long = "country", value_name = "CC")]
    country_code: Option<String>,
    /// Latitude, -90 to 90 (with --lon).
    #[arg(long, allow_negative_numbers = true)]
    lat: Option<f64>,
    /// Longitude, -180 to 180 (with --lat).
    #[arg(long, allow_negative_numbers = true)]
    lon: Option<f64>,
    /// Whole hours from UTC, -12 to 14.
    #[arg(long, allow_negative_numbers = true, value_name = "HOURS")]
    timezone: Option<i64>,
    /// N or S; from --lat when left out.
    #[arg(long)]
    hemisphere: Option<String>,
    /// A free-form region, e.g. "Europe".
    #[arg(long)]
    region: Option<String>,
}

impl LocationFields {
    /// Whether no field was given as a flag.
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `input` with the fields given here replaced.
    fn apply(self, mut input: LocationInput) -> LocationInput {
        if let Some(v) = self.display_name {
            input.display_name = v;
        }
        if let Some(v) = self.country_code {
            input.country_code = v;
        }
        if self.lat.is_some() {
            input.lat = self.lat;
        }
        if self.lon.is_some() {
            input.lon = self.lon;
        }
        if self.timezone.is_some() {
            input.timezone = self.timezone;
        }
        if let Some(v) = self.hemisphere {
            input.hemisphere = v;
        }
        if let Some(v) = self.region {
            input.region = v;
        }
        input
    }
}

/// `location list` as a table.
fn location_table(rows: &[LocationRow]) -> String {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    render_table(
        &[
            "LABEL", "NAME", "COUNTRY", "LAT", "LON", "TZ", "HEMI", "REGION", "ORIGIN",
        ],
        rows.iter()
            .map(|l| {
                vec![
                    l.label.clone(),
                    l.display_name.clone(),
                    l.country_code.clone(),
                    opt(l.lat),
                    opt(l.lon),
                    l.timezone.map(|t| format!("{t:+}")).unwrap_or_default(),
                    l.hemisphere.clone(),
                    l.region.clone(),
                    l.origin.clone(),
                ]
            })
            .collect(),
    )
}

fn location_json(l: &LocationRow) -> Value {
    serde_json::json!({
        "label": l.label,
        "display_name": l.display_name,
        "country_code": l.country_code,
        "lat": l.lat,
        "lon": l.lon,
        "timezone": l.timezone,
        "hemisphere": l.hemisphere,
        "region": l.region,
        "origin": l.origin,
    })
}

pub async fn run(command: LocationCommand) -> anyhow::Result<()> {
    match command {
        LocationCommand::List(ListArgs { json, store }) => {
            let rows = store
                .with_store(async |db| Ok(db.list_locations().await?))
                .await?;
            let list: Vec<Value> = rows.iter().map(location_json).collect();
            print!("{}", json_or_table(json, &list, || location_table(&rows))?);
        }
        LocationCommand::Create {
            label,
            fields,
            json,
            store,
        } => {
            let mut input: LocationInput =
                match json_instead_of_flags(json.as_deref(), !fields.is_empty())? {
                    Some(value) => from_value(value)?,
                    None => LocationInput::default(),
                };
            if let Some(label) = label {
                if !input.label.is_empty() && input.label != label {
                    return Err(invalid(vec![FieldError::new(
                        "label",
                        format!("{label:?} differs from {:?} in the JSON", input.label),
                    )]));
                }
                input.label = label;
            }
            let row = check_location(&fields.apply(input)).map_err(invalid)?;
            let audit = audit(
                "location.create",
                format!("location/{}", row.label),
                now_millis(),
            );
            store
                .with_store(async |db| Ok(db.create_location(&row, audit).await?))
                .await?;
            eprintln!("location {} created", row.label);
        }
        LocationCommand::Update {
            label,
            fields,
            store,
        } => {
            if fields.is_empty() {
                return Err(Invalid::err(
                    "nothing to change: give at least one field flag",
                ));
            }
            store
                .with_store(async |db| {
                    let current = db
                        .list_locations()
                        .await?
                        .into_iter()
                        .find(|l| l.label == label)
                        .ok_or_else(|| anyhow::anyhow!("no location {label:?}"))?;
                    let row = check_location(&fields.apply(LocationInput::from(current)))
                        .map_err(invalid)?;
                    let audit = audit("location.update", format!("location/{label}"), now_millis());
                    Ok(db.update_location(&row, audit).await?)
                })
                .await?;
            eprintln!("location {label} updated");
        }
        LocationCommand::Delete { label, store } => {
            let audit = audit("location.delete", format!("location/{label}"), now_millis());
            store
                .with_store(async |db| Ok(db.delete_location(&label, audit).await?))
                .await?;
            eprintln!("location {label} deleted");
        }
    }
    Ok(())
}
