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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

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

    /// Whether making a key takes long enough (tens of milliseconds) that
    /// it must not run on the async executor.
    fn is_slow(self) -> bool {
        matches!(self, KeyType::Rsa2048)
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
    pub key_type: KeyType,
    pub validity: std::time::Duration,
}

impl Default for PkiSettings {
    fn default() -> Self {
        PkiSettings {
            ca_cert: None,
            ca_key: None,
            provider_ca_cert: None,
            key_type: KeyType::Ed25519,
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

/// The signing CA, ready to issue client certificates.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    /// Client certificates end no later than the CA that signs them.
    ca_not_after: OffsetDateTime,
    provider_ca_pem: Arc<str>,
    fingerprint: String,
    key_type: KeyType,
    validity: time::Duration,
    /// Whether an issuance takes long enough to need the blocking pool: an
    /// RSA key to make, or an RSA CA key to sign with (a signature with
    /// RSA 4096 takes milliseconds).
    slow: bool,
    /// Bounds how many slow issuances run at once, so that a burst of them
    /// queues instead of filling the blocking pool.
    slow_issuance: Semaphore,
    /// Whether the CA is the one menshen made for trying it out.
    pub generated: bool,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("fingerprint", &self.fingerprint)
            .field("key_type", &self.key_type)
            .field("validity", &self.validity)
            .field("generated", &self.generated)
            .field("slow", &self.slow)
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

/// SHA-256 of `der`, in lowercase hex: the form of `ca_cert_fingerprint`.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
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
        let parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Pki {
            issuer,
            ca_not_after: ca.not_after,
            provider_ca_pem: provider_ca.pem().into(),
            fingerprint,
            key_type: settings.key_type,
            validity,
            slow: settings.key_type.is_slow() || rsa_ca,
            slow_issuance: Semaphore::new(parallelism),
            generated,
        })
    }

    /// SHA-256 of the DER of the CA certificate handed out in `<ca>`.
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
        let key = key_type.generate()?;
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

    /// [`Pki::issue`] for a request: right here when it takes tens of
    /// microseconds, else on the blocking pool, a few at a time.
    pub async fn issue_for_request(self: &Arc<Self>) -> anyhow::Result<ClientCredentials> {
        if !self.slow {
            return Ok(self.issue()?);
        }
        let _permit = self
            .slow_issuance
            .acquire()
            .await
            .context("issuance is shutting down")?;
        let pki = self.clone();
        let credentials = tokio::task::spawn_blocking(move || pki.issue())
            .await
            .context("issuing a certificate")??;
        Ok(credentials)
    }
}

#[cfg(test)]
mod tests;
