//! Invite tokens: what lets a client see invite-only gateways and bridges.
//!
//! A token is `<id>.<secret>`: the id (8 random bytes, hex) names the invite
//! and may appear in lists and logs; the secret (24 random bytes, base64url)
//! is known only to whoever was given the token. The store keeps the id and
//! a SHA-256 of the secret, never the token, and a presented secret is
//! compared with that hash in constant time.

use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::random_id;

/// Random bytes in an invite's id.
const ID_BYTES: usize = 8;
/// Random bytes in a token's secret: 192 bits.
const SECRET_BYTES: usize = 24;
const _: () = assert!(
    SECRET_BYTES * 8 >= 128,
    "an invite secret has at least 128 bits"
);
/// Characters of the id (hex) and of the secret (base64url, unpadded).
const ID_LEN: usize = ID_BYTES * 2;
const SECRET_LEN: usize = SECRET_BYTES.div_ceil(3) * 4;

/// A SHA-256 digest of a token's secret.
pub type SecretHash = [u8; 32];

/// A freshly made token and what the store keeps of it. The token is
/// shown once, to the operator who asked for it.
pub struct NewToken {
    pub token: String,
    pub id: String,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("token", &"<redacted>")
            .field("id", &self.id)
            .finish()
    }
}

/// A new random token.
pub fn generate() -> NewToken {
    let id = random_id(ID_BYTES);
    let mut secret = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    NewToken {
        token: format!("{id}.{secret}"),
        secret_hash: hex::encode(hash_secret(&secret)),
        id,
    }
}

/// The id and secret of `token`, if it has the shape of a token.
pub fn split(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let id_ok = id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let secret_ok = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// The SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> SecretHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// A stored hash (hex) as bytes; `None` if it is not one.
pub fn parse_hash(hex_text: &str) -> Option<SecretHash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut hash).ok()?;
    Some(hash)
}

/// Whether `secret` hashes to `hash`, compared in constant time.
pub fn secret_matches(secret: &str, hash: &SecretHash) -> bool {
    hash_secret(secret).ct_eq(hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_splits_and_its_secret_matches_the_hash() {
        let new = generate();
        let (id, secret) = split(&new.token).expect("a token splits");
        assert_eq!(id, new.id);
        assert_eq!(secret.len(), 32);
        let hash = parse_hash(&new.secret_hash).unwrap();
        assert!(secret_matches(secret, &hash));
        // The hash is of the secret, not of the token or the id.
        assert!(!secret_matches(&new.token, &hash));
        assert!(!new.secret_hash.contains(secret));
        assert!(!format!("{new:?}").contains(secret));
    }

    #[test]
    fn tokens_differ_and_carry_enough_randomness() {
        let a = generate();
        let b = generate();
        assert_ne!(a.token, b.token);
        assert_ne!(a.id, b.id);
        let (_, secret) = split(&a.token).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(secret)
            .unwrap();
        assert_eq!(bytes.len() * 8, 192);
    }

    #[test]
    fn other_secrets_do_not_match() {
        let new = generate();
        let (_, secret) = split(&new.token).unwrap();
        let hash = parse_hash(&new.secret_hash).unwrap();
        let mut other = secret.as_bytes().to_vec();
        other[0] = if other[0] == b'A' { b'B' } else { b'A' };
        assert!(!secret_matches(std::str::from_utf8(&other).unwrap(), &hash));
        assert!(!secret_matches("", &hash));
    }

    #[test]
    fn only_the_shape_of_a_token_splits() {
        let good_id = "0123456789abcdef";
        let good_secret = "abcdefghijklmnopqrstuvwxyz012-_A";
        assert_eq!(
            split(&format!("{good_id}.{good_secret}")),
            Some((good_id, good_secret))
        );
        for bad in [
            String::new(),
            "garbage".into(),
            ".".into(),
            format!("{good_id}."),
            format!(".{good_secret}"),
            format!("{good_id}{good_secret}"),
            format!("{}.{good_secret}", good_id.to_uppercase()),
            format!("{}.{good_secret}", &good_id[1..]),
            format!("{good_id}0.{good_secret}"),
            format!("{good_id}.{}", &good_secret[1..]),
            format!("{good_id}.{good_secret}A"),
            format!("{good_id}.{}+", &good_secret[1..]),
            format!("{good_id}.{}=", &good_secret[1..]),
            format!("{good_id}.{good_secret}.x"),
            format!(" {good_id}.{good_secret}"),
        ] {
            assert_eq!(split(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn stored_hashes_parse_only_when_whole() {
        assert!(parse_hash(&"ab".repeat(32)).is_some());
        assert!(parse_hash(&"ab".repeat(31)).is_none());
        assert!(parse_hash(&"zz".repeat(32)).is_none());
        assert!(parse_hash("").is_none());
    }
}
