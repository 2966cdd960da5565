//! Agents, and the gateways and bridges they push.

use std::collections::HashMap;

use super::{
    AuditEntry, Db, RESOURCE_COLUMNS, ResourceKind, ResourceRow, Store, StoreError, bind_resource,
};

/// An agent as stored, and as operators see it (without its token id).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize, utoipa::ToSchema)]
#[schema(as = AgentView)]
pub struct AgentRow {
    pub name: String,
    #[serde(skip)]
    pub token_id: String,
    pub created_millis: i64,
    /// Set once revoked: its token no longer works.
    pub revoked_millis: Option<i64>,
}

/// What a push did.
#[derive(Debug)]
pub struct Pushed {
    /// Whether any resource was new.
    pub created: bool,
    /// Whether clients' lists may differ because of it (anything but the
    /// heartbeat time of resources that were already listed).
    pub changed: bool,
    /// The agent's resources of this kind, as stored now.
    pub stored: Vec<ResourceRow>,
}

/// Whether two rows differ in anything but their heartbeat time.
fn same_but_heartbeat(a: &ResourceRow, b: &ResourceRow) -> bool {
    let mut a = a.clone();
    a.last_seen_millis = b.last_seen_millis;
    a == *b
}

/// One agent's push of its whole set of one kind of resource.
#[derive(Debug, Clone, Copy)]
pub struct AgentPush<'a> {
    pub agent: &'a str,
    /// The id of the token the agent presented; a revoked or replaced token
    /// stores nothing.
    pub token_id: &'a str,
    pub kind: ResourceKind,
    pub rows: &'a [ResourceRow],
    /// The heartbeat time at or before which a resource is no longer listed
    /// (now minus the TTL).
    pub stale_before: i64,
    /// At most this many gateways and bridges, together, for the agent.
    pub max_resources: usize,
}

