//! What each notify message means, in one place for `hangwatch run` and `hangwatch up`.
//!
//! [`apply`] records a datagram from a program's tree in its [`NotifySummary`] and moves its
//! [`Detector`]; what only the front can do (a readiness it tracks, a deadline or a stop's
//! grace it owns) comes back as [`Asks`]. Whether a datagram belongs to a program's tree at
//! all is [`sender_in_tree`]'s question, asked before.

use std::time::Duration;

use hangwatch_protocol::report::NotifySummary;
use tokio::time::Instant;

use super::detector::Detector;
use super::notify::{Datagram, NotifyMessage};

/// What a datagram asks of the front, beyond what [`apply`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Asks {
    /// `READY=1` came: the program says its start-up is done.
    pub ready: bool,
    /// `EXTEND_TIMEOUT_USEC=` came: the current phase needs at least this much longer from now
    /// (systemd: the start-up's bound while starting, the stop's grace while being stopped,
    /// the run's bound otherwise). When the program had said `STOPPING=1`, [`apply`] has
    /// already extended its exit grace too.
    pub extend: Option<Duration>,
}

/// Records an accepted datagram in `summary` (`at_ms`: milliseconds since the program
/// started), moves `detector`, and says what else it asks.
pub fn apply(
    datagram: &Datagram,
    summary: &mut NotifySummary,
    mut detector: Option<&mut Detector>,
    at_ms: f64,
    now: Instant,
) -> Asks {
    let mut asks = Asks::default();
    summary.datagrams += 1;
    summary.ignored += datagram.ignored as u64;
    for message in &datagram.messages {
        match message {
            NotifyMessage::Ready => {
                summary.ready_at_ms.get_or_insert(at_ms);
                if let Some(detector) = detector.as_deref_mut() {
                    detector.on_watchdog(now);
                }
                asks.ready = true;
            }
            NotifyMessage::Watchdog => {
                if let Some(detector) = detector.as_deref_mut() {
                    detector.on_watchdog(now);
                }
            }
            NotifyMessage::WatchdogTrigger => {
                if let Some(detector) = detector.as_deref_mut() {
                    detector.trigger(now);
                }
            }
            NotifyMessage::WatchdogUsec(bound) => {
                if let Some(detector) = detector.as_deref_mut() {
                    detector.set_watchdog(*bound, now);
                }
            }
            NotifyMessage::ExtendTimeoutUsec(extra) => {
                if summary.stopping_at_ms.is_some()
                    && let Some(detector) = detector.as_deref_mut()
                {
                    detector.extend_exit_grace(*extra, now);
                }
                asks.extend = Some(asks.extend.map_or(*extra, |e| e.max(*extra)));
            }
            NotifyMessage::Stopping => {
                summary.stopping_at_ms.get_or_insert(at_ms);
                if let Some(detector) = detector.as_deref_mut() {
                    detector.on_stopping(now);
                }
            }
            NotifyMessage::Status(text) => summary.status = Some(text.clone()),
            NotifyMessage::MainPid(pid) => summary.main_pid = Some(*pid),
            NotifyMessage::Errno(errno) => summary.errno = Some(*errno),
            // Understood by the parser, no use here (RELOADING=1).
            _ => summary.ignored += 1,
        }
    }
    asks
}

/// The program whose tree `sender` is in: the first of `sender` and its ancestors (below
/// `own_pid`) that `is_program` accepts. A sender that has already exited is in no tree.
pub fn sender_in_tree(
    sender: i32,
    own_pid: i32,
    is_program: impl FnMut(i32) -> bool,
) -> std::io::Result<Option<i32>> {
    hangwatch_process::tree::find_ancestor(sender, own_pid, is_program)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::liveness::detector::LivenessSpec;

    fn datagram(messages: Vec<NotifyMessage>) -> Datagram {
        Datagram {
            sender_pid: Some(1234),
            messages,
            ignored: 0,
        }
    }

    fn detector(now: Instant) -> Detector {
        let spec = LivenessSpec {
            watchdog: Some(Duration::from_secs(1)),
            file: None,
            silence: None,
            warn: None,
            exit_grace: Duration::from_secs(2),
        };
        Detector::new(&spec, now)
    }

    #[tokio::test(start_paused = true)]
    async fn every_message_is_recorded_or_asked() {
        let now = Instant::now();
        let mut summary = NotifySummary::default();
        let mut detector = detector(now);
        let asks = apply(
            &datagram(vec![
                NotifyMessage::Ready,
                NotifyMessage::Status("warming".into()),
                NotifyMessage::MainPid(77),
                NotifyMessage::Errno(5),
                NotifyMessage::ExtendTimeoutUsec(Duration::from_secs(3)),
                NotifyMessage::ExtendTimeoutUsec(Duration::from_secs(1)),
                NotifyMessage::Reloading,
            ]),
            &mut summary,
            Some(&mut detector),
            12.0,
            now,
        );
        assert!(asks.ready);
        assert_eq!(asks.extend, Some(Duration::from_secs(3)));
        assert_eq!(summary.ready_at_ms, Some(12.0));
        assert_eq!(summary.status.as_deref(), Some("warming"));
        assert_eq!(summary.main_pid, Some(77));
        assert_eq!(summary.errno, Some(5));
        assert_eq!(summary.datagrams, 1);
        assert_eq!(summary.ignored, 1, "RELOADING=1 has no use and is counted");
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeats_move_the_deadline_and_watchdog_usec_changes_it() {
        let now = Instant::now();
        let mut summary = NotifySummary::default();
        let mut detector = detector(now);
        let first = detector.next_deadline().map(|(at, _)| at);
        tokio::time::advance(Duration::from_millis(500)).await;
        let later = Instant::now();
        apply(
            &datagram(vec![NotifyMessage::Watchdog]),
            &mut summary,
            Some(&mut detector),
            500.0,
            later,
        );
        let moved = detector.next_deadline().map(|(at, _)| at);
        assert!(moved > first, "a heartbeat moves the deadline later");
        apply(
            &datagram(vec![NotifyMessage::WatchdogUsec(Duration::from_secs(10))]),
            &mut summary,
            Some(&mut detector),
            500.0,
            later,
        );
        assert_eq!(detector.watchdog(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_sender_itself_or_an_ancestor_is_found() {
        let me = std::process::id() as i32;
        // This process is the sender; its parent (the test runner) is "the program".
        let parent = nix::unistd::getppid().as_raw();
        let found = sender_in_tree(me, -1, |pid| pid == parent).expect("walk");
        assert_eq!(found, Some(parent));
        let found = sender_in_tree(me, -1, |pid| pid == me).expect("walk");
        assert_eq!(found, Some(me));
        // Never above hangwatch itself.
        let found = sender_in_tree(me, parent, |pid| pid == parent).expect("walk");
        assert_eq!(found, None);
    }
}
