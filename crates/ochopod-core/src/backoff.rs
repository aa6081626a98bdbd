//! Decorrelated-jitter backoff, shared by the executor's restarts and the leader's failed rounds.

use std::time::Duration;

use rand::Rng;

/// `sleep = min(max, rand(initial, prev × 3))`, `prev` starting at `initial`. Spreads retries of
/// many pods apart while still growing quickly.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    prev: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, prev: initial }
    }

    pub fn next(&mut self, rng: &mut impl Rng) -> Duration {
        let lo = self.initial.as_micros() as u64;
        let hi = (self.prev.as_micros() as u64).saturating_mul(3);
        let pick = if hi > lo { rng.random_range(lo..=hi) } else { lo };
        let delay = Duration::from_micros(pick).min(self.max.max(self.initial));
        self.prev = delay;
        delay
    }

    pub fn reset(&mut self) {
        self.prev = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn grows_within_bounds_and_resets() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..20).map(|_| b.next(&mut rng)).collect();
        assert!(delays.iter().all(|d| *d >= Duration::from_millis(100) && *d <= Duration::from_secs(2)));
        assert!(delays.iter().any(|d| *d >= Duration::from_secs(1)), "it grows: {delays:?}");
        b.reset();
        assert!(b.next(&mut rng) <= Duration::from_millis(300));
    }
}
