//! One retry policy for every state: exponential backoff with jitter, bounded by a per-state deadline.
//!
//! Jitter spreads a mass boot (an AZ lost, dozens of hosts starting together) so that API calls and ZooKeeper
//! writes do not arrive in lockstep. The randomness is an input ([`Jitter`], a seeded generator), so the
//! decisions stay pure and reproducible in tests.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Backoff and deadline for one state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the first retry.
    #[serde(with = "crate::serde_duration")]
    pub initial: Duration,
    /// Upper bound of any single delay.
    #[serde(with = "crate::serde_duration")]
    pub max: Duration,
    /// Growth factor per attempt (>= 1).
    pub multiplier: f64,
    /// Total time the state may take, retries included; past it the state fails.
    #[serde(with = "crate::serde_duration")]
    pub deadline: Duration,
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (1-based): `initial * multiplier^(attempt-1)`, capped at `max`,
    /// then "equal jitter": half fixed, half random, so delays never collapse to zero.
    pub fn delay(&self, attempt: u32, jitter: &mut Jitter) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let base = self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = base.min(self.max.as_secs_f64()).max(0.0);
        let half = capped / 2.0;
        Duration::from_secs_f64(half + half * jitter.next_unit())
    }
}

/// A small deterministic generator (splitmix64) for jitter; seeded per host so hosts spread out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator from a seed (e.g. a hash of the instance id and the start time).
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A stable 64-bit hash of a string (FNV-1a), for seeding jitter and spreading claim order per host.
pub fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            deadline: Duration::from_secs(60),
        }
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let mut jitter = Jitter::new(1);
        for attempt in 1..40 {
            let delay = policy().delay(attempt, &mut jitter);
            let base = (0.2 * 2f64.powi(attempt as i32 - 1)).min(5.0);
            assert!(
                delay.as_secs_f64() >= base / 2.0 - 1e-9,
                "attempt {attempt}: {delay:?}"
            );
            assert!(
                delay.as_secs_f64() <= base + 1e-9,
                "attempt {attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_hosts() {
        let delays: std::collections::BTreeSet<_> = (0..20)
            .map(|seed| policy().delay(3, &mut Jitter::new(seed)))
            .collect();
        assert!(
            delays.len() > 15,
            "jitter should differ per seed: {delays:?}"
        );
    }

    #[test]
    fn unit_values_stay_in_range() {
        let mut jitter = Jitter::new(42);
        for _ in 0..10_000 {
            let value = jitter.next_unit();
            assert!((0.0..1.0).contains(&value));
        }
    }
}
