//! A guarded one-shot run: the engine behind `hangwatch run`.
//!
//! # Theory of operation
//!
//! One task owns everything and `select!`s over:
//!
//! - `SIGCHLD`: reap every exited child ([`reap_exited`]); one of them may be the program;
//! - the `--timeout` deadline (a [`DeadlineTimer`], exact to microseconds): begin a
//!   [`TreeStop`];
//! - signals sent to hangwatch: forwarded to the program's process group; a second `INT`/`TERM`
//!   begins a stop, and one more during a stop sends `KILL` at once;
//! - while a stop is under way: the pidfds of the tree (any exit) and the grace deadline.
//!
//! The run is over when the program has been reaped and hangwatch has no child left at all. As
//! a subreaper, "no child" means no descendant either, so nothing is left behind: descendants
//! still alive when the program ends are leftovers, and are stopped the same way.
//!
//! No step sleeps or polls: every wake-up is a signal, a pidfd or a timer at a deadline.

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use hangwatch_process::reap::{become_subreaper, has_children, reap_exited};
use hangwatch_process::timer::DeadlineTimer;
use hangwatch_process::{
    ExitStatus, ProgramCommand, Signal, SpawnError, SpawnOptions, StopPlan, TreeStop, spawn,
};
use hangwatch_protocol::exit_code;
use hangwatch_protocol::report::{
    EndReason, Outcome, ProcessInfo, REPORT_VERSION, RunReport, StopCause, StopRecord,
};
use tokio::signal::unix::{Signal as SignalStream, SignalKind, signal};
use tokio::time::Instant;

/// What to run and how to guard it.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The program and its arguments.
    pub argv: Vec<OsString>,
    /// Stop the program once it has run this long.
    pub timeout: Option<Duration>,
    /// How to stop it (signal, grace).
    pub stop: StopPlan,
    /// Give the program the terminal when hangwatch has it (see [`SpawnOptions`]).
    pub foreground_tty: bool,
}

/// How a run ended, with its report.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The full record.
    pub report: RunReport,
}

impl RunOutcome {
    /// The exit code hangwatch returns.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        self.report.outcome.exit_code
    }

    /// A one-line human summary when hangwatch had to intervene (stop, kill, leftovers,
    /// failure to start); `None` when the program simply exited.
    #[must_use]
    pub fn summary(&self) -> Option<String> {
        crate::summary::summarize(&self.report)
    }
}

/// hangwatch itself could not do its job (exit code 125).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// An operating-system call failed.
    #[error("failed to {about}: {source}")]
    Io {
        /// What was being done.
        about: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No command was given.
    #[error("no command given")]
    NoCommand,
}

fn io(about: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
    move |source| RunError::Io { about, source }
}

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
struct Incoming {
    streams: Vec<(Signal, SignalStream)>,
}

