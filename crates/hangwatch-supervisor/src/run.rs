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
//! - heartbeats ([`crate::liveness`]): notify datagrams and output bytes move the stall
//!   [`Detector`]'s deadline; one more timer fires at the earliest one. A warning records a
//!   snapshot and goes on; a stall records a snapshot and begins a stop;
//! - before a stall or timeout stop, a diagnosis ([`crate::incident`]) on a blocking thread: the
//!   loop goes on reaping and forwarding while it runs, the stop begins when it is written (or
//!   after its limit), and one more INT/TERM skips it;
//! - while a stop is under way: the pidfds of the tree (any exit) and the grace deadline.
//!
//! Beside the loop, a [`LeakWatch`] follows the tree for system objects it may leave: it takes
//! its snapshot before the program starts, looks at the tree when a stop begins, and audits
//! once the tree is gone (`--leaks`).
//!
//! The run is over when the program has been reaped and hangwatch has no child left at all. As
//! a subreaper, "no child" means no descendant either, so nothing is left behind: descendants
//! still alive when the program ends are leftovers, and are stopped the same way.
//!
//! No step sleeps or polls: every wake-up is a signal, a pidfd or a timer at a deadline.

use std::ffi::OsString;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use hangwatch_leaks::{LeakPolicy, LeakWatch};
use hangwatch_process::reap::{become_subreaper, has_children, reap_exited};
use hangwatch_process::timer::DeadlineTimer;
use hangwatch_process::{
    ExitStatus, ProgramCommand, Signal, SpawnError, SpawnOptions, StopPlan, TreeStop, spawn,
};
use hangwatch_protocol::exit_code;
use hangwatch_protocol::report::{
    EndReason, IncidentRecord, IncidentWhy, NotifySummary, Outcome, ProcessInfo, REPORT_VERSION,
    RunReport, StallRecord, StallSource, StopCause, StopRecord,
};

use crate::incident::DiagnoseSpec;
use crate::incident::Subject;
use crate::liveness::detector::{Detector, Expiry, LivenessSpec, Verdict};
use crate::liveness::notified;
use crate::liveness::notify::{Datagram, NotifyError, NotifySocket};
use crate::liveness::output::{Activity, OutputMode, capture};
use crate::survivors::Look;
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

