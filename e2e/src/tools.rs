//! External tools the chart and container tests need (helm,
//! kubernetes-validate, promtool, podman, ...): found through an
//! environment variable or on PATH. A missing one skips the test with a
//! note, unless `MENSHEN_TEST_REQUIRE_TOOLS=1` (as in CI) makes it a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The tool named by `env`, else `name` on PATH; `None` (with a note) when
/// it is missing and not required.
pub fn tool(env: &str, name: &str) -> Option<PathBuf> {
    let found = match std::env::var_os(env).filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(path.is_file(), "{env}={} does not exist", path.display());
            Some(path)
        }
        None => on_path(name),
    };
    if found.is_none() {
        if tools_required() {
            panic!(
                "{name} is required (MENSHEN_TEST_REQUIRE_TOOLS=1) but missing: set {env} or put it on PATH"
            );
        }
        eprintln!("note: {name} not found (set {env} or put it on PATH); skipping this test");
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
