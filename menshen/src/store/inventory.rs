//! Reading the whole inventory clients are served from, in one read
//! transaction.

use super::{
    AdminRevocations, Db, Inventory, LOCATION_COLUMNS, LocationRow, OverrideRow, ProbeRow,
    RESOURCE_COLUMNS, ResourceRow, Store, StoreError, invites, now_millis,
};

impl Store {
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
                "SELECT kind, host, experimental, bucket, maintenance, blocked_in FROM resource_overrides ORDER BY kind, host",
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
            let probes: Vec<ProbeRow> = sqlx::query_as(
                "SELECT kind, host, state, failures, checked_millis, changed_millis, detail \
                 FROM probe_results ORDER BY kind, host",
            )
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Inventory::from_rows(
                settings,
                locations,
                resources,
                invites::entries(invite_rows),
                overrides,
                admin_revocations,
                probes,
            )
        })
    }
}
