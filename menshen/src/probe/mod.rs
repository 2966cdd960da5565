//! The prober: checks every gateway and bridge from outside, at an
//! interval, because an agent's word is not proof that clients can reach
//! it. It runs as `menshen probe` (one process beside the replicas, on the
//! same store) or inside `menshen serve --probe`.
//!
//! A check is what a client's first step would be:
//! - an OpenVPN gateway over UDP: a hard reset, answered by the server's
//!   (see [`openvpn`]);
//! - over TCP: connect, then the same exchange on the stream;
//! - an obfs4 bridge: an obfs4 handshake with the `cert` clients are given
//!   (see [`obfs4`]).
//!
//! Each resource is `untested` until its first check passes (then
//! `functional`) or its first `failures` checks in a row fail (then
//! `dysfunctional`); a functional one becomes dysfunctional after as many
//! failures in a row, a dysfunctional one functional after one pass. The
//! results go into the store; a change of state is announced, so every
//! replica's next snapshot leaves dysfunctional resources out of client
//! lists (unless `serve --probe-keep-dysfunctional`; see
//! `inventory::Snapshot`), and the status page, the admin API, the CLI and
//! the metrics show them.

pub mod obfs4;
pub mod openvpn;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::store::{
    ProbeRow, ProbeState, ResourceKind, ResourceRow, Store, StoreError, now_millis,
};

/// Default of how often every resource is checked.
pub const DEFAULT_INTERVAL: &str = "60s";
/// Default of how long one check may take.
pub const DEFAULT_TIMEOUT: &str = "5s";
/// Default of how many failed checks in a row make a resource dysfunctional.
pub const DEFAULT_FAILURES: u32 = 3;
/// Default of how many checks run at once.
pub const DEFAULT_CONCURRENCY: usize = 32;

/// How the prober runs.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub concurrency: usize,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            interval: menshen_model::vocab::seconds(DEFAULT_INTERVAL),
            timeout: menshen_model::vocab::seconds(DEFAULT_TIMEOUT),
            failures: DEFAULT_FAILURES,
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It answered as it should; what answered.
    Passed(String),
    /// Why not.
    Failed(String),
    /// It cannot be checked; why.
    NotProbed(String),
}

/// A TCP connection to `addr` made by `deadline` (`timeout` after the
/// check began), or why not.
async fn connect(
    addr: SocketAddr,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<tokio::net::TcpStream, String> {
    match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err(format!(
            "connect: no answer within {}",
            humantime::format_duration(timeout)
        )),
    }
}

/// Where clients reach `r`: its IPv4 address, else its IPv6 one, and port.
fn address(r: &ResourceRow) -> Result<SocketAddr, String> {
    if r.port <= 0 {
        return Err("no fixed port (a hopping bridge)".into());
    }
    let port = u16::try_from(r.port).map_err(|_| format!("port {} is out of range", r.port))?;
    [&r.ip_addr, &r.ip6_addr]
        .into_iter()
        .find(|a| !a.is_empty())
        .ok_or_else(|| "no address".to_owned())?
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| "its address is not an IP address".to_owned())
}

/// Checks `r` once, within `timeout`.
pub async fn check(r: &ResourceRow, timeout: Duration) -> Outcome {
    let addr = match address(r) {
        Ok(addr) => addr,
        Err(why) => return Outcome::NotProbed(why),
    };
    let result = match (r.kind, r.kind_type.as_str(), r.transport.as_str()) {
        (ResourceKind::Gateway, "openvpn", "udp") => openvpn::check_udp(addr, timeout).await,
        (ResourceKind::Gateway, "openvpn", "tcp") => openvpn::check_tcp(addr, timeout).await,
        (ResourceKind::Bridge, "obfs4", "tcp") => {
            let options = r.options_map();
            let Some(cert) = options.get("cert").and_then(|c| c.as_str()) else {
                return Outcome::NotProbed("no cert in its options".into());
            };
            obfs4::check(addr, cert, timeout).await
        }
        (_, kind, transport) => {
            return Outcome::NotProbed(format!(
                "the prober does not speak {kind} over {transport}"
            ));
        }
    };
    match result {
        Ok(what) => Outcome::Passed(what),
        Err(why) => Outcome::Failed(why),
    }
}

