//! What many commands share: where the store is, the signing key, the
//! resource TTL, who is at the keyboard, and small value parsers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::exit::OrInvalid as _;
use crate::auth::{KeySource, SigningKey};
use crate::config::DEFAULT_RESOURCE_TTL;
use crate::store::{AuditEntry, Engine, Store};

/// Where the store is; shared by every command that opens it.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Postgres URL (postgres://...) for production; without it, an embedded
    /// SQLite file in --data-dir.
    #[arg(long, env = "MENSHEN_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// Folder for the SQLite file and generated material.
    #[arg(long, env = "MENSHEN_DATA_DIR", default_value = "./menshen-data")]
    pub data_dir: PathBuf,
}

impl StoreArgs {
    /// The engine --database-url names; another scheme is invalid input.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        Engine::select(self.database_url.as_deref(), &self.data_dir).or_invalid()
    }

    /// Connects, runs `work` and closes the store, whatever `work` returned.
    pub async fn with_store<T>(
        &self,
        work: impl AsyncFnOnce(&Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let store = Store::connect(&self.engine()?).await?;
        let result = work(&store).await;
        store.close().await;
        result
    }
}

/// `list` of agents, invites, admin tokens or locations: where, and how.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// The key tokens are signed with; every replica and the CLI must agree.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// File holding a signing key (base64 of at least 32 random bytes).
    /// Give it more than once to rotate: the first signs, every one
    /// verifies (MENSHEN_SIGNING_KEY_FILE: comma-separated). Without it (or
    /// MENSHEN_SIGNING_KEY), a key generated into --data-dir.
    #[arg(long, env = "MENSHEN_SIGNING_KEY_FILE", value_delimiter = ',')]
    signing_key_file: Vec<PathBuf>,
}

impl KeyArgs {
    pub fn source(&self) -> KeySource {
        KeySource {
            inline: std::env::var("MENSHEN_SIGNING_KEY")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            files: self.signing_key_file.clone(),
        }
    }

    /// The signing key: a key given that cannot be used is invalid input;
    /// one generated into (or read back from) `data_dir` that cannot be is
    /// a failure.
    pub fn load(&self, data_dir: &Path) -> anyhow::Result<SigningKey> {
        let source = self.source();
        let given = source.inline.is_some() || !source.files.is_empty();
        let key = SigningKey::load(&source, data_dir);
        if given { key.or_invalid() } else { key }
    }
}

/// How long an agent's resource stays live without a heartbeat; the
/// server's --resource-ttl, for the status column.
#[derive(Debug, Clone, Args)]
pub struct TtlArg {
    /// The server's --resource-ttl, to tell live from stale.
    #[arg(long, env = "MENSHEN_RESOURCE_TTL", value_parser = humantime::parse_duration,
          default_value = DEFAULT_RESOURCE_TTL)]
    resource_ttl: Duration,
}

impl TtlArg {
    pub fn millis(&self) -> i64 {
        self.resource_ttl.as_millis() as i64
    }
}

/// Who made a change from the command line, for the audit log.
pub fn cli_actor() -> String {
    match std::env::var("USER") {
        Ok(user) if !user.is_empty() => format!("cli:{user}"),
        _ => "cli".to_owned(),
    }
}

/// The audit entry of a change made from the command line at `now`.
pub fn audit(action: &str, target: impl Into<String>, now: i64) -> AuditEntry {
    AuditEntry::new(&cli_actor(), action, target, now)
}

/// A file named on the command line, as text; one that cannot be read is
/// invalid input.
pub fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| super::Invalid::err(format!("cannot read {}: {e}", path.display())))
}

/// A duration no shorter than `min`; `rule` says what it is for.
pub fn duration_at_least(text: &str, min: Duration, rule: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration such as 30m, 1h or 7d: {e}"))?;
    if duration < min {
        return Err(format!(
            "{text:?}: {rule} at least {}",
            humantime::format_duration(min)
        ));
    }
    Ok(duration)
}

/// A size like `64MiB`, `512KiB`, `1GiB` or a plain number of bytes.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 64MiB"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `KEY=VALUE`, e.g. a bridge's `--option cert=...`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 * 1024 * 1024));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 * 1024));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("1TiB").is_err());
    }
}
