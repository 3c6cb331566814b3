//! Reconnect delays: exponential with full jitter, capped, reset after a good connection.
//! Jitter keeps thousands of agents from reconnecting in lockstep after a controller restart.
//!
//! A controller that shuts down on purpose says so, with a window to reconnect within
//! ([`Backoff::expect_restart`]): then every retry is drawn uniformly from that window and
//! does not grow, so the agent is back at most one window after the controller is, while
//! the fleet's retries stay spread over the window. Exponential growth resumes if the
//! restart takes longer than [`RESTART_PATIENCE`] (it was an outage after all).

use std::time::Duration;

/// How long retries stay within an announced restart's window before backing off as after
/// an outage.
pub const RESTART_PATIENCE: Duration = Duration::from_secs(60);

/// Exponential backoff state.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    /// An announced restart: the window retries are drawn from, and the retry time left
    /// before growing again.
    restart: Option<(Duration, Duration)>,
}

/// A backoff whose bounds make no sense.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("backoff needs 0 < min <= max (got min {min:?}, max {max:?})")]
pub struct InvalidBackoff {
    min: Duration,
    max: Duration,
}

impl Backoff {
    pub fn try_new(min: Duration, max: Duration) -> Result<Backoff, InvalidBackoff> {
        if min.is_zero() || min > max {
            return Err(InvalidBackoff { min, max });
        }
        Ok(Backoff {
            min,
            max,
            attempt: 0,
            restart: None,
        })
    }

    /// The ceiling of the next delay: min·2^attempt, capped at max.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The next delay, drawn uniformly from [min, ceiling] by `unit` in [0, 1) — or, after
    /// an announced restart, from [0, window].
    pub fn next_with(&mut self, unit: f64) -> Duration {
        if let Some((window, left)) = self.restart {
            let delay = window.mul_f64(unit.clamp(0.0, 1.0));
            self.restart = left
                .checked_sub(delay)
                .filter(|left| !left.is_zero())
                .map(|left| (window, left));
            return delay;
        }
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let span = ceiling.saturating_sub(self.min);
        self.min + span.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The next delay with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(random_unit())
    }

    /// Call after a connection worked: the next failure starts from `min` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.restart = None;
    }

    /// The controller announced a restart: retry within `window` (not growing) for up to
    /// [`RESTART_PATIENCE`]. A zero window is taken as the backoff's `min`, and a window
    /// above `max` as `max`.
    pub fn expect_restart(&mut self, window: Duration) {
        let window = window.clamp(self.min, self.max);
        self.attempt = 0;
        self.restart = Some((window, RESTART_PATIENCE));
    }
}

/// A random number in [0, 1): std's per-instance random hash keys are random enough for
/// jitter and need no extra dependency.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::try_new(Duration::from_millis(250), Duration::from_secs(30))
            .expect("valid default")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut backoff =
            Backoff::try_new(Duration::from_millis(100), Duration::from_secs(1)).unwrap();
        let ceilings: Vec<_> = (0..6)
            .map(|_| {
                let ceiling = backoff.ceiling();
                let delay = backoff.next_with(1.0);
                assert_eq!(delay, ceiling);
                ceiling.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.next_with(0.0), Duration::from_millis(100));
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_millis(100));
        assert!(Backoff::try_new(Duration::ZERO, Duration::from_secs(1)).is_err());
        assert!(Backoff::try_new(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn an_announced_restart_keeps_retries_within_its_window_until_patience_runs_out() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.next_with(1.0);
        }
        assert_eq!(
            backoff.ceiling(),
            Duration::from_secs(8),
            "grown after an outage"
        );
        backoff.expect_restart(Duration::from_secs(2));
        let mut waited = Duration::ZERO;
        while waited < RESTART_PATIENCE {
            let delay = backoff.next_with(0.999);
            assert!(delay <= Duration::from_secs(2), "{delay:?}");
            waited += delay;
        }
        assert_eq!(
            backoff.next_with(1.0),
            Duration::from_millis(250),
            "then backs off from the start, as after an outage"
        );
        assert_eq!(backoff.next_with(1.0), Duration::from_millis(500));
        // A window outside the bounds is brought within them.
        backoff.expect_restart(Duration::from_secs(3600));
        assert_eq!(backoff.next_with(1.0), Duration::from_secs(30));
        backoff.reset();
        assert_eq!(backoff.next_with(1.0), Duration::from_millis(250));
    }
}
