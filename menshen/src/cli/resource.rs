//! `menshen gateway|bridge ...`: list them with their status, define them
//! by hand, put them in maintenance. The checks and store calls are the
//! admin API's own (see [`crate::inventory::edit`]).

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use menshen_model::{Bridge, Gateway};
use serde_json::{Map, Value};

use super::args::{StoreArgs, TtlArg, audit, key_value};
use super::input::{invalid, json_instead_of_flags};
use super::table::{ago, json_or_table, render_table};
use crate::inventory::edit::{AdminResource, Overrides, new_resource};
use crate::store::{ProbeState, ResourceKind, Store, now_millis};

pub const GATEWAY_HELP: &str = "Examples:
  menshen gateway list
  menshen gateway create --host gw1.example.org --ip 192.0.2.10 --location paris --port 1194 --transport udp
  menshen gateway set gw1.example.org --maintenance on
  menshen gateway delete gw1.example.org";

pub const BRIDGE_HELP: &str = "Examples:
  menshen bridge list --json
  menshen bridge create --host br1.example.org --ip 192.0.2.20 --location paris --port 443 --option cert=CERT --option iatMode=0
  menshen bridge set br1.example.org --bucket friends
  menshen bridge delete br1.example.org";

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
#[derive(Debug, Clone, Default, PartialEq, Args)]
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
    /// maintenance, experimental, bucket, countries it is blocked in.
    /// Agents' pushes do not undo it.
    #[command(after_help = SET_HELP)]
    #[command(group(ArgGroup::new("change").required(true).multiple(true)
        .args(["maintenance", "experimental", "bucket", "no_bucket", "default_bucket",
            "blocked_in", "not_blocked"])))]
    Set {
        host: String,
        #[command(flatten)]
        change: SetFlags,
        #[command(flatten)]
        ttl: TtlArg,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// What `set` changes; flags not given keep their setting.
#[derive(Debug, Clone, Args)]
pub struct SetFlags {
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
    /// Give it to no client in these countries (ISO 3166-1 alpha-2 codes,
    /// comma-separated): by its `cc`, or the GeoIP lookup of its address.
    /// Replaces the countries set before.
    #[arg(long, value_name = "CC,CC…", value_delimiter = ',', num_args = 1.., conflicts_with = "not_blocked")]
    blocked_in: Option<Vec<String>>,
    /// Blocked in no country any more.
    #[arg(long)]
    not_blocked: bool,
}

impl SetFlags {
    /// `over` with the flags given applied.
    fn apply(self, mut over: Overrides) -> Overrides {
        if let Some(m) = self.maintenance {
            over.maintenance = matches!(m, OnOff::On);
        }
        match self.experimental {
            Some(TrueFalseDefault::True) => over.experimental = Some(true),
            Some(TrueFalseDefault::False) => over.experimental = Some(false),
            Some(TrueFalseDefault::Default) => over.experimental = None,
            None => {}
        }
        if let Some(bucket) = self.bucket {
            over.bucket = Some(bucket);
        } else if self.no_bucket {
            over.bucket = Some(String::new());
        } else if self.default_bucket {
            over.bucket = None;
        }
        if let Some(countries) = self.blocked_in {
            over.blocked_in = countries;
        } else if self.not_blocked {
            over.blocked_in = Vec::new();
        }
        over
    }
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
    /// Whether no field was given as a flag.
    fn is_empty(&self) -> bool {
        *self == Self::default()
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
            "BLOCKED IN",
            "LOAD",
            "LAST SEEN",
            "AGENT",
            "PROBE",
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
                    if r.overrides.blocked_in.is_empty() {
                        "-".into()
                    } else {
                        r.overrides.blocked_in.join(",")
                    },
                    format!("{:.2}{}", r.load, if r.overloaded { "!" } else { "" }),
                    ago(r.last_seen_millis, now),
                    r.agent.clone().unwrap_or_else(|| format!("({})", r.origin)),
                    r.probe
                        .as_ref()
                        .map_or(ProbeState::Untested, |p| p.state)
                        .as_str()
                        .to_owned(),
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

pub async fn run<E: Args + ExtraFields>(
    kind: ResourceKind,
    command: ResourceCommand<E>,
) -> anyhow::Result<()> {
    let name = kind.as_str();
    match command {
        ResourceCommand::List { json, ttl, store } => {
            let inventory = store
                .with_store(async |db| Ok(db.load_inventory().await?))
                .await?;
            let now = now_millis();
            let list = AdminResource::list(&inventory, kind, now, ttl.millis());
            print!(
                "{}",
                json_or_table(json, &list, || resource_table(&list, now))?
            );
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
            let flags_given = !fields.is_empty() || !extra.is_empty();
            let body = match json_instead_of_flags(json.as_deref(), flags_given)? {
                Some(body) => body,
                None => {
                    let mut map = fields.into_json();
                    extra.add_to(&mut map);
                    Value::Object(map)
                }
            };
            let host = store
                .with_store(async |db| {
                    let labels = location_labels(db).await?;
                    let lookup = |l: &str| labels.get(&l.to_ascii_lowercase()).cloned();
                    let row = match kind {
                        ResourceKind::Gateway => {
                            new_resource::<Gateway>(body, &lookup, now_millis(), &policy)
                        }
                        ResourceKind::Bridge => {
                            new_resource::<Bridge>(body, &lookup, now_millis(), &policy)
                        }
                    }
                    .map_err(invalid)?;
                    let audit = audit(
                        &format!("{name}.create"),
                        format!("{name}/{}", row.host),
                        now_millis(),
                    );
                    db.create_resource(&row, audit).await?;
                    Ok(row.host)
                })
                .await?;
            eprintln!("{name} {host} created");
        }
        ResourceCommand::Delete { host, store } => {
            let audit = audit(
                &format!("{name}.delete"),
                format!("{name}/{host}"),
                now_millis(),
            );
            store
                .with_store(async |db| Ok(db.delete_resource(kind, &host, audit).await?))
                .await?;
            eprintln!("{name} {host} deleted");
        }
        ResourceCommand::Set {
            host,
            change,
            ttl,
            store,
        } => {
            let shown = store
                .with_store(async |db| {
                    let (_, current) = db.resource(kind, &host).await?;
                    let over = change
                        .apply(Overrides::from(&current))
                        .check(kind, &host)
                        .map_err(|e| invalid(vec![e]))?;
                    let audit = audit(
                        &format!("{name}.overrides"),
                        format!("{name}/{host}"),
                        now_millis(),
                    );
                    db.set_override(&over, audit).await?;
                    let (row, over) = db.resource(kind, &host).await?;
                    Ok(AdminResource::of(
                        &row,
                        Some(&over),
                        now_millis(),
                        ttl.millis(),
                    ))
                })
                .await?;
            print!("{}", resource_table(&[shown], now_millis()));
        }
    }
    Ok(())
}
