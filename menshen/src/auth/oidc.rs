//! Tokens from an external OpenID Connect provider (Keycloak, Dex,
//! Authentik, …), for people rather than agents.
//!
//! A token is accepted when it is signed by a key the provider publishes in
//! its JWKS (RSA, P-256/P-384 or Ed25519; never a shared secret, never
//! `alg: none`), names that key in `kid`, comes from the configured issuer
//! (exactly), is meant for the configured audience and is within its
//! `exp`/`nbf` (with some leeway). Its role is read from a configured claim.
//!
//! The provider's keys are fetched once and kept; they are fetched again when
//! a token names a key id not seen yet (key rotation), but not more often
//! than [`OidcSettings::min_refetch_interval`], so a flood of made-up key ids
//! cannot hammer the provider; and when they are older than
//! [`OidcSettings::max_key_age`]. One fetch runs at a time. While the
//! provider cannot be reached, the keys already fetched stay in use.
//!
//! Tokens are never logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::Url;
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

/// The claim the role is read from unless configured otherwise.
pub const DEFAULT_ROLE_CLAIM: &str = "menshen_role";
/// The roles menshen knows, strongest first.
pub const ROLES: [&str; 2] = ["admin", "viewer"];

/// Signature algorithms a token may use besides [`RSA_ALGORITHMS`]; which
/// one is decided by its key.
const OTHER_ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA];
const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];
/// Shortest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// Longest key id looked up; longer ones are refused without a fetch.
const MAX_KID_LEN: usize = 256;

/// Where tokens come from and how they are checked.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The provider's issuer identifier; `iss` must equal it exactly
    /// (mind the trailing slash).
    pub issuer: String,
    /// Must be one of the token's `aud`.
    pub audience: String,
    /// The provider's JWKS document (`jwks_uri` of its discovery document).
    pub jwks_url: Url,
    /// The claim holding the role: a top-level claim name (which may itself
    /// contain dots, like `https://example.org/role`), else a dotted path
    /// into nested objects (`realm_access.roles`). Its value is a string or
    /// an array of strings; `admin` wins over `viewer`, anything else is no
    /// role.
    pub role_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Longest a JWKS fetch may take.
    pub fetch_timeout: Duration,
    /// Shortest time between two fetches caused by unknown key ids (or by a
    /// failed fetch).
    pub min_refetch_interval: Duration,
    /// Keys older than this are fetched again.
    pub max_key_age: Duration,
}

impl OidcSettings {
    /// Settings with the default role claim, 60 s of leeway, a 5 s fetch
    /// timeout, at most one refetch per 30 s and keys kept for an hour.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>, jwks_url: Url) -> Self {
        OidcSettings {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url,
            role_claim: DEFAULT_ROLE_CLAIM.into(),
            leeway: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(5),
            min_refetch_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(3600),
        }
    }
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcPrincipal {
    /// The token's `sub`.
    pub subject: String,
    /// `admin` or `viewer`; `None` when the claim is absent or holds neither
    /// (the caller answers 403).
    pub role: Option<String>,
}

/// Why a token was refused. All of them mean 401; [`OidcError::Unavailable`]
/// is the provider's fault rather than the token's (and has been logged as a
/// warning).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid here: {0}")]
    Invalid(String),
    #[error("the identity provider's keys cannot be fetched: {0}")]
    Unavailable(String),
}

/// A verification key from the provider and the algorithms it may be used
/// with.
struct Key {
    decoding: DecodingKey,
    algorithms: Vec<Algorithm>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<Key>>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
}

impl KeyCache {
    fn fresh(&self, max_age: Duration) -> bool {
        self.fetched_at.is_some_and(|t| t.elapsed() < max_age)
    }
}

