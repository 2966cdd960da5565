//! Client certificates: the CA that signs them, the CA certificate handed
//! to clients, and a fresh key and certificate for every request.
//!
//! Two CAs are involved, as at LEAP providers: the signing CA, whose key
//! menshen holds and which the gateways trust for client certificates; and
//! the provider CA, handed to clients in `<ca>` so that they can verify
//! the gateways' server certificates, and fingerprinted in
//! `/provider.json`. Unless configured apart, they are the same.
//!
//! Without any configured CA, menshen makes one into its data folder on
//! first start (see [`generated`]): for trying menshen out only.

pub mod gateway;
pub mod generated;
pub mod init;
pub mod material;
pub mod pool;
pub mod workers;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

/// Default lifetime of a client certificate, as LEAP providers use.
pub const DEFAULT_CLIENT_CERT_VALIDITY: &str = "24d";

/// Subject common name of every client certificate, as LEAP providers use:
/// client certificates are anonymous.
pub const CLIENT_COMMON_NAME: &str = "UNLIMITED";

/// How far back a certificate's validity starts, for gateways whose clock
/// is a little behind menshen's.
const BACKDATE: time::Duration = time::Duration::hours(1);

/// The kind of key clients get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum KeyType {
    /// What LEAP providers hand out today.
    Ed25519,
    /// ECDSA on the P-256 curve.
    EcdsaP256,
    /// For OpenVPN builds too old for the others; slow to generate.
    Rsa2048,
}

impl KeyType {
    pub const ALL: [KeyType; 3] = [KeyType::Ed25519, KeyType::EcdsaP256, KeyType::Rsa2048];

    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Rsa2048 => "rsa2048",
        }
    }

    /// The clients' name for it, as in `algo=`.
    pub fn algo(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa",
            KeyType::Rsa2048 => "rsa",
        }
    }

    /// The key type a client asks for with `algo=`: the clients' names
    /// (`rsa`, `ecdsa`, `ed25519`) or menshen's, any case.
    pub fn from_algo(algo: &str) -> Option<KeyType> {
        let algo = algo.to_ascii_lowercase();
        match algo.as_str() {
            "ed25519" => Some(KeyType::Ed25519),
            "ecdsa" | "ecdsa-p256" => Some(KeyType::EcdsaP256),
            "rsa" | "rsa2048" => Some(KeyType::Rsa2048),
            _ => None,
        }
    }

    fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            // PKCS#8 v1: OpenSSL 3.0 (and so OpenVPN) cannot read the v2
            // form, which carries the public key too.
            KeyType::Ed25519 => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(&rng)
                    .map_err(|_| rcgen::Error::RingUnspecified)?;
                KeyPair::try_from(pkcs8.as_ref())
            }
            KeyType::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        }
    }
}

/// How client certificates are made, from flags and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiSettings {
    /// The signing CA's certificate (PEM); generated when `None`.
    pub ca_cert: Option<PathBuf>,
    /// The signing CA's private key (PEM).
    pub ca_key: Option<PathBuf>,
    /// The CA certificate handed to clients in `<ca>`; the signing CA's
    /// certificate when `None`.
    pub provider_ca_cert: Option<PathBuf>,
    /// The key type clients get unless they ask (`algo=`).
    pub key_type: KeyType,
    /// The key types clients may ask for; always holds `key_type`.
    pub offered: Vec<KeyType>,
    /// RSA keys kept made ahead (when RSA is offered).
    pub rsa_pool: usize,
    pub validity: std::time::Duration,
}

/// Default number of RSA keys kept made ahead.
pub const DEFAULT_RSA_POOL: usize = 8;

impl Default for PkiSettings {
    fn default() -> Self {
        PkiSettings {
            ca_cert: None,
            ca_key: None,
            provider_ca_cert: None,
            key_type: KeyType::Ed25519,
            offered: KeyType::ALL.to_vec(),
            rsa_pool: DEFAULT_RSA_POOL,
            validity: std::time::Duration::from_secs(24 * 86_400),
        }
    }
}

/// A client's key, its certificate, and the CA certificate to verify
/// gateways with, each in PEM ending with a newline.
pub struct ClientCredentials {
    pub key_pem: String,
    pub cert_pem: String,
    pub ca_pem: Arc<str>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("key_pem", &"[secret]")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// The body of `/api/5/openvpn/cert`: clients cut it at the literal
    /// `<key>\n`, `</key>\n`, ... delimiters.
    pub fn leap_text(&self) -> String {
        format!(
            "<key>\n{}</key>\n<cert>\n{}</cert>\n<ca>\n{}</ca>\n",
            self.key_pem, self.cert_pem, self.ca_pem
        )
    }
}

