//! Tokens from an OpenID Connect provider: keys generated here, the JWKS
//! served over real HTTP by a local server that counts its requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use menshen::auth::oidc::{OidcError, OidcPrincipal, OidcSettings, OidcVerifier};

mod common;
use serde_json::{Value, json};

const ISSUER: &str = "https://id.vpn.test/realms/leap";
const AUDIENCE: &str = "menshen";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

enum TestKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair, &'static str, &'static str),
    Ed(Ed25519KeyPair),
}

static RSA: LazyLock<TestKey> =
    LazyLock::new(|| TestKey::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()));
static RSA_OTHER: LazyLock<TestKey> =
    LazyLock::new(|| TestKey::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap()));
static P256: LazyLock<TestKey> = LazyLock::new(|| {
    TestKey::Ec(
        EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        "P-256",
        "ES256",
    )
});
static P384: LazyLock<TestKey> = LazyLock::new(|| {
    TestKey::Ec(
        EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_FIXED_SIGNING).unwrap(),
        "P-384",
        "ES384",
    )
});
static ED: LazyLock<TestKey> = LazyLock::new(|| TestKey::Ed(Ed25519KeyPair::generate().unwrap()));

/// The contents of one DER TLV with a short or long length, and the rest.
fn der(input: &[u8]) -> (&[u8], &[u8]) {
    let (len, start) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        l => {
            let n = (l & 0x7f) as usize;
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        }
    };
    (&input[start..start + len], &input[start + len..])
}

fn unsigned(integer: &[u8]) -> &[u8] {
    let skip = integer.iter().take_while(|b| **b == 0).count();
    &integer[skip..]
}

impl TestKey {
    /// The public key as a JWK named `kid`.
    fn jwk(&self, kid: &str) -> Value {
        match self {
            TestKey::Rsa(key) => {
                // RFC 8017 RSAPublicKey: SEQUENCE { n INTEGER, e INTEGER }
                let (seq, _) = der(key.public_key().as_ref());
                let (n, rest) = der(seq);
                let (e, _) = der(rest);
                json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(unsigned(n)), "e": b64(unsigned(e))})
            }
            TestKey::Ec(key, crv, _) => {
                let point = key.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                json!({"kty": "EC", "kid": kid, "crv": crv,
                       "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
            }
            TestKey::Ed(key) => {
                json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(key.public_key().as_ref())})
            }
        }
    }

    fn default_alg(&self) -> &'static str {
        match self {
            TestKey::Rsa(_) => "RS256",
            TestKey::Ec(_, _, alg) => alg,
            TestKey::Ed(_) => "EdDSA",
        }
    }

    fn sign(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Rsa(key) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    "RS256" => &signature::RSA_PKCS1_SHA256,
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    other => panic!("no RSA signing for {other}"),
                };
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(padding, &rng, message, &mut sig).unwrap();
                sig
            }
            TestKey::Ec(key, _, _) => key.sign(&rng, message).unwrap().as_ref().to_vec(),
            TestKey::Ed(key) => key.sign(message).as_ref().to_vec(),
        }
    }

    /// A token signed with this key, header `alg` and `kid`.
    fn mint_with(&self, alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign(alg, input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    fn mint(&self, kid: &str, claims: &Value) -> String {
        self.mint_with(self.default_alg(), Some(kid), claims)
    }
}

/// Valid claims for subject `alice`, with `extra` merged in (a null
/// removes a claim).
fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now(),
        "exp": now() + 300,
    });
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// A JWKS endpoint whose document can be changed, that can be told to fail,
/// and that counts its requests.
struct Provider {
    jwks: Mutex<Value>,
    failing: AtomicBool,
    delay: Mutex<Duration>,
    hits: AtomicUsize,
    address: SocketAddr,
}

