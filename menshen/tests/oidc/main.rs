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
use menshen::auth::oidc::{OidcPrincipal, OidcSettings, OidcVerifier};

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod keys;
mod tokens;
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
