//! obfs4 bridges: the `cert` and `iat-mode` clients need, read from the state
//! the bridge keeps in its state folder: obfs4proxy's
//! (`TOR_PT_STATE_LOCATION`) or obfsvpn's (its server's state folder).
//!
//! Both write the same two files there at start, because both make their
//! obfs4 listener with the obfs4 library's server factory, which writes them
//! into the folder it is given (`transports/obfs4/statefile.go` of
//! yawning/obfs4 and its fork lyrebird: `stateFile = "obfs4_state.json"`,
//! `bridgeFile = "obfs4_bridgeline.txt"`, and the state's JSON fields
//! `node-id`, `private-key`, `public-key`, `drbg-seed`, `iat-mode`; obfsvpn
//! imports that library for its obfs4 server). obfsvpn's KCP and
//! port-hopping modes change how packets travel, not this state: a hopping
//! bridge's settings (`min_hop_seconds`, ports, seed) are what the operator
//! starts obfsvpn with, so they come from the agent's configuration.
//!
//! The files:
//! - `obfs4_bridgeline.txt`: comments (`#`) and one line
//!   `Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=... iat-mode=0`;
//! - `obfs4_state.json`: `node-id` and `public-key` (hex), `iat-mode`, and
//!   private material the agent does not touch. The cert is the unpadded
//!   base64 of node-id followed by public-key.
//!
//! The bridge line is read first; the state file is the fallback (some
//! packagings keep only the state file, and a state folder restored from a
//! backup may hold just it). Both are stable across restarts.

use std::path::Path;
use std::time::Duration;

use menshen_model::Bridge;
use serde_json::Value;

use crate::config::{BridgeTransport, HostConfig, Obfs4Config};
use crate::probe;

pub const BRIDGELINE_FILE: &str = "obfs4_bridgeline.txt";
pub const STATE_FILE: &str = "obfs4_state.json";

/// What clients need to talk to an obfs4 bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obfs4Params {
    pub cert: String,
    /// `0`, `1` or `2`, as a string (that is how clients read it).
    pub iat_mode: String,
}

/// Parses the contents of `obfs4_bridgeline.txt`.
pub fn parse_bridgeline(text: &str) -> Result<Obfs4Params, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("no bridge line in it")?;
    let mut words = line.split_whitespace();
    if words.next() != Some("Bridge") {
        return Err(format!("unexpected line {line:?}"));
    }
    let mut cert = None;
    let mut iat_mode = None;
    for word in words {
        if let Some(v) = word.strip_prefix("cert=") {
            cert = Some(v);
        } else if let Some(v) = word.strip_prefix("iat-mode=") {
            iat_mode = Some(v);
        }
    }
    let cert = cert
        .filter(|c| !c.is_empty())
        .ok_or("no cert= in the bridge line")?;
    if !cert
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(format!("cert {cert:?} is not unpadded base64"));
    }
    let iat_mode = iat_mode.unwrap_or("0");
    check_iat_mode(iat_mode)?;
    Ok(Obfs4Params {
        cert: cert.to_owned(),
        iat_mode: iat_mode.to_owned(),
    })
}

fn check_iat_mode(mode: &str) -> Result<(), String> {
    match mode {
        "0" | "1" | "2" => Ok(()),
        other => Err(format!("iat-mode {other:?} is not 0, 1 or 2")),
    }
}

/// Derives the parameters from the contents of `obfs4_state.json`.
pub fn parse_state(text: &str) -> Result<Obfs4Params, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |name: &str| -> Result<Vec<u8>, String> {
        let s = v
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no {name:?} in it"))?;
        decode_hex(s).ok_or_else(|| format!("{name:?} is not hex"))
    };
    let node_id = field("node-id")?;
    let public_key = field("public-key")?;
    if node_id.len() != 20 || public_key.len() != 32 {
        return Err("node-id or public-key has the wrong length".into());
    }
    let iat_mode = match v.get("iat-mode") {
        None => "0".to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("iat-mode {other} is not a number")),
    };
    check_iat_mode(&iat_mode)?;
    let mut raw = node_id;
    raw.extend_from_slice(&public_key);
    Ok(Obfs4Params {
        cert: base64_unpadded(&raw),
        iat_mode,
    })
}

