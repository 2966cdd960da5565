//! Public bridges shared out per client network (`--bridges-per-client`,
//! `--bridge-epoch`) and the bridge list's rate limit per network
//! (`--bridge-rate-limit`), over real HTTP.

use std::collections::BTreeSet;
use std::time::Duration;

use menshen::api::rate_limit::RateLimit;
use menshen::auth::{KeySource, SigningKey, invite};
use menshen::config::Settings;
use menshen::geo::client_ip::TrustedProxies;
use menshen::select::ring::EpochClock;
use menshen::store::{NewInvite, now_millis};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::common::{Backend, ProviderFile, TestServer, audit, on_each_backend, sorted_hosts};

on_each_backend!(
    a_network_keeps_its_few_bridges_across_requests_replicas_and_restarts,
    invite_holders_get_their_buckets_bridges_and_their_share,
);

const CERT: &str = "5eN3Pz88ukxJND/36TgCKMeeqTTSCcyJ/iU4bJsc8xZm8DRCO19h2g1QCFnAwc/642T+ug";
const FRIENDS_CERT: &str = "4zqGV73hiAsGdjvoHSpWU7ox5qHyvlps8nCf5mVuB/jwj02Tm9RXWsvtTSYvVQI/OGNhbg";

/// Bridges of the tests: `tcp` obfs4 bridges over TCP (`tcp-NN`) and `kcp`
/// obfs4 bridges over KCP (`kcp-NN`), every other one in Amsterdam and in
/// Paris; and a gateway.
fn provider_file(tcp: usize, kcp: usize) -> ProviderFile {
    let mut file = ProviderFile::new()
        .place("amsterdam")
        .place("paris")
        .gateway("gw.ams", "192.0.2.1", "amsterdam");
    let at = |i: usize| ["amsterdam", "paris"][i % 2];
    for i in 0..tcp {
        file = file.bridge(
            &format!("tcp-{i:02}"),
            &format!("192.0.2.{}", 10 + i),
            at(i),
            CERT,
        );
    }
    for i in 0..kcp {
        file = file.with(&format!(
            "\n[[bridge]]\nhost = \"kcp-{i:02}\"\nip_addr = \"198.51.100.{}\"\nlocation = \"{}\"\n\
             port = 4430\ntransport = \"kcp\"\ntype = \"obfs4\"\n\
             options = {{ cert = \"{CERT}\", iatMode = \"0\" }}",
            10 + i,
            at(i)
        ));
    }
    file
}

/// A fixed signing key, so that servers on different stores share it as
/// replicas do.
fn shared_key() -> KeySource {
    KeySource {
        inline: Some(SigningKey::generate_text()),
        files: Vec::new(),
    }
}

/// Settings serving `file` on `backend` behind a proxy at 127.0.0.1 (which
/// the tests' requests come from), with `key` and the epoch's `clock`.
fn behind_proxy(
    backend: &Backend,
    file: &ProviderFile,
    key: &KeySource,
    clock: &EpochClock,
) -> Settings {
    let mut settings = backend.serving(file);
    settings.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    settings.signing_key = key.clone();
    settings.bridge_clock = clock.clone();
    settings
}

/// [`behind_proxy`] for a server without replicas: a key of its own, and
/// the system's clock.
fn alone_behind_proxy(backend: &Backend, file: &ProviderFile) -> Settings {
    behind_proxy(backend, file, &shared_key(), &EpochClock::system())
}

