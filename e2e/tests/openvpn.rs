//! Real OpenVPN 2.6 clients connect to a real OpenVPN server with nothing
//! but the configuration `menshen` served them.
//!
//! Needs `openvpn` and `openssl` (Debian packages of those names) and a TUN
//! device (`/dev/net/tun`, CAP_NET_ADMIN): missing any of them fails the
//! tests with a message saying so, never skips them.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use menshen_e2e::{Menshen, Process, binary};

fn require_real_peers() {
    for (tool, arg) in [("openvpn", "--version"), ("openssl", "version")] {
        if let Err(err) = Command::new(tool).arg(arg).output() {
            panic!(
                "`{tool}` cannot run ({err}): these tests need a real OpenVPN 2.6 and OpenSSL \
                 (Debian: apt-get install openvpn openssl)"
            );
        }
    }
    assert!(
        Path::new("/dev/net/tun").exists(),
        "these tests need a TUN device (/dev/net/tun) and CAP_NET_ADMIN for OpenVPN"
    );
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Runs `openssl` in `dir` and fails the test with its output if it fails.
fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A CA the way an operator makes one with OpenSSL: RSA, its key in the
/// traditional PKCS#1 form.
fn openssl_ca(dir: &Path) -> (PathBuf, PathBuf) {
    openssl(dir, &["genrsa", "-traditional", "-out", "ca.key", "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=e2e provider CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ca.crt",
        ],
    );
    (dir.join("ca.crt"), dir.join("ca.key"))
}

/// A gateway's server certificate (ECDSA P-256), signed by the given CA.
fn server_certificate(dir: &Path, ca_cert: &Path, ca_key: &Path) -> (PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "server.key",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "server.key",
            "-subj",
            "/CN=gateway",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let serial = format!(
        "0x{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    // -set_serial: -CAcreateserial would write a file beside the CA.
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            path_str(ca_cert),
            "-CAkey",
            path_str(ca_key),
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    (dir.join("server.crt"), dir.join("server.key"))
}

/// SHA-256 of the certificate's DER as OpenSSL computes it, in bare
/// lowercase hex.
fn openssl_fingerprint(dir: &Path, cert: &Path) -> String {
    let out = openssl(
        dir,
        &[
            "x509",
            "-in",
            path_str(cert),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    out.trim()
        .split('=')
        .nth(1)
        .expect("a fingerprint")
        .replace(':', "")
        .to_ascii_lowercase()
}

/// `openvpn` with its log (stdout) on the captured stderr.
fn openvpn(args: &[&str]) -> Process {
    let mut command = Command::new("sh");
    command
        .args(["-c", "exec openvpn \"$@\" 1>&2", "openvpn"])
        .args(args);
    Process::spawn(command)
}

/// A real OpenVPN server: UDP on 127.0.0.1, management interface on TCP.
struct Gateway {
    process: Process,
    port: u16,
    management: u16,
}

impl Gateway {
    /// Starts the server on UDP `port`, with certificate `cert` and key
    /// `key`, trusting client certificates signed by `ca`.
    fn start(port: u16, ca: &Path, cert: &Path, key: &Path, subnet: &str) -> Gateway {
        let management = free_tcp_port();
        let (port_arg, management_arg) = (port.to_string(), management.to_string());
        let mut process = openvpn(&[
            "--dev",
            "tun",
            "--topology",
            "subnet",
            "--server",
            subnet,
            "255.255.255.0",
            "--proto",
            "udp4",
            "--local",
            "127.0.0.1",
            "--port",
            &port_arg,
            "--ca",
            path_str(ca),
            "--cert",
            path_str(cert),
            "--key",
            path_str(key),
            "--dh",
            "none",
            // Every client is CN=UNLIMITED, as at LEAP providers.
            "--duplicate-cn",
            "--keepalive",
            "10",
            "60",
            "--management",
            "127.0.0.1",
            &management_arg,
            // The tunnel is not what is tested; leave the host's interfaces alone.
            "--ifconfig-noexec",
            "--verb",
            "3",
        ]);
        let started = process.wait_for_line(Duration::from_secs(30), |l| {
            l.contains("Initialization Sequence Completed")
        });
        assert!(
            started.is_some(),
            "the OpenVPN server did not start:\n{}",
            process.drain_log()
        );
        Gateway {
            process,
            port,
            management,
        }
    }

    /// Asks the management interface; returns the answer's lines.
    fn manage(&self, command: &str) -> Vec<String> {
        let stream = TcpStream::connect(("127.0.0.1", self.management)).expect("management");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // >INFO: greeting
        (&stream)
            .write_all(format!("{command}\n").as_bytes())
            .unwrap();
        let mut lines = Vec::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            let l = line.trim_end().to_owned();
            let last = l == "END" || l.starts_with("SUCCESS:") || l.starts_with("ERROR:");
            lines.push(l);
            if last {
                break;
            }
        }
        let _ = (&stream).write_all(b"quit\n");
        lines
    }

    /// The `CLIENT_LIST` rows of `status 3`.
    fn clients(&self) -> Vec<String> {
        self.manage("status 3")
            .into_iter()
            .filter(|l| l.starts_with("CLIENT_LIST\t"))
            .collect()
    }

    /// Waits until `n` clients are connected; fails with every log if not.
    fn wait_for_clients(&mut self, n: usize, clients: &mut [Process]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rows = self.clients();
            if rows.len() >= n {
                return rows;
            }
            if Instant::now() > deadline {
                let mut logs = format!("server:\n{}\n", self.process.drain_log());
                for (i, c) in clients.iter_mut().enumerate() {
                    logs.push_str(&format!("client {i}:\n{}\n", c.drain_log()));
                }
                panic!("{} of {n} clients connected\n{logs}", rows.len());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The example provider file with one gateway instead of its own: the
/// OpenVPN server at 127.0.0.1:`port`.
fn provider_file(dir: &Path, port: u16) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/menshen.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let head = &text[..text.find("[[gateway]]").expect("the example has gateways")];
    let path = dir.join("provider.toml");
    std::fs::write(
        &path,
        format!(
            "{head}[[gateway]]\nhost = \"gw.test\"\nip_addr = \"127.0.0.1\"\n\
             location = \"amsterdam\"\nport = {port}\ntransport = \"udp\"\n"
        ),
    )
    .unwrap();
    path
}

async fn fetch(url: &str) -> String {
    let response = reqwest::get(url).await.expect("request");
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

/// Fetches `/api/5/openvpn/config` from `menshen` into `dir/NAME.ovpn`.
async fn fetch_config(menshen: &Menshen, dir: &Path, name: &str) -> PathBuf {
    let config = fetch(&format!("{}/api/5/openvpn/config", menshen.url)).await;
    let path = dir.join(format!("{name}.ovpn"));
    std::fs::write(&path, config).unwrap();
    path
}

/// A real OpenVPN client with the served configuration as its only
/// configuration. The two extra flags keep the tunnel from changing the
/// host's interfaces and routes; they say nothing about the server or the
/// credentials.
fn client(config: &Path) -> Process {
    openvpn(&[
        "--config",
        path_str(config),
        "--ifconfig-noexec",
        "--route-nopull",
    ])
}

#[tokio::test]
async fn clients_of_every_key_type_connect_with_only_the_served_config() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, ca_key) = openssl_ca(dir.path());
    let (server_cert, server_key) = server_certificate(dir.path(), &ca_cert, &ca_key);
    let mut gateway = Gateway::start(
        free_udp_port(),
        &ca_cert,
        &server_cert,
        &server_key,
        "10.181.0.0",
    );
    let provider = provider_file(dir.path(), gateway.port);

    let mut clients = Vec::new();
    for key_type in ["ed25519", "ecdsa-p256", "rsa2048"] {
        let data = dir.path().join(key_type);
        let menshen = Menshen::start(&[
            "--data-dir",
            path_str(&data),
            "--config",
            path_str(&provider),
            "--ca-cert",
            path_str(&ca_cert),
            "--ca-key",
            path_str(&ca_key),
            "--client-key-type",
            key_type,
        ]);
        let provider_json: serde_json::Value =
            serde_json::from_str(&fetch(&format!("{}/provider.json", menshen.url)).await).unwrap();
        assert_eq!(
            provider_json["ca_cert_fingerprint"].as_str().unwrap(),
            openssl_fingerprint(dir.path(), &ca_cert)
        );
        let config = fetch_config(&menshen, dir.path(), key_type).await;
        drop(menshen);
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(
            text.contains(&format!("\nremote 127.0.0.1 {} udp\n", gateway.port)),
            "{text}"
        );
        clients.push(client(&config));
    }

    let rows = gateway.wait_for_clients(3, &mut clients);
    assert!(
        rows.iter()
            .all(|r| r.split('\t').nth(1) == Some("UNLIMITED")),
        "{rows:?}"
    );
}

#[tokio::test]
async fn the_generated_ca_works_with_real_openvpn() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The gateway's port must be known before menshen starts: take one now.
    let port = free_udp_port();
    let provider = provider_file(dir.path(), port);
    let mut menshen = Menshen::start(&[
        "--data-dir",
        path_str(&data),
        "--config",
        path_str(&provider),
    ]);
    let log = menshen.process.drain_log();
    assert!(log.contains("FOR TRYING MENSHEN OUT ONLY"), "{log}");

    // The gateway trusts the CA menshen made, read from its data folder.
    let ca_cert = data.join("pki/ca.crt");
    let (server_cert, server_key) =
        server_certificate(dir.path(), &ca_cert, &data.join("pki/ca.key"));
    let mut gateway = Gateway::start(port, &ca_cert, &server_cert, &server_key, "10.182.0.0");
    let config = fetch_config(&menshen, dir.path(), "generated").await;
    let mut clients = vec![client(&config)];
    gateway.wait_for_clients(1, &mut clients);
}

#[test]
fn a_ca_key_that_is_not_the_certificates_is_refused_at_start() {
    require_real_peers();
    let dir = tempfile::tempdir().unwrap();
    let (ca_cert, _) = openssl_ca(dir.path());
    openssl(dir.path(), &["genrsa", "-out", "other.key", "2048"]);
    let mut command = Command::new(binary("menshen"));
    command.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        path_str(&dir.path().join("data")),
        "--ca-cert",
        path_str(&ca_cert),
        "--ca-key",
        path_str(&dir.path().join("other.key")),
    ]);
    let mut process = Process::spawn(command);
    let status = process
        .wait_exit(Duration::from_secs(30))
        .expect("menshen exits");
    assert!(!status.success());
    let log = process.drain_log();
    assert!(
        log.contains("other.key") && log.contains("does not belong to the CA certificate"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}
