//! menshen-agent: tells menshen which OpenVPN gateways and obfs4 bridges run
//! on this host, and how loaded and healthy they are.
//!
//! - [`config`]: the TOML file and environment overrides.
//! - [`openvpn`]: OpenVPN's management interface (`load-stats`, `status 3`).
//! - [`obfs4`]: the bridge's state folder, obfs4proxy's or obfsvpn's (`cert`, `iat-mode`).
//! - [`probe`]: port checks.
//! - [`report`]: what is sent, and what counts as a change.
//! - [`metrics`]: `/metrics` (the agent's health, OpenVPN's clients).
//! - [`push`]: the PUTs to menshen and what their answers mean.
//! - [`backoff`]: heartbeat jitter and retry delays.
//! - [`daemon`]: the loop.

pub mod backoff;
pub mod config;
pub mod daemon;
pub mod metrics;
pub mod obfs4;
pub mod openvpn;
pub mod probe;
pub mod push;
pub mod report;

use std::sync::Arc;

use tracing::{info, warn};

use config::Config;
use push::{PushError, Pusher};
use report::Report;

/// Looks once and logs what is wrong; what `--once` and `--dry-run` use.
pub async fn observe_once(config: &Arc<Config>) -> Report {
    let obs = report::observe(config).await;
    for (name, problem) in &obs.health {
        match problem {
            Some(p) => warn!("{name} is unhealthy: {p}"),
            None => info!("{name} is healthy"),
        }
    }
    for host in &obs.left_out {
        warn!("bridge {host} is left out: without obfs4proxy's cert clients cannot use it");
    }
    obs.report
}

/// Looks once and pushes once (`--once`).
pub async fn push_once(config: &Arc<Config>, pusher: &Pusher) -> Result<(), PushError> {
    let report = observe_once(config).await;
    let pushed = pusher.push(&report).await?;
    info!(
        "pushed {} gateways and {} bridges (menshen stores {} and {})",
        report.gateways.len(),
        report.bridges.len(),
        pushed.gateways,
        pushed.bridges
    );
    Ok(())
}
