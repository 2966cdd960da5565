//! The agent's loop: look at the local state every `check_interval`, push it
//! at every heartbeat (`interval` ±10 %) and at once when it changed, retry
//! failed pushes, and stop when told to.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::backoff;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::push::{PushError, Pusher};
use crate::report::{self, Observation, Report};

/// How long the withdrawal on exit may take at most.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs until `shutdown` completes; then, if configured, withdraws this
/// agent's resources before returning. What it sees and does is kept in
/// `metrics`.
pub async fn run(
    config: Arc<Config>,
    pusher: Pusher,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut state = State::default();
    let mut next_push = Instant::now();
    loop {
        let obs = tokio::select! {
            biased;
            () = &mut shutdown => break,
            obs = report::observe(&config) => obs,
        };
        state.log_health(&obs);
        metrics.record_observation(&obs);
        let now = Instant::now();
        let changed = state.failures == 0
            && state
                .last_sent
                .as_ref()
                .is_some_and(|last| report::changed(last, &obs.report, config.load_step));
        if now >= next_push || changed {
            if changed {
                debug!("local state changed; pushing now");
            }
            let result = tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = pusher.push(&obs.report) => r,
            };
            metrics.record_push(result.is_ok());
            next_push = Instant::now() + state.after_push(&config, obs.report, result);
        }
        let wake = next_push.min(Instant::now() + config.check_interval);
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = tokio::time::sleep_until(wake) => {}
        }
    }
    info!("stopping");
    if config.withdraw_on_exit {
        let timeout = WITHDRAW_TIMEOUT.min(config.request_timeout.max(Duration::from_secs(1)));
        match tokio::time::timeout(timeout, pusher.withdraw()).await {
            Ok(Ok(())) => info!("withdrew this agent's gateways and bridges from menshen"),
            Ok(Err(e)) => warn!("could not withdraw from menshen: {e}"),
            Err(_) => warn!(
                "could not withdraw from menshen within {}",
                humantime::format_duration(timeout)
            ),
        }
    }
}

#[derive(Default)]
struct State {
    /// What menshen last accepted.
    last_sent: Option<Report>,
    /// Consecutive failed pushes.
    failures: u32,
    /// Consecutive transient failures (they alone drive the backoff).
    transient: u32,
    /// Last known problem of each resource (None = healthy), to log changes only.
    health: HashMap<String, Option<String>>,
    left_out: Vec<String>,
}

impl State {
    /// Logs resources whose health changed since the last look.
    fn log_health(&mut self, obs: &Observation) {
        for (name, problem) in &obs.health {
            let before = self.health.get(name);
            if before == Some(problem) {
                continue;
            }
            match problem {
                Some(p) => warn!("{name} is unhealthy: {p}"),
                None if before.is_some() => info!("{name} is healthy again"),
                None => info!("{name} is healthy"),
            }
            self.health.insert(name.clone(), problem.clone());
        }
        self.health
            .retain(|name, _| obs.health.iter().any(|(n, _)| n == name));
        for host in &obs.left_out {
            if !self.left_out.contains(host) {
                warn!(
                    "bridge {host} is left out of what is pushed: without obfs4proxy's cert clients cannot use it"
                );
            }
        }
        for host in &self.left_out {
            if !obs.left_out.contains(host) {
                info!("bridge {host} has its cert again and is pushed");
            }
        }
        self.left_out.clone_from(&obs.left_out);
    }

    /// Records a push; returns how long to wait before the next one.
    fn after_push(
        &mut self,
        config: &Config,
        sent: Report,
        result: Result<crate::push::Pushed, PushError>,
    ) -> Duration {
        match result {
            Ok(pushed) => {
                let msg = format!(
                    "pushed {} gateways and {} bridges (menshen stores {} and {}{})",
                    sent.gateways.len(),
                    sent.bridges.len(),
                    pushed.gateways,
                    pushed.bridges,
                    if pushed.created { ", some new" } else { "" }
                );
                if self.failures > 0 {
                    info!("{msg}; succeeded after {} failed attempts", self.failures);
                } else if self.last_sent.is_none() {
                    info!("{msg}");
                } else {
                    debug!("{msg}");
                }
                self.failures = 0;
                self.transient = 0;
                self.last_sent = Some(sent);
                backoff::jittered(config.interval)
            }
            Err(e) => {
                self.failures += 1;
                let delay = match &e {
                    PushError::Transient(_) => {
                        self.transient += 1;
                        backoff::transient(self.transient, config.retry.initial, config.retry.max)
                    }
                    // menshen said when: come back then (a little later, so
                    // that agents do not all come back at once), without
                    // growing the backoff.
                    PushError::Unavailable { retry_after, .. } => {
                        backoff::retry_after(*retry_after, config.retry.max)
                    }
                    PushError::Refused { .. } => {
                        self.transient = 0;
                        backoff::refused(config.interval, config.retry.refused)
                    }
                    PushError::Invalid { .. } | PushError::Token(_) => {
                        self.transient = 0;
                        backoff::jittered(config.interval)
                    }
                };
                let retry =
                    humantime::format_duration(Duration::from_millis(delay.as_millis() as u64));
                match &e {
                    PushError::Transient(_) | PushError::Unavailable { .. } => {
                        warn!("push failed: {e}; retrying in {retry}")
                    }
                    _ => error!("push failed: {e}; retrying in {retry}"),
                }
                delay
            }
        }
    }
}
