//! Logs, metrics and traces.
//!
//! Traces go out over OTLP when an endpoint is configured (the standard
//! `OTEL_*` variables, or flags): a span per request named by its matched
//! route (`GET /api/5/gateways`), a child of the caller's W3C `traceparent`
//! (from Traefik, or an agent), with child spans for store transactions and
//! snapshot rebuilds. Attributes never hold tokens, invite secrets, query
//! strings or client addresses.

mod metrics;
mod traces;

pub use metrics::*;
pub use traces::*;
