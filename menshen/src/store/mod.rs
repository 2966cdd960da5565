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
    AdminRevocations, Inventory, InviteEntry, LocationRow, Origin, OverrideRow, ProviderRows,
    ResourceKind, ResourceRow, ServiceSettings,
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
mod invites;

pub use admin::{AuditEntry, AuditRow};
pub use admin_tokens::{AdminTokenRow, NewAdminToken, valid_jti};
pub use agents::{AgentRow, Pushed};
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

    /// Reads the whole inventory, noting in [`Store::health`] whether the
    /// store answered.
    #[tracing::instrument(name = "store.load_inventory", skip_all,
        fields(db.system.name = self.engine_name(), otel.kind = "client"))]
    pub async fn load_inventory(&self) -> Result<Inventory, StoreError> {
        let loaded = self.read_inventory().await;
        match &loaded {
            Ok(_) => self.health.succeeded(),
            Err(err) => self.health.failed(&format_args!("{err:#}")),
        }
        loaded
    }

    async fn read_inventory(&self) -> Result<Inventory, StoreError> {
        with_pool!(&self.db, |pool| {
            // One read transaction so that the parts agree with each other.
            let mut tx = pool.begin().await?;
            let settings: Vec<(String, String)> =
                sqlx::query_as("SELECT name, value FROM settings")
                    .fetch_all(&mut *tx)
                    .await?;
            let locations: Vec<LocationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {LOCATION_COLUMNS} FROM locations ORDER BY label"
            )))
            .fetch_all(&mut *tx)
            .await?;
            let resources: Vec<ResourceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {RESOURCE_COLUMNS} FROM resources ORDER BY kind, host"
            )))
            .fetch_all(&mut *tx)
            .await?;
            let invite_rows: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
                "SELECT id, secret_hash, buckets, expires_millis FROM invites ORDER BY id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let overrides: Vec<OverrideRow> = sqlx::query_as(
                "SELECT kind, host, experimental, bucket, maintenance FROM resource_overrides ORDER BY kind, host",
            )
            .fetch_all(&mut *tx)
            .await?;
            // Expired tokens are refused anyway (a minute of leeway kept).
            let revoked_jtis: Vec<(String,)> = sqlx::query_as(
                "SELECT jti FROM admin_tokens WHERE revoked_millis IS NOT NULL AND expires_millis > $1",
            )
            .bind(now_millis() - 60_000)
            .fetch_all(&mut *tx)
            .await?;
            let revoked_subjects: Vec<(String, i64)> =
                sqlx::query_as("SELECT subject, revoked_millis FROM admin_subject_revocations")
                    .fetch_all(&mut *tx)
                    .await?;
            let admin_revocations = AdminRevocations {
                jtis: revoked_jtis.into_iter().map(|(jti,)| jti).collect(),
                subjects: revoked_subjects.into_iter().collect(),
            };
            tx.commit().await?;
            Inventory::from_rows(
                settings,
                locations,
                resources,
                invites::entries(invite_rows),
                overrides,
                admin_revocations,
            )
        })
    }

    /// Writes the provider file into the store: provider and service
    /// settings replaced, its locations and resources created or updated,
    /// and what an earlier version of the file defined but this one no longer
    /// does removed. Applying the same file twice changes nothing.
    pub async fn apply_provider_file(&self, file: &ProviderRows) -> Result<(), StoreError> {
        let now = now_millis();
        let provider = serde_json::to_string(&file.provider)?;
        let service = serde_json::to_string(&file.service)?;
        let ProviderRows {
            locations,
            resources,
            ..
        } = file;
        let config = Origin::Config.as_str();
        let upsert_location = format!(
            "INSERT INTO locations ({LOCATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (label) DO UPDATE SET display_name = excluded.display_name, \
             country_code = excluded.country_code, lat = excluded.lat, lon = excluded.lon, \
             timezone = excluded.timezone, hemisphere = excluded.hemisphere, region = excluded.region, \
             origin = excluded.origin"
        );
        let upsert_resource = format!(
            "INSERT INTO resources ({RESOURCE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (kind, host) DO UPDATE SET ip_addr = excluded.ip_addr, ip6_addr = excluded.ip6_addr, \
             location = excluded.location, port = excluded.port, transport = excluded.transport, \
             type = excluded.type, load = excluded.load, overloaded = excluded.overloaded, \
             healthy = excluded.healthy, experimental = excluded.experimental, bucket = excluded.bucket, \
             auth = excluded.auth, options = excluded.options, last_seen_millis = excluded.last_seen_millis, \
             origin = excluded.origin, agent = excluded.agent"
        );

        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            if self.is_postgres() {
                // Replicas starting together apply the same file one after another.
                sqlx::query("SELECT pg_advisory_xact_lock(7263540001)")
                    .execute(&mut *tx)
                    .await?;
            }
            for (name, value) in [("provider", &provider), ("service", &service)] {
                sqlx::query(
                    "INSERT INTO settings (name, value, updated_millis) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_millis = excluded.updated_millis \
                     WHERE settings.value <> excluded.value",
                )
                .bind(name)
                .bind(value)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }

            // Resources the file no longer defines go first, so that the
            // locations they used can go too.
            let existing: Vec<(String, String)> =
                sqlx::query_as("SELECT kind, host FROM resources WHERE origin = $1")
                    .bind(config)
                    .fetch_all(&mut *tx)
                    .await?;
            for (kind, host) in existing {
                if !resources
                    .iter()
                    .any(|r| r.kind.as_str() == kind && r.host == host)
                {
                    sqlx::query("DELETE FROM resources WHERE kind = $1 AND host = $2")
                        .bind(kind)
                        .bind(host)
                        .execute(&mut *tx)
                        .await?;
                }
            }

            for loc in locations {
                let query = sqlx::query(sqlx::AssertSqlSafe(upsert_location.clone()));
                bind_location(query, loc)
                    .bind(&loc.origin)
                    .execute(&mut *tx)
                    .await?;
            }

            for r in resources {
                let query = sqlx::query(sqlx::AssertSqlSafe(upsert_resource.clone()));
                bind_resource(query, r)
                    .bind(&r.origin)
                    .bind(&r.agent)
                    .execute(&mut *tx)
                    .await?;
            }

            // Locations the file dropped, unless something still uses them.
            let existing: Vec<(String,)> =
                sqlx::query_as("SELECT label FROM locations WHERE origin = $1")
                    .bind(config)
                    .fetch_all(&mut *tx)
                    .await?;
            for (label,) in existing {
                if locations.iter().any(|l| l.label == label) {
                    continue;
                }
                let used: (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM resources WHERE location = $1")
                        .bind(&label)
                        .fetch_one(&mut *tx)
                        .await?;
                if used.0 == 0 {
                    sqlx::query("DELETE FROM locations WHERE label = $1")
                        .bind(&label)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    tracing::warn!(location = %label, "location left the provider file but is still in use; kept");
                }
            }
            commit_and_announce!(self, tx);
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