impl Provider {
    async fn start(keys: Vec<Value>) -> Arc<Provider> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let provider = Arc::new(Provider {
            jwks: Mutex::new(json!({ "keys": keys })),
            failing: AtomicBool::new(false),
            delay: Mutex::new(Duration::ZERO),
            hits: AtomicUsize::new(0),
            address: listener.local_addr().unwrap(),
        });
        async fn jwks(State(provider): State<Arc<Provider>>) -> Response {
            provider.hits.fetch_add(1, Ordering::SeqCst);
            let delay = *provider.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            if provider.failing.load(Ordering::SeqCst) {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            let body = provider.jwks.lock().unwrap().clone();
            Json(body).into_response()
        }
        let app = axum::Router::new()
            .route("/jwks", get(jwks))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        provider
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn url(&self) -> reqwest::Url {
        format!("http://{}/jwks", self.address).parse().unwrap()
    }

    fn verifier(&self, tweak: impl FnOnce(&mut OidcSettings)) -> OidcVerifier {
        verifier_at(self.url(), tweak)
    }
}

fn verifier_at(url: reqwest::Url, tweak: impl FnOnce(&mut OidcSettings)) -> OidcVerifier {
    let mut settings = OidcSettings::new(ISSUER, AUDIENCE, url);
    tweak(&mut settings);
    OidcVerifier::new(settings, reqwest::Client::new())
}

fn all_keys() -> Vec<Value> {
    vec![
        RSA.jwk("rsa-1"),
        P256.jwk("ec-256"),
        P384.jwk("ec-384"),
        ED.jwk("ed-1"),
    ]
}

fn principal(subject: &str, role: Option<&str>) -> OidcPrincipal {
    OidcPrincipal {
        subject: subject.into(),
        role: role.map(str::to_owned),
    }
}

#[tokio::test]
async fn tokens_of_every_key_kind_pass_with_their_role() {
    let provider = Provider::start(all_keys()).await;
    let verifier = provider.verifier(|_| {});

    for (key, kid) in [
        (&*RSA, "rsa-1"),
        (&*P256, "ec-256"),
        (&*P384, "ec-384"),
        (&*ED, "ed-1"),
    ] {
        for role in ["admin", "viewer"] {
            let token = key.mint(kid, &claims(json!({ "menshen_role": role })));
            assert_eq!(
                verifier.verify(&token).await.unwrap(),
                principal("alice", Some(role)),
                "{kid} {role}"
            );
        }
    }
    for alg in ["RS384", "RS512", "PS256"] {
        let token = RSA.mint_with(
            alg,
            Some("rsa-1"),
            &claims(json!({"menshen_role": "viewer"})),
        );
        assert_eq!(
            verifier.verify(&token).await.unwrap(),
            principal("alice", Some("viewer")),
            "{alg}"
        );
    }

    // No role, or one menshen does not know: a valid token without a role.
    let token = RSA.mint("rsa-1", &claims(json!({})));
    assert_eq!(
        verifier.verify(&token).await.unwrap(),
        principal("alice", None)
    );
    let token = RSA.mint("rsa-1", &claims(json!({"menshen_role": "root"})));
    assert_eq!(verifier.verify(&token).await.unwrap().role, None);
    let token = RSA.mint("rsa-1", &claims(json!({"menshen_role": {"admin": true}})));
    assert_eq!(verifier.verify(&token).await.unwrap().role, None);

    // `aud` may be an array holding the audience among others.
    let token = RSA.mint(
        "rsa-1",
        &claims(json!({"aud": ["account", AUDIENCE], "menshen_role": "admin"})),
    );
    assert_eq!(
        verifier.verify(&token).await.unwrap().role.as_deref(),
        Some("admin")
    );

    // Everything came from one fetch.
    assert_eq!(provider.hits(), 1);
}

#[tokio::test]
async fn the_role_claim_may_be_a_dotted_path_and_an_array() {
    let provider = Provider::start(all_keys()).await;
    let verifier = provider.verifier(|s| s.role_claim = "realm_access.roles".into());
    let role = |roles: Value| {
        let token = RSA.mint(
            "rsa-1",
            &claims(json!({"realm_access": {"roles": roles}, "menshen_role": "admin"})),
        );
        let verifier = &verifier;
        async move { verifier.verify(&token).await.unwrap().role }
    };
    assert_eq!(
        role(json!(["offline_access", "viewer", "admin"])).await,
        Some("admin".into())
    );
    assert_eq!(
        role(json!(["offline_access", "viewer"])).await,
        Some("viewer".into())
    );
    assert_eq!(role(json!("viewer")).await, Some("viewer".into()));
    assert_eq!(role(json!(["offline_access", 7])).await, None);
    assert_eq!(role(json!([])).await, None);
    // The path ends early: no role (the top-level claim is not used).
    let token = RSA.mint(
        "rsa-1",
        &claims(json!({"realm_access": ["admin"], "menshen_role": "admin"})),
    );
    assert_eq!(verifier.verify(&token).await.unwrap().role, None);

    // A claim whose name has dots (namespaced claims) is found whole.
    let verifier = provider.verifier(|s| s.role_claim = "https://vpn.test/roles".into());
    let token = P256.mint(
        "ec-256",
        &claims(json!({"https://vpn.test/roles": ["viewer"]})),
    );
    assert_eq!(
        verifier.verify(&token).await.unwrap().role.as_deref(),
        Some("viewer")
    );
}

#[tokio::test]
async fn wrong_issuer_audience_and_times_are_refused() {
    let provider = Provider::start(all_keys()).await;
    let verifier = provider.verifier(|_| {});
    let refused = |extra: Value| {
        let token = RSA.mint("rsa-1", &claims(extra));
        let verifier = &verifier;
        async move { verifier.verify(&token).await.unwrap_err() }
    };

    for iss in [
        json!("https://evil.test/realms/leap"),
        json!(format!("{ISSUER}/")),
        json!("https://id.vpn.test/realms/LEAP"),
        json!([ISSUER]),
        Value::Null,
    ] {
        let err = refused(json!({ "iss": iss })).await;
        assert!(matches!(err, OidcError::Invalid(_)), "iss {iss}: {err}");
    }
    for aud in [
        json!("account"),
        json!(["account", "other"]),
        json!([]),
        Value::Null,
    ] {
        let err = refused(json!({ "aud": aud })).await;
        assert!(matches!(err, OidcError::Invalid(_)), "aud {aud}: {err}");
    }
    assert!(matches!(
        refused(json!({"exp": now() - 120})).await,
        OidcError::Expired
    ));
    assert!(matches!(
        refused(json!({"exp": Value::Null})).await,
        OidcError::Invalid(_)
    ));
    assert!(matches!(
        refused(json!({"nbf": now() + 600})).await,
        OidcError::Invalid(_)
    ));
    for sub in [Value::Null, json!(""), json!(42)] {
        let err = refused(json!({ "sub": sub })).await;
        assert!(matches!(err, OidcError::Invalid(_)), "sub {sub}: {err}");
    }

    // Within the leeway (60 s) is still fine.
    let token = RSA.mint(
        "rsa-1",
        &claims(json!({"exp": now() - 10, "nbf": now() + 10})),
    );
    assert!(verifier.verify(&token).await.is_ok());

    // Bad signatures: tampered claims, another key under a known id.
    let token = RSA.mint("rsa-1", &claims(json!({"menshen_role": "viewer"})));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims(json!({"menshen_role": "admin"}))
        .to_string()
        .as_bytes());
    assert!(matches!(
        verifier.verify(&parts.join(".")).await,
        Err(OidcError::Invalid(_))
    ));
    let forged = RSA_OTHER.mint("rsa-1", &claims(json!({"menshen_role": "admin"})));
    assert!(matches!(
        verifier.verify(&forged).await,
        Err(OidcError::Invalid(_))
    ));
    for garbage in ["", "not a token", "a.b.c", "..."] {
        assert!(matches!(
            verifier.verify(garbage).await,
            Err(OidcError::Invalid(_))
        ));
    }
    assert_eq!(provider.hits(), 1);
}

