//! The handle that holds the current snapshot and keeps it fresh: loads
//! from the store, rebuilds on change notifications (at most every
//! [`MIN_RELOAD_GAP`]), when a pushed resource expires, and at the reload
//! interval as a backstop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::watch;

use super::{Snapshot, SnapshotOptions};
use crate::store::{Inventory, Outages, Store, now_millis};
use crate::telemetry::Metrics;

/// Shortest time between the starts of two reloads caused by change
/// notifications: at most ten a second, however many changes come in.
pub const MIN_RELOAD_GAP: Duration = Duration::from_millis(100);

/// Holds the current snapshot and keeps it fresh.
pub struct InventoryHandle {
    current: ArcSwap<Snapshot>,
    /// The last inventory read from the store, to rebuild from when only
    /// time has passed.
    source: Mutex<Arc<Inventory>>,
    options: SnapshotOptions,
    metrics: Arc<Metrics>,
    /// Requests that drew an order, for seeded draws.
    draws: AtomicU64,
    /// The store's outages, which do not count towards TTLs.
    store: Store,
    /// The store's change count that the current snapshot includes (see
    /// [`InventoryHandle::includes`]).
    built: watch::Sender<u64>,
    /// How many snapshots this process has swapped in since the first.
    generation: AtomicU64,
}

impl InventoryHandle {
    /// Loads the inventory from the store and builds the first snapshot.
    pub async fn load(
        store: &Store,
        options: SnapshotOptions,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let seen = store.change_count();
        let inventory = Arc::new(store.load_inventory().await?);
        let snapshot = build_timed(&inventory, &options, &store.health().outages());
        metrics.observe_snapshot(&snapshot);
        Ok(InventoryHandle {
            current: ArcSwap::from_pointee(snapshot),
            source: Mutex::new(inventory),
            options,
            metrics,
            draws: AtomicU64::new(0),
            store: store.clone(),
            built: watch::channel(seen).0,
            generation: AtomicU64::new(0),
        })
    }

    /// The inventory the current snapshot was built from (heartbeat times
    /// may lag the store by up to the reload interval).
    pub fn inventory(&self) -> Arc<Inventory> {
        self.source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many snapshots have been swapped in since the first: it grows
    /// by one with every rebuild, so an observer can tell one has happened.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The current snapshot, for a request that does not wait on anything
    /// while it holds it: cheaper than [`InventoryHandle::snapshot`], as no
    /// shared count is touched.
    pub fn current(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// A generator for one request's random order: drawn from the thread's
    /// generator, or with `order_seed` the n-th request's own.
    pub fn rng(&self) -> SmallRng {
        match self.options.order_seed {
            Some(seed) => {
                let n = self.draws.fetch_add(1, Ordering::Relaxed);
                SmallRng::seed_from_u64(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            }
            None => SmallRng::from_rng(&mut rand::rng()),
        }
    }

    fn rebuild(&self, inventory: Option<Inventory>) {
        let _span = tracing::info_span!("snapshot.rebuild").entered();
        let mut source = self.source.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(inventory) = inventory {
            *source = Arc::new(inventory);
        }
        let outages = self.store.health().outages();
        let snapshot = build_timed(&source, &self.options, &outages);
        self.metrics.observe_snapshot(&snapshot);
        let before = self.current.load();
        for kind in &snapshot.probes.suspended {
            if !before.probes.suspended.contains(kind) {
                tracing::warn!(
                    kind = kind.as_str(),
                    "the prober finds every live {} dysfunctional: none is left out of \
                     client lists (is the prober's own network at fault?)",
                    kind.as_str()
                );
            }
        }
        self.current.store(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Reads the store again and swaps in a new snapshot.
    #[tracing::instrument(name = "snapshot.reload", skip_all)]
    pub async fn reload(&self, store: &Store) -> anyhow::Result<()> {
        let seen = store.change_count();
        let inventory = store.load_inventory().await?;
        self.rebuild(Some(inventory));
        self.built.send_if_modified(|built| {
            let newer = seen > *built;
            if newer {
                *built = seen;
            }
            newer
        });
        Ok(())
    }

    /// Waits (at most `patience`) until the current snapshot includes every
    /// change the store had announced when its count was `change` (see
    /// [`Store::change_count`]): a replica serves its own writes on the
    /// next read. Returns whether it does.
    pub async fn includes(&self, change: u64, patience: Duration) -> bool {
        let mut built = self.built.subscribe();
        tokio::time::timeout(patience, built.wait_for(|b| *b >= change))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Keeps the snapshot fresh until `shutdown` fires: reloads on change
    /// notifications, every `reload_interval`, when the store comes back
    /// after an outage, and when a pushed resource's TTL runs out (its agent
    /// may have reported meanwhile through another replica, so the store is
    /// asked, not the old copy). A change is reloaded at once when the last
    /// reload began at least [`MIN_RELOAD_GAP`] ago, else when that gap is
    /// over, so that a burst of changes costs at most one reload per gap.
    pub async fn run(
        self: Arc<Self>,
        store: Store,
        reload_interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut changes = store.subscribe();
        changes.borrow_and_update();
        let mut health = store.health().subscribe();
        health.borrow_and_update();
        let mut last_reload: Option<tokio::time::Instant> = None;
        loop {
            let next_expiry = self.snapshot().next_expiry_millis;
            let until_expiry = next_expiry
                .map(|at| Duration::from_millis(at.saturating_sub(now_millis()).max(0) as u64));
            tokio::select! {
                _ = shutdown.changed() => return,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Some(at) = last_reload {
                        // Coalesce: changes during the gap share one reload.
                        tokio::select! {
                            _ = shutdown.changed() => return,
                            () = tokio::time::sleep_until(at + MIN_RELOAD_GAP) => {}
                        }
                    }
                }
                changed = health.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    health.borrow_and_update();
                }
                _ = tokio::time::sleep(reload_interval) => {}
                _ = sleep_opt(until_expiry) => {}
            }
            changes.borrow_and_update();
            last_reload = Some(tokio::time::Instant::now());
            self.reload_logged(&store).await;
        }
    }

    async fn reload_logged(&self, store: &Store) {
        if let Err(err) = self.reload(store).await {
            self.metrics.reload_failed();
            tracing::warn!(error = %err, "inventory reload failed; serving the previous snapshot");
            // Time still passes (outside outages): drop what has expired by now.
            self.rebuild(None);
        }
    }
}

/// Builds the snapshot of `inventory` now, and says how long that took.
fn build_timed(inventory: &Inventory, options: &SnapshotOptions, outages: &Outages) -> Snapshot {
    let started = Instant::now();
    let snapshot = Snapshot::build_despite(inventory, now_millis(), options, outages);
    tracing::debug!(
        gateways = snapshot.gateways.len(),
        bridges = snapshot.bridges.len(),
        micros = started.elapsed().as_micros() as u64,
        "snapshot built"
    );
    snapshot
}

async fn sleep_opt(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
