//! Logs, and traces over OTLP.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::Request;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How traces are exported, if they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// The OTLP endpoint: the collector's base URL (for http/protobuf,
    /// `/v1/traces` is appended) or gRPC address. `None`: only
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` says where, used as it is.
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// OTLP over HTTP, protobuf bodies.
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    /// OTLP over gRPC.
    #[value(name = "grpc")]
    Grpc,
}

impl TraceSettings {
    /// Traces are on when an endpoint is given (flag or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
    /// is set, and `OTEL_SDK_DISABLED` is not `true`.
    pub fn enabled(&self) -> bool {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        let disabled =
            std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
        !disabled
            && (self
                .endpoint
                .as_deref()
                .is_some_and(|e| !e.trim().is_empty())
                || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    }
}

/// Whether spans are exported; when not, requests make none.
static TRACING: AtomicBool = AtomicBool::new(false);

pub(super) fn tracing_on() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// Flushes and stops the trace exporter when dropped.
#[must_use = "traces are flushed when this is dropped"]
pub struct TelemetryGuard(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("warning: flushing traces failed: {err}");
        }
    }
}

fn trace_provider(
    settings: &TraceSettings,
) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let endpoint = settings
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty());
    let exporter = match settings.protocol {
        OtlpProtocol::HttpProtobuf => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
            if let Some(base) = endpoint {
                builder =
                    builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
            }
            builder.build()?
        }
        OtlpProtocol::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            match endpoint {
                Some(endpoint) => builder.with_endpoint(endpoint).build()?,
                None => builder.build()?,
            }
        }
    };
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    // The sampler follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG.
    Ok(opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build())
}

/// Installs the global log subscriber. `RUST_LOG` overrides `default_level`.
pub fn init_logging(format: LogFormat, default_level: &str) {
    // Without traces there is nothing to flush.
    let _ = init(format, default_level, None);
}

/// Installs the global subscriber: logs to stderr and, when `traces` says
/// so, spans over OTLP. The gRPC exporter must be made inside a Tokio
/// runtime, which must outlive the returned guard.
pub fn init(
    format: LogFormat,
    default_level: &str,
    traces: Option<&TraceSettings>,
) -> TelemetryGuard {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},sqlx=warn")));
    // Colour only for a terminal, not for a file or a log collector.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let mut problem = None;
    let provider = match traces.filter(|t| t.enabled()) {
        Some(settings) => match trace_provider(settings) {
            Ok(provider) => Some(provider),
            Err(err) => {
                problem = Some(err);
                None
            }
        },
        None => None,
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("menshen"))
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("menshen", tracing::Level::INFO),
            )
    });
    // A second call (as in tests) keeps the first subscriber.
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init()
        .is_ok();
    if installed && provider.is_some() {
        TRACING.store(true, Ordering::Relaxed);
        if let Some(settings) = traces {
            tracing::info!(
                endpoint = settings.endpoint.as_deref().unwrap_or("(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)"),
                protocol = ?settings.protocol,
                "exporting traces over OTLP"
            );
        }
    }
    if let Some(err) = problem {
        tracing::warn!(error = %err, "traces are off: the OTLP exporter could not be set up");
    }
    TelemetryGuard(provider.filter(|_| installed))
}

/// The W3C trace context of a request's headers.
struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one request: named by method and matched route, a child of
/// the caller's `traceparent` if it sent one.
pub(super) fn request_span(request: &Request, method: &'static str, route: &str) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        network.protocol.version = ?request.version(),
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    let _ = span.set_parent(parent);
    span
}
