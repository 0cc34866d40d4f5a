//! A guarded one-shot run: the engine behind `hangwatch run`.
//!
//! # Theory of operation
//!
//! One task owns everything (`Run`) and `select!`s over (`wake.rs`):
//!
//! - `SIGCHLD`: reap every exited child ([`reap_exited`]); one of them may be the program;
//! - the `--timeout` deadline (a [`DeadlineTimer`], exact to microseconds): begin a
//!   [`TreeStop`](hangwatch_process::TreeStop);
//! - signals sent to hangwatch: forwarded to the program's process group; a second `INT`/`TERM`
//!   begins a stop, and one more during a stop sends `KILL` at once;
//! - heartbeats ([`crate::liveness`]): notify datagrams (`notify.rs`) and output bytes move the
//!   stall [`Detector`]'s deadline; one more timer fires at the earliest one (`stall.rs`). A
//!   warning records a snapshot and goes on; a stall records a snapshot and begins a stop;
//! - before a stall or timeout stop, a diagnosis ([`crate::incident`]) on a blocking thread: the
//!   loop goes on reaping and forwarding while it runs, the stop begins when it is written (or
//!   after its limit), and one more INT/TERM skips it;
//! - while a stop is under way (`stop.rs`): the pidfds of the tree (any exit) and the grace
//!   deadline.
//!
//! Where the run is, is one `Phase`: running, diagnosing, or stopping, each carrying its own
//! data. A run only moves forward through them (a stop without a diagnosis skips the middle
//! one; a program that ends alone, leaving nothing, never leaves the first), so a diagnosis
//! and a stop are never both under way, and the look at a stop's survivors lives in its stop.
//!
//! Beside the loop, a [`LeakWatch`] follows the tree for system objects it may leave: it takes
//! its snapshot before the program starts, looks at the tree when a stop begins, and audits
//! once the tree is gone (`--leaks`).
//!
//! The run is over when the program has been reaped and hangwatch has no child left at all. As
//! a subreaper, "no child" means no descendant either, so nothing is left behind: descendants
//! still alive when the program ends are leftovers, and are stopped the same way. The report
//! is then put together (`report.rs`).
//!
//! No step sleeps or polls: every wake-up is a signal, a pidfd or a timer at a deadline.

mod notify;
mod report;
mod stall;
mod stop;
mod wake;

use std::ffi::OsString;
use std::time::{Duration, SystemTime};

use hangwatch_leaks::{LeakPolicy, LeakWatch};
use hangwatch_process::reap::{become_subreaper, has_children, reap_exited};
use hangwatch_process::spawn::Foreground;
use hangwatch_process::timer::DeadlineTimer;
use hangwatch_process::{ExitStatus, ProgramCommand, Signal, SpawnOptions, StopPlan, spawn};
use hangwatch_protocol::report::{NotifySummary, RunReport, StopCause};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use crate::incident::DiagnoseSpec;
use crate::liveness::detector::{Detector, LivenessSpec};
use crate::liveness::notify::NotifyError;
use crate::liveness::output::{OutputMode, OutputPump, capture};
use crate::up::state::Deferral;
use stop::{Diagnosing, Stopper, Stopping};
use wake::{Incoming, Sources, Wake};

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
    /// Heartbeat sources and their bounds.
    pub liveness: LivenessSpec,
    /// How to offer the notify socket.
    pub notify: NotifyMode,
    /// How the program's stdout and stderr are connected.
    pub output: OutputMode,
    /// Diagnose a stalled or timed-out program before stopping it; `None` stops at once.
    pub diagnose: Option<DiagnoseSpec>,
    /// What to do about objects the program leaves behind.
    pub leaks: LeakPolicy,
    /// Let a heartbeat stall wait while the host is under CPU or memory pressure, bounded.
    pub stall_defer: Option<hangwatch_config::StallDefer>,
}