impl Store {
    /// Creates agent `name` with token id `token_id`, writing `audit` in
    /// the same transaction. A revoked agent may be created again; its old
    /// tokens stay invalid.
    pub async fn create_agent(
        &self,
        name: &str,
        token_id: &str,
        now: i64,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let existing: Option<(Option<i64>,)> =
                sqlx::query_as("SELECT revoked_millis FROM agents WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            match existing {
                Some((None,)) => {
                    return Err(StoreError::Conflict(format!(
                        "agent {name:?} already exists"
                    )));
                }
                Some((Some(_),)) => {
                    sqlx::query(
                        "UPDATE agents SET token_id = $1, created_millis = $2, revoked_millis = NULL WHERE name = $3",
                    )
                    .bind(token_id)
                    .bind(now)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO agents (name, token_id, created_millis) VALUES ($1, $2, $3)",
                    )
                    .bind(name)
                    .bind(token_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            audit!(tx, &audit);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Revokes agent `name`, writing `audit` in the same transaction: its
    /// tokens stop working and what it pushed leaves the lists at once.
    pub async fn revoke_agent(
        &self,
        name: &str,
        now: i64,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let done = sqlx::query(
                "UPDATE agents SET revoked_millis = $1 WHERE name = $2 AND revoked_millis IS NULL",
            )
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "no agent named {name:?} (or it is revoked)"
                )));
            }
            sqlx::query("DELETE FROM resources WHERE origin = 'agent' AND agent = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?;
            audit!(tx, &audit);
            commit_and_announce!(self, tx);
        });
        Ok(())
    }

    /// The token id for a new token of agent `name`: a new one (`keep`
    /// false: its old tokens stop working at once) or its current one (its
    /// old tokens keep working until they expire or their signing key is
    /// removed). Refused for an unknown or revoked agent.
    pub async fn reissue_agent(
        &self,
        name: &str,
        keep: bool,
        audit: AuditEntry,
    ) -> Result<String, StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let current: Option<(String,)> = sqlx::query_as(
                "SELECT token_id FROM agents WHERE name = $1 AND revoked_millis IS NULL",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((current,)) = current else {
                return Err(StoreError::NotFound(format!(
                    "no agent named {name:?} (or it is revoked)"
                )));
            };
            let token_id = if keep {
                current
            } else {
                let fresh = crate::auth::random_id(16);
                sqlx::query("UPDATE agents SET token_id = $1 WHERE name = $2")
                    .bind(&fresh)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                fresh
            };
            audit!(tx, &audit);
            tx.commit().await?;
            Ok(token_id)
        })
    }

    pub async fn list_agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        with_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT name, token_id, created_millis, revoked_millis FROM agents ORDER BY name",
            )
            .fetch_all(pool)
            .await
            .map_err(StoreError::from)
        })
    }

    /// Replaces the agent's resources of the push's kind with its rows: new
    /// hosts are created, known ones updated, the ones it no longer reports
    /// retired, all in one transaction. Hosts owned by anyone else are
    /// refused and nothing is written. Only a change that clients can see is
    /// announced to the replicas: a bare heartbeat of a listed resource is
    /// not, and reaches other replicas' snapshots with their periodic reload.
    ///
    /// The common case, a heartbeat that changes nothing but the time, is one
    /// read and one statement that also checks the token.
    #[tracing::instrument(name = "store.push", skip_all,
        fields(db.system.name = self.engine_name(), otel.kind = "client",
               kind = push.kind.as_str(), count = push.rows.len()))]
    pub async fn push_agent_resources(&self, push: &AgentPush<'_>) -> Result<Pushed, StoreError> {
        let select = format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND origin = 'agent' AND agent = $2"
        );
        let Some(now) = push.rows.first().map(|r| r.last_seen_millis) else {
            return self.push_in_transaction(push).await;
        };
        let heartbeat_only = with_pool!(&self.db, |pool| {
            let own: Vec<ResourceRow> = sqlx::query_as(sqlx::AssertSqlSafe(select))
                .bind(push.kind.as_str())
                .bind(push.agent)
                .fetch_all(pool)
                .await?;
            let unchanged = own.len() == push.rows.len()
                && push.rows.iter().all(|r| {
                    own.iter().any(|prev| {
                        prev.host == r.host
                            && prev.last_seen_millis > push.stale_before
                            && same_but_heartbeat(prev, r)
                    })
                });
            if unchanged {
                let done = sqlx::query(
                    "UPDATE resources SET last_seen_millis = $1 \
                     WHERE kind = $2 AND origin = 'agent' AND agent = $3 AND EXISTS \
                     (SELECT 1 FROM agents WHERE name = $3 AND token_id = $4 AND revoked_millis IS NULL)",
                )
                .bind(now)
                .bind(push.kind.as_str())
                .bind(push.agent)
                .bind(push.token_id)
                .execute(pool)
                .await?;
                done.rows_affected() == push.rows.len() as u64
            } else {
                false
            }
        });
        if heartbeat_only {
            return Ok(Pushed {
                created: false,
                changed: false,
                stored: sorted(push.rows),
            });
        }
        // Something changed, or the token or a concurrent push needs a closer look.
        self.push_in_transaction(push).await
    }

    /// The general case of [`Store::push_agent_resources`], in one transaction.
    async fn push_in_transaction(&self, push: &AgentPush<'_>) -> Result<Pushed, StoreError> {
        let AgentPush {
            agent,
            token_id,
            kind,
            rows,
            stale_before,
            max_resources,
        } = *push;
        let insert = format!(
            "INSERT INTO resources ({RESOURCE_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) \
             ON CONFLICT (kind, host) DO UPDATE SET ip_addr = excluded.ip_addr, \
             ip6_addr = excluded.ip6_addr, location = excluded.location, port = excluded.port, \
             transport = excluded.transport, type = excluded.type, load = excluded.load, \
             overloaded = excluded.overloaded, healthy = excluded.healthy, \
             experimental = excluded.experimental, bucket = excluded.bucket, auth = excluded.auth, \
             options = excluded.options, last_seen_millis = excluded.last_seen_millis \
             WHERE resources.origin = 'agent' AND resources.agent = excluded.agent"
        );
        let select = format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE kind = $1 AND origin = 'agent' AND agent = $2 ORDER BY host"
        );
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            // The agent's row is locked until the transaction ends, so that
            // pushes of one agent run one after the other and each reads
            // what the one before stored. (SQLite's `BEGIN IMMEDIATE`
            // already serialises every writer.)
            let lock = if self.is_postgres() {
                "SELECT token_id, revoked_millis FROM agents WHERE name = $1 FOR UPDATE"
            } else {
                "SELECT token_id, revoked_millis FROM agents WHERE name = $1"
            };
            let current: Option<(String, Option<i64>)> = sqlx::query_as(lock)
                .bind(agent)
                .fetch_optional(&mut *tx)
                .await?;
            match current {
                Some((id, None)) if id == token_id => {}
                _ => return Err(StoreError::NotAuthorized),
            }
            // The cap counts both kinds: what this push leaves of this one,
            // and what the agent has of the other.
            let (others,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM resources WHERE origin = 'agent' AND agent = $1 AND kind <> $2",
            )
            .bind(agent)
            .bind(kind.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let count = rows.len() + usize::try_from(others).unwrap_or(0);
            if count > max_resources {
                return Err(StoreError::TooMany {
                    kind,
                    count,
                    max: max_resources,
                });
            }
            let own: Vec<ResourceRow> = sqlx::query_as(sqlx::AssertSqlSafe(select))
                .bind(kind.as_str())
                .bind(agent)
                .fetch_all(&mut *tx)
                .await?;
            let own: HashMap<&str, &ResourceRow> =
                own.iter().map(|r| (r.host.as_str(), r)).collect();

            let mut created = false;
            let mut changed = false;
            for r in rows {
                match own.get(r.host.as_str()) {
                    Some(prev) => {
                        changed |=
                            !same_but_heartbeat(prev, r) || prev.last_seen_millis <= stale_before;
                        sqlx::query(
                            "UPDATE resources SET ip_addr = $1, ip6_addr = $2, location = $3, port = $4, \
                             transport = $5, type = $6, load = $7, overloaded = $8, healthy = $9, \
                             experimental = $10, bucket = $11, auth = $12, options = $13, last_seen_millis = $14 \
                             WHERE kind = $15 AND host = $16 AND agent = $17",
                        )
                        .bind(&r.ip_addr)
                        .bind(&r.ip6_addr)
                        .bind(&r.location)
                        .bind(r.port)
                        .bind(&r.transport)
                        .bind(&r.kind_type)
                        .bind(r.load)
                        .bind(r.overloaded)
                        .bind(r.healthy)
                        .bind(r.experimental)
                        .bind(&r.bucket)
                        .bind(&r.auth)
                        .bind(&r.options)
                        .bind(r.last_seen_millis)
                        .bind(kind.as_str())
                        .bind(&r.host)
                        .bind(agent)
                        .execute(&mut *tx)
                        .await
                        .map_err(location_error)?;
                    }
                    None => {
                        let done =
                            bind_resource(sqlx::query(sqlx::AssertSqlSafe(insert.clone())), r)
                                .bind("agent")
                                .bind(agent)
                                .execute(&mut *tx)
                                .await
                                .map_err(location_error)?;
                        // A host this agent already has is updated, never
                        // taken for someone else's: only another owner's
                        // row leaves nothing written.
                        if done.rows_affected() == 0 {
                            return Err(StoreError::HostTaken(r.host.clone()));
                        }
                        created = true;
                        changed = true;
                    }
                }
            }
            for host in own.keys() {
                if !rows.iter().any(|r| r.host == *host) {
                    sqlx::query(
                        "DELETE FROM resources WHERE kind = $1 AND host = $2 AND agent = $3",
                    )
                    .bind(kind.as_str())
                    .bind(*host)
                    .bind(agent)
                    .execute(&mut *tx)
                    .await?;
                    changed = true;
                }
            }
            if changed {
                commit_and_announce!(self, tx);
            } else {
                tx.commit().await?;
            }
            Ok(Pushed {
                created,
                changed,
                stored: sorted(rows),
            })
        })
    }
}

fn sorted(rows: &[ResourceRow]) -> Vec<ResourceRow> {
    let mut rows = rows.to_vec();
    rows.sort_by(|a, b| a.host.cmp(&b.host));
    rows
}

fn location_error(err: sqlx::Error) -> StoreError {
    match err.as_database_error() {
        Some(db) if db.is_foreign_key_violation() => {
            StoreError::invalid("location", "a location does not exist")
        }
        _ => StoreError::Database(err),
    }
}
