//! What wakes the run's loop: the sources it selects on, the timers armed for the phase, and
//! the one `select!` that turns the first ready source into a [`Wake`].

use std::future::Future;
use std::pin::Pin;

use hangwatch_process::timer::DeadlineTimer;
use hangwatch_process::{Signal, TreeStop};
use hangwatch_protocol::report::IncidentRecord;
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};

use super::stop::{Stopping, Survivors};
use super::{Phase, Run, RunError, io};
use crate::liveness::notify::{Datagram, NotifyError, NotifySocket};
use crate::liveness::output::Activity;
use crate::survivors::Look;

/// The signals hangwatch passes on to the program.
const FORWARDED: [Signal; 7] = [
    Signal(hangwatch_process::signal::RawSignal::SIGINT),
    Signal(hangwatch_process::signal::RawSignal::SIGTERM),
    Signal(hangwatch_process::signal::RawSignal::SIGHUP),
    Signal(hangwatch_process::signal::RawSignal::SIGQUIT),
    Signal(hangwatch_process::signal::RawSignal::SIGUSR1),
    Signal(hangwatch_process::signal::RawSignal::SIGUSR2),
    Signal(hangwatch_process::signal::RawSignal::SIGWINCH),
];

/// Streams for the forwarded signals, awaited as one.
pub(super) struct Incoming {
    streams: Vec<(Signal, SignalStream)>,
}

impl Incoming {
    pub(super) fn register() -> Result<Incoming, RunError> {
        let mut streams = Vec::with_capacity(FORWARDED.len());
        for sig in FORWARDED {
            let stream = signal(SignalKind::from_raw(sig.number()))
                .map_err(io("install signal handlers"))?;
            streams.push((sig, stream));
        }
        Ok(Incoming { streams })
    }

