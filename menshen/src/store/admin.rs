//! Operators' changes: locations, hand-defined resources, overrides and
//! settings. Each is one transaction that also writes its audit row.

use serde::Serialize;
use serde_json::Value;

use super::{
    Db, LOCATION_COLUMNS, LocationRow, Origin, OverrideRow, RESOURCE_COLUMNS, ResourceKind,
    ResourceRow, Store, StoreError, bind_location, bind_resource,
};

/// One change, as the audit log keeps it.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at_millis: i64,
    /// Who: the subject of the operator's token, or `cli`.
    pub actor: String,
    /// What, e.g. `location.create`.
    pub action: String,
    /// On what, e.g. `location/paris`.
    pub target: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

impl AuditEntry {
    pub fn new(actor: &str, action: &str, target: impl Into<String>, at_millis: i64) -> Self {
        AuditEntry {
            at_millis,
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.into(),
            before: None,
            after: None,
        }
    }

    pub fn before(mut self, value: impl Serialize) -> Self {
        self.before = serde_json::to_value(value).ok();
        self
    }

    pub fn after(mut self, value: impl Serialize) -> Self {
        self.after = serde_json::to_value(value).ok();
        self
    }
}

/// An audit row as read back.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditRow {
    pub id: i64,
    /// Unix milliseconds.
    pub at_millis: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The state before the change (JSON), if there was one.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The state after the change (JSON), if there is one.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
}

