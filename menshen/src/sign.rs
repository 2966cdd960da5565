//! Signed client answers: `/provider.json`, `/api/5/service`,
//! `/api/5/gateways` and `/api/5/bridges` carry an Ed25519 signature over
//! their exact body, so that a list that passed through introducers and
//! proxies can be checked against the provider's key.
//!
//! The header (`x-menshen-signature`):
//!
//! ```text
//! kid=<key id>; exp=<unix seconds>; sig=<base64url of the 64-byte signature>
//! ```
//!
//! The signature is over `menshen-signature-v1`, a zero byte, the key id,
//! a zero byte, `exp` in decimal, a zero byte, then the SHA-256 (32 bytes)
//! of the body exactly as sent; an answer is not to be believed after
//! `exp`. The key id
//! is the hex of the first 8 bytes of SHA-256 over the 32-byte public key.
//! `/provider.json` lists every key that may sign (`signing_keys`): the
//! first given signs, the others are published so that a key can be
//! rotated with two valid at once.
//!
//! A signature is made once per distinct body (see [`Signatures`]): while
//! signing is on, lists are drawn from a few orders per set, their
//! locations ordered from the one nearest to the client, so that bodies
//! repeat.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use anyhow::Context as _;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use axum::http::HeaderValue;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use menshen_model::SigningKeyInfo;
use prometheus_client::metrics::counter::Counter;
use sha2::Digest as _;

/// The header that carries an answer's signature.
pub const HEADER: &str = "x-menshen-signature";
/// [`HEADER`], as a header name made once.
pub const HEADER_NAME: axum::http::HeaderName = axum::http::HeaderName::from_static(HEADER);
/// What the signed bytes start with.
const CONTEXT: &[u8] = b"menshen-signature-v1";
/// Default of how long a signature is to be believed, as the flag takes it.
pub const DEFAULT_VALIDITY_TEXT: &str = "1h";
/// [`DEFAULT_VALIDITY_TEXT`].
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(3600);
/// Default of how many orders of one set are signed.
pub const DEFAULT_VARIANTS: u32 = 8;
/// Signatures kept per snapshot; the map is emptied when it is full.
pub const MAX_KEPT: usize = 16_384;

/// One key that signs answers.
pub struct ListKey {
    pub kid: String,
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for ListKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The key id of `public`: hex of the first 8 bytes of its SHA-256.
pub fn kid_of(public: &[u8]) -> String {
    hex::encode(&sha2::Sha256::digest(public)[..8])
}

impl ListKey {
    /// A key from its 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Result<ListKey, String> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| "not an Ed25519 seed (32 bytes)".to_owned())?;
        Ok(ListKey {
            kid: kid_of(pair.public_key().as_ref()),
            pair,
        })
    }

    /// Reads a key file: the base64 of a 32-byte seed.
    pub fn read(path: &Path) -> anyhow::Result<ListKey> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let seed = STANDARD
            .decode(text.trim())
            .map_err(|e| anyhow::anyhow!("{}: not base64: {e}", path.display()))?;
        if seed.len() != 32 {
            anyhow::bail!(
                "{}: holds {} bytes, not the 32 of an Ed25519 seed",
                path.display(),
                seed.len()
            );
        }
        ListKey::from_seed(&seed).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// A new key's seed, as a key file holds it.
    pub fn generate_file_contents() -> String {
        let seed: [u8; 32] = rand::random();
        format!("{}\n", STANDARD.encode(seed))
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }
}

/// The bytes a signature covers: the context, the key id and the expiry,
/// each followed by a zero byte, then the SHA-256 of the body (so that a
/// signature costs the same whatever the body's size; any change of a
/// byte of the body changes it).
fn message(kid: &str, expires: u64, body: &[u8]) -> Vec<u8> {
    let exp = expires.to_string();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let mut m = Vec::with_capacity(CONTEXT.len() + kid.len() + exp.len() + 3 + 32);
    for part in [CONTEXT, kid.as_bytes(), exp.as_bytes()] {
        m.extend_from_slice(part);
        m.push(0);
    }
    m.extend_from_slice(digest.as_ref());
    m
}

