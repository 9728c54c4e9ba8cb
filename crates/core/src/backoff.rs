//! Crash accounting: how long to wait before restarting a crashed instance, and when a
//! crash loop makes it `failed`. Pure: the caller passes `now`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The crash times of one instance within the crash-loop window.
#[derive(Debug, Default, Clone)]
pub struct CrashHistory {
    times: VecDeque<Instant>,
}

impl CrashHistory {
    /// Records a crash at `now` and returns how many crashes fall within `window`.
    pub fn record(&mut self, now: Instant, window: Duration) -> usize {
        self.times.push_back(now);
        while let Some(&first) = self.times.front() {
            if now.duration_since(first) > window {
                self.times.pop_front();
            } else {
                break;
            }
        }
        self.times.len()
    }

    /// Forgets every crash: an operator's `start` gives a failed instance a clean slate.
    pub fn clear(&mut self) {
        self.times.clear();
    }
}

/// The delay before restart number `crashes` (1 for the first crash in the window):
/// `base`, doubling each time, never above `max`.
pub fn restart_delay(crashes: usize, base: Duration, max: Duration) -> Duration {
    let doublings = crashes.saturating_sub(1).min(31) as u32;
    base.saturating_mul(1u32 << doublings).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(restart_delay(1, s(1), s(60)), s(1));
        assert_eq!(restart_delay(2, s(1), s(60)), s(2));
        assert_eq!(restart_delay(4, s(1), s(60)), s(8));
        assert_eq!(restart_delay(7, s(1), s(60)), s(60));
        assert_eq!(restart_delay(1000, s(1), s(60)), s(60));
    }

    #[test]
    fn crashes_outside_the_window_are_forgotten() {
        let t0 = Instant::now();
        let window = Duration::from_secs(300);
        let mut h = CrashHistory::default();
        assert_eq!(h.record(t0, window), 1);
        assert_eq!(h.record(t0 + Duration::from_secs(100), window), 2);
        assert_eq!(h.record(t0 + Duration::from_secs(350), window), 2);
        assert_eq!(h.record(t0 + Duration::from_secs(1000), window), 1);
        h.clear();
        assert_eq!(h.record(t0 + Duration::from_secs(1001), window), 1);
    }
}
