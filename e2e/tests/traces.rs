//! Traces over OTLP/gRPC to a real receiver (an in-process collector): a
//! span per request named by its route, continuing the caller's trace, with
//! the store's transaction beneath it. (OTLP/HTTP through Traefik: see
//! traefik.rs.)

use std::time::Duration;

use fake_opentelemetry_collector::FakeCollectorServer;
use menshen_e2e::Menshen;

#[tokio::test]
async fn requests_are_traced_over_grpc_continuing_the_callers_trace() {
    let mut collector = FakeCollectorServer::start().await.expect("collector");
    let endpoint = collector.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let config = menshen_e2e::provider::example();
    let menshen = Menshen::start_with_env(
        &[
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
        ],
    );
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let response = reqwest::Client::new()
        .get(format!("{}/api/5/gateways?cc=FR", menshen.url))
        .header("traceparent", format!("00-{trace_id}-{parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // The first spans are the start's inventory loads; wait for ours.
    let mut spans = Vec::new();
    for _ in 0..20 {
        spans.extend(collector.exported_spans(1, Duration::from_secs(1)).await);
        if spans.iter().any(|s| s.trace_id == trace_id) {
            break;
        }
    }
    let request = spans
        .iter()
        .find(|s| s.trace_id == trace_id)
        .unwrap_or_else(|| panic!("no span of the caller's trace in {spans:#?}"));
    assert_eq!(request.name, "GET /api/5/gateways");
    assert_eq!(request.parent_span_id, parent);
    assert_eq!(request.kind, "SPAN_KIND_SERVER");
    // The collector shows attribute values in their protobuf form.
    let attribute = |key: &str| request.attributes.get(key).cloned().unwrap_or_default();
    assert!(
        attribute("http.route").contains(r#""/api/5/gateways""#),
        "{request:#?}"
    );
    assert!(
        attribute("http.response.status_code").contains("IntValue(200)"),
        "{request:#?}"
    );
    // Snapshot reloads and store reads are traced too.
    assert!(
        spans.iter().any(|s| s.name == "store.load_inventory"),
        "{spans:#?}"
    );
    drop(menshen);
}