/// Where the notify socket lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyMode {
    /// A socket file in a private directory (`$XDG_RUNTIME_DIR/hangwatch` or
    /// `/tmp/hangwatch-UID`).
    #[default]
    Path,
    /// An abstract socket (`@hangwatch/…`), for programs that cannot see hangwatch's filesystem.
    Abstract,
    /// No `NOTIFY_SOCKET` at all.
    Off,
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
    /// failure to start) or the program left objects behind; `None` when the program simply
    /// exited.
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
    /// The notify socket could not be created.
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

fn io(about: &'static str) -> impl FnOnce(std::io::Error) -> RunError {
    move |source| RunError::Io { about, source }
}

/// Runs `spec` to the end: the program has exited or was stopped, and no descendant is left.
///
/// Must be called inside a current-thread tokio runtime on the thread that lives as long as the
/// process (the program's death signal follows that thread). Installs handlers for the forwarded
/// signals and `SIGCHLD`, and makes the process a subreaper.
pub async fn run(spec: RunSpec) -> Result<RunOutcome, RunError> {
    let mut command = ProgramCommand::from_argv(&spec.argv).ok_or(RunError::NoCommand)?;

    // Handlers first: a SIGCHLD before registration would be lost.
    let sigchld = signal(SignalKind::child()).map_err(io("install the SIGCHLD handler"))?;
    let incoming = Incoming::register()?;
    // The guardian's fork first; its intermediate child is reaped (below) while the rest of the
    // start goes on, before hangwatch becomes a subreaper.
    let mut notes = Vec::new();
    let run_token = crate::guard::run_token();
    let guardian_start = crate::guard::arm(crate::guard::RUN_ENV, &run_token, &mut notes);
    command
        .env
        .push(crate::guard::env_entry(crate::guard::RUN_ENV, &run_token));
    let own_pid = std::process::id() as i32;

    let socket = notify::open_notify_socket(spec.notify, own_pid, &mut notes)?;
    let notify_summary = notify::offer(socket.as_ref(), &spec.liveness, own_pid, &mut command);
    let (child_output, mut pump) = match capture(spec.output) {
        Ok(capture) => capture,
        // No pseudo-terminal to be had (none left, or no /dev/ptmx): the program writes to
        // hangwatch's own output as it is; it may buffer more, and the output-silence bound
        // then has no output to watch.
        Err(err) if spec.output == OutputMode::Pty => {
            notes.push(hangwatch_protocol::report::Degraded::new(
                "terminal",
                format!(
                    "cannot open a pseudo-terminal ({err}); the program writes to hangwatch's \
                     own output directly"
                ),
            ));
            capture(OutputMode::Inherit).map_err(io("capture the program's output"))?
        }
        Err(err) => return Err(io("capture the program's output")(err)),
    };
    if let Some(output) = child_output {
        command.stdout = Some(output.stdout);
        command.stderr = Some(output.stderr);
    }

    let started_wall = SystemTime::now();
    let started = Instant::now();
    let mut report = report::blank(&spec, started_wall);

    let leaks = LeakWatch::start(own_pid, nix::unistd::geteuid().as_raw());
    // Before becoming a subreaper, so that the guardian is not re-parented to hangwatch.
    let guardian = crate::guard::settle(guardian_start, &mut notes);
    become_subreaper().map_err(io("become a child subreaper"))?;
    let options = SpawnOptions {
        foreground_tty: spec.foreground_tty,
        die_with_parent: true,
    };
    // Before the program starts: the kernel log from now on, to tell an OOM kill.
    let oom = crate::oom::OomWatch::begin();
    let spawned = match spawn(command, options) {
        Ok(spawned) => spawned,
        Err(err) => {
            let times = (started, started_wall);
            return Ok(report::failed_to_start(
                report, &err, times, notes, guardian,
            ));
        }
    };
    pump.child_started();
    let main = spawned.id;
    leaks.note_started(main.pid);
    report.pid = Some(main.pid);
    tracing::debug!(pid = main.pid, "program started");

    let sources = Sources {
        sigchld,
        incoming,
        notify: socket,
        timeout: DeadlineTimer::new().map_err(io("create a timer"))?,
        grace: DeadlineTimer::new().map_err(io("create a timer"))?,
        liveness: DeadlineTimer::new().map_err(io("create a timer"))?,
    };
    let mut run = Run {
        spec: &spec,
        stopper: Stopper {
            spec: &spec,
            leaks: &leaks,
            own_pid,
            program: main.pid,
            pgid: spawned.pgid,
        },
        leaks: &leaks,
        started,
        report,
        sources,
        pump,
        foreground: spawned.foreground,
        notify: notify_summary,
        deadline: spec.timeout.map(|t| started + t),
        detector: Detector::new(&spec.liveness, started),
        main,
        oom,
        main_status: None,
        phase: Phase::Running {
            stop_requests: 0,
            deferral: None,
        },
        said_no_pressure: false,
        rescan: false,
    };
    run.watch().await?;
    let (report, sources) = run.conclude().await?;
    let times = (started, started_wall);
    let outcome = report::seal(report, times, leaks, spec.leaks, notes, guardian);
    drop(sources);
    Ok(outcome)
}

