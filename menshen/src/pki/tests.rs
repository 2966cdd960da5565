use std::collections::HashSet;
use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::*;

/// A CA written as PEM files into `dir`, made with `customise` applied.
fn write_ca(
    dir: &Path,
    name: &str,
    key: &KeyPair,
    customise: impl FnOnce(&mut CertificateParams),
) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(365);
    customise(&mut params);
    let cert = params.self_signed(key).unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

fn configured(cert: &Path, key: &Path) -> PkiSettings {
    PkiSettings {
        ca_cert: Some(cert.to_owned()),
        ca_key: Some(key.to_owned()),
        ..PkiSettings::default()
    }
}

fn load_err(settings: &PkiSettings, data_dir: &Path) -> String {
    format!("{:#}", Pki::load(settings, data_dir).unwrap_err())
}

fn der_of(pem_text: &str) -> Vec<u8> {
    let blocks = pem::parse_many(pem_text).unwrap();
    assert_eq!(blocks.len(), 1, "{pem_text}");
    blocks[0].contents().to_vec()
}

/// Checks an issued certificate the way a gateway would, and what
/// providers hand out.
fn check_client_certificate(pki: &Pki, credentials: &ClientCredentials, key_type: KeyType) {
    let ca_der = der_of(&credentials.ca_pem);
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let cert_der = der_of(&credentials.cert_pem);
    let (_, cert) = X509Certificate::from_der(&cert_der).unwrap();

    // Chains to the CA.
    cert.verify_signature(Some(ca.public_key()))
        .expect("signed by the CA");
    assert_eq!(cert.issuer(), ca.subject());

    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["UNLIMITED"]);
    assert_eq!(cert.subject().iter().count(), 1, "CN only");

    // About 24 days from now; started already.
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    assert!(not_before <= now && not_before >= now - 2 * 3600);
    let lifetime = not_after - now;
    assert!(
        (24 * 86_400 - 60..=24 * 86_400 + 60).contains(&lifetime),
        "{lifetime}"
    );

    let usage = cert.key_usage().unwrap().expect("key usage").value;
    assert!(usage.digital_signature());
    assert_eq!(usage.flags, 1, "digitalSignature only");
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("extended key usage")
        .value;
    assert!(eku.client_auth && !eku.server_auth && !eku.any && eku.other.is_empty());
    assert!(!cert.is_ca());

    // The key is the certificate's, of the asked type, in PKCS#8 v1 (what
    // OpenSSL 3.0 reads).
    assert!(
        credentials
            .key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----\n")
    );
    let key = KeyPair::from_pem(&credentials.key_pem).unwrap();
    let (_, info) = x509_parser::der_parser::parse_der(key.serialized_der()).unwrap();
    let fields = info.as_sequence().unwrap();
    assert_eq!(fields[0].as_u32().unwrap(), 0, "PKCS#8 v1");
    assert_eq!(fields.len(), 3, "no attributes, no public key");
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    let expected = match key_type {
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
    };
    assert_eq!(key.algorithm(), expected);
    if key_type == KeyType::Rsa2048 {
        let Ok(PublicKey::RSA(rsa)) = cert.public_key().parsed() else {
            panic!("an RSA key");
        };
        assert_eq!(rsa.key_size(), 2048);
    }
    assert_eq!(pki.ca_fingerprint(), fingerprint(&ca_der));
}

#[test]
fn a_generated_ca_issues_every_key_type_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load(&PkiSettings::default(), dir.path()).unwrap();
    assert!(pki.generated);
    assert!(!pki.rsa_ca, "Ed25519 from an ECDSA CA is issued in place");
    for key_type in KeyType::ALL {
        let credentials = pki.issue_with(key_type).unwrap();
        check_client_certificate(&pki, &credentials, key_type);
    }

    let paths = generated::paths(dir.path());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = Pki::load(&PkiSettings::default(), dir.path()).unwrap();
    assert_eq!(again.ca_fingerprint(), pki.ca_fingerprint());
    assert_eq!(
        pki.ca_fingerprint(),
        fingerprint(&der_of(&std::fs::read_to_string(&paths.cert).unwrap()))
    );
}

#[test]
fn the_default_is_ed25519_for_24_days() {
    let settings = PkiSettings::default();
    assert_eq!(settings.key_type, KeyType::Ed25519);
    assert_eq!(
        settings.validity,
        humantime::parse_duration(DEFAULT_CLIENT_CERT_VALIDITY).unwrap()
    );
}

