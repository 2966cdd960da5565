//! Test harness shared by menshen's integration tests and the end-to-end
//! tests in `tests/`: throwaway Postgres databases, and the real binaries
//! run as processes.
//!
//! Postgres: `MENSHEN_TEST_DATABASE_URL` names a server (any database on
//! it; default `postgres://postgres@127.0.0.1:5432/postgres`). Each test gets
//! a database of its own, dropped afterwards. When no server answers, the
//! Postgres half of a test is skipped with a note, unless
//! `MENSHEN_TEST_REQUIRE_POSTGRES=1` (as in CI), which makes it a failure.

pub mod chart;
pub mod clients;
pub mod http;
pub mod peers;
pub mod podman;
pub mod provider;
pub mod tools;
pub mod wait;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub use provider::ProviderFile;
pub use wait::{PATIENCE, eventually, eventually_blocking};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The Postgres server tests use, as an admin URL.
pub fn admin_url() -> String {
    std::env::var("MENSHEN_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

fn postgres_required() -> bool {
    std::env::var("MENSHEN_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// A URL like `admin` but naming database `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Allows or refuses new connections to database `name`, dropping the
/// existing ones when refusing: the database "goes away" for the
/// processes using it while the server stays up.
pub async fn set_connections_allowed(name: &str, allowed: bool) {
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} ALLOW_CONNECTIONS {allowed}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    if !allowed {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

/// Writes a GeoIP database with `records` (a JSON array of `network`,
/// `country`, `lat`, `lon`) in `layout` (`city` or `country`, see
/// `menshen/tests/fixtures/write-geoip.pl`, which needs Debian's
/// libmaxmind-db-writer-perl) into `dir`.
pub fn write_geoip(dir: &Path, layout: &str, records: &serde_json::Value) -> PathBuf {
    use std::io::Write as _;
    let script = tools::repo().join("menshen/tests/fixtures/write-geoip.pl");
    let out = dir.join(format!("{layout}.mmdb"));
    let mut child = Command::new("perl")
        .arg(&script)
        .arg(&out)
        .arg(layout)
        .stdin(Stdio::piped())
        .spawn()
        .expect("perl (Debian libmaxmind-db-writer-perl writes the test database)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(records.to_string().as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "writing the GeoIP database"
    );
    out
}

/// A Postgres database that exists for one test and is dropped after it.
pub struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// Creates a fresh database, or returns `None` when no Postgres server
    /// answers (and none is required).
    pub async fn create() -> Option<TestDatabase> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url();
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(err) => {
                if postgres_required() {
                    panic!(
                        "Postgres is required (MENSHEN_TEST_REQUIRE_POSTGRES=1) but does not answer: {err}"
                    );
                }
                eprintln!(
                    "note: Postgres not reachable ({err}); skipping the Postgres half of this test"
                );
                return None;
            }
        };
        let name = format!(
            "menshen_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        Some(TestDatabase {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime; do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            })
        })
        .join();
    }
}

/// Path of a binary of this workspace (`menshen`, `menshen-agent`), built
/// fresh: the first call of a test process runs `cargo build` for both
/// (with the profile and target folder the tests were built with), so a
/// binary left over from an older build is never the one tested. When they
/// are fresh that build only checks, in well under a second.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(build_binaries);
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing after the build",
        path.display()
    );
    path
}

/// Builds the workspace's binaries where the test executable's build put
/// its own (`target/<profile>/`, from `target/<profile>/deps/`) and
/// returns that folder.
fn build_binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .to_path_buf();
    let profile = match dir.file_name().and_then(|p| p.to_str()) {
        Some("debug") => "dev".to_owned(),
        Some(other) => other.to_owned(),
        None => panic!("no profile folder in {}", dir.display()),
    };
    let target = dir.parent().expect("target directory");
    // The `cargo` running these tests, when they run under cargo.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(tools::repo())
        .args([
            "build",
            "--quiet",
            "--bins",
            "-p",
            "menshen",
            "-p",
            "menshen-agent",
        ])
        .args(["--profile", &profile])
        .arg("--target-dir")
        .arg(target)
        .status()
        .expect("cargo runs");
    assert!(
        status.success(),
        "building menshen and menshen-agent failed"
    );
    dir
}

