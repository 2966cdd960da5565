//! Writing the provider file into the store.

use super::{
    Db, LOCATION_COLUMNS, Origin, ProviderRows, RESOURCE_COLUMNS, Store, StoreError, bind_location,
    bind_resource, now_millis,
};

impl Store {
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
}
