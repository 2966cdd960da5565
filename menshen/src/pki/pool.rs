//! Keys made ahead: an RSA key takes tens of milliseconds to make, so a
//! few are kept ready and a burst of requests for them is answered at once;
//! the pool refills itself on the blocking pool.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::KeyPair;

use super::KeyType;

/// Up to `size` ready keys of one type.
pub struct KeyPool {
    key_type: KeyType,
    size: usize,
    keys: Mutex<VecDeque<KeyPair>>,
    /// Whether a refill runs; at most one does.
    refilling: AtomicBool,
    /// Where refills run: the runtime the pool was made in, so that a key
    /// taken on any thread (the issuing threads have no runtime) refills.
    runtime: Option<tokio::runtime::Handle>,
}

impl KeyPool {
    pub fn new(key_type: KeyType, size: usize) -> Arc<KeyPool> {
        Arc::new(KeyPool {
            key_type,
            size,
            keys: Mutex::new(VecDeque::with_capacity(size)),
            refilling: AtomicBool::new(false),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// Keys ready now.
    pub fn ready(&self) -> usize {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// A ready key, if there is one; starts a refill either way.
    pub fn take(self: &Arc<Self>) -> Option<KeyPair> {
        let key = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        self.refill();
        key
    }

    /// Fills the pool up on the blocking pool, unless a refill runs
    /// already, the pool is full, or there is no runtime to run it on.
    pub fn refill(self: &Arc<Self>) {
        if self.size == 0 || self.ready() >= self.size {
            return;
        }
        let Some(runtime) = &self.runtime else {
            return;
        };
        if self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.clone();
        runtime.spawn_blocking(move || {
            while pool.ready() < pool.size {
                match pool.key_type.generate() {
                    Ok(key) => pool
                        .keys
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push_back(key),
                    Err(err) => {
                        tracing::warn!(error = %err, key_type = pool.key_type.name(), "cannot make a key ahead");
                        break;
                    }
                }
            }
            pool.refilling.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_pool_fills_up_and_refills_after_a_take() {
        let pool = KeyPool::new(KeyType::EcdsaP256, 3);
        assert_eq!(pool.ready(), 0);
        pool.refill();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pool.ready() < 3 {
            assert!(tokio::time::Instant::now() < deadline, "pool never filled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(pool.take().is_some());
        while pool.ready() < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "pool never refilled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_key_taken_on_a_thread_without_a_runtime_is_made_again() {
        let pool = KeyPool::new(KeyType::EcdsaP256, 2);
        pool.refill();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pool.ready() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "pool never filled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let taker = pool.clone();
        std::thread::spawn(move || assert!(taker.take().is_some()))
            .join()
            .unwrap();
        while pool.ready() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "pool never refilled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn an_empty_pool_without_a_runtime_gives_nothing() {
        let pool = KeyPool::new(KeyType::Rsa2048, 2);
        assert!(pool.take().is_none());
        let none = KeyPool::new(KeyType::Rsa2048, 0);
        assert!(none.take().is_none());
    }
}
