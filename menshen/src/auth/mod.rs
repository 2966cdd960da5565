//! Who may write: agents prove themselves with a JWT signed by menshen's
//! signing key (HS256). Every replica and the CLI must use the same key.
//! Clients may carry an invite token (see [`invite`]); operators an admin
//! token (see [`admin`]).

pub mod admin;
pub mod invite;
pub mod oidc;

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// Issuer of every token menshen mints.
const ISSUER: &str = "menshen";
/// Audience of agent tokens; no other kind of token is accepted from agents.
pub const AGENT_AUDIENCE: &str = "menshen-agent";
/// Shortest accepted signing key.
const MIN_KEY_BYTES: usize = 32;
/// Name of the generated key in the data folder.
const GENERATED_KEY_FILE: &str = "signing.key";

/// Where the signing key comes from.
#[derive(Clone, Default)]
pub struct KeySource {
    /// The key itself, base64 (`MENSHEN_SIGNING_KEY`).
    pub inline: Option<String>,
    /// Files holding keys, base64: the first signs, all verify (so that
    /// a key can be rotated: add the new one first, remove the old one
    /// once its tokens are replaced).
    pub files: Vec<PathBuf>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource")
            .field("inline", &self.inline.as_ref().map(|_| "<redacted>"))
            .field("files", &self.files)
            .finish()
    }
}

/// The HMAC keys tokens are signed and verified with: the first signs,
/// each verifies the tokens that name its key id (`kid`). Never printed.
pub struct SigningKey {
    keys: Vec<OneKey>,
}

struct OneKey {
    /// Derived from the key (a hash), so that every replica and the CLI
    /// name a key alike without being told.
    kid: String,
    /// The key itself, for keys derived from it (see [`SigningKey::derive`]).
    secret: Box<[u8]>,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Claims of an agent token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentClaims {
    pub iss: String,
    pub aud: String,
    /// The agent's name.
    pub sub: String,
    /// The token's id; only the agent's current one is accepted.
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

/// Why a token was refused. Deliberately coarse in what reaches the client.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid here: {0}")]
    Invalid(String),
    /// Signed and current, but revoked by an operator.
    #[error("the token has been revoked")]
    Revoked,
}

fn decode_key(text: &str, what: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .with_context(|| format!("{what}: the signing key must be base64"))?;
    anyhow::ensure!(
        bytes.len() >= MIN_KEY_BYTES,
        "{what}: the signing key must be at least {MIN_KEY_BYTES} bytes, it has {}",
        bytes.len()
    );
    Ok(bytes)
}

/// A new random identifier, hex.
pub fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl SigningKey {
    pub fn from_bytes(secret: &[u8]) -> SigningKey {
        SigningKey {
            keys: vec![OneKey::new(secret)],
        }
    }

    /// The id of the key that signs, as tokens carry it in `kid`.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// The ids of every key that verifies, the signing one first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// A key for another purpose, named by `label`, derived from the
    /// signing key (HMAC-SHA256 of the label under it): secret like it, the
    /// same on every replica given the same key, and telling nothing about
    /// it or about the keys of other labels.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.keys[0].secret);
        let tag = hmac::sign(&key, label.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// A header naming the signing key.
    fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.keys[0].kid.clone());
        header
    }

    fn encoding(&self) -> &EncodingKey {
        &self.keys[0].encoding
    }