/// Resolves with the next datagram; never when there is no socket.
async fn notify_recv(socket: Option<&NotifySocket>) -> Result<Datagram, NotifyError> {
    match socket {
        Some(socket) => socket.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when a process of the tree being stopped exits; never when nothing is stopping.
async fn tree_exit(stopping: Option<&Stopping>) -> std::io::Result<()> {
    match stopping {
        Some(stop) => stop.tree.exited().await,
        None => std::future::pending().await,
    }
}

/// A diagnosis under way, and the stop that waits for it.
struct Diagnosing {
    cause: StopCause,
    late_ms: Option<f64>,
    /// The bounded diagnosis ([`crate::incident::bounded`]): it always resolves.
    task: Pin<Box<dyn Future<Output = IncidentRecord> + Send>>,
}

/// Resolves when the diagnosis is done or its limit passed; never when none is under way.
async fn diagnosed(diagnosing: Option<&mut Diagnosing>) -> IncidentRecord {
    match diagnosing {
        Some(diagnosing) => diagnosing.task.as_mut().await,
        None => std::future::pending().await,
    }
}

/// A stop in progress and why it began.
struct Stopping {
    cause: StopCause,
    tree: TreeStop,
    late_ms: Option<f64>,
    /// What the look at the survivors found when the grace ran out, before their `KILL`
    /// ([`crate::survivors`]).
    looked: Option<Look>,
}

/// The look at a stop's survivors under way.
type Looking = Pin<Box<dyn Future<Output = Look> + Send>>;

/// Resolves when the look at a stop's survivors is done; never when none is under way.
async fn looked(looking: Option<&mut Looking>) -> Look {
    match looking {
        Some(look) => look.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Runs `spec` to the end: the program has exited or was stopped, and no descendant is left.
///
/// Must be called inside a current-thread tokio runtime on the thread that lives as long as the
/// process (the program's death signal follows that thread). Installs handlers for the forwarded
/// signals and `SIGCHLD`, and makes the process a subreaper.
pub async fn run(spec: RunSpec) -> Result<RunOutcome, RunError> {
    let mut command = ProgramCommand::from_argv(&spec.argv).ok_or(RunError::NoCommand)?;
    let argv_text: Vec<String> = spec
        .argv
        .iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();

    // Handlers first: a SIGCHLD before registration would be lost.
    let mut sigchld = signal(SignalKind::child()).map_err(io("install the SIGCHLD handler"))?;
    let mut incoming = Incoming::register()?;
    // The guardian's fork first; its intermediate child is reaped (below) while the rest of the
    // start goes on, before hangwatch becomes a subreaper.
    let mut notes = Vec::new();
    let run_token = crate::guard::run_token();
    let guardian_start = crate::guard::arm(crate::guard::RUN_ENV, &run_token, &mut notes);
    command
        .env
        .push(crate::guard::env_entry(crate::guard::RUN_ENV, &run_token));
    let own_pid = std::process::id() as i32;

    let notify = open_notify_socket(spec.notify, own_pid, &mut notes)?;
    let mut notify_summary = notify.as_ref().map(|socket| NotifySummary {
        socket: socket.env_value().to_string_lossy().into_owned(),
        watchdog_ms: spec.liveness.watchdog.map(millis),
        ..NotifySummary::default()
    });
    if let Some(socket) = &notify {
        command
            .env
            .push(("NOTIFY_SOCKET".into(), socket.env_value()));
        // Says whose socket NOTIFY_SOCKET is, so that a client such as the pytest plugin
        // speaks only to hangwatch (`hangwatch up` says it with HANGWATCH_SERVICE), never to
        // systemd, whose watchdog it must not pet.
        command
            .env
            .push(("HANGWATCH_PID".into(), own_pid.to_string().into()));
        if let Some(watchdog) = spec.liveness.watchdog {
            command.env.push((
                "WATCHDOG_USEC".into(),
                watchdog.as_micros().to_string().into(),
            ));
            command.pid_env = Some("WATCHDOG_PID".into());
        }
    }
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
    let mut report = RunReport {
        version: REPORT_VERSION,
        command: argv_text,
        pid: None,
        started_at: humantime::format_rfc3339_millis(started_wall).to_string(),
        ended_at: String::new(),
        duration_ms: 0.0,
        timeout_ms: spec.timeout.map(millis),
        outcome: Outcome {
            reason: EndReason::Exited,
            exit_code: 0,
            program: None,
            error: None,
            oom: None,
        },
        stop: None,
        stopped: Vec::new(),
        leftovers: Vec::new(),
        stall: None,
        warnings: Vec::new(),
        notify: None,
        incident: None,
        leaks: None,
        notes: Vec::new(),
    };

    let leaks = LeakWatch::start(own_pid, nix::unistd::geteuid().as_raw());
    // Before becoming a subreaper, so that the guardian is not re-parented to hangwatch.
    let mut guardian = crate::guard::settle(guardian_start, &mut notes);
    become_subreaper().map_err(io("become a child subreaper"))?;
    let options = SpawnOptions {
        foreground_tty: spec.foreground_tty,
        die_with_parent: true,
    };
    // Before the program starts: the kernel log from now on, to tell an OOM kill.
    let mut oom_watch = crate::oom::OomWatch::begin();
    let spawned = match spawn(command, options) {
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
                oom: None,
            };
            finish_times(&mut report, started, started_wall);
            report.notes = notes;
            if let Some(guardian) = guardian.take() {
                guardian.disarm(&[]);
            }
            return Ok(RunOutcome { report });
        }
    };
    pump.child_started();
    let main = spawned.id;
    leaks.note_started(main.pid);
    let stopper = Stopper {
        spec: &spec,
        leaks: &leaks,
        own_pid,
        program: main.pid,
        pgid: spawned.pgid,
    };
    report.pid = Some(main.pid);
    tracing::debug!(pid = main.pid, "program started");

    let mut deadline = spec.timeout.map(|t| started + t);
    let mut timeout_timer = DeadlineTimer::new().map_err(io("create a timer"))?;
    let mut grace_timer = DeadlineTimer::new().map_err(io("create a timer"))?;
    let mut liveness_timer = DeadlineTimer::new().map_err(io("create a timer"))?;
    let mut detector = Detector::new(&spec.liveness, started);
    let mut main_status: Option<ExitStatus> = None;
    let mut stopping: Option<Stopping> = None;
    let mut diagnosing: Option<Diagnosing> = None;
    // A stall deadline that passed under host pressure and waits (see `up::machine::stall_due`).
    let mut deferral: Option<crate::up::state::Deferral> = None;
    let mut said_no_pressure = false;
    let mut looking: Option<Looking> = None;
    let mut stop_requests = 0u32;
    let mut rescan = false;

    loop {
        // One rescan per wake-up that may have changed the tree (an exit); it also signals any
        // process born since the last look.
        if let Some(stop) = &mut stopping
            && std::mem::take(&mut rescan)
        {
            stop.tree.refresh().map_err(io("rescan the process tree"))?;
        }
        // Is the run over? Only when the program is reaped and no child of ours remains (and
        // a diagnosis under way is let finish first: its stop follows).
        if main_status.is_some() && diagnosing.is_none() {
            match &stopping {
                None => {
                    if !has_children().map_err(io("look for leftover children"))? {
                        break;
                    }
                    stopping = Some(stopper.begin(StopCause::Leftovers, None)?);
                    continue;
                }
                Some(stop) if !stop.tree.any_alive() => {
                    reap_into(&mut main_status, main.pid, &leaks)?;
                    if !has_children().map_err(io("look for children"))? {
                        break;
                    }
                    // Nothing alive but a child remains: a zombie not yet reported, or a
                    // process born after the scan. Look again before sleeping.
                    rescan = true;
                    tokio::task::yield_now().await;
                    continue;
                }
                Some(_) => {}
            }
        }

        let running = stopping.is_none() && main_status.is_none() && diagnosing.is_none();
        let next_liveness = detector
            .next_deadline()
            .filter(|_| running)
            .map(|(at, expiry)| match deferral {
                // A deferred stall's deadline has passed: its recheck is next.
                Some(d) if at <= d.deadline => (d.recheck, expiry),
                _ => (at, expiry),
            });
        timeout_timer
            .set(deadline.filter(|_| running))
            .map_err(io("arm the timeout"))?;
        grace_timer
            .set(
                stopping
                    .as_ref()
                    .filter(|_| looking.is_none())
                    .and_then(|s| s.tree.grace_deadline()),
            )
            .map_err(io("arm the grace timer"))?;
        // Heartbeats only move the deadline later: the timer is re-armed when it fires early,
        // not on every heartbeat.
        liveness_timer
            .ensure_by(next_liveness.map(|(at, _)| at))
            .map_err(io("arm the stall timer"))?;
        let wake = tokio::select! {
            biased;
            _ = sigchld.recv() => Wake::Child,
            result = tree_exit(stopping.as_ref()) => Wake::TreeExit(result),
            result = grace_timer.fired() => Wake::GraceOver(result),
            result = timeout_timer.fired() => Wake::Deadline(result),
            result = liveness_timer.fired() => Wake::Liveness(result),
            sig = incoming.recv() => Wake::Signal(sig),
            datagram = notify_recv(notify.as_ref()) => Wake::Notify(datagram),
            activity = pump.activity() => Wake::Output(activity),
            record = diagnosed(diagnosing.as_mut()) => Wake::Diagnosed(record),
            look = looked(looking.as_mut()) => Wake::Looked(look),
        };

        match wake {
            Wake::Child => {
                reap_into(&mut main_status, main.pid, &leaks)?;
                rescan = true;
            }
            Wake::TreeExit(result) => {
                result.map_err(io("wait for the process tree"))?;
                rescan = true;
            }
            Wake::GraceOver(result) => {
                result.map_err(io("wait for the grace timer"))?;
                if let Some(stop) = &mut stopping {
                    let survivors = stop.tree.survivors();
                    if stop.looked.is_none() && !stop.tree.escalated() && !survivors.is_empty() {
                        // Why they are still alive, before the KILL destroys the answer.
                        tracing::debug!("grace over, looking at the survivors");
                        let python = spec.diagnose.as_ref().is_none_or(|d| d.python);
                        looking = Some(Box::pin(crate::survivors::look(
                            survivors,
                            stop.tree.plan().signal,
                            python,
                        )));
                    } else {
                        tracing::debug!("grace over, sending KILL");
                        stop.tree.kill_now().map_err(io("kill the process tree"))?;
                    }
                }
            }
            Wake::Looked(look) => {
                if let Some(stop) = &mut stopping {
                    tracing::debug!(took = ?look.took, "survivors seen, sending KILL");
                    looking = None;
                    stop.looked = Some(look);
                    stop.tree.kill_now().map_err(io("kill the process tree"))?;
                }
            }
            Wake::Deadline(result) => {
                result.map_err(io("wait for the timeout"))?;
                let late_ms = deadline.map(|d| d.elapsed().as_secs_f64() * 1000.0);
                tracing::debug!(?late_ms, "timeout reached, stopping the program");
                stopper.begin_after_diagnosis(
                    StopCause::Timeout,
                    late_ms,
                    crate::incident::Additions {
                        output: pump.last_output(),
                        ..crate::incident::Additions::default()
                    },
                    &mut diagnosing,
                    &mut stopping,
                )?;
            }
            Wake::Liveness(result) => {
                result.map_err(io("wait for the stall timer"))?;
                let now = Instant::now();
                if let Some(d) = deferral {
                    let cleared = crate::up::machine::deferral_cleared(
                        &mut deferral,
                        detector.stall_deadline(d.source),
                        now,
                    );
                    say_effects(&cleared);
                }
                let Some((at, expiry)) = detector.next_deadline() else {
                    continue;
                };
                if at > now || deferral.is_some_and(|d| d.recheck > now && at <= d.deadline) {
                    // Armed for an older, earlier deadline: a heartbeat has moved it on.
                    continue;
                }
                let Some(verdict) = detector.expire(expiry, now) else {
                    if let Some(d) = deferral {
                        // The status file, looked at again, shows the heartbeat.
                        say_effects(&crate::up::machine::deferral_cleared(
                            &mut deferral,
                            detector.stall_deadline(d.source),
                            now,
                        ));
                    }
                    continue;
                };
                let mut deferred = None;
                if let Expiry::Stall(source) = verdict.expiry
                    && let Some(defer) = spec.stall_defer
                {
                    let pressure = match hangwatch_diagnose::pressure::host_now() {
                        Ok(pressure) => Some(pressure),
                        Err(why) => {
                            if !said_no_pressure {
                                said_no_pressure = true;
                                report.notes.push(hangwatch_protocol::report::Degraded {
                                    part: "stall-defer".to_owned(),
                                    note: format!(
                                        "{why}: the kernel reports no pressure stall \
                                         information, so --stall-defer-under-pressure defers \
                                         nothing"
                                    ),
                                });
                            }
                            None
                        }
                    };
                    match crate::up::machine::stall_due(
                        &mut deferral,
                        Some(&defer),
                        source,
                        verdict.deadline,
                        pressure,
                        now,
                    ) {
                        crate::up::machine::StallCall::Wait(effects) => {
                            say_effects(&effects);
                            continue;
                        }
                        crate::up::machine::StallCall::Stop { deferred: d } => deferred = d,
                    }
                }
                let status = notify_summary.as_ref().and_then(|n| n.status.clone());
                let mut record = stall_record(&verdict, started, now, status, own_pid);
                record.deferred = deferred;
                match verdict.expiry {
                    Expiry::Warn(_) => {
                        eprintln!("{}", crate::summary::warning(&record));
                        report.warnings.push(record);
                    }
                    Expiry::Stall(source) => {
                        tracing::debug!(source = source.as_str(), "stall, stopping the program");
                        stopper.begin_after_diagnosis(
                            StopCause::Stall,
                            None,
                            crate::incident::Additions {
                                output: pump.last_output(),
                                deferred,
                                ..crate::incident::Additions::default()
                            },
                            &mut diagnosing,
                            &mut stopping,
                        )?;
                        report.stall = Some(record);
                    }
                }
            }
            Wake::Notify(datagram) => {
                let datagram = datagram?;
                if running {
                    let now = Instant::now();
                    apply_datagram(
                        &datagram,
                        own_pid,
                        main.pid,
                        now,
                        started,
                        &mut detector,
                        notify_summary.as_mut(),
                        &mut deadline,
                    )?;
                }
            }
            Wake::Output(activity) => {
                let activity = activity.map_err(io("read the program's output"))?;
                if activity.stdout_bytes + activity.stderr_bytes > 0 {
                    detector.on_output(Instant::now());
                }
            }
            Wake::Diagnosed(record) => {
                if let Some(done) = diagnosing.take() {
                    tracing::debug!(took_ms = record.took_ms, "diagnosis done, stopping");
                    report.incident = Some(record);
                    stopping = Some(stopper.begin(done.cause, done.late_ms)?);
                }
            }
            Wake::Signal(sig) => {
                let terminating = sig == Signal::TERMINATE || sig == Signal::INTERRUPT;
                if sig == Signal(hangwatch_process::signal::RawSignal::SIGWINCH) {
                    pump.resize();
                }
                if terminating && let Some(skipped) = diagnosing.take() {
                    // Asked to stop while diagnosing: the stop will not wait for it.
                    tracing::debug!(%sig, "asked during the diagnosis: stopping now");
                    report.incident = Some(IncidentRecord {
                        error: Some(format!("skipped: {sig} arrived during the diagnosis")),
                        ..IncidentRecord::default()
                    });
                    stopping = Some(stopper.begin(skipped.cause, skipped.late_ms)?);
                } else if let Some(stop) = &mut stopping {
                    if terminating && stop.tree.grace_deadline().is_some() {
                        tracing::debug!(%sig, "asked again during a stop: KILL now");
                        looking = None;
                        stop.tree.kill_now().map_err(io("kill the process tree"))?;
                    }
                } else if main_status.is_none() {
                    if terminating {
                        stop_requests += 1;
                    }
                    if terminating && stop_requests >= 2 {
                        tracing::debug!(%sig, "asked twice: stopping the program");
                        stopping = Some(stopper.begin(StopCause::Request, None)?);
                    } else {
                        forward(sig, spawned.pgid);
                    }
                }
            }
        }
    }

    // Whatever the program wrote before it ended still reaches hangwatch's output: first read
    // what the pipes still hold, then let the writers pass it on.
    pump.drain(Duration::from_secs(2)).await;
    let last_output = pump.last_output();
    let output_stats = pump.finish(Duration::from_secs(2));
    if output_stats.bytes_dropped > 0 {
        tracing::warn!(
            dropped = output_stats.bytes_dropped,
            "output dropped: hangwatch's own output could not keep up"
        );
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
        Some(StopCause::Stall) => (EndReason::Stalled, exit_code::STALLED),
        Some(StopCause::Request) => (EndReason::StoppedOnRequest, status.shell_code()),
        _ => match status {
            ExitStatus::Exited(code) => (EndReason::Exited, code),
            ExitStatus::Signalled { .. } => (EndReason::Signalled, status.shell_code()),
        },
    };
    report.outcome.reason = reason;
    report.outcome.exit_code = code;
    if reason == EndReason::Signalled {
        report.outcome.oom = oom_watch.check(main, status);
    }
    if let Some(summary) = &mut notify_summary {
        summary.watchdog_ms = detector.watchdog().map(millis);
    }
    report.notify = notify_summary.filter(|n| n.datagrams > 0 || n.rejected > 0);

    // A leftovers stop that signalled nothing only waited for cleanup helpers to finish: the
    // program left nothing behind.
    let stopping =
        stopping.filter(|stop| stop.cause != StopCause::Leftovers || stop.tree.signalled_any());
    if let Some(stop) = stopping {
        let took_ms = stop.tree.began().elapsed().as_secs_f64() * 1000.0;
        let began_at_ms = (stop.tree.began() - started).as_secs_f64() * 1000.0;
        let plan = stop.tree.plan();
        report.stop = Some(StopRecord {
            cause: stop.cause,
            began_at_ms,
            late_ms: stop.late_ms,
            signal: plan.signal.name().to_owned(),
            grace_ms: millis(plan.grace),
            escalated_to_kill: stop.tree.escalated(),
            took_ms,
            survivors_look_ms: stop.looked.as_ref().map(|l| l.took.as_secs_f64() * 1000.0),
            survivors_incident: None,
        });
        report.stopped = stop.tree.into_records();
        if let Some(look) = stop.looked {
            for process in &mut report.stopped {
                process.survived = look
                    .survivors
                    .iter()
                    .find(|s| s.process.pid == process.process.pid && process.killed)
                    .map(|s| s.survival.clone());
            }
            if let (Some(diagnose), Some(record)) = (&spec.diagnose, report.stop.as_mut()) {
                record.survivors_incident = crate::incident::write_survivors(
                    &diagnose.dir,
                    &look,
                    IncidentWhy::Killed.as_str(),
                    last_output,
                );
            }
        }
        if stop.cause == StopCause::Leftovers {
            report.leftovers = report
                .stopped
                .iter()
                .map(|p| p.process.clone())
                .collect::<Vec<ProcessInfo>>();
        }
    }
    finish_times(&mut report, started, started_wall);
    let inotify = leaks.inotify_copy();
    let audit = leaks.finish(spec.leaks, report.leftovers.len());
    // What the leak audit could not do (no inotify watch, an unreadable directory) is in its
    // own record too; the notes gather every part that degraded in one place.
    for error in &audit.errors {
        // The same failure at the start and at the end is one note.
        if !notes
            .iter()
            .any(|n| n.part == "leak-audit" && n.note == *error)
        {
            notes.push(hangwatch_protocol::report::Degraded::new(
                "leak-audit",
                error.clone(),
            ));
        }
    }
    report.outcome.exit_code = hangwatch_leaks::exit_code(&audit, report.outcome.exit_code);
    report.leaks = Some(audit);
    // A diagnosis that could not be written (or taken) keeps its verdict in the report; the
    // stop did not wait for it beyond its limit.
    if let Some(error) = report.incident.as_ref().and_then(|i| i.error.as_ref()) {
        notes.push(hangwatch_protocol::report::Degraded::new(
            "incident",
            error.clone(),
        ));
    }
    // The diagnosis's readings that failed as a whole (no pressure, no Python stacks).
    if let Some(incident) = &report.incident {
        notes.extend(incident.degraded.iter().cloned());
    }
    report.notes = notes;
    // Everything the program started is gone: the guardian has nothing to do but close the
    // leak watch's inotify instance after hangwatch is gone (its last close is slow).
    if let Some(guardian) = guardian.take() {
        let handed: Vec<_> = inotify.iter().map(std::os::fd::AsFd::as_fd).collect();
        guardian.disarm(&handed);
    }
    drop(inotify);
    Ok(RunOutcome { report })
}

/// What every stop of a run needs, and the one place that begins them.
struct Stopper<'a> {
    spec: &'a RunSpec,
    leaks: &'a LeakWatch,
    own_pid: i32,
    program: i32,
    pgid: i32,
}

impl Stopper<'_> {
    /// Begins stopping the program's whole tree (see [`TreeStop`]), after a last look at what
    /// it holds.
    fn begin(&self, cause: StopCause, late_ms: Option<f64>) -> Result<Stopping, RunError> {
        self.leaks.observe();
        let tree = TreeStop::begin(self.spec.stop, self.own_pid, Some(self.pgid))
            .map_err(io("stop the program"))?;
        Ok(Stopping {
            cause,
            tree,
            late_ms,
            looked: None,
        })
    }

    /// For a stall or timeout: starts the diagnosis that precedes the stop when one is asked
    /// for (its end begins the stop), else begins the stop now.
    fn begin_after_diagnosis(
        &self,
        cause: StopCause,
        late_ms: Option<f64>,
        additions: crate::incident::Additions,
        diagnosing: &mut Option<Diagnosing>,
        stopping: &mut Option<Stopping>,
    ) -> Result<(), RunError> {
        let Some(diagnose) = self.spec.diagnose.clone() else {
            *stopping = Some(self.begin(cause, late_ms)?);
            return Ok(());
        };
        let subject = Subject::Descendants {
            own_pid: self.own_pid,
            program: self.program,
        };
        let reason = IncidentWhy::before_stop(cause).as_str().to_owned();
        *diagnosing = Some(Diagnosing {
            cause,
            late_ms,
            task: Box::pin(crate::incident::bounded(
                diagnose, subject, reason, additions,
            )),
        });
        Ok(())
    }
}