impl ClientCredentials {
    /// The body of the v3 `/3/cert`: the key, then the certificate, in
    /// PEM, nothing else. An RSA key is written in the PKCS#1 form
    /// (`RSA PRIVATE KEY`), the only one old clients read as RSA; other
    /// keys stay PKCS#8.
    pub fn v3_text(&self) -> String {
        let key = pem::parse(&self.key_pem)
            .ok()
            .and_then(|p| pkcs8_rsa_to_pkcs1(p.contents()))
            .map(|der| material::pem_encode("RSA PRIVATE KEY", &der))
            .unwrap_or_else(|| self.key_pem.clone());
        format!("{key}{}", self.cert_pem)
    }
}

/// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo of an RSA key, or
/// `None` for any other key (or anything that is not PKCS#8).
fn pkcs8_rsa_to_pkcs1(der: &[u8]) -> Option<Vec<u8>> {
    /// One DER element: tag, contents, and what follows it.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |l, b| (l << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    /// 1.2.840.113549.1.1.1, rsaEncryption.
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (0x30, info, _) = element(der)? else {
        return None;
    };
    let (0x02, _version, rest) = element(info)? else {
        return None;
    };
    let (0x30, algorithm, rest) = element(rest)? else {
        return None;
    };
    let (0x06, oid, _) = element(algorithm)? else {
        return None;
    };
    let (0x04, key, _) = element(rest)? else {
        return None;
    };
    (oid == RSA_ENCRYPTION).then(|| key.to_vec())
}

/// The signing CA, ready to issue client certificates.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    /// Client certificates end no later than the CA that signs them.
    ca_not_after: OffsetDateTime,
    provider_ca_pem: Arc<str>,
    fingerprint: String,
    key_type: KeyType,
    /// What clients may ask for; holds `key_type`.
    offered: Vec<KeyType>,
    /// RSA keys made ahead, when RSA is offered.
    rsa_pool: Option<Arc<pool::KeyPool>>,
    validity: time::Duration,
    /// Whether it signs with an RSA key: a signature takes milliseconds
    /// then (RSA 4096), not microseconds.
    rsa_ca: bool,
    /// Whether the CA is the one menshen made for trying it out.
    pub generated: bool,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("fingerprint", &self.fingerprint)
            .field("key_type", &self.key_type)
            .field("validity", &self.validity)
            .field("offered", &self.offered)
            .field("generated", &self.generated)
            .field("rsa_ca", &self.rsa_ca)
            .finish_non_exhaustive()
    }
}

/// A random, positive, 16-byte serial number.
pub(crate) fn random_serial() -> Result<SerialNumber, rcgen::Error> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| rcgen::Error::RingUnspecified)?;
    // Positive, and always 16 bytes long.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// SHA-256 of `der` in the form of `ca_cert_fingerprint`: `SHA256: `
/// and lowercase hex. The Android client cuts it at the `:` (bare hex
/// fails its provider parsing); bitmask-core strips the prefix.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    format!("SHA256: {}", hex::encode(digest))
}

impl Pki {
    /// Loads and checks the configured CA, or the generated one in
    /// `data_dir` (making it on first start). Refuses material that cannot
    /// work, with a message naming the file and the problem.
    pub fn load(settings: &PkiSettings, data_dir: &Path) -> anyhow::Result<Pki> {
        let now = OffsetDateTime::now_utc();
        let validity = time::Duration::try_from(settings.validity)
            .context("client certificate validity is too long")?;
        if validity < time::Duration::hours(1) {
            bail!("client certificate validity must be at least one hour");
        }
        if !settings.offered.contains(&settings.key_type) {
            bail!(
                "the client key type {} is not among the offered ones (--client-key-types)",
                settings.key_type.name()
            );
        }
        let (cert_path, key_path, generated) = match (&settings.ca_cert, &settings.ca_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone(), false),
            (None, None) => {
                let made = generated::ensure(data_dir, now)?;
                let paths = generated::paths(data_dir);
                if made {
                    tracing::warn!(
                        cert = %paths.cert.display(),
                        "no CA configured: generated one FOR TRYING MENSHEN OUT ONLY; \
                         a real provider configures --ca-cert and --ca-key"
                    );
                }
                (paths.cert, paths.key, true)
            }
            (Some(_), None) => bail!("--ca-cert is given without --ca-key"),
            (None, Some(_)) => bail!("--ca-key is given without --ca-cert"),
        };
        let context = |e: anyhow::Error| {
            if generated {
                e.context(format!(
                    "the CA menshen generated in {} cannot be used; \
                     remove that folder to generate a new one, or configure --ca-cert and --ca-key",
                    cert_path.parent().unwrap_or(&cert_path).display()
                ))
            } else {
                e
            }
        };
        let ca = material::read_certificate(&cert_path, "CA certificate", now).map_err(context)?;
        material::check_is_ca(&ca, &cert_path, "CA certificate").map_err(context)?;
        let key = material::read_key(&key_path, "CA key").map_err(context)?;
        material::check_key_matches(&ca, &key, &cert_path, &key_path).map_err(context)?;
        let rsa_ca = [
            &rcgen::PKCS_RSA_SHA256,
            &rcgen::PKCS_RSA_SHA384,
            &rcgen::PKCS_RSA_SHA512,
        ]
        .contains(&key.algorithm());
        let issuer = Issuer::from_ca_cert_der(&ca.der.clone().into(), key).map_err(|e| {
            anyhow::anyhow!(
                "CA certificate {}: cannot sign with it: {e}",
                cert_path.display()
            )
        })?;

