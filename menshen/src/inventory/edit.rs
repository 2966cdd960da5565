//! Operators' edits, shared by the admin API and the command line: the
//! checks a new location, gateway, bridge or override must pass, and how
//! a gateway or bridge is shown to operators. Both call these, so both
//! apply the same rules.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Status;
use super::resource::ResourceBody;
use super::validate::{FieldError, Policy, valid_bucket};
use crate::store::{
    CountryCodes, Inventory, Origin, OverrideRow, ProbeRow, ResourceKind, ResourceRow,
};

/// What an operator set on a resource; `null` means the resource's own value.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    /// Replaces the resource's `experimental`.
    pub experimental: Option<bool>,
    /// Replaces the resource's `bucket` (`""`: public).
    pub bucket: Option<String>,
    /// Left out of client lists, without being deleted.
    pub maintenance: bool,
    /// Not given to clients in these countries (ISO 3166-1 alpha-2 codes,
    /// by `cc` or the GeoIP position of their address); `[]`: none.
    #[schema(example = json!(["IR", "RU"]))]
    pub blocked_in: Vec<String>,
}

impl Overrides {
    /// Checks the overrides and returns them as stored for `kind`/`host`.
    pub fn check(self, kind: ResourceKind, host: &str) -> Result<OverrideRow, FieldError> {
        if let Some(bucket) = &self.bucket
            && !bucket.is_empty()
            && !valid_bucket(bucket)
        {
            return Err(FieldError::new(
                "bucket",
                "a bucket is 1-64 characters, without spaces or control characters",
            ));
        }
        let mut blocked_in = Vec::with_capacity(self.blocked_in.len());
        for (i, code) in self.blocked_in.iter().enumerate() {
            let country = crate::geo::country(code.trim()).ok_or_else(|| {
                FieldError::new(
                    format!("blocked_in[{i}]"),
                    format!("{code:?} is not an ISO 3166-1 alpha-2 country code"),
                )
            })?;
            blocked_in.push(country.code.to_owned());
        }
        blocked_in.sort_unstable();
        blocked_in.dedup();
        Ok(OverrideRow {
            kind,
            host: host.to_owned(),
            experimental: self.experimental,
            bucket: self.bucket,
            maintenance: self.maintenance,
            blocked_in: CountryCodes(blocked_in),
        })
    }
}

impl From<&OverrideRow> for Overrides {
    fn from(o: &OverrideRow) -> Self {
        Overrides {
            experimental: o.experimental,
            bucket: o.bucket.clone(),
            maintenance: o.maintenance,
            blocked_in: o.blocked_in.0.clone(),
        }
    }
}

/// A gateway or bridge, as operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminResource {
    /// `gateway` or `bridge`.
    pub kind: String,
    pub host: String,
    pub ip_addr: String,
    pub ip6_addr: String,
    pub location: String,
    pub port: i64,
    pub transport: String,
    #[serde(rename = "type")]
    pub r#type: String,
    pub load: f64,
    pub overloaded: bool,
    pub healthy: bool,
    /// As clients see it, with `overrides` applied.
    pub experimental: bool,
    /// As clients see it, with `overrides` applied.
    pub bucket: String,
    /// Bridges: the `auth` and `options` clients get.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub auth: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub options: Option<Map<String, Value>>,
    /// Unix ms of the last heartbeat (agents) or of the definition.
    pub last_seen_millis: i64,
    /// `config` (the provider file), `admin` (this API) or `agent`.
    pub origin: String,
    /// The agent that reports it.
    pub agent: Option<String>,
    pub status: Status,
    /// Whether clients may be given it (subject to their filters and
    /// invites): by its status, and not left out as dysfunctional.
    pub listed: bool,
    pub overrides: Overrides,
    /// What the prober last found; absent while it never checked it.
    pub probe: Option<ProbeRow>,
}

impl AdminResource {
    /// `row` with its override, as it stands at `now`.
    pub fn of(row: &ResourceRow, over: Option<&OverrideRow>, now: i64, ttl_millis: i64) -> Self {
        let status = Status::of(row, over, now, ttl_millis);
        AdminResource {
            kind: row.kind.as_str().into(),
            host: row.host.clone(),
            ip_addr: row.ip_addr.clone(),
            ip6_addr: row.ip6_addr.clone(),
            location: row.location.clone(),
            port: row.port,
            transport: row.transport.clone(),
            r#type: row.kind_type.clone(),
            load: row.load,
            overloaded: row.overloaded,
            healthy: row.healthy,
            experimental: over
                .and_then(|o| o.experimental)
                .unwrap_or(row.experimental),
            bucket: over
                .and_then(|o| o.bucket.clone())
                .unwrap_or_else(|| row.bucket.clone()),
            auth: row.auth.clone(),
            options: (row.kind == ResourceKind::Bridge).then(|| row.options_map()),
            last_seen_millis: row.last_seen_millis,
            origin: row.origin.clone(),
            agent: row.agent.clone(),
            status,
            listed: status.listed(),
            overrides: over.map(Overrides::from).unwrap_or_default(),
            probe: None,
        }
    }

