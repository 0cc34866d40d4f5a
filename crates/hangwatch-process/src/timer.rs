//! A deadline timer that fires at the deadline, not a millisecond tick after it.
//!
//! tokio's timer wheel ticks every millisecond and rounds each deadline up, so a `sleep_until`
//! ends 1–2 ms late. hangwatch promises detection *at* the deadline, so its deadlines use a
//! timerfd armed with an absolute `CLOCK_MONOTONIC` time (the clock behind `Instant` on Linux),
//! which wakes the event loop within tens of microseconds and is still just one more fd in
//! the same epoll set.

use std::io;
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
use nix::time::{ClockId, clock_gettime};
use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

use crate::sys::{self, TimerFd};

/// One deadline, re-armable. Unarmed, [`DeadlineTimer::fired`] never resolves.
#[derive(Debug)]
pub struct DeadlineTimer {
    fd: AsyncFd<TimerFd>,
    armed: Option<Instant>,
}

impl DeadlineTimer {
    /// A new, unarmed timer. Must be called inside a tokio runtime.
    pub fn new() -> io::Result<DeadlineTimer> {
        Ok(DeadlineTimer {
            fd: sys::async_timerfd()?,
            armed: None,
        })
    }

    /// The deadline the timer is armed for.
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.armed
    }

    /// Arms the timer for `at` (a past deadline fires at once), or disarms it with `None`.
    /// Setting the deadline it already has is free.
    pub fn set(&mut self, at: Option<Instant>) -> io::Result<()> {
        if at == self.armed {
            return Ok(());
        }
        match at {
            None => self.fd.get_ref().0.unset()?,
            Some(at) => {
                let now = Instant::now();
                let mono = clock_gettime(ClockId::CLOCK_MONOTONIC)?;
                let mono = Duration::new(
                    u64::try_from(mono.tv_sec()).unwrap_or_default(),
                    u32::try_from(mono.tv_nsec()).unwrap_or_default(),
                );
                // Never zero: a zero expiration would disarm the timer instead.
                let target =
                    (mono + at.saturating_duration_since(now)).max(Duration::from_nanos(1));
                self.fd.get_ref().0.set(
                    Expiration::OneShot(TimeSpec::from_duration(target)),
                    TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                )?;
            }
        }
        self.armed = at;
        Ok(())
    }

    /// Makes sure the timer fires no later than `at`, without re-arming when it already will
    /// (it may then fire early; the owner checks and calls again). A heartbeat that only moves
    /// a deadline later thus costs no system call.
    pub fn ensure_by(&mut self, at: Option<Instant>) -> io::Result<()> {
        match (self.armed, at) {
            (Some(armed), Some(at)) if armed <= at => Ok(()),
            (_, None) => self.set(None),
            (_, at) => self.set(at),
        }
    }

    /// Waits until the armed deadline passes, then disarms. Never resolves when unarmed.
    pub async fn fired(&mut self) -> io::Result<()> {
        if self.armed.is_none() {
            return std::future::pending().await;
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let result = guard.try_io(|fd| {
                let mut buf = [0u8; 8];
                nix::unistd::read(&fd.get_ref().0, &mut buf).map_err(io::Error::from)
            });
            match result {
                Ok(Ok(_expirations)) => {
                    self.armed = None;
                    return Ok(());
                }
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_after_the_deadline_and_not_before() {
        let mut timer = DeadlineTimer::new().expect("timer");
        let at = Instant::now() + Duration::from_millis(30);
        timer.set(Some(at)).expect("arm");
        timer.fired().await.expect("fire");
        assert!(Instant::now() >= at);
        assert_eq!(timer.deadline(), None);
    }

    #[tokio::test]
    async fn a_past_deadline_fires_at_once() {
        let mut timer = DeadlineTimer::new().expect("timer");
        timer
            .set(Some(Instant::now() - Duration::from_secs(1)))
            .expect("arm");
        tokio::time::timeout(Duration::from_secs(5), timer.fired())
            .await
            .expect("fired within 5 s")
            .expect("fire");
    }

    #[tokio::test]
    async fn an_unarmed_timer_never_fires() {
        let mut timer = DeadlineTimer::new().expect("timer");
        let waited = tokio::time::timeout(Duration::from_millis(50), timer.fired()).await;
        assert!(waited.is_err());
    }
}
