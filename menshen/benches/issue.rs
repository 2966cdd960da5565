//! Client certificate issuance per second, for every client key type and
//! CA key type: `cargo bench -p menshen --bench issue`.
//!
//! A plain timing loop: each figure is the count of complete issuances
//! (key generation, signing, PEM encoding) in a fixed time, on one thread
//! and then on every core at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use menshen::pki::{KeyType, Pki, PkiSettings};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

const RUN: Duration = Duration::from_secs(2);

fn write_ca(dir: &Path, name: &str, key: KeyPair) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let cert = params.self_signed(&key).expect("CA");
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    (cert_path, key_path)
}

/// Issuances per second by `threads` threads, each issuing in a loop.
fn rate(pki: &Arc<Pki>, key_type: KeyType, threads: usize) -> f64 {
    let start = Instant::now();
    let count: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while start.elapsed() < RUN {
                        pki.issue_with(key_type).expect("issue");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("worker")).sum()
    });
    count as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cas = [
        (
            "ecdsa-p256 CA (generated default)",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        ),
        ("ed25519 CA", KeyPair::generate_for(&rcgen::PKCS_ED25519)),
        (
            "rsa2048 CA",
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048),
        ),
        (
            "rsa4096 CA",
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_4096),
        ),
    ];
    println!("client certificate issuances per second ({cores} cores, {RUN:?} per figure)");
    println!(
        "{:<36} {:<12} {:>12} {:>12} {:>14}",
        "CA",
        "client key",
        "1 thread",
        format!("{cores} threads"),
        "ms each (1 t.)"
    );
    for (i, (name, key)) in cas.into_iter().enumerate() {
        let (cert, key) = write_ca(dir.path(), &format!("ca{i}"), key.expect("CA key"));
        let settings = PkiSettings {
            ca_cert: Some(cert),
            ca_key: Some(key),
            ..PkiSettings::default()
        };
        let pki = Arc::new(Pki::load(&settings, dir.path()).expect("load"));
        for key_type in KeyType::ALL {
            let one = rate(&pki, key_type, 1);
            let all = rate(&pki, key_type, cores);
            println!(
                "{name:<36} {:<12} {one:>12.0} {all:>12.0} {:>14.3}",
                key_type.name(),
                1000.0 / one
            );
        }
    }
}
