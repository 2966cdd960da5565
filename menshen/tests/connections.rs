//! The listener's hygiene over raw TCP: slow and idle connections are
//! closed, the connection cap holds while others are served, and HTTP/1.1
//! requests need exactly one Host.

mod common;

use std::time::Duration;

use common::{ProviderFile, TestServer, audit, eventually, get_json, sample};
use menshen::server::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: these tests are about what happens, not how fast.
const PATIENCE: Duration = Duration::from_secs(15);

async fn server(limits: ConnectionLimits) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = ProviderFile::new()
        .location("paris", "FR")
        .write(dir.path());
    let mut settings = menshen::config::Settings::with_data_dir(dir.path());
    settings.provider_file = Some(path);
    settings.connections = limits;
    (TestServer::start_with(settings).await, dir)
}

fn address(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    match tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out)).await {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

/// One request on a fresh connection, `Connection: close`; the whole answer.
async fn raw(server: &TestServer, request: &str) -> String {
    let mut stream = TcpStream::connect(address(server)).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    read_to_close(&mut stream).await.expect("an answer")
}

fn short(max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        max_connections,
    }
}

#[tokio::test]
async fn connections_without_a_complete_head_are_closed_while_others_are_served() {
    let (server, _dir) = server(short(100)).await;
    let mut silent = TcpStream::connect(address(&server)).await.unwrap();
    let mut half = TcpStream::connect(address(&server)).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut h2_preface_only = TcpStream::connect(address(&server)).await.unwrap();
    h2_preface_only
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // Meanwhile others are answered.
    get_json(&server.url("/healthz"), 200).await;
    for stream in [&mut silent, &mut half, &mut h2_preface_only] {
        let sent = read_to_close(stream).await.expect("closed by the server");
        assert!(!sent.contains("200 OK"), "{sent}");
    }
    get_json(&server.url("/healthz"), 200).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let (server, _dir) = server(short(100)).await;
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let sent = read_to_close(&mut stream).await.expect("closed once idle");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_refused() {
    let (server, dir) = server(short(100)).await;
    // A valid agent token, so that the body is read.
    let settings = menshen::config::Settings::with_data_dir(dir.path());
    let key = menshen::auth::SigningKey::load(&settings.signing_key, dir.path()).unwrap();
    let store = menshen::store::Store::connect(&settings.engine)
        .await
        .unwrap();
    let now = menshen::store::now_millis();
    store
        .create_agent("gw", "id", now, audit("agent.create", "agent/gw"))
        .await
        .unwrap();
    store.close().await;
    let token = key.mint_agent_token("gw", "id", now / 1000, 600);
    let mut stream = TcpStream::connect(address(&server)).await.unwrap();
    let head = format!(
        "PUT /api/5/agent/gateways HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n[{{\"host\""
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let sent = read_to_close(&mut stream)
        .await
        .expect("answered and closed");
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains(r#""error":"body_timeout""#), "{sent}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn at_the_cap_new_connections_wait_until_a_slot_frees() {
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_secs(2),
        ..short(2)
    };
    let (server, _dir) = server(limits).await;
    // Two connections that say nothing take both slots...
    let _a = TcpStream::connect(address(&server)).await.unwrap();
    let _b = TcpStream::connect(address(&server)).await.unwrap();
    let open = r#"menshen_http_connections_open{listener="public"}"#;
    eventually("both connections to be accepted", PATIENCE, || async {
        sample(&server.metrics().await, open) == Some(2.0)
    })
    .await;
    // ...so a third waits in the backlog: connected, but not answered yet.
    let mut third = TcpStream::connect(address(&server)).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut first)).await;
    assert!(early.is_err(), "answered beyond the cap");
    // Once the silent ones are closed by the header timeout, it is served.
    let sent = read_to_close(&mut third).await.expect("served");
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn http11_requests_need_exactly_one_host() {
    let (server, _dir) = server(menshen::server::DEFAULT_LIMITS).await;
    let none = raw(
        &server,
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(none.starts_with("HTTP/1.1 400"), "{none}");
    assert!(none.contains(r#""error":"invalid_host""#), "{none}");
    let two = raw(
        &server,
        "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    assert!(two.contains("exactly one Host"), "{two}");
    let one = raw(
        &server,
        "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(one.starts_with("HTTP/1.1 200"), "{one}");
    // HTTP/1.0 may leave it out.
    let old = raw(&server, "GET /healthz HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.0 200"), "{old}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_waits_for_requests_and_closes_idle_connections() {
    let (server, _dir) = server(menshen::server::DEFAULT_LIMITS).await;
    // An idle keep-alive connection does not hold the shutdown up.
    let mut idle = TcpStream::connect(address(&server)).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::timeout(PATIENCE, server.stop())
        .await
        .expect("stopped")
        .unwrap();
    assert!(read_to_close(&mut idle).await.is_some());
}
