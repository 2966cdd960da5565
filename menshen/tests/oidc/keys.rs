//! Fetching, refreshing and keeping the provider's keys.

use std::time::Duration;

use menshen::auth::oidc::OidcError;
use serde_json::json;

use super::*;

#[tokio::test]
async fn an_unknown_kid_refetches_once_then_is_refused() {
    let provider = Provider::start(all_keys()).await;
    let verifier = provider.verifier(|s| s.min_refetch_interval = Duration::from_millis(200));
    let body = claims(json!({"menshen_role": "admin"}));
    assert!(verifier.verify(&RSA.mint("rsa-1", &body)).await.is_ok());
    assert_eq!(provider.hits(), 1);

    tokio::time::sleep(Duration::from_millis(250)).await;
    let err = verifier
        .verify(&RSA.mint("rsa-9", &body))
        .await
        .unwrap_err();
    assert!(matches!(err, OidcError::Invalid(_)), "{err}");
    assert_eq!(provider.hits(), 2);
    // Right after: refused without asking again.
    assert!(verifier.verify(&RSA.mint("rsa-9", &body)).await.is_err());
    assert_eq!(provider.hits(), 2);
    // Known keys are unaffected.
    assert!(verifier.verify(&ED.mint("ed-1", &body)).await.is_ok());
    assert_eq!(provider.hits(), 2);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_and_a_removed_one_stops_working() {
    let provider = Provider::start(vec![RSA.jwk("2024")]).await;
    let verifier = provider.verifier(|s| s.min_refetch_interval = Duration::from_millis(200));
    let body = claims(json!({"menshen_role": "viewer"}));
    let old = RSA.mint("2024", &body);
    assert!(verifier.verify(&old).await.is_ok());

    provider.set_keys(vec![RSA_OTHER.jwk("2025")]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let new = RSA_OTHER.mint("2025", &body);
    assert_eq!(
        verifier.verify(&new).await.unwrap(),
        principal("alice", Some("viewer"))
    );
    assert_eq!(provider.hits(), 2);
    // The fetched set replaced the old one.
    assert!(matches!(
        verifier.verify(&old).await,
        Err(OidcError::Invalid(_))
    ));
    assert!(verifier.verify(&new).await.is_ok());
    assert_eq!(provider.hits(), 2);
}

#[tokio::test]
async fn old_keys_are_refreshed_and_kept_while_the_provider_is_down() {
    let provider = Provider::start(all_keys()).await;
    let verifier = provider.verifier(|s| {
        s.max_key_age = Duration::from_millis(100);
        s.min_refetch_interval = Duration::from_millis(100);
    });
    let token = ED.mint("ed-1", &claims(json!({"menshen_role": "admin"})));
    assert!(verifier.verify(&token).await.is_ok());
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(provider.hits(), 1);

    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(provider.hits(), 2);

    provider.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(verifier.verify(&token).await.is_ok());
    assert_eq!(provider.hits(), 3);
}

#[tokio::test]
async fn an_unreachable_provider_refuses_tokens_without_panicking() {
    let body = claims(json!({"menshen_role": "admin"}));
    let token = RSA.mint("rsa-1", &body);

    // Nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let verifier = verifier_at(
        format!("http://127.0.0.1:{port}/jwks").parse().unwrap(),
        |_| {},
    );
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(matches!(err, OidcError::Unavailable(_)), "{err}");
    // Within the rate limit: no new attempt, still unavailable.
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(matches!(err, OidcError::Unavailable(_)), "{err}");

    // Answers 503.
    let provider = Provider::start(all_keys()).await;
    provider.failing.store(true, Ordering::SeqCst);
    let verifier = provider.verifier(|_| {});
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(matches!(err, OidcError::Unavailable(_)), "{err}");

    // Answers something that is not a JWKS, or one without usable keys.
    for document in [
        json!({"issuer": ISSUER}),
        json!({"keys": []}),
        json!([1, 2]),
    ] {
        provider.failing.store(false, Ordering::SeqCst);
        *provider.jwks.lock().unwrap() = document.clone();
        let verifier = provider.verifier(|_| {});
        let err = verifier.verify(&token).await.unwrap_err();
        assert!(
            matches!(err, OidcError::Unavailable(_)),
            "{document}: {err}"
        );
    }

    // Answers too slowly.
    provider.set_keys(all_keys());
    *provider.delay.lock().unwrap() = Duration::from_secs(3);
    let verifier = provider.verifier(|s| s.fetch_timeout = Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = verifier.verify(&token).await.unwrap_err();
    assert!(matches!(err, OidcError::Unavailable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_flood_of_unknown_kids_fetches_rarely() {
    let provider = Provider::start(all_keys()).await;
    let verifier = Arc::new(provider.verifier(|_| {}));
    let body = claims(json!({"menshen_role": "admin"}));

    // Many first requests at once: one fetch.
    let good = RSA.mint("rsa-1", &body);
    let results = futures_util::future::join_all((0..20).map(|_| {
        let verifier = verifier.clone();
        let good = good.clone();
        async move { verifier.verify(&good).await }
    }))
    .await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(provider.hits(), 1);

    // Made-up key ids, at once and one after the other: no more fetches
    // within the rate limit (30 s).
    let tasks = (0..50).map(|i| {
        let verifier = verifier.clone();
        let token = RSA.mint(&format!("random-{i}"), &body);
        tokio::spawn(async move { verifier.verify(&token).await })
    });
    for result in futures_util::future::join_all(tasks).await {
        assert!(matches!(result.unwrap(), Err(OidcError::Invalid(_))));
    }
    for i in 50..100 {
        let token = RSA.mint(&format!("random-{i}"), &body);
        assert!(verifier.verify(&token).await.is_err());
    }
    assert_eq!(provider.hits(), 1);
    assert!(verifier.verify(&good).await.is_ok());

    // A provider that fails is not hammered either.
    let down = Provider::start(all_keys()).await;
    down.failing.store(true, Ordering::SeqCst);
    let verifier = Arc::new(down.verifier(|_| {}));
    let tasks = (0..20).map(|_| {
        let verifier = verifier.clone();
        let good = good.clone();
        tokio::spawn(async move { verifier.verify(&good).await })
    });
    for result in futures_util::future::join_all(tasks).await {
        assert!(matches!(result.unwrap(), Err(OidcError::Unavailable(_))));
    }
    assert_eq!(down.hits(), 1);
}
