//! The stall detector: heartbeats in, one deadline out.
//!
//! # Theory of operation
//!
//! Each configured source keeps the instant of its last heartbeat and a bound. The detector
//! answers one question, [`Detector::next_deadline`]: the earliest instant at which something
//! expires (a source's hard bound, the soft `--stall-warn` bound, the exit grace after
//! `STOPPING=1`). The owner arms one timer there and calls [`Detector::expire`] when it fires.
//! A heartbeat only moves an instant; nothing polls. For the status file the deadline is
//! tentative: `expire` looks at the file again, and a fresher file moves the deadline instead of
//! raising a stall.
//!
//! The detector is pure bookkeeping over instants given by the caller, so its rules are
//! tested without a clock or a process.

use std::time::Duration;

use hangwatch_protocol::report::StallSource;
use tokio::time::Instant;

use super::file::StatusFile;

/// What to watch, and the bounds.
#[derive(Debug, Clone, Default)]
pub struct LivenessSpec {
    /// Expect `WATCHDOG=1` at least this often (systemd's `WatchdogSec=`); the program may change
    /// it with `WATCHDOG_USEC=`.
    pub watchdog: Option<Duration>,
    /// Expect this file to be modified at least this often.
    pub file: Option<(std::path::PathBuf, Duration)>,
    /// Expect a byte on stdout or stderr at least this often.
    pub silence: Option<Duration>,
    /// A soft bound for every source: record a warning, keep running.
    pub warn: Option<Duration>,
    /// After `STOPPING=1`, the program must exit within this long.
    pub exit_grace: Duration,
}

/// A deadline that can pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The soft bound of a source passed.
    Warn(StallSource),
    /// The hard bound of a source passed (or the exit grace after `STOPPING=1`).
    Stall(StallSource),
}

/// A deadline that passed and was confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Warning or stall, and from which source.
    pub expiry: Expiry,
    /// The bound that passed.
    pub bound: Duration,
    /// The deadline itself.
    pub deadline: Instant,
    /// The last heartbeat of that source; `None` if there never was one.
    pub last_beat: Option<Instant>,
}

#[derive(Debug)]
struct Source {
    kind: StallSource,
    bound: Duration,
    /// The last heartbeat; `None` means none yet, and the bound runs from the start.
    last: Option<Instant>,
    /// Whether the soft bound already fired for the current silence.
    warned: bool,
}

impl Source {
    fn new(kind: StallSource, bound: Duration) -> Source {
        Source {
            kind,
            bound,
            last: None,
            warned: false,
        }
    }

    fn beat(&mut self, now: Instant) {
        self.last = Some(now);
        self.warned = false;
    }
}

/// Tracks every heartbeat source of one program. See the module documentation.
#[derive(Debug)]
pub struct Detector {
    started: Instant,
    sources: Vec<Source>,
    file: Option<StatusFile>,
    warn: Option<Duration>,
    exit_grace: Duration,
    stopping_since: Option<Instant>,
    triggered: Option<Instant>,
}

impl Detector {
    /// A detector for a program started at `started`.
    #[must_use]
    pub fn new(spec: &LivenessSpec, started: Instant) -> Detector {
        let mut sources = Vec::new();
        if let Some(bound) = spec.watchdog {
            sources.push(Source::new(StallSource::Notify, bound));
        }
        let mut file = None;
        if let Some((path, bound)) = &spec.file {
            sources.push(Source::new(StallSource::File, *bound));
            file = Some(StatusFile::new(path));
        }
        if let Some(bound) = spec.silence {
            sources.push(Source::new(StallSource::Output, bound));
        }
        Detector {
            started,
            sources,
            file,
            warn: spec.warn,
            exit_grace: spec.exit_grace,
            stopping_since: None,
            triggered: None,
        }
    }

    /// The watchdog bound in force, if the notify watchdog is armed.
    #[must_use]
    pub fn watchdog(&self) -> Option<Duration> {
        self.source(StallSource::Notify).map(|s| s.bound)
    }

    /// The last heartbeat of `kind`.
    #[must_use]
    pub fn last_beat(&self, kind: StallSource) -> Option<Instant> {
        self.source(kind).and_then(|s| s.last)
    }

