//! `menshen pki gateway-cert HOST`: a gateway's OpenVPN server certificate,
//! signed by the provider CA (the CA clients get in `<ca>`, whose key `pki
//! init --out` left offline).
//!
//! ECDSA P-256, subject `CN=HOST`, a subjectAltName for HOST (a DNS name,
//! or an IP address when HOST is one) and any further addresses, key usage
//! digitalSignature, extended key usage serverAuth: served configurations
//! ask for `remote-cert-tls server`, which checks exactly that.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

use super::{material, random_serial};

/// A gateway's certificate and key, in PEM.
pub struct GatewayCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Signs a server certificate for `host` (and `extra_ips`) with the CA in
/// `ca_cert` / `ca_key`, valid from an hour ago for `validity`.
pub fn issue(
    host: &str,
    extra_ips: &[IpAddr],
    ca_cert: &Path,
    ca_key: &Path,
    validity: Duration,
    now: OffsetDateTime,
) -> anyhow::Result<GatewayCert> {
    check_host(host)?;
    if validity < Duration::hours(1) {
        bail!("--validity must be at least an hour");
    }
    let ca = material::read_certificate(ca_cert, "provider CA certificate", now)?;
    material::check_is_ca(&ca, ca_cert, "provider CA certificate")?;
    let key = material::read_key(ca_key, "provider CA key")?;
    material::check_key_matches(&ca, &key, ca_cert, ca_key)?;
    let issuer = Issuer::from_ca_cert_der(&ca.der.clone().into(), key).map_err(|e| {
        anyhow::anyhow!(
            "provider CA certificate {}: cannot sign with it: {e}",
            ca_cert.display()
        )
    })?;
    let not_after = (now + validity).min(ca.not_after);

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, host);
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.subject_alt_names = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SanType::IpAddress(ip)],
        Err(_) => vec![SanType::DnsName(
            host.try_into().context("HOST is not a DNS name")?,
        )],
    };
    for ip in extra_ips {
        if !params.subject_alt_names.contains(&SanType::IpAddress(*ip)) {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
    }
    params.not_before = now - Duration::hours(1);
    params.not_after = not_after;
    params.serial_number = Some(random_serial().context("drawing a serial number")?);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating a key")?;
    let cert = params
        .signed_by(&key, &issuer)
        .context("signing the gateway certificate")?;
    Ok(GatewayCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A host name (letters, digits, `-`, `.`) or an IP address.
fn check_host(host: &str) -> anyhow::Result<()> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || host.is_empty() || !host.split('.').all(label_ok) {
        bail!("HOST {host:?} is neither a host name nor an IP address");
    }
    Ok(())
}

impl GatewayCert {
    /// The Secret the gateway chart mounts (`kubernetes.io/tls`): `tls.crt`,
    /// `tls.key` and, when given, the client CA's certificate as `ca.crt`
    /// (the CA that signs client certificates, which OpenVPN verifies
    /// clients against).
    pub fn secret_manifest(
        &self,
        name: &str,
        namespace: Option<&str>,
        client_ca: Option<&str>,
    ) -> anyhow::Result<String> {
        super::init::check_names(name, namespace)?;
        let mut out = String::from(
            "# A gateway's OpenVPN server certificate and key, made by `menshen pki gateway-cert`.\n\
             apiVersion: v1\nkind: Secret\nmetadata:\n",
        );
        out.push_str(&format!("  name: {name}\n"));
        if let Some(ns) = namespace {
            out.push_str(&format!("  namespace: {ns}\n"));
        }
        out.push_str(
            "  labels:\n    app.kubernetes.io/name: menshen-gateway\n    app.kubernetes.io/component: pki\n\
             type: kubernetes.io/tls\ndata:\n",
        );
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        out.push_str(&format!("  tls.crt: {}\n", b64(&self.cert_pem)));
        out.push_str(&format!("  tls.key: {}\n", b64(&self.key_pem)));
        if let Some(ca) = client_ca {
            out.push_str(&format!("  ca.crt: {}\n", b64(ca)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::init::{Files, Material, PROVIDER_CA_CERT, PROVIDER_CA_KEY};
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn a_server_certificate_for_the_host_signed_by_the_provider_ca() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        Material::generate("test", now)
            .unwrap()
            .write(dir.path(), Files::All, false)
            .unwrap();
        let (ca_cert, ca_key) = (
            dir.path().join(PROVIDER_CA_CERT),
            dir.path().join(PROVIDER_CA_KEY),
        );
        let made = issue(
            "gw1.example.org",
            &["192.0.2.10".parse().unwrap()],
            &ca_cert,
            &ca_key,
            Duration::days(30),
            now,
        )
        .unwrap();
        let der = pem::parse(&made.cert_pem).unwrap().into_contents();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.subject().to_string(), "CN=gw1.example.org");
        assert!(cert.issuer().to_string().contains("test provider CA"));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let san = cert.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].contains("gw1.example.org"), "{names:?}");
        assert!(!cert.is_ca());

        // The client CA cannot sign gateways by mistake when its key is not
        // the certificate's.
        let wrong = issue(
            "gw1.example.org",
            &[],
            &ca_cert,
            &dir.path().join(crate::pki::init::CA_KEY),
            Duration::days(30),
            now,
        );
        assert!(wrong.is_err());
        assert!(issue("bad host", &[], &ca_cert, &ca_key, Duration::days(1), now).is_err());

        let secret = made
            .secret_manifest("gw1-openvpn", Some("vpn"), Some("CA PEM"))
            .unwrap();
        for key in [
            "  tls.crt: ",
            "  tls.key: ",
            "  ca.crt: ",
            "type: kubernetes.io/tls",
        ] {
            assert!(secret.contains(key), "{secret}");
        }
        assert!(made.secret_manifest("Bad_Name", None, None).is_err());
    }
}
