//! How the shipped LEAP clients read what menshen serves, restated from
//! their code, so that tests check menshen's answers the way the clients
//! will.

/// The Android client's reading of `ca_cert_fingerprint`
/// (`Provider.parseDefinition`): the algorithm is `pin.split(":")[0]` and
/// the hash `pin.split(":")[1].trim()`. `None` where Android fails (no `:`,
/// so index 1 does not exist) and shows a configuration error.
pub fn android_ca_pin(pin: &str) -> Option<(String, String)> {
    // Java's String.split drops trailing empty strings; no `:` gives one part.
    let parts: Vec<&str> = pin.split(':').collect();
    let algorithm = parts.first()?.to_string();
    let hash = parts.get(1)?.trim().to_string();
    if hash.is_empty() {
        return None;
    }
    Some((algorithm, hash))
}

/// bitmask-core's reading of `ca_cert_fingerprint`: lowercased, a leading
/// `sha256:` stripped, spaces trimmed; compared with the lowercase hex
/// SHA-256 of the `<ca>` certificate's DER.
pub fn bitmask_core_ca_pin(pin: &str) -> String {
    let lower = pin.to_lowercase();
    lower
        .strip_prefix("sha256:")
        .unwrap_or(&lower)
        .trim()
        .to_string()
}

/// The Go client's reading of a JSON string field: a JSON number where its
/// model declares `string` makes it reject the whole document.
pub fn go_string_field(
    document: &serde_json::Value,
    field: &str,
) -> Result<Option<String>, String> {
    match document.get(field) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "json: cannot unmarshal {} into Go struct field .{field} of type string",
            match other {
                serde_json::Value::Number(_) => "number",
                serde_json::Value::Bool(_) => "bool",
                serde_json::Value::Array(_) => "array",
                serde_json::Value::Object(_) => "object",
                _ => "null",
            }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_hex_fails_on_android_and_the_prefixed_form_works_for_both() {
        let hex = "ab".repeat(32);
        assert_eq!(android_ca_pin(&hex), None);
        let pin = format!("SHA256: {hex}");
        assert_eq!(android_ca_pin(&pin), Some(("SHA256".into(), hex.clone())));
        assert_eq!(bitmask_core_ca_pin(&pin), hex);
        assert_eq!(bitmask_core_ca_pin(&hex), hex);
    }

    #[test]
    fn a_number_for_a_string_field_is_rejected() {
        let doc = serde_json::json!({"donate_period": 30, "name": "x"});
        assert!(go_string_field(&doc, "donate_period").is_err());
        assert_eq!(go_string_field(&doc, "name").unwrap().as_deref(), Some("x"));
        assert_eq!(go_string_field(&doc, "absent").unwrap(), None);
    }
}
