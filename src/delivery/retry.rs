//! The retry policy of a target: when a failed delivery is tried again, and when it is given up.
//!
//! - `max_attempts` counts every attempt, the first included.
//! - `max_age_ms` bounds the time from the event's ingest to the next attempt: a retry that
//!   could only happen later than that is not scheduled.
//! - The wait before attempt `n + 1` (after `n` failed attempts) is drawn uniformly from
//!   `[initial, min(max, initial × 2^n)]`: exponential growth with full jitter inside the band,
//!   so many bindings failing together do not retry in lock step, and no retry comes sooner
//!   than `initial`.
//! - A receiver's `Retry-After` replaces the drawn wait (it is honoured as given, even above
//!   `max`, and the age bound still applies).
//! - Errors the target marks as not retryable (a 4xx other than 408/429) are given up at once.

use std::time::Duration;

use rand::Rng;

use crate::catalog::DeliverySettings;
use crate::targets::SendError;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try again at this time (engine clock, epoch ms).
    RetryAt(u64),
    /// Give up: retries are exhausted (the dead-letter mode decides what happens next).
    Exhausted,
}

/// A target's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (≥ 1).
    pub max_attempts: u32,
    /// Longest time from ingest to the last attempt.
    pub max_age_ms: u64,
    /// Shortest wait between attempts.
    pub initial_backoff_ms: u64,
    /// Cap of the exponential band.
    pub max_backoff_ms: u64,
}

impl RetryPolicy {
    /// The policy of a target's settings.
    pub fn from_settings(s: &DeliverySettings) -> RetryPolicy {
        RetryPolicy {
            max_attempts: s.max_attempts.max(1),
            max_age_ms: s.max_age_ms,
            initial_backoff_ms: s.initial_backoff_ms,
            max_backoff_ms: s.max_backoff_ms.max(s.initial_backoff_ms),
        }
    }

    /// The wait after `failed` attempts (≥ 1), drawn from the jittered exponential band.
    pub fn backoff(&self, failed: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling_ms(failed);
        let ms = if ceiling > self.initial_backoff_ms {
            rng.gen_range(self.initial_backoff_ms..=ceiling)
        } else {
            ceiling
        };
        Duration::from_millis(ms)
    }

    /// The top of the band after `failed` attempts: `min(max, initial × 2^failed)`.
    pub fn ceiling_ms(&self, failed: u32) -> u64 {
        let factor = 1u64.checked_shl(failed.min(63)).unwrap_or(u64::MAX);
        self.initial_backoff_ms
            .saturating_mul(factor)
            .min(self.max_backoff_ms)
    }

    /// Decides after attempt number `attempts` (1 for the first) failed with `error`, at
    /// `now_ms`, for an event ingested at `ingest_ms`.
    pub fn after_failure(
        &self,
        attempts: u32,
        error: &SendError,
        ingest_ms: u64,
        now_ms: u64,
        rng: &mut impl Rng,
    ) -> Verdict {
        if !error.retryable || attempts >= self.max_attempts {
            return Verdict::Exhausted;
        }
        let wait = error
            .retry_after
            .unwrap_or_else(|| self.backoff(attempts, rng));
        let at = now_ms.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        if at.saturating_sub(ingest_ms) > self.max_age_ms {
            return Verdict::Exhausted;
        }
        Verdict::RetryAt(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            max_age_ms: 60_000,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        }
    }

    fn err(retryable: bool, retry_after: Option<Duration>) -> SendError {
        SendError {
            retryable,
            retry_after,
            status: None,
            message: "x".into(),
        }
    }

    #[test]
    fn backoff_stays_in_the_exponential_band_and_is_capped() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(7);
        for failed in 1..20 {
            let top = p.ceiling_ms(failed);
            assert_eq!(top, (100u64 << failed.min(20)).min(1_000));
            for _ in 0..200 {
                let ms = p.backoff(failed, &mut rng).as_millis() as u64;
                assert!((100..=top).contains(&ms), "{ms} outside [100, {top}]");
            }
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(1);
        let draws: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(3, &mut rng)).collect();
        assert!(draws.len() > 10, "only {} distinct waits", draws.len());
    }

    #[test]
    fn ceiling_does_not_overflow() {
        let p = RetryPolicy {
            max_backoff_ms: u64::MAX,
            ..policy()
        };
        assert_eq!(p.ceiling_ms(200), u64::MAX);
    }

    #[test]
    fn not_retryable_or_last_attempt_is_exhausted() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(
            p.after_failure(1, &err(false, None), 0, 0, &mut rng),
            Verdict::Exhausted
        );
        assert_eq!(
            p.after_failure(5, &err(true, None), 0, 0, &mut rng),
            Verdict::Exhausted
        );
        assert!(matches!(
            p.after_failure(4, &err(true, None), 0, 0, &mut rng),
            Verdict::RetryAt(_)
        ));
    }

    #[test]
    fn retry_after_is_honoured_even_above_the_cap() {
        let p = policy();
        let mut rng = StdRng::seed_from_u64(0);
        let v = p.after_failure(
            1,
            &err(true, Some(Duration::from_secs(7))),
            0,
            500,
            &mut rng,
        );
        assert_eq!(v, Verdict::RetryAt(7_500));
    }

    #[test]
    fn a_retry_past_the_max_age_is_not_scheduled() {
        // A fixed 100 ms wait (initial = max), so the boundary is exact.
        let p = RetryPolicy {
            max_backoff_ms: 100,
            ..policy()
        };
        let mut rng = StdRng::seed_from_u64(0);
        // Ingested at 0, now 59.95 s: the earliest retry (100 ms) would be past 60 s.
        assert_eq!(
            p.after_failure(1, &err(true, None), 0, 59_950, &mut rng),
            Verdict::Exhausted
        );
        assert_eq!(
            p.after_failure(1, &err(true, None), 0, 59_900, &mut rng),
            Verdict::RetryAt(60_000)
        );
    }
}
