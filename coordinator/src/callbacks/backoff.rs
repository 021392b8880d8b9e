//! The retry schedule of a callback delivery.

use std::time::Duration;

/// When to retry a failed delivery, and when to give up.
///
/// After failed attempt `n` (1-based) the next attempt waits `steps[n - 1]`, or `then` once the
/// steps are used up, each stretched or shrunk by up to `jitter` (a fraction, e.g. 0.1 = ±10 %).
/// A retry that would fall later than `give_up_after` past the delivery's creation is not
/// scheduled: the delivery becomes `failed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// The first delays, in order.
    pub steps: Vec<Duration>,
    /// The delay once `steps` are used up.
    pub then: Duration,
    /// How long after creation the delivery is abandoned.
    pub give_up_after: Duration,
    /// Relative jitter in `0.0..=1.0`.
    pub jitter: f64,
}

impl Default for Backoff {
    /// The production schedule: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, then hourly, for 24 h,
    /// with ±10 % jitter.
    fn default() -> Self {
        Self {
            steps: [5, 30, 120, 600, 1800, 3600]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            then: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// The delay before the attempt following failed attempt `attempt` (1-based), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.steps.get(index).copied().unwrap_or(self.then)
    }

    /// The jittered delay; `unit` is a random number in `0.0..1.0`.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        base.mul_f64(factor.max(0.0))
    }

    /// The next attempt's delay, or `None` when the delivery should be given up: `age` is the
    /// time since the delivery was created.
    pub fn next(&self, attempt: u32, age: Duration, unit: f64) -> Option<Duration> {
        let delay = self.delay(attempt, unit);
        (age.saturating_add(delay) <= self.give_up_after).then_some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule() {
        let backoff = Backoff::default();
        let secs: Vec<u64> = (1..=9).map(|n| backoff.base_delay(n).as_secs()).collect();
        assert_eq!(secs, [5, 30, 120, 600, 1800, 3600, 3600, 3600, 3600]);
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let backoff = Backoff::default();
        assert_eq!(backoff.delay(1, 0.5), Duration::from_secs(5));
        assert_eq!(backoff.delay(1, 0.0), Duration::from_millis(4500));
        assert_eq!(backoff.delay(1, 1.0), Duration::from_millis(5500));
        assert_eq!(backoff.delay(2, 7.0), Duration::from_secs(33));
    }

    #[test]
    fn gives_up_after_a_day() {
        let backoff = Backoff::default();
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff.next(10, hour * 20, 0.5), Some(hour));
        assert_eq!(backoff.next(10, hour * 23, 0.5), Some(hour));
        assert_eq!(
            backoff.next(10, hour * 23 + Duration::from_secs(1), 0.5),
            None
        );
    }

    #[test]
    fn attempts_over_a_day_are_about_twenty_five() {
        // 5 s + 30 s + 2 min + 10 min + 30 min + 1 h, then hourly to 24 h.
        let backoff = Backoff::default();
        let mut age = Duration::ZERO;
        let mut attempts = 1;
        while let Some(delay) = backoff.next(attempts, age, 0.5) {
            age += delay;
            attempts += 1;
        }
        assert!((24..=30).contains(&attempts), "{attempts} attempts");
    }
}