    /// With what the prober found of it.
    pub fn with_probe(mut self, probe: Option<&ProbeRow>) -> Self {
        self.probe = probe.cloned();
        self
    }

    /// Every resource of `kind` in `inventory`, as it stands at `now`.
    pub fn list(
        inventory: &Inventory,
        kind: ResourceKind,
        now: i64,
        ttl_millis: i64,
    ) -> Vec<AdminResource> {
        let probes = inventory.probes_by_resource();
        inventory
            .resources
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| {
                let over = inventory
                    .overrides
                    .iter()
                    .find(|o| o.kind == kind && o.host == r.host);
                AdminResource::of(r, over, now, ttl_millis)
                    .with_probe(probes.get(&(kind, r.host.as_str())).copied())
            })
            .collect()
    }
}

/// Fills in what the provider file would default.
fn with_defaults(mut body: Value, defaults: &[(&str, Value)]) -> Value {
    if let Value::Object(map) = &mut body {
        for (key, value) in defaults {
            map.entry(*key).or_insert_with(|| value.clone());
        }
    }
    body
}

fn parse_resource<T: serde::de::DeserializeOwned>(
    body: Value,
    defaults: &[(&str, Value)],
) -> Result<T, Vec<FieldError>> {
    if !body.is_object() {
        return Err(vec![FieldError::new("", "the body must be a JSON object")]);
    }
    let value = with_defaults(body, defaults);
    serde_path_to_error::deserialize(value).map_err(|err| {
        vec![FieldError::new(
            err.path().to_string(),
            err.inner().to_string(),
        )]
    })
}

/// The errors of a one-item list check, without the `[0]`.
fn one(errors: Vec<FieldError>) -> Vec<FieldError> {
    errors
        .into_iter()
        .map(|e| FieldError::new(e.field.trim_start_matches("[0]."), e.message))
        .collect()
}

/// A gateway or bridge defined by hand (origin `admin`), from its JSON as
/// clients see it, with [`ResourceBody::defaults`] for what it leaves out.
/// `location_label` gives the label of a location by name, ignoring case,
/// if there is one.
pub fn new_resource<T: ResourceBody>(
    body: Value,
    location_label: &dyn Fn(&str) -> Option<String>,
    now: i64,
    policy: &Policy,
) -> Result<ResourceRow, Vec<FieldError>> {
    let mut resource: T = parse_resource(body, &T::defaults())?;
    resource.normalise(location_label, now);
    let errors = (T::CHECK)(
        std::slice::from_ref(&resource),
        "",
        &|l| location_label(l).as_deref() == Some(l),
        policy,
    );
    if !errors.is_empty() {
        return Err(one(errors));
    }
    Ok((T::TO_ROW)(&resource, Origin::Admin, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use menshen_model::{Bridge, Gateway};
    use serde_json::json;

    fn labels(name: &str) -> Option<String> {
        (name.eq_ignore_ascii_case("paris")).then(|| "paris".to_owned())
    }

    #[test]
    fn gateways_get_defaults_and_the_canonical_location() {
        let row = new_resource::<Gateway>(
            json!({"host": "gw1", "ip_addr": "192.0.2.1", "location": "PARIS", "port": 1194, "transport": "UDP"}),
            &labels,
            42,
            &Policy::LAB,
        )
        .unwrap();
        assert_eq!(row.location, "paris");
        assert_eq!(row.transport, "udp");
        assert_eq!(row.kind_type, "openvpn");
        assert!(row.healthy);
        assert_eq!(row.last_seen_millis, 42);
        assert_eq!(row.origin, "admin");
    }

    #[test]
    fn errors_name_the_field() {
        let errors = new_resource::<Gateway>(
            json!({"host": "gw1", "ip_addr": "192.0.2.1", "location": "nowhere", "port": 1194, "transport": "udp"}),
            &labels,
            0,
            &Policy::LAB,
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "location", "{errors:?}");
        let errors =
            new_resource::<Bridge>(json!({"host": "b", "port": "x"}), &labels, 0, &Policy::LAB)
                .unwrap_err();
        assert_eq!(errors[0].field, "port", "{errors:?}");
        let errors = new_resource::<Bridge>(json!([1]), &labels, 0, &Policy::LAB).unwrap_err();
        assert_eq!(errors[0].field, "");
    }

    #[test]
    fn override_buckets_are_checked() {
        let bad = Overrides {
            bucket: Some("two words".into()),
            ..Default::default()
        };
        assert_eq!(
            bad.check(ResourceKind::Gateway, "h").unwrap_err().field,
            "bucket"
        );
        let public = Overrides {
            bucket: Some(String::new()),
            maintenance: true,
            ..Default::default()
        };
        let row = public.check(ResourceKind::Bridge, "h").unwrap();
        assert!(row.maintenance && row.bucket.as_deref() == Some(""));
    }
}
