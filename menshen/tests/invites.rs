//! Invite-only gateways and bridges (buckets) and the invite tokens that
//! show them, over real HTTP, on every backend.

mod common;

use std::time::Duration;

use common::{Backend, PATIENCE, ProviderFile, TestServer, audit, eventually, on_each_backend};
use menshen::auth::invite;
use menshen::store::{InviteSelection, NewInvite, Store, now_millis};

const FRIENDS_CERT: &str = "4zqGV73hiAsGdjvoHSpWU7ox5qHyvlps8nCf5mVuB/jwj02Tm9RXWsvtTSYvVQI/OGNhbg";
const PUBLIC_CERT: &str = "5eN3Pz88ukxJND/36TgCKMeeqTTSCcyJ/iU4bJsc8xZm8DRCO19h2g1QCFnAwc/642T+ug";

/// Public gateways and bridges, and invite-only ones of two buckets.
fn provider_file() -> ProviderFile {
    ProviderFile::new()
        .location("amsterdam", "NL")
        .location("hidden", "IS")
        .gateway("public.ams", "192.0.2.1", "amsterdam")
        .gateway("friends.hid", "192.0.2.50", "hidden")
        .with("bucket = \"friends\"")
        .gateway("family.ams", "192.0.2.60", "amsterdam")
        .with("bucket = \"family\"")
        .bridge("public-br.ams", "192.0.2.9", "amsterdam", PUBLIC_CERT)
        .bridge("friends-br.hid", "192.0.2.51", "hidden", FRIENDS_CERT)
        .with("bucket = \"friends\"")
}

on_each_backend!(
    buckets_are_listed_only_for_a_granting_token,
    tokens_are_stored_only_as_hashes_and_uses_are_recorded,
);

const STATUS: &str = "x-menshen-auth-token-status";

struct Harness {
    backend: Backend,
    server: TestServer,
    client: reqwest::Client,
}

/// A response as the tests look at it.
#[derive(Debug)]
struct Seen {
    status: u16,
    token_status: Option<String>,
    vary: Option<String>,
    body: String,
}

impl Seen {
    /// The hosts listed, sorted: the order is not what these tests are about.
    fn hosts(&self) -> Vec<String> {
        common::sorted_hosts(&serde_json::from_str(&self.body).unwrap())
    }
}

impl Harness {
    async fn start(backend: Backend) -> Harness {
        let mut settings = backend.serving(provider_file());
        // On SQLite another process's change is seen at the periodic reload.
        settings.reload_interval = Duration::from_millis(200);
        let server = TestServer::start_with(settings).await;
        Harness {
            backend,
            server,
            client: reqwest::Client::new(),
        }
    }

    async fn store(&self) -> Store {
        Store::connect(&self.backend.engine()).await.unwrap()
    }

    /// Creates an invite for `buckets` the way `menshen invite create`
    /// does, and returns its token.
    async fn invite(&self, buckets: &[&str], expires_millis: Option<i64>) -> String {
        let new = invite::generate();
        let store = self.backend.store().await;
        store
            .create_invites(
                &[NewInvite {
                    id: new.id.clone(),
                    secret_hash: new.secret_hash.clone(),
                    buckets: buckets.iter().map(|b| b.to_string()).collect(),
                    expires_millis,
                }],
                now_millis(),
                audit("invite.create", "invites"),
            )
            .await
            .unwrap();
        store.close().await;
        new.token
    }

    async fn delete(&self, which: InviteSelection<'_>) -> u64 {
        let store = self.backend.store().await;
        let deleted = store
            .delete_invites(which, audit("invite.delete", "invites"))
            .await
            .unwrap();
        store.close().await;
        deleted
    }