#[tokio::test]
async fn none_hmac_and_mismatched_algorithms_are_refused() {
    let secret = b"a shared secret of thirty-two bytes!";
    let mut keys = all_keys();
    keys.push(json!({"kty": "oct", "kid": "hmac", "k": b64(secret), "alg": "HS256"}));
    let provider = Provider::start(keys).await;
    let verifier = provider.verifier(|_| {});
    let body = claims(json!({"menshen_role": "admin"}));

    // alg: none, with and without a signature.
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
        b64(body.to_string().as_bytes())
    );
    for token in [format!("{input}."), format!("{input}.c2lnbmF0dXJl")] {
        assert!(matches!(
            verifier.verify(&token).await,
            Err(OidcError::Invalid(_))
        ));
    }

    // HS256 signed with what is public: the JWK's modulus, the JWK itself,
    // the RSA public key's DER; and with the `oct` key the JWKS publishes.
    let TestKey::Rsa(rsa) = &*RSA else {
        unreachable!()
    };
    let jwk = RSA.jwk("rsa-1");
    let modulus = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().unwrap())
        .unwrap();
    for (kid, secret) in [
        ("rsa-1", modulus),
        ("rsa-1", jwk.to_string().into_bytes()),
        ("rsa-1", rsa.public_key().as_ref().to_vec()),
        ("hmac", secret.to_vec()),
    ] {
        for alg in [
            jsonwebtoken::Algorithm::HS256,
            jsonwebtoken::Algorithm::HS512,
        ] {
            let mut header = jsonwebtoken::Header::new(alg);
            header.kid = Some(kid.into());
            let token = jsonwebtoken::encode(
                &header,
                &body,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert!(matches!(
                verifier.verify(&token).await,
                Err(OidcError::Invalid(_))
            ));
        }
    }

    // An algorithm the named key is not for.
    let token = P256.mint_with("ES256", Some("rsa-1"), &body);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(OidcError::Invalid(_))
    ));
    let token = RSA.mint_with("RS256", Some("ec-256"), &body);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(OidcError::Invalid(_))
    ));
    // No kid at all.
    let token = RSA.mint_with("RS256", None, &body);
    assert!(matches!(
        verifier.verify(&token).await,
        Err(OidcError::Invalid(_))
    ));
    assert_eq!(provider.hits(), 1);
}

