//! `menshen pki init` with the real binary: the files it writes, and the
//! Secret it prints, are what `menshen serve` takes; clients get the
//! provider CA in `<ca>` (its fingerprint in `/provider.json`) and client
//! certificates signed by the client CA. Independent checks with openssl.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use menshen_e2e::Menshen;
use menshen_e2e::http::{get_json, get_text};
use menshen_e2e::peers::openssl_fingerprint;

const BACKEND_FILES: [&str; 4] = ["signing.key", "ca.crt", "ca.key", "provider-ca.crt"];

fn example_config() -> PathBuf {
    menshen_e2e::provider::example()
}

fn cli(args: &[&str]) -> Output {
    menshen_e2e::menshen_output(args)
}

/// A CLI run that must succeed.
fn cli_ok(args: &[&str]) -> Output {
    succeeded(cli(args))
}

/// `out`, of a CLI run that must have succeeded.
fn succeeded(out: Output) -> Output {
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `menshen pki init --out out` and `extra`.
fn pki_init<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["pki", "init", "--out", out.to_str().unwrap()];
    args.extend(extra);
    args
}

/// `menshen pki gateway-cert` for gw1.example.org with the provider CA of
/// `dir`, as a Secret whose `ca.crt` holds `client_cas`.
fn gateway_cert(dir: &Path, client_cas: &[&Path]) -> Output {
    let (ca_cert, ca_key) = (dir.join("provider-ca.crt"), dir.join("provider-ca.key"));
    let mut args = vec![
        "pki",
        "gateway-cert",
        "gw1.example.org",
        "--ca-cert",
        ca_cert.to_str().unwrap(),
        "--ca-key",
        ca_key.to_str().unwrap(),
        "--secret",
        "gw1-openvpn-tls",
    ];
    for ca in client_cas {
        args.extend(["--client-ca", ca.to_str().unwrap()]);
    }
    cli(&args)
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs (Debian package openssl)")
}

/// What `menshen serve` gives clients with the key material of `dir` and
/// the provider CA `provider_ca`: the client certificate and `<ca>` of
/// one `/api/5/openvpn/cert`, and `ca_cert_fingerprint`.
struct Served {
    server: Menshen,
    cert: String,
    ca: String,
    pin: String,
}

/// Starts `menshen serve` on the key material in `dir` (its signing key
/// too, with `signing_key`) and asks what a client gets.
async fn serve(dir: &Path, provider_ca: &Path, signing_key: bool) -> Served {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let config = example_config();
    let mut args = vec![
        "--config".to_owned(),
        config.to_str().unwrap().to_owned(),
        "--ca-cert".to_owned(),
        path("ca.crt"),
        "--ca-key".to_owned(),
        path("ca.key"),
        "--provider-ca-cert".to_owned(),
        provider_ca.to_str().unwrap().to_owned(),
    ];
    if signing_key {
        args.extend(["--signing-key-file".to_owned(), path("signing.key")]);
    }
    let server = Menshen::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let provider = get_json(&format!("{}/provider.json", server.url)).await;
    let answer = get_text(&format!("{}/api/5/openvpn/cert", server.url)).await;
    let section = |tag: &str| {
        let start = answer.find(&format!("<{tag}>\n")).unwrap() + tag.len() + 3;
        let end = answer.find(&format!("</{tag}>")).unwrap();
        answer[start..end].to_owned()
    };
    Served {
        cert: section("cert"),
        ca: section("ca"),
        pin: provider["ca_cert_fingerprint"].as_str().unwrap().to_owned(),
        server,
    }
}

