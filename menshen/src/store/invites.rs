//! Invite tokens, as far as the store keeps them: an id, a hash of the
//! secret, the buckets they grant. Never the token.

use super::{AuditEntry, Db, InviteEntry, Store, StoreError};

/// An invite as stored, and as operators see it: never its token (its
/// hash is not shown either).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[schema(as = InviteView)]
pub struct InviteRow {
    pub id: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub buckets: Vec<String>,
    pub created_millis: i64,
    pub expires_millis: Option<i64>,
    /// When a client last showed it, as of the last flush of the replicas'
    /// in-memory records (every few seconds).
    pub last_used_millis: Option<i64>,
}

/// An invite to create.
#[derive(Debug, Clone)]
pub struct NewInvite {
    pub id: String,
    /// Hex SHA-256 of the token's secret.
    pub secret_hash: String,
    pub buckets: Vec<String>,
    pub expires_millis: Option<i64>,
}

/// Which invites to delete.
#[derive(Debug, Clone, Copy)]
pub enum InviteSelection<'a> {
    /// The one with this id.
    Id(&'a str),
    /// Every invite that grants this bucket (whatever else it grants).
    Bucket(&'a str),
    All,
}

fn parse_buckets(id: &str, text: &str) -> Option<Vec<String>> {
    match serde_json::from_str(text) {
        Ok(buckets) => Some(buckets),
        Err(err) => {
            tracing::warn!(invite = %id, error = %err, "invite with unreadable buckets; ignored");
            None
        }
    }
}

/// Rows of `SELECT id, secret_hash, buckets, expires_millis` as the
/// inventory takes them; an unreadable row is left out, not fatal.
pub(super) fn entries(rows: Vec<(String, String, String, Option<i64>)>) -> Vec<InviteEntry> {
    rows.into_iter()
        .filter_map(|(id, secret_hash, buckets, expires_millis)| {
            Some(InviteEntry {
                buckets: parse_buckets(&id, &buckets)?,
                id,
                secret_hash,
                expires_millis,
            })
        })
        .collect()
}

type ListedRow = (String, String, String, i64, Option<i64>, Option<i64>);

impl Store {
    /// Creates `invites`, all or none, writing `audit` in the same
    /// transaction.
    pub async fn create_invites(
        &self,
        invites: &[NewInvite],
        now: i64,
        audit: AuditEntry,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            for invite in invites {
                sqlx::query(
                    "INSERT INTO invites (id, secret_hash, buckets, created_millis, expires_millis) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&invite.id)
                .bind(&invite.secret_hash)
                .bind(serde_json::to_string(&invite.buckets)?)
                .bind(now)
                .bind(invite.expires_millis)
                .execute(&mut *tx)
                .await?;
            }
            audit!(tx, &audit);
            commit_and_announce!(self, tx);
        });
        Ok(())
    }

    /// Every invite, oldest first.
    pub async fn list_invites(&self) -> Result<Vec<InviteRow>, StoreError> {
        let rows: Vec<ListedRow> = with_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT id, secret_hash, buckets, created_millis, expires_millis, last_used_millis \
                 FROM invites ORDER BY created_millis, id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(id, secret_hash, buckets, created_millis, expires_millis, last_used_millis)| {
                    let buckets = serde_json::from_str(&buckets).map_err(|e| {
                        StoreError::Unreadable(format!("invite {id}: unreadable buckets: {e}"))
                    })?;
                    Ok(InviteRow {
                        id,
                        secret_hash,
                        buckets,
                        created_millis,
                        expires_millis,
                        last_used_millis,
                    })
                },
            )
            .collect()
    }

    /// Deletes the invites `which` selects and returns how many there were,
    /// writing `audit` in the same transaction when something was deleted
    /// (its `before` set to the invites deleted). Their tokens stop working
    /// as soon as the replicas' snapshots reload.
    pub async fn delete_invites(
        &self,
        which: InviteSelection<'_>,
        audit: AuditEntry,
    ) -> Result<u64, StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let ids: Vec<(String, String)> =
                sqlx::query_as("SELECT id, buckets FROM invites ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?;
            let deleted = match which {
                InviteSelection::Id(id) => sqlx::query("DELETE FROM invites WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                InviteSelection::All => sqlx::query("DELETE FROM invites")
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
                InviteSelection::Bucket(bucket) => {
                    // Buckets are a JSON array, read the same way on both engines.
                    let all: Vec<(String, String)> =
                        sqlx::query_as("SELECT id, buckets FROM invites")
                            .fetch_all(&mut *tx)
                            .await?;
                    let mut deleted = 0;
                    for (id, buckets) in all {
                        let grants = parse_buckets(&id, &buckets)
                            .is_some_and(|b| b.iter().any(|b| b == bucket));
                        if grants {
                            deleted += sqlx::query("DELETE FROM invites WHERE id = $1")
                                .bind(&id)
                                .execute(&mut *tx)
                                .await?
                                .rows_affected();
                        }
                    }
                    deleted
                }
            };
            if deleted > 0 {
                {
                    // What the selection matched, as it was.
                    let remaining: Vec<(String,)> = sqlx::query_as("SELECT id FROM invites")
                        .fetch_all(&mut *tx)
                        .await?;
                    let gone: Vec<serde_json::Value> = ids
                        .iter()
                        .filter(|(id, _)| !remaining.iter().any(|(r,)| r == id))
                        .map(|(id, buckets)| {
                            serde_json::json!({"id": id, "buckets": parse_buckets(id, buckets)})
                        })
                        .collect();
                    audit!(tx, &audit.before(gone));
                }
                commit_and_announce!(self, tx);
            } else {
                tx.commit().await?;
            }
            Ok(deleted)
        })
    }

    /// Notes when invites were last used: `(id, unix ms)`. Never moves a
    /// time backwards; ids that no longer exist are passed over. Clients'
    /// lists do not depend on it, so no change is announced.
    pub async fn record_invite_uses(&self, uses: &[(String, i64)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            for (id, at) in uses {
                sqlx::query(
                    "UPDATE invites SET last_used_millis = $1 \
                     WHERE id = $2 AND (last_used_millis IS NULL OR last_used_millis < $1)",
                )
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