#[test]
fn serials_are_random_and_distinct() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load(&PkiSettings::default(), dir.path()).unwrap();
    let mut serials = HashSet::new();
    for _ in 0..200 {
        let credentials = pki.issue().unwrap();
        let der = der_of(&credentials.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.raw_serial().len(), 16);
        assert!(serials.insert(cert.raw_serial().to_vec()));
    }
}

#[test]
fn the_leap_text_is_cut_by_literal_delimiters() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load(&PkiSettings::default(), dir.path()).unwrap();
    let credentials = pki.issue().unwrap();
    let text = credentials.leap_text();
    let section = |tag: &str| {
        let open = format!("<{tag}>\n");
        let close = format!("</{tag}>\n");
        let start = text.find(&open).unwrap() + open.len();
        let end = text.find(&close).unwrap();
        text[start..end].to_owned()
    };
    assert!(text.starts_with("<key>\n-----BEGIN PRIVATE KEY-----\n"));
    assert!(text.ends_with("-----END CERTIFICATE-----\n</ca>\n"));
    assert_eq!(section("key"), credentials.key_pem);
    assert_eq!(section("cert"), credentials.cert_pem);
    assert_eq!(section("ca"), pki.provider_ca_pem());
    assert!(
        credentials
            .cert_pem
            .ends_with("-----END CERTIFICATE-----\n")
    );
    assert!(!format!("{credentials:?}").contains("PRIVATE"));
}

#[test]
fn configured_cas_of_every_key_kind_sign() {
    let dir = tempfile::tempdir().unwrap();
    for (name, key) in [
        (
            "ed25519",
            KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        ),
        (
            "p256",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        ),
        (
            "p384",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        ),
        (
            "rsa",
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072).unwrap(),
        ),
    ] {
        let (cert, key) = write_ca(dir.path(), name, &key, |_| {});
        let pki = Pki::load(&configured(&cert, &key), dir.path()).unwrap();
        assert!(!pki.generated);
        assert_eq!(pki.rsa_ca, name == "rsa", "signing with RSA is slow");
        check_client_certificate(&pki, &pki.issue().unwrap(), KeyType::Ed25519);
    }
    assert!(
        !dir.path().join(generated::FOLDER).exists(),
        "no CA is generated when one is configured"
    );
}

/// The DER inside a PKCS#8 key's privateKey OCTET STRING: the same key in
/// PKCS#1 (RSA) or SEC1 (EC), as `openssl genrsa -traditional` and
/// `openssl ecparam -genkey` write them.
fn inner_key(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info) = x509_parser::der_parser::parse_der(pkcs8).unwrap();
    let items = info.as_sequence().unwrap();
    items[2].as_slice().unwrap().to_vec()
}

#[test]
fn pkcs1_and_sec1_keys_are_read() {
    let dir = tempfile::tempdir().unwrap();
    for (name, key, tag) in [
        (
            "rsa",
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap(),
            "RSA PRIVATE KEY",
        ),
        (
            "ec",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
            "EC PRIVATE KEY",
        ),
    ] {
        let (cert, key_path) = write_ca(dir.path(), name, &key, |_| {});
        let traditional = material::pem_encode(tag, &inner_key(key.serialized_der()));
        std::fs::write(&key_path, traditional).unwrap();
        let pki = Pki::load(&configured(&cert, &key_path), dir.path()).unwrap();
        check_client_certificate(&pki, &pki.issue().unwrap(), KeyType::Ed25519);
    }
}

#[test]
fn a_separate_provider_ca_is_handed_out_and_fingerprinted() {
    let dir = tempfile::tempdir().unwrap();
    let signing = KeyPair::generate().unwrap();
    let (cert, key) = write_ca(dir.path(), "client", &signing, |_| {});
    let (provider_cert, _) = write_ca(
        dir.path(),
        "provider",
        &KeyPair::generate().unwrap(),
        |_| {},
    );
    let settings = PkiSettings {
        provider_ca_cert: Some(provider_cert.clone()),
        ..configured(&cert, &key)
    };
    let pki = Pki::load(&settings, dir.path()).unwrap();
    let provider_der = der_of(&std::fs::read_to_string(&provider_cert).unwrap());
    assert_eq!(pki.ca_fingerprint(), fingerprint(&provider_der));
    let credentials = pki.issue().unwrap();
    assert_eq!(der_of(&credentials.ca_pem), provider_der);
    // Signed by the client CA, not by the one handed out.
    let signing_der = der_of(&std::fs::read_to_string(&cert).unwrap());
    let (_, signing_cert) = X509Certificate::from_der(&signing_der).unwrap();
    let cert_der = der_of(&credentials.cert_pem);
    let (_, client) = X509Certificate::from_der(&cert_der).unwrap();
    client
        .verify_signature(Some(signing_cert.public_key()))
        .unwrap();
}

