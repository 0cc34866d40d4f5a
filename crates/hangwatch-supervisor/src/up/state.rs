//! A service's state: one value ([`Life`]) whose variants carry exactly the data that exists in
//! that state, so that a detector cannot outlive the run it watched, a stop cannot exist
//! without its cause and what follows it, and a reload's new definition waits only inside a
//! stop. The transitions between them are in [`super::machine`].

use std::time::Duration;

use hangwatch_config::Service;
use hangwatch_process::{ExitStatus, ProcessId, Scope, TreeStop};
use hangwatch_protocol::control::State;
use hangwatch_protocol::report::StopCause;
use tokio::time::Instant;

use super::policy::Ending;
use crate::liveness::detector::Detector;

/// Where a service is in its life. `S` is the handle of a stop in progress: a [`TreeStop`]
/// in the supervisor, a plain value in the transition tests (which touch no process).
#[derive(Debug)]
pub(crate) enum Life<S = TreeStop> {
    /// Not started: its dependencies are not all ready yet.
    Waiting,
    /// Started, not ready yet.
    Starting {
        /// Its program.
        main: Main,
        /// What watches it.
        watch: Watch,
        /// The readiness probe, for `ready = { tcp | http | exec }`.
        ready_probe: Option<ProbeClock>,
    },
    /// Started and ready: its dependents may run.
    Ready {
        /// Its program.
        main: Main,
        /// What watches it.
        watch: Watch,
    },
    /// Stalled (or over memory): a diagnosis runs, and the stop follows it.
    Diagnosing {
        /// Its program (it may exit meanwhile: `status` says so).
        main: Main,
        /// Why it will be stopped.
        cause: StopCause,
    },
    /// Its tree is being stopped.
    Stopping {
        /// Its program (reaped once `status` says so).
        main: Main,
        /// The stop.
        stop: Stop<S>,
    },
    /// Waiting out its backoff before a restart.
    Backoff {
        /// When it may start again.
        until: Instant,
    },
    /// Ended, and its policy does not restart it.
    Exited,
    /// Gave up: too many restarts, or a start that failed and is not retried.
    Failed,
    /// Stopped by the shutdown.
    Stopped,
    /// Stopped by `hangwatch stop`: down until `start` (the supervisor stays up for it).
    Held,
    /// Removed from the config by a reload; kept only so that its index stays valid.
    Removed,
}

/// A service's program.
#[derive(Debug, Clone)]
pub(crate) struct Main {
    /// Its identity (PID and start time).
    pub(crate) id: ProcessId,
    /// Its process group (it leads it).
    pub(crate) pgid: i32,
    /// When it started.
    pub(crate) started: Instant,
    /// `HANGWATCH_ID=…` as it appears in the environment of every process of its tree.
    pub(crate) marker: Vec<u8>,
    /// How it ended, once reaped.
    pub(crate) status: Option<ExitStatus>,
}

impl Main {
    /// Whether it has not been reaped yet.
    pub(crate) fn alive(&self) -> bool {
        self.status.is_none()
    }

    /// Every process of its tree, for a supervisor of PID `adopter`.
    pub(crate) fn scope(&self, adopter: i32) -> Scope {
        Scope::Service {
            adopter,
            group: self.pgid,
            marker: self.marker.clone(),
        }
    }

    /// How long it has run by `now`.
    pub(crate) fn uptime(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// What watches a running program for a stall. It exists only in the states that run
/// (`Starting`, `Ready`), so a stop or an exit takes it away with the state.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// The heartbeat deadlines (watchdog, status file, output silence).
    pub(crate) detector: Option<Detector>,
    /// The liveness probe, from readiness on.
    pub(crate) live_probe: Option<ProbeClock>,
    /// The next sample of the tree's memory, for a `memory_limit`.
    pub(crate) memory_check: Option<Instant>,
    /// The diagnosis begun a sampling window before the next stall deadline (see
    /// [`crate::incident::anticipate`]); dropped, and its readings with it, when a heartbeat
    /// moves the deadline.
    pub(crate) early: Option<crate::incident::Early>,
    /// A stall deadline that passed under host pressure and waits
    /// (`stall_defer_under_pressure`; see [`super::machine::stall_due`]).
    pub(crate) deferral: Option<Deferral>,
}

/// A stall that waits out host pressure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Deferral {
    /// The source whose deadline passed.
    pub(crate) source: hangwatch_protocol::report::StallSource,
    /// That deadline; a heartbeat moves the detector's past it, which clears the stall.
    pub(crate) deadline: Instant,
    /// The stop waits no later than this.
    pub(crate) until: Instant,
    /// The pressure is read again then.
    pub(crate) recheck: Instant,
    /// The highest pressure read during the deferral, percent.
    pub(crate) peak_pct: f64,
}

/// The clock of a probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProbeClock {
    /// The next attempt, unless one is in flight.
    pub(crate) next: Instant,
    /// Whether an attempt is under way.
    pub(crate) in_flight: bool,
    /// Readiness: the bound. Liveness: unused.
    pub(crate) give_up: Option<Instant>,
    /// Consecutive failures (liveness).
    pub(crate) failures: u32,
    /// Whether the last attempt could not be made on hangwatch's side (said once per spell).
    pub(crate) not_made: bool,
}