/// Verifies tokens of one OpenID Connect provider. Share it (`Arc`) between
/// requests: it holds the provider's keys.
pub struct OidcVerifier {
    settings: OidcSettings,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Held during a fetch, so only one runs at a time; holds when the last
    /// one was attempted.
    fetching: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    /// Fetches nothing yet: the keys are fetched by the first verification.
    pub fn new(settings: OidcSettings, http: reqwest::Client) -> Self {
        let url = &settings.jwks_url;
        let loopback = url.host_str().is_some_and(|host| {
            host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if url.scheme() != "https" && !loopback {
            tracing::warn!(
                jwks_url = %url,
                "the OpenID Connect keys are fetched without TLS; anyone on the way can forge tokens"
            );
        }
        OidcVerifier {
            settings,
            http,
            cache: RwLock::new(KeyCache::default()),
            fetching: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Checks the token's signature, algorithm, key id, issuer, audience and
    /// validity period, and reads its subject and role.
    pub async fn verify(&self, token: &str) -> Result<OidcPrincipal, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| OidcError::Invalid(format!("malformed token: {err}")))?;
        if !(RSA_ALGORITHMS.contains(&header.alg) || OTHER_ALGORITHMS.contains(&header.alg)) {
            return Err(OidcError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = match header.kid.as_deref() {
            Some(kid) if !kid.is_empty() && kid.len() <= MAX_KID_LEN => kid,
            Some(_) => return Err(OidcError::Invalid("unusable key id (kid)".into())),
            None => return Err(OidcError::Invalid("the token names no key (kid)".into())),
        };
        let key = self.key(kid).await?;
        if !key.algorithms.contains(&header.alg) {
            return Err(OidcError::Invalid(format!(
                "the provider's key is not for {:?}",
                header.alg
            )));
        }

        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = self.settings.leeway.as_secs();
        let claims =
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation) {
                Ok(data) => data.claims,
                Err(err) => {
                    use jsonwebtoken::errors::ErrorKind;
                    return Err(match err.kind() {
                        ErrorKind::ExpiredSignature => OidcError::Expired,
                        ErrorKind::ImmatureSignature => OidcError::Invalid("not valid yet".into()),
                        ErrorKind::InvalidIssuer => OidcError::Invalid("wrong issuer".into()),
                        ErrorKind::InvalidAudience => OidcError::Invalid("wrong audience".into()),
                        ErrorKind::InvalidSignature => OidcError::Invalid("bad signature".into()),
                        _ => OidcError::Invalid(err.to_string()),
                    });
                }
            };
        // jsonwebtoken also takes an array of issuers; OpenID Connect has one.
        if claims.get("iss").and_then(Value::as_str) != Some(self.settings.issuer.as_str()) {
            return Err(OidcError::Invalid("wrong issuer".into()));
        }
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(OidcError::Invalid("no subject (sub)".into())),
        };
        Ok(OidcPrincipal {
            subject,
            role: role_from_claims(&claims, &self.settings.role_claim),
        })
    }

    /// The provider's key `kid`, fetching the keys when it is unknown or
    /// they are old (within the rate limit).
    async fn key(&self, kid: &str) -> Result<Arc<Key>, OidcError> {
        let stale = {
            let cache = self.cache.read().await;
            match cache.keys.get(kid) {
                Some(key) if cache.fresh(self.settings.max_key_age) => return Ok(key.clone()),
                other => other.cloned(),
            }
        };
        let mut last_attempt = match stale {
            // Old keys: one request refreshes them, the others go on with
            // what is there rather than wait for it.
            Some(key) => match self.fetching.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(key),
            },
            None => self.fetching.lock().await,
        };
        // Another request may have fetched while this one waited.
        {
            let cache = self.cache.read().await;
            if let Some(key) = cache.keys.get(kid)
                && cache.fresh(self.settings.max_key_age)
            {
                return Ok(key.clone());
            }
        }

        let mut failure = None;
        if last_attempt.is_none_or(|t| t.elapsed() >= self.settings.min_refetch_interval) {
            *last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    tracing::debug!(
                        keys = keys.len(),
                        "fetched the OpenID Connect provider's keys"
                    );
                    let mut cache = self.cache.write().await;
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                }
                Err(err) => {
                    tracing::warn!(
                        jwks_url = %self.settings.jwks_url,
                        error = %err,
                        "cannot fetch the OpenID Connect provider's keys; tokens signed with \
                         keys not fetched before are refused"
                    );
                    failure = Some(err);
                }
            }
        }
        drop(last_attempt);

        let cache = self.cache.read().await;
        match (cache.keys.get(kid), failure) {
            // Possibly old, when the provider cannot be reached: still the
            // provider's key.
            (Some(key), _) => Ok(key.clone()),
            (None, Some(err)) => Err(OidcError::Unavailable(err)),
            (None, None) if cache.fetched_at.is_none() => Err(OidcError::Unavailable(
                "no keys fetched yet; retrying shortly".into(),
            )),
            (None, None) => Err(OidcError::Invalid(
                "signed with a key the provider does not publish".into(),
            )),
        }
    }

    /// The provider's usable signing keys, by key id.
    async fn fetch(&self) -> Result<HashMap<String, Arc<Key>>, String> {
        let mut response = self
            .http
            .get(self.settings.jwks_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.settings.fetch_timeout)
            .send()
            .await
            .map_err(|err| error_chain(&err))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the provider answered {status}"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|err| error_chain(&err))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }

        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<Value>,
        }
        let set: RawSet =
            serde_json::from_slice(&body).map_err(|err| format!("not a JWKS: {err}"))?;
        let mut keys = HashMap::new();
        for raw in set.keys {
            // One key of a kind this version does not know must not make the
            // others unusable.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw) else {
                continue;
            };
            if let Some((kid, key)) = usable_key(&jwk) {
                keys.insert(kid, Arc::new(key));
            }
        }
        if keys.is_empty() {
            return Err("the JWKS holds no usable signing key".into());
        }
        Ok(keys)
    }
}

/// The key and the algorithms it may verify, when it is a public signing
/// key with an id. Shared secrets (`oct`) are never used: anyone could sign
/// with a published key.
fn usable_key(jwk: &Jwk) -> Option<(String, Key)> {
    let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let family: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let modulus = base64_url_decode(&params.n)?;
            let significant = modulus.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                tracing::warn!(
                    kid,
                    "ignoring an RSA key shorter than 2048 bits in the JWKS"
                );
                return None;
            }
            &RSA_ALGORITHMS
        }
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        _ => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family.to_vec(),
        Some(declared) => {
            let alg = Algorithm::try_from(declared).ok()?;
            if !family.contains(&alg) {
                return None;
            }
            vec![alg]
        }
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some((
        kid,
        Key {
            decoding,
            algorithms,
        },
    ))
}

fn base64_url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// The role in claim `claim`: a top-level claim of that name, else the
/// dotted path through nested objects.
fn role_from_claims(claims: &Map<String, Value>, claim: &str) -> Option<String> {
    let value = claims.get(claim).or_else(|| {
        let mut parts = claim.split('.');
        let mut value = claims.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    })?;
    let held: Vec<&str> = match value {
        Value::String(role) => vec![role.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => return None,
    };
    ROLES
        .into_iter()
        .find(|role| held.contains(role))
        .map(str::to_owned)
}

/// An error with its causes, for the log.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