/// Creates the notify socket for a program of this hangwatch (`pid`). A path that cannot be had
/// falls back to an abstract socket, with a note.
fn open_notify_socket(
    mode: NotifyMode,
    pid: i32,
    notes: &mut Vec<hangwatch_protocol::report::Degraded>,
) -> Result<Option<NotifySocket>, RunError> {
    let nonce = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    match mode {
        NotifyMode::Off => Ok(None),
        NotifyMode::Abstract => Ok(Some(NotifySocket::bind_abstract(&format!(
            "hangwatch/run/{pid}/{nonce:x}"
        ))?)),
        NotifyMode::Path => {
            let (socket, note) = NotifySocket::bind_in_runtime_dir_or_abstract(
                &format!("run-{pid}.notify"),
                &format!("run/{pid}/{nonce:x}"),
                false,
            )?;
            notes.extend(note);
            Ok(Some(socket))
        }
    }
}

/// Applies one datagram from the notify socket, if its sender belongs to the program's tree.
#[expect(
    clippy::too_many_arguments,
    reason = "the loop's state, passed by field"
)]
fn apply_datagram(
    datagram: &Datagram,
    own_pid: i32,
    main_pid: i32,
    now: Instant,
    started: Instant,
    detector: &mut Detector,
    summary: Option<&mut NotifySummary>,
    deadline: &mut Option<Instant>,
) -> Result<(), RunError> {
    let Some(summary) = summary else {
        return Ok(());
    };
    let member = match datagram.sender_pid {
        // The program itself, not yet reaped: its PID cannot have been reused. This is the
        // common sender, checked without a system call.
        Some(pid) if pid == main_pid => true,
        // A descendant of hangwatch is the program's: hangwatch runs nothing else.
        Some(pid) => hangwatch_process::tree::is_descendant(pid, own_pid)
            .map_err(io("check the sender of a notify datagram"))?,
        None => false,
    };
    if !member {
        tracing::debug!(sender = ?datagram.sender_pid, "notify datagram from outside the tree, ignored");
        summary.rejected += 1;
        return Ok(());
    }
    let at_ms = (now - started).as_secs_f64() * 1000.0;
    let asks = notified::apply(datagram, summary, Some(detector), at_ms, now);
    if let Some(extra) = asks.extend
        && summary.stopping_at_ms.is_none()
        && let Some(at) = deadline
    {
        // As systemd's RuntimeMaxSec=: the run may last at least `extra` from now.
        *at = (*at).max(now + extra);
    }
    Ok(())
}