/// The keys answers are signed with: the first signs, all are published.
#[derive(Debug)]
pub struct ListSigner {
    keys: Vec<ListKey>,
    validity: Duration,
    /// Orders of one set signed per snapshot.
    variants: u32,
    /// Signatures made, for the metrics.
    made: Counter,
    /// Every signature made, by the hash of the body: what snapshots'
    /// [`Signatures`] fall back on, so that a body is signed once however
    /// many snapshots or orders lead to it.
    by_body: std::sync::Mutex<HashMap<u128, Signed, foldhash::fast::FixedState>>,
}

impl ListSigner {
    pub fn new(keys: Vec<ListKey>, validity: Duration, variants: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(!keys.is_empty(), "no key to sign answers with");
        let mut seen = std::collections::HashSet::new();
        for key in &keys {
            anyhow::ensure!(
                seen.insert(key.kid.clone()),
                "the same signing key ({}) is given twice",
                key.kid
            );
        }
        Ok(ListSigner {
            keys,
            validity,
            variants: variants.max(1),
            made: Counter::default(),
            by_body: Default::default(),
        })
    }

    /// Reads the key files; `None` when there are none.
    pub fn load(
        files: &[PathBuf],
        validity: Duration,
        variants: u32,
    ) -> anyhow::Result<Option<Self>> {
        if files.is_empty() {
            return Ok(None);
        }
        let keys = files
            .iter()
            .map(|f| ListKey::read(f))
            .collect::<anyhow::Result<Vec<_>>>()?;
        ListSigner::new(keys, validity, variants).map(Some)
    }

    /// The key that signs.
    pub fn kid(&self) -> &str {
        &self.keys[0].kid
    }

    pub fn variants(&self) -> u32 {
        self.variants
    }

    /// Signatures made so far.
    pub fn made(&self) -> u64 {
        self.made.get()
    }

    /// The count of signatures made, for the metrics.
    pub fn counter(&self) -> Counter {
        self.made.clone()
    }

    /// The keys as `/provider.json` publishes them.
    pub fn published(&self) -> Vec<SigningKeyInfo> {
        self.keys
            .iter()
            .map(|k| SigningKeyInfo {
                kid: k.kid.clone(),
                alg: "ed25519".into(),
                public_key: STANDARD.encode(k.public_key()),
            })
            .collect()
    }

    /// The header value for `body`, valid until `now + validity`.
    pub fn sign(&self, body: &[u8], now: u64) -> Signed {
        let key = &self.keys[0];
        let expires = now.saturating_add(self.validity.as_secs().max(1));
        let signature = key.pair.sign(&message(&key.kid, expires, body));
        self.made.inc();
        let value = format!(
            "kid={}; exp={expires}; sig={}",
            key.kid,
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        );
        Signed {
            // Hex, digits, base64url and "=; ": always a valid header value.
            header: HeaderValue::from_str(&value).expect("a header value"),
            expires,
        }
    }

    /// The signature of `body`: one made before for the same bytes while it
    /// is fresh, else a new one.
    fn signature_of(&self, body: &[u8], now: u64) -> Signed {
        let hash = xxhash_rust::xxh3::xxh3_128(body);
        let mut by_body = self.by_body.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(signed) = by_body.get(&hash)
            && self.fresh(signed, now)
        {
            return signed.clone();
        }
        let signed = self.sign(body, now);
        if by_body.len() >= MAX_KEPT {
            by_body.clear();
        }
        by_body.insert(hash, signed.clone());
        signed
    }

    /// Whether a signature made for `expires` is still good to hand out at
    /// `now`: it has at least half its validity left.
    fn fresh(&self, signed: &Signed, now: u64) -> bool {
        signed.expires > now.saturating_add(self.validity.as_secs() / 2)
    }
}