/// Where the run is. Each variant carries what exists only in it, so that a diagnosis and a
/// stop cannot both be under way, and the request count and a deferred stall go with the
/// running program.
enum Phase {
    /// The program runs (or has just ended, and no stop has begun).
    Running {
        /// `INT`/`TERM` received: the first is forwarded, the second begins a stop.
        stop_requests: u32,
        /// A stall deadline that passed under host pressure and waits (see
        /// [`crate::up::machine::stall_due`]).
        deferral: Option<Deferral>,
    },
    /// A stall or timeout is being diagnosed; its stop begins when the diagnosis is done.
    Diagnosing(Diagnosing),
    /// The program's tree is being stopped; the run ends with this phase.
    Stopping(Stopping),
}

/// Everything the loop owns between the program's start and its report.
struct Run<'a> {
    spec: &'a RunSpec,
    stopper: Stopper<'a>,
    leaks: &'a LeakWatch,
    /// When the program started.
    started: Instant,
    /// The report, filled in as the run goes.
    report: RunReport,
    /// What the loop waits on, beside the program's output and the phase.
    sources: Sources,
    pump: OutputPump,
    /// Set when the program was given the terminal; given back before the report is printed.
    foreground: Option<Foreground>,
    /// What the notify socket received, when there is one.
    notify: Option<NotifySummary>,
    /// The `--timeout` deadline; the program may move it later (`EXTEND_TIMEOUT_USEC=`).
    deadline: Option<Instant>,
    detector: Detector,
    /// The program.
    main: hangwatch_process::ProcessId,
    /// The kernel log since the program started: whether a KILL from outside was the OOM
    /// killer's.
    oom: crate::oom::OomWatch,
    /// How the program ended, once reaped.
    main_status: Option<ExitStatus>,
    phase: Phase,
    /// Whether the note that no pressure can be read has been written (once a run).
    said_no_pressure: bool,
    /// Whether the tree being stopped may have changed since it was last scanned.
    rescan: bool,
}

/// What the loop does after looking at whether the run is over.
enum Settled {
    /// The run is over.
    Over,
    /// Look again before waiting.
    Again,
    /// Wait for the next wake-up.
    Wait,
}

