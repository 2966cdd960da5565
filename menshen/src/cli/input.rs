//! What an operator types for a location, gateway or bridge, as flags or
//! as JSON (as the admin API takes it), and its field errors named by the
//! flag that sets the field.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use super::Invalid;
use super::args::read_file;
use crate::inventory::validate::FieldError;

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
        "blocked_in" => "--blocked-in",
        _ => return None,
    })
}

/// Field errors as one line naming the fields (and their flags).
/// Field errors as one line naming the fields (and their flags): invalid
/// input.
pub fn invalid(errors: Vec<FieldError>) -> anyhow::Error {
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
    Invalid::err(format!("invalid {}", text.join("; ")))
}

/// The JSON of `--json FILE|-`, if given; the fields come as flags or as
/// JSON, not both.
pub fn json_instead_of_flags(
    json: Option<&Path>,
    flags_given: bool,
) -> anyhow::Result<Option<Value>> {
    let Some(path) = json else {
        return Ok(None);
    };
    if flags_given {
        return Err(Invalid::err(
            "give the fields as flags or with --json, not both",
        ));
    }
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        read_file(path)?
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Invalid::err(format!("{} is not JSON: {e}", path.display())))
}

/// `value` as a `T`, a mismatch being a field error.
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> anyhow::Result<T> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        invalid(vec![FieldError::new(
            err.path().to_string(),
            err.inner().to_string(),
        )])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_name_the_flag() {
        let err = invalid(vec![FieldError::new("ip_addr", "not an address")]);
        assert_eq!(err.to_string(), "invalid ip_addr (--ip): not an address");
        assert!(err.downcast_ref::<Invalid>().is_some());
    }
}