/// A signature as it goes out.
#[derive(Debug, Clone)]
pub struct Signed {
    pub header: HeaderValue,
    pub expires: u64,
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The signatures of one snapshot's answers, each handed out until it has
/// half its validity left. Keyed by what makes a body (the document; or
/// the set, its order and the kind of list), so that a request finds its
/// signature without reading its body; callers give the body for the
/// first lookup of a key only, which finds the signature by the body's
/// hash among those the signer made (for another key, or an earlier
/// snapshot) or makes it. At most [`MAX_KEPT`] are kept in each map; a map
/// is emptied when full, so that neither grows with what clients ask.
#[derive(Debug)]
pub struct Signatures {
    signer: std::sync::Arc<ListSigner>,
    kept: RwLock<HashMap<u64, Signed, foldhash::fast::FixedState>>,
}

impl Signatures {
    pub fn new(signer: std::sync::Arc<ListSigner>) -> Signatures {
        Signatures {
            signer,
            kept: RwLock::new(HashMap::with_hasher(foldhash::fast::FixedState::default())),
        }
    }

    pub fn signer(&self) -> &ListSigner {
        &self.signer
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.kept.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The signature of the body `key` names, made from `body` if none is
    /// kept that is fresh.
    pub fn header(&self, key: u64, body: &[u8]) -> HeaderValue {
        let now = unix_now();
        if let Some(signed) = self
            .kept
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && self.signer.fresh(signed, now)
        {
            return signed.header.clone();
        }
        let signed = self.signer.signature_of(body, now);
        let mut kept = self.kept.write().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT {
            kept.clear();
        }
        kept.insert(key, signed.clone());
        signed.header
    }
}

/// What a signature header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kid: String,
    pub expires: u64,
    pub signature: Vec<u8>,
}

impl Header {
    pub fn parse(value: &str) -> Result<Header, String> {
        let mut kid = None;
        let mut expires = None;
        let mut signature = None;
        for part in value.split(';') {
            let (name, v) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=VALUE"))?;
            match name {
                "kid" => kid = Some(v.to_owned()),
                "exp" => expires = Some(v.parse().map_err(|_| format!("exp {v:?} is not a time"))?),
                "sig" => {
                    signature = Some(
                        URL_SAFE_NO_PAD
                            .decode(v)
                            .map_err(|e| format!("sig is not base64url: {e}"))?,
                    )
                }
                _ => {}
            }
        }
        Ok(Header {
            kid: kid.ok_or("no kid")?,
            expires: expires.ok_or("no exp")?,
            signature: signature.ok_or("no sig")?,
        })
    }
}

/// Checks `header` over `body` against the published `keys` at `now`;
/// returns which key signed it and until when it holds.
pub fn verify(
    header: &str,
    body: &[u8],
    keys: &[SigningKeyInfo],
    now: u64,
) -> Result<Header, String> {
    let header = Header::parse(header)?;
    let key = keys.iter().find(|k| k.kid == header.kid).ok_or_else(|| {
        format!(
            "signed by key {}, which is not among the keys given",
            header.kid
        )
    })?;
    if key.alg != "ed25519" {
        return Err(format!("key {} is {}, not ed25519", key.kid, key.alg));
    }
    let public = STANDARD
        .decode(&key.public_key)
        .map_err(|e| format!("key {}: not base64: {e}", key.kid))?;
    if kid_of(&public) != key.kid {
        return Err(format!(
            "key {}: its id is not that of its public key",
            key.kid
        ));
    }
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(
            &message(&header.kid, header.expires, body),
            &header.signature,
        )
        .map_err(|_| format!("the signature (key {}) does not match the body", header.kid))?;
    if header.expires <= now {
        return Err(format!(
            "the signature expired {} s ago",
            now - header.expires
        ));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(seeds: &[u8]) -> ListSigner {
        let keys = seeds
            .iter()
            .map(|&s| ListKey::from_seed(&[s; 32]).unwrap())
            .collect();
        ListSigner::new(keys, Duration::from_secs(3600), 4).unwrap()
    }

    #[test]
    fn a_signature_covers_the_exact_body_and_its_expiry() {
        let s = signer(&[1, 2]);
        let body = br#"[{"host":"gw1"}]"#;
        let signed = s.sign(body, 1_000);
        assert_eq!(signed.expires, 4_600);
        let header = signed.header.to_str().unwrap();
        let keys = s.published();
        assert_eq!(keys.len(), 2);
        let ok = verify(header, body, &keys, 1_001).unwrap();
        assert_eq!(ok.kid, s.kid());
        // One byte more, or less, and it fails.
        let e = verify(header, br#"[{"host":"gw1"}] "#, &keys, 1_001).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert!(verify(header, br#"[{"host":"gw2"}]"#, &keys, 1_001).is_err());
        // A later expiry put in by someone else breaks it too.
        let stretched = header.replace("exp=4600", "exp=9600");
        assert!(verify(&stretched, body, &keys, 1_001).is_err());
        // Past its expiry it no longer holds.
        let e = verify(header, body, &keys, 4_600).unwrap_err();
        assert!(e.contains("expired"), "{e}");
        // Nor against keys that did not sign it.
        let e = verify(header, body, &signer(&[3]).published(), 1_001).unwrap_err();
        assert!(e.contains("not among"), "{e}");
        // Nor with a published key swapped for another under the same id.
        let mut forged = keys.clone();
        forged[0].public_key = keys[1].public_key.clone();
        assert!(verify(header, body, &forged, 1_001).is_err());
    }

    #[test]
    fn the_second_key_verifies_what_it_signed_once_it_signs() {
        // Rotation: [old, new] publishes both while old signs; [new, old]
        // signs with new; a client holding both keys believes either.
        let (old, new) = (signer(&[1, 2]), signer(&[2, 1]));
        let keys = old.published();
        let body = b"{}";
        for s in [&old, &new] {
            let signed = s.sign(body, 10);
            verify(signed.header.to_str().unwrap(), body, &keys, 11).unwrap();
        }
        assert_ne!(old.kid(), new.kid());
    }

    #[test]
    fn headers_that_are_not_signatures_are_named() {
        assert!(
            Header::parse("kid=a; exp=1")
                .unwrap_err()
                .contains("no sig")
        );
        assert!(Header::parse("kid=a; exp=soon; sig=AA").is_err());
        assert!(Header::parse("garbage").is_err());
    }

    #[test]
    fn each_body_is_signed_once_and_the_kept_ones_are_bounded() {
        let signer = std::sync::Arc::new(signer(&[7]));
        let signatures = Signatures::new(signer.clone());
        let first = signatures.header(1, b"a");
        assert_eq!(signatures.header(1, b"a"), first);
        assert_eq!(signer.made(), 1);
        signatures.header(2, b"b");
        assert_eq!(signer.made(), 2);
        // Another key for the same bytes, or a later snapshot: no new one.
        assert_eq!(signatures.header(3, b"a"), first);
        assert_eq!(Signatures::new(signer.clone()).header(1, b"a"), first);
        assert_eq!(signer.made(), 2);
        for key in 0..(MAX_KEPT as u64 + 10) {
            signatures.header(1_000 + key, b"c");
        }
        assert!(signatures.len() <= MAX_KEPT);
    }

    #[test]
    fn key_files_are_read_and_bad_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        std::fs::write(&good, ListKey::generate_file_contents()).unwrap();
        let key = ListKey::read(&good).unwrap();
        assert_eq!(key.kid.len(), 16);
        let short = dir.path().join("short.key");
        std::fs::write(&short, STANDARD.encode([1u8; 16])).unwrap();
        assert!(format!("{:#}", ListKey::read(&short).unwrap_err()).contains("not the 32"));
        let twice = ListSigner::load(&[good.clone(), good], Duration::from_secs(60), 1);
        assert!(format!("{:#}", twice.unwrap_err()).contains("twice"));
    }
}
