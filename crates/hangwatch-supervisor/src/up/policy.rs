//! Restart decisions, kept apart from the event loop so their rules are tested without a
//! clock or a process: which exits restart, how long to wait, and when to give up.

use std::collections::VecDeque;
use std::time::Duration;

use hangwatch_config::{Backoff, MaxRestarts, RestartPolicy};
use hangwatch_process::ExitStatus;
use tokio::time::Instant;

/// Why a service's program ended, as far as the restart policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// It exited or died by itself.
    Exited(ExitStatus),
    /// hangwatch stopped it because it stalled or used too much memory: always a failure.
    Stopped,
    /// It could not be started or never became ready: a failure.
    StartFailed,
}

/// Whether `policy` restarts after `ending`.
pub(crate) fn wants_restart(policy: RestartPolicy, ending: Ending) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => !matches!(ending, Ending::Exited(ExitStatus::Exited(0))),
    }
}

/// Restart bookkeeping of one service: the backoff step and the restarts in the intensity
/// window.
#[derive(Debug, Default)]
pub(crate) struct Restarts {
    /// Consecutive restarts since the last stable run.
    step: u32,
    /// When each restart in the window was decided.
    recent: VecDeque<Instant>,
    /// Every restart since hangwatch started.
    pub(crate) total: u32,
}

/// The answer to "restart?".
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision {
    /// Start again after this delay; `attempt` restarts are now in the window.
    Restart { delay: Duration, attempt: u32 },
    /// More than `max_restarts.count` restarts in the window: give up.
    GiveUp { restarts: u32 },
}

impl Restarts {
    /// Decides the next restart of a program that ran for `uptime` and ended `now`. `random`
    /// is a number in [0, 1) for the jitter.
    pub(crate) fn decide(
        &mut self,
        backoff: &Backoff,
        limit: &MaxRestarts,
        uptime: Duration,
        now: Instant,
        random: f64,
    ) -> Decision {
        if uptime >= backoff.reset_after {
            self.step = 0;
        }
        while self
            .recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > limit.within)
        {
            self.recent.pop_front();
        }
        let attempt = u32::try_from(self.recent.len()).unwrap_or(u32::MAX) + 1;
        if attempt > limit.count {
            return Decision::GiveUp {
                restarts: attempt - 1,
            };
        }
        self.recent.push_back(now);
        self.total += 1;
        let delay = delay(backoff, self.step, random);
        self.step = self.step.saturating_add(1);
        Decision::Restart { delay, attempt }
    }
}

/// `initial × factor^step`, at most `max`, moved by up to ±`jitter` of itself.
fn delay(backoff: &Backoff, step: u32, random: f64) -> Duration {
    let base = backoff.initial.as_secs_f64()
        * backoff
            .factor
            .max(1.0)
            .powi(i32::try_from(step).unwrap_or(i32::MAX));
    let base = base.min(backoff.max.as_secs_f64().max(backoff.initial.as_secs_f64()));
    let spread = base * backoff.jitter.clamp(0.0, 1.0) * (2.0 * random - 1.0);
    Duration::try_from_secs_f64((base + spread).max(0.0)).unwrap_or(backoff.max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(10),
        }
    }

    fn limit(count: u32) -> MaxRestarts {
        MaxRestarts {
            count,
            within: Duration::from_secs(60),
        }
    }

    #[test]
    fn on_failure_restarts_failures_only() {
        let ok = Ending::Exited(ExitStatus::Exited(0));
        let bad = Ending::Exited(ExitStatus::Exited(3));
        let killed = Ending::Exited(ExitStatus::Signalled {
            signal: 9,
            core_dumped: false,
        });
        assert!(!wants_restart(RestartPolicy::OnFailure, ok));
        assert!(wants_restart(RestartPolicy::OnFailure, bad));
        assert!(wants_restart(RestartPolicy::OnFailure, killed));
        assert!(wants_restart(RestartPolicy::OnFailure, Ending::Stopped));
        assert!(wants_restart(RestartPolicy::Always, ok));
        assert!(!wants_restart(RestartPolicy::Never, bad));
        assert!(!wants_restart(RestartPolicy::Never, Ending::Stopped));
    }

    #[test]
    fn delay_doubles_up_to_max_and_resets_after_a_stable_run() {
        let mut restarts = Restarts::default();
        let now = Instant::now();
        let short = Duration::from_millis(10);
        let delays: Vec<Duration> = (0..6)
            .map(
                |_| match restarts.decide(&backoff(), &limit(100), short, now, 0.5) {
                    Decision::Restart { delay, .. } => delay,
                    Decision::GiveUp { .. } => panic!("gave up too early"),
                },
            )
            .collect();
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        let after_stable =
            restarts.decide(&backoff(), &limit(100), Duration::from_secs(11), now, 0.5);
        assert!(
            matches!(after_stable, Decision::Restart { delay, .. } if delay.as_millis() == 100)
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let mut b = backoff();
        b.jitter = 0.1;
        let low = delay(&b, 0, 0.0);
        let high = delay(&b, 0, 0.999_999);
        assert_eq!(low.as_millis(), 90);
        assert!((109..=110).contains(&high.as_millis()), "{high:?}");
    }

    #[test]
    fn gives_up_past_the_count_within_the_window_only() {
        let mut restarts = Restarts::default();
        let t0 = Instant::now();
        let short = Duration::from_millis(1);
        for i in 0..3 {
            assert!(matches!(
                restarts.decide(&backoff(), &limit(3), short, t0 + Duration::from_secs(i), 0.5),
                Decision::Restart { attempt, .. } if attempt == i as u32 + 1
            ));
        }
        assert_eq!(
            restarts.decide(
                &backoff(),
                &limit(3),
                short,
                t0 + Duration::from_secs(3),
                0.5
            ),
            Decision::GiveUp { restarts: 3 }
        );
        // A minute later, the first restarts have left the window.
        assert!(matches!(
            restarts.decide(
                &backoff(),
                &limit(3),
                short,
                t0 + Duration::from_secs(62),
                0.5
            ),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn zero_initial_restarts_at_once() {
        let mut b = backoff();
        b.initial = Duration::ZERO;
        let mut restarts = Restarts::default();
        for _ in 0..5 {
            assert!(matches!(
                restarts.decide(&b, &limit(100), Duration::ZERO, Instant::now(), 0.7),
                Decision::Restart { delay, .. } if delay.is_zero()
            ));
        }
    }
}
