//! The real `menshen-agent` binary pushing to a stand-in for menshen's agent
//! API (see `common::FakeMenshen` for why a stand-in).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{FakeMenshen, Process, agent_command, dry_run, free_port, succeeds, write_config};
use serde_json::json;

/// Room on top of upper time bounds for a busy machine: the bounds check
/// that retries are paced, not how fast this machine is.
const SLACK_MS: u64 = 1500;

const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.agent-token.c2lnbmF0dXJl";
const CERT: &str = "h8PI8ciXlSFFPgITUT6UZC1pgZPZNIse9/5HWJW8OWLh0ilfzTtoAT39uc5doA3qwkZ1bA";

/// A host with one udp gateway whose management interface is not there
/// (so: unhealthy) and one obfs4 bridge whose state is in `dir/obfs4` and
/// whose port is `bridge_port`. `top` goes before the tables.
fn setup(dir: &Path, menshen: &str, bridge_port: u16, top: &str) -> PathBuf {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let state = dir.join("obfs4");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("obfs4_bridgeline.txt"),
        format!(
            "# comment\n\nBridge obfs4 <IP ADDRESS>:<PORT> <FINGERPRINT> cert={CERT} iat-mode=0\n"
        ),
    )
    .unwrap();
    let dir = dir.display();
    let closed = free_port();
    write_config(
        Path::new(&dir.to_string()),
        &format!(
            r#"
menshen_url = "{menshen}"
token_file = "{dir}/token"
interval = "60s"
check_interval = "200ms"
probe_timeout = "500ms"
{top}

[retry]
initial = "1s"
max = "4s"
refused = "3s"

[host]
name = "ams1.example.org"
ip_addr = "192.0.2.10"
ip6_addr = "2001:db8::10"
location = "amsterdam"

[[openvpn]]
host = "gw1.ams1.example.org"
transport = "udp"
port = 1194
management = "127.0.0.1:{closed}"
capacity = 100

[[obfs4]]
host = "br1.ams1.example.org"
port = {bridge_port}
state_dir = "{dir}/obfs4"
probe_addr = "127.0.0.1:{bridge_port}"
"#
        ),
    )
}

/// The host of [`setup`] in a folder of its own, its bridge listening.
struct Host {
    dir: tempfile::TempDir,
    /// The bridge's port accepts connections until this is dropped.
    bridge: TcpListener,
    port: u16,
    config: PathBuf,
}

impl Host {
    fn new(menshen: &str) -> Host {
        Host::with(menshen, "")
    }

    /// With `top` before the tables.
    fn with(menshen: &str, top: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let bridge = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = bridge.local_addr().unwrap().port();
        let config = setup(dir.path(), menshen, port, top);
        Host {
            dir,
            bridge,
            port,
            config,
        }
    }

    /// `menshen-agent --once` and `extra`, to its end.
    fn once(&self, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["--config", self.config.to_str().unwrap(), "--once"];
        args.extend_from_slice(extra);
        agent_command(&args).output().unwrap()
    }

    fn daemon(&self) -> Process {
        common::daemon(&self.config)
    }
}

#[test]
fn once_puts_both_lists_with_the_token() {
    let menshen = FakeMenshen::start(|req, n| (if n == 0 { 201 } else { 200 }, req.body.clone()));
    let host = Host::new(&menshen.url);

    let out = host.once(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("agent-token"),
        "token leaked into the log:\n{stderr}"
    );

    let reqs = menshen.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r.method, "PUT");
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(
            r.header("content-type")
                .unwrap()
                .starts_with("application/json")
        );
    }
    assert_eq!(reqs[0].path, "/api/5/agent/gateways");
    assert_eq!(
        reqs[0].json(),
        json!([{
            "host": "gw1.ams1.example.org",
            "ip_addr": "192.0.2.10",
            "ip6_addr": "2001:db8::10",
            "location": "amsterdam",
            "port": 1194,
            "transport": "udp",
            "type": "openvpn"
        }]),
        "the gateway without a management interface is reported, unhealthy"
    );
    assert_eq!(reqs[1].path, "/api/5/agent/bridges");
    assert_eq!(
        reqs[1].json(),
        json!([{
            "host": "br1.ams1.example.org",
            "ip_addr": "192.0.2.10",
            "ip6_addr": "2001:db8::10",
            "location": "amsterdam",
            "port": host.port,
            "transport": "tcp",
            "type": "obfs4",
            "healthy": true,
            "options": {"cert": CERT, "iatMode": "0"}
        }])
    );
}