    async fn recv(&mut self) -> Signal {
        std::future::poll_fn(|cx| {
            for (sig, stream) in &mut self.streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*sig);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// What the loop waits on beside the program's output and what its phase holds.
pub(super) struct Sources {
    pub(super) sigchld: SignalStream,
    pub(super) incoming: Incoming,
    /// The notify socket, unless `--notify off`.
    pub(super) notify: Option<NotifySocket>,
    /// The `--timeout` deadline, armed while the program runs.
    pub(super) timeout: DeadlineTimer,
    /// The stop's grace, armed while a stop waits for it.
    pub(super) grace: DeadlineTimer,
    /// The earliest liveness deadline, armed while the program runs.
    pub(super) liveness: DeadlineTimer,
}

/// What woke the event loop.
pub(super) enum Wake {
    /// `SIGCHLD`: a child exited.
    Child,
    /// A process of the tree being stopped exited.
    TreeExit(std::io::Result<()>),
    /// The stop's grace ran out.
    GraceOver(std::io::Result<()>),
    /// The `--timeout` deadline passed.
    Deadline(std::io::Result<()>),
    /// hangwatch received a signal to forward or act on.
    Signal(Signal),
    /// A datagram on the notify socket.
    Notify(Result<Datagram, NotifyError>),
    /// Output from the program.
    Output(std::io::Result<Activity>),
    /// A liveness deadline passed.
    Liveness(std::io::Result<()>),
    /// The diagnosis before a stop is written (or failed, or ran out of time).
    Diagnosed(IncidentRecord),
    /// The look at the processes that outlived the grace is done: `KILL` them.
    Looked(Look),
}

/// The bounded diagnosis before a stop ([`crate::incident::bounded`]): it always resolves.
pub(super) type Diagnosis = Pin<Box<dyn Future<Output = IncidentRecord> + Send>>;

/// The look at a stop's survivors under way ([`crate::survivors::look`]).
pub(super) type Looking = Pin<Box<dyn Future<Output = Look> + Send>>;

impl Run<'_> {
    /// Arms the timers for the phase: the timeout and the stall deadlines only while the
    /// program runs, the grace only while a stop waits for it (not while its survivors are
    /// looked at).
    pub(super) fn arm(&mut self) -> Result<(), RunError> {
        let running = self.running();
        let (next_liveness, grace) = match &self.phase {
            Phase::Running { deferral, .. } => {
                let next = self.detector.next_deadline().filter(|_| running);
                // A deferred stall's deadline has passed: its recheck is next.
                let next = next.map(|(at, _)| match deferral {
                    Some(d) if at <= d.deadline => d.recheck,
                    _ => at,
                });
                (next, None)
            }
            Phase::Diagnosing(_) => (None, None),
            Phase::Stopping(stop) => match stop.survivors {
                Survivors::Looking(_) => (None, None),
                _ => (None, stop.tree.grace_deadline()),
            },
        };
        self.sources
            .timeout
            .set(self.deadline.filter(|_| running))
            .map_err(io("arm the timeout"))?;
        self.sources
            .grace
            .set(grace)
            .map_err(io("arm the grace timer"))?;
        // Heartbeats only move the deadline later: the timer is re-armed when it fires early,
        // not on every heartbeat.
        self.sources
            .liveness
            .ensure_by(next_liveness)
            .map_err(io("arm the stall timer"))?;
        Ok(())
    }

    /// Waits for the first ready source, polled in a fixed order (`biased`): exits first, then
    /// the timers, then what comes from outside, then the phase's own tasks.
    pub(super) async fn next(&mut self) -> Wake {
        let Run {
            sources,
            phase,
            pump,
            ..
        } = self;
        let Sources {
            sigchld,
            incoming,
            notify,
            timeout,
            grace,
            liveness,
        } = sources;
        let (tree, diagnosis, looking) = awaited(phase);
        tokio::select! {
            biased;
            _ = sigchld.recv() => Wake::Child,
            result = tree_exit(tree) => Wake::TreeExit(result),
            result = grace.fired() => Wake::GraceOver(result),
            result = timeout.fired() => Wake::Deadline(result),
            result = liveness.fired() => Wake::Liveness(result),
            sig = incoming.recv() => Wake::Signal(sig),
            datagram = notify_recv(notify.as_ref()) => Wake::Notify(datagram),
            activity = pump.activity() => Wake::Output(activity),
            record = diagnosed(diagnosis) => Wake::Diagnosed(record),
            look = looked(looking) => Wake::Looked(look),
        }
    }
}

/// What the phase holds to be awaited: the tree of a stop, a diagnosis, a look at survivors.
fn awaited(
    phase: &mut Phase,
) -> (
    Option<&TreeStop>,
    Option<&mut Diagnosis>,
    Option<&mut Looking>,
) {
    match phase {
        Phase::Running { .. } => (None, None, None),
        Phase::Diagnosing(diagnosing) => (None, Some(&mut diagnosing.task), None),
        Phase::Stopping(Stopping {
            tree, survivors, ..
        }) => match survivors {
            Survivors::Looking(look) => (Some(tree), None, Some(look)),
            _ => (Some(tree), None, None),
        },
    }
}

/// Resolves with the next datagram; never when there is no socket.
async fn notify_recv(socket: Option<&NotifySocket>) -> Result<Datagram, NotifyError> {
    match socket {
        Some(socket) => socket.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when a process of the tree being stopped exits; never when nothing is stopping.
async fn tree_exit(tree: Option<&TreeStop>) -> std::io::Result<()> {
    match tree {
        Some(tree) => tree.exited().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the diagnosis is done or its limit passed; never when none is under way.
async fn diagnosed(diagnosis: Option<&mut Diagnosis>) -> IncidentRecord {
    match diagnosis {
        Some(diagnosis) => diagnosis.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the look at a stop's survivors is done; never when none is under way.
async fn looked(looking: Option<&mut Looking>) -> Look {
    match looking {
        Some(look) => look.as_mut().await,
        None => std::future::pending().await,
    }
}
