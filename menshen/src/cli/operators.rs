//! `menshen location|gateway|bridge ...`: what the admin API does, for an
//! operator on the host. The checks and store calls are the admin API's
//! own (see [`crate::inventory::edit`]); every change is audited as
//! `cli:$USER`.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde_json::{Map, Value};

use super::{Invalid, StoreArgs, cli_actor, render_table};
use crate::config::DEFAULT_RESOURCE_TTL;
use crate::inventory::edit::{
    AdminResource, LocationInput, Overrides, check_location, new_bridge, new_gateway,
};
use crate::inventory::validate::FieldError;
use crate::store::{AuditEntry, LocationRow, ResourceKind, Store, now_millis};

#[derive(Debug, Subcommand)]
pub enum LocationCommand {
    /// List locations.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
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
#[derive(Debug, Clone, Default, Args)]
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
    fn is_empty(&self) -> bool {
        self.display_name.is_none()
            && self.country_code.is_none()
            && self.lat.is_none()
            && self.lon.is_none()
            && self.timezone.is_none()
            && self.hemisphere.is_none()
            && self.region.is_none()
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

/// How long an agent's resource stays live without a heartbeat; the
/// server's --resource-ttl, for the status column.
#[derive(Debug, Clone, Args)]
pub struct TtlArg {
    /// The server's --resource-ttl, to tell live from stale.
    #[arg(long, env = "MENSHEN_RESOURCE_TTL", value_parser = humantime::parse_duration,
          default_value = DEFAULT_RESOURCE_TTL)]
    resource_ttl: Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TrueFalseDefault {
    True,
    False,
    /// The resource's own value.
    Default,
}

/// A gateway's or bridge's fields as flags; JSON names in brackets.
#[derive(Debug, Clone, Default, Args)]
pub struct ResourceFields {
    /// Its host name, unique among its kind [host].
    #[arg(long)]
    host: Option<String>,
    /// IPv4 address clients connect to [ip_addr].
    #[arg(long = "ip", value_name = "ADDR")]
    ip_addr: Option<String>,
    /// IPv6 address [ip6_addr].
    #[arg(long = "ip6", value_name = "ADDR")]
    ip6_addr: Option<String>,
    /// Label of an existing location [location].
    #[arg(long)]
    location: Option<String>,
    /// Port clients connect to [port].
    #[arg(long)]
    port: Option<i64>,
    /// udp or tcp [transport].
    #[arg(long)]
    transport: Option<String>,
    /// Protocol [type]: openvpn for gateways (default), obfs4 for bridges
    /// (default).
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Shown only to clients with an invite for this bucket [bucket].
    #[arg(long)]
    bucket: Option<String>,
    /// Mark it experimental [experimental].
    #[arg(long)]
    experimental: bool,
}

/// A bridge's own fields.
#[derive(Debug, Clone, Default, Args)]
pub struct BridgeFields {
    /// Authentication clients use [auth].
    #[arg(long)]
    auth: Option<String>,
    /// A transport option, e.g. cert=... or iatMode=0; repeat for several
    /// [options].
    #[arg(long = "option", value_name = "KEY=VALUE", value_parser = key_value)]
    options: Vec<(String, String)>,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// The flag that sets a JSON field, for error messages.
fn flag_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "host" => "--host",
        "ip_addr" => "--ip",
        "ip6_addr" => "--ip6",
        "location" => "--location",
        "port" => "--port",
        "transport" => "--transport",
        "type" => "--type",
        "bucket" => "--bucket",
        "experimental" => "--experimental",
        "auth" => "--auth",
        "options" => "--option",
        "label" => "LABEL",
        "display_name" => "--name",
        "country_code" => "--country",
        "lat" => "--lat",
        "lon" => "--lon",
        "timezone" => "--timezone",
        "hemisphere" => "--hemisphere",
        "region" => "--region",
        "maintenance" => "--maintenance",
        _ => return None,
    })
}

/// Field errors as one line naming the fields (and their flags).
fn invalid(errors: Vec<FieldError>) -> anyhow::Error {
    let text: Vec<String> = errors
        .iter()
        .map(|e| {
            let field = if e.field.is_empty() {
                "input"
            } else {
                &e.field
            };
            match flag_of(field.split(['.', '[']).next().unwrap_or(field)) {
                Some(flag) => format!("{field} ({flag}): {}", e.message),
                None => format!("{field}: {}", e.message),
            }
        })
        .collect();
    Invalid(format!("invalid {}", text.join("; "))).into()
}

