//! What this host reports: every configured gateway and bridge, observed now.

use std::sync::Arc;

use menshen_model::{Bridge, Gateway};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::{obfs4, openvpn};

/// The lists the agent sends (one PUT each), in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub gateways: Vec<Gateway>,
    pub bridges: Vec<Bridge>,
}

/// A report, and the health of each resource with the reason when unhealthy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    pub report: Report,
    /// (`gateway host` / `bridge host`, problem) for every configured resource.
    pub health: Vec<(String, Option<String>)>,
    /// Bridges left out of the report because obfs4proxy's state gave no cert.
    pub left_out: Vec<String>,
    /// Each OpenVPN server's management interface, in configuration order:
    /// whether it answered, and its `status 3` when metrics are on.
    pub openvpn: Vec<OpenvpnLook>,
}

/// One OpenVPN server as its management interface showed it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenvpnLook {
    pub management: std::net::SocketAddr,
    pub up: bool,
    pub status: Option<openvpn::ServerStatus>,
}

/// Observes every configured resource, all at once.
pub async fn observe(config: &Arc<Config>) -> Observation {
    let mut gateways = JoinSet::new();
    for i in 0..config.openvpn.len() {
        let config = Arc::clone(config);
        gateways.spawn(async move {
            let g = &config.openvpn[i];
            (
                i,
                openvpn::observe(
                    g,
                    &config.host,
                    config.probe_timeout,
                    config.metrics_listen.is_some(),
                )
                .await,
            )
        });
    }
    let mut bridges = JoinSet::new();
    for i in 0..config.obfs4.len() {
        let config = Arc::clone(config);
        bridges.spawn(async move {
            let b = &config.obfs4[i];
            (
                i,
                obfs4::observe(b, &config.host, config.probe_timeout).await,
            )
        });
    }
    let mut gateways = gateways.join_all().await;
    gateways.sort_by_key(|(i, _)| *i);
    let mut bridges = bridges.join_all().await;
    bridges.sort_by_key(|(i, _)| *i);

    let mut obs = Observation::default();
    for (i, g) in gateways {
        obs.openvpn.push(OpenvpnLook {
            management: config.openvpn[i].management,
            up: g.up,
            status: g.status,
        });
        obs.health
            .push((format!("gateway {}", g.gateway.host), g.problem));
        obs.report.gateways.push(g.gateway);
    }
    for (_, b) in bridges {
        obs.health
            .push((format!("bridge {}", b.bridge.host), b.problem));
        if b.has_cert {
            obs.report.bridges.push(b.bridge);
        } else {
            obs.left_out.push(b.bridge.host);
        }
    }
    obs
}

/// Whether `next` differs from `last` enough to push at once: any resource
/// added, removed or changed, except that a load change smaller than
/// `load_step` waits for the next heartbeat (crossing the overload threshold
/// always counts, through `overloaded`).
pub fn changed(last: &Report, next: &Report, load_step: f64) -> bool {
    fn load_moved(a: f64, b: f64, step: f64) -> bool {
        if step <= 0.0 {
            a != b
        } else {
            (a - b).abs() >= step - 1e-9
        }
    }
    if last.gateways.len() != next.gateways.len() || last.bridges.len() != next.bridges.len() {
        return true;
    }
    // Whether a resource of list `$list` (of `$ty`) changed, but for a
    // small move of its load.
    macro_rules! list_changed {
        ($list:ident, $ty:ident) => {
            last.$list.iter().zip(&next.$list).any(|(a, b)| {
                load_moved(a.load, b.load, load_step)
                    || $ty {
                        load: 0.0,
                        ..a.clone()
                    } != $ty {
                        load: 0.0,
                        ..b.clone()
                    }
            })
        };
    }
    list_changed!(gateways, Gateway) || list_changed!(bridges, Bridge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(host: &str, load: f64, healthy: bool) -> Gateway {
        Gateway {
            host: host.into(),
            load,
            healthy,
            ..Default::default()
        }
    }

    #[test]
    fn what_counts_as_a_change() {
        let a = Report {
            gateways: vec![gw("a", 0.10, true)],
            bridges: vec![],
        };
        assert!(!changed(&a, &a, 0.05));
        let small = Report {
            gateways: vec![gw("a", 0.12, true)],
            ..a.clone()
        };
        assert!(!changed(&a, &small, 0.05));
        assert!(changed(&a, &small, 0.0));
        let big = Report {
            gateways: vec![gw("a", 0.15, true)],
            ..a.clone()
        };
        assert!(changed(&a, &big, 0.05));
        let sick = Report {
            gateways: vec![gw("a", 0.10, false)],
            ..a.clone()
        };
        assert!(changed(&a, &sick, 0.05));
        let more = Report {
            gateways: vec![gw("a", 0.10, true), gw("b", 0.0, true)],
            ..a.clone()
        };
        assert!(changed(&a, &more, 0.05));
        let with_bridge = Report {
            bridges: vec![Bridge {
                host: "br".into(),
                ..Default::default()
            }],
            ..a.clone()
        };
        assert!(changed(&a, &with_bridge, 0.05));
    }
}