    /// Decodes `token` with the key its `kid` names; a token without one
    /// (minted before tokens carried it) is tried with each key.
    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        validation: &Validation,
    ) -> Result<T, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|err| TokenError::Invalid(err.to_string()))?;
        let candidates: Vec<&OneKey> = match &header.kid {
            Some(kid) => self.keys.iter().filter(|k| &k.kid == kid).collect(),
            None => self.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(TokenError::Invalid(
                "signed with a key this server does not have (anymore)".into(),
            ));
        }
        let mut last = None;
        for key in candidates {
            match jsonwebtoken::decode::<T>(token, &key.decoding, validation) {
                Ok(data) => return Ok(data.claims),
                Err(err) => last = Some(err),
            }
        }
        let err = last.expect("at least one key tried");
        match err.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(TokenError::Expired),
            _ => Err(TokenError::Invalid(err.to_string())),
        }
    }

    /// The configured key, or the one generated into `data_dir` on first
    /// use (with a warning: replicas must share one key).
    pub fn load(source: &KeySource, data_dir: &Path) -> anyhow::Result<SigningKey> {
        if let Some(inline) = &source.inline {
            return Ok(Self::from_bytes(&decode_key(
                inline,
                "MENSHEN_SIGNING_KEY",
            )?));
        }
        if !source.files.is_empty() {
            let mut keys: Vec<OneKey> = Vec::new();
            for file in &source.files {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the signing key {}", file.display()))?;
                let key = OneKey::new(&decode_key(&text, &file.display().to_string())?);
                if !keys.iter().any(|k| k.kid == key.kid) {
                    keys.push(key);
                }
            }
            return Ok(SigningKey { keys });
        }
        let path = data_dir.join(GENERATED_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self::from_bytes(&decode_key(
                &text,
                &path.display().to_string(),
            )?)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Self::generate_into(&path),
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// A new random key, as the text a signing key file holds (base64,
    /// no line end).
    pub fn generate_text() -> String {
        let mut secret = [0u8; MIN_KEY_BYTES];
        rand::rng().fill_bytes(&mut secret);
        base64::engine::general_purpose::STANDARD.encode(secret)
    }

    fn generate_into(path: &Path) -> anyhow::Result<SigningKey> {
        use std::io::Write;
        let text = Self::generate_text();
        let secret = decode_key(&text, "generated key")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut f) => {
                f.write_all(text.as_bytes())
                    .and_then(|_| f.write_all(b"\n"))
                    .with_context(|| format!("writing {}", path.display()))?;
                tracing::warn!(
                    path = %path.display(),
                    "generated a signing key for tokens; replicas and the CLI must all use it \
                     (set MENSHEN_SIGNING_KEY or --signing-key-file in production)"
                );
                Ok(Self::from_bytes(&secret))
            }
            // Another process generated it at the same moment: use theirs.
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path)?;
                Ok(Self::from_bytes(&decode_key(
                    &text,
                    &path.display().to_string(),
                )?))
            }
            Err(err) => Err(err).with_context(|| format!("creating {}", path.display())),
        }
    }

    /// A token for agent `name` with id `token_id`, valid for `ttl_secs`.
    pub fn mint_agent_token(
        &self,
        name: &str,
        token_id: &str,
        now_secs: i64,
        ttl_secs: i64,
    ) -> String {
        let claims = AgentClaims {
            iss: ISSUER.into(),
            aud: AGENT_AUDIENCE.into(),
            sub: name.into(),
            jti: token_id.into(),
            iat: now_secs,
            exp: now_secs.saturating_add(ttl_secs),
        };
        // HS256 over a serialisable struct cannot fail.
        jsonwebtoken::encode(&self.header(), &claims, self.encoding()).expect("HS256 signing")
    }

    /// Checks signature, algorithm, issuer, audience and expiry.
    pub fn verify_agent_token(&self, token: &str) -> Result<AgentClaims, TokenError> {
        self.decode::<AgentClaims>(token, &validation(AGENT_AUDIENCE))
    }
}

/// What menshen's tokens for `audience` must be: HS256, issued by menshen,
/// with expiry, audience, issuer and subject, and valid already (30 s of
/// leeway for clocks).
fn validation(audience: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    // A token that is not valid yet is not valid.
    validation.validate_nbf = true;
    validation.leeway = 30;
    validation
}