    /// The source whose stall deadline comes first: its kind, the time since its last sign of
    /// life (since the start when there was none), and its bound. For `hangwatch status`; a
    /// heartbeat file's age is as of the last look at it.
    #[must_use]
    pub fn closest(&self, now: Instant) -> Option<(StallSource, Duration, Duration)> {
        self.sources
            .iter()
            .min_by_key(|s| s.last.unwrap_or(self.started) + s.bound)
            .map(|s| {
                let age = now.saturating_duration_since(s.last.unwrap_or(self.started));
                (s.kind, age, s.bound)
            })
    }

    /// `WATCHDOG=1` (or `READY=1`) arrived.
    pub fn on_watchdog(&mut self, now: Instant) {
        if let Some(source) = self.source_mut(StallSource::Notify) {
            source.beat(now);
        }
    }

    /// `WATCHDOG_USEC=` arrived: the program sets its own bound, and the watchdog restarts (as
    /// systemd does). This arms the watchdog even if hangwatch was given none.
    pub fn set_watchdog(&mut self, bound: Duration, now: Instant) {
        match self.source_mut(StallSource::Notify) {
            Some(source) => source.bound = bound,
            None => self.sources.push(Source::new(StallSource::Notify, bound)),
        }
        self.on_watchdog(now);
    }

    /// Bytes arrived on stdout or stderr.
    pub fn on_output(&mut self, now: Instant) {
        if let Some(source) = self.source_mut(StallSource::Output) {
            source.beat(now);
        }
    }

    /// `STOPPING=1` arrived: the program must now exit within the exit grace. A second one
    /// does not restart the grace.
    pub fn on_stopping(&mut self, now: Instant) {
        self.stopping_since.get_or_insert(now);
    }

    /// `EXTEND_TIMEOUT_USEC=` during shutdown: the exit grace runs at least `extra` from now.
    pub fn extend_exit_grace(&mut self, extra: Duration, now: Instant) {
        if let Some(since) = self.stopping_since {
            let wanted = now + extra;
            if wanted > since + self.exit_grace {
                self.exit_grace = wanted - since;
            }
        }
    }

    /// `WATCHDOG=trigger` arrived: the program asks to be treated as stalled, now.
    pub fn trigger(&mut self, now: Instant) {
        self.triggered.get_or_insert(now);
    }

