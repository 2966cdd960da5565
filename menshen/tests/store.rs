//! One store suite, run against SQLite and Postgres alike.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{CONTRACT_FILE, audit, backends};
use menshen::config::file::ProviderFile;
use menshen::store::{Engine, Inventory, ProbeRow, ProbeState, ResourceKind, Store};
use tokio::sync::watch;

fn file(text: &str) -> ProviderFile {
    ProviderFile::parse(text, Path::new("test.toml")).unwrap()
}

/// Applies the provider file `text` to `store`, as a start does.
async fn apply(store: &Store, text: &str) {
    store.apply_provider_file(&file(text).rows()).await.unwrap();
}

/// Applies the contract file with `writer`, which `changes` must announce
/// within `within`.
async fn apply_announced(writer: &Store, changes: &mut watch::Receiver<u64>, within: Duration) {
    changes.borrow_and_update();
    apply(writer, CONTRACT_FILE).await;
    tokio::time::timeout(within, changes.changed())
        .await
        .expect("the change is announced")
        .unwrap();
}

/// Runs `test` on a fresh store of each backend, named by its second
/// argument, and closes the store after.
async fn on_each_store(test: impl AsyncFn(&Store, &'static str)) {
    for backend in backends().await {
        let store = backend.store().await;
        test(&store, backend.name()).await;
        store.close().await;
    }
}

#[tokio::test]
async fn migrations_run_once_and_again_harmlessly() {
    for backend in backends().await {
        let first = Store::connect(&backend.engine()).await.unwrap();
        apply(&first, CONTRACT_FILE).await;
        first.close().await;
        // A second start runs the migrator again over the same database.
        let second = Store::connect(&backend.engine()).await.unwrap();
        let inventory = second.load_inventory().await.unwrap();
        assert_eq!(inventory.locations.len(), 4, "{}", backend.name());
        second.ping().await.unwrap();
        second.close().await;
    }
}

#[tokio::test]
async fn the_provider_file_round_trips() {
    on_each_store(async |store, name| {
        let f = file(CONTRACT_FILE);
        store.apply_provider_file(&f.rows()).await.unwrap();
        let inventory = store.load_inventory().await.unwrap();
        assert_eq!(inventory.provider, f.provider.to_model(), "{name}");
        assert_eq!(inventory.service, f.service.to_settings());
        assert_eq!(inventory.locations, f.location_rows());
        let mut expected = f.resource_rows();
        expected.sort_by(|a, b| (a.kind.as_str(), &a.host).cmp(&(b.kind.as_str(), &b.host)));
        assert_eq!(inventory.resources, expected);
        // Floating point and JSON options survive both engines exactly.
        let gw = inventory
            .resources
            .iter()
            .find(|r| r.host == "gw1.ams")
            .unwrap();
        assert_eq!(gw.load, 0.25);
        let br = inventory
            .resources
            .iter()
            .find(|r| r.host == "br2.ams")
            .unwrap();
        assert_eq!(br.kind, ResourceKind::Bridge);
        assert_eq!(br.options_map()["port_seed"], 42);
    })
    .await;
}

#[tokio::test]
async fn applying_the_same_file_twice_changes_nothing() {
    on_each_store(async |store, name| {
        apply(store, CONTRACT_FILE).await;
        let once = store.load_inventory().await.unwrap();
        apply(store, CONTRACT_FILE).await;
        let twice = store.load_inventory().await.unwrap();
        assert_eq!(once, twice, "{name}");
    })
    .await;
}

#[tokio::test]
async fn what_a_new_file_drops_is_removed() {
    on_each_store(async |store, name| {
        apply(store, CONTRACT_FILE).await;

        // Drop Santiago and its gateway, and the second bridge.
        let mut text = String::new();
        for block in CONTRACT_FILE.split("\n\n") {
            if !(block.contains("santiago") || block.contains("br2.ams")) {
                text.push_str(block);
                text.push_str("\n\n");
            }
        }
        apply(store, &text).await;
        let inventory = store.load_inventory().await.unwrap();
        let labels: Vec<_> = inventory
            .locations
            .iter()
            .map(|l| l.label.as_str())
            .collect();
        assert_eq!(labels, ["amsterdam", "montreal", "nowhere"], "{name}");
        let hosts: Vec<_> = inventory
            .resources
            .iter()
            .map(|r| r.host.as_str())
            .collect();
        assert_eq!(
            hosts,
            ["br1.ams", "gw1-tcp.ams", "gw1.ams", "gw1.mtl", "gw2.mtl"]
        );
    })
    .await;
}

#[tokio::test]
async fn writes_announce_a_change() {
    on_each_store(async |store, _| {
        let mut changes = store.subscribe();
        apply_announced(store, &mut changes, Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test]
async fn postgres_replicas_hear_each_others_changes() {
    for backend in backends().await {
        if backend.name() != "postgres" {
            continue;
        }
        let writer = Store::connect(&backend.engine()).await.unwrap();
        let reader = Store::connect(&backend.engine()).await.unwrap();
        let (stop, stopped) = watch::channel(false);
        let mut changes = reader.subscribe();
        let listening = {
            let reader = reader.clone();
            tokio::spawn(async move { reader.listen_for_changes(stopped).await })
        };
        // The listener announces once when it starts listening.
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .expect("listener started")
            .unwrap();
        apply_announced(&writer, &mut changes, Duration::from_secs(2)).await;
        stop.send(true).unwrap();
        listening.await.unwrap();
        writer.close().await;
        reader.close().await;
    }
}

#[test]
fn engines_are_chosen_by_url() {
    let dir = Path::new("/data");
    assert_eq!(
        Engine::select(None, dir).unwrap(),
        Engine::Sqlite("/data/menshen.sqlite".into())
    );
    assert_eq!(
        Engine::select(Some(""), dir).unwrap(),
        Engine::Sqlite("/data/menshen.sqlite".into())
    );
    assert_eq!(
        Engine::select(Some("sqlite:///tmp/x.db"), dir).unwrap(),
        Engine::Sqlite("/tmp/x.db".into())
    );
    assert!(matches!(
        Engine::select(Some("postgres://u:secret@h/db"), dir).unwrap(),
        Engine::Postgres(_)
    ));
    let debug = format!(
        "{:?}",
        Engine::select(Some("postgres://u:secret@h/db"), dir).unwrap()
    );
    assert!(!debug.contains("secret"), "{debug}");
    assert!(Engine::select(Some("mysql://h/db"), dir).is_err());
}

#[tokio::test]
async fn invites_round_trip_and_their_uses_only_move_forward() {
    use menshen::store::{InviteSelection, NewInvite};
    on_each_store(async |store, name| {
        let invite = |id: &str, buckets: &[&str], expires: Option<i64>| NewInvite {
            id: id.into(),
            secret_hash: "ab".repeat(32),
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            expires_millis: expires,
        };
        let mut changes = store.subscribe();
        changes.borrow_and_update();
        store
            .create_invites(
                &[
                    invite("aaaa", &["family", "friends"], Some(9_000)),
                    invite("bbbb", &["friends"], None),
                ],
                1_000,
                audit("invite.create", "invites"),
            )
            .await
            .unwrap();
        assert!(changes.has_changed().unwrap(), "{name}: creating announces");

        let inventory = store.load_inventory().await.unwrap();
        let ids: Vec<&str> = inventory.invites.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["aaaa", "bbbb"], "{name}");
        assert_eq!(inventory.invites[0].buckets, ["family", "friends"]);
        assert_eq!(inventory.invites[0].expires_millis, Some(9_000));
        assert_eq!(inventory.invites[0].secret_hash, "ab".repeat(32));

        changes.borrow_and_update();
        let uses = [("aaaa".to_string(), 5_000), ("gone".to_string(), 5_000)];
        store.record_invite_uses(&uses).await.unwrap();
        store
            .record_invite_uses(&[("aaaa".to_string(), 4_000)])
            .await
            .unwrap();
        assert!(
            !changes.has_changed().unwrap(),
            "{name}: uses change no client's list"
        );
        let listed = store.list_invites().await.unwrap();
        assert_eq!(listed[0].created_millis, 1_000);
        assert_eq!(listed[0].last_used_millis, Some(5_000), "{name}");
        assert_eq!(listed[1].last_used_millis, None);

        // A duplicate id fails the whole batch.
        let err = store
            .create_invites(
                &[invite("cccc", &["x"], None), invite("bbbb", &["x"], None)],
                2_000,
                audit("invite.create", "invites"),
            )
            .await;
        assert!(err.is_err(), "{name}");
        assert_eq!(store.list_invites().await.unwrap().len(), 2, "{name}");

        assert_eq!(
            store
                .delete_invites(
                    InviteSelection::Id("nope"),
                    audit("invite.delete", "invite/nope")
                )
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            store
                .delete_invites(
                    InviteSelection::Bucket("friends"),
                    audit("invite.delete", "invites"),
                )
                .await
                .unwrap(),
            2,
            "{name}"
        );
        assert!(store.list_invites().await.unwrap().is_empty());
    })
    .await;
}

/// The probe row of `host`, a resource of `kind`, in `inventory`.
fn probe_of<'a>(inventory: &'a Inventory, kind: ResourceKind, host: &str) -> Option<&'a ProbeRow> {
    inventory.probes_by_resource().get(&(kind, host)).copied()
}

fn probe(kind: ResourceKind, host: &str, state: ProbeState, at: i64) -> ProbeRow {
    ProbeRow {
        kind,
        host: host.into(),
        state,
        failures: if state == ProbeState::Dysfunctional {
            3
        } else {
            0
        },
        checked_millis: at,
        changed_millis: at,
        detail: format!("{} at {at}", state.as_str()),
    }
}

#[tokio::test]
async fn probe_results_are_kept_replaced_and_dropped_with_their_resource() {
    on_each_store(async |store, name| {
        apply(store, CONTRACT_FILE).await;
        let changes = store.change_count();
        // A round without a change of state announces nothing.
        // (Read back in the order of kind, then host.)
        let first = [
            probe(ResourceKind::Bridge, "br1.ams", ProbeState::Untested, 10),
            probe(ResourceKind::Gateway, "gw1.ams", ProbeState::Functional, 10),
        ];
        store.record_probes(&first, false).await.unwrap();
        assert_eq!(store.change_count(), changes, "{name}");
        assert_eq!(
            store.load_inventory().await.unwrap().probes,
            first,
            "{name}"
        );

        // The next round replaces a row and adds one, and announces it.
        let second = [
            probe(
                ResourceKind::Gateway,
                "gw1.ams",
                ProbeState::Dysfunctional,
                20,
            ),
            probe(ResourceKind::Gateway, "gw1.mtl", ProbeState::Functional, 20),
        ];
        store.record_probes(&second, true).await.unwrap();
        assert!(store.change_count() > changes, "{name}");
        let inventory = store.load_inventory().await.unwrap();
        assert_eq!(inventory.probes.len(), 3, "{name}");
        assert_eq!(
            probe_of(&inventory, ResourceKind::Gateway, "gw1.ams"),
            Some(&second[0])
        );
        assert_eq!(
            probe_of(&inventory, ResourceKind::Bridge, "br1.ams"),
            Some(&first[0])
        );

        // Rows of resources that are gone go with the next round.
        apply(
            store,
            &CONTRACT_FILE.replace("host = \"gw1.mtl\"", "host = \"gw9.mtl\""),
        )
        .await;
        store.record_probes(&[], false).await.unwrap();
        let inventory = store.load_inventory().await.unwrap();
        assert_eq!(
            probe_of(&inventory, ResourceKind::Gateway, "gw1.mtl"),
            None,
            "{name}"
        );
        assert_eq!(inventory.probes.len(), 2, "{name}");
    })
    .await;
}