/// The record of a passed deadline, with a snapshot of the tree taken now.
fn stall_record(
    verdict: &Verdict,
    started: Instant,
    now: Instant,
    status: Option<String>,
    own_pid: i32,
) -> StallRecord {
    let source = match verdict.expiry {
        Expiry::Warn(source) | Expiry::Stall(source) => source,
    };
    let snapshot = hangwatch_diagnose::snapshot_tree(own_pid).unwrap_or_else(|err| {
        tracing::debug!(%err, "no snapshot");
        Vec::new()
    });
    StallRecord {
        source,
        bound_ms: millis(verdict.bound),
        detected_at_ms: (now - started).as_secs_f64() * 1000.0,
        late_ms: now
            .saturating_duration_since(verdict.deadline)
            .as_secs_f64()
            * 1000.0,
        last_heartbeat_ago_ms: match source {
            StallSource::Trigger | StallSource::Stopping => None,
            _ => verdict
                .last_beat
                .map(|at| now.saturating_duration_since(at).as_secs_f64() * 1000.0),
        },
        status,
        snapshot,
        deferred: None,
    }
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}

/// Reaps every exited child; records the program's status when it is among them.
fn reap_into(
    main_status: &mut Option<ExitStatus>,
    main_pid: i32,
    leaks: &LeakWatch,
) -> Result<(), RunError> {
    for (pid, status) in reap_exited().map_err(io("reap exited children"))? {
        leaks.note_reaped(pid);
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

/// Says on stderr what a deferral of a stall for host pressure did (its `up` events, in the
/// words of `up`'s console).
fn say_effects(effects: &[crate::up::machine::Effect]) {
    for effect in effects {
        if let crate::up::machine::Effect::Emit(event) = effect {
            let record = hangwatch_protocol::event::EventRecord {
                at: String::new(),
                service: Some("program".to_owned()),
                event: event.clone(),
            };
            if let Some(text) = crate::up::describe(&record) {
                eprintln!("hangwatch: {text}");
            }
        }
    }
}