    /// The earliest deadline and what passes there.
    #[must_use]
    pub fn next_deadline(&self) -> Option<(Instant, Expiry)> {
        let mut best: Option<(Instant, Expiry)> = None;
        let mut consider = |at: Instant, what: Expiry| {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, what));
            }
        };
        if let Some(at) = self.triggered {
            consider(at, Expiry::Stall(StallSource::Trigger));
        }
        if let Some(since) = self.stopping_since {
            consider(
                since + self.exit_grace,
                Expiry::Stall(StallSource::Stopping),
            );
        }
        for source in &self.sources {
            let from = source.last.unwrap_or(self.started);
            consider(from + source.bound, Expiry::Stall(source.kind));
            if let Some(warn) = self.warn
                && warn < source.bound
                && !source.warned
            {
                consider(from + warn, Expiry::Warn(source.kind));
            }
        }
        best
    }

    /// The stall deadline of `kind` as things stand: its last heartbeat (or the start) plus
    /// its bound.
    #[must_use]
    pub fn stall_deadline(&self, kind: StallSource) -> Option<Instant> {
        self.source(kind)
            .map(|s| s.last.unwrap_or(self.started) + s.bound)
    }

    /// The next stall deadline that a heartbeat could still move (watchdog, status file,
    /// output silence), and when a diagnosis sampling for `window` must begin to be complete
    /// there: `window` before it, but not before half the bound has passed since the last
    /// heartbeat (a short bound is not diagnosed after every beat).
    #[must_use]
    pub fn anticipate(&self, window: Duration) -> Option<(Instant, Instant)> {
        self.sources
            .iter()
            .map(|source| {
                let from = source.last.unwrap_or(self.started);
                let deadline = from + source.bound;
                let begin = deadline
                    .checked_sub(window)
                    .unwrap_or(from)
                    .max(from + source.bound / 2);
                (begin, deadline)
            })
            .min_by_key(|&(_, deadline)| deadline)
    }

    /// The deadline of `expiry` passed at `now`. Returns the verdict, or `None` when a fresh
    /// look shows that it did not really pass (the status file was modified meanwhile): the
    /// next deadline has then moved on.
    pub fn expire(&mut self, expiry: Expiry, now: Instant) -> Option<Verdict> {
        let (kind, soft) = match expiry {
            Expiry::Warn(kind) => (kind, true),
            Expiry::Stall(kind) => (kind, false),
        };
        match kind {
            StallSource::Trigger => {
                let at = self.triggered?;
                return Some(Verdict {
                    expiry,
                    bound: Duration::ZERO,
                    deadline: at,
                    last_beat: Some(at),
                });
            }
            StallSource::Stopping => {
                let since = self.stopping_since?;
                return Some(Verdict {
                    expiry,
                    bound: self.exit_grace,
                    deadline: since + self.exit_grace,
                    last_beat: Some(since),
                });
            }
            StallSource::File => {
                // Look again: the deadline was computed from an older look at the file.
                if let Some(file) = &self.file {
                    match file.last_beat() {
                        Ok(Some(modified)) => {
                            if let Some(source) = self.source_mut(StallSource::File)
                                && source.last.is_none_or(|last| modified > last)
                            {
                                source.beat(modified);
                            }
                        }
                        Ok(None) => {}
                        Err(err) => tracing::debug!(%err, "status file unreadable"),
                    }
                }
            }
            _ => {}
        }
        let warn = self.warn;
        let started = self.started;
        let source = self.source_mut(kind)?;
        let bound = if soft { warn? } else { source.bound };
        let deadline = source.last.unwrap_or(started) + bound;
        if deadline > now {
            return None;
        }
        if soft {
            source.warned = true;
        }
        Some(Verdict {
            expiry,
            bound,
            deadline,
            last_beat: source.last,
        })
    }

    fn source(&self, kind: StallSource) -> Option<&Source> {
        self.sources.iter().find(|s| s.kind == kind)
    }

    fn source_mut(&mut self, kind: StallSource) -> Option<&mut Source> {
        self.sources.iter_mut().find(|s| s.kind == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn spec() -> LivenessSpec {
        LivenessSpec {
            exit_grace: secs(10),
            ..LivenessSpec::default()
        }
    }

    #[test]
    fn a_diagnosis_is_anticipated_a_window_before_the_deadline() {
        let t0 = Instant::now();
        let mut d = Detector::new(
            &LivenessSpec {
                watchdog: Some(secs(1)),
                silence: Some(secs(5)),
                ..spec()
            },
            t0,
        );
        let window = Duration::from_millis(200);
        assert_eq!(
            d.anticipate(window),
            Some((t0 + Duration::from_millis(800), t0 + secs(1)))
        );
        // A heartbeat moves it on with the deadline.
        d.on_watchdog(t0 + secs(3));
        assert_eq!(
            d.anticipate(window),
            Some((t0 + Duration::from_millis(3800), t0 + secs(4)))
        );
        // Never before half a short bound: not after every beat.
        let short = Detector::new(
            &LivenessSpec {
                watchdog: Some(Duration::from_millis(300)),
                ..spec()
            },
            t0,
        );
        assert_eq!(
            short.anticipate(window),
            Some((
                t0 + Duration::from_millis(150),
                t0 + Duration::from_millis(300)
            ))
        );
        assert_eq!(Detector::new(&spec(), t0).anticipate(window), None);
    }

    #[test]
    fn nothing_configured_means_no_deadline() {
        let detector = Detector::new(&spec(), Instant::now());
        assert_eq!(detector.next_deadline(), None);
    }

    #[test]
    fn watchdog_deadline_moves_with_each_heartbeat() {
        let t0 = Instant::now();
        let mut d = Detector::new(
            &LivenessSpec {
                watchdog: Some(secs(5)),
                ..spec()
            },
            t0,
        );
        assert_eq!(
            d.next_deadline(),
            Some((t0 + secs(5), Expiry::Stall(StallSource::Notify)))
        );
        d.on_watchdog(t0 + secs(3));
        assert_eq!(d.next_deadline().map(|(at, _)| at), Some(t0 + secs(8)));
        // A timer that fires early (or a stale one) does not raise a stall.
        assert_eq!(
            d.expire(Expiry::Stall(StallSource::Notify), t0 + secs(6)),
            None
        );
        let verdict = d
            .expire(Expiry::Stall(StallSource::Notify), t0 + secs(8))
            .expect("stall");
        assert_eq!(verdict.deadline, t0 + secs(8));
        assert_eq!(verdict.last_beat, Some(t0 + secs(3)));
    }

    #[test]
    fn watchdog_usec_overrides_the_bound_and_restarts_the_watchdog() {
        let t0 = Instant::now();
        let mut d = Detector::new(&spec(), t0);
        d.set_watchdog(secs(2), t0 + secs(1));
        assert_eq!(d.watchdog(), Some(secs(2)));
        assert_eq!(
            d.next_deadline(),
            Some((t0 + secs(3), Expiry::Stall(StallSource::Notify)))
        );
    }

    #[test]
    fn warning_comes_first_once_per_silence() {
        let t0 = Instant::now();
        let mut d = Detector::new(
            &LivenessSpec {
                silence: Some(secs(10)),
                warn: Some(secs(4)),
                ..spec()
            },
            t0,
        );
        assert_eq!(
            d.next_deadline(),
            Some((t0 + secs(4), Expiry::Warn(StallSource::Output)))
        );
        assert!(
            d.expire(Expiry::Warn(StallSource::Output), t0 + secs(4))
                .is_some()
        );
        assert_eq!(
            d.next_deadline(),
            Some((t0 + secs(10), Expiry::Stall(StallSource::Output)))
        );
        // Output resumes: the warning may fire again for the next silence.
        d.on_output(t0 + secs(5));
        assert_eq!(
            d.next_deadline(),
            Some((t0 + secs(9), Expiry::Warn(StallSource::Output)))
        );
    }

    #[test]
    fn trigger_and_stopping_are_stalls() {
        let t0 = Instant::now();
        let mut d = Detector::new(&spec(), t0);
        d.on_stopping(t0 + secs(1));
        d.on_stopping(t0 + secs(2));
        assert_eq!(
            d.next_deadline(),
            Some((t0 + secs(11), Expiry::Stall(StallSource::Stopping)))
        );
        d.extend_exit_grace(secs(30), t0 + secs(5));
        assert_eq!(d.next_deadline().map(|(at, _)| at), Some(t0 + secs(35)));
        d.trigger(t0 + secs(6));
        assert_eq!(
            d.next_deadline(),
            Some((t0 + secs(6), Expiry::Stall(StallSource::Trigger)))
        );
    }

    #[test]
    fn missing_status_file_is_stale_only_after_the_bound() {
        let t0 = Instant::now();
        let path =
            std::env::temp_dir().join(format!("hangwatch-detector-missing-{}", std::process::id()));
        let mut d = Detector::new(
            &LivenessSpec {
                file: Some((path, secs(5))),
                ..spec()
            },
            t0,
        );
        assert_eq!(
            d.next_deadline(),
            Some((t0 + secs(5), Expiry::Stall(StallSource::File)))
        );
        assert!(
            d.expire(Expiry::Stall(StallSource::File), t0 + secs(4))
                .is_none()
        );
        assert!(
            d.expire(Expiry::Stall(StallSource::File), t0 + secs(5))
                .is_some()
        );
    }

    #[test]
    fn fresh_status_file_moves_the_deadline_instead_of_stalling() {
        let dir = std::env::temp_dir().join(format!("hangwatch-detector-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("status");
        let t0 = Instant::now();
        let mut d = Detector::new(
            &LivenessSpec {
                file: Some((path.clone(), secs(5))),
                ..spec()
            },
            t0,
        );
        std::fs::write(&path, "ok").expect("write");
        // The timer armed for t0+5 fires; the file was written just now, so no stall.
        let later = Instant::now() + secs(5);
        assert!(
            d.expire(Expiry::Stall(StallSource::File), later - secs(1))
                .is_none()
        );
        let (next, what) = d.next_deadline().expect("deadline");
        assert_eq!(what, Expiry::Stall(StallSource::File));
        // Modification times are coarse (a few ms), so the new deadline is about t0 + 5 s.
        assert!(next > t0 + secs(4), "deadline did not move with the file");
        assert!(d.last_beat(StallSource::File).is_some());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
