//! The client half of an obfs4 handshake, as far as proving that the
//! bridge holds the key of the `cert` clients are given: the bridge answers
//! only a request made with its node id and public key, and its answer
//! carries an ntor authentication tag only the holder of the private key
//! can compute. Nothing is sent after the handshake.
//!
//! From the obfs4 specification (`doc/obfs4-spec.txt`, section 4) and its
//! ntor handshake as obfs4proxy computes it:
//! - the cert is the unpadded base64 of NODEID (20 bytes) then B (32);
//! - request: X' | P_C | M_C | MAC_C, where X' is the Elligator 2
//!   representative of the client's ephemeral key X, P_C random padding,
//!   M_C = HMAC-SHA256-128(B | NODEID, X') and MAC_C the same over
//!   X' | P_C | M_C | E, E the decimal hours since the Unix epoch;
//! - answer: Y' | AUTH | P_S | M_S | MAC_S, where M_S = HMAC-SHA256-128(B |
//!   NODEID, Y') and MAC_S the same over Y' | AUTH | P_S | M_S | E;
//! - AUTH = HMAC-SHA256(":mac", verify | suffix | "Server"), verify =
//!   HMAC-SHA256(":verify", EXP(Y,x) | EXP(B,x) | suffix), suffix = B | B | X
//!   | Y | PROTOID | NODEID (the order obfs4proxy uses), PROTOID
//!   `ntor-curve25519-sha256-1`, the HMAC keys PROTOID with the suffixes
//!   `:mac` and `:key_verify`.

use std::net::SocketAddr;
use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout_at};

const PROTOID: &[u8] = b"ntor-curve25519-sha256-1";
const T_MAC: &[u8] = b"ntor-curve25519-sha256-1:mac";
const T_VERIFY: &[u8] = b"ntor-curve25519-sha256-1:key_verify";
const MARK: usize = 16;
const MAC: usize = 16;
/// Y' and AUTH.
const SERVER_HEAD: usize = 64;
/// The most either side sends before its MAC.
const MAX_HANDSHAKE: usize = 8192;
/// The client's padding, as the specification bounds it.
const CLIENT_PADDING: std::ops::RangeInclusive<usize> = 87..=1384;

/// A bridge's identity, from its `cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cert {
    node_id: [u8; 20],
    public: [u8; 32],
}

impl Cert {
    /// Reads a `cert` (base64 of 52 bytes, padded or not).
    pub fn parse(cert: &str) -> Result<Cert, String> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(cert.trim().trim_end_matches('='))
            .map_err(|e| format!("its cert is not base64: {e}"))?;
        if bytes.len() != 52 {
            return Err(format!(
                "its cert holds {} bytes, not 52 (node id and public key)",
                bytes.len()
            ));
        }
        let mut node_id = [0u8; 20];
        let mut public = [0u8; 32];
        node_id.copy_from_slice(&bytes[..20]);
        public.copy_from_slice(&bytes[20..]);
        Ok(Cert { node_id, public })
    }

    /// B | NODEID: the key of the handshake's marks and MACs.
    fn mac_key(&self) -> hmac::Key {
        let mut key = Vec::with_capacity(52);
        key.extend_from_slice(&self.public);
        key.extend_from_slice(&self.node_id);
        hmac::Key::new(hmac::HMAC_SHA256, &key)
    }
}

/// HMAC-SHA256 of the concatenated `parts`.
fn hmac_of(key: &hmac::Key, parts: &[&[u8]]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(key);
    for part in parts {
        context.update(part);
    }
    context.sign()
}

/// An ephemeral key whose public point has an Elligator 2 representative.
struct Ephemeral {
    secret: [u8; 32],
    /// X as the bridge decodes it from the representative.
    point: [u8; 32],
    representative: [u8; 32],
}

impl Ephemeral {
    /// About half of all keys have a representative; each try succeeds
    /// with probability 1/2, so the loop ends at once in practice.
    fn generate() -> Ephemeral {
        let mut rng = rand::rng();
        loop {
            let secret: [u8; 32] = rng.random();
            // A low-order component, chosen by bits clamping clears, so
            // that the point is not told apart from random by its order; it
            // does not change any shared secret (the peer's scalar is a
            // multiple of 8).
            let torsion = EIGHT_TORSION[usize::from(secret[0] & 7)];
            let point = (EdwardsPoint::mul_base_clamped(secret) + torsion)
                .to_montgomery()
                .to_bytes();
            if let Some(representative) = elligator2::to_representative(&point, rng.random()) {
                return Ephemeral {
                    secret,
                    point,
                    representative,
                };
            }
        }
    }