    async fn get_raw(&self, path: &str, token: Option<&[u8]>) -> Seen {
        let mut request = self.client.get(self.server.url(path));
        if let Some(token) = token {
            request = request.header(
                "x-menshen-auth-token",
                reqwest::header::HeaderValue::from_bytes(token).unwrap(),
            );
        }
        let response = request.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let token_status = header(STATUS);
        let vary = header("vary");
        Seen {
            status: response.status().as_u16(),
            token_status,
            vary,
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Seen {
        self.get_raw(path, token.map(str::as_bytes)).await
    }

    /// Polls until `token` gets the status `want` (snapshots reload
    /// asynchronously).
    async fn wait_status(&self, token: &str, want: &str) {
        let what = format_args!("{}: the token to become {want}", self.backend.name());
        eventually(what, PATIENCE, || async {
            let seen = self.get("/api/5/gateways", Some(token)).await;
            if seen.token_status.as_deref() == Some(want) {
                Ok(())
            } else {
                Err(seen)
            }
        })
        .await;
    }
}

async fn buckets_are_listed_only_for_a_granting_token(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend).await;
    let friends = h.invite(&["friends"], None).await;
    let family = h.invite(&["family"], None).await;
    let both = h.invite(&["friends", "family"], None).await;
    let expired = h.invite(&["friends"], Some(now_millis() - 1_000)).await;
    // The last accepted one: a reload between two creations could show
    // the first without the others.
    h.wait_status(&both, "accepted").await;

    // Anonymous: the public lists, nothing said about tokens.
    let seen = h.get("/api/5/gateways", None).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.hosts(), ["public.ams"], "{name}");
    assert_eq!(seen.token_status, None);
    assert_eq!(seen.vary.as_deref(), Some("x-menshen-auth-token"));
    let seen = h.get("/api/5/bridges", None).await;
    assert_eq!(seen.hosts(), ["public-br.ams"], "{name}");
    // An empty header is no token.
    let seen = h.get("/api/5/gateways", Some(" ")).await;
    assert_eq!(
        (seen.hosts(), seen.token_status),
        (vec!["public.ams".to_string()], None)
    );

    // A granting token: its buckets too, and the header says so.
    let seen = h.get("/api/5/gateways", Some(&friends)).await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.hosts(), ["friends.hid", "public.ams"], "{name}");
    assert_eq!(seen.token_status.as_deref(), Some("accepted"));
    let seen = h.get("/api/5/bridges", Some(&friends)).await;
    assert_eq!(seen.hosts(), ["friends-br.hid", "public-br.ams"], "{name}");
    assert_eq!(seen.token_status.as_deref(), Some("accepted"));
    // Filters still apply.
    let seen = h.get("/api/5/gateways?loc=hidden", Some(&friends)).await;
    assert_eq!(seen.hosts(), ["friends.hid"], "{name}");

    // A token for another bucket does not show this one.
    let seen = h.get("/api/5/gateways", Some(&family)).await;
    assert_eq!(seen.hosts(), ["family.ams", "public.ams"], "{name}");
    assert_eq!(seen.token_status.as_deref(), Some("accepted"));
    let seen = h.get("/api/5/bridges", Some(&family)).await;
    assert_eq!(seen.hosts(), ["public-br.ams"], "{name}");
    let seen = h.get("/api/5/gateways", Some(&both)).await;
    assert_eq!(
        seen.hosts(),
        ["family.ams", "friends.hid", "public.ams"],
        "{name}"
    );

    // Not accepted: the public list, 200, and the header says so.
    let (friends_id, friends_secret) = invite::split(&friends).unwrap();
    let (_, family_secret) = invite::split(&family).unwrap();
    let unknown = invite::generate().token;
    let wrong_secret = format!("{friends_id}.{family_secret}");
    let long = "x".repeat(4000);
    let rejected: [&[u8]; 9] = [
        expired.as_bytes(),
        unknown.as_bytes(),
        wrong_secret.as_bytes(),
        friends_id.as_bytes(),
        friends_secret.as_bytes(),
        b"garbage",
        b"Bearer x",
        long.as_bytes(),
        b"caf\xc3\xa9",
    ];
    for token in rejected {
        let label = String::from_utf8_lossy(token);
        for (path, public) in [
            ("/api/5/gateways", "public.ams"),
            ("/api/5/bridges", "public-br.ams"),
        ] {
            let seen = h.get_raw(path, Some(token)).await;
            assert_eq!(seen.status, 200, "{name}: {label}");
            assert_eq!(seen.hosts(), [public], "{name}: {label}");
            assert_eq!(
                seen.token_status.as_deref(),
                Some("rejected"),
                "{name}: {label}"
            );
        }
    }

    // The OpenVPN configuration lists the same gateways.
    let config = "/api/5/openvpn/config?loc=hidden";
    let seen = h.get(config, None).await;
    assert_eq!(seen.status, 503, "{name}: only invite-only gateways there");
    let seen = h.get(config, Some(&friends)).await;
    assert_eq!(seen.status, 200, "{name}: {}", seen.body);
    assert!(seen.body.contains("\nremote 192.0.2.50 1194 udp\n"));
    assert_eq!(seen.token_status.as_deref(), Some("accepted"));
    let seen = h.get(config, Some(&expired)).await;
    assert_eq!(seen.status, 503, "{name}");
    assert_eq!(seen.token_status.as_deref(), Some("rejected"));
    let seen = h.get("/api/autoconf", Some(&unknown)).await;
    assert_eq!(seen.status, 200, "{name}");
    assert!(seen.body.contains("\nremote 192.0.2.1 1194 udp\n"));
    assert!(!seen.body.contains("192.0.2.50"));
    assert!(!seen.body.contains("192.0.2.60"));
    assert_eq!(seen.token_status.as_deref(), Some("rejected"));

    // Deleted by id: hidden again.
    assert_eq!(h.delete(InviteSelection::Id(friends_id)).await, 1);
    h.wait_status(&friends, "rejected").await;
    let seen = h.get("/api/5/gateways", Some(&friends)).await;
    assert_eq!(seen.hosts(), ["public.ams"], "{name}");
    let seen = h.get("/api/5/bridges", Some(&friends)).await;
    assert_eq!(seen.hosts(), ["public-br.ams"], "{name}");
    // The others are untouched.
    let seen = h.get("/api/5/gateways", Some(&both)).await;
    assert_eq!(seen.hosts().len(), 3, "{name}");

    // Deleted by bucket: every invite granting it, whatever else it grants.
    assert_eq!(h.delete(InviteSelection::Bucket("family")).await, 2);
    h.wait_status(&family, "rejected").await;
    h.wait_status(&both, "rejected").await;
    let seen = h.get("/api/5/gateways", Some(&both)).await;
    assert_eq!(seen.hosts(), ["public.ams"], "{name}");
    assert_eq!(h.delete(InviteSelection::Bucket("family")).await, 0);

    let store = h.store().await;
    let left = store.list_invites().await.unwrap();
    store.close().await;
    assert_eq!(left.len(), 1, "{name}: only the expired one");
    assert_eq!(left[0].buckets, ["friends"]);
    assert_eq!(h.delete(InviteSelection::All).await, 1);
}