/// Reads the parameters from obfs4proxy's state folder.
pub fn read_state_dir(dir: &Path) -> Result<Obfs4Params, String> {
    let line_path = dir.join(BRIDGELINE_FILE);
    let line_err = match std::fs::read_to_string(&line_path) {
        Ok(text) => match parse_bridgeline(&text) {
            Ok(p) => return Ok(p),
            Err(e) => format!("{}: {e}", line_path.display()),
        },
        Err(e) => format!("{}: {e}", line_path.display()),
    };
    let state_path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&state_path) {
        Ok(text) => parse_state(&text).map_err(|e| format!("{}: {e}", state_path.display())),
        Err(e) => Err(format!("{line_err}; {}: {e}", state_path.display())),
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn base64_unpadded(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The state of one bridge, and why it is unhealthy or left out.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeState {
    pub bridge: Bridge,
    /// Why `healthy` is false; None when healthy.
    pub problem: Option<String>,
    /// False when obfs4proxy's state could not be read: without a cert the
    /// bridge is useless to clients (and menshen refuses it), so it is left
    /// out of what is pushed.
    pub has_cert: bool,
}

/// Looks at an obfs4 bridge: its state folder, and (tcp with a port) whether
/// its port accepts connections. Without a port check (kcp, quic, or a
/// hopping bridge without a port) a readable state counts as healthy.
pub async fn observe(b: &Obfs4Config, host: &HostConfig, timeout: Duration) -> BridgeState {
    let mut bridge = Bridge {
        host: b.host.clone(),
        ip_addr: host.ip_addr.to_string(),
        ip6_addr: host.ip6_addr.map(|a| a.to_string()).unwrap_or_default(),
        location: host.location.clone(),
        port: b.port.map(i64::from).unwrap_or(0),
        transport: b.transport.as_str().to_owned(),
        kind: b.kind.as_str().to_owned(),
        experimental: b.experimental,
        bucket: b.bucket.clone(),
        options: b.options.clone(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    let has_cert = match read_state_dir(&b.state_dir) {
        Ok(p) => {
            bridge.options.insert("cert".into(), Value::String(p.cert));
            bridge
                .options
                .insert("iatMode".into(), Value::String(p.iat_mode));
            true
        }
        Err(e) => {
            problems.push(format!("obfs4proxy state unreadable: {e}"));
            false
        }
    };
    if let (BridgeTransport::Tcp, Some(addr)) = (b.transport, b.probe_addr)
        && let Err(e) = probe::tcp_accepts(addr, timeout).await
    {
        problems.push(format!("port {addr}: {e}"));
    }
    bridge.healthy = problems.is_empty();
    BridgeState {
        bridge,
        problem: (!problems.is_empty()).then(|| problems.join("; ")),
        has_cert,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As obfs4proxy 0.0.14 wrote them, one run.
    const BRIDGELINE: &str = "# obfs4 torrc client bridge line
#
# This file is an automatically generated bridge line based on
# the current obfs4proxy configuration.  EDITING IT WILL HAVE
# NO EFFECT.
#
# Before distributing this Bridge, edit the placeholder fields
# to contain the actual values:
#  <IP ADDRESS>  - The public IP address of your obfs4 bridge.
#  <PORT>        - The TCP/IP port of your obfs4 bridge.
#  <FINGERPRINT> - The bridge's fingerprint.

Bridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert=h8PI8ciXlSFFPgITUT6UZC1pgZPZNIse9/5HWJW8OWLh0ilfzTtoAT39uc5doA3qwkZ1bA iat-mode=0
";
    const STATE: &str = r#"{"node-id":"87c3c8f1c8979521453e0213513e94642d698193","private-key":"de6a8b5747b283ac2c6895d6aae008523418f6b008bcbef505038673eec263b2","public-key":"d9348b1ef7fe475895bc3962e1d2295fcd3b68013dfdb9ce5da00deac246756c","drbg-seed":"9188e0c587d857b5da03c758b824d558a0c7c9343d8c7db4","iat-mode":0}"#;
    const CERT: &str = "h8PI8ciXlSFFPgITUT6UZC1pgZPZNIse9/5HWJW8OWLh0ilfzTtoAT39uc5doA3qwkZ1bA";

    #[test]
    fn bridgeline_is_parsed() {
        assert_eq!(
            parse_bridgeline(BRIDGELINE).unwrap(),
            Obfs4Params {
                cert: CERT.into(),
                iat_mode: "0".into()
            }
        );
        let p =
            parse_bridgeline("Bridge obfs4 192.0.2.1:443 ABCD cert=abc+/9 iat-mode=2\n").unwrap();
        assert_eq!(p.cert, "abc+/9");
        assert_eq!(p.iat_mode, "2");
    }

    #[test]
    fn bad_bridgelines_are_refused() {
        assert!(parse_bridgeline("# only comments\n\n").is_err());
        assert!(parse_bridgeline("").is_err());
        assert!(parse_bridgeline("Bridge obfs4 1.2.3.4:5 FP iat-mode=0").is_err());
        assert!(parse_bridgeline("Bridge obfs4 1.2.3.4:5 FP cert= iat-mode=0").is_err());
        assert!(parse_bridgeline("Bridge obfs4 1.2.3.4:5 FP cert=a\"b iat-mode=0").is_err());
        assert!(parse_bridgeline("Bridge obfs4 1.2.3.4:5 FP cert=abc iat-mode=7").is_err());
        assert!(parse_bridgeline("garbage cert=abc").is_err());
    }

    #[test]
    fn state_file_gives_the_same_cert() {
        assert_eq!(
            parse_state(STATE).unwrap(),
            Obfs4Params {
                cert: CERT.into(),
                iat_mode: "0".into()
            }
        );
        assert!(parse_state("{}").is_err());
        assert!(parse_state(r#"{"node-id":"00","public-key":"00"}"#).is_err());
        assert!(parse_state("not json").is_err());
    }

    /// A state folder as obfsvpn's server leaves it with iat-mode 1 and the
    /// bridge line gone (a folder restored from a backup of the state file
    /// alone): the state file's layout is the obfs4 library's
    /// `jsonServerState` (see the module's documentation), with `iat-mode`
    /// a number.
    #[test]
    fn obfsvpn_state_alone_gives_cert_and_iat_mode() {
        let dir = tempfile::tempdir().unwrap();
        let state = STATE.replace(r#""iat-mode":0"#, r#""iat-mode":1"#);
        std::fs::write(dir.path().join(STATE_FILE), state).unwrap();
        assert_eq!(
            read_state_dir(dir.path()).unwrap(),
            Obfs4Params {
                cert: CERT.into(),
                iat_mode: "1".into()
            }
        );
        // What obfsvpn writes as its bridge line says the same.
        std::fs::write(
            dir.path().join(BRIDGELINE_FILE),
            format!("# obfsvpn\n\nBridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert={CERT} iat-mode=1\n"),
        )
        .unwrap();
        assert_eq!(read_state_dir(dir.path()).unwrap().iat_mode, "1");
        // iat-mode as a string is not the library's layout.
        std::fs::remove_file(dir.path().join(BRIDGELINE_FILE)).unwrap();
        std::fs::write(
            dir.path().join(STATE_FILE),
            STATE.replace(r#""iat-mode":0"#, r#""iat-mode":"1""#),
        )
        .unwrap();
        assert!(read_state_dir(dir.path()).is_err());
    }

    #[tokio::test]
    async fn hopping_and_kcp_bridges_carry_their_options() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), STATE).unwrap();
        let host = HostConfig {
            name: "gw1.example.org".into(),
            ip_addr: "192.0.2.10".parse().unwrap(),
            ip6_addr: None,
            location: "paris".into(),
        };
        let mut options = serde_json::Map::new();
        for (k, v) in [
            ("min_hop_seconds", 5),
            ("hop_jitter", 2),
            ("min_hop_port", 49152),
            ("max_hop_port", 65535),
            ("port_count", 100),
            ("port_seed", 1234),
        ] {
            options.insert(k.into(), v.into());
        }
        let hop = Obfs4Config {
            host: "br-hop.example.org".into(),
            kind: crate::config::BridgeType::Obfs4Hop,
            transport: BridgeTransport::Kcp,
            port: None,
            state_dir: dir.path().to_path_buf(),
            probe_addr: None,
            options,
            experimental: false,
            bucket: String::new(),
        };
        let state = observe(&hop, &host, Duration::from_secs(1)).await;
        assert!(state.has_cert && state.bridge.healthy, "{state:?}");
        let b = &state.bridge;
        assert_eq!(
            (b.kind.as_str(), b.transport.as_str(), b.port),
            ("obfs4-hop", "kcp", 0)
        );
        assert_eq!(b.options["cert"], CERT);
        assert_eq!(b.options["iatMode"], "0");
        assert_eq!(b.options["port_seed"], 1234);
        assert_eq!(b.options["max_hop_port"], 65535);
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_unpadded(b""), "");
        assert_eq!(base64_unpadded(b"f"), "Zg");
        assert_eq!(base64_unpadded(b"fo"), "Zm8");
        assert_eq!(base64_unpadded(b"foo"), "Zm9v");
        assert_eq!(base64_unpadded(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_unpadded(&[0xfb, 0xff]), "+/8");
    }

    #[test]
    fn state_dir_prefers_the_bridgeline_and_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_state_dir(dir.path()).unwrap_err();
        assert!(e.contains(BRIDGELINE_FILE) && e.contains(STATE_FILE), "{e}");
        std::fs::write(dir.path().join(STATE_FILE), STATE).unwrap();
        assert_eq!(read_state_dir(dir.path()).unwrap().cert, CERT);
        std::fs::write(
            dir.path().join(BRIDGELINE_FILE),
            "Bridge obfs4 x:1 FP cert=fromline iat-mode=1\n",
        )
        .unwrap();
        assert_eq!(read_state_dir(dir.path()).unwrap().cert, "fromline");
    }
}
