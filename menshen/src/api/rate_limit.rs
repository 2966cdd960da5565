//! Per-address rate limits on what is expensive to answer (every
//! certificate and configuration carries a fresh key pair), and per-network
//! ones on what must not be asked for too often from one place (the bridge
//! list, see `select::ring`).
//!
//! A token bucket per client address (IPv6 by /64, as one host usually has
//! a whole /64) or per network ([`Network`]: IPv4 /16, IPv6 /48), kept in a table of fixed size: 4,096 sets of 4 places,
//! found by a keyed hash the clients cannot predict. An address not in its
//! set takes the place of the one whose bucket has refilled the most; so
//! memory never grows, and with more addresses active at once than places
//! the limit only gets looser for them, never tighter for anyone.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::geo::client_ip::Network;

/// A number of requests per span of time, e.g. `10/min`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl FromStr for Rate {
    type Err = String;

    /// `N/s`, `N/min`, `N/h`, `N/d`, or `N/` and a duration (`5/30s`).
    fn from_str(text: &str) -> Result<Rate, String> {
        let bad = || format!("{text:?} is not a rate such as 10/min, 1/s or 100/h");
        let (count, per) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match per.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => humantime::parse_duration(other).map_err(|_| bad())?,
        };
        if count == 0 || per.is_zero() {
            return Err(format!("{text:?}: a rate must allow at least one request"));
        }
        Ok(Rate { count, per })
    }
}

/// A rate and how many requests may come at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub rate: Rate,
    /// At least 1.
    pub burst: u32,
}

const SETS: usize = 4096;
const WAYS: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The address's key (see [`key`]); 0 for an empty place.
    key: u128,
    tokens: f64,
    /// Milliseconds since the limiter started.
    at: u64,
}

/// Token buckets for client addresses, in fixed memory.
pub struct RateLimiter {
    sets: Box<[Mutex<[Slot; WAYS]>]>,
    hasher: foldhash::quality::RandomState,
    /// Tokens per millisecond.
    refill: f64,
    burst: f64,
    started: Instant,
    /// Counts networks rather than addresses.
    per_network: bool,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("refill_per_ms", &self.refill)
            .field("burst", &self.burst)
            .field("per_network", &self.per_network)
            .finish_non_exhaustive()
    }
}

/// An address as a bucket's key: IPv4 as such, IPv6 by its /64. Never 0.
fn key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => (1 << 64) | u128::from(u32::from(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => key(IpAddr::V4(v4)),
            None => (u128::from(v6) & !u128::from(u64::MAX)) | 2,
        },
    }
}