/// `menshen serve` on the key material in `dir`; checks what clients get
/// and that the signing key is the one used.
async fn serve_and_check(dir: &Path, provider_ca: &Path) {
    let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let Served {
        server,
        cert,
        ca,
        pin,
    } = serve(dir, provider_ca, true).await;
    assert_eq!(
        menshen_e2e::clients::bitmask_core_ca_pin(&pin),
        openssl_fingerprint(provider_ca.parent().unwrap(), provider_ca)
    );
    assert_eq!(ca, std::fs::read_to_string(provider_ca).unwrap());
    let work = tempfile::tempdir().unwrap();
    let cert_path = work.path().join("client.crt");
    std::fs::write(&cert_path, cert).unwrap();
    let verify = |ca: &str| {
        openssl(&["verify", "-CAfile", ca, cert_path.to_str().unwrap()])
            .status
            .success()
    };
    assert!(verify(&path("ca.crt")), "signed by the client CA");
    assert!(
        !verify(provider_ca.to_str().unwrap()),
        "not by the provider CA"
    );

    // The signing key is the one in the files: a token the CLI mints from
    // it is accepted.
    let token = cli_ok(&[
        "admin",
        "token",
        "--subject",
        "tester",
        "--role",
        "viewer",
        "--signing-key-file",
        &path("signing.key"),
        // The token's id is recorded in the server's store.
        "--data-dir",
        server.data_dir.as_ref().unwrap().path().to_str().unwrap(),
    ]);
    let status = reqwest::Client::new()
        .get(format!("{}/admin/v1/gateways", server.url))
        .bearer_auth(text(&token.stdout).trim())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn pki_init_writes_files_that_menshen_serves() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("pki");
    let out = cli_ok(&pki_init(&dir, &["--name", "vpn.test"]));
    assert!(out.stdout.is_empty(), "files only: {}", text(&out.stdout));
    for name in BACKEND_FILES.iter().chain(&["provider-ca.key"]) {
        let meta = std::fs::metadata(dir.join(name)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        let expected = if name.ends_with(".crt") { 0o644 } else { 0o600 };
        assert_eq!(mode, expected, "{name}: {mode:o}");
    }
    let subject = openssl(&[
        "x509",
        "-in",
        dir.join("provider-ca.crt").to_str().unwrap(),
        "-noout",
        "-subject",
    ]);
    assert!(
        text(&subject.stdout).contains("vpn.test provider CA"),
        "{}",
        text(&subject.stdout)
    );

    // Once made, never replaced by accident.
    let before = std::fs::read(dir.join("ca.key")).unwrap();
    let again = cli(&pki_init(&dir, &[]));
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(dir.join("ca.key")).unwrap(), before);

    serve_and_check(&dir, &dir.join("provider-ca.crt")).await;

    cli_ok(&pki_init(&dir, &["--force"]));
    assert_ne!(std::fs::read(dir.join("ca.key")).unwrap(), before);
}

#[tokio::test]
async fn pki_init_prints_the_secret_the_chart_mounts() {
    let work = tempfile::tempdir().unwrap();
    let offline = work.path().join("provider-ca");
    let out = cli_ok(&pki_init(
        &offline,
        &["--secret", "menshen-pki", "--namespace", "vpn"],
    ));

    // Only the provider CA goes to the folder; its key stays out of the
    // Secret.
    let mut written: Vec<String> = std::fs::read_dir(&offline)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    assert_eq!(written, ["provider-ca.crt", "provider-ca.key"]);

    let manifest: serde_norway::Value = serde_norway::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not YAML ({e}):\n{}", text(&out.stdout)));
    assert_eq!(manifest["apiVersion"], "v1");
    assert_eq!(manifest["kind"], "Secret");
    assert_eq!(manifest["type"], "Opaque");
    assert_eq!(manifest["metadata"]["name"], "menshen-pki");
    assert_eq!(manifest["metadata"]["namespace"], "vpn");
    let data = manifest["data"].as_mapping().expect("data");
    let mut keys: Vec<&str> = data.keys().map(|k| k.as_str().unwrap()).collect();
    keys.sort();
    let mut expected = BACKEND_FILES.to_vec();
    expected.sort();
    assert_eq!(keys, expected);

    // The Secret's files, as the chart mounts them, are what menshen serves.
    let mounted = work.path().join("mounted");
    std::fs::create_dir(&mounted).unwrap();
    for key in BACKEND_FILES {
        let encoded = data[key].as_str().expect("a string");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap_or_else(|e| panic!("{key} is not base64: {e}"));
        std::fs::write(mounted.join(key), bytes).unwrap();
    }
    assert_eq!(
        std::fs::read(mounted.join("provider-ca.crt")).unwrap(),
        std::fs::read(offline.join("provider-ca.crt")).unwrap()
    );
    let signing = std::fs::read_to_string(mounted.join("signing.key")).unwrap();
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(signing.trim())
        .unwrap();
    assert_eq!(key_bytes.len(), 32);
    serve_and_check(&mounted, &mounted.join("provider-ca.crt")).await;

    // Names Kubernetes would refuse are refused here, before anything is
    // written.
    let bad = work.path().join("bad");
    let refused = cli(&pki_init(&bad, &["--secret", "Menshen_PKI"]));
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(!bad.exists());
}