impl OneKey {
    fn new(secret: &[u8]) -> OneKey {
        use sha2::Digest as _;
        let digest =
            sha2::Sha256::digest([b"menshen signing key id\0".as_slice(), secret].concat());
        OneKey {
            kid: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
            secret: secret.into(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, TokenError> {
    let value = header.ok_or(TokenError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::Missing);
    }
    Ok(token.trim())
}

/// An agent name: 1-64 lowercase letters, digits, '-', '_' or '.'.
pub fn valid_agent_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn derived_keys_follow_the_signing_key_and_the_label() {
        let a = key().derive("menshen test label");
        assert_eq!(a, key().derive("menshen test label"), "the same everywhere");
        assert_ne!(a, key().derive("menshen other label"));
        assert_ne!(
            a,
            SigningKey::from_bytes(&[8u8; 32]).derive("menshen test label")
        );
        // The first key is the one derived from, as it is the one that signs.
        let rotated = SigningKey {
            keys: vec![OneKey::new(&[7u8; 32]), OneKey::new(&[8u8; 32])],
        };
        assert_eq!(rotated.derive("menshen test label"), a);
        assert_ne!(&a[..], &[7u8; 32][..]);
    }

    #[test]
    fn a_minted_token_verifies() {
        let fresh =
            key().mint_agent_token("gw-ams", "abc", crate::store::now_millis() / 1000, 3600);
        let claims = key().verify_agent_token(&fresh).unwrap();
        assert_eq!(claims.sub, "gw-ams");
        assert_eq!(claims.aud, AGENT_AUDIENCE);
    }

    #[test]
    fn forged_expired_none_and_wrong_audience_tokens_are_refused() {
        let now = crate::store::now_millis() / 1000;
        let other = SigningKey::from_bytes(&[8u8; 32]);
        let forged = other.mint_agent_token("gw", "id", now, 3600);
        assert!(matches!(
            key().verify_agent_token(&forged),
            Err(TokenError::Invalid(_))
        ));

        let expired = key().mint_agent_token("gw", "id", now - 7200, 3600);
        assert!(matches!(
            key().verify_agent_token(&expired),
            Err(TokenError::Expired)
        ));

        let claims = format!(
            r#"{{"iss":"menshen","aud":"menshen-agent","sub":"gw","jti":"id","iat":{now},"exp":{}}}"#,
            now + 3600
        );
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(claims.as_bytes())
        );
        assert!(key().verify_agent_token(&none).is_err());

        let wrong_aud = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "menshen", "aud": "menshen-admin", "sub": "gw", "jti": "id", "iat": now, "exp": now + 3600}),
            key().encoding(),
        )
        .unwrap();
        assert!(key().verify_agent_token(&wrong_aud).is_err());
        assert!(key().verify_agent_token("not a token").is_err());
    }

    #[test]
    fn tokens_not_valid_yet_are_refused() {
        let now = crate::store::now_millis() / 1000;
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key().encoding()).unwrap()
        };
        let agent = |nbf: i64| {
            sign(
                serde_json::json!({"iss": "menshen", "aud": AGENT_AUDIENCE, "sub": "gw", "jti": "id",
                "iat": now, "nbf": nbf, "exp": now + 3600}),
            )
        };
        assert!(key().verify_agent_token(&agent(now + 3600)).is_err());
        assert!(key().verify_agent_token(&agent(now - 10)).is_ok());
        let admin = |nbf: i64| {
            sign(
                serde_json::json!({"iss": "menshen", "aud": admin::ADMIN_AUDIENCE, "sub": "alice",
                "role": "admin", "jti": "x", "iat": now, "nbf": nbf, "exp": now + 3600}),
            )
        };
        assert!(key().verify_admin_token(&admin(now + 3600)).is_err());
        assert!(key().verify_admin_token(&admin(now - 10)).is_ok());
    }

    #[test]
    fn bearer_headers_are_parsed() {
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(Some("bearer  abc ")).unwrap(), "abc");
        assert!(bearer(Some("Basic abc")).is_err());
        assert!(bearer(Some("Bearer ")).is_err());
        assert!(bearer(None).is_err());
    }

    #[test]
    fn the_generated_key_persists_and_short_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = SigningKey::load(&KeySource::default(), dir.path()).unwrap();
        let b = SigningKey::load(&KeySource::default(), dir.path()).unwrap();
        let now = crate::store::now_millis() / 1000;
        let token = a.mint_agent_token("gw", "id", now, 60);
        assert!(b.verify_agent_token(&token).is_ok());
        let short = KeySource {
            inline: Some(base64::engine::general_purpose::STANDARD.encode([1u8; 8])),
            files: Vec::new(),
        };
        let err = SigningKey::load(&short, dir.path()).unwrap_err();
        assert!(err.to_string().contains("at least 32 bytes"), "{err}");
        assert!(!format!("{short:?}").contains(short.inline.as_deref().unwrap()));
    }
}
