//! Whether the store answers, as its last round trips found: kept here so
//! that `/healthz`, `/readyz` and the metrics read it at once instead of
//! asking the database on the request path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::gauge::Gauge;

/// The store's state, updated by every inventory read, the change
/// listener and a periodic check ([`super::Store::check_health`]).
#[derive(Debug)]
pub struct StoreHealth {
    up: AtomicBool,
    /// `store_up` in the metrics: the same, as 1 or 0.
    gauge: Gauge,
    /// Why the last failed round trip failed, while the store is down.
    error: Mutex<Option<String>>,
}

impl Default for StoreHealth {
    /// Up: a store is made after a first successful connection.
    fn default() -> Self {
        let gauge = Gauge::default();
        gauge.set(1);
        StoreHealth {
            up: AtomicBool::new(true),
            gauge,
            error: Mutex::new(None),
        }
    }
}

impl StoreHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Why the store is down; `None` while it is up.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The gauge that follows [`StoreHealth::is_up`], for the registry.
    pub fn gauge(&self) -> Gauge {
        self.gauge.clone()
    }

    /// A round trip succeeded.
    pub fn succeeded(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("the store answers again");
        }
        self.gauge.set(1);
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// A round trip failed with `error` (which must not carry secrets:
    /// sqlx's errors name hosts and databases, never passwords).
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        let message = error.to_string();
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %message, "the store does not answer; serving the last snapshot");
        }
        self.gauge.set(0);
        *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_last_round_trip() {
        let health = StoreHealth::default();
        assert!(health.is_up());
        assert_eq!(health.gauge().get(), 1);
        health.failed(&"connection refused");
        assert!(!health.is_up());
        assert_eq!(health.gauge().get(), 0);
        assert_eq!(health.error().as_deref(), Some("connection refused"));
        health.succeeded();
        assert!(health.is_up());
        assert_eq!((health.gauge().get(), health.error()), (1, None));
    }
}
