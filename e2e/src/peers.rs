//! Real peers for end-to-end tests: OpenSSL-made certificates, OpenVPN
//! servers and clients, obfs4proxy bridges.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::tools::run;
use crate::{KillOnDrop, Process};

pub fn require_real_peers() {
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

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// Runs `openssl` in `dir` and fails the test with its output if it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    run(Command::new("openssl").args(args).current_dir(dir))
}

/// A CA the way an operator makes one with OpenSSL: RSA, its key in the
/// traditional PKCS#1 form.
pub fn openssl_ca(dir: &Path) -> (PathBuf, PathBuf) {
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
pub fn server_certificate(dir: &Path, ca_cert: &Path, ca_key: &Path) -> (PathBuf, PathBuf) {
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
pub fn openssl_fingerprint(dir: &Path, cert: &Path) -> String {
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
pub fn openvpn(args: &[&str]) -> Process {
    let mut command = Command::new("sh");
    command
        .args(["-c", "exec openvpn \"$@\" 1>&2", "openvpn"])
        .args(args);
    Process::spawn(command)
}

/// A real OpenVPN server: UDP (or TCP) on 127.0.0.1, management interface
/// on TCP.
pub struct Gateway {
    pub process: Process,
    pub port: u16,
    pub management: u16,
}

impl Gateway {
    /// Starts the server on UDP `port` with a server certificate made in
    /// `dir` by the CA `ca_cert` (key `ca_key`), trusting client
    /// certificates that CA signs.
    pub fn start_signed_by(
        dir: &Path,
        port: u16,
        ca_cert: &Path,
        ca_key: &Path,
        subnet: &str,
    ) -> Gateway {
        Gateway::signed_by_on("udp4", dir, port, (ca_cert, ca_key), subnet)
    }

    /// [`Gateway::start_signed_by`] with OpenVPN's `--proto` `proto`
    /// (`udp4`, `tcp4-server`, ...).
    pub fn signed_by_on(
        proto: &str,
        dir: &Path,
        port: u16,
        (ca_cert, ca_key): (&Path, &Path),
        subnet: &str,
    ) -> Gateway {
        let (cert, key) = server_certificate(dir, ca_cert, ca_key);
        Gateway::start_on(proto, port, ca_cert, &cert, &key, subnet)
    }

    /// Starts the server on UDP `port`, with certificate `cert` and key
    /// `key`, trusting client certificates signed by `ca`.
    pub fn start(port: u16, ca: &Path, cert: &Path, key: &Path, subnet: &str) -> Gateway {
        Gateway::start_on("udp4", port, ca, cert, key, subnet)
    }

    /// [`Gateway::start`] with OpenVPN's `--proto` `proto`.
    fn start_on(
        proto: &str,
        port: u16,
        ca: &Path,
        cert: &Path,
        key: &Path,
        subnet: &str,
    ) -> Gateway {
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
            proto,
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
    pub fn manage(&self, command: &str) -> Vec<String> {
        manage(self.management, command).expect("management interface")
    }

    /// The `CLIENT_LIST` rows of `status 3`.
    pub fn clients(&self) -> Vec<String> {
        client_rows(self.management)
    }

    /// Waits until `n` clients are connected; fails with every log if not.
    pub fn wait_for_clients(&mut self, n: usize, clients: &mut [Process]) -> Vec<String> {
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

/// A real OpenVPN client with the served configuration as its only
/// configuration. The two extra flags keep the tunnel from changing the
/// host's interfaces and routes; they say nothing about the server or the
/// credentials.
pub fn client(config: &Path) -> Process {
    openvpn(&[
        "--config",
        path_str(config),
        "--ifconfig-noexec",
        "--route-nopull",
    ])
}

/// Starts obfs4proxy as Tor would (a managed transport) with its state in
/// `state` and the further `env`; returns it and its stdout, line by line.
fn obfs4proxy(state: &Path, env: &[(&str, String)]) -> (KillOnDrop, Receiver<String>) {
    let mut child = Command::new("obfs4proxy")
        .env("TOR_PT_MANAGED_TRANSPORT_VER", "1")
        .env("TOR_PT_STATE_LOCATION", state)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("obfs4proxy runs (Debian: apt-get install obfs4proxy)");
    // Keep reading stdout: obfs4proxy must never meet a closed pipe.
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (KillOnDrop(child), rx)
}

/// obfs4proxy in server mode, killed when dropped.
pub struct Obfs4Proxy {
    _child: KillOnDrop,
    /// The `cert` it announced.
    pub cert: String,
    /// The `iat-mode` it announced.
    pub iat_mode: String,
}

impl Obfs4Proxy {
    /// Runs obfs4proxy as Tor would (managed transport) on
    /// 127.0.0.1:`port`, its state in `state`, forwarding to `or_port`.
    pub fn start(state: &Path, port: u16, or_port: u16) -> Obfs4Proxy {
        let (child, rx) = obfs4proxy(
            state,
            &[
                ("TOR_PT_SERVER_TRANSPORTS", "obfs4".to_owned()),
                ("TOR_PT_SERVER_BINDADDR", format!("obfs4-127.0.0.1:{port}")),
                ("TOR_PT_ORPORT", format!("127.0.0.1:{or_port}")),
            ],
        );
        let mut announced = None;
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
            // SMETHOD obfs4 127.0.0.1:PORT ARGS:cert=...,iat-mode=N
            if let Some((_, args)) = line
                .strip_prefix("SMETHOD obfs4 ")
                .and_then(|l| l.split_once("ARGS:"))
            {
                let field = |key: &str| {
                    args.split(',')
                        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
                        .unwrap_or_default()
                        .to_owned()
                };
                announced = Some((field("cert"), field("iat-mode")));
            }
            if line == "SMETHODS DONE" || line.contains("ERROR") {
                break;
            }
        }
        let Some((cert, iat_mode)) = announced else {
            panic!("obfs4proxy announced no obfs4 method");
        };
        Obfs4Proxy {
            _child: child,
            cert,
            iat_mode,
        }
    }
}

/// Headless Chromium (Debian `chromium`), with the flags that keep it from
/// reaching out to the network, in a profile of its own.
fn chromium(args: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("tempdir");
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &profile_arg,
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs (Debian: apt-get install chromium)")
}

/// The DOM of `url` after its scripts ran for `budget_ms` of virtual time.
pub fn chromium_dom(url: &str, budget_ms: u32) -> String {
    let budget = format!("--virtual-time-budget={budget_ms}");
    let out = chromium(&[&budget, "--dump-dom", url]);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A PNG screenshot of `url` (1280x900) after `budget_ms` of virtual time.
pub fn chromium_screenshot(url: &str, budget_ms: u32, path: &Path) {
    let budget = format!("--virtual-time-budget={budget_ms}");
    let shot = format!("--screenshot={}", path.display());
    let out = chromium(&[&budget, "--window-size=1280,900", &shot, url]);
    assert!(
        out.status.success() && path.exists(),
        "chromium screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asks the OpenVPN management interface on 127.0.0.1:`port` one command;
/// returns the answer's lines (up to `END`, `SUCCESS:` or `ERROR:`).
pub fn manage(port: u16, command: &str) -> std::io::Result<Vec<String>> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?; // >INFO: greeting
    (&stream).write_all(format!("{command}\n").as_bytes())?;
    let mut lines = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let l = line.trim_end().to_owned();
        if l.starts_with('>') {
            continue;
        }
        let last = l == "END" || l.starts_with("SUCCESS:") || l.starts_with("ERROR:");
        lines.push(l);
        if last {
            break;
        }
    }
    let _ = (&stream).write_all(b"quit\n");
    Ok(lines)
}

/// The `CLIENT_LIST` rows of `status 3` of the server whose management
/// interface is on 127.0.0.1:`port` (none when it does not answer).
pub fn client_rows(port: u16) -> Vec<String> {
    manage(port, "status 3")
        .unwrap_or_default()
        .into_iter()
        .filter(|l| l.starts_with("CLIENT_LIST\t"))
        .collect()
}

/// obfs4proxy in client mode: a SOCKS5 proxy that reaches obfs4 bridges.
pub struct Obfs4Client {
    _child: KillOnDrop,
    _state: tempfile::TempDir,
    /// Where its SOCKS5 proxy listens.
    pub socks: std::net::SocketAddr,
}

impl Obfs4Client {
    pub fn start() -> Obfs4Client {
        let state = tempfile::tempdir().unwrap();
        let (child, rx) = obfs4proxy(
            state.path(),
            &[("TOR_PT_CLIENT_TRANSPORTS", "obfs4".to_owned())],
        );
        let mut socks = None;
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
            // CMETHOD obfs4 socks5 127.0.0.1:PORT
            if let Some(addr) = line.strip_prefix("CMETHOD obfs4 socks5 ") {
                socks = addr.trim().parse().ok();
            }
            if line == "CMETHODS DONE" || line.contains("ERROR") {
                break;
            }
        }
        let Some(socks) = socks else {
            panic!("obfs4proxy announced no obfs4 client method");
        };
        Obfs4Client {
            _child: child,
            _state: state,
            socks,
        }
    }

    /// An OpenVPN `socks-proxy` authfile carrying the bridge's arguments
    /// (`cert=…;iat-mode=N`) as obfs4proxy expects them: the username and
    /// password fields of SOCKS5 joined. They are split in two because
    /// OpenVPN cannot send the empty (single NUL) password that the
    /// pluggable-transport spec uses for short arguments.
    pub fn authfile(dir: &Path, cert: &str, iat_mode: &str) -> PathBuf {
        let args = format!("cert={cert};iat-mode={iat_mode}");
        let (user, pass) = args.split_at(args.len() - 1);
        let path = dir.join("socks-auth");
        std::fs::write(&path, format!("{user}\n{pass}\n")).unwrap();
        path
    }
}