type RawAudit = (
    i64,
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

/// Why an operator may not delete a resource of this origin, if not.
fn owned_elsewhere(row: &ResourceRow) -> Option<String> {
    if row.origin == Origin::Config.as_str() {
        Some(format!(
            "{} {:?} is defined in the provider file; remove it there",
            row.kind.as_str(),
            row.host
        ))
    } else if row.origin == Origin::Agent.as_str() {
        Some(format!(
            "{} {:?} is reported by agent {:?}; revoke the agent or let it stop reporting it",
            row.kind.as_str(),
            row.host,
            row.agent.as_deref().unwrap_or("")
        ))
    } else {
        None
    }
}

impl Store {
    /// Creates a location; its label must be new, ignoring case.
    pub async fn create_location(
        &self,
        loc: &LocationRow,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let existing: Option<(String,)> =
                sqlx::query_as("SELECT label FROM locations WHERE lower(label) = lower($1)")
                    .bind(&loc.label)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some((label,)) = existing {
                return Err(StoreError::Conflict(format!(
                    "location {label:?} already exists"
                )));
            }
            let insert = format!(
                "INSERT INTO locations ({LOCATION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            );
            bind_location(sqlx::query(sqlx::AssertSqlSafe(insert)), loc)
                .bind(Origin::Admin.as_str())
                .execute(&mut *tx)
                .await?;
            audit!(tx, &audit.after(loc));
            commit_and_announce!(self, tx);
        });
        Ok(())
    }

    /// Replaces location `loc.label`, unless the provider file defines it;
    /// returns it as it was.
    pub async fn update_location(
        &self,
        loc: &LocationRow,
        audit: AuditEntry,
    ) -> Result<LocationRow, StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let before: Option<LocationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {LOCATION_COLUMNS} FROM locations WHERE label = $1"
            )))
            .bind(&loc.label)
            .fetch_optional(&mut *tx)
            .await?;
            let before = before
                .ok_or_else(|| StoreError::NotFound(format!("no location {:?}", loc.label)))?;
            if before.origin == Origin::Config.as_str() {
                return Err(StoreError::Conflict(format!(
                    "location {:?} is defined in the provider file; change it there",
                    loc.label
                )));
            }
            let update = "UPDATE locations SET display_name = $2, country_code = $3, lat = $4, lon = $5, \
                 timezone = $6, hemisphere = $7, region = $8 WHERE label = $1";
            bind_location(sqlx::query(update), loc)
                .execute(&mut *tx)
                .await?;
            audit!(tx, &audit.before(&before).after(loc));
            commit_and_announce!(self, tx);
            Ok(before)
        })
    }

    /// Deletes a location, unless the provider file defines it or a gateway
    /// or bridge uses it.
    pub async fn delete_location(&self, label: &str, audit: AuditEntry) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let before: Option<LocationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {LOCATION_COLUMNS} FROM locations WHERE label = $1"
            )))
            .bind(label)
            .fetch_optional(&mut *tx)
            .await?;
            let before =
                before.ok_or_else(|| StoreError::NotFound(format!("no location {label:?}")))?;
            if before.origin == Origin::Config.as_str() {
                return Err(StoreError::Conflict(format!(
                    "location {label:?} is defined in the provider file; remove it there"
                )));
            }
            let used: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM resources WHERE location = $1")
                .bind(label)
                .fetch_one(&mut *tx)
                .await?;
            if used.0 > 0 {
                return Err(StoreError::Conflict(format!(
                    "location {label:?} is used by {} gateway(s) or bridge(s)",
                    used.0
                )));
            }
            sqlx::query("DELETE FROM locations WHERE label = $1")
                .bind(label)
                .execute(&mut *tx)
                .await?;
            audit!(tx, &audit.before(&before));
            commit_and_announce!(self, tx);
        });
        Ok(())
    }

    /// Every location, by label.
    pub async fn list_locations(&self) -> Result<Vec<LocationRow>, StoreError> {
        Ok(with_pool!(&self.db, |pool| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {LOCATION_COLUMNS} FROM locations ORDER BY label"
            )))
            .fetch_all(pool)
            .await?
        }))
    }

    /// Creates a hand-defined resource (origin `admin`); its host must be
    /// new within its kind.
    pub async fn create_resource(
        &self,
        row: &ResourceRow,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let insert = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO resources ({RESOURCE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
                 ON CONFLICT (kind, host) DO NOTHING"
            )));
            let done = bind_resource(insert, row)
                .bind(Origin::Admin.as_str())
                .bind(None::<String>)
                .execute(&mut *tx)
                .await
                .map_err(|err| match err.as_database_error() {
                    Some(db) if db.is_foreign_key_violation() => StoreError::Invalid {
                        field: "location".into(),
                        message: format!("no location {:?}", row.location),
                    },
                    _ => StoreError::Database(err),
                })?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "{} {:?} already exists",
                    row.kind.as_str(),
                    row.host
                )));
            }
            audit!(tx, &audit.after(row));
            commit_and_announce!(self, tx);
        });
        Ok(())
    }

    /// One resource and its override.
    pub async fn resource(
        &self,
        kind: ResourceKind,
        host: &str,
    ) -> Result<(ResourceRow, OverrideRow), StoreError> {
        let (row, over): (Option<ResourceRow>, Option<OverrideRow>) = with_pool!(
            &self.db,
            |pool| {
                let row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND host = $2"
                )))
                .bind(kind.as_str())
                .bind(host)
                .fetch_optional(pool)
                .await?;
                let over = sqlx::query_as(
                    "SELECT kind, host, experimental, bucket, maintenance, blocked_in FROM resource_overrides \
                 WHERE kind = $1 AND host = $2",
                )
                .bind(kind.as_str())
                .bind(host)
                .fetch_optional(pool)
                .await?;
                (row, over)
            }
        );
        let row =
            row.ok_or_else(|| StoreError::NotFound(format!("no {} {host:?}", kind.as_str())))?;
        let over = over.unwrap_or(OverrideRow {
            kind,
            host: host.to_owned(),
            ..Default::default()
        });
        Ok((row, over))
    }

    /// Deletes a hand-defined resource and its override. Ones from the
    /// provider file or an agent are refused: they would come back.
    pub async fn delete_resource(
        &self,
        kind: ResourceKind,
        host: &str,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let before: Option<ResourceRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND host = $2"
            )))
            .bind(kind.as_str())
            .bind(host)
            .fetch_optional(&mut *tx)
            .await?;
            let before = before
                .ok_or_else(|| StoreError::NotFound(format!("no {} {host:?}", kind.as_str())))?;
            if let Some(why) = owned_elsewhere(&before) {
                return Err(StoreError::Conflict(why));
            }
            sqlx::query("DELETE FROM resources WHERE kind = $1 AND host = $2")
                .bind(kind.as_str())
                .bind(host)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM resource_overrides WHERE kind = $1 AND host = $2")
                .bind(kind.as_str())
                .bind(host)
                .execute(&mut *tx)
                .await?;
            audit!(tx, &audit.before(&before));
            commit_and_announce!(self, tx);
        });
        Ok(())
    }

    /// Replaces what operators set on a resource; returns what was set
    /// before.
    pub async fn set_override(
        &self,
        over: &OverrideRow,
        audit: AuditEntry,
    ) -> Result<OverrideRow, StoreError> {
        let kind = over.kind.as_str();
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let exists: Option<(String,)> =
                sqlx::query_as("SELECT host FROM resources WHERE kind = $1 AND host = $2")
                    .bind(kind)
                    .bind(&over.host)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound(format!("no {kind} {:?}", over.host)));
            }
            let before: Option<OverrideRow> = sqlx::query_as(
                "SELECT kind, host, experimental, bucket, maintenance, blocked_in FROM resource_overrides \
                 WHERE kind = $1 AND host = $2",
            )
            .bind(kind)
            .bind(&over.host)
            .fetch_optional(&mut *tx)
            .await?;
            let before = before.unwrap_or_else(|| OverrideRow {
                kind: over.kind,
                host: over.host.clone(),
                ..Default::default()
            });
            if over.is_empty() {
                sqlx::query("DELETE FROM resource_overrides WHERE kind = $1 AND host = $2")
                    .bind(kind)
                    .bind(&over.host)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO resource_overrides (kind, host, experimental, bucket, maintenance, blocked_in) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, host) DO UPDATE SET \
                     experimental = excluded.experimental, bucket = excluded.bucket, \
                     maintenance = excluded.maintenance, blocked_in = excluded.blocked_in",
                )
                .bind(kind)
                .bind(&over.host)
                .bind(over.experimental)
                .bind(&over.bucket)
                .bind(over.maintenance)
                .bind(over.blocked_in.to_column())
                .execute(&mut *tx)
                .await?;
            }
            audit!(tx, &audit.before(&before).after(over));
            commit_and_announce!(self, tx);
            Ok(before)
        })
    }

    /// The provider (`provider`) or service (`service`) settings as stored.
    pub async fn setting(&self, name: &str) -> Result<Option<Value>, StoreError> {
        let value: Option<(String,)> = with_pool!(&self.db, |pool| {
            sqlx::query_as("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(value.and_then(|(v,)| serde_json::from_str(&v).ok()))
    }

    /// Replaces setting `name` with `value` (JSON).
    pub async fn replace_setting(
        &self,
        name: &str,
        value: &Value,
        audit: AuditEntry,
        now: i64,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let before: Option<(String,)> =
                sqlx::query_as("SELECT value FROM settings WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            let before = before.and_then(|(v,)| serde_json::from_str(&v).ok());
            sqlx::query(
                "INSERT INTO settings (name, value, updated_millis) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_millis = excluded.updated_millis",
            )
            .bind(name)
            .bind(value.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let mut audit = audit.after(value);
            audit.before = before;
            audit!(tx, &audit);
            commit_and_announce!(self, tx);
        });
        Ok(())
    }

    /// Audit rows, newest first: at most `limit`, with ids below `before_id`.
    pub async fn list_audit(
        &self,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let rows: Vec<RawAudit> = with_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT id, at_millis, actor, action, target, before, after FROM audit_log \
                 WHERE id < $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let parse = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        Ok(rows
            .into_iter()
            .map(
                |(id, at_millis, actor, action, target, before, after)| AuditRow {
                    id,
                    at_millis,
                    actor,
                    action,
                    target,
                    before: parse(before),
                    after: parse(after),
                },
            )
            .collect())
    }
}