#[tokio::test]
async fn jwks_entries_that_are_not_signing_keys_are_ignored() {
    let provider = Provider::start(vec![
        json!({"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA.jwk("x")["n"], "e": "AQAB"}),
        json!({"kty": "RSA", "n": RSA.jwk("x")["n"], "e": "AQAB"}),
        json!({"kty": "RSA", "kid": "ps-only", "alg": "PS256", "n": RSA.jwk("x")["n"], "e": "AQAB"}),
        json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}),
        json!({"kty": "weird", "kid": "weird"}),
        json!("not even an object"),
        P256.jwk("ec-256"),
    ])
    .await;
    let verifier = provider.verifier(|_| {});
    let body = claims(json!({"menshen_role": "viewer"}));
    assert!(verifier.verify(&P256.mint("ec-256", &body)).await.is_ok());
    assert!(verifier.verify(&RSA.mint("enc", &body)).await.is_err());
    // A key that declares its algorithm is used with that one only.
    assert!(
        verifier
            .verify(&RSA.mint_with("PS256", Some("ps-only"), &body))
            .await
            .is_ok()
    );
    assert!(
        verifier
            .verify(&RSA.mint_with("RS256", Some("ps-only"), &body))
            .await
            .is_err()
    );
}

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

/// The admin API with an OpenID Connect provider configured: its tokens get
/// the role their claim names; a token without a role is 403; one from
/// another issuer, or an agent's, is 401; menshen's own tokens still work.
#[tokio::test]
async fn the_admin_api_takes_the_providers_tokens_by_role() {
    let provider = Provider::start(all_keys()).await;
    let backend = common::Backend::Sqlite(tempfile::tempdir().unwrap());
    let mut settings = backend.settings();
    settings.oidc = Some(OidcSettings::new(ISSUER, AUDIENCE, provider.url()));
    let key = menshen::auth::SigningKey::load(&settings.signing_key, &settings.data_dir).unwrap();
    let server = common::TestServer::start_with(settings).await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, token: String| {
        let client = client.clone();
        let url = server.url("/admin/v1/locations");
        async move {
            let mut request = client.request(method.clone(), url).bearer_auth(token);
            if method == reqwest::Method::POST {
                request = request.json(&json!({"label": format!("loc-{}", now()), "display_name": "Somewhere", "country_code": "NL"}));
            }
            request.send().await.unwrap().status().as_u16()
        }
    };

    let admin = RSA.mint("rsa-1", &claims(json!({"menshen_role": "admin"})));
    let viewer = P256.mint("ec-256", &claims(json!({"menshen_role": ["viewer"]})));
    let nobody = ED.mint("ed-1", &claims(json!({})));
    let other_issuer = RSA.mint(
        "rsa-1",
        &claims(json!({"iss": "https://elsewhere.example", "menshen_role": "admin"})),
    );
    let t = now();
    let agent = key.mint_agent_token("gw", "id", t, 600);
    let own = key.mint_admin_token("ops", menshen::auth::admin::Role::Viewer, t, 600);

    assert_eq!(call(reqwest::Method::GET, admin.clone()).await, 200);
    assert_eq!(call(reqwest::Method::POST, admin).await, 201);
    assert_eq!(call(reqwest::Method::GET, viewer.clone()).await, 200);
    assert_eq!(call(reqwest::Method::POST, viewer).await, 403);
    assert_eq!(call(reqwest::Method::GET, nobody).await, 403);
    assert_eq!(call(reqwest::Method::GET, other_issuer).await, 401);
    assert_eq!(call(reqwest::Method::GET, agent).await, 401);
    assert_eq!(call(reqwest::Method::GET, own).await, 200);

    // The audit log names the provider's subject.
    let audit: Value = client
        .get(server.url("/admin/v1/audit"))
        .bearer_auth(RSA.mint("rsa-1", &claims(json!({"menshen_role": "viewer"}))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(audit.to_string().contains("oidc:alice"), "{audit}");
}
