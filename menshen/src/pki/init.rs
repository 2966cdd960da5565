//! `menshen pki init`: a provider's key material, made once.
//!
//! - the client CA (`ca.crt`, `ca.key`): signs client certificates; the
//!   gateways trust it for clients. menshen holds its key.
//! - the provider CA (`provider-ca.crt`, `provider-ca.key`): the gateways'
//!   server certificates chain to it; clients get its certificate in
//!   `<ca>`. menshen needs only the certificate; the key signs gateway
//!   certificates elsewhere and is kept offline.
//! - the signing key of tokens (`signing.key`): base64 of 32 random bytes.
//!
//! As files, or as the Kubernetes Secret the backend chart mounts (the four
//! files menshen reads, never the provider CA's key).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use time::OffsetDateTime;

use super::generated::{NewCa, create_private_dir, new_ca, write_new};
use crate::auth::SigningKey;

pub const SIGNING_KEY: &str = "signing.key";
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const PROVIDER_CA_CERT: &str = "provider-ca.crt";
pub const PROVIDER_CA_KEY: &str = "provider-ca.key";

/// What `menshen pki init` makes.
pub struct Material {
    signing_key: String,
    client_ca: NewCa,
    provider_ca: NewCa,
}

/// Which files [`Material::write`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// All five.
    All,
    /// The provider CA's certificate and key only (the rest went into a
    /// Secret).
    ProviderCa,
}

impl Material {
    /// New CAs named after `name` (e.g. the provider's domain) and a new
    /// signing key.
    pub fn generate(name: &str, now: OffsetDateTime) -> anyhow::Result<Material> {
        Ok(Material {
            signing_key: SigningKey::generate_text(),
            client_ca: new_ca(&format!("{name} client CA"), now)?,
            provider_ca: new_ca(&format!("{name} provider CA"), now)?,
        })
    }

    /// What menshen reads, as (key, content): the keys of the Secret.
    fn backend_entries(&self) -> [(&'static str, String); 4] {
        [
            (SIGNING_KEY, format!("{}\n", self.signing_key)),
            (CA_CERT, self.client_ca.cert_pem.clone()),
            (CA_KEY, self.client_ca.key_pem.clone()),
            (PROVIDER_CA_CERT, self.provider_ca.cert_pem.clone()),
        ]
    }

    /// Writes `files` into `dir` (made if missing, private): keys
    /// readable by the owner only. Without `force`, nothing is written when
    /// any of them exists. Returns the paths written.
    pub fn write(&self, dir: &Path, files: Files, force: bool) -> anyhow::Result<Vec<PathBuf>> {
        let mut entries: Vec<(&str, String, u32)> = Vec::new();
        if files == Files::All {
            for (name, content) in self.backend_entries() {
                let mode = if name.ends_with(".crt") { 0o644 } else { 0o600 };
                entries.push((name, content, mode));
            }
        } else {
            entries.push((PROVIDER_CA_CERT, self.provider_ca.cert_pem.clone(), 0o644));
        }
        entries.push((PROVIDER_CA_KEY, self.provider_ca.key_pem.clone(), 0o600));

        let existing: Vec<String> = entries
            .iter()
            .map(|(name, ..)| dir.join(name))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() && !force {
            bail!(
                "refusing to overwrite {} (key material in use would be lost); \
                 use --force to replace it",
                existing.join(", ")
            );
        }
        create_private_dir(dir)?;
        let mut written = Vec::new();
        for (name, content, mode) in entries {
            let path = dir.join(name);
            if force && path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("replacing {}", path.display()))?;
            }
            write_new(&path, content.as_bytes(), mode)?;
            written.push(path);
        }
        Ok(written)
    }

    /// The Secret the backend chart mounts (`charts/menshen/SECRETS.md`):
    /// the four files menshen reads, base64 in `data`.
    pub fn secret_manifest(&self, name: &str, namespace: Option<&str>) -> anyhow::Result<String> {
        check_names(name, namespace)?;
        let mut out = String::from(
            "# menshen's signing key and CAs, made by `menshen pki init`. The provider\n\
             # CA's key is not in here: it stays offline, with whoever signs gateways'\n\
             # certificates.\n\
             apiVersion: v1\nkind: Secret\nmetadata:\n",
        );
        out.push_str(&format!("  name: {name}\n"));
        if let Some(ns) = namespace {
            out.push_str(&format!("  namespace: {ns}\n"));
        }
        out.push_str(
            "  labels:\n    app.kubernetes.io/name: menshen\n    app.kubernetes.io/component: pki\n\
             type: Opaque\ndata:\n",
        );
        for (key, content) in self.backend_entries() {
            let encoded = base64::engine::general_purpose::STANDARD.encode(content);
            out.push_str(&format!("  {key}: {encoded}\n"));
        }
        Ok(out)
    }
}

/// Refuses a Secret name or namespace Kubernetes would refuse.
pub(crate) fn check_names(name: &str, namespace: Option<&str>) -> anyhow::Result<()> {
    if !valid_dns_subdomain(name) {
        bail!(
            "Secret name {name:?}: use lowercase letters, digits, '-' and '.' \
             (at most 253, starting and ending with a letter or digit)"
        );
    }
    if let Some(ns) = namespace
        && !(ns.len() <= 63 && valid_dns_subdomain(ns) && !ns.contains('.'))
    {
        bail!("namespace {ns:?}: use lowercase letters, digits and '-' (at most 63)");
    }
    Ok(())
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn valid_dns_subdomain(name: &str) -> bool {
    let ok_edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=253).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && ok_edge(name.chars().next())
        && ok_edge(name.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["menshen-pki", "a", "menshen.pki-2"] {
            assert!(valid_dns_subdomain(ok), "{ok}");
        }
        for bad in ["", "Menshen", "-a", "a-", "a_b", "a b"] {
            assert!(!valid_dns_subdomain(bad), "{bad}");
        }
        let material = Material::generate("test", OffsetDateTime::now_utc()).unwrap();
        assert!(material.secret_manifest("Bad", None).is_err());
        assert!(material.secret_manifest("ok", Some("a.b")).is_err());
        let manifest = material.secret_manifest("ok", Some("vpn")).unwrap();
        assert!(manifest.contains("  namespace: vpn\n"), "{manifest}");
        assert!(!manifest.contains(PROVIDER_CA_KEY), "{manifest}");
    }

    #[test]
    fn existing_files_are_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let first = Material::generate("test", now).unwrap();
        assert_eq!(first.write(dir.path(), Files::All, false).unwrap().len(), 5);
        let before = std::fs::read(dir.path().join(CA_KEY)).unwrap();
        let second = Material::generate("test", now).unwrap();
        let err = second.write(dir.path(), Files::All, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(dir.path().join(CA_KEY)).unwrap(), before);
        second.write(dir.path(), Files::All, true).unwrap();
        assert_ne!(std::fs::read(dir.path().join(CA_KEY)).unwrap(), before);
    }
}