impl RateLimiter {
    /// A limit per client address.
    pub fn new(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            sets: (0..SETS)
                .map(|_| Mutex::new([Slot::default(); WAYS]))
                .collect(),
            hasher: foldhash::quality::RandomState::default(),
            refill: f64::from(limit.rate.count) / limit.rate.per.as_secs_f64() / 1000.0,
            burst: f64::from(limit.burst.max(1)),
            started: Instant::now(),
            per_network: false,
        }
    }

    /// A limit per client network ([`Network`]).
    pub fn per_network(limit: RateLimit) -> RateLimiter {
        RateLimiter {
            per_network: true,
            ..RateLimiter::new(limit)
        }
    }

    /// Takes one request from the bucket of `ip` (or of its network):
    /// `Err` with how long until the next would be allowed when it is empty.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, self.started.elapsed().as_millis() as u64)
    }

    fn check_at(&self, ip: IpAddr, now: u64) -> Result<(), Duration> {
        let key = if self.per_network {
            Network::of(ip).key()
        } else {
            key(ip)
        };
        let set = &self.sets[self.hasher.hash_one(key) as usize % SETS];
        let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
        let refilled =
            |s: &Slot| (s.tokens + now.saturating_sub(s.at) as f64 * self.refill).min(self.burst);
        let slot = match set.iter().position(|s| s.key == key) {
            Some(i) => &mut set[i],
            None => {
                // An empty place, else the one that has refilled the most.
                let i = (0..WAYS)
                    .max_by(|&a, &b| {
                        let fill = |s: &Slot| {
                            if s.key == 0 {
                                f64::INFINITY
                            } else {
                                refilled(s)
                            }
                        };
                        fill(&set[a]).total_cmp(&fill(&set[b]))
                    })
                    .unwrap_or(0);
                set[i] = Slot {
                    key,
                    tokens: self.burst,
                    at: now,
                };
                &mut set[i]
            }
        };
        slot.tokens = refilled(slot);
        slot.at = now;
        if slot.tokens >= 1.0 {
            slot.tokens -= 1.0;
            Ok(())
        } else {
            let wait_ms = ((1.0 - slot.tokens) / self.refill).ceil();
            Err(Duration::from_millis(wait_ms as u64))
        }
    }

    /// Bytes the table holds: fixed when it is made.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.sets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(text: &str, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimit {
            rate: text.parse().unwrap(),
            burst,
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn rates_parse() {
        let r = |t: &str| t.parse::<Rate>();
        assert_eq!(r("10/min").unwrap().per, Duration::from_secs(60));
        assert_eq!(r("1/s").unwrap().count, 1);
        assert_eq!(r("100/h").unwrap().per, Duration::from_secs(3600));
        assert_eq!(r("5/30s").unwrap().per, Duration::from_secs(30));
        for bad in ["10", "x/min", "10/fortnight", "0/min", "-1/s", "10/0s"] {
            assert!(r(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_burst_then_the_rate_and_a_wait_to_say() {
        let l = limiter("6/min", 2);
        let a = ip("192.0.2.1");
        assert_eq!(l.check_at(a, 0), Ok(()));
        assert_eq!(l.check_at(a, 0), Ok(()));
        // one every 10 s
        assert_eq!(l.check_at(a, 1_000), Err(Duration::from_millis(9_000)));
        // others are not affected
        assert_eq!(l.check_at(ip("192.0.2.2"), 1_000), Ok(()));
        assert_eq!(l.check_at(a, 10_000), Ok(()));
        assert!(l.check_at(a, 10_001).is_err());
        // never more than the burst saved up
        assert_eq!(l.check_at(a, 1_000_000), Ok(()));
        assert_eq!(l.check_at(a, 1_000_000), Ok(()));
        assert!(l.check_at(a, 1_000_000).is_err());
    }

    #[test]
    fn ipv6_counts_by_64() {
        let l = limiter("1/min", 1);
        assert_eq!(l.check_at(ip("2001:db8:1:2::1"), 0), Ok(()));
        assert!(l.check_at(ip("2001:db8:1:2::ffff"), 0).is_err());
        assert_eq!(l.check_at(ip("2001:db8:1:3::1"), 0), Ok(()));
        // IPv4-mapped is the IPv4 address
        assert_eq!(l.check_at(ip("192.0.2.9"), 0), Ok(()));
        assert!(l.check_at(ip("::ffff:192.0.2.9"), 0).is_err());
    }

    #[test]
    fn per_network_counts_ipv4_by_16_and_ipv6_by_48() {
        let l = RateLimiter::per_network(RateLimit {
            rate: "1/min".parse().unwrap(),
            burst: 1,
        });
        assert_eq!(l.check_at(ip("198.51.100.1"), 0), Ok(()));
        assert!(l.check_at(ip("198.51.7.9"), 0).is_err());
        assert_eq!(l.check_at(ip("198.52.100.1"), 0), Ok(()));
        assert_eq!(l.check_at(ip("2001:db8:1:2::1"), 0), Ok(()));
        assert!(l.check_at(ip("2001:db8:1:ffff::1"), 0).is_err());
        assert_eq!(l.check_at(ip("2001:db8:2::1"), 0), Ok(()));
    }

    #[test]
    fn many_addresses_do_not_grow_memory_or_free_a_busy_one() {
        let l = limiter("1/h", 1);
        let size = l.heap_bytes();
        let victim = ip("198.51.100.1");
        assert_eq!(l.check_at(victim, 0), Ok(()));
        assert!(l.check_at(victim, 0).is_err());
        // 200,000 other addresses, each once.
        for i in 0..200_000u32 {
            let other = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.check_at(other, 1);
        }
        assert_eq!(l.heap_bytes(), size);
        // Whether it was pushed out or not, it never gets more than the
        // rate allows: at most the one burst again.
        let allowed = (0..5).filter(|_| l.check_at(victim, 2).is_ok()).count();
        assert!(allowed <= 1, "{allowed}");
    }
}