#[test]
fn token_and_url_come_from_the_environment() {
    let menshen = FakeMenshen::echo();
    let host = Host::new("http://127.0.0.1:9");
    let mut once = agent_command(&["--config", host.config.to_str().unwrap(), "--once"]);
    once.env("MENSHEN_AGENT_URL", &menshen.url)
        .env("MENSHEN_AGENT_TOKEN", "from-env");
    succeeds(once);
    let reqs = menshen.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer from-env"));
}

#[test]
fn dry_run_prints_the_json_and_contacts_nobody() {
    let menshen = FakeMenshen::echo();
    let host = Host::new(&menshen.url);
    std::fs::remove_file(host.dir.path().join("token")).unwrap();

    let printed = dry_run(&host.config);
    assert_eq!(printed["gateways"][0]["host"], "gw1.ams1.example.org");
    assert_eq!(printed["bridges"][0]["options"]["cert"], CERT);
    assert_eq!(printed["bridges"][0]["healthy"], true);
    std::thread::sleep(Duration::from_millis(200));
    assert!(menshen.requests().is_empty());
}

#[test]
fn a_bridge_without_state_is_left_out_and_said_so() {
    let menshen = FakeMenshen::echo();
    let host = Host::new(&menshen.url);
    std::fs::remove_file(host.dir.path().join("obfs4/obfs4_bridgeline.txt")).unwrap();

    let out = host.once(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("br1.ams1.example.org is left out") && stderr.contains("obfs4_state.json"),
        "{stderr}"
    );
    let reqs = menshen.requests();
    assert_eq!(reqs[1].path, "/api/5/agent/bridges");
    assert_eq!(reqs[1].json(), json!([]));
}

#[test]
fn invalid_fields_are_logged_and_once_fails() {
    let menshen = FakeMenshen::start(|_, _| {
        (
            422,
            json!({
                "error": "invalid_fields",
                "message": "some fields are invalid",
                "fields": [{"field": "gateways[0].location", "message": "unknown location \"amsterdam\""}]
            })
            .to_string(),
        )
    });
    let out = Host::new(&menshen.url).once(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gateways[0].location: unknown location"),
        "{stderr}"
    );
}

#[test]
fn unreachable_menshen_fails_once() {
    let out = Host::new(&format!("http://127.0.0.1:{}", free_port())).once(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
}

#[test]
fn transient_failures_are_retried_with_backoff() {
    // Two 503s, then success.
    let menshen = FakeMenshen::start(|req, n| {
        if n < 2 {
            (503, "{\"error\":\"unavailable\"}".into())
        } else {
            (200, req.body.clone())
        }
    });
    let host = Host::new(&menshen.url);
    let agent = host.daemon();

    let reqs = menshen.wait_for(4, Duration::from_secs(10));
    // A failed gateways PUT is not followed by the bridges PUT.
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/5/agent/gateways",
            "/api/5/agent/gateways",
            "/api/5/agent/gateways",
            "/api/5/agent/bridges"
        ]
    );
    // Full jitter under a ceiling of 1 s, then 2 s (and at least 100 ms).
    let first = reqs[1].at - reqs[0].at;
    let second = reqs[2].at - reqs[1].at;
    assert!(
        first >= Duration::from_millis(90) && first <= Duration::from_millis(1300 + SLACK_MS),
        "{first:?}"
    );
    assert!(
        second >= Duration::from_millis(90) && second <= Duration::from_millis(2300 + SLACK_MS),
        "{second:?}"
    );
    assert!(agent.wait_for_line("succeeded after 2 failed attempts", Duration::from_secs(5)));
    assert!(agent.log().contains("503"), "{}", agent.log());
    // Then the heartbeat pace (60 s): nothing more for now.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(menshen.requests().len(), 4);
}

