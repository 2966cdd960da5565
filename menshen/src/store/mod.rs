//! The database: Postgres in production, an embedded SQLite file by default.
//!
//! Both engines sit behind [`Store`] and run the same SQL text (placeholders
//! are written `$1`, `$2`, ... in order of first use, which both accept).
//! Every write is one transaction and ends with a change notification, so
//! that every replica rebuilds its client snapshot.

mod error;
mod rows;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::watch;

pub use rows::{
    AdminRevocations, CountryCodes, Inventory, InviteEntry, LocationRow, Origin, OverrideRow,
    ProbeRow, ProbeState, ProviderRows, ResourceKind, ResourceRow, ServiceSettings,
};

/// The Postgres channel on which writers announce inventory changes.
pub(crate) const CHANGE_CHANNEL: &str = "menshen_inventory";

/// Runs `$body` with `$pool` bound to whichever pool the store has. The body
/// is compiled once per engine, so the same query text serves both.
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// Commits a write transaction, telling every replica that the inventory
/// changed. On Postgres the notification is delivered only if the
/// transaction commits.
macro_rules! commit_and_announce {
    ($store:expr, $tx:ident) => {{
        if $store.is_postgres() {
            // Signed with this process's id, so that its own listener can
            // tell its own changes (already announced locally) from others'.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind($crate::store::CHANGE_CHANNEL)
                .bind(&*$store.id)
                .execute(&mut *$tx)
                .await?;
        }
        $tx.commit().await?;
        $store.announce_local_change();
    }};
}

/// Writes one audit row in transaction `$tx` (see [`AuditEntry`]).
macro_rules! audit {
    ($tx:ident, $entry:expr) => {{
        let entry: &$crate::store::AuditEntry = $entry;
        sqlx::query(
            "INSERT INTO audit_log (at_millis, actor, action, target, before, after) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(entry.at_millis)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(entry.before.as_ref().map(|v| v.to_string()))
        .bind(entry.after.as_ref().map(|v| v.to_string()))
        .execute(&mut *$tx)
        .await?;
    }};
}

mod admin;
mod admin_tokens;
mod agents;
mod health;
mod inventory;
mod invites;
mod probes;
mod provider_file;

pub use admin::{AuditEntry, AuditRow};
pub use admin_tokens::{AdminTokenRow, NewAdminToken, valid_jti};
pub use agents::{AgentPush, AgentRow, Pushed};
pub use error::StoreError;
pub use health::{
    HEALTH_CHECK_INTERVAL, Outage, Outages, PING_TIMEOUT, StoreHealth, is_unavailable,
};
pub use invites::{InviteRow, InviteSelection, NewInvite};

/// Default of how long a request waits for a database connection.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Clone)]
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the inventory database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    changes: Arc<watch::Sender<u64>>,
    health: Arc<StoreHealth>,
    /// Names this process in its change notifications.
    id: Arc<str>,
}

/// Which engine a database URL selects, with secrets kept out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub enum Engine {
    Postgres(String),
    Sqlite(std::path::PathBuf),
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Postgres(url) => write!(f, "Postgres({})", redact_url(url)),
            Engine::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
        }
    }
}

impl Engine {
    /// Postgres for a `postgres://` or `postgresql://` URL; SQLite for a
    /// `sqlite:` URL; otherwise the default SQLite file in `data_dir`.
    pub fn select(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Engine> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Engine::Postgres(url.to_owned()))
            }
            Some(url) if url.starts_with("sqlite:") => {
                let path = url
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                Ok(Engine::Sqlite(path.into()))
            }
            Some(url) => anyhow::bail!(
                "database URL {} is neither postgres:// nor sqlite:",
                redact_url(url)
            ),
            None => Ok(Engine::Sqlite(data_dir.join("menshen.sqlite"))),
        }
    }

    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// A URL without its password, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    format!("{}://{user}:***@{}", &url[..scheme_end], &url[at + 1..])
                }
                // No password to hide.
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A database error in one sentence: the server's message without the
/// source line Postgres adds, and without repeating itself.
pub fn plain(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        other => other.to_string(),
    }
}

/// Why a SQLite file cannot be opened, naming what to check.
fn sqlite_open_error(path: &Path, err: &sqlx::Error) -> anyhow::Error {
    let folder = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let probe = folder.join(".menshen-write-test");
    let writable = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
    match writable {
        Err(io) if io.kind() == std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot open SQLite file {}: the data folder {} is not writable by this user \
             (uid {}); give it to that user or choose another --data-dir",
            path.display(),
            folder.display(),
            current_uid()
        ),
        _ => anyhow::anyhow!("cannot open SQLite file {}: {}", path.display(), plain(err)),
    }
}

fn current_uid() -> u32 {
    // Linux says it in /proc; elsewhere it is left unknown.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        })
        .and_then(|uid| uid.parse().ok())
        .unwrap_or(u32::MAX)
}

impl Store {
    /// Connects and applies the embedded migrations. Safe when several
    /// replicas start at once: Postgres migrations run under an advisory lock.
    pub async fn connect(engine: &Engine) -> anyhow::Result<Store> {
        Self::connect_with_timeout(engine, DEFAULT_STORE_TIMEOUT).await
    }

