//! Shared by the agent's tests: the real `menshen-agent` binary as a process,
//! free ports, configuration files, and a stand-in for menshen's agent API.

#![allow(dead_code)] // each test file uses a part of this

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};

pub const AGENT: &str = env!("CARGO_BIN_EXE_menshen-agent");

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `menshen-agent` with a clean environment and `args`.
pub fn agent_command(args: &[&str]) -> Command {
    let mut c = Command::new(AGENT);
    c.args(args)
        .env_remove("MENSHEN_AGENT_CONFIG")
        .env_remove("MENSHEN_AGENT_URL")
        .env_remove("MENSHEN_AGENT_TOKEN")
        .env_remove("MENSHEN_AGENT_TOKEN_FILE")
        .env_remove("MENSHEN_AGENT_LOG_FORMAT")
        .env("RUST_LOG", "debug");
    c
}

/// Runs `command` to its end; fails the test with its stderr unless it
/// succeeded.
pub fn succeeds(mut command: Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What `menshen-agent --once --dry-run` prints with `config`: the JSON it
/// would push.
pub fn dry_run(config: &Path) -> serde_json::Value {
    let out = succeeds(agent_command(&[
        "--config",
        config.to_str().unwrap(),
        "--once",
        "--dry-run",
    ]));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The agent's daemon with `config`, running until dropped.
pub fn daemon(config: &Path) -> Process {
    Process::spawn(agent_command(&["--config", config.to_str().unwrap()]))
}

/// Writes `text` as `menshen-agent.toml` in `dir`.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("menshen-agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A running process, killed when dropped; stderr is collected line by line.
pub struct Process {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// Collects stderr until the process closes it.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Process {
    pub fn spawn(mut command: Command) -> Process {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn");
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Process {
            child,
            lines,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits up to `timeout` for a stderr line containing `needle`.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            self.lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains(needle))
        })
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        // Everything it wrote is in the log once it has exited.
        if status.is_some()
            && let Some(reader) = self.reader.take()
        {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 20 ms for up to `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A request the stand-in received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

type Responder = dyn Fn(&Request, usize) -> (u16, String) + Send + Sync;

/// A stand-in for menshen's agent API: an HTTP/1.1 server on plain tokio
/// that records every request and answers what `respond` says (given the
/// request and its number, from 0).
///
/// It stands in for menshen only because menshen's agent endpoints are not
/// part of this branch yet; the OpenVPN and obfs4proxy the agent looks at
/// in the other tests are the real programs.
pub struct FakeMenshen {
    pub url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeMenshen {
    pub fn start(
        respond: impl Fn(&Request, usize) -> (u16, String) + Send + Sync + 'static,
    ) -> FakeMenshen {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&requests);
        let respond: Arc<Responder> = Arc::new(respond);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let recorded = Arc::clone(&recorded);
                    let respond = Arc::clone(&respond);
                    tokio::spawn(async move {
                        let _ = serve(stream, recorded, respond).await;
                    });
                }
            });
        });
        FakeMenshen {
            url: format!("http://{addr}"),
            requests,
        }
    }

    /// Answers every request with 200 and the body it received.
    pub fn echo() -> FakeMenshen {
        FakeMenshen::start(|req, _| (200, req.body.clone()))
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests came; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Request> {
        wait_until(timeout, || self.requests.lock().unwrap().len() >= n);
        let got = self.requests();
        assert!(
            got.len() >= n,
            "expected {n} requests within {timeout:?}, got {}: {got:#?}",
            got.len()
        );
        got
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    recorded: Arc<Mutex<Vec<Request>>>,
    respond: Arc<Responder>,
) -> std::io::Result<()> {
    let mut stream = TokioBufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("").to_owned();
        let path = parts.next().unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        let request = Request {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        };
        let n = {
            let mut all = recorded.lock().unwrap();
            all.push(request.clone());
            all.len() - 1
        };
        let (status, body) = respond(&request, n);
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.get_mut().write_all(response.as_bytes()).await?;
    }
}