    fn exchange(&self, public: [u8; 32]) -> [u8; 32] {
        MontgomeryPoint(public).mul_clamped(self.secret).to_bytes()
    }
}

/// The hours since the Unix epoch, as the handshake's MACs cover them.
fn epoch_hour() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / 3600).to_string()
}

/// The request, and what checking the answer needs.
struct Request {
    bytes: Vec<u8>,
    key: Ephemeral,
    epoch_hour: String,
}

fn request(cert: &Cert) -> Request {
    let key = Ephemeral::generate();
    let mac_key = cert.mac_key();
    let mut padding = vec![0u8; rand::rng().random_range(CLIENT_PADDING)];
    rand::rng().fill(&mut padding[..]);
    let mark = hmac_of(&mac_key, &[&key.representative]);
    let epoch_hour = epoch_hour();
    let mut bytes = Vec::with_capacity(32 + padding.len() + MARK + MAC);
    bytes.extend_from_slice(&key.representative);
    bytes.extend_from_slice(&padding);
    bytes.extend_from_slice(&mark.as_ref()[..MARK]);
    let mac = hmac_of(&mac_key, &[&bytes, epoch_hour.as_bytes()]);
    bytes.extend_from_slice(&mac.as_ref()[..MAC]);
    Request {
        bytes,
        key,
        epoch_hour,
    }
}

/// What the answer read so far says.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// The bridge proved it holds the cert's key.
    Authentic,
    /// Its mark is not in yet.
    Incomplete,
}

/// Reads the bridge's answer `got` (all bytes so far) to `request`.
fn read_answer(cert: &Cert, request: &Request, got: &[u8]) -> Result<Answer, String> {
    if got.len() < SERVER_HEAD + MARK + MAC {
        return Ok(Answer::Incomplete);
    }
    let mac_key = cert.mac_key();
    let representative: [u8; 32] = got[..32].try_into().expect("32 bytes");
    let mark = hmac_of(&mac_key, &[&representative]);
    let mark = &mark.as_ref()[..MARK];
    let limit = got.len().min(MAX_HANDSHAKE);
    let Some(at) = (SERVER_HEAD..=limit - MARK - MAC).find(|&i| &got[i..i + MARK] == mark) else {
        return if got.len() >= MAX_HANDSHAKE {
            Err("no obfs4 handshake answer in what the bridge sent".into())
        } else {
            Ok(Answer::Incomplete)
        };
    };
    let mac = hmac_of(
        &mac_key,
        &[&got[..at + MARK], request.epoch_hour.as_bytes()],
    );
    if !bool::from(mac.as_ref()[..MAC].ct_eq(&got[at + MARK..at + MARK + MAC])) {
        return Err("the bridge's handshake answer does not authenticate".into());
    }
    let server = elligator2::from_representative(&representative);
    let (x, b) = (request.key.point, cert.public);
    let mut suffix = Vec::with_capacity(32 * 4 + PROTOID.len() + 20);
    for part in [&b[..], &b, &x, &server, PROTOID, &cert.node_id] {
        suffix.extend_from_slice(part);
    }
    let secret = [request.key.exchange(server), request.key.exchange(b)];
    let verify = hmac_of(
        &hmac::Key::new(hmac::HMAC_SHA256, T_VERIFY),
        &[&secret[0], &secret[1], &suffix],
    );
    let auth = hmac_of(
        &hmac::Key::new(hmac::HMAC_SHA256, T_MAC),
        &[verify.as_ref(), &suffix, b"Server"],
    );
    if bool::from(auth.as_ref().ct_eq(&got[32..64])) {
        Ok(Answer::Authentic)
    } else {
        Err("the bridge answered, but not with the key of its cert".into())
    }
}

