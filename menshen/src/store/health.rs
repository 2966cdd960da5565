//! Whether the database answers, as a background check sees it, and when it
//! did not: writes are refused at once while it is down, and the outages
//! are kept so that pushed resources do not expire for want of heartbeats
//! nobody could store.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::{Store, now_millis};

/// How often the store is checked while it answers.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often while it does not, so that writes resume soon after it is back.
const DOWN_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// How long one check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
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

/// The store's reachability, shared by every clone of a [`Store`].
pub struct StoreHealth {
    up: AtomicBool,
    state: Mutex<HealthState>,
    /// Sees a new value when the store goes down or comes back.
    changes: watch::Sender<bool>,
}

struct HealthState {
    /// When the store last answered (unix ms).
    last_ok: i64,
    outages: Outages,
}

impl Default for StoreHealth {
    fn default() -> Self {
        StoreHealth {
            up: AtomicBool::new(true),
            state: Mutex::new(HealthState {
                last_ok: now_millis(),
                outages: Outages::default(),
            }),
            changes: watch::channel(true).0,
        }
    }
}

impl StoreHealth {
    /// Whether the store answered at the last check.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// The recent outages, the current one included.
    pub fn outages(&self) -> Outages {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .outages
            .clone()
    }

    /// A receiver that sees `true` when the store comes back and `false`
    /// when it goes away.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.changes.subscribe()
    }

    /// The store answered.
    pub fn reached(&self) {
        let now = now_millis();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.last_ok = now;
        if self.up.swap(true, Ordering::AcqRel) {
            return;
        }
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

    /// The store did not answer (a check, or a write, failed for want of
    /// a connection).
    pub fn unreachable(&self, why: &dyn std::fmt::Display) {
        if !self.up.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let start = state.last_ok;
        let outages = &mut state.outages.0;
        outages.push(Outage { start, end: None });
        if outages.len() > MAX_OUTAGES {
            outages.remove(0);
        }
        drop(state);
        tracing::warn!(
            error = %why,
            "the store does not answer: writes are refused (503), clients are served from the \
             last snapshot, and pushed resources do not expire until it is back"
        );
        self.changes.send_replace(false);
    }
}

impl Store {
    /// The store's reachability as the background check sees it.
    pub fn health(&self) -> &StoreHealth {
        &self.health
    }

    /// Checks the store every second (more often while it is down) until
    /// `shutdown` fires.
    pub async fn watch_health(&self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match tokio::time::timeout(CHECK_TIMEOUT, self.ping()).await {
                Ok(Ok(())) => self.health.reached(),
                Ok(Err(err)) => self.health.unreachable(&err),
                Err(_) => self.health.unreachable(&"no answer within a second"),
            }
            let pause = if self.health.is_up() {
                CHECK_INTERVAL
            } else {
                DOWN_CHECK_INTERVAL
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
        health.unreachable(&"test");
        health.unreachable(&"again");
        assert!(!health.is_up());
        let outages = health.outages();
        assert_eq!(outages.0.len(), 1);
        assert!(outages.ongoing() && outages.0[0].start <= before);
        health.reached();
        assert!(health.is_up() && !health.outages().ongoing());
        assert!(health.outages().0[0].end.unwrap() >= outages.0[0].start);
    }
}
