use super::*;

const MINIMAL: &str = r#"
menshen_url = "https://api.example.org:4430"
token_file = "/etc/menshen-agent/token"

[host]
name = "ams1.example.org"
ip_addr = "192.0.2.10"
location = "amsterdam"

[[openvpn]]
transport = "udp"
port = 1194
management = "127.0.0.1:7505"
capacity = 100
"#;

/// Asserts that `text` is refused, the error saying each of `says`.
fn refused(text: &str, says: &[&str]) {
    let e = parse_str(text).unwrap_err().0;
    for said in says {
        assert!(e.contains(said), "{said:?} in {e}");
    }
}

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(
        text,
        Path::new("/etc/menshen-agent.toml"),
        &Overrides::default(),
    )
}

#[test]
fn minimal_file_gets_defaults() {
    let c = parse_str(MINIMAL).unwrap();
    assert_eq!(c.interval, Duration::from_secs(15));
    assert_eq!(c.check_interval, Duration::from_secs(2));
    assert!(!c.withdraw_on_exit);
    assert_eq!(c.openvpn.len(), 1);
    let g = &c.openvpn[0];
    assert_eq!(g.host, "ams1.example.org");
    assert_eq!(g.overload_threshold, 0.9);
    assert_eq!(g.probe_addr, Some("192.0.2.10:1194".parse().unwrap()));
    assert_eq!(
        c.token,
        Some(TokenSource::File("/etc/menshen-agent/token".into()))
    );
    assert_eq!(
        c.endpoint("gateways").unwrap().as_str(),
        "https://api.example.org:4430/api/5/agent/gateways"
    );
}

#[test]
fn endpoint_keeps_a_path_prefix() {
    let mut c = parse_str(MINIMAL).unwrap();
    c.menshen_url = Some(Url::parse("https://example.org/menshen").unwrap());
    assert_eq!(
        c.endpoint("bridges").unwrap().as_str(),
        "https://example.org/menshen/api/5/agent/bridges"
    );
}

#[test]
fn environment_overrides_the_file() {
    let o = Overrides {
        menshen_url: Some("http://127.0.0.1:9".into()),
        token: Token::new(" secret \n"),
        token_file: None,
        metrics_listen: None,
    };
    let c = parse(MINIMAL, Path::new("a.toml"), &o).unwrap();
    assert_eq!(c.menshen_url.unwrap().as_str(), "http://127.0.0.1:9/");
    assert_eq!(c.token, Some(TokenSource::Env(Token("secret".into()))));
}

#[test]
fn token_is_redacted_in_debug() {
    let o = Overrides {
        token: Token::new("s3cr3t-jwt"),
        ..Default::default()
    };
    let c = parse(MINIMAL, Path::new("a.toml"), &o).unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("s3cr3t"), "{dbg}");
    assert!(dbg.contains("redacted"));
}

#[test]
fn errors_name_file_line_and_field() {
    let bad = MINIMAL.replace("capacity = 100", "capacity = 0");
    let e = parse_str(&bad).unwrap_err().0;
    assert!(e.starts_with("/etc/menshen-agent.toml:14:"), "{e}");
    assert!(e.contains("capacity"), "{e}");

    let bad = MINIMAL.replace("capacity = 100", "capcity = 100");
    refused(&bad, &[":14:", "unknown field `capcity`"]);

    let bad = MINIMAL.replace("\"udp\"", "\"sctp\"");
    refused(&bad, &[":11:", "sctp"]);

    let bad = MINIMAL.replace("192.0.2.10", "192.0.2.300");
    refused(&bad, &[":7:", "ip_addr"]);

    let bad = MINIMAL.replace("https://api", "ftp://api");
    refused(&bad, &[":2:", "menshen_url"]);

    let bad = format!("interval = \"soon\"\n{MINIMAL}");
    refused(&bad, &[":1:", "soon"]);

    let bad = format!("overload_threshold = 1.5\n{MINIMAL}");
    refused(&bad, &[":1:", "fraction"]);

    let bad = MINIMAL.replace("[host]\n", "[host]\nnmae = \"x\"\n");
    refused(&bad, &["nmae"]);

    let bad = MINIMAL.replace("location = \"amsterdam\"\n", "");
    refused(&bad, &["missing field `location`"]);
}

#[test]
fn duplicate_hosts_are_refused() {
    let twice = format!(
        "{MINIMAL}\n[[openvpn]]\ntransport = \"tcp\"\nport = 443\nmanagement = \"127.0.0.1:7506\"\ncapacity = 50\n"
    );
    refused(&twice, &["openvpn[1].host", "used twice"]);

    let named = twice.replace(
        "transport = \"tcp\"",
        "host = \"ams1-tcp.example.org\"\ntransport = \"tcp\"",
    );
    let c = parse_str(&named).unwrap();
    assert_eq!(c.openvpn[1].host, "ams1-tcp.example.org");
    assert_eq!(c.openvpn[1].transport, GatewayTransport::Tcp);

    // The second named as the first is.
    refused(
        &twice.replace(
            "transport = \"tcp\"",
            "host = \"ams1.example.org\"\ntransport = \"tcp\"",
        ),
        &[":17:", "used twice"],
    );
}

