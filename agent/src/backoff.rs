//! Pacing of pushes: heartbeat jitter and retry delays.

use std::time::Duration;

/// The shortest delay ever waited between two attempts.
pub const FLOOR: Duration = Duration::from_millis(100);

/// `base` ±10 %, so that agents started together do not stay in step.
pub fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.9 + 0.2 * fastrand::f64())
}

/// Delay before retry number `failures` (1 = after the first failure) of a
/// transient failure: exponential from `initial`, capped at `max`, with full
/// jitter (uniform between 0 and that ceiling), and never below [`FLOOR`].
pub fn transient(failures: u32, initial: Duration, max: Duration) -> Duration {
    let ceiling = ceiling(failures, initial, max);
    ceiling.mul_f64(fastrand::f64()).max(FLOOR.min(ceiling))
}

/// The upper bound of [`transient`] for `failures`.
pub fn ceiling(failures: u32, initial: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    initial.saturating_mul(1 << doublings).min(max)
}

/// Delay after menshen asked to come back after `retry_after`: that, plus
/// up to 20 % so that agents spread out, at most `max` (and at least
/// [`FLOOR`]).
pub fn retry_after(retry_after: Duration, max: Duration) -> Duration {
    retry_after
        .mul_f64(1.0 + 0.2 * fastrand::f64())
        .min(max)
        .max(FLOOR)
}

/// Delay after menshen refused the agent (bad token, foreign host, ...):
/// slow and steady, since only an operator can fix it.
pub fn refused(interval: Duration, refused: Duration) -> Duration {
    jittered(interval.max(refused))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn ceiling_doubles_up_to_the_cap() {
        let cap = Duration::from_secs(60);
        let c: Vec<u64> = (1..=9).map(|n| ceiling(n, S, cap).as_secs()).collect();
        assert_eq!(c, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(ceiling(u32::MAX, S, cap), cap);
        assert_eq!(ceiling(0, S, cap), S);
    }

    #[test]
    fn transient_delays_stay_within_bounds() {
        let cap = Duration::from_secs(60);
        for n in 1..40 {
            for _ in 0..200 {
                let d = transient(n, S, cap);
                assert!(d >= FLOOR && d <= ceiling(n, S, cap), "{n}: {d:?}");
            }
        }
        // Jitter spreads the delays out.
        let spread: std::collections::BTreeSet<u128> = (0..100)
            .map(|_| transient(10, S, cap).as_millis())
            .collect();
        assert!(spread.len() > 50);
    }

    #[test]
    fn retry_after_is_kept_with_a_little_jitter() {
        let cap = Duration::from_secs(60);
        for _ in 0..1000 {
            let d = retry_after(S, cap);
            assert!(d >= S && d <= Duration::from_millis(1200), "{d:?}");
        }
        assert_eq!(retry_after(Duration::from_secs(600), cap), cap);
        assert_eq!(retry_after(Duration::ZERO, cap), FLOOR);
    }

    #[test]
    fn heartbeat_and_refused_jitter() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(15));
            assert!(d >= Duration::from_millis(13_500) && d <= Duration::from_millis(16_500));
            let r = refused(Duration::from_secs(15), Duration::from_secs(60));
            assert!(r >= Duration::from_secs(54) && r <= Duration::from_secs(66));
            let r = refused(Duration::from_secs(120), Duration::from_secs(60));
            assert!(r >= Duration::from_secs(108));
        }
    }
}