/// Rotating the client CA: clients get a certificate of the new CA at their
/// next bootstrap while `<ca>` and its fingerprint stay; the gateway's
/// Secret, made with `--client-ca` twice, trusts certificates of both CAs,
/// and with the new one alone, no longer the old CA's.
#[tokio::test]
async fn the_client_ca_is_rotated_while_gateways_trust_both() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = (work.path().join("old"), work.path().join("new"));
    for dir in [&old, &new] {
        cli_ok(&pki_init(dir, &[]));
    }
    let provider_ca = old.join("provider-ca.crt");
    let Served {
        cert: old_cert,
        ca: old_ca,
        pin: old_pin,
        ..
    } = serve(&old, &provider_ca, false).await;
    let Served {
        cert: new_cert,
        ca: new_ca,
        pin: new_pin,
        ..
    } = serve(&new, &provider_ca, false).await;
    assert_eq!(
        (&old_ca, &old_pin),
        (&new_ca, &new_pin),
        "what clients pin stays"
    );
    assert_eq!(old_ca, std::fs::read_to_string(&provider_ca).unwrap());

    let secret = |client_cas: &[&Path]| {
        let out = succeeded(gateway_cert(&old, client_cas));
        let manifest = text(&out.stdout);
        let field = |name: &str| {
            let line = manifest
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
                .unwrap_or_else(|| panic!("no {name} in {manifest}"));
            text(
                &base64::engine::general_purpose::STANDARD
                    .decode(line)
                    .unwrap(),
            )
        };
        (field("ca.crt"), field("tls.crt"))
    };
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &str| {
        let path = files.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (old_client, new_client) = (write("old.crt", &old_cert), write("new.crt", &new_cert));
    let verifies = |ca: &str, cert: &str, purpose: &str| {
        openssl(&["verify", "-purpose", purpose, "-CAfile", ca, cert])
            .status
            .success()
    };

    // The overlap: both CAs in ca.crt, which OpenVPN's `ca` reads.
    let (both, server_cert) = secret(&[&old.join("ca.crt"), &new.join("ca.crt")]);
    let both = write("both.crt", &both);
    assert!(
        verifies(&both, &old_client, "sslclient"),
        "the old CA's client"
    );
    assert!(
        verifies(&both, &new_client, "sslclient"),
        "the new CA's client"
    );
    // Each CA alone takes only its own clients: the overlap is needed.
    let old_only = old.join("ca.crt").to_str().unwrap().to_owned();
    assert!(!verifies(&old_only, &new_client, "sslclient"));
    // Clients check the gateway against `<ca>`, unchanged.
    let served_ca = write("served-ca.crt", &new_ca);
    let server_cert = write("server.crt", &server_cert);
    assert!(verifies(&served_ca, &server_cert, "sslserver"));

    // After the old certificates' lifetime: the new CA alone.
    let (after, _) = secret(&[&new.join("ca.crt")]);
    let after = write("after.crt", &after);
    assert!(verifies(&after, &new_client, "sslclient"));
    assert!(
        !verifies(&after, &old_client, "sslclient"),
        "the old CA's clients are out"
    );

    // A file that is not a certificate is refused, naming the flag.
    let junk = write("junk.crt", "not a certificate\n");
    let out = gateway_cert(&old, &[Path::new(&junk)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--client-ca"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}