/// A stop of a service's tree.
#[derive(Debug)]
pub(crate) struct Stop<S> {
    /// Why it began.
    pub(crate) cause: StopCause,
    /// What follows once the tree is gone.
    pub(crate) then: Then,
    /// Where the stop is.
    pub(crate) tree: Tree<S>,
    /// A reload's new definition, applied once the tree is gone.
    pub(crate) pending: Option<Box<Service>>,
    /// The look at the processes that outlive the grace, before their `KILL`.
    pub(crate) look: Look,
}

/// Where the look at a stop's survivors is ([`crate::survivors`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Look {
    /// The grace has not run out.
    #[default]
    NotYet,
    /// The grace ran out and the survivors are being looked at; the `KILL` waits until
    /// `until` at most.
    Looking {
        /// The latest instant of the `KILL`.
        until: Instant,
    },
    /// Done, or skipped: `KILL` follows the grace at once.
    Done,
}

/// Where a stop is.
#[derive(Debug)]
pub(crate) enum Tree<S> {
    /// To be signalled at `at`: at once when the stop begins, later again when signalling
    /// failed (the stop stays, watched, and is retried: see [`super::machine::signal_failed`]).
    Due {
        /// When.
        at: Instant,
    },
    /// Signalled: its grace and escalation run.
    Signalled(S),
}

/// What follows a finished stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Apply the restart policy to this ending.
    Decide(Ending),
    /// Wait for the dependencies to be ready again, then start.
    Wait,
    /// Stay down (shutdown).
    Down,
    /// Stay down until a client starts it (`hangwatch stop`).
    Hold,
    /// Gone from the config (reload).
    Remove,
}

impl<S> Life<S> {
    /// Whether it can still change by itself.
    pub(crate) fn active(&self) -> bool {
        matches!(
            self,
            Life::Starting { .. }
                | Life::Ready { .. }
                | Life::Backoff { .. }
                | Life::Diagnosing { .. }
                | Life::Stopping { .. }
        )
    }

    /// Whether processes of it may be running.
    pub(crate) fn running(&self) -> bool {
        matches!(
            self,
            Life::Starting { .. }
                | Life::Ready { .. }
                | Life::Diagnosing { .. }
                | Life::Stopping { .. }
        )
    }

    /// Whether its program runs and is watched (`Starting` or `Ready`).
    pub(crate) fn up(&self) -> bool {
        matches!(self, Life::Starting { .. } | Life::Ready { .. })
    }

    /// Whether it is ready.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(self, Life::Ready { .. })
    }

    /// Its program, in every state that has one.
    pub(crate) fn main(&self) -> Option<&Main> {
        match self {
            Life::Starting { main, .. } | Life::Ready { main, .. } => Some(main),
            Life::Diagnosing { main, .. } | Life::Stopping { main, .. } => Some(main),
            _ => None,
        }
    }

    /// Its program while it has not been reaped.
    pub(crate) fn live_main(&self) -> Option<&Main> {
        self.main().filter(|m| m.alive())
    }

    /// What watches it, while it runs.
    pub(crate) fn watch(&self) -> Option<&Watch> {
        match self {
            Life::Starting { watch, .. } | Life::Ready { watch, .. } => Some(watch),
            _ => None,
        }
    }

    /// What watches it, while it runs.
    pub(crate) fn watch_mut(&mut self) -> Option<&mut Watch> {
        match self {
            Life::Starting { watch, .. } | Life::Ready { watch, .. } => Some(watch),
            _ => None,
        }
    }

    /// The stop in progress.
    pub(crate) fn stop(&self) -> Option<&Stop<S>> {
        match self {
            Life::Stopping { stop, .. } => Some(stop),
            _ => None,
        }
    }

    /// The stop in progress.
    pub(crate) fn stop_mut(&mut self) -> Option<&mut Stop<S>> {
        match self {
            Life::Stopping { stop, .. } => Some(stop),
            _ => None,
        }
    }

    /// The signalled tree of the stop in progress.
    pub(crate) fn tree_mut(&mut self) -> Option<&mut S> {
        match self {
            Life::Stopping {
                stop:
                    Stop {
                        tree: Tree::Signalled(tree),
                        ..
                    },
                ..
            } => Some(tree),
            _ => None,
        }
    }

    /// Whether a stop or a diagnosis (which a stop follows) is under way.
    pub(crate) fn stopping(&self) -> bool {
        matches!(self, Life::Stopping { .. } | Life::Diagnosing { .. })
    }

    /// Whether it is down for good until someone starts it (or a dependency comes back).
    pub(crate) fn down(&self) -> bool {
        matches!(
            self,
            Life::Exited | Life::Failed | Life::Stopped | Life::Held | Life::Removed
        )
    }

    /// The state as `hangwatch status` shows it.
    pub(crate) fn shown(&self) -> State {
        match self {
            Life::Waiting => State::Waiting,
            Life::Starting { .. } => State::Starting,
            Life::Ready { .. } => State::Ready,
            Life::Backoff { .. } => State::Backoff,
            Life::Diagnosing { .. } => State::Diagnosing,
            Life::Stopping { .. } => State::Stopping,
            Life::Exited => State::Exited,
            Life::Failed => State::Failed,
            Life::Stopped | Life::Held | Life::Removed => State::Stopped,
        }
    }
}