/// Runs the `menshen` CLI with `args` (its store named in them, not by the
/// environment, and its default log level): its output, whatever its exit.
pub fn menshen_output(args: &[&str]) -> std::process::Output {
    Command::new(binary("menshen"))
        .args(args)
        .env_remove("MENSHEN_DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("menshen runs")
}

/// [`menshen_output`], failing the test unless it succeeds; returns its
/// stdout.
pub fn menshen_cli(args: &[&str]) -> String {
    let out = menshen_output(args);
    assert!(
        out.status.success(),
        "menshen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `menshen serve --listen 127.0.0.1:0` with `args`, which must
/// refuse to start (exit, and fail, within 30 s); returns its log.
pub fn menshen_refusing_to_serve(args: &[&str]) -> String {
    let mut command = Command::new(binary("menshen"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args);
    let mut process = Process::spawn(command);
    let status = process
        .wait_exit(Duration::from_secs(30))
        .expect("menshen exits");
    assert!(!status.success());
    process.drain_log()
}

/// `menshen-agent --config config`, without the environment's URL and
/// token, so that the file says both.
pub fn agent_command(config: &Path) -> Command {
    let mut command = Command::new(binary("menshen-agent"));
    command
        .arg("--config")
        .arg(config)
        .env_remove("MENSHEN_AGENT_URL")
        .env_remove("MENSHEN_AGENT_TOKEN");
    command
}

/// Writes `token` to `dir/agent.token` and an agent configuration to
/// `dir/agent.toml`: `menshen_url`, that token file, then `rest` (the
/// intervals, `[host]` and the resources). Returns the configuration's
/// path.
pub fn write_agent_config(dir: &Path, menshen_url: &str, token: &str, rest: &str) -> PathBuf {
    let token_file = dir.join("agent.token");
    std::fs::write(&token_file, token).unwrap();
    let config = dir.join("agent.toml");
    let head = format!(
        "menshen_url = \"{menshen_url}\"\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    std::fs::write(&config, head + rest).unwrap();
    config
}

/// The lines of `reader`, read on a thread of its own for as long as they
/// are received.
pub fn lines_of(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// The hosts of a JSON list of gateways or bridges, sorted: most tests are
/// about what is listed; the order has tests of its own.
pub fn sorted_hosts(list: &serde_json::Value) -> Vec<String> {
    let mut hosts: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("a JSON array: {list}"))
        .iter()
        .map(|item| item["host"].as_str().expect("host is a string").to_owned())
        .collect();
    hosts.sort();
    hosts
}

/// A child process, killed (and waited for) when dropped.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running process of ours, killed when dropped; its stderr lines are
/// collected.
pub struct Process {
    child: KillOnDrop,
    lines: mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl Process {
    /// Starts `command` with stderr captured line by line.
    pub fn spawn(mut command: Command) -> Process {
        command.stdin(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn");
        let lines = lines_of(child.stderr.take().expect("stderr"));
        Process {
            child: KillOnDrop(child),
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a stderr line satisfying `pred`, up to `timeout`.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if pred(&line) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Everything logged so far.
    pub fn drain_log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(timeout)
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        wait::poll_blocking(timeout, || self.child.try_wait().ok().flatten())
    }
}

/// A `menshen serve` process on ports chosen by the system.
pub struct Menshen {
    pub process: Process,
    /// The data folder, when the caller did not pass `--data-dir`.
    pub data_dir: Option<tempfile::TempDir>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `http://127.0.0.1:PORT` of the metrics listener.
    pub metrics_url: String,
}

/// The `address` field of a JSON log line whose message is `message`.
fn logged_address(line: &str, message: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != message {
        return None;
    }
    Some(v.get("address")?.as_str()?.to_owned())
}

impl Menshen {
    /// Stops menshen with SIGTERM, which it must obey with a clean exit
    /// within 10 s; returns its log.
    pub fn stop(&mut self) -> String {
        let status = self
            .process
            .terminate(Duration::from_secs(10))
            .expect("menshen stops on SIGTERM");
        assert!(status.success(), "exit status {status}");
        self.process.drain_log()
    }

    /// Starts `menshen serve` with `args` (besides listeners and logging) and
    /// waits until it listens.
    pub fn start(args: &[&str]) -> Menshen {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Menshen {
        let mut command = Command::new(binary("menshen"));
        // Generated material (CA, signing key) goes to a folder of the
        // test's own unless it names one.
        let data_dir = if args.contains(&"--data-dir") {
            None
        } else {
            let dir = tempfile::tempdir().expect("tempdir");
            Some(dir)
        };
        command.args(["--log-format", "json", "serve"]);
        // Port 0 unless the caller needs a fixed address (e.g. to restart
        // on the same one).
        if !args.contains(&"--listen") {
            command.args(["--listen", "127.0.0.1:0"]);
        }
        command
            .args(["--metrics-listen", "127.0.0.1:0"])
            // The tests' gateways and bridges are at loopback and
            // documentation addresses.
            .arg("--allow-private-addresses")
            .args(args)
            .env_remove("MENSHEN_DATA_DIR");
        if let Some(dir) = &data_dir {
            command.arg("--data-dir").arg(dir.path());
        }
        command
            .env_remove("MENSHEN_DATABASE_URL")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            command.env(k, v);
        }
        let mut process = Process::spawn(command);
        let mut metrics = None;
        let mut api = None;
        process.wait_for_line(Duration::from_secs(60), |line| {
            if let Some(a) = logged_address(line, "metrics listening") {
                metrics = Some(a);
            }
            if let Some(a) = logged_address(line, "menshen listening") {
                api = Some(a);
            }
            api.is_some()
        });
        let (Some(api), Some(metrics)) = (api, metrics) else {
            panic!("menshen did not start:\n{}", process.drain_log());
        };
        Menshen {
            process,
            data_dir,
            url: format!("http://{api}"),
            metrics_url: format!("http://{metrics}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rewritten() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }

    #[test]
    fn listening_lines_are_parsed() {
        let line = r#"{"timestamp":"t","level":"INFO","message":"menshen listening","address":"127.0.0.1:4242","target":"menshen"}"#;
        assert_eq!(
            logged_address(line, "menshen listening").as_deref(),
            Some("127.0.0.1:4242")
        );
        assert_eq!(logged_address(line, "metrics listening"), None);
    }
}
