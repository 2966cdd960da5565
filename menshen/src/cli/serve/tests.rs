//! The serve command's flags: what parses and what is refused.

use crate::cli::{Command, parse};

#[test]
fn the_old_ordering_flags_are_still_accepted_and_the_limits_parse() {
    let Command::Serve(args) = parse(&[
        "serve",
        "--order-variants",
        "8",
        "--response-cache",
        "64MiB",
        "--cert-rate-limit",
        "10/min",
    ])
    .unwrap()
    .command
    else {
        panic!("serve");
    };
    assert_eq!(args.geo.order_variants, Some(8));
    let limit = args.issue.rate_limit().unwrap();
    assert_eq!((limit.rate.count, limit.burst), (10, 10));
    assert!(parse(&["serve", "--response-cache", "lots"]).is_err());
    assert!(parse(&["serve", "--cert-rate-limit", "often"]).is_err());
    assert!(
        parse(&["serve", "--cert-rate-burst", "5"]).is_err(),
        "needs a rate"
    );
    let Command::Serve(args) = parse(&["serve"]).unwrap().command else {
        panic!("serve");
    };
    assert_eq!(args.issue.rate_limit(), None);
}

#[test]
fn bridge_flags_parse_and_bad_ones_are_refused() {
    let serve = |extra: &[&str]| {
        let mut all = vec!["serve"];
        all.extend_from_slice(extra);
        parse(&all).map(|cli| match cli.command {
            Command::Serve(args) => args,
            _ => panic!("serve"),
        })
    };
    let defaults = serve(&[]).unwrap();
    assert_eq!(
        usize::from(defaults.bridges.bridges_per_client),
        crate::select::ring::DEFAULT_PER_CLIENT
    );
    assert_eq!(
        defaults.bridges.bridge_epoch,
        crate::select::ring::DEFAULT_EPOCH_LENGTH
    );
    assert_eq!(defaults.bridges.bridge_rate_limit, None);
    let args = serve(&[
        "--bridges-per-client",
        "0",
        "--bridge-epoch",
        "7d",
        "--bridge-rate-limit",
        "30/h",
        "--bridge-rate-burst",
        "5",
    ])
    .unwrap();
    assert_eq!(args.bridges.bridges_per_client, 0);
    assert_eq!(args.bridges.bridge_epoch.as_secs(), 7 * 86_400);
    let limit = super::rate_limit(
        args.bridges.bridge_rate_limit,
        args.bridges.bridge_rate_burst,
    )
    .unwrap();
    assert_eq!((limit.rate.count, limit.burst), (30, 5));
    for bad in [
        &["--bridges-per-client", "17"][..],
        &["--bridges-per-client", "-1"],
        &["--bridge-epoch", "0s"],
        &["--bridge-epoch", "500ms"],
        &["--bridge-epoch", "daily"],
        &["--bridge-rate-limit", "lots"],
        &["--bridge-rate-burst", "3"],
    ] {
        assert!(serve(bad).is_err(), "{bad:?}");
    }
}
