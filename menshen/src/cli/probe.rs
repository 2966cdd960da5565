//! `menshen probe`: checks every gateway and bridge from outside (see
//! [`crate::probe`]); its flags are shared with `serve --probe`.

use std::time::Duration;

use clap::Args;

use super::args::StoreArgs;
use super::table::{json_or_table, render_table};
use crate::probe::{self, ProbeSettings};

/// How the prober runs, for `menshen probe` and `menshen serve --probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// How often every gateway and bridge is checked (e.g. 60s, 5m).
    #[arg(long, env = "MENSHEN_PROBE_INTERVAL", value_parser = humantime::parse_duration,
          default_value = probe::DEFAULT_INTERVAL)]
    probe_interval: Duration,

    /// How long one check may take before it counts as failed.
    #[arg(long, env = "MENSHEN_PROBE_TIMEOUT", value_parser = humantime::parse_duration,
          default_value = probe::DEFAULT_TIMEOUT)]
    probe_timeout: Duration,

    /// Failed checks in a row that make a gateway or bridge dysfunctional.
    #[arg(long, env = "MENSHEN_PROBE_FAILURES", default_value_t = probe::DEFAULT_FAILURES,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    probe_failures: u32,

    /// Checks that run at once.
    #[arg(long, env = "MENSHEN_PROBE_CONCURRENCY", default_value_t = probe::DEFAULT_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(1..=4096))]
    probe_concurrency: u16,
}

impl ProbeArgs {
    pub fn settings(&self) -> ProbeSettings {
        ProbeSettings {
            interval: self.probe_interval,
            timeout: self.probe_timeout,
            failures: self.probe_failures,
            concurrency: usize::from(self.probe_concurrency),
        }
    }
}

/// `menshen probe`.
#[derive(Debug, Args)]
pub struct ProbeCommandArgs {
    #[command(flatten)]
    probe: ProbeArgs,

    /// Check everything once, store the results, print them and exit.
    #[arg(long)]
    once: bool,

    /// With --once: print JSON instead of a table.
    #[arg(long, requires = "once")]
    json: bool,

    #[command(flatten)]
    store: StoreArgs,
}

pub async fn run(args: ProbeCommandArgs) -> anyhow::Result<()> {
    let settings = args.probe.settings();
    if !args.once {
        return args
            .store
            .with_store(async |db| {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                let prober = tokio::spawn(probe::run(db.clone(), settings, stop_rx));
                crate::shutdown_signal().await;
                let _ = stop_tx.send(true);
                let _ = prober.await;
                Ok(())
            })
            .await;
    }
    let round = args
        .store
        .with_store(async |db| Ok(probe::round(db, &settings).await?))
        .await?;
    #[derive(serde::Serialize)]
    struct Line<'a> {
        kind: &'static str,
        host: &'a str,
        #[serde(flatten)]
        result: &'a crate::store::ProbeRow,
    }
    let lines: Vec<Line> = round
        .results
        .iter()
        .map(|p| Line {
            kind: p.kind.as_str(),
            host: &p.host,
            result: p,
        })
        .collect();
    print!(
        "{}",
        json_or_table(args.json, &lines, || render_table(
            &["KIND", "HOST", "STATE", "FAILURES", "DETAIL"],
            lines
                .iter()
                .map(|l| vec![
                    l.kind.to_owned(),
                    l.host.to_owned(),
                    l.result.state.as_str().to_owned(),
                    l.result.failures.to_string(),
                    l.result.detail.clone(),
                ])
                .collect(),
        ))?
    );
    Ok(())
}