#[test]
fn a_refused_token_is_logged_and_retried_slowly() {
    let menshen = FakeMenshen::start(|_, _| {
        (
            401,
            "{\"error\":\"unauthorized\",\"message\":\"token revoked\"}".into(),
        )
    });
    // interval 1 s, retry.refused 3 s: the slower one wins.
    let host = Host::new(&menshen.url);
    let text = std::fs::read_to_string(&host.config)
        .unwrap()
        .replace("interval = \"60s\"", "interval = \"1s\"");
    std::fs::write(&host.config, text).unwrap();
    let agent = host.daemon();

    let reqs = menshen.wait_for(2, Duration::from_secs(8));
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(2600) && gap <= Duration::from_millis(3600 + SLACK_MS),
        "{gap:?}"
    );
    let log = agent.log();
    assert!(
        log.contains("refused the token") && log.contains("token revoked"),
        "{log}"
    );
    assert!(
        !log.contains("agent-token"),
        "token leaked into the log:\n{log}"
    );
}

#[test]
fn a_change_is_pushed_at_once() {
    let menshen = FakeMenshen::echo();
    let host = Host::new(&menshen.url);
    let agent = host.daemon();

    let reqs = menshen.wait_for(2, Duration::from_secs(5));
    assert_eq!(reqs[1].json()[0]["healthy"], true);
    // The bridge stops listening: pushed within a check or two, long before
    // the 60 s heartbeat.
    drop(host.bridge);
    let stopped = Instant::now();
    let reqs = menshen.wait_for(4, Duration::from_secs(6));
    assert!(stopped.elapsed() < Duration::from_millis(2000 + SLACK_MS));
    assert_eq!(reqs[3].path, "/api/5/agent/bridges");
    assert_eq!(reqs[3].json()[0].get("healthy"), None);
    assert!(agent.wait_for_line("br1.ams1.example.org is unhealthy", Duration::from_secs(3)));
    // No change, no push.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(menshen.requests().len(), 4);
}

#[test]
fn sigterm_withdraws_when_configured() {
    let menshen = FakeMenshen::echo();
    let host = Host::with(&menshen.url, "withdraw_on_exit = true");
    let mut agent = host.daemon();

    let reqs = menshen.wait_for(2, Duration::from_secs(5));
    assert_ne!(reqs[0].json(), json!([]));
    agent.signal("TERM");
    let status = agent.wait_exit(Duration::from_secs(3)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", agent.log());
    let reqs = menshen.requests();
    assert_eq!(reqs.len(), 4, "{reqs:#?}");
    assert_eq!(reqs[2].path, "/api/5/agent/gateways");
    assert_eq!(reqs[3].path, "/api/5/agent/bridges");
    assert_eq!(reqs[2].json(), json!([]));
    assert_eq!(reqs[3].json(), json!([]));
    assert_eq!(
        reqs[3].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(agent.log().contains("withdrew"), "{}", agent.log());
}

#[test]
fn sigterm_exits_promptly_without_withdrawing_by_default() {
    // menshen keeps failing: the agent is in its backoff when told to stop.
    let menshen = FakeMenshen::start(|_, _| (503, String::new()));
    let host = Host::new(&menshen.url);
    let mut agent = host.daemon();
    menshen.wait_for(1, Duration::from_secs(5));
    agent.signal("TERM");
    let status = agent
        .wait_exit(Duration::from_secs(2))
        .expect("exits promptly");
    assert_eq!(status.code(), Some(0));
    assert!(menshen.requests().iter().all(|r| r.json() != json!([])));
}

#[test]
fn a_bad_configuration_is_refused_with_file_line_and_field() {
    let host = Host::new("http://127.0.0.1:9");
    let text = std::fs::read_to_string(&host.config)
        .unwrap()
        .replace("capacity = 100", "capacity = -3");
    std::fs::write(&host.config, text).unwrap();
    let out = host.once(&["--dry-run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let path = host.config.display().to_string();
    assert!(stderr.contains(&format!("{path}:25:")), "{stderr}");
    assert!(stderr.contains("capacity = -3"), "{stderr}");

    // No token anywhere: refused at start (but --dry-run needs none).
    let host = Host::new("http://127.0.0.1:9");
    std::fs::remove_file(host.dir.path().join("token")).unwrap();
    let out = agent_command(&["--config", host.config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("token"), "{stderr}");
}