/// The result for `r` after `outcome`, given its previous one.
pub fn next(
    previous: Option<&ProbeRow>,
    r: &ResourceRow,
    outcome: Outcome,
    failures_needed: u32,
    now: i64,
) -> ProbeRow {
    let was = previous.map_or(ProbeState::Untested, |p| p.state);
    let (state, failures, detail) = match outcome {
        Outcome::Passed(what) => (ProbeState::Functional, 0, what),
        Outcome::NotProbed(why) => (ProbeState::Untested, 0, why),
        Outcome::Failed(why) => {
            let failures = previous.map_or(0, |p| p.failures).saturating_add(1);
            let state = if failures >= i64::from(failures_needed.max(1)) {
                ProbeState::Dysfunctional
            } else {
                was
            };
            (state, failures, why)
        }
    };
    ProbeRow {
        kind: r.kind,
        host: r.host.clone(),
        state,
        failures,
        checked_millis: now,
        changed_millis: match previous {
            Some(p) if p.state == state => p.changed_millis,
            _ => now,
        },
        detail,
    }
}

/// What a round did.
#[derive(Debug, Default)]
pub struct Round {
    /// Every resource's new result.
    pub results: Vec<ProbeRow>,
    /// Resources whose state changed: the index of their result, and the
    /// state they had.
    pub changes: Vec<(usize, ProbeState)>,
}

/// Checks every stored gateway and bridge once (at most
/// `settings.concurrency` at a time) and writes the results.
pub async fn round(store: &Store, settings: &ProbeSettings) -> Result<Round, StoreError> {
    let inventory = store.load_inventory().await?;
    let previous = inventory.probes_by_resource();
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut checks = JoinSet::new();
    for (i, r) in inventory.resources.iter().enumerate() {
        let (r, permits, timeout) = (r.clone(), permits.clone(), settings.timeout);
        checks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (i, check(&r, timeout).await)
        });
    }
    let mut outcomes = vec![None; inventory.resources.len()];
    while let Some(done) = checks.join_next().await {
        if let Ok((i, outcome)) = done {
            outcomes[i] = Some(outcome);
        }
    }
    let now = now_millis();
    let mut round = Round::default();
    for (r, outcome) in inventory.resources.iter().zip(outcomes) {
        let outcome = outcome.unwrap_or_else(|| Outcome::Failed("the check did not finish".into()));
        let before = previous.get(&(r.kind, r.host.as_str())).copied();
        let result = next(before, r, outcome, settings.failures, now);
        let was = before.map_or(ProbeState::Untested, |p| p.state);
        if was != result.state {
            round.changes.push((round.results.len(), was));
        }
        round.results.push(result);
    }
    store
        .record_probes(&round.results, !round.changes.is_empty())
        .await?;
    Ok(round)
}

/// Logs a round's changes: a resource turning dysfunctional as a warning.
fn log_round(round: &Round) {
    for &(i, from) in &round.changes {
        let result = &round.results[i];
        let (kind, host, detail) = (result.kind.as_str(), &result.host, &result.detail);
        let (from, to) = (from.as_str(), result.state.as_str());
        if result.state == ProbeState::Dysfunctional {
            tracing::warn!(kind, host, from, to, detail, "probe: now dysfunctional");
        } else {
            tracing::info!(kind, host, from, to, detail, "probe: state changed");
        }
    }
    let count = |state| round.results.iter().filter(|p| p.state == state).count();
    tracing::debug!(
        checked = round.results.len(),
        functional = count(ProbeState::Functional),
        dysfunctional = count(ProbeState::Dysfunctional),
        untested = count(ProbeState::Untested),
        "probe round done"
    );
}