    /// [`Store::connect`], with requests waiting at most `timeout` for a
    /// Postgres connection (so that they fail fast while the database is
    /// unreachable).
    pub async fn connect_with_timeout(engine: &Engine, timeout: Duration) -> anyhow::Result<Store> {
        let db = match engine {
            Engine::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)
                    .with_context(|| format!("invalid database URL {}", redact_url(url)))?
                    .application_name("menshen");
                // One connection first, so that a refused or refusing
                // server is said at once and plainly; the pool would retry
                // until its timeout and only say that it timed out.
                let cannot = |err: sqlx::Error| {
                    anyhow::anyhow!("cannot connect to {}: {}", redact_url(url), plain(&err))
                };
                use sqlx::Connection as _;
                sqlx::PgConnection::connect_with(&options)
                    .await
                    .map_err(cannot)?
                    .close()
                    .await
                    .map_err(cannot)?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(timeout)
                    .connect_with(options)
                    .await
                    .map_err(cannot)?;
                sqlx::migrate!("../migrations/postgres")
                    .run(&pool)
                    .await
                    .context("applying Postgres migrations")?;
                Db::Postgres(pool)
            }
            Engine::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating data folder {}", dir.display()))?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await
                    .map_err(|err| sqlite_open_error(path, &err))?;
                sqlx::migrate!("../migrations/sqlite")
                    .run(&pool)
                    .await
                    .context("applying SQLite migrations")?;
                Db::Sqlite(pool)
            }
        };
        let (changes, _) = watch::channel(0);
        Ok(Store {
            db,
            changes: Arc::new(changes),
            health: Arc::default(),
            id: crate::auth::random_id(8).into(),
        })
    }

    pub fn engine_name(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// A receiver that sees a new value whenever the inventory may have
    /// changed, through this process or (on Postgres) any other replica.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// How many changes were announced so far (see [`Store::subscribe`]).
    pub fn change_count(&self) -> u64 {
        *self.changes.borrow()
    }

    fn announce_local_change(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Forwards other replicas' change notifications into [`Store::subscribe`]
    /// until `shutdown` fires. Does nothing on SQLite, which has one writer
    /// process. After a lost connection it announces a change, because
    /// notifications sent meanwhile are gone.
    pub async fn listen_for_changes(&self, mut shutdown: watch::Receiver<bool>) {
        let Db::Postgres(pool) = &self.db else {
            return;
        };
        loop {
            let mut listener = match PgListener::connect_with(pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    self.health.failed(&err);
                    tracing::warn!(error = %err, "cannot listen for inventory changes; retrying");
                    if sleep_or_shutdown(Duration::from_secs(2), &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if let Err(err) = listener.listen(CHANGE_CHANNEL).await {
                self.health.failed(&err);
                tracing::warn!(error = %err, "LISTEN failed; retrying");
                if sleep_or_shutdown(Duration::from_secs(2), &mut shutdown).await {
                    return;
                }
                continue;
            }
            self.health.succeeded();
            // Changes made before LISTEN took effect are caught by this reload.
            self.announce_local_change();
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    received = listener.try_recv() => match received {
                        // Our own were announced when they were committed.
                        Ok(Some(n)) if n.payload() == &*self.id => {}
                        Ok(Some(_)) => self.announce_local_change(),
                        Ok(None) => {
                            tracing::info!("inventory listener reconnected");
                            self.announce_local_change();
                        }
                        Err(err) => {
                            self.health.failed(&err);
                            tracing::warn!(error = %err, "inventory listener failed; reconnecting");
                            break;
                        }
                    }
                }
            }
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that concurrent writers wait instead of failing
    /// when a read turns into a write.
    async fn begin_write<'c, DB: sqlx::Database>(
        &self,
        pool: &'c sqlx::Pool<DB>,
    ) -> sqlx::Result<sqlx::Transaction<'c, DB>> {
        if self.is_postgres() {
            pool.begin().await
        } else {
            pool.begin_with("BEGIN IMMEDIATE").await
        }
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        with_pool!(&self.db, |pool| pool.close().await)
    }
}

async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = shutdown.changed() => true,
    }
}

/// The columns of `resources`, in the order [`bind_resource`] binds them
/// (followed by `origin` and `agent`).
const RESOURCE_COLUMNS: &str = "kind, host, ip_addr, ip6_addr, location, port, transport, type, load, overloaded, \
     healthy, experimental, bucket, auth, options, last_seen_millis, origin, agent";

/// The columns of `locations`, in the order [`bind_location`] binds them
/// (followed by `origin`).
const LOCATION_COLUMNS: &str =
    "label, display_name, country_code, lat, lon, timezone, hemisphere, region, origin";

/// A query of either engine.
type AnyQuery<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

/// Binds a location row's columns `label` to `region`, in the order of
/// [`LOCATION_COLUMNS`]; the caller binds `origin`.
fn bind_location<'q, DB: sqlx::Database>(
    query: AnyQuery<'q, DB>,
    l: &'q LocationRow,
) -> AnyQuery<'q, DB>
where
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<i64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<f64>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query
        .bind(l.label.as_str())
        .bind(l.display_name.as_str())
        .bind(l.country_code.as_str())
        .bind(l.lat)
        .bind(l.lon)
        .bind(l.timezone)
        .bind(l.hemisphere.as_str())
        .bind(l.region.as_str())
}

/// Binds a resource row's columns `kind` to `last_seen_millis`, in the
/// order of [`RESOURCE_COLUMNS`]; the caller binds `origin` and `agent`.
fn bind_resource<'q, DB: sqlx::Database>(
    query: AnyQuery<'q, DB>,
    r: &ResourceRow,
) -> AnyQuery<'q, DB>
where
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> f64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> bool: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    query
        .bind(r.kind.as_str())
        .bind(r.host.as_str())
        .bind(r.ip_addr.as_str())
        .bind(r.ip6_addr.as_str())
        .bind(r.location.as_str())
        .bind(r.port)
        .bind(r.transport.as_str())
        .bind(r.kind_type.as_str())
        .bind(r.load)
        .bind(r.overloaded)
        .bind(r.healthy)
        .bind(r.experimental)
        .bind(r.bucket.as_str())
        .bind(r.auth.as_str())
        .bind(r.options.as_str())
        .bind(r.last_seen_millis)
}

/// Unix time in milliseconds.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
