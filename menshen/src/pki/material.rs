//! Reading CA certificates and keys from PEM files, and refusing material
//! that cannot work: an unreadable or encrypted key, a key that is not the
//! certificate's, a certificate that is not a CA or is out of its validity.

use std::path::Path;

use anyhow::{Context, bail};
use rcgen::KeyPair;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A CA certificate in its validity period, kept as DER, with what the
/// other checks need from it.
#[derive(Clone)]
pub struct CaCertificate {
    pub der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub subject: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// No key usage extension, or one with keyCertSign.
    pub may_sign_certificates: bool,
    /// The subjectPublicKey bits.
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for CaCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaCertificate")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CaCertificate {
    /// The certificate in PEM, one block, `\n` line ends, as clients get it.
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }
}

pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{what} {} is not a PEM text file", path.display()))
}

fn to_offset(time: x509_parser::time::ASN1Time) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(time.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn date(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    format!("{} {:02}:{:02} UTC", t.date(), t.hour(), t.minute())
}

/// Reads the one certificate in the PEM file at `path` (`what` names it in
/// errors) and checks that it is in its validity period at `now`.
pub fn read_certificate(
    path: &Path,
    what: &str,
    now: OffsetDateTime,
) -> anyhow::Result<CaCertificate> {
    let text = read_text(path, what)?;
    let blocks = pem::parse_many(&text)
        .map_err(|e| anyhow::anyhow!("{what} {}: not valid PEM: {e}", path.display()))?;
    let certs: Vec<&pem::Pem> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    let der = match certs.as_slice() {
        [one] => one.contents().to_vec(),
        [] => bail!("{what} {}: no PEM CERTIFICATE block found", path.display()),
        many => bail!(
            "{what} {}: expected one certificate, found {}",
            path.display(),
            many.len()
        ),
    };
    let (_, cert) = X509Certificate::from_der(&der)
        .map_err(|e| anyhow::anyhow!("{what} {}: not an X.509 certificate: {e}", path.display()))?;
    let subject = cert.subject().to_string();
    let not_before = to_offset(cert.validity().not_before);
    let not_after = to_offset(cert.validity().not_after);
    let is_ca = cert.is_ca();
    let may_sign_certificates = match cert.key_usage() {
        Ok(Some(usage)) => usage.value.key_cert_sign(),
        _ => true,
    };
    let public_key = cert.public_key().subject_public_key.data.to_vec();
    if now < not_before {
        bail!(
            "{what} {} ({subject}) is not valid before {}",
            path.display(),
            date(not_before)
        );
    }
    if now > not_after {
        bail!(
            "{what} {} ({subject}) expired on {}",
            path.display(),
            date(not_after)
        );
    }
    Ok(CaCertificate {
        der,
        not_before,
        not_after,
        subject,
        is_ca,
        may_sign_certificates,
        public_key,
    })
}

/// Checks that `cert` may sign certificates.
pub fn check_is_ca(cert: &CaCertificate, path: &Path, what: &str) -> anyhow::Result<()> {
    if !cert.is_ca {
        bail!(
            "{what} {} ({}) is not a CA certificate: it lacks basicConstraints CA:TRUE",
            path.display(),
            cert.subject
        );
    }
    if !cert.may_sign_certificates {
        bail!(
            "{what} {} ({}): its key usage does not allow signing certificates (keyCertSign)",
            path.display(),
            cert.subject
        );
    }
    Ok(())
}

/// Reads the unencrypted private key in the PEM file at `path`: PKCS#8
/// (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
pub fn read_key(path: &Path, what: &str) -> anyhow::Result<KeyPair> {
    let text = read_text(path, what)?;
    let blocks = pem::parse_many(&text)
        .map_err(|e| anyhow::anyhow!("{what} {}: not valid PEM: {e}", path.display()))?;
    let Some(block) = blocks.iter().find(|b| b.tag().ends_with("PRIVATE KEY")) else {
        bail!("{what} {}: no PEM private key block found", path.display());
    };
    let encrypted = block.tag() == "ENCRYPTED PRIVATE KEY"
        || block
            .headers()
            .get("Proc-Type")
            .is_some_and(|v| v.contains("ENCRYPTED"));
    if encrypted {
        bail!(
            "{what} {} is encrypted; menshen needs it unencrypted \
             (e.g. `openssl pkey -in KEY -out PLAIN-KEY`), readable only by menshen",
            path.display()
        );
    }
    KeyPair::try_from(block.contents()).map_err(|_| {
        anyhow::anyhow!(
            "{what} {}: cannot use this {}: menshen reads Ed25519, ECDSA (P-256, P-384, P-521) \
             and RSA keys",
            path.display(),
            block.tag()
        )
    })
}

/// Checks that `key` is the private key of `cert`.
pub fn check_key_matches(
    cert: &CaCertificate,
    key: &KeyPair,
    cert_path: &Path,
    key_path: &Path,
) -> anyhow::Result<()> {
    if cert.public_key != key.public_key_raw() {
        bail!(
            "CA key {} does not belong to the CA certificate {} ({})",
            key_path.display(),
            cert_path.display(),
            cert.subject
        );
    }
    Ok(())
}