/// What one bridge list answer was.
struct Seen {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Seen {
    fn hosts(&self) -> Vec<String> {
        sorted_hosts(&self.body)
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }
}

/// `GET path` as forwarded by the proxy for `client` (its
/// `X-Forwarded-For`), with more `headers`.
async fn get(server: &TestServer, path: &str, client: &str, headers: &[(&str, &str)]) -> Seen {
    let mut request = server
        .client
        .get(server.url(path))
        .header("x-forwarded-for", client);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Seen {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// The bridges `client` is given (200 asserted), sorted.
async fn bridges(server: &TestServer, query: &str, client: &str) -> Vec<String> {
    let seen = get(server, &format!("/api/5/bridges{query}"), client, &[]).await;
    assert_eq!(seen.status, 200, "{query} for {client}: {}", seen.body);
    seen.hosts()
}

/// An address in the `n`-th of the tests' /16 networks (10.n.0.0/16 and
/// 100.n.0.0/16 for n above 255).
fn network(n: u32) -> String {
    format!(
        "{}.{}.{}.{}",
        10 + 90 * (n / 256),
        n % 256,
        n % 7,
        1 + n % 200
    )
}

fn count(hosts: &[String], prefix: &str) -> usize {
    hosts.iter().filter(|h| h.starts_with(prefix)).count()
}

async fn a_network_keeps_its_few_bridges_across_requests_replicas_and_restarts(backend: Backend) {
    let file = provider_file(30, 10);
    let key = shared_key();
    let clock = EpochClock::manual(1_000_000 * 86_400 + 5);
    let server = TestServer::start_with(behind_proxy(&backend, &file, &key, &clock)).await;
    let name = backend.name();

    // One network: two of each transport, the same every time, whichever
    // address in the network asks.
    let first = get(&server, "/api/5/bridges", "203.0.113.7", &[]).await;
    assert_eq!(first.status, 200);
    let mine = first.hosts();
    assert_eq!(
        (count(&mine, "tcp-"), count(&mine, "kcp-")),
        (2, 2),
        "{mine:?}"
    );
    assert_eq!(first.header("cache-control"), "private, no-cache");
    for client in ["203.0.113.7", "203.0.113.200", "203.0.7.1"] {
        for _ in 0..3 {
            assert_eq!(
                bridges(&server, "", client).await,
                mine,
                "{client} on {name}"
            );
        }
    }
    // The same set, the same tag: revalidation gives 304.
    let etag = first.header("etag").to_owned();
    let again = get(
        &server,
        "/api/5/bridges",
        "203.0.9.9",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304, "{name}");
    assert_eq!(again.header("etag"), etag);
    for n in 0..4 {
        let client = network(n);
        let elsewhere = get(
            &server,
            "/api/5/bridges",
            &client,
            &[("if-none-match", &etag)],
        )
        .await;
        let theirs = bridges(&server, "", &client).await;
        let expected = if theirs == mine { 304 } else { 200 };
        assert_eq!(elsewhere.status, expected, "another set, another tag");
    }

    // Filters apply first: two of what they admit.
    let kcp = bridges(&server, "?tr=kcp", "203.0.113.7").await;
    assert_eq!((kcp.len(), count(&kcp, "kcp-")), (2, 2), "{kcp:?}");
    let paris = bridges(&server, "?loc=paris&tr=tcp", "203.0.113.7").await;
    assert_eq!(paris.len(), 2, "{paris:?}");
    for host in &paris {
        let n: usize = host["tcp-".len()..].parse().unwrap();
        assert_eq!(n % 2, 1, "{host} is in Paris");
    }

    // Other networks get other sets, and the union grows with them: each
    // network adds four at most.
    let mut seen = BTreeSet::new();
    let mut sets = BTreeSet::new();
    for n in 0..24 {
        let hosts = bridges(&server, "", &network(n)).await;
        assert_eq!((count(&hosts, "tcp-"), count(&hosts, "kcp-")), (2, 2));
        sets.insert(hosts.clone());
        let before = seen.len();
        seen.extend(hosts);
        assert!(seen.len() <= before + 4);
    }
    assert!(sets.len() >= 12, "{} sets among 24 networks", sets.len());
    assert!(
        seen.len() >= 20,
        "{} bridges seen from 24 networks",
        seen.len()
    );

    // The v3 description gives the same share.
    let v3 = get(&server, "/3/config/eip-service.json", "203.0.113.7", &[]).await;
    let mut v3_bridges: Vec<String> = v3.body["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["host"] != "gw.ams")
        .map(|g| g["host"].as_str().unwrap().to_owned())
        .collect();
    v3_bridges.sort();
    assert_eq!(v3_bridges, mine, "{name}");
    assert_eq!(v3.header("cache-control"), "private, no-cache");

    // A replica with the same key and bridges (here on a store of its own)
    // gives the same; one with another key does not.
    let other = Backend::sqlite();
    let replica = TestServer::start_with(behind_proxy(&other, &file, &key, &clock)).await;
    let stranger_backend = Backend::sqlite();
    let stranger = TestServer::start_with(behind_proxy(
        &stranger_backend,
        &file,
        &shared_key(),
        &clock,
    ))
    .await;
    let mut differ = 0;
    for n in 0..8 {
        let client = network(n);
        let here = bridges(&server, "", &client).await;
        assert_eq!(bridges(&replica, "", &client).await, here, "{client}");
        differ += usize::from(bridges(&stranger, "", &client).await != here);
    }
    assert!(
        differ >= 4,
        "another key shares out otherwise: {differ} of 8"
    );

    // A new epoch shares out afresh; within one, nothing changes.
    let before: Vec<_> = shares(&server, 8).await;
    clock.set(1_000_000 * 86_400 + 86_399);
    assert_eq!(shares(&server, 8).await, before, "the same epoch");
    clock.set(1_000_001 * 86_400);
    let after: Vec<_> = shares(&server, 8).await;
    let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!(changed >= 6, "{changed} of 8 networks changed bridges");
    for hosts in &after {
        assert_eq!((count(hosts, "tcp-"), count(hosts, "kcp-")), (2, 2));
    }
    assert_eq!(shares(&replica, 8).await, after, "replicas change together");

    // A restart on the same store and key gives the same.
    let settings = server.settings.clone();
    server.stop().await.unwrap();
    let restarted = TestServer::start_with(settings).await;
    assert_eq!(shares(&restarted, 8).await, after, "{name} after a restart");
}

/// The bridges of the first `n` test networks, one list each.
async fn shares(server: &TestServer, n: u32) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for i in 0..n {
        all.push(bridges(server, "", &network(i)).await);
    }
    all
}

/// [`get`] for a client holding the invite `token`.
async fn get_invited(server: &TestServer, path: &str, client: &str, token: &str) -> Seen {
    get(server, path, client, &[("x-menshen-auth-token", token)]).await
}

async fn invite_holders_get_their_buckets_bridges_and_their_share(backend: Backend) {
    let file = provider_file(10, 0)
        .bridge("friends-1", "192.0.2.100", "amsterdam", FRIENDS_CERT)
        .with("bucket = \"friends\"")
        .bridge("friends-2", "192.0.2.101", "paris", FRIENDS_CERT)
        .with("bucket = \"friends\"")
        .bridge("friends-3", "192.0.2.102", "paris", FRIENDS_CERT)
        .with("bucket = \"friends\"");
    let mut settings = alone_behind_proxy(&backend, &file);
    // On SQLite another process's change is seen at the periodic reload.
    settings.reload_interval = Duration::from_millis(200);
    let server = TestServer::start_with(settings).await;
    let new = invite::generate();
    let store = backend.store().await;
    store
        .create_invites(
            &[NewInvite {
                id: new.id.clone(),
                secret_hash: new.secret_hash.clone(),
                buckets: vec!["friends".into()],
                expires_millis: None,
            }],
            now_millis(),
            audit("invite.create", "invites"),
        )
        .await
        .unwrap();
    store.close().await;
    let token = new.token;
    // The invite reaches the server's snapshot at once on Postgres, at the
    // next reload on SQLite: wait until it is accepted.
    let client = "203.0.113.7";
    let invited = crate::common::eventually(
        format_args!("the invite to be accepted on {}", backend.name()),
        crate::common::PATIENCE,
        || async {
            let seen = get_invited(&server, "/api/5/bridges", client, &token).await;
            if seen.header("x-menshen-auth-token-status") == "accepted" {
                Ok(seen)
            } else {
                Err(seen.header("x-menshen-auth-token-status").to_owned())
            }
        },
    )
    .await;
    let anonymous = bridges(&server, "", client).await;
    assert_eq!(anonymous.len(), 2, "{anonymous:?}");
    assert_eq!(count(&anonymous, "friends-"), 0);
    let mut expected = anonymous.clone();
    expected.extend(["friends-1", "friends-2", "friends-3"].map(String::from));
    expected.sort();
    assert_eq!(
        invited.hosts(),
        expected,
        "all of the bucket, and the share"
    );
    // Filters apply to both.
    let paris = get_invited(&server, "/api/5/bridges?loc=paris", client, &token).await;
    let hosts = paris.hosts();
    assert_eq!(count(&hosts, "friends-"), 2, "{hosts:?}");
    assert_eq!(count(&hosts, "tcp-"), 2, "{hosts:?}");
}

#[tokio::test]
async fn zero_per_client_gives_every_bridge_to_everyone() {
    let backend = Backend::sqlite();
    let mut settings = alone_behind_proxy(&backend, &provider_file(12, 4));
    settings.bridges_per_client = 0;
    let server = TestServer::start_with(settings).await;
    for n in 0..4 {
        let seen = get(&server, "/api/5/bridges", &network(n), &[]).await;
        let hosts = seen.hosts();
        assert_eq!((count(&hosts, "tcp-"), count(&hosts, "kcp-")), (12, 4));
        assert_eq!(seen.header("cache-control"), "no-cache");
    }
}

#[tokio::test]
async fn the_rate_limit_counts_networks_and_answers_429_with_retry_after() {
    let backend = Backend::sqlite();
    let mut settings = alone_behind_proxy(&backend, &provider_file(6, 0));
    settings.bridge_rate_limit = Some(RateLimit {
        rate: "2/h".parse().unwrap(),
        burst: 2,
    });
    let server = TestServer::start_with(settings).await;
    for client in ["203.0.113.7", "203.0.5.5"] {
        assert_eq!(
            get(&server, "/api/5/bridges", client, &[]).await.status,
            200
        );
    }
    // A third from the same /16, whatever the address.
    for client in ["203.0.113.7", "203.0.200.1"] {
        let refused = get(&server, "/api/5/bridges?tr=tcp", client, &[]).await;
        assert_eq!(refused.status, 429, "{client}");
        let retry: u64 = refused.header("retry-after").parse().unwrap();
        assert!((1..=1800).contains(&retry), "Retry-After: {retry}");
        assert!(
            refused
                .header("content-type")
                .starts_with("application/json")
        );
        assert_eq!(refused.body["error"], "rate_limited");
        let message = refused.body["message"].as_str().unwrap();
        assert!(
            message.contains("bridge lists from this network"),
            "{message}"
        );
    }
    // Another network, and the other lists, are not limited.
    assert_eq!(
        get(&server, "/api/5/bridges", "203.1.0.1", &[])
            .await
            .status,
        200
    );
    for _ in 0..3 {
        let gateways = get(&server, "/api/5/gateways", "203.0.113.7", &[]).await;
        assert_eq!(gateways.status, 200);
    }
    // The v3 service description lists bridges too: it draws on the same
    // allowance, whichever route comes first.
    let v3 = "/3/config/eip-service.json";
    assert_eq!(get(&server, v3, "203.2.0.1", &[]).await.status, 200);
    assert_eq!(
        get(&server, "/api/5/bridges", "203.2.0.2", &[])
            .await
            .status,
        200
    );
    for path in [v3, "/api/5/bridges"] {
        let refused = get(&server, path, "203.2.0.3", &[]).await;
        assert_eq!(refused.status, 429, "{path}");
        assert_eq!(refused.body["error"], "rate_limited", "{path}");
        assert!(!refused.header("retry-after").is_empty(), "{path}");
    }
}

#[tokio::test]
async fn the_network_is_the_one_a_trusted_proxy_names() {
    let file = provider_file(30, 0);
    let key = shared_key();
    let clock = EpochClock::system();
    let trusting_backend = Backend::sqlite();
    let trusting =
        TestServer::start_with(behind_proxy(&trusting_backend, &file, &key, &clock)).await;
    let wary_backend = Backend::sqlite();
    let mut settings = behind_proxy(&wary_backend, &file, &key, &clock);
    settings.trusted_proxies = TrustedProxies::default();
    let wary = TestServer::start_with(settings).await;

    // Trusted: X-Forwarded-For decides, so networks differ.
    let mut sets = BTreeSet::new();
    for n in 0..8 {
        sets.insert(bridges(&trusting, "", &network(n)).await);
    }
    assert!(sets.len() >= 4, "{} sets among 8 networks", sets.len());
    // A client may prepend what it likes: the proxy's last word counts.
    let forged = format!("{}, 203.0.113.7", network(3));
    assert_eq!(
        bridges(&trusting, "", &forged).await,
        bridges(&trusting, "", "203.0.113.7").await
    );

    // Not trusted: the header is ignored and the peer (127.0.0.1) is the
    // client, whatever it says: the share of 127.0.0.0/16.
    let peer = bridges(&trusting, "", "127.0.0.9").await;
    for n in 0..8 {
        assert_eq!(
            bridges(&wary, "", &network(n)).await,
            peer,
            "{}",
            network(n)
        );
    }
}