fn read_json(path: &std::path::Path) -> anyhow::Result<Value> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
    };
    serde_json::from_str(&text)
        .map_err(|e| Invalid(format!("{} is not JSON: {e}", path.display())).into())
}

fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> anyhow::Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        invalid(vec![FieldError::new(
            err.path().to_string(),
            err.inner().to_string(),
        )])
    })
}

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

pub async fn location(command: LocationCommand) -> anyhow::Result<()> {
    match command {
        LocationCommand::List { json, store } => {
            let db = Store::connect(&store.engine()?).await?;
            let rows = db.list_locations().await?;
            db.close().await;
            if json {
                let rows: Vec<Value> = rows.iter().map(location_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", location_table(&rows));
            }
        }
        LocationCommand::Create {
            label,
            fields,
            json,
            store,
        } => {
            let mut input: LocationInput = match &json {
                Some(path) => {
                    if !fields.is_empty() {
                        return Err(Invalid(
                            "give the fields as flags or with --json, not both".into(),
                        )
                        .into());
                    }
                    from_value(read_json(path)?)?
                }
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
            let db = Store::connect(&store.engine()?).await?;
            let audit = AuditEntry::new(
                &cli_actor(),
                "location.create",
                format!("location/{}", row.label),
                now_millis(),
            );
            let done = db.create_location(&row, audit).await;
            db.close().await;
            done?;
            eprintln!("location {} created", row.label);
        }
        LocationCommand::Update {
            label,
            fields,
            store,
        } => {
            if fields.is_empty() {
                return Err(
                    Invalid("nothing to change: give at least one field flag".into()).into(),
                );
            }
            let db = Store::connect(&store.engine()?).await?;
            let done = async {
                let current = db
                    .list_locations()
                    .await?
                    .into_iter()
                    .find(|l| l.label == label)
                    .ok_or_else(|| anyhow::anyhow!("no location {label:?}"))?;
                let row =
                    check_location(&fields.apply(LocationInput::from(current))).map_err(invalid)?;
                let audit = AuditEntry::new(
                    &cli_actor(),
                    "location.update",
                    format!("location/{label}"),
                    now_millis(),
                );
                db.update_location(&row, audit).await?;
                anyhow::Ok(())
            }
            .await;
            db.close().await;
            done?;
            eprintln!("location {label} updated");
        }
        LocationCommand::Delete { label, store } => {
            let db = Store::connect(&store.engine()?).await?;
            let audit = AuditEntry::new(
                &cli_actor(),
                "location.delete",
                format!("location/{label}"),
                now_millis(),
            );
            let done = db.delete_location(&label, audit).await;
            db.close().await;
            done?;
            eprintln!("location {label} deleted");
        }
    }
    Ok(())
}

const SET_HELP: &str = "Flags not given keep their current setting.";

/// Gateways or bridges: both have the same commands.
#[derive(Debug, Subcommand)]
pub enum ResourceCommand<E: Args> {
    /// List them with their status: live (an agent reports it), stale (its
    /// agent stopped reporting), unhealthy, maintenance or hand-defined.
    List {
        /// Print JSON (as the admin API does) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        ttl: TtlArg,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Define one by hand, from flags or from JSON (as the admin API takes
    /// it). It never expires; delete it when it goes.
    Create {
        #[command(flatten)]
        fields: ResourceFields,
        #[command(flatten)]
        extra: E,
        /// Read it from a JSON file (`-`: standard input) instead of flags.
        #[arg(long, value_name = "FILE|-")]
        json: Option<PathBuf>,
        /// Accept addresses that are not public unicast (loopback, private,
        /// documentation, ...), for labs and tests.
        #[arg(long)]
        allow_private_addresses: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete one defined by hand. Ones from the provider file or an agent
    /// are refused (they would come back): use `set --maintenance on`.
    Delete {
        host: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set what operators decide about one, whatever defined it:
    /// maintenance, experimental, bucket. Agents' pushes do not undo it.
    #[command(after_help = SET_HELP)]
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["maintenance", "experimental", "bucket", "no_bucket", "default_bucket"])))]
    Set {
        host: String,
        /// on: leave it out of client lists without deleting it; off: list it again.
        #[arg(long, value_enum)]
        maintenance: Option<OnOff>,
        /// Override whether it is experimental; `default`: its own value.
        #[arg(long, value_enum)]
        experimental: Option<TrueFalseDefault>,
        /// Show it only to clients with an invite for this bucket.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["no_bucket", "default_bucket"])]
        bucket: Option<String>,
        /// Show it to every client, whatever its own bucket.
        #[arg(long, conflicts_with = "default_bucket")]
        no_bucket: bool,
        /// Drop the bucket override: its own bucket applies.
        #[arg(long)]
        default_bucket: bool,
        #[command(flatten)]
        ttl: TtlArg,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Gateways have no fields of their own beyond the common ones.
#[derive(Debug, Clone, Default, Args)]
pub struct NoFields {}

pub type GatewayCommand = ResourceCommand<NoFields>;
pub type BridgeCommand = ResourceCommand<BridgeFields>;

/// Adds a resource's own fields to its JSON.
pub trait ExtraFields {
    fn is_empty(&self) -> bool;
    fn add_to(self, map: &mut Map<String, Value>);
}

impl ExtraFields for NoFields {
    fn is_empty(&self) -> bool {
        true
    }
    fn add_to(self, _map: &mut Map<String, Value>) {}
}

impl ExtraFields for BridgeFields {
    fn is_empty(&self) -> bool {
        self.auth.is_none() && self.options.is_empty()
    }
    fn add_to(self, map: &mut Map<String, Value>) {
        if let Some(auth) = self.auth {
            map.insert("auth".into(), auth.into());
        }
        if !self.options.is_empty() {
            let options: Map<String, Value> = self
                .options
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            map.insert("options".into(), options.into());
        }
    }
}

impl ResourceFields {
    fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.ip_addr.is_none()
            && self.ip6_addr.is_none()
            && self.location.is_none()
            && self.port.is_none()
            && self.transport.is_none()
            && self.kind.is_none()
            && self.bucket.is_none()
            && !self.experimental
    }

    fn into_json(self) -> Map<String, Value> {
        let mut map = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.into(), value);
            }
        };
        put("host", self.host.map(Value::from));
        put("ip_addr", self.ip_addr.map(Value::from));
        put("ip6_addr", self.ip6_addr.map(Value::from));
        put("location", self.location.map(Value::from));
        put("port", self.port.map(Value::from));
        put("transport", self.transport.map(Value::from));
        put("type", self.kind.map(Value::from));
        put("bucket", self.bucket.map(Value::from));
        put(
            "experimental",
            self.experimental.then_some(Value::Bool(true)),
        );
        map
    }
}

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago".
pub fn ago(millis: i64, now: i64) -> String {
    if millis <= 0 {
        return "never".into();
    }
    let secs = (now - millis).max(0) / 1000;
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7_200 => format!("{} min ago", secs / 60),
        7_200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// `list` as a table.
pub fn resource_table(resources: &[AdminResource], now: i64) -> String {
    render_table(
        &[
            "HOST",
            "LOCATION",
            "TYPE",
            "ENDPOINT",
            "STATUS",
            "BUCKET",
            "LOAD",
            "LAST SEEN",
            "AGENT",
        ],
        resources
            .iter()
            .map(|r| {
                let status = serde_json::to_value(r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                vec![
                    r.host.clone(),
                    r.location.clone(),
                    r.r#type.clone(),
                    format!("{}:{}/{}", r.ip_addr, r.port, r.transport),
                    if r.experimental {
                        format!("{status} (experimental)")
                    } else {
                        status
                    },
                    if r.bucket.is_empty() {
                        "-".into()
                    } else {
                        r.bucket.clone()
                    },
                    format!("{:.2}{}", r.load, if r.overloaded { "!" } else { "" }),
                    ago(r.last_seen_millis, now),
                    r.agent.clone().unwrap_or_else(|| format!("({})", r.origin)),
                ]
            })
            .collect(),
    )
}

/// Location labels by lower-case name, for the API's case-insensitive match.
async fn location_labels(db: &Store) -> anyhow::Result<HashMap<String, String>> {
    Ok(db
        .list_locations()
        .await?
        .into_iter()
        .map(|l| (l.label.to_ascii_lowercase(), l.label))
        .collect())
}

pub async fn resource<E: Args + ExtraFields>(
    kind: ResourceKind,
    command: ResourceCommand<E>,
) -> anyhow::Result<()> {
    let name = kind.as_str();
    match command {
        ResourceCommand::List { json, ttl, store } => {
            let db = Store::connect(&store.engine()?).await?;
            let inventory = db.load_inventory().await;
            db.close().await;
            let now = now_millis();
            let list =
                AdminResource::list(&inventory?, kind, now, ttl.resource_ttl.as_millis() as i64);
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", resource_table(&list, now));
            }
        }
        ResourceCommand::Create {
            fields,
            extra,
            json,
            allow_private_addresses,
            store,
        } => {
            let policy = crate::inventory::validate::Policy {
                allow_private_addresses,
            };
            let body = match json {
                Some(path) => {
                    if !fields.is_empty() || !extra.is_empty() {
                        return Err(Invalid(
                            "give the fields as flags or with --json, not both".into(),
                        )
                        .into());
                    }
                    read_json(&path)?
                }
                None => {
                    let mut map = fields.into_json();
                    extra.add_to(&mut map);
                    Value::Object(map)
                }
            };
            let db = Store::connect(&store.engine()?).await?;
            let done = async {
                let labels = location_labels(&db).await?;
                let lookup = |l: &str| labels.get(&l.to_ascii_lowercase()).cloned();
                let row = match kind {
                    ResourceKind::Gateway => new_gateway(body, &lookup, now_millis(), &policy),
                    ResourceKind::Bridge => new_bridge(body, &lookup, now_millis(), &policy),
                }
                .map_err(invalid)?;
                let audit = AuditEntry::new(
                    &cli_actor(),
                    &format!("{name}.create"),
                    format!("{name}/{}", row.host),
                    now_millis(),
                );
                db.create_resource(&row, audit).await?;
                anyhow::Ok(row.host)
            }
            .await;
            db.close().await;
            eprintln!("{name} {} created", done?);
        }
        ResourceCommand::Delete { host, store } => {
            let db = Store::connect(&store.engine()?).await?;
            let audit = AuditEntry::new(
                &cli_actor(),
                &format!("{name}.delete"),
                format!("{name}/{host}"),
                now_millis(),
            );
            let done = db.delete_resource(kind, &host, audit).await;
            db.close().await;
            done?;
            eprintln!("{name} {host} deleted");
        }
        ResourceCommand::Set {
            host,
            maintenance,
            experimental,
            bucket,
            no_bucket,
            default_bucket,
            ttl,
            store,
        } => {
            let db = Store::connect(&store.engine()?).await?;
            let done = async {
                let (_, current) = db.resource(kind, &host).await?;
                let mut over = Overrides::from(&current);
                if let Some(m) = maintenance {
                    over.maintenance = matches!(m, OnOff::On);
                }
                match experimental {
                    Some(TrueFalseDefault::True) => over.experimental = Some(true),
                    Some(TrueFalseDefault::False) => over.experimental = Some(false),
                    Some(TrueFalseDefault::Default) => over.experimental = None,
                    None => {}
                }
                if let Some(bucket) = bucket {
                    over.bucket = Some(bucket);
                } else if no_bucket {
                    over.bucket = Some(String::new());
                } else if default_bucket {
                    over.bucket = None;
                }
                let over = over.check(kind, &host).map_err(|e| invalid(vec![e]))?;
                let audit = AuditEntry::new(
                    &cli_actor(),
                    &format!("{name}.overrides"),
                    format!("{name}/{host}"),
                    now_millis(),
                );
                db.set_override(&over, audit).await?;
                let (row, over) = db.resource(kind, &host).await?;
                anyhow::Ok(AdminResource::of(
                    &row,
                    Some(&over),
                    now_millis(),
                    ttl.resource_ttl.as_millis() as i64,
                ))
            }
            .await;
            db.close().await;
            print!("{}", resource_table(&[done?], now_millis()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well() {
        let now = 1_000_000_000;
        assert_eq!(ago(now - 12_000, now), "12 s ago");
        assert_eq!(ago(now - 300_000, now), "5 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 3 * 86_400_000, now), "3 d ago");
        assert_eq!(ago(0, now), "never");
    }

    #[test]
    fn field_errors_name_the_flag() {
        let err = invalid(vec![FieldError::new("ip_addr", "not an address")]);
        assert_eq!(err.to_string(), "invalid ip_addr (--ip): not an address");
        assert!(err.downcast_ref::<Invalid>().is_some());
    }
}
