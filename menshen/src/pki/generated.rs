//! The zero-setup CA: made on first start into the data folder and kept
//! there, so that menshen can be tried without any PKI. Each menshen with
//! its own data folder makes its own CA, so it is no way to run several
//! replicas or a real provider.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use super::random_serial;

/// Folder inside the data folder.
pub const FOLDER: &str = "pki";
pub const CERT_FILE: &str = "ca.crt";
pub const KEY_FILE: &str = "ca.key";

/// How long a generated CA lasts.
const LIFETIME: Duration = Duration::days(10 * 365);

/// Where the generated CA is.
pub struct Paths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn paths(data_dir: &Path) -> Paths {
    let dir = data_dir.join(FOLDER);
    Paths {
        cert: dir.join(CERT_FILE),
        key: dir.join(KEY_FILE),
    }
}

/// Writes a new CA into `data_dir` unless one is there. Returns whether it
/// made one.
///
/// The key and the certificate are written into a folder of their own that
/// is then renamed into place: the pair appears whole or not at all, and
/// of several processes starting at once on one data folder, one wins and
/// the others use its CA.
pub fn ensure(data_dir: &Path, now: OffsetDateTime) -> anyhow::Result<bool> {
    let dir = data_dir.join(FOLDER);
    if dir.join(CERT_FILE).exists() {
        return Ok(false);
    }
    let mut tag = [0u8; 8];
    aws_lc_rs::rand::fill(&mut tag).map_err(|_| anyhow::anyhow!("no randomness"))?;
    let staging = data_dir.join(format!(".{FOLDER}-{}", hex::encode(tag)));
    create_private_dir(&staging)?;
    let written = write_ca(&staging, now);
    let placed = written.and_then(|()| {
        std::fs::rename(&staging, &dir).with_context(|| {
            format!(
                "cannot put the generated CA into {}: remove that folder, or configure \
                 --ca-cert and --ca-key",
                dir.display()
            )
        })
    });
    match placed {
        Ok(()) => Ok(true),
        Err(err) => {
            let _ = std::fs::remove_dir_all(&staging);
            if dir.join(CERT_FILE).exists() {
                // Another process made one first.
                Ok(false)
            } else {
                Err(err)
            }
        }
    }
}

fn write_ca(dir: &Path, now: OffsetDateTime) -> anyhow::Result<()> {
    let ca = new_ca("menshen trial CA (not for production)", now)?;
    write_new(&dir.join(KEY_FILE), ca.key_pem.as_bytes(), 0o600)?;
    write_new(&dir.join(CERT_FILE), ca.cert_pem.as_bytes(), 0o644)
}

/// A new self-signed CA, in PEM.
pub struct NewCa {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a CA named `common_name`, valid from an hour before `now` for
/// ten years, that may sign end-entity certificates only (path length 0).
pub fn new_ca(common_name: &str, now: OffsetDateTime) -> anyhow::Result<NewCa> {
    // ECDSA P-256: verifiable by every OpenVPN build in use, and fast.
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating a CA key")?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + LIFETIME;
    params.serial_number = Some(random_serial().context("drawing a serial number")?);
    let cert = params.self_signed(&key).context("signing the CA")?;
    Ok(NewCa {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Creates `dir` (and its parents) readable by its owner only.
pub(crate) fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Creates `path` with `bytes`, readable as `mode` says; fails if it exists.
pub(crate) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
