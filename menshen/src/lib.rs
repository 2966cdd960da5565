//! menshen: the provider API of LEAP VPN.
//!
//! [`launch`] runs the whole server on listeners the caller binds, so tests
//! bind port 0 and drive the real server over HTTP.

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod geo;
pub mod inventory;
pub mod pki;
pub mod probe;
pub mod select;
pub mod server;
pub mod sign;
pub mod store;
pub mod telemetry;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::AppState;
use crate::api::rate_limit::{RateLimit, RateLimiter};
use crate::auth::SigningKey;
use crate::auth::oidc::OidcVerifier;
use crate::config::Settings;
use crate::config::file::ProviderFile;
use crate::geo::Locator;
use crate::inventory::invites::{INVITE_USE_FLUSH_INTERVAL, InviteUses};
use crate::inventory::{InventoryHandle, SnapshotOptions};
use crate::pki::Pki;
use crate::pki::workers::Workers;
use crate::select::ring::{self, BridgeKey, Distribution};
use crate::server::ConnectionLimits;
use crate::store::Store;
use crate::telemetry::{Listener, Metrics};

/// Opens the store (applying migrations and the provider file), then serves
/// the API on `listener` and metrics on `metrics_listener` until `shutdown`
/// completes, and finishes in-flight requests before returning.
pub async fn launch(
    settings: Settings,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let flag_policy = crate::inventory::validate::Policy {
        allow_private_addresses: settings.allow_private_addresses,
    };
    let provider_file = match &settings.provider_file {
        Some(path) => {
            let file = ProviderFile::load_with(path, flag_policy)?;
            for warning in file.warnings() {
                tracing::warn!(file = %path.display(), "{warning}");
            }
            Some(file)
        }
        None => None,
    };
    let policy = provider_file
        .as_ref()
        .map_or(flag_policy, |file| file.policy_with(flag_policy));
    if policy.allow_private_addresses {
        tracing::warn!(
            "addresses that are not public unicast (loopback, private, documentation, ...) \
             are accepted for gateways and bridges: for labs and tests only"
        );
    }
    let store = Store::connect_with_timeout(&settings.engine, settings.store_timeout).await?;
    tracing::info!(store = %settings.engine.describe(), "store ready");
    if let Some(file) = &provider_file {
        store
            .apply_provider_file(&file.rows())
            .await
            .context("writing the provider file into the store")?;
        tracing::info!(
            locations = file.locations.len(),
            gateways = file.gateways.len(),
            bridges = file.bridges.len(),
            "provider file applied"
        );
    }

    // Bad CA material stops the start here, not the first client.
    let pki = Arc::new(Pki::load(&settings.pki, &settings.data_dir)?);
    let issue_threads = match settings.issue_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let issuers = Workers::new("menshen-issue", issue_threads, settings.issue_queue)
        .context("starting the certificate issuing threads")?;
    let cert_limit = settings.cert_rate_limit.map(|limit| {
        announce_limit(&limit, "certificates and configurations", "address");
        RateLimiter::new(limit)
    });
    let bridge_limit = settings.bridge_rate_limit.map(|limit| {
        announce_limit(&limit, "bridge lists", "network");
        RateLimiter::per_network(limit)
    });
    let signing_key = Arc::new(SigningKey::load(&settings.signing_key, &settings.data_dir)?);
    let bridges = (settings.bridges_per_client > 0).then(|| {
        let distribution = Distribution::new(
            BridgeKey::new(&signing_key.derive(ring::KEY_LABEL)),
            settings.bridges_per_client,
            settings.bridge_epoch,
            settings.bridge_clock.clone(),
        );
        tracing::info!(
            per_client = distribution.per_client(),
            epoch_seconds = settings.bridge_epoch.as_secs(),
            "public bridges are shared out: each client network gets a few of each transport"
        );
        if settings.trusted_proxies.is_empty() {
            tracing::info!(
                "no --trusted-proxies: a client's network is that of its peer; behind a proxy, \
                 name it there, or every client gets the proxy's share of the bridges"
            );
        }
        Arc::new(distribution)
    });

    let signer = crate::sign::ListSigner::load(
        &settings.list_key_files,
        settings.signature_validity,
        settings.signature_variants,
    )?
    .map(|signer| {
        tracing::info!(
            kid = signer.kid(),
            keys = signer.published().len(),
            validity_seconds = settings.signature_validity.as_secs(),
            "client answers are signed (x-menshen-signature); the keys are in /provider.json"
        );
        Arc::new(signer)
    });

    let mut metrics = Metrics::new();
    metrics.register_store(store.health());
    if let Some(signer) = &signer {
        metrics.register_signatures(signer.counter());
    }
    let metrics = Arc::new(metrics);
    let locator = Arc::new(Locator::new(
        settings.geoip_db.as_deref(),
        settings.trusted_proxies.clone(),
    )?);
    let options = SnapshotOptions {
        ttl_millis: settings.resource_ttl.as_millis() as i64,
        ca_fingerprint: pki.ca_fingerprint().to_owned(),
        api_versions: if settings.api_v3 {
            vec!["3".into(), "5".into()]
        } else {
            vec!["5".into()]
        },
        order_seed: settings.order_seed,
        bridges,
        drop_dysfunctional: settings.drop_dysfunctional,
        signer,
    };
    let inventory = Arc::new(InventoryHandle::load(&store, options, metrics.clone()).await?);
    let invite_uses = Arc::new(InviteUses::default());
    let oidc = settings.oidc.clone().map(|oidc| {
        tracing::info!(issuer = %oidc.issuer, "operators may use OpenID Connect tokens");
        Arc::new(OidcVerifier::new(oidc, reqwest::Client::new()))
    });
    let state = Arc::new(AppState {
        oidc,
        public_status: settings.public_status,
        api_v3: settings.api_v3,
        store: store.clone(),
        inventory: inventory.clone(),
        metrics: metrics.clone(),
        signing_key,
        resource_ttl: settings.resource_ttl,
        pki,
        issuers,
        cert_limit,
        bridge_limit,
        openvpn_max_remotes: settings.openvpn_max_remotes,
        locator,
        invite_uses: invite_uses.clone(),
        policy,
        max_resources_per_agent: settings.max_resources_per_agent,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let refresher = tokio::spawn(inventory.clone().run(
        store.clone(),
        settings.reload_interval,
        stop_rx.clone(),
    ));
    // Invite uses are noted in memory by requests and written from here.
    let invite_use_writer =
        tokio::spawn(invite_uses.run(store.clone(), INVITE_USE_FLUSH_INTERVAL, stop_rx.clone()));
    let listener_task = {
        let store = store.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { store.listen_for_changes(stop).await })
    };
    let health_task = {
        let store = store.clone();
        let stop = stop_rx.clone();
        let interval = settings.store_check_interval;
        tokio::spawn(async move { store.watch_health(interval, stop).await })
    };

    let prober = settings
        .probe
        .clone()
        .map(|probe| tokio::spawn(crate::probe::run(store.clone(), probe, stop_rx.clone())));

    let metrics_server = metrics_listener.map(|l| {
        let mut stop = stop_rx.clone();
        if let Ok(address) = l.local_addr() {
            tracing::info!(%address, "metrics listening");
        }
        let limits = ConnectionLimits {
            max_connections: settings.metrics_max_connections,
            ..settings.connections
        };
        let open = metrics.connections(Listener::Metrics, limits.max_connections);
        tokio::spawn(server::serve(
            l,
            api::metrics_router(metrics),
            limits,
            open,
            async move {
                let _ = stop.changed().await;
            },
        ))
    });

    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "menshen listening");
    }
    let open = state
        .metrics
        .connections(Listener::Public, settings.connections.max_connections);
    let result = server::serve(
        listener,
        api::router(state),
        settings.connections,
        open,
        shutdown,
    )
    .await
    .context("serving HTTP");

    let _ = stop_tx.send(true);
    let _ = refresher.await;
    // After the last request: what it noted is written too.
    let _ = invite_use_writer.await;
    let _ = listener_task.await;
    let _ = health_task.await;
    if let Some(task) = prober {
        let _ = task.await;
    }
    if let Some(task) = metrics_server {
        let _ = task.await;
    }
    store.close().await;
    tracing::info!("menshen stopped");
    result
}

/// Says at start that `what` are rate limited per client `party` (address
/// or network), and how.
fn announce_limit(limit: &RateLimit, what: &str, party: &str) {
    tracing::info!(
        count = limit.rate.count,
        per_seconds = limit.rate.per.as_secs_f64(),
        burst = limit.burst,
        "{what} are rate limited per client {party}"
    );
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested; finishing requests in flight");
}
