//! Admin tokens as far as revoking them needs: their id, subject, role and
//! lifetime (never the token), and the subjects revoked up to a moment.
//! Every replica reads the revocations into its snapshot, so that an admin
//! request is checked without a database round trip.

use super::{AuditEntry, Db, Store, StoreError};

/// A minted admin token, recorded.
#[derive(Debug, Clone)]
pub struct NewAdminToken {
    pub jti: String,
    pub subject: String,
    pub role: String,
    pub issued_millis: i64,
    pub expires_millis: i64,
}

/// An admin token as stored, for operators.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AdminTokenRow {
    pub jti: String,
    pub subject: String,
    pub role: String,
    pub issued_millis: i64,
    pub expires_millis: i64,
    pub revoked_millis: Option<i64>,
}

/// Whether `jti` has the shape of the ids menshen gives admin tokens: 32
/// lowercase hex digits.
pub fn valid_jti(jti: &str) -> bool {
    jti.len() == 32
        && jti
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Store {
    /// Records a minted admin token, with its audit row.
    pub async fn record_admin_token(
        &self,
        token: &NewAdminToken,
        audit: &AuditEntry,
    ) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query(
                "INSERT INTO admin_tokens (jti, subject, role, issued_millis, expires_millis) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&token.jti)
            .bind(&token.subject)
            .bind(&token.role)
            .bind(token.issued_millis)
            .bind(token.expires_millis)
            .execute(&mut *tx)
            .await?;
            audit!(tx, audit);
            // Nothing clients or the snapshot see changed.
            tx.commit().await?;
        });
        Ok(())
    }

    /// Revokes the admin token with id `jti`; every replica refuses it
    /// from its next reload (at once through LISTEN/NOTIFY on Postgres).
    pub async fn revoke_admin_token(
        &self,
        jti: &str,
        now: i64,
        audit: AuditEntry,
    ) -> Result<AdminTokenRow, StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            let row: Option<AdminTokenRow> = sqlx::query_as(
                "SELECT jti, subject, role, issued_millis, expires_millis, revoked_millis \
                 FROM admin_tokens WHERE jti = $1",
            )
            .bind(jti)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(mut row) = row else {
                return Err(StoreError::NotFound(format!(
                    "no admin token with id {:?} was minted here",
                    jti.to_owned()
                )));
            };
            if row.revoked_millis.is_some() {
                return Err(StoreError::Conflict(format!(
                    "admin token {:?} is already revoked",
                    jti.to_owned()
                )));
            }
            sqlx::query("UPDATE admin_tokens SET revoked_millis = $1 WHERE jti = $2")
                .bind(now)
                .bind(jti)
                .execute(&mut *tx)
                .await?;
            row.revoked_millis = Some(now);
            let audit = audit.after(&row);
            audit!(tx, &audit);
            commit_and_announce!(self, tx);
            Ok(row)
        })
    }

    /// Revokes every admin token of `subject` issued up to `now` (those
    /// recorded, and any other signed for it); tokens minted for it later
    /// work. Returns how many recorded, unexpired tokens it stopped.
    pub async fn revoke_admin_subject(
        &self,
        subject: &str,
        now: i64,
        audit: AuditEntry,
    ) -> Result<u64, StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            sqlx::query(
                "INSERT INTO admin_subject_revocations (subject, revoked_millis) VALUES ($1, $2) \
                 ON CONFLICT (subject) DO UPDATE SET revoked_millis = excluded.revoked_millis",
            )
            .bind(subject)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let done = sqlx::query(
                "UPDATE admin_tokens SET revoked_millis = $1 \
                 WHERE subject = $2 AND revoked_millis IS NULL AND expires_millis > $1",
            )
            .bind(now)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
            let count = done.rows_affected();
            let audit = audit.after(serde_json::json!({
                "subject": subject, "revoked_until_millis": now, "recorded_tokens_revoked": count,
            }));
            audit!(tx, &audit);
            commit_and_announce!(self, tx);
            Ok(count)
        })
    }

    /// Every recorded admin token, newest first.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminTokenRow>, StoreError> {
        with_pool!(&self.db, |pool| {
            sqlx::query_as(
                "SELECT jti, subject, role, issued_millis, expires_millis, revoked_millis \
                 FROM admin_tokens ORDER BY issued_millis DESC, jti",
            )
            .fetch_all(pool)
            .await
            .map_err(StoreError::from)
        })
    }
}
