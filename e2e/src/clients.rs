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

/// The desktop client's check of a v3 `/3/cert` answer (`isValidCert`):
/// the first PEM block is the key, the second the certificate, and nothing
/// may follow. Returns the two blocks' labels.
pub fn desktop_v3_cert(text: &str) -> Result<(String, String), String> {
    let blocks = pem_blocks(text)?;
    match blocks.as_slice() {
        [key, cert] if cert.0 == "CERTIFICATE" && key.0.ends_with("PRIVATE KEY") => {
            Ok((key.0.clone(), cert.0.clone()))
        }
        _ => Err(format!(
            "want a key then a certificate, got {:?}",
            blocks.iter().map(|b| &b.0).collect::<Vec<_>>()
        )),
    }
}

/// The Android client's v3 reading of `/3/cert`: the text is cut after
/// every `-\n` (so lines must end in LF), the piece holding `KEY` is the
/// key, the one holding `CERTIFICATE` the certificate; an RSA key must
/// carry the `RSA PRIVATE KEY` label, a `PRIVATE KEY` one is read as
/// Ed25519 or ECDSA only. Returns (key piece, certificate piece).
pub fn android_v3_cert(text: &str) -> Result<(String, String), String> {
    if text.contains('\r') {
        return Err("CR in the answer: Android's split on \"-\\n\" fails".into());
    }
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("-\n") {
        pieces.push(&rest[..i + 2]);
        rest = &rest[i + 2..];
    }
    // Pieces come in pairs: header line, then body and footer.
    let joined: Vec<String> = pieces.chunks(2).map(|c| c.concat()).collect();
    let key = joined.iter().find(|p| p.contains("KEY")).ok_or("no key")?;
    let cert = joined
        .iter()
        .find(|p| p.contains("CERTIFICATE"))
        .ok_or("no certificate")?;
    Ok((key.clone(), cert.clone()))
}

/// PEM blocks of `text` as (label, base64 body), strictly: nothing between
/// or after the blocks but line ends.
fn pem_blocks(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let label = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            .ok_or_else(|| format!("not a PEM header: {line:?}"))?;
        let mut body = String::new();
        loop {
            let line = lines.next().ok_or("unterminated PEM block")?;
            if line == format!("-----END {label}-----") {
                break;
            }
            body.push_str(line);
        }
        blocks.push((label.to_owned(), body));
    }
    Ok(blocks)
}

/// The desktop client's strict decoding of a v3 `eip-service.json`: ports,
/// protocols and options must be strings, timezones strings `strconv.Atoi`
/// reads. The first problem, if any.
pub fn desktop_eip_service_v3(doc: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    let strings = |v: &Value, what: &str| -> Result<(), String> {
        match v {
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(()),
            other => Err(format!("{what} must be an array of strings: {other}")),
        }
    };
    // `keys` of `item` must be strings; an error names the key after `at`.
    let string_fields = |item: &Value, at: &str, keys: &[&str]| -> Result<(), String> {
        match keys.iter().find(|&&key| !item[key].is_string()) {
            Some(key) => Err(format!("{at}{key} is not a string: {item}")),
            None => Ok(()),
        }
    };
    for g in doc["gateways"]
        .as_array()
        .ok_or("gateways is not an array")?
    {
        string_fields(g, "", &["host", "ip_address", "location"])?;
        for t in g["capabilities"]["transport"]
            .as_array()
            .ok_or("capabilities.transport is not an array")?
        {
            t["type"].as_str().ok_or("transport type is not a string")?;
            strings(&t["ports"], "ports")?;
            strings(&t["protocols"], "protocols")?;
            if let Some(options) = t.get("options") {
                let options = options.as_object().ok_or("options is not an object")?;
                if let Some((k, v)) = options.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!("option {k} is not a string: {v}"));
                }
            }
        }
    }
    for (label, l) in doc["locations"]
        .as_object()
        .ok_or("locations is not an object")?
    {
        let at = format!("locations.{label}.");
        string_fields(l, &at, &["country_code", "hemisphere", "name"])?;
        let tz = l["timezone"]
            .as_str()
            .ok_or_else(|| format!("locations.{label}.timezone is not a string"))?;
        tz.trim_start_matches('+')
            .parse::<i32>()
            .map_err(|_| format!("locations.{label}.timezone {tz:?} is not an integer"))?;
    }
    Ok(())
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
    fn v3_certs_are_read_key_first_and_strictly() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let cert = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
        let good = format!("{key}{cert}");
        assert!(desktop_v3_cert(&good).is_ok());
        assert!(desktop_v3_cert(&format!("{cert}{key}")).is_err());
        assert!(desktop_v3_cert(&format!("{good}{cert}")).is_err());
        let (k, c) = android_v3_cert(&good).unwrap();
        assert_eq!((k.as_str(), c.as_str()), (key, cert));
        assert!(android_v3_cert(&good.replace('\n', "\r\n")).is_err());
    }

    #[test]
    fn a_number_for_a_string_field_is_rejected() {
        let doc = serde_json::json!({"donate_period": 30, "name": "x"});
        assert!(go_string_field(&doc, "donate_period").is_err());
        assert_eq!(go_string_field(&doc, "name").unwrap().as_deref(), Some("x"));
        assert_eq!(go_string_field(&doc, "absent").unwrap(), None);
    }
}