        let provider_ca = match &settings.provider_ca_cert {
            Some(path) => {
                let cert = material::read_certificate(path, "provider CA certificate", now)?;
                if !cert.is_ca {
                    tracing::warn!(
                        path = %path.display(),
                        "the provider CA certificate is not a CA certificate (no basicConstraints CA:TRUE)"
                    );
                }
                cert
            }
            None => ca.clone(),
        };

        if generated {
            tracing::warn!(
                cert = %cert_path.display(),
                "serving client certificates from the CA menshen generated: FOR TRYING MENSHEN OUT ONLY"
            );
        }
        if ca.not_after < now + validity {
            tracing::warn!(
                ca_not_after = %ca.not_after,
                "the CA expires before a client certificate would: client certificates end with it"
            );
        }
        let fingerprint = fingerprint(&provider_ca.der);
        tracing::info!(
            ca = %ca.subject,
            provider_ca = %provider_ca.subject,
            ca_cert_fingerprint = %fingerprint,
            key_type = settings.key_type.name(),
            "client certificates ready"
        );
        let rsa_pool = settings
            .offered
            .contains(&KeyType::Rsa2048)
            .then(|| pool::KeyPool::new(KeyType::Rsa2048, settings.rsa_pool));
        if let Some(pool) = &rsa_pool {
            pool.refill();
        }
        Ok(Pki {
            issuer,
            ca_not_after: ca.not_after,
            provider_ca_pem: provider_ca.pem().into(),
            fingerprint,
            key_type: settings.key_type,
            offered: settings.offered.clone(),
            rsa_pool,
            validity,
            rsa_ca,
            generated,
        })
    }

    /// The key types clients may ask for.
    pub fn offered(&self) -> &[KeyType] {
        &self.offered
    }

    /// RSA keys made ahead and ready now.
    pub fn rsa_keys_ready(&self) -> usize {
        self.rsa_pool.as_ref().map_or(0, |p| p.ready())
    }

    /// SHA-256 of the DER of the CA certificate handed out in `<ca>`, as
    /// `ca_cert_fingerprint` carries it (see [`fingerprint`]).
    pub fn ca_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The CA certificate handed out in `<ca>`, in PEM.
    pub fn provider_ca_pem(&self) -> &str {
        &self.provider_ca_pem
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// A fresh key and a certificate for it: `CN=UNLIMITED`, client
    /// authentication only, valid from now for the configured time.
    pub fn issue(&self) -> Result<ClientCredentials, rcgen::Error> {
        self.issue_with(self.key_type)
    }

    /// Like [`Pki::issue`], for a key type of the caller's choice.
    pub fn issue_with(&self, key_type: KeyType) -> Result<ClientCredentials, rcgen::Error> {
        self.sign(key_type.generate()?)
    }

    /// A certificate for `key`.
    fn sign(&self, key: KeyPair) -> Result<ClientCredentials, rcgen::Error> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, CLIENT_COMMON_NAME);
        params.distinguished_name = name;
        params.not_before = now - BACKDATE;
        params.not_after = (now + self.validity).min(self.ca_not_after);
        params.serial_number = Some(random_serial()?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ClientCredentials {
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            ca_pem: self.provider_ca_pem.clone(),
        })
    }

    /// A fresh key of `key_type` (`None`: the default) and a certificate
    /// for it, as [`Pki::issue_with`] but with an RSA key from the keys
    /// made ahead while there are any. Blocks for an RSA key made now: run
    /// it off the async executor (see [`workers`]).
    pub fn issue_for(&self, key_type: Option<KeyType>) -> Result<ClientCredentials, rcgen::Error> {
        let key_type = key_type.unwrap_or(self.key_type);
        let ready = match (&self.rsa_pool, key_type) {
            (Some(pool), KeyType::Rsa2048) => pool.take(),
            _ => None,
        };
        match ready {
            Some(key) => self.sign(key),
            None => self.issue_with(key_type),
        }
    }
}

#[cfg(test)]
mod tests;