/// Runs rounds every `settings.interval` until `shutdown` turns true; a
/// round the store refuses is logged and the next one tried as planned.
pub async fn run(store: Store, settings: ProbeSettings, mut shutdown: watch::Receiver<bool>) {
    tracing::info!(
        interval_seconds = settings.interval.as_secs_f64(),
        timeout_seconds = settings.timeout.as_secs_f64(),
        failures = settings.failures,
        "probing every gateway and bridge"
    );
    loop {
        if *shutdown.borrow() {
            return;
        }
        let checks = tokio::select! {
            r = round(&store, &settings) => r,
            _ = shutdown.changed() => return,
        };
        match checks {
            Ok(round) => log_round(&round),
            Err(err) => tracing::warn!(error = %format_args!("{err:#}"), "probe round failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(transport: &str, ip: &str, port: i64) -> ResourceRow {
        ResourceRow {
            ip_addr: ip.into(),
            port,
            transport: transport.into(),
            ..ResourceRow::test_gateway("gw", "here")
        }
    }

    #[test]
    fn states_follow_passes_and_failures_in_a_row() {
        let r = gateway("udp", "192.0.2.1", 1194);
        let fail = || Outcome::Failed("connect: refused".into());
        let pass = || Outcome::Passed("answered".into());
        // Untested until the third failure in a row.
        let one = next(None, &r, fail(), 3, 10);
        assert_eq!((one.state, one.failures), (ProbeState::Untested, 1));
        let two = next(Some(&one), &r, fail(), 3, 20);
        assert_eq!((two.state, two.failures), (ProbeState::Untested, 2));
        let three = next(Some(&two), &r, fail(), 3, 30);
        assert_eq!(
            (three.state, three.failures),
            (ProbeState::Dysfunctional, 3)
        );
        assert_eq!(three.changed_millis, 30);
        assert_eq!(three.detail, "connect: refused");
        // One pass makes it functional; failures below the limit keep it so.
        let up = next(Some(&three), &r, pass(), 3, 40);
        assert_eq!(
            (up.state, up.failures, up.changed_millis),
            (ProbeState::Functional, 0, 40)
        );
        let blip = next(Some(&up), &r, fail(), 3, 50);
        assert_eq!((blip.state, blip.failures), (ProbeState::Functional, 1));
        assert_eq!(blip.changed_millis, 40, "the state did not change");
        let back = next(Some(&blip), &r, pass(), 3, 60);
        assert_eq!((back.state, back.failures), (ProbeState::Functional, 0));
        // With failures = 1 the first failure is enough.
        assert_eq!(
            next(None, &r, fail(), 1, 70).state,
            ProbeState::Dysfunctional
        );
        // What cannot be checked is untested, whatever it was.
        let gone = next(
            Some(&three),
            &r,
            Outcome::NotProbed("no address".into()),
            3,
            80,
        );
        assert_eq!((gone.state, gone.failures), (ProbeState::Untested, 0));
    }

    #[tokio::test]
    async fn what_cannot_be_checked_is_named() {
        let t = Duration::from_millis(100);
        let cases = [
            (gateway("udp", "", 1194), "no address"),
            (gateway("udp", "192.0.2.1", 0), "no fixed port"),
            (gateway("udp", "gw.example", 1194), "not an IP address"),
            (
                gateway("kcp", "192.0.2.1", 1194),
                "does not speak openvpn over kcp",
            ),
        ];
        for (r, why) in cases {
            match check(&r, t).await {
                Outcome::NotProbed(got) => assert!(got.contains(why), "{got}"),
                other => panic!("{other:?}"),
            }
        }
        let mut bridge = gateway("tcp", "192.0.2.1", 443);
        bridge.kind = ResourceKind::Bridge;
        bridge.kind_type = "obfs4".into();
        assert_eq!(
            check(&bridge, t).await,
            Outcome::NotProbed("no cert in its options".into())
        );
    }

    #[test]
    fn the_ipv6_address_is_used_without_an_ipv4_one() {
        let mut r = gateway("udp", "", 1194);
        r.ip6_addr = "2001:db8::1".into();
        assert_eq!(address(&r), Ok("[2001:db8::1]:1194".parse().unwrap()));
    }
}
