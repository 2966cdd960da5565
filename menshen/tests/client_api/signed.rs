//! Signed answers (`--list-key-file`): every client answer carries an
//! Ed25519 signature over its exact body, made once per distinct body;
//! /provider.json publishes the keys; nothing of it without a key.

use std::collections::{HashMap, HashSet};

use menshen::sign::{self, ListKey};
use menshen_model::SigningKeyInfo;

use crate::common::{Backend, CONTRACT_FILE, TestServer, on_each_backend, sample};

on_each_backend!(
    every_client_answer_is_signed_over_its_exact_body,
    answers_are_unsigned_without_a_key,
);

const PATHS: &[&str] = &[
    "/provider.json",
    "/api/5/service",
    "/api/5/gateways",
    "/api/5/gateways?cc=CA",
    "/api/5/gateways?tr=tcp",
    "/api/5/gateways?byload=true",
    "/api/5/bridges",
];

/// GET `path`: status, signature header and body.
async fn get(
    server: &TestServer,
    path: &str,
    etag: Option<&str>,
) -> (u16, Option<String>, Vec<u8>) {
    let mut request = server.client.get(server.url(path));
    if let Some(etag) = etag {
        request = request.header("if-none-match", etag);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get(sign::HEADER)
        .map(|v| v.to_str().unwrap().to_owned());
    (status, header, response.bytes().await.unwrap().to_vec())
}

async fn every_client_answer_is_signed_over_its_exact_body(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<_> = ["new.key", "old.key"]
        .iter()
        .map(|name| {
            let path = dir.path().join(name);
            std::fs::write(&path, ListKey::generate_file_contents()).unwrap();
            path
        })
        .collect();
    let kids: Vec<String> = files
        .iter()
        .map(|f| ListKey::read(f).unwrap().kid)
        .collect();
    // Three gateways with room in Amsterdam, so that orders differ.
    let mut file = CONTRACT_FILE.to_owned();
    for n in 2..=3 {
        file += &format!(
            "\n[[gateway]]\nhost = \"gw{n}.ams\"\nip_addr = \"192.0.2.{n}\"\n\
             location = \"amsterdam\"\nport = 1194\ntransport = \"udp\"\nload = 0.5\n"
        );
    }
    let mut settings = backend.serving(file);
    settings.list_key_files = files;
    settings.signature_variants = 4;
    let server = TestServer::start_with(settings).await;

    // Both keys are published, the first signs.
    let provider = server.json("/provider.json").await;
    let keys: Vec<SigningKeyInfo> =
        serde_json::from_value(provider["signing_keys"].clone()).unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
        kids,
        "{provider}"
    );
    assert!(keys.iter().all(|k| k.alg == "ed25519"));

    let now = sign::unix_now();
    let mut bodies: HashMap<&str, HashSet<Vec<u8>>> = HashMap::new();
    for path in PATHS {
        for _ in 0..40 {
            let (status, header, body) = get(&server, path, None).await;
            assert_eq!(status, 200, "{path}");
            let header = header.unwrap_or_else(|| panic!("{path}: no signature"));
            let verified = sign::verify(&header, &body, &keys, now).unwrap();
            assert_eq!(verified.kid, kids[0], "{path}");
            assert!(
                verified.expires > now + 3000,
                "{path}: valid for about an hour"
            );
            // A byte more and it no longer holds.
            let mut tampered = body.clone();
            tampered.push(b' ');
            assert!(sign::verify(&header, &tampered, &keys, now).is_err());
            bodies.entry(path).or_default().insert(body);
        }
    }
    // Lists are drawn from four orders per set, so that bodies repeat;
    // the Amsterdam gateways come in more than one order among them.
    for path in PATHS {
        assert!(
            bodies[path].len() <= 4,
            "{path}: {} bodies",
            bodies[path].len()
        );
    }
    assert!(bodies["/api/5/gateways"].len() >= 2);
    // One signature per distinct body, not per request.
    let distinct: usize = bodies.values().map(HashSet::len).sum();
    let made = sample(&server.metrics().await, "menshen_list_signatures_total").unwrap();
    assert!(
        made as usize <= distinct,
        "{made} signatures for {distinct} bodies"
    );

    // What the client holds already is not sent, nor signed.
    let etag = server.etag("/api/5/gateways").await;
    let (status, header, body) = get(&server, "/api/5/gateways", Some(&etag)).await;
    assert_eq!((status, header, body.len()), (304, None, 0));

    // A list of the old key alone does not verify what the new key signed.
    let (_, header, body) = get(&server, "/api/5/bridges", None).await;
    let e = sign::verify(&header.unwrap(), &body, &keys[1..], now).unwrap_err();
    assert!(e.contains("not among"), "{e}");
}

async fn answers_are_unsigned_without_a_key(backend: Backend) {
    let server = TestServer::start(&backend, CONTRACT_FILE).await;
    let provider = server.json("/provider.json").await;
    assert!(provider.get("signing_keys").is_none(), "{provider}");
    for path in PATHS {
        let (status, header, _) = get(&server, path, None).await;
        assert_eq!((status, header), (200, None), "{path}");
    }
    let metrics = server.metrics().await;
    assert_eq!(sample(&metrics, "menshen_list_signatures_total"), None);
}