#[test]
fn client_certificates_end_with_their_ca() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let ca_end = OffsetDateTime::now_utc() + Duration::days(3);
    let (cert, key) = write_ca(dir.path(), "short", &key, |p| p.not_after = ca_end);
    let pki = Pki::load(&configured(&cert, &key), dir.path()).unwrap();
    let der = der_of(&pki.issue().unwrap().cert_pem);
    let (_, client) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        client.validity().not_after.timestamp(),
        ca_end.unix_timestamp()
    );
}

#[test]
fn unreadable_or_unusable_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let (cert, key_path) = write_ca(dir.path(), "ca", &key, |_| {});

    let missing = dir.path().join("missing.key");
    let err = load_err(&configured(&cert, &missing), dir.path());
    assert!(
        err.contains("cannot read CA key") && err.contains("missing.key"),
        "{err}"
    );

    // Files that hold no key this CA can use: each refusal says why.
    for (name, content, says) in [
        (
            "garbage.key",
            "this is not a key\n".to_owned(),
            &["garbage.key", "no PEM private key"][..],
        ),
        (
            "broken.key",
            material::pem_encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00"),
            &["broken.key", "cannot use"],
        ),
        (
            "encrypted.key",
            material::pem_encode("ENCRYPTED PRIVATE KEY", b"\x30\x00"),
            &["encrypted"],
        ),
        (
            "other.key",
            KeyPair::generate().unwrap().serialize_pem(),
            &["does not belong to the CA certificate", "other.key"],
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = load_err(&configured(&cert, &path), dir.path());
        for said in says {
            assert!(err.contains(said), "{name}: {err}");
        }
    }

    // And the real pair loads.
    Pki::load(&configured(&cert, &key_path), dir.path()).unwrap();
}

#[test]
fn certificates_that_cannot_sign_now_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let now = OffsetDateTime::now_utc();

    let (cert, key_path) = write_ca(dir.path(), "expired", &key, |p| {
        p.not_before = now - Duration::days(400);
        p.not_after = now - Duration::days(35);
    });
    let err = load_err(&configured(&cert, &key_path), dir.path());
    assert!(
        err.contains("expired.crt") && err.contains("expired on"),
        "{err}"
    );

    let (cert, key_path) = write_ca(dir.path(), "future", &key, |p| {
        p.not_before = now + Duration::days(2);
    });
    let err = load_err(&configured(&cert, &key_path), dir.path());
    assert!(err.contains("not valid before"), "{err}");

    let (cert, key_path) = write_ca(dir.path(), "leaf", &key, |p| p.is_ca = IsCa::NoCa);
    let err = load_err(&configured(&cert, &key_path), dir.path());
    assert!(err.contains("not a CA certificate"), "{err}");

    let (cert, key_path) = write_ca(dir.path(), "nosign", &key, |p| {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    });
    let err = load_err(&configured(&cert, &key_path), dir.path());
    assert!(err.contains("keyCertSign"), "{err}");

    let (good, key_path) = write_ca(dir.path(), "good", &key, |_| {});
    let two = dir.path().join("two.crt");
    let text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&two, format!("{text}{text}")).unwrap();
    let err = load_err(&configured(&two, &key_path), dir.path());
    assert!(err.contains("expected one certificate, found 2"), "{err}");

    let (expired_provider, _) = write_ca(dir.path(), "old-provider", &key, |p| {
        p.not_before = now - Duration::days(400);
        p.not_after = now - Duration::days(1);
    });
    let settings = PkiSettings {
        provider_ca_cert: Some(expired_provider),
        ..configured(&good, &key_path)
    };
    let err = load_err(&settings, dir.path());
    assert!(
        err.contains("provider CA certificate") && err.contains("expired"),
        "{err}"
    );
}

#[test]
fn half_configured_or_half_generated_material_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("ca.crt");
    let err = load_err(
        &PkiSettings {
            ca_cert: Some(cert),
            ..PkiSettings::default()
        },
        dir.path(),
    );
    assert!(err.contains("without --ca-key"), "{err}");

    Pki::load(&PkiSettings::default(), dir.path()).unwrap();
    std::fs::remove_file(generated::paths(dir.path()).key).unwrap();
    let err = load_err(&PkiSettings::default(), dir.path());
    assert!(
        err.contains("remove that folder") && err.contains("cannot read CA key"),
        "{err}"
    );

    let short = PkiSettings {
        validity: std::time::Duration::from_secs(60),
        ..PkiSettings::default()
    };
    assert!(load_err(&short, dir.path()).contains("at least one hour"));
}

