//! Whether the store answers, as its last round trips found, and when it
//! did not. Kept here so that `/healthz`, `/readyz` and the metrics read it
//! at once instead of asking the database on the request path; writes are
//! refused at once while it is down; and the outages are kept so that
//! pushed resources do not expire for want of heartbeats nobody could
//! store.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use super::{Store, now_millis};

/// How long one check may take.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the store is checked while it answers, by default.
pub const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often while it does not, so that writes resume soon after it is back.
const DOWN_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Outages kept (the oldest are forgotten first).
const MAX_OUTAGES: usize = 32;

/// A span of time during which the store could not be reached, in unix ms
/// of this process's clock; `end` is `None` while it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When the store last answered before the outage.
    pub start: i64,
    pub end: Option<i64>,
}

/// The outages of the store that are recent enough to matter for expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outages(pub Vec<Outage>);

impl Outages {
    /// Whether an outage is going on.
    pub fn ongoing(&self) -> bool {
        self.0.last().is_some_and(|o| o.end.is_none())
    }

    /// Milliseconds between `since` and `now` during which the store was
    /// unreachable: time that does not count towards a resource's TTL.
    pub fn frozen_between(&self, since: i64, now: i64) -> i64 {
        self.0
            .iter()
            .map(|o| {
                let start = o.start.max(since);
                let end = o.end.unwrap_or(now).min(now);
                (end - start).max(0)
            })
            .sum()
    }
}

/// The store's state, shared by every clone of a [`Store`]; updated by
/// every inventory read, the change listener, writes that found no
/// database and a periodic check ([`Store::watch_health`]).
#[derive(Debug)]
pub struct StoreHealth {
    up: AtomicBool,
    /// `menshen_store_up` in the metrics: the same, as 1 or 0.
    gauge: Gauge,
    state: Mutex<HealthState>,
    /// Sees `true` when the store comes back and `false` when it goes away.
    changes: watch::Sender<bool>,
}

#[derive(Debug)]
struct HealthState {
    /// When the store last answered (unix ms).
    last_ok: i64,
    /// Why the last failed round trip failed, while the store is down.
    error: Option<String>,
    outages: Outages,
}

impl Default for StoreHealth {
    /// Up: a store is made after a first successful connection.
    fn default() -> Self {
        let gauge = Gauge::default();
        gauge.set(1);
        StoreHealth {
            up: AtomicBool::new(true),
            gauge,
            state: Mutex::new(HealthState {
                last_ok: now_millis(),
                error: None,
                outages: Outages::default(),
            }),
            changes: watch::channel(true).0,
        }
    }
}

impl StoreHealth {
    /// Whether the last round trip found the store answering.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Why the store is down; `None` while it is up.
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// The gauge that follows [`StoreHealth::is_up`], for the registry.
    pub fn gauge(&self) -> Gauge {
        self.gauge.clone()
    }

    /// The recent outages, the current one included.
    pub fn outages(&self) -> Outages {
        self.lock().outages.clone()
    }

    /// A receiver that sees `true` when the store comes back and `false`
    /// when it goes away.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A round trip succeeded.
    pub fn succeeded(&self) {
        let now = now_millis();
        let mut state = self.lock();
        state.last_ok = now;
        if self.up.swap(true, Ordering::AcqRel) {
            return;
        }
        state.error = None;
        self.gauge.set(1);
        if let Some(outage) = state.outages.0.last_mut() {
            outage.end = Some(now);
            tracing::warn!(
                after_ms = now - outage.start,
                "the store answers again; writes are accepted"
            );
        }
        drop(state);
        self.changes.send_replace(true);
    }

    /// A round trip failed with `why` (which must not carry secrets:
    /// sqlx's errors name hosts and databases, never passwords).
    pub fn failed(&self, why: &dyn std::fmt::Display) {
        let message = why.to_string();
        let mut state = self.lock();
        state.error = Some(message.clone());
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        self.gauge.set(0);
        let start = state.last_ok;
        let outages = &mut state.outages.0;
        outages.push(Outage { start, end: None });
        if outages.len() > MAX_OUTAGES {
            outages.remove(0);
        }
        drop(state);
        tracing::warn!(
            error = %message,
            "the store does not answer: writes are refused (503), clients are served from the \
             last snapshot, and pushed resources do not expire until it is back"
        );
        self.changes.send_replace(false);
    }
}

impl Store {
    /// Whether the store answers, as its last round trips found.
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Checks every `interval` that the store answers (within
    /// [`PING_TIMEOUT`]; every 200 ms while it does not, so that writes
    /// resume soon after it is back) and notes it in [`Store::health`],
    /// until `shutdown` fires. Inventory reads, writes and the change
    /// listener note their outcomes too; this covers quiet times.
    pub async fn watch_health(&self, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            match tokio::time::timeout(PING_TIMEOUT, self.ping()).await {
                Ok(Ok(())) => self.health.succeeded(),
                Ok(Err(err)) => self.health.failed(&format_args!("{err:#}")),
                Err(_) => self.health.failed(&format_args!(
                    "no answer within {} s",
                    PING_TIMEOUT.as_secs()
                )),
            }
            let pause = if self.health.is_up() {
                interval
            } else {
                interval.min(DOWN_CHECK_INTERVAL)
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Whether `err` says the database cannot be reached (or cannot take
/// writes now), rather than that a request was wrong.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // connection exceptions, operator intervention (shutdown,
            // cannot connect now), too many connections, a database that
            // does not take connections, a read-only standby after a failover
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code == "55000"
                || code == "25006"
        }),
        _ => false,
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

    #[test]
    fn frozen_time_is_the_part_of_outages_after_the_last_heartbeat() {
        let outages = Outages(vec![
            Outage {
                start: 100,
                end: Some(200),
            },
            Outage {
                start: 500,
                end: None,
            },
        ]);
        assert!(outages.ongoing());
        // seen before both: all of the first, the second so far
        assert_eq!(outages.frozen_between(0, 700), 100 + 200);
        // seen during the first (through another replica): the rest of it
        assert_eq!(outages.frozen_between(150, 700), 50 + 200);
        // seen after both started
        assert_eq!(outages.frozen_between(600, 700), 100);
        assert_eq!(Outages::default().frozen_between(0, 700), 0);
    }

    #[test]
    fn an_outage_runs_from_the_last_answer_to_the_next() {
        let health = StoreHealth::default();
        assert!(health.is_up());
        let before = now_millis();
        health.failed(&"test");
        health.failed(&"again");
        assert!(!health.is_up());
        assert_eq!(health.error().as_deref(), Some("again"));
        let outages = health.outages();
        assert_eq!(outages.0.len(), 1);
        assert!(outages.ongoing() && outages.0[0].start <= before);
        health.succeeded();
        assert!(health.is_up() && !health.outages().ongoing());
        assert!(health.outages().0[0].end.unwrap() >= outages.0[0].start);
    }
}
