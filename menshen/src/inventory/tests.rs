//! Snapshots: what a client list holds after overrides, TTLs and probes.

use super::*;

fn row(host: &str, origin: &str, last_seen_millis: i64) -> ResourceRow {
    ResourceRow {
        last_seen_millis,
        origin: origin.into(),
        agent: (origin == "agent").then(|| "gw".into()),
        ..ResourceRow::test_gateway(host, "paris")
    }
}

#[test]
fn dysfunctional_resources_leave_the_lists_but_never_all_of_a_kind() {
    use crate::store::ProbeRow;
    let probe = |host: &str, state| ProbeRow {
        kind: ResourceKind::Gateway,
        host: host.into(),
        state,
        failures: 0,
        checked_millis: 0,
        changed_millis: 0,
        detail: String::new(),
    };
    let hosts =
        |s: &Snapshot| -> Vec<String> { s.gateways.iter().map(|g| g.host.clone()).collect() };
    let mut inventory = Inventory {
        resources: vec![
            row("a", "config", 0),
            row("b", "config", 0),
            row("c", "config", 0),
        ],
        probes: vec![
            probe("a", ProbeState::Functional),
            probe("b", ProbeState::Dysfunctional),
        ],
        ..Default::default()
    };
    let options = SnapshotOptions::default();
    let s = Snapshot::build(&inventory, 0, &options);
    assert_eq!(hosts(&s), ["a", "c"], "c is untested, so it stays");
    assert!(s.probes.excludes(ResourceKind::Gateway, "b"));
    assert!(!s.probes.excludes(ResourceKind::Gateway, "a"));
    assert!(s.probes.suspended.is_empty());
    let count = |s: &Snapshot, state| {
        s.probes
            .counts
            .get(&(ResourceKind::Gateway, state))
            .copied()
    };
    assert_eq!(count(&s, ProbeState::Functional), Some(1));
    assert_eq!(count(&s, ProbeState::Dysfunctional), Some(1));
    assert_eq!(count(&s, ProbeState::Untested), Some(1));

    // Kept when the operator says so.
    let keep = SnapshotOptions {
        drop_dysfunctional: false,
        ..SnapshotOptions::default()
    };
    let s = Snapshot::build(&inventory, 0, &keep);
    assert_eq!(hosts(&s), ["a", "b", "c"]);
    assert!(s.probes.excluded.is_empty());

    // Every live gateway failing: none is left out, and that is said.
    inventory.probes = ["a", "b", "c"]
        .map(|h| probe(h, ProbeState::Dysfunctional))
        .into();
    let s = Snapshot::build(&inventory, 0, &options);
    assert_eq!(hosts(&s), ["a", "b", "c"]);
    assert_eq!(s.probes.suspended, [ResourceKind::Gateway]);
    assert!(s.probes.excluded.is_empty());

    // What is not listed anyway does not count as an alternative: with
    // c unhealthy, a and b dysfunctional are all there is.
    inventory.resources[2].healthy = false;
    inventory.probes[2].state = ProbeState::Functional;
    let s = Snapshot::build(&inventory, 0, &options);
    assert_eq!(hosts(&s), ["a", "b"]);
    assert_eq!(s.probes.suspended, [ResourceKind::Gateway]);
}

#[test]
fn overrides_hide_or_change_what_clients_get() {
    let over = |host: &str, experimental, bucket: Option<&str>, maintenance| OverrideRow {
        kind: ResourceKind::Gateway,
        host: host.into(),
        experimental,
        bucket: bucket.map(str::to_owned),
        maintenance,
        blocked_in: Default::default(),
    };
    let inventory = Inventory {
        resources: vec![
            row("a", "config", 0),
            row("b", "agent", 1_000),
            row("c", "admin", 0),
            row("d", "config", 0),
        ],
        overrides: vec![
            over("a", None, None, true),
            over("b", Some(true), None, false),
            over("c", None, Some("friends"), false),
            // for a bridge of the same host: no effect on the gateway
            OverrideRow {
                kind: ResourceKind::Bridge,
                ..over("d", None, None, true)
            },
        ],
        ..Default::default()
    };
    let s = Snapshot::build(&inventory, 1_500, &SnapshotOptions::default());
    let got: Vec<(&str, bool, &str)> = s
        .gateways
        .iter()
        .map(|g| (g.host.as_str(), g.experimental, g.bucket.as_str()))
        .collect();
    assert_eq!(
        got,
        [("b", true, ""), ("c", false, "friends"), ("d", false, "")]
    );
}

#[test]
fn blocked_resources_are_left_out_for_clients_there_only() {
    let inventory = Inventory {
        resources: vec![row("a", "config", 0), row("b", "config", 0)],
        overrides: vec![OverrideRow {
            kind: ResourceKind::Gateway,
            host: "b".into(),
            blocked_in: crate::store::CountryCodes(vec!["IR".into(), "RU".into()]),
            ..Default::default()
        }],
        ..Default::default()
    };
    let s = Snapshot::build(&inventory, 0, &SnapshotOptions::default());
    let hosts = |country: Option<&str>| {
        let query = crate::select::ClientQuery {
            country: country.and_then(crate::geo::country_index),
            ..Default::default()
        };
        let mut rng = rand::rng();
        let mut hosts: Vec<String> = crate::select::gateways(&s, &query, &mut rng)
            .into_iter()
            .map(|g| g.host.clone())
            .collect();
        hosts.sort();
        hosts
    };
    assert_eq!(hosts(None), ["a", "b"]);
    assert_eq!(hosts(Some("FR")), ["a", "b"]);
    assert_eq!(hosts(Some("RU")), ["a"]);
    assert_eq!(hosts(Some("IR")), ["a"]);
}

#[test]
fn operators_see_the_same_liveness_as_clients() {
    let ttl = 60_000;
    let maintenance = OverrideRow {
        maintenance: true,
        ..Default::default()
    };
    let mut sick = row("x", "agent", 1_000);
    sick.healthy = false;
    for (r, over, now, status) in [
        (row("x", "config", 0), None, 10_000_000, Status::HandDefined),
        (row("x", "admin", 0), None, 10_000_000, Status::HandDefined),
        (row("x", "agent", 1_000), None, 60_999, Status::Live),
        (row("x", "agent", 1_000), None, 61_000, Status::Stale),
        (sick, None, 2_000, Status::Unhealthy),
        (
            row("x", "agent", 1_000),
            Some(&maintenance),
            2_000,
            Status::Maintenance,
        ),
    ] {
        let got = Status::of(&r, over, now, ttl);
        assert_eq!(got, status, "{r:?} at {now}");
        assert_eq!(
            got.listed(),
            is_live_despite(&r, now, ttl, &Outages::default()) && over.is_none()
        );
    }
}