impl Incoming {
    fn register() -> Result<Incoming, RunError> {
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

/// What woke the event loop.
enum Wake {
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
}

/// Resolves when a process of the tree being stopped exits; never when nothing is stopping.
async fn tree_exit(stopping: Option<&Stopping>) -> std::io::Result<()> {
    match stopping {
        Some(stop) => stop.tree.exited().await,
        None => std::future::pending().await,
    }
}

/// A stop in progress and why it began.
struct Stopping {
    cause: StopCause,
    tree: TreeStop,
    late_ms: Option<f64>,
}

/// Runs `spec` to the end: the program has exited or was stopped, and no descendant is left.
///
/// Must be called inside a current-thread tokio runtime on the thread that lives as long as the
/// process (the program's death signal follows that thread). Installs handlers for the forwarded
/// signals and `SIGCHLD`, and makes the process a subreaper.
pub async fn run(spec: RunSpec) -> Result<RunOutcome, RunError> {
    let command = ProgramCommand::from_argv(&spec.argv).ok_or(RunError::NoCommand)?;
    let argv_text: Vec<String> = spec
        .argv
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();

    // Handlers first: a SIGCHLD before registration would be lost.
    let mut sigchld = signal(SignalKind::child()).map_err(io("install the SIGCHLD handler"))?;
    let mut incoming = Incoming::register()?;
    become_subreaper().map_err(io("become a child subreaper"))?;
    let own_pid = std::process::id() as i32;

    let started_wall = SystemTime::now();
    let started = Instant::now();
    let mut report = RunReport {
        version: REPORT_VERSION,
        command: argv_text,
        pid: None,
        started_at: humantime::format_rfc3339_millis(started_wall).to_string(),
        ended_at: String::new(),
        duration_ms: 0.0,
        timeout_ms: spec
            .timeout
            .map(|t| t.as_millis().try_into().unwrap_or(u64::MAX)),
        outcome: Outcome {
            reason: EndReason::Exited,
            exit_code: 0,
            program: None,
            error: None,
        },
        stop: None,
        stopped: Vec::new(),
        leftovers: Vec::new(),
    };

    let options = SpawnOptions {
        foreground_tty: spec.foreground_tty,
        die_with_parent: true,
    };
    let spawned = match spawn(&command, options) {
        Ok(spawned) => spawned,
        Err(err) => {
            let code = match &err {
                SpawnError::NotFound { .. } => exit_code::NOT_FOUND,
                SpawnError::NotExecutable { .. } => exit_code::NOT_EXECUTABLE,
                _ => exit_code::HANGWATCH_FAILED,
            };
            report.outcome = Outcome {
                reason: EndReason::FailedToStart,
                exit_code: code,
                program: None,
                error: Some(err.to_string()),
            };
            finish_times(&mut report, started, started_wall);
            return Ok(RunOutcome { report });
        }
    };
    let main = spawned.id;
    report.pid = Some(main.pid);
    tracing::debug!(pid = main.pid, "program started");

    let deadline = spec.timeout.map(|t| started + t);
    let mut timeout_timer = DeadlineTimer::new().map_err(io("create a timer"))?;
    let mut grace_timer = DeadlineTimer::new().map_err(io("create a timer"))?;
    let mut main_status: Option<ExitStatus> = None;
    let mut stopping: Option<Stopping> = None;
    let mut stop_requests = 0u32;

    loop {
        // Is the run over? Only when the program is reaped and no child of ours remains.
        if main_status.is_some() {
            match &mut stopping {
                None => {
                    if !has_children().map_err(io("look for leftover children"))? {
                        break;
                    }
                    let tree = TreeStop::begin(spec.stop, own_pid, Some(spawned.pgid))
                        .map_err(io("stop leftover processes"))?;
                    stopping = Some(Stopping {
                        cause: StopCause::Leftovers,
                        tree,
                        late_ms: None,
                    });
                    continue;
                }
                Some(stop) => {
                    let alive = stop.tree.refresh().map_err(io("rescan the process tree"))?;
                    if !alive {
                        reap_into(&mut main_status, main.pid)?;
                        if !has_children().map_err(io("look for children"))? {
                            break;
                        }
                        // Nothing alive but a child remains: a zombie not yet reported, or a
                        // process born after the scan. Look again before sleeping.
                        tokio::task::yield_now().await;
                        continue;
                    }
                }
            }
        }

        let running = stopping.is_none() && main_status.is_none();
        timeout_timer
            .set(deadline.filter(|_| running))
            .map_err(io("arm the timeout"))?;
        grace_timer
            .set(stopping.as_ref().and_then(|s| s.tree.grace_deadline()))
            .map_err(io("arm the grace timer"))?;
        let wake = tokio::select! {
            biased;
            _ = sigchld.recv() => Wake::Child,
            result = tree_exit(stopping.as_ref()) => Wake::TreeExit(result),
            result = grace_timer.fired() => Wake::GraceOver(result),
            result = timeout_timer.fired() => Wake::Deadline(result),
            sig = incoming.recv() => Wake::Signal(sig),
        };

        match wake {
            Wake::Child => {
                reap_into(&mut main_status, main.pid)?;
                if let Some(stop) = &mut stopping {
                    stop.tree.refresh().map_err(io("rescan the process tree"))?;
                }
            }
            Wake::TreeExit(result) => {
                result.map_err(io("wait for the process tree"))?;
                if let Some(stop) = &mut stopping {
                    stop.tree.refresh().map_err(io("rescan the process tree"))?;
                }
            }
            Wake::GraceOver(result) => {
                result.map_err(io("wait for the grace timer"))?;
                if let Some(stop) = &mut stopping {
                    tracing::debug!("grace over, sending KILL");
                    stop.tree.kill_now().map_err(io("kill the process tree"))?;
                }
            }
            Wake::Deadline(result) => {
                result.map_err(io("wait for the timeout"))?;
                let late_ms = deadline.map(|d| d.elapsed().as_secs_f64() * 1000.0);
                let tree = TreeStop::begin(spec.stop, own_pid, Some(spawned.pgid))
                    .map_err(io("stop the program"))?;
                tracing::debug!(?late_ms, "timeout reached, stopping the program");
                stopping = Some(Stopping {
                    cause: StopCause::Timeout,
                    tree,
                    late_ms,
                });
            }
            Wake::Signal(sig) => {
                let terminating = sig == Signal::TERMINATE || sig == Signal::INTERRUPT;
                if let Some(stop) = &mut stopping {
                    if terminating && stop.tree.grace_deadline().is_some() {
                        tracing::debug!(%sig, "asked again during a stop: KILL now");
                        stop.tree.kill_now().map_err(io("kill the process tree"))?;
                    }
                } else if main_status.is_none() {
                    if terminating {
                        stop_requests += 1;
                    }
                    if terminating && stop_requests >= 2 {
                        tracing::debug!(%sig, "asked twice: stopping the program");
                        let tree = TreeStop::begin(spec.stop, own_pid, Some(spawned.pgid))
                            .map_err(io("stop the program"))?;
                        stopping = Some(Stopping {
                            cause: StopCause::Request,
                            tree,
                            late_ms: None,
                        });
                    } else {
                        forward(sig, spawned.pgid);
                    }
                }
            }
        }
    }

    // The terminal goes back to hangwatch before anything is printed on it.
    drop(spawned.foreground);

    let status = main_status.ok_or_else(|| RunError::Io {
        about: "learn the program's exit status",
        source: std::io::Error::other("the program was never reaped"),
    })?;
    report.outcome.program = Some(status.to_record());
    let (reason, code) = match stopping.as_ref().map(|s| s.cause) {
        Some(StopCause::Timeout) => (EndReason::TimedOut, exit_code::TIMED_OUT),
        Some(StopCause::Request) => (EndReason::StoppedOnRequest, status.shell_code()),
        _ => match status {
            ExitStatus::Exited(code) => (EndReason::Exited, code),
            ExitStatus::Signalled { .. } => (EndReason::Signalled, status.shell_code()),
        },
    };
    report.outcome.reason = reason;
    report.outcome.exit_code = code;

    if let Some(stop) = stopping {
        let took_ms = stop.tree.began().elapsed().as_secs_f64() * 1000.0;
        let began_at_ms = (stop.tree.began() - started).as_secs_f64() * 1000.0;
        let plan = stop.tree.plan();
        report.stop = Some(StopRecord {
            cause: stop.cause,
            began_at_ms,
            late_ms: stop.late_ms,
            signal: plan.signal.name().to_owned(),
            grace_ms: plan.grace.as_millis().try_into().unwrap_or(u64::MAX),
            escalated_to_kill: stop.tree.escalated(),
            took_ms,
        });
        report.stopped = stop.tree.into_records();
        if stop.cause == StopCause::Leftovers {
            report.leftovers = report
                .stopped
                .iter()
                .map(|p| p.process.clone())
                .collect::<Vec<ProcessInfo>>();
        }
    }
    finish_times(&mut report, started, started_wall);
    Ok(RunOutcome { report })
}

/// Reaps every exited child; records the program's status when it is among them.
fn reap_into(main_status: &mut Option<ExitStatus>, main_pid: i32) -> Result<(), RunError> {
    for (pid, status) in reap_exited().map_err(io("reap exited children"))? {
        if pid == main_pid {
            tracing::debug!(pid, ?status, "program exited");
            *main_status = Some(status);
        } else {
            tracing::debug!(pid, ?status, "reaped a descendant");
        }
    }
    Ok(())
}

/// Passes `sig` on to the program's process group.
fn forward(sig: Signal, pgid: i32) {
    tracing::debug!(%sig, pgid, "forwarding");
    if let Err(err) = hangwatch_process::signal::signal_group(pgid, sig) {
        tracing::debug!(%err, "forwarding failed");
    }
}

fn finish_times(report: &mut RunReport, started: Instant, started_wall: SystemTime) {
    let elapsed = started.elapsed();
    report.duration_ms = elapsed.as_secs_f64() * 1000.0;
    report.ended_at = humantime::format_rfc3339_millis(started_wall + elapsed).to_string();
}