#[tokio::test]
async fn on_postgres_changes_reach_the_server_without_waiting_for_a_reload() {
    // On SQLite another process's writes are seen at the periodic
    // reload (see above); Postgres announces them.
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let mut settings = backend.serving(provider_file());
    settings.reload_interval = Duration::from_secs(3600);
    let server = TestServer::start_with(settings).await;
    let h = Harness {
        backend,
        server,
        client: reqwest::Client::new(),
    };
    let token = h.invite(&["friends"], None).await;
    h.wait_status(&token, "accepted").await;
    let (id, _) = invite::split(&token).unwrap();
    assert_eq!(h.delete(InviteSelection::Id(id)).await, 1);
    h.wait_status(&token, "rejected").await;
}

/// Every byte the store keeps: the SQLite files, or the text of every row
/// of every table on Postgres.
async fn everything_stored(backend: &Backend) -> Vec<u8> {
    match backend {
        Backend::Sqlite(dir) => {
            let mut all = Vec::new();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                let path = entry.unwrap().path();
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                if file.starts_with("menshen.sqlite") {
                    all.extend(std::fs::read(&path).unwrap());
                }
            }
            all
        }
        Backend::Postgres(db, _) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let mut all = Vec::new();
            for (table,) in tables {
                let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM \"{table}\" t"
                )))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                for (row,) in rows {
                    all.extend(row.into_bytes());
                    all.push(b'\n');
                }
            }
            let _ = conn.close().await;
            all
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn tokens_are_stored_only_as_hashes_and_uses_are_recorded(backend: Backend) {
    let name = backend.name();
    let h = Harness::start(backend).await;
    let used = h.invite(&["friends"], None).await;
    let unused = h.invite(&["friends"], None).await;
    h.wait_status(&used, "accepted").await;
    let before = now_millis();
    for _ in 0..3 {
        h.get("/api/5/bridges", Some(&used)).await;
    }

    let stored = everything_stored(&h.backend).await;
    for token in [&used, &unused] {
        let (id, secret) = invite::split(token).unwrap();
        assert!(contains(&stored, id), "{name}: the id is there");
        assert!(!contains(&stored, secret), "{name}: a secret is stored");
        assert!(!contains(&stored, token), "{name}: a token is stored");
    }

    // Uses are written when the server stops (and every few seconds).
    let Harness {
        backend, server, ..
    } = h;
    server.stop().await.unwrap();
    let store = Store::connect(&backend.engine()).await.unwrap();
    let invites = store.list_invites().await.unwrap();
    store.close().await;
    let find = |token: &str| {
        let (id, _) = invite::split(token).unwrap();
        invites.iter().find(|i| i.id == id).unwrap().clone()
    };
    let last = find(&used).last_used_millis.expect("used: recorded");
    assert!(
        last >= before && last <= now_millis(),
        "{name}: {last} not in [{before}, now]"
    );
    assert_eq!(find(&unused).last_used_millis, None, "{name}");

    let stored = everything_stored(&backend).await;
    for token in [&used, &unused] {
        let (_, secret) = invite::split(token).unwrap();
        assert!(!contains(&stored, secret), "{name}: a secret is stored");
    }
}
