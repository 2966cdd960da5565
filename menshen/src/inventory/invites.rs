//! Checking invite tokens against the snapshot, and remembering when they
//! were used, without touching the database on the client path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::Snapshot;
use crate::auth::invite::{self, SecretHash};
use crate::store::{InviteEntry, Store};

/// How often uses recorded in memory are written to the store.
pub const INVITE_USE_FLUSH_INTERVAL: Duration = Duration::from_secs(10);

/// An invite as a snapshot holds it.
#[derive(Debug)]
pub(super) struct Invite {
    hash: SecretHash,
    /// Sorted, without duplicates.
    buckets: Vec<String>,
    expires_millis: Option<i64>,
}

/// What an invite token is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant<'s> {
    /// A current invite: the buckets it grants (sorted, without
    /// duplicates), and its id.
    Accepted { id: &'s str, buckets: &'s [String] },
    /// Not a token, or one that is unknown, deleted or expired.
    Rejected,
}

/// The invites of `entries` by id. One whose stored hash is unreadable is
/// left out: no token could match it.
pub(super) fn index(entries: &[InviteEntry]) -> HashMap<String, Invite> {
    entries
        .iter()
        .filter_map(|e| {
            let Some(hash) = invite::parse_hash(&e.secret_hash) else {
                tracing::warn!(invite = %e.id, "invite with an unreadable hash; ignored");
                return None;
            };
            let mut buckets = e.buckets.clone();
            buckets.sort();
            buckets.dedup();
            let invite = Invite {
                hash,
                buckets,
                expires_millis: e.expires_millis,
            };
            Some((e.id.clone(), invite))
        })
        .collect()
}

/// Compared with when a token names no invite, so that an unknown id costs
/// the same work as a wrong secret.
const NO_HASH: SecretHash = [0; 32];

impl Snapshot {
    /// What `token` grants at `now` (unix ms).
    pub fn grant(&self, token: &str, now: i64) -> Grant<'_> {
        let Some((id, secret)) = invite::split(token) else {
            return Grant::Rejected;
        };
        let Some((id, found)) = self.invites.get_key_value(id) else {
            let _ = invite::secret_matches(secret, &NO_HASH);
            return Grant::Rejected;
        };
        let current = found.expires_millis.is_none_or(|at| at > now);
        if invite::secret_matches(secret, &found.hash) && current {
            Grant::Accepted {
                id,
                buckets: &found.buckets,
            }
        } else {
            Grant::Rejected
        }
    }
}

/// When invites were last used, kept in memory and written to the store now
/// and then: a client request never writes to the database.
#[derive(Debug, Default)]
pub struct InviteUses {
    pending: Mutex<HashMap<String, i64>>,
}

impl InviteUses {
    /// Notes that invite `id` was used at `now`.
    pub fn record(&self, id: &str, now: i64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(id) {
            Some(at) => *at = (*at).max(now),
            None => {
                pending.insert(id.to_owned(), now);
            }
        }
    }

    fn take(&self) -> Vec<(String, i64)> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.drain().collect()
    }

    /// Writes the uses noted so far to the store. On failure they are kept
    /// for the next attempt.
    pub async fn flush(&self, store: &Store) {
        let uses = self.take();
        if uses.is_empty() {
            return;
        }
        if let Err(err) = store.record_invite_uses(&uses).await {
            tracing::warn!(error = %err, "cannot record when invites were last used; will retry");
            for (id, at) in &uses {
                self.record(id, *at);
            }
        }
    }

    /// Flushes every `interval` until `shutdown` fires, and once more then.
    pub async fn run(
        self: Arc<Self>,
        store: Store,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(interval) => self.flush(&store).await,
            }
        }
        self.flush(&store).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Inventory;

    fn snapshot_with(entries: Vec<InviteEntry>) -> Snapshot {
        let inventory = Inventory {
            invites: entries,
            ..Default::default()
        };
        Snapshot::build(&inventory, 0, &Default::default())
    }

    fn entry(new: &invite::NewToken, buckets: &[&str], expires: Option<i64>) -> InviteEntry {
        InviteEntry {
            id: new.id.clone(),
            secret_hash: new.secret_hash.clone(),
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            expires_millis: expires,
        }
    }

    #[test]
    fn a_current_token_grants_its_buckets_sorted_once() {
        let new = invite::generate();
        let snapshot = snapshot_with(vec![entry(&new, &["b", "a", "b"], None)]);
        assert_eq!(
            snapshot.grant(&new.token, 1_000),
            Grant::Accepted {
                id: &new.id,
                buckets: &["a".to_string(), "b".to_string()]
            }
        );
    }

    #[test]
    fn expired_wrong_unknown_and_malformed_tokens_are_rejected() {
        let new = invite::generate();
        let expiring = invite::generate();
        let snapshot = snapshot_with(vec![
            entry(&new, &["a"], None),
            entry(&expiring, &["a"], Some(5_000)),
        ]);
        assert!(matches!(
            snapshot.grant(&expiring.token, 4_999),
            Grant::Accepted { .. }
        ));
        assert_eq!(snapshot.grant(&expiring.token, 5_000), Grant::Rejected);

        let (_, other_secret) = invite::split(&expiring.token).unwrap();
        let wrong_secret = format!("{}.{other_secret}", new.id);
        let unknown = invite::generate().token;
        for token in [
            wrong_secret.as_str(),
            unknown.as_str(),
            "",
            "garbage",
            &new.id,
            &new.token[..new.token.len() - 1],
        ] {
            assert_eq!(snapshot.grant(token, 0), Grant::Rejected, "{token:?}");
        }
    }

    #[test]
    fn unreadable_hashes_are_left_out() {
        let new = invite::generate();
        let mut bad = entry(&new, &["a"], None);
        bad.secret_hash = "not hex".into();
        assert_eq!(
            snapshot_with(vec![bad]).grant(&new.token, 0),
            Grant::Rejected
        );
    }

    #[test]
    fn uses_keep_the_latest_time_per_invite() {
        let uses = InviteUses::default();
        uses.record("a", 10);
        uses.record("a", 5);
        uses.record("b", 7);
        let mut taken = uses.take();
        taken.sort();
        assert_eq!(taken, [("a".to_string(), 10), ("b".to_string(), 7)]);
        assert!(uses.take().is_empty());
    }
}