#[tokio::test]
async fn rsa_as_the_default_key_type_is_issued() {
    let dir = tempfile::tempdir().unwrap();
    let settings = PkiSettings {
        key_type: KeyType::Rsa2048,
        ..PkiSettings::default()
    };
    let pki = Arc::new(Pki::load(&settings, dir.path()).unwrap());
    let credentials = pki.issue_for(None).unwrap();
    check_client_certificate(&pki, &credentials, KeyType::Rsa2048);
}

#[tokio::test]
async fn a_request_picks_its_key_type_and_rsa_keys_are_made_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let settings = PkiSettings {
        rsa_pool: 2,
        ..PkiSettings::default()
    };
    let pki = Arc::new(Pki::load(&settings, dir.path()).unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while pki.rsa_keys_ready() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no RSA keys made ahead"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    for key_type in KeyType::ALL {
        let credentials = pki.issue_for(Some(key_type)).unwrap();
        check_client_certificate(&pki, &credentials, key_type);
    }
    // One ready key was used; the pool makes another.
    while pki.rsa_keys_ready() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the pool did not refill"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let credentials = pki.issue_for(None).unwrap();
    check_client_certificate(&pki, &credentials, KeyType::Ed25519);
}

#[test]
fn the_default_key_type_must_be_offered() {
    let dir = tempfile::tempdir().unwrap();
    let settings = PkiSettings {
        key_type: KeyType::Rsa2048,
        offered: vec![KeyType::Ed25519],
        ..PkiSettings::default()
    };
    assert!(load_err(&settings, dir.path()).contains("--client-key-types"));
}

#[test]
fn client_algo_names_map_to_key_types() {
    assert_eq!(KeyType::from_algo("rsa"), Some(KeyType::Rsa2048));
    assert_eq!(KeyType::from_algo("RSA"), Some(KeyType::Rsa2048));
    assert_eq!(KeyType::from_algo("ecdsa"), Some(KeyType::EcdsaP256));
    assert_eq!(KeyType::from_algo("ed25519"), Some(KeyType::Ed25519));
    assert_eq!(KeyType::from_algo("ecdsa-p256"), Some(KeyType::EcdsaP256));
    assert_eq!(KeyType::from_algo("dsa"), None);
}

#[test]
fn processes_starting_at_once_share_one_generated_ca() {
    let dir = tempfile::tempdir().unwrap();
    let made: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| generated::ensure(dir.path(), OffsetDateTime::now_utc()).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(made.iter().filter(|m| **m).count(), 1, "{made:?}");
    Pki::load(&PkiSettings::default(), dir.path()).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from(generated::FOLDER)]);
}

#[test]
fn a_foreign_pki_folder_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join(generated::FOLDER);
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "mine").unwrap();
    let err = load_err(&PkiSettings::default(), dir.path());
    assert!(err.contains("remove that folder"), "{err}");
    assert!(folder.join("notes.txt").exists());
}

#[test]
fn the_v3_cert_is_the_key_then_the_certificate_with_rsa_as_pkcs1() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::load(&PkiSettings::default(), dir.path()).unwrap();
    let rsa = pki.issue_with(KeyType::Rsa2048).unwrap();
    let text = rsa.v3_text();
    assert!(
        text.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"),
        "{text}"
    );
    assert!(text.ends_with("-----END CERTIFICATE-----\n"));
    assert!(!text.contains('\r'));
    let blocks = pem::parse_many(&text).unwrap();
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].tag(), "RSA PRIVATE KEY");
    assert_eq!(blocks[1].tag(), "CERTIFICATE");
    // A PKCS#1 RSAPrivateKey (read by a parser of that form alone), the
    // same key as the PKCS#8 one.
    aws_lc_rs::rsa::KeyPair::from_der(blocks[0].contents()).expect("PKCS#1 RSA key");
    let pkcs8 = pem::parse(&rsa.key_pem).unwrap();
    assert!(pkcs8.contents().ends_with(blocks[0].contents()));
    assert_eq!(blocks[1].contents(), der_of(&rsa.cert_pem));

    // Other keys stay PKCS#8.
    let ed = pki.issue_with(KeyType::Ed25519).unwrap();
    assert!(ed.v3_text().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(pkcs8_rsa_to_pkcs1(b"not der").is_none());
}