#[test]
fn bridges() {
    let text = format!(
        "{MINIMAL}\n[[obfs4]]\nhost = \"br1.example.org\"\nport = 443\nstate_dir = \"/var/lib/obfs4\"\n\n[[obfs4]]\nhost = \"br2.example.org\"\ntype = \"obfs4-hop\"\nstate_dir = \"/var/lib/obfs4-hop\"\noptions = {{ min_hop_seconds = 5 }}\n"
    );
    let c = parse_str(&text).unwrap();
    assert_eq!(c.obfs4[0].kind, BridgeType::Obfs4);
    assert_eq!(c.obfs4[0].transport, BridgeTransport::Tcp);
    assert_eq!(
        c.obfs4[0].probe_addr,
        Some("192.0.2.10:443".parse().unwrap())
    );
    assert_eq!(c.obfs4[1].kind, BridgeType::Obfs4Hop);
    assert_eq!(c.obfs4[1].port, None);
    assert_eq!(c.obfs4[1].probe_addr, None);
    assert_eq!(c.obfs4[1].options["min_hop_seconds"], 5);

    let no_port = text.replace("port = 443\n", "");
    refused(&no_port, &["obfs4[0]", "port"]);

    let with_cert = text.replace("min_hop_seconds = 5", "cert = \"x\"");
    refused(&with_cert, &["options.cert"]);

    // obfsvpn's hopping settings: whole numbers, a sane port range, and
    // only on hopping bridges.
    let hop = text.replace(
        "min_hop_seconds = 5",
        "min_hop_seconds = 5, hop_jitter = 2, min_hop_port = 49152, max_hop_port = 65535, port_count = 100, port_seed = 1234",
    );
    let c = parse_str(&hop).unwrap();
    assert_eq!(c.obfs4[1].options["port_seed"], 1234);
    for (bad, says) in [
        ("min_hop_seconds = \"5\"", "whole number"),
        ("min_hop_seconds = 1.5", "whole number"),
        (
            "min_hop_port = 70000",
            "min_hop_port must be a whole number in 1-65535",
        ),
        // what menshen would refuse: no hopping every 0 s, over no ports
        (
            "min_hop_seconds = 0",
            "min_hop_seconds must be a whole number in 1-",
        ),
        (
            "min_hop_seconds = 5, port_count = 0",
            "port_count must be a whole number in 1-",
        ),
        ("min_hop_seconds = 5, port_seed = -1", "port_seed"),
        ("min_hop_seconds = 5000000000", "min_hop_seconds"),
        (
            "min_hop_port = 2000, max_hop_port = 1000",
            "above max_hop_port",
        ),
        (
            "min_hop_port = 1000, max_hop_port = 1009, port_count = 11",
            "port_count",
        ),
    ] {
        refused(
            &text.replace("min_hop_seconds = 5", bad),
            &["obfs4[1]", says],
        );
    }
    let plain_hops = text.replace(
        "state_dir = \"/var/lib/obfs4\"\n",
        "state_dir = \"/var/lib/obfs4\"\noptions = { port_seed = 1 }\n",
    );
    refused(&plain_hops, &["obfs4[0]", "obfs4-hop"]);
}

#[test]
fn metrics_listener_from_the_file_or_the_flag() {
    let c = parse_str(&format!("metrics_listen = \"127.0.0.1:9176\"\n{MINIMAL}")).unwrap();
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9176".parse().unwrap()));
    assert_eq!(parse_str(MINIMAL).unwrap().metrics_listen, None);
    let o = Overrides {
        metrics_listen: Some("0.0.0.0:9100".parse().unwrap()),
        ..Default::default()
    };
    let c = parse(MINIMAL, Path::new("a.toml"), &o).unwrap();
    assert_eq!(c.metrics_listen, Some("0.0.0.0:9100".parse().unwrap()));
    refused(
        &format!("metrics_listen = \"localhost\"\n{MINIMAL}"),
        &[":1:", "metrics_listen"],
    );
}

#[test]
fn the_example_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/menshen-agent.toml"
    );
    let c = load(Path::new(path), &Overrides::default()).unwrap();
    assert_eq!(c.openvpn.len(), 2);
    assert_eq!(c.obfs4.len(), 1);
    assert_eq!(
        c.openvpn[1].probe_addr,
        Some("192.0.2.10:1194".parse().unwrap())
    );
}

#[test]
fn durations_take_units_or_seconds() {
    let c = parse_str(&format!(
        "interval = 30\ncheck_interval = \"500ms\"\n{MINIMAL}\n[retry]\nmax = \"2m\"\n"
    ))
    .unwrap();
    assert_eq!(c.interval, Duration::from_secs(30));
    assert_eq!(c.check_interval, Duration::from_millis(500));
    assert_eq!(c.retry.max, Duration::from_secs(120));
    assert_eq!(c.retry.initial, Duration::from_secs(1));
    refused(
        &format!("interval = \"10ms\"\n{MINIMAL}"),
        &[":1:", "between"],
    );
}
