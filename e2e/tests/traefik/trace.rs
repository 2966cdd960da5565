//! One trace across agent, Traefik, menshen and the store.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_agent_traefik_menshen_and_the_store() {
    let (Some(traefik_bin), Some(oteltap_bin)) = (traefik(), oteltap()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let otlp_port = free_tcp_port();
    let mut receiver = {
        let mut command = Command::new(&oteltap_bin);
        command
            .args(["--port", &otlp_port.to_string()])
            .stdout(Stdio::piped());
        OtlpReceiver::spawn(command)
    };
    let relay_port = free_tcp_port();
    let _relay = gunzip_relay(&oteltap_bin, relay_port, otlp_port);
    let (ca_cert, ca_key) = openssl_ca(dir.path());
    let (proxy_cert, proxy_key) = tls_certificate(dir.path(), &ca_cert, &ca_key, HOST, "127.0.0.1");
    let provider = provider_file().write(dir.path());
    let data = dir.path().join("data");
    let data_dir = path_str(&data);
    let port = free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let endpoint = format!("http://127.0.0.1:{otlp_port}");
    let menshen = Menshen::start_with_env(
        &[
            "--config",
            path_str(&provider),
            "--data-dir",
            data_dir,
            "--listen",
            &listen,
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "menshen-e2e"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let traefik = Traefik::start(
        &traefik_bin,
        dir.path(),
        &traefik_dynamic(&proxy_cert, &proxy_key, &[port], "/readyz"),
        // Traefik gzips what it exports, which oteltap does not read: it
        // goes through a small unzipping relay.
        &[
            format!("--tracing.otlp.http.endpoint=http://127.0.0.1:{relay_port}/v1/traces"),
            "--tracing.serviceName=traefik".into(),
        ],
    );
    let client = h2_client(&ca_cert, &traefik);
    assert!(routed(&client, &traefik, "/healthz").await);
    let token = menshen_cli(&["agent", "create", "ams1", "--data-dir", data_dir]);
    let agent_config = write_agent_config(
        dir.path(),
        &format!("https://127.0.0.1:{}", traefik.port),
        &token,
        "\n[host]\nname = \"ams1.vpn.test\"\nip_addr = \"127.0.0.1\"\nlocation = \"amsterdam\"\n",
    );
    let out = agent_command(&agent_config)
        .arg("--once")
        .env("RUST_LOG", "menshen_agent=debug")
        .env("SSL_CERT_FILE", &ca_cert)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let trace_id = log
        .split("trace_id=")
        .nth(1)
        .and_then(|rest| rest.get(..32))
        .unwrap_or_else(|| panic!("no trace id in the agent's log:\n{log}"))
        .to_owned();
    // A client with an invite token, which must not show in any span.
    let invite = "0123456789abcdef.s3cr3t-invite-secret-never-exported";
    client
        .get(traefik.url("/api/5/gateways"))
        .header("x-menshen-auth-token", invite)
        .send()
        .await
        .unwrap();

    // menshen's request span (over OTLP/HTTP) is a child of Traefik's span
    // (over gRPC), which continues the agent's traceparent; the store
    // transaction is a child of menshen's span.
    let is_request =
        |s: &Value| s["traceId"] == trace_id && s["name"] == "PUT /api/5/agent/gateways";
    let spans = receiver.spans_until(PATIENCE, |spans| {
        spans.iter().filter(|s| is_request(s)).any(|request| {
            spans
                .iter()
                .any(|s| s["name"] == "store.push" && s["parentSpanId"] == request["spanId"])
        }) && spans.iter().any(|s| s["name"] == "GET /api/5/gateways")
    });
    let of_trace: Vec<&Value> = spans.iter().filter(|s| s["traceId"] == trace_id).collect();
    let request = of_trace
        .iter()
        .find(|s| is_request(s))
        .unwrap_or_else(|| panic!("no menshen request span in {of_trace:#?}"));
    let parent_id = request["parentSpanId"].clone();
    let spans = receiver.spans_until(PATIENCE, |spans| {
        spans.iter().any(|s| s["spanId"] == parent_id)
    });
    let parent = spans
        .iter()
        .find(|s| s["spanId"] == parent_id)
        .unwrap_or_else(|| {
            panic!("menshen's parent {parent_id} is not among the spans: {spans:#?}")
        });
    assert_eq!(
        parent["traceId"],
        trace_id.as_str(),
        "Traefik continued the agent's trace"
    );
    assert_eq!(parent["kind"], 3, "Traefik's span towards menshen");
    let push = of_trace
        .iter()
        .find(|s| s["name"] == "store.push" && s["parentSpanId"] == request["spanId"])
        .unwrap_or_else(|| panic!("no store span under the request: {of_trace:#?}"));
    assert_eq!(push["kind"], 3, "a client span");
    let text = serde_json::to_string(&spans).unwrap();
    for secret in [token.as_str(), "s3cr3t-invite-secret-never-exported"] {
        assert!(!text.contains(secret), "a secret in the exported spans");
    }
    drop(menshen);
}

/// An HTTP relay that unzips OTLP/HTTP bodies for oteltap, with the Python
/// of oteltap's venv.
fn gunzip_relay(oteltap: &Path, port: u16, to: u16) -> KillOnDrop {
    let python = oteltap.with_file_name("python3");
    let python = if python.is_file() {
        python
    } else {
        PathBuf::from("python3")
    };
    let script = r#"
import gzip, sys, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
port, to = int(sys.argv[1]), int(sys.argv[2])
class Relay(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        req = urllib.request.Request(f"http://127.0.0.1:{to}{self.path}", data=body,
            headers={"Content-Type": self.headers.get("Content-Type", "application/x-protobuf")})
        with urllib.request.urlopen(req) as r:
            answer = r.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
    def log_message(self, *args):
        pass
HTTPServer(("127.0.0.1", port), Relay).serve_forever()
"#;
    let child = Command::new(python)
        .args(["-c", script, &port.to_string(), &to.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("python3 runs the relay");
    KillOnDrop(child)
}

/// oteltap, printing what it receives as NDJSON on stdout.
struct OtlpReceiver {
    _child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
    spans: Vec<Value>,
}

impl OtlpReceiver {
    fn spawn(mut command: Command) -> OtlpReceiver {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        OtlpReceiver {
            _child: KillOnDrop(child),
            lines,
            spans: Vec::new(),
        }
    }

    /// Every span received until `done` holds for them (or `timeout`).
    fn spans_until(&mut self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        while !done(&self.spans) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<Value>(&line)
                        && v.get("spanId").is_some()
                    {
                        self.spans.push(v);
                    }
                }
                Err(_) => break,
            }
        }
        self.spans.clone()
    }
}