/// Runs an obfs4 handshake with the bridge at `addr` that clients are told
/// has `cert`, within `timeout`.
pub async fn check(addr: SocketAddr, cert: &str, timeout: Duration) -> Result<String, String> {
    let cert = Cert::parse(cert)?;
    let deadline = Instant::now() + timeout;
    let mut stream = super::connect(addr, deadline, timeout).await?;
    let request = request(&cert);
    let exchange = async {
        stream
            .write_all(&request.bytes)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut got = Vec::with_capacity(2048);
        let mut buf = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("connected, but the handshake broke off: {e}"))?;
            if n == 0 {
                return Err("connected, but the bridge closed the connection \
                            (a cert it does not hold?)"
                    .to_owned());
            }
            got.extend_from_slice(&buf[..n]);
            if read_answer(&cert, &request, &got)? == Answer::Authentic {
                return Ok("obfs4 handshake completed with the bridge's cert".to_owned());
            }
        }
    };
    match timeout_at(deadline, exchange).await {
        Ok(result) => result,
        // A bridge that does not know the cert says nothing, on purpose.
        Err(_) => Err(format!(
            "connected, but no obfs4 handshake answer within {} (a cert it does not hold?)",
            humantime::format_duration(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMw";

    #[test]
    fn certs_are_read_and_bad_ones_named() {
        let cert = Cert::parse(CERT).unwrap();
        assert_eq!(cert.node_id, core::array::from_fn(|i| i as u8));
        assert_eq!(cert.public, core::array::from_fn(|i| 20 + i as u8));
        assert_eq!(Cert::parse(&format!("{CERT}==")), Ok(cert));
        assert!(Cert::parse("not base64!").unwrap_err().contains("base64"));
        assert!(Cert::parse("AAEC").unwrap_err().contains("not 52"));
    }

    #[test]
    fn ephemeral_keys_decode_to_the_point_they_agree_with() {
        for _ in 0..16 {
            let key = Ephemeral::generate();
            assert_eq!(
                elligator2::from_representative(&key.representative),
                key.point
            );
            // What a peer computes with the decoded point equals what this
            // key computes with the peer's public key.
            let peer: [u8; 32] = rand::random();
            let peer_public = MontgomeryPoint::mul_base_clamped(peer).to_bytes();
            assert_eq!(
                MontgomeryPoint(key.point).mul_clamped(peer).to_bytes(),
                key.exchange(peer_public)
            );
        }
    }

    #[test]
    fn a_request_carries_its_mark_and_mac() {
        let cert = Cert::parse(CERT).unwrap();
        let r = request(&cert);
        let n = r.bytes.len();
        assert!((32 + 87 + 32..=32 + 1384 + 32).contains(&n));
        let key = cert.mac_key();
        let mark = hmac_of(&key, &[&r.bytes[..32]]);
        assert_eq!(&r.bytes[n - 32..n - 16], &mark.as_ref()[..16]);
        let mac = hmac_of(&key, &[&r.bytes[..n - 16], r.epoch_hour.as_bytes()]);
        assert_eq!(&r.bytes[n - 16..], &mac.as_ref()[..16]);
    }

    #[test]
    fn answers_without_the_mark_wait_and_forged_ones_fail() {
        let cert = Cert::parse(CERT).unwrap();
        let r = request(&cert);
        assert_eq!(read_answer(&cert, &r, &[0; 40]), Ok(Answer::Incomplete));
        assert_eq!(read_answer(&cert, &r, &[7; 500]), Ok(Answer::Incomplete));
        assert!(read_answer(&cert, &r, &[7; MAX_HANDSHAKE]).is_err());
        // The right mark, a wrong MAC.
        let mut forged = vec![5u8; 200];
        let mark = hmac_of(&cert.mac_key(), &[&forged[..32]]);
        forged[100..116].copy_from_slice(&mark.as_ref()[..16]);
        let e = read_answer(&cert, &r, &forged).unwrap_err();
        assert!(e.contains("does not authenticate"), "{e}");
        // The right mark and MAC, a wrong AUTH: someone without the key.
        let mac = hmac_of(&cert.mac_key(), &[&forged[..116], r.epoch_hour.as_bytes()]);
        forged[116..132].copy_from_slice(&mac.as_ref()[..16]);
        let e = read_answer(&cert, &r, &forged).unwrap_err();
        assert!(e.contains("not with the key"), "{e}");
    }
}
