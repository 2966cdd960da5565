//! The prober's results: one row per gateway or bridge it checked.

use super::{Db, ProbeRow, Store, StoreError};

impl Store {
    /// Writes one round of the prober's results and removes those of
    /// resources that are gone, in one transaction. Only when `changed`
    /// (some resource's state is not what it was) is a change announced,
    /// so that replicas rebuild their snapshots for transitions, not for
    /// every check.
    pub async fn record_probes(&self, rows: &[ProbeRow], changed: bool) -> Result<(), StoreError> {
        with_pool!(&self.db, |pool| {
            let mut tx = self.begin_write(pool).await?;
            for p in rows {
                sqlx::query(
                    "INSERT INTO probe_results \
                     (kind, host, state, failures, checked_millis, changed_millis, detail) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (kind, host) DO UPDATE SET state = excluded.state, \
                     failures = excluded.failures, checked_millis = excluded.checked_millis, \
                     changed_millis = excluded.changed_millis, detail = excluded.detail",
                )
                .bind(p.kind.as_str())
                .bind(p.host.as_str())
                .bind(p.state.as_str())
                .bind(p.failures)
                .bind(p.checked_millis)
                .bind(p.changed_millis)
                .bind(p.detail.as_str())
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "DELETE FROM probe_results WHERE NOT EXISTS (SELECT 1 FROM resources r \
                 WHERE r.kind = probe_results.kind AND r.host = probe_results.host)",
            )
            .execute(&mut *tx)
            .await?;
            if changed {
                commit_and_announce!(self, tx);
            } else {
                tx.commit().await?;
            }
        });
        Ok(())
    }
}