impl Run<'_> {
    /// The loop: until the run is over, wait for one wake-up and handle it.
    async fn watch(&mut self) -> Result<(), RunError> {
        loop {
            match self.settle().await? {
                Settled::Over => return Ok(()),
                Settled::Again => continue,
                Settled::Wait => {}
            }
            self.arm()?;
            let wake = self.next().await;
            self.handle(wake)?;
        }
    }

    /// Whether the program runs and is watched: no diagnosis or stop has begun, and it has not
    /// been reaped.
    fn running(&self) -> bool {
        matches!(self.phase, Phase::Running { .. }) && self.main_status.is_none()
    }

    /// Is the run over? Only when the program is reaped and no child of ours remains (and a
    /// diagnosis under way is let finish first: its stop follows). A program that ended with
    /// children left begins the leftovers stop.
    async fn settle(&mut self) -> Result<Settled, RunError> {
        // One rescan per wake-up that may have changed the tree (an exit); it also signals any
        // process born since the last look.
        if let Phase::Stopping(stop) = &mut self.phase
            && std::mem::take(&mut self.rescan)
        {
            stop.tree.refresh().map_err(io("rescan the process tree"))?;
        }
        if self.main_status.is_none() {
            return Ok(Settled::Wait);
        }
        match &self.phase {
            Phase::Diagnosing(_) => Ok(Settled::Wait),
            Phase::Running { .. } => {
                if !has_children().map_err(io("look for leftover children"))? {
                    return Ok(Settled::Over);
                }
                self.phase = Phase::Stopping(self.stopper.begin(StopCause::Leftovers, None)?);
                Ok(Settled::Again)
            }
            Phase::Stopping(stop) if !stop.tree.any_alive() => {
                self.reap()?;
                if !has_children().map_err(io("look for children"))? {
                    return Ok(Settled::Over);
                }
                // Nothing alive but a child remains: a zombie not yet reported, or a process
                // born after the scan. Look again before sleeping.
                self.rescan = true;
                tokio::task::yield_now().await;
                Ok(Settled::Again)
            }
            Phase::Stopping(_) => Ok(Settled::Wait),
        }
    }

    /// Handles one wake-up.
    fn handle(&mut self, wake: Wake) -> Result<(), RunError> {
        match wake {
            Wake::Child => {
                self.reap()?;
                self.rescan = true;
            }
            Wake::TreeExit(result) => {
                result.map_err(io("wait for the process tree"))?;
                self.rescan = true;
            }
            Wake::GraceOver(result) => {
                result.map_err(io("wait for the grace timer"))?;
                self.grace_over()?;
            }
            Wake::Looked(look) => self.survivors_seen(look)?,
            Wake::Deadline(result) => {
                result.map_err(io("wait for the timeout"))?;
                self.timed_out()?;
            }
            Wake::Liveness(result) => {
                result.map_err(io("wait for the stall timer"))?;
                self.liveness_due()?;
            }
            Wake::Notify(datagram) => {
                let datagram = datagram?;
                if self.running() {
                    self.apply_datagram(&datagram, Instant::now())?;
                }
            }
            Wake::Output(activity) => {
                let activity = activity.map_err(io("read the program's output"))?;
                if activity.stdout_bytes + activity.stderr_bytes > 0 {
                    self.detector.on_output(Instant::now());
                }
            }
            Wake::Diagnosed(record) => self.diagnosed(record)?,
            Wake::Signal(sig) => self.signalled(sig)?,
        }
        Ok(())
    }

    /// Reaps every exited child; records the program's status when it is among them.
    fn reap(&mut self) -> Result<(), RunError> {
        for (pid, status) in reap_exited().map_err(io("reap exited children"))? {
            self.leaks.note_reaped(pid);
            if pid == self.stopper.program {
                tracing::debug!(pid, ?status, "program exited");
                self.main_status = Some(status);
            } else {
                tracing::debug!(pid, ?status, "reaped a descendant");
            }
        }
        Ok(())
    }
}

/// Passes `sig` on to the program's process group.
fn forward(sig: Signal, pgid: i32) {
    tracing::debug!(%sig, pgid, "forwarding");
    if let Err(err) = hangwatch_process::signal::signal_group(pgid, sig) {
        tracing::debug!(%err, "forwarding failed");
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}
