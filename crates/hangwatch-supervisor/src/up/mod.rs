//! The supervisor: the engine behind `hangwatch up`.
//!
//! # Theory of operation
//!
//! One task on one thread owns every service and `select!`s over:
//!
//! - `SIGCHLD`: reap every exited child; a service's program, an `exec` probe, or a descendant;
//! - `INT`/`TERM` to hangwatch: begin the shutdown (a second one kills what is left at once);
//! - one notify socket shared by every service (`READY=1`, `WATCHDOG=1`…), each datagram
//!   attributed to a service by its sender's PID;
//! - the services' output (a small reader task per pipe sends chunks through a bounded
//!   channel), which goes to each service's log file and the console, and counts as the
//!   output-silence heartbeat; probe results, finished diagnoses and leak audits arrive on the
//!   same channel;
//! - one exit watch (an epoll set of pidfds) shared by every tree being stopped;
//! - one deadline timer armed at the earliest deadline of any service: a backoff ending, a
//!   probe due, a liveness deadline, a stop's grace, the shutdown bound.
//!
//! After each wake-up the loop reaps, refreshes every stop in progress from one shared read of
//! hangwatch's subtree in `/proc`, acts on the deadlines that passed, and then *settles*: starts each waiting service
//! whose dependencies are ready, and during a shutdown begins the stop of each service whose
//! dependents are all down. Nothing sleeps or polls, except the memory limit, which has no event
//! to wake on without cgroups and is sampled once a second for the services that set one.
//!
//! # Which processes are a service's
//!
//! Each program leads its own process group, and gets `HANGWATCH_ID=<instance>/<service>/<n>`
//! in its environment. hangwatch is a subreaper, so a descendant that escaped with `setsid` and a
//! double fork is adopted by hangwatch: it has left the group but kept the environment, and a
//! stop ([`Scope::Service`]) finds it by that entry. Every service's program also dies with
//! hangwatch (`PR_SET_PDEATHSIG`, set from this thread, which lives as long as hangwatch), and
//! a later `hangwatch up` on the same state directory kills any survivor of this instance (see
//! [`crate::state::instance`]).

mod control;
mod output;
mod policy;
mod requests;

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hangwatch_config::{Check, Config, OnGiveUp, Readiness};
use hangwatch_leaks::{LeakWatch, Part, PartFound};
use hangwatch_process::exit_watch::ExitWatch;
use hangwatch_process::reap::{become_subreaper, has_children, reap_exited};
use hangwatch_process::timer::DeadlineTimer;
use hangwatch_process::tree::ProcessTable;
use hangwatch_process::{
    ExitStatus, ProcessId, ProgramCommand, RunAs, Scope, Signal, SpawnOptions, StopPlan, TreeStop,
    spawn,
};
use hangwatch_protocol::control::{LastExit, Reply, Request, Welcome};
use hangwatch_protocol::event::{Event, EventRecord};
use hangwatch_protocol::report::{
    IncidentRecord, LeakPolicy, ProcessInfo, ProgramStatus, StallSource,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::incident::DiagnoseSpec;
use crate::liveness::detector::{Detector, Expiry, LivenessSpec};
use crate::liveness::notify::{Datagram, NotifyError, NotifyMessage, NotifySocket};
use crate::state::{
    Console, EventLog, INSTANCE_ENV, InstanceFile, InstanceRecord, LineSplitter, LogFile, StateDir,
    StateError, Stream, record,
};
use policy::{Decision, Ending, Restarts};

/// What to supervise and how to show it.
#[derive(Debug)]
pub struct UpSpec {
    /// The checked config.
    pub config: Config,
    /// What goes to hangwatch's stdout.
    pub view: View,
    /// The sampling window of a diagnosis before a stop.
    pub diagnose_sample: Duration,
    /// Written `started\n` and closed once no service is waiting or starting any more (each
    /// is ready, running, failed, backing off or ended); closed without a word if the
    /// supervisor ends first. `hangwatch up --detach` waits on it.
    pub ready_fd: Option<OwnedFd>,
    /// Serve root on the control socket too, not only the supervisor's own user.
    pub allow_root_control: bool,
}

/// What `hangwatch up` prints in the foreground.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The services' output with a name prefix, and hangwatch's events in words.
    Lines {
        /// Colour the names.
        color: bool,
    },
    /// The event log's JSON lines.
    Json,
    /// Nothing (everything still goes to the state directory).
    Quiet,
}

/// How the supervisor ended.
#[derive(Debug, Clone)]
pub struct UpOutcome {
    /// 0 after a requested shutdown or when every service ended well; 1 when a service gave
    /// up with `on_give_up = "shutdown"` or the services ended with a failure.
    pub exit_code: i32,
    /// Why it shut down.
    pub reason: String,
    /// Services whose processes all exited within their grace.
    pub clean: Vec<String>,
    /// Services that had a process killed.
    pub killed: Vec<String>,
    /// How long the shutdown took.
    pub shutdown: Duration,
}

/// The supervisor could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpError {
    /// Another hangwatch holds the state directory.
    #[error("{dir} is in use by another hangwatch{}", pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy {
        /// The state directory.
        dir: PathBuf,
        /// The holder's PID, as it wrote it.
        pid: Option<i32>,
    },
    /// An operating-system call failed.
    #[error("failed to {about}: {source}")]
    Io {
        /// What was being done.
        about: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The notify socket could not be created.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// The HTTP endpoint could not start.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

fn io_err(about: &'static str) -> impl FnOnce(io::Error) -> UpError {
    move |source| UpError::Io { about, source }
}

/// What the helpers of the loop send it.
pub(crate) enum Msg {
    /// A chunk of a service's output; empty at end of file.
    Output {
        service: usize,
        generation: u32,
        stream: Stream,
        bytes: Vec<u8>,
    },
    /// A TCP or HTTP probe finished.
    Probe {
        service: usize,
        generation: u32,
        ready: bool,
        result: Result<(), String>,
    },
    /// A diagnosis before a stop is written (or failed, or was abandoned).
    Diagnosed {
        service: usize,
        generation: u32,
        record: IncidentRecord,
    },
    /// A request from the control socket. `written` resolves once the reply is on the wire
    /// (the end of `down` waits for it before the process exits).
    Control {
        request: Request,
        reply: oneshot::Sender<Reply>,
        written: oneshot::Receiver<()>,
    },
    /// The leak audit of a service's tree, gone, is done (`None`: it failed or took too long;
    /// the final audit covers its objects).
    Leaks {
        service: usize,
        found: Option<PartFound>,
    },
    /// [alert] An `[[alert]]` hook did not do its job; the event to emit.
    Alert {
        service: Option<String>,
        event: Event,
    },
    /// A diagnosis asked for with `hangwatch diagnose NAME` is written.
    Inspected {
        service: usize,
        record: IncidentRecord,
        reply: oneshot::Sender<Reply>,
    },
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Not started: its dependencies are not all ready yet.
    Waiting,
    /// Started, not ready yet.
    Starting,
    /// Started and ready.
    Ready,
    /// Waiting out its backoff before a restart.
    Backoff { until: Instant },
    /// Stalled (or over memory); a diagnosis runs before the stop.
    Diagnosing { cause: Cause },
    /// Its tree is being stopped (see the service's `stop`).
    Stopping,
    /// Ended, and its policy does not restart it.
    Exited,
    /// Gave up (too many restarts).
    Failed,
    /// Stopped by the shutdown.
    Stopped,
    /// Stopped by `hangwatch stop`: down until `start` (and the supervisor stays up for it).
    Held,
    /// Removed from the config by a reload; kept only so that its index stays valid.
    Removed,
}

impl Phase {
    /// Whether it can still change by itself.
    fn active(self) -> bool {
        matches!(
            self,
            Phase::Starting
                | Phase::Ready
                | Phase::Backoff { .. }
                | Phase::Diagnosing { .. }
                | Phase::Stopping
        )
    }

    /// Whether processes of it may be running.
    fn running(self) -> bool {
        matches!(
            self,
            Phase::Starting | Phase::Ready | Phase::Diagnosing { .. } | Phase::Stopping
        )
    }
}

/// Why hangwatch stops a service's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A liveness source missed its deadline.
    Stall,
    /// Its memory passed `memory_limit`.
    Memory,
    /// It did not become ready in time.
    NotReady,
    /// A dependency restarts and it declared `restart_with_dependency`.
    Dependency,
    /// The supervisor shuts down.
    Shutdown,
    /// Its program exited; what it left behind is stopped.
    Leftovers,
    /// A client asked (`stop`, `restart`).
    Requested,
    /// A reload changed or removed it.
    Reload,
}

impl Cause {
    fn as_str(self) -> &'static str {
        match self {
            Cause::Stall => "stall",
            Cause::Memory => "memory",
            Cause::NotReady => "not-ready",
            Cause::Dependency => "dependency",
            Cause::Shutdown => "shutdown",
            Cause::Leftovers => "leftovers",
            Cause::Requested => "requested",
            Cause::Reload => "reload",
        }
    }
}

/// What follows a finished stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
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

/// A service's program.
#[derive(Debug)]
struct Main {
    id: ProcessId,
    pgid: i32,
    started: Instant,
    marker: Vec<u8>,
    status: Option<ExitStatus>,
}

/// A stop of a service's tree in progress.
#[derive(Debug)]
struct ActiveStop {
    cause: Cause,
    then: Then,
    tree: TreeStop,
}

/// The clock of a probe.
#[derive(Debug, Clone, Copy)]
struct ProbeClock {
    /// The next attempt, unless one is in flight.
    next: Instant,
    in_flight: bool,
    /// Readiness: the bound. Liveness: unused.
    give_up: Option<Instant>,
    /// Consecutive failures (liveness).
    failures: u32,
}

/// One service and everything hangwatch keeps about it.
struct Svc {
    cfg: hangwatch_config::Service,
    deps: Vec<usize>,
    plan: StopPlan,
    phase: Phase,
    generation: u32,
    main: Option<Main>,
    stop: Option<ActiveStop>,
    restarts: Restarts,
    detector: Option<Detector>,
    ready_probe: Option<ProbeClock>,
    live_probe: Option<ProbeClock>,
    last_probe_error: Option<String>,
    memory_check: Option<Instant>,
    log: Option<LogFile>,
    split: [LineSplitter; 2],
    status_text: Option<String>,
    last_ending: Option<Ending>,
    killed_at_shutdown: Option<bool>,
    /// How its last program ended, for `hangwatch status`.
    last_exit: Option<LastExit>,
    /// Its latest incident file.
    last_incident: Option<PathBuf>,
    /// A reload's new definition, applied once the running program is stopped.
    pending: Option<hangwatch_config::Service>,
}

/// An `exec` probe in flight.
struct ExecProbe {
    service: usize,
    generation: u32,
    ready: bool,
    pgid: i32,
    deadline: Instant,
}

/// Runs the supervisor until it has shut down. Must be called inside a current-thread tokio
/// runtime on the thread that lives as long as the process (the programs' death signal follows
/// it).
pub async fn up(spec: UpSpec) -> Result<UpOutcome, UpError> {
    // Descriptors per service (pipes, pidfds, logs) would exhaust the usual 1024 at a few
    // hundred services; the programs get the original limit back before exec.
    match hangwatch_process::raise_open_files_limit() {
        Ok(limit) => tracing::debug!(soft = limit.soft, hard = limit.hard, "open files raised"),
        Err(err) => tracing::warn!(%err, "cannot raise the limit of open files"),
    }
    let mut sup = Supervisor::new(spec)?;
    sup.run().await
}

/// The whole state of the loop.
struct Supervisor {
    config: Config,
    view: View,
    own_pid: i32,
    token: String,
    state: StateDir,
    events: EventLog,
    console: Option<Console>,
    services: Vec<Svc>,
    notify: NotifySocket,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    watch: Arc<ExitWatch>,
    timer: DeadlineTimer,
    /// The leak audit of the whole supervisor; taken by the final audit.
    leaks: Option<LeakWatch>,
    /// Audits of services' trees under way (see [`Supervisor::audit_leaks`]).
    leak_audits: usize,
    diagnose: DiagnoseSpec,
    exec_probes: HashMap<i32, ExecProbe>,
    /// The scan of `/proc` for this wake-up, taken when first needed.
    table: Option<ProcessTable>,
    rescan: bool,
    shutdown: Option<Shutdown>,
    instance_dirty: bool,
    instance: InstanceRecord,
    instance_file: Option<InstanceFile>,
    /// The control socket; dropped (and its file removed) at the very end.
    control: Option<control::ControlSocket>,
    access: control::Access,
    /// Clients waiting for a service to be up or down.
    waiters: Vec<requests::Waiter>,
    /// Clients waiting for the end of the shutdown.
    down_waiters: Vec<(oneshot::Sender<Reply>, oneshot::Receiver<()>)>,
    /// See [`UpSpec::ready_fd`].
    ready_fd: Option<OwnedFd>,
    began: Instant,
    // [http] What the HTTP endpoint shows beyond a status reply; `None` when HTTP is off.
    telemetry: Option<Arc<crate::http::Telemetry>>,
    // [http] The endpoint; dropped (closed) with the supervisor.
    http: Option<crate::http::HttpServer>,
    // [alert] The `[[alert]]` hooks; `None` without any. A cell because `emit` takes `&self`.
    alerts: Option<std::cell::RefCell<crate::alert::Alerts>>,
}

/// A shutdown in progress.
struct Shutdown {
    reason: String,
    began: Instant,
    deadline: Instant,
    exit_code: i32,
    killing: bool,
}

impl Supervisor {
    fn new(spec: UpSpec) -> Result<Supervisor, UpError> {
        let config = spec.config;
        let state = StateDir::open(&config.state_dir).map_err(|err| match err {
            StateError::Busy { pid } => UpError::Busy {
                dir: config.state_dir.clone(),
                pid,
            },
            StateError::Io { source, .. } => UpError::Io {
                about: "open the state directory",
                source,
            },
        })?;
        let events = EventLog::open(
            &state.events_path(),
            config.events_max_size,
            config.events_keep,
        )
        .map_err(io_err("open the event log"))?;
        let own_pid = std::process::id() as i32;
        let instance = InstanceRecord::for_this_process().map_err(io_err("name this instance"))?;
        let token = instance.token.clone();
        let name_width = config
            .services
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0)
            .max("hangwatch".len());
        let console = match spec.view {
            View::Lines { color } => Some(Console::new(color, name_width)),
            View::Json => Some(Console::new(false, name_width)),
            View::Quiet => None,
        };
        // Programs running as another user must be able to reach the notify socket; a datagram
        // still counts only for the service its sender belongs to (see `bind_in_runtime_dir`).
        let all_users =
            nix::unistd::geteuid().is_root() && config.services.iter().any(|s| s.user.is_some());
        let notify = NotifySocket::bind_in_runtime_dir(&format!("up-{own_pid}.notify"), all_users)?;
        let (tx, rx) = mpsc::channel(256);
        // [alert]
        let alerts = (!config.alerts.is_empty()).then(|| {
            std::cell::RefCell::new(crate::alert::Alerts::new(
                &config.alerts,
                tx.clone(),
                state.logs_dir(),
            ))
        });
        let names: HashMap<&str, usize> = config
            .services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let logs_dir = state.logs_dir();
        let services = config
            .services
            .iter()
            .map(|cfg| Svc::new(cfg.clone(), &logs_dir, &names))
            .collect();
        let diagnose = DiagnoseSpec {
            sample: spec.diagnose_sample,
            ..DiagnoseSpec::in_dir(state.incidents_dir())
        };
        Ok(Supervisor {
            own_pid,
            token,
            events,
            console,
            services,
            notify,
            tx,
            rx,
            watch: Arc::new(ExitWatch::new().map_err(io_err("create an exit watch"))?),
            timer: DeadlineTimer::new().map_err(io_err("create a timer"))?,
            leaks: Some(LeakWatch::start(own_pid, nix::unistd::geteuid().as_raw())),
            leak_audits: 0,
            diagnose,
            exec_probes: HashMap::new(),
            table: None,
            rescan: false,
            shutdown: None,
            instance_dirty: false,
            instance,
            instance_file: None,
            control: None,
            access: control::Access {
                uid: nix::unistd::geteuid().as_raw(),
                root: spec.allow_root_control,
            },
            waiters: Vec::new(),
            down_waiters: Vec::new(),
            ready_fd: spec.ready_fd,
            began: Instant::now(),
            // [http]
            telemetry: config
                .http
                .as_ref()
                .map(|_| Arc::new(crate::http::Telemetry::new())),
            http: None,
            alerts,
            view: spec.view,
            config,
            state,
        })
    }

    async fn run(&mut self) -> Result<UpOutcome, UpError> {
        // Handlers first: a SIGCHLD before registration would be lost.
        let mut sigchld = signal(SignalKind::child()).map_err(io_err("handle SIGCHLD"))?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(io_err("handle SIGINT"))?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(io_err("handle SIGTERM"))?;
        let mut sighup = signal(SignalKind::hangup()).map_err(io_err("handle SIGHUP"))?;
        become_subreaper().map_err(io_err("become a child subreaper"))?;

        self.emit(
            None,
            Event::Up {
                version: hangwatch_protocol::event::EVENT_VERSION,
                pid: self.own_pid,
                config: self.config.path.display().to_string(),
                services: self.services.len(),
            },
        );
        self.kill_previous_instance().await;
        // On disk before any process carries the token.
        self.instance_file = Some(
            InstanceFile::create(&self.state.instance_path(), &self.instance)
                .map_err(io_err("write the instance record"))?,
        );
        let welcome = Welcome {
            version: hangwatch_protocol::control::VERSION,
            pid: self.own_pid,
            instance: self.token.clone(),
            config: self.config.path.clone(),
            state_dir: self.state.path().to_path_buf(),
        };
        self.control = Some(
            control::ControlSocket::bind(
                &self.state.socket_path(),
                self.access,
                welcome,
                self.tx.clone(),
            )
            .map_err(io_err("listen on the control socket"))?,
        );
        // [http] Served beside the control socket, on this runtime; see `crate::http`.
        if let (Some(config), Some(telemetry)) = (&self.config.http, &self.telemetry) {
            self.http = Some(
                crate::http::start(crate::http::HttpSpec {
                    config,
                    tx: self.tx.clone(),
                    telemetry: telemetry.clone(),
                    state_dir: self.state.path(),
                    incidents_dir: self.state.incidents_dir(),
                    own_pid: self.own_pid,
                })
                .await?,
            );
        }

        loop {
            // A scan of /proc is good for one wake-up only.
            self.table = None;
            let now = Instant::now();
            self.settle(now);
            self.answer_waiters(now);
            self.tell_started();
            if self.finished() {
                break;
            }
            self.write_instance();
            let next = self.next_deadline();
            self.timer.set(next).map_err(io_err("arm the timer"))?;

            let stopping = self.services.iter().any(|s| s.stop.is_some());
            tokio::select! {
                _ = sigchld.recv() => self.on_sigchld()?,
                _ = sigint.recv() => self.on_stop_signal("SIGINT"),
                _ = sigterm.recv() => self.on_stop_signal("SIGTERM"),
                _ = sighup.recv() => self.reload_on_hangup(),
                exited = self.watch.exited(), if stopping => {
                    exited.map_err(io_err("watch stopping processes"))?;
                    self.rescan = true;
                }
                fired = self.timer.fired() => fired.map_err(io_err("wait for a deadline"))?,
                datagram = self.notify.recv() => self.on_datagram(datagram?),
                Some(msg) = self.rx.recv() => self.on_msg(msg),
            }
            // Drain whatever else is ready without waiting, so a burst is handled in one pass.
            while let Ok(msg) = self.rx.try_recv() {
                self.on_msg(msg);
            }
            let now = Instant::now();
            self.refresh_stops(now)?;
            self.on_deadlines(now)?;
        }
        self.finish().await
    }

    // ----- starting -----

    /// Starts service `i` now.
    fn start(&mut self, i: usize, now: Instant) {
        let generation = self.services[i].generation + 1;
        self.services[i].generation = generation;
        let marker = format!("{}/{}/{generation}", self.token, self.services[i].cfg.name);
        let command = match self.command_for(i, &marker) {
            Ok(command) => command,
            Err(error) => return self.start_failed(i, error, now),
        };
        let spawned = spawn(
            command,
            SpawnOptions {
                foreground_tty: false,
                die_with_parent: true,
            },
        );
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err(err) => return self.start_failed(i, err.to_string(), now),
        };
        if let Some(leaks) = &self.leaks {
            leaks.note_started(spawned.id.pid);
        }
        let svc = &mut self.services[i];
        svc.main = Some(Main {
            id: spawned.id,
            pgid: spawned.pgid,
            started: now,
            marker: format!("HANGWATCH_ID={marker}").into_bytes(),
            status: None,
        });
        svc.phase = Phase::Starting;
        svc.status_text = None;
        let live = &svc.cfg.liveness;
        let spec = LivenessSpec {
            watchdog: live.watchdog,
            file: live.heartbeat_file.clone(),
            silence: live.stall_on_silence,
            warn: None,
            exit_grace: svc.cfg.stop_grace,
        };
        svc.detector = (spec.watchdog.is_some() || spec.file.is_some() || spec.silence.is_some())
            .then(|| Detector::new(&spec, now));
        svc.ready_probe = match &svc.cfg.ready {
            Readiness::Probe(probe) => Some(ProbeClock {
                next: now,
                in_flight: false,
                give_up: Some(now + probe.within),
                failures: 0,
            }),
            _ => None,
        };
        // Liveness probes begin once the service is ready (see `mark_ready`).
        svc.live_probe = None;
        svc.memory_check = svc.cfg.memory_limit.map(|_| now + MEMORY_EVERY);
        let restarts = svc.restarts.total;
        let ready_now = svc.cfg.ready == Readiness::Started;
        self.instance_dirty = true;
        self.emit(
            Some(i),
            Event::Started {
                pid: spawned.id.pid,
                restarts,
            },
        );
        if ready_now {
            self.mark_ready(i, "started", now);
        }
    }

    /// The command line, environment and output pipes of the next start of service `i`.
    fn command_for(&self, i: usize, marker: &str) -> Result<ProgramCommand, String> {
        let cfg = &self.services[i].cfg;
        let argv: Vec<OsString> = cfg.command.argv.iter().map(OsString::from).collect();
        let mut command = ProgramCommand::from_argv(&argv).ok_or("empty command")?;
        command.run_as = run_as(cfg.user.as_deref())?;
        command.cwd = Some(cfg.cwd.clone());
        command.env = service_env(cfg);
        command
            .env
            .push(("NOTIFY_SOCKET".into(), self.notify.env_value()));
        if let Some(watchdog) = cfg.liveness.watchdog {
            command.env.push((
                "WATCHDOG_USEC".into(),
                watchdog.as_micros().to_string().into(),
            ));
            command.pid_env = Some("WATCHDOG_PID".into());
        }
        command
            .env
            .push(("HANGWATCH_SERVICE".into(), cfg.name.clone().into()));
        command.env.push((
            "HANGWATCH_RESTARTS".into(),
            self.services[i].restarts.total.to_string().into(),
        ));
        command
            .env
            .push((INSTANCE_ENV.into(), self.token.clone().into()));
        command.env.push(("HANGWATCH_ID".into(), marker.into()));
        let ends = output::open(i, self.services[i].generation, &self.tx)
            .map_err(|err| format!("cannot create output pipes: {err}"))?;
        command.stdout = Some(ends.stdout);
        command.stderr = Some(ends.stderr);
        Ok(command)
    }

    fn start_failed(&mut self, i: usize, error: String, now: Instant) {
        self.emit(Some(i), Event::StartFailed { error });
        self.services[i].main = None;
        self.decide(i, Ending::StartFailed, Duration::ZERO, "start-failed", now);
    }

    fn mark_ready(&mut self, i: usize, by: &str, now: Instant) {
        let svc = &mut self.services[i];
        if svc.phase != Phase::Starting {
            return;
        }
        svc.phase = Phase::Ready;
        svc.ready_probe = None;
        svc.live_probe = svc.cfg.liveness.probe.as_ref().map(|probe| ProbeClock {
            next: now + probe.within,
            in_flight: false,
            give_up: None,
            failures: 0,
        });
        let after_ms = svc
            .main
            .as_ref()
            .map_or(0.0, |m| ms(now.saturating_duration_since(m.started)));
        self.emit(
            Some(i),
            Event::Ready {
                after_ms,
                by: by.to_owned(),
            },
        );
    }

    // ----- exits and stops -----

    fn on_sigchld(&mut self) -> Result<(), UpError> {
        let reaped = reap_exited().map_err(io_err("reap exited children"))?;
        let now = Instant::now();
        for (pid, status) in reaped {
            if let Some(leaks) = &self.leaks {
                leaks.note_reaped(pid);
            }
            // [alert]
            if let Some(alerts) = &self.alerts
                && alerts.borrow_mut().reaped(pid, status)
            {
                continue;
            }
            if let Some(probe) = self.exec_probes.remove(&pid) {
                let result = match status {
                    ExitStatus::Exited(0) => Ok(()),
                    other => Err(format!("exited with {}", describe_status(other))),
                };
                self.on_probe_result(probe.service, probe.generation, probe.ready, result, now);
                continue;
            }
            let Some(i) = self.services.iter().position(|s| {
                s.main
                    .as_ref()
                    .is_some_and(|m| m.id.pid == pid && m.status.is_none())
            }) else {
                continue;
            };
            self.on_main_exit(i, status, now)?;
        }
        self.rescan = true;
        Ok(())
    }

    fn on_main_exit(&mut self, i: usize, status: ExitStatus, now: Instant) -> Result<(), UpError> {
        let svc = &mut self.services[i];
        let Some(main) = &mut svc.main else {
            return Ok(());
        };
        main.status = Some(status);
        svc.detector = None;
        svc.live_probe = None;
        svc.ready_probe = None;
        svc.memory_check = None;
        match svc.phase {
            Phase::Starting | Phase::Ready => {
                let uptime = now.saturating_duration_since(main.started);
                let pid = main.id.pid;
                svc.last_exit = Some(last_exit(status, "exited"));
                self.emit(
                    Some(i),
                    Event::Exited {
                        pid,
                        status: status.to_record(),
                        uptime_ms: ms(uptime),
                        stopped: false,
                        killed: Vec::new(),
                    },
                );
                self.begin_stop(i, Cause::Leftovers, Then::Decide(Ending::Exited(status)))?;
            }
            // A stop or a diagnosis is under way: its end decides.
            _ => {}
        }
        Ok(())
    }

    /// Begins stopping service `i`'s tree.
    fn begin_stop(&mut self, i: usize, cause: Cause, then: Then) -> Result<(), UpError> {
        let Some(main) = &self.services[i].main else {
            return Ok(());
        };
        let scope = Scope::Service {
            adopter: self.own_pid,
            group: main.pgid,
            marker: main.marker.clone(),
        };
        let mut plan = self.services[i].plan;
        if let Some(shutdown) = &self.shutdown {
            plan.grace = plan
                .grace
                .min(shutdown.deadline.saturating_duration_since(Instant::now()));
        }
        // A last look at what the tree holds before it is signalled (the leak audit), except in
        // a shutdown: one look at every service costs ~0.5 ms per process, which would delay
        // the first signal of the last service by the sum. The looks taken after each
        // creation in /dev/shm still stand.
        if cause != Cause::Leftovers && self.shutdown.is_none() {
            if let Some(leaks) = &self.leaks {
                leaks.observe();
            }
        }
        let watch = self.watch.clone();
        let table = self.table()?;
        let tree =
            TreeStop::begin_in(plan, scope, table, watch).map_err(io_err("stop a service"))?;
        if cause != Cause::Leftovers || tree.signalled_any() {
            self.emit(
                Some(i),
                Event::Stopping {
                    cause: cause.as_str().to_owned(),
                    signal: plan.signal.name().to_owned(),
                    grace_ms: millis(plan.grace),
                },
            );
        }
        let svc = &mut self.services[i];
        svc.phase = Phase::Stopping;
        svc.stop = Some(ActiveStop { cause, then, tree });
        if self.shutdown.as_ref().is_some_and(|s| s.killing) {
            self.table()?;
            if let (Some(stop), Some(table)) = (&mut self.services[i].stop, &self.table) {
                kill_at_once(stop, table)?;
            }
        }
        self.try_finish_stop(i, Instant::now());
        Ok(())
    }

    /// Refreshes every stop in progress from one scan (after exits), and finishes those whose
    /// tree is gone.
    fn refresh_stops(&mut self, now: Instant) -> Result<(), UpError> {
        if !std::mem::take(&mut self.rescan) || self.services.iter().all(|s| s.stop.is_none()) {
            return Ok(());
        }
        self.table = None;
        self.table()?;
        for i in 0..self.services.len() {
            if let (Some(stop), Some(table)) = (&mut self.services[i].stop, &self.table) {
                stop.tree
                    .refresh_in(table)
                    .map_err(io_err("rescan a stopping tree"))?;
            }
        }
        for i in 0..self.services.len() {
            self.try_finish_stop(i, now);
        }
        Ok(())
    }

    /// Finishes the stop of service `i` if its tree is gone and its program reaped.
    fn try_finish_stop(&mut self, i: usize, now: Instant) {
        let svc = &mut self.services[i];
        let done = svc.stop.as_ref().is_some_and(|s| !s.tree.any_alive())
            && svc.main.as_ref().is_none_or(|m| m.status.is_some());
        if !done {
            return;
        }
        let Some(stop) = svc.stop.take() else {
            return;
        };
        let main = svc.main.take();
        let escalated = stop.tree.escalated();
        let records = stop.tree.into_records();
        let part = main.as_ref().map(|main| {
            let mut part = Part::program(main.id, main.pgid);
            for record in &records {
                part.add(&record.process);
            }
            part
        });
        let killed: Vec<ProcessInfo> = records
            .iter()
            .filter(|r| r.killed)
            .map(|r| r.process.clone())
            .collect();
        let uptime = main
            .as_ref()
            .map_or(Duration::ZERO, |m| now.saturating_duration_since(m.started));
        if stop.cause == Cause::Leftovers {
            if !records.is_empty() {
                self.emit(
                    Some(i),
                    Event::Leak {
                        leftovers: records.iter().map(|r| r.process.clone()).collect(),
                        objects: Vec::new(),
                    },
                );
            }
        } else if let Some(main) = &main {
            let reason = match stop.cause {
                Cause::Stall => "stalled",
                Cause::Memory => "memory",
                Cause::NotReady => "not-ready",
                Cause::Dependency => "dependency",
                Cause::Shutdown | Cause::Requested | Cause::Leftovers => "stopped",
                Cause::Reload => "reload",
            };
            self.services[i].last_exit = main.status.map(|status| last_exit(status, reason));
            let status = main
                .status
                .map_or(ProgramStatus::Exited { code: -1 }, ExitStatus::to_record);
            self.emit(
                Some(i),
                Event::Exited {
                    pid: main.id.pid,
                    status,
                    uptime_ms: ms(uptime),
                    stopped: true,
                    killed,
                },
            );
        }
        let svc = &mut self.services[i];
        if stop.cause == Cause::Shutdown {
            svc.killed_at_shutdown = Some(escalated);
        }
        self.instance_dirty = true;
        if let Some(cfg) = self.services[i].pending.take() {
            self.apply_definition(i, cfg);
        }
        match stop.then {
            Then::Down => self.services[i].phase = Phase::Stopped,
            Then::Wait => self.services[i].phase = Phase::Waiting,
            Then::Hold => self.services[i].phase = Phase::Held,
            Then::Remove => self.services[i].phase = Phase::Removed,
            Then::Decide(ending) => {
                let reason = match (stop.cause, ending) {
                    (Cause::Stall, _) => "stalled",
                    (Cause::Memory, _) => "memory",
                    (Cause::NotReady, _) => "not-ready",
                    _ => "exited",
                };
                self.decide(i, ending, uptime, reason, now);
            }
        }
        // After the restart: the audit must not delay it.
        if let Some(part) = part {
            self.audit_leaks(i, &part);
        }
    }

    /// Audits what service `i`'s tree (`part`), gone, left behind in shared memory and SysV
    /// IPC: report only, each object once, attributed to the service when nothing but its tree
    /// held it (the rest waits for the final audit). Picking the candidates costs the loop
    /// a few microseconds (a read of `/proc/sysvipc/shm`, ~1 µs per segment on the machine);
    /// judging them searches every process on the machine for holders, so it runs on a
    /// blocking thread, only when there is a candidate, and reports back with [`Msg::Leaks`].
    fn audit_leaks(&mut self, i: usize, part: &Part) {
        let Some(audit) = self.leaks.as_ref().and_then(|leaks| leaks.audit_part(part)) else {
            return;
        };
        self.leak_audits += 1;
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let task = tokio::task::spawn_blocking(move || audit.run());
            let found = match tokio::time::timeout(LEAK_AUDIT_LIMIT, task).await {
                Ok(Ok(found)) => Some(found),
                Ok(Err(err)) => {
                    tracing::warn!(%err, "the leak audit of a service failed");
                    None
                }
                Err(_) => {
                    tracing::warn!("the leak audit of a service took too long and was abandoned");
                    None
                }
            };
            let _ = tx.send(Msg::Leaks { service: i, found }).await;
        });
    }

    fn on_leaks(&mut self, i: usize, found: Option<PartFound>) {
        self.leak_audits = self.leak_audits.saturating_sub(1);
        let (Some(leaks), Some(found)) = (&self.leaks, found) else {
            return;
        };
        let report = leaks.reported(found);
        for error in &report.errors {
            tracing::warn!(service = %self.services[i].cfg.name, %error, "leak audit");
        }
        tracing::debug!(
            service = %self.services[i].cfg.name,
            took_ms = report.audit_ms,
            objects = report.objects.len(),
            "leak audit of a stopped service"
        );
        if !report.objects.is_empty() {
            self.emit(
                Some(i),
                Event::Leak {
                    leftovers: Vec::new(),
                    objects: report.objects.into_iter().map(|o| o.name).collect(),
                },
            );
        }
    }

    /// Applies the restart policy after service `i` ended.
    fn decide(&mut self, i: usize, ending: Ending, uptime: Duration, reason: &str, now: Instant) {
        self.services[i].last_ending = Some(ending);
        if self.shutdown.is_some() {
            self.services[i].phase = Phase::Stopped;
            return;
        }
        let svc = &mut self.services[i];
        if !policy::wants_restart(svc.cfg.restart, ending) {
            svc.phase = if ending == Ending::StartFailed {
                Phase::Failed
            } else {
                Phase::Exited
            };
            return;
        }
        let decision = svc.restarts.decide(
            &svc.cfg.backoff,
            &svc.cfg.max_restarts,
            uptime,
            now,
            fastrand::f64(),
        );
        match decision {
            Decision::Restart { delay, attempt } => {
                self.emit(
                    Some(i),
                    Event::Restarting {
                        in_ms: millis(delay),
                        attempt,
                        reason: reason.to_owned(),
                    },
                );
                self.restart_dependents(i);
                if delay.is_zero() {
                    self.start(i, now);
                } else {
                    self.services[i].phase = Phase::Backoff { until: now + delay };
                }
            }
            Decision::GiveUp { restarts } => {
                let svc = &mut self.services[i];
                svc.phase = Phase::Failed;
                let action = svc.cfg.on_give_up;
                let within_ms = millis(svc.cfg.max_restarts.within);
                let name = svc.cfg.name.clone();
                self.emit(
                    Some(i),
                    Event::GaveUp {
                        restarts,
                        within_ms,
                        action: match action {
                            OnGiveUp::StayDown => "stay-down",
                            OnGiveUp::Shutdown => "shutdown",
                        }
                        .to_owned(),
                    },
                );
                if action == OnGiveUp::Shutdown {
                    self.begin_shutdown(format!("{name} gave up"), 1);
                }
            }
        }
    }

    /// Stops the running dependents of service `i` that declared `restart_with_dependency`;
    /// they start again once `i` is ready.
    fn restart_dependents(&mut self, i: usize) {
        let dependents: Vec<usize> = (0..self.services.len())
            .filter(|&d| {
                let svc = &self.services[d];
                svc.deps.contains(&i)
                    && svc.cfg.restart_with_dependency
                    && matches!(svc.phase, Phase::Starting | Phase::Ready)
            })
            .collect();
        for d in dependents {
            if let Err(err) = self.begin_stop(d, Cause::Dependency, Then::Wait) {
                tracing::warn!(%err, "cannot stop a dependent");
            }
        }
    }

    // ----- stalls -----

    /// Service `i` stalled (or is over memory): diagnose, then stop and restart.
    fn on_stall(&mut self, i: usize, cause: Cause) {
        let svc = &mut self.services[i];
        let Some(main) = &svc.main else {
            return;
        };
        if !matches!(svc.phase, Phase::Starting | Phase::Ready) {
            return;
        }
        svc.detector = None;
        svc.live_probe = None;
        svc.memory_check = None;
        if !svc.cfg.diagnose || self.shutdown.is_some() {
            if let Err(err) = self.begin_stop(i, cause, Then::Decide(Ending::Stopped)) {
                tracing::warn!(%err, "cannot stop a stalled service");
            }
            return;
        }
        svc.phase = Phase::Diagnosing { cause };
        let pid = main.id.pid;
        let generation = svc.generation;
        let reason = format!(
            "{}-{}",
            svc.cfg.name,
            if cause == Cause::Memory {
                "over-memory"
            } else {
                "stalled"
            }
        );
        let spec = self.diagnose.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let record = diagnose_off_loop(spec, pid, reason).await;
            let _ = tx
                .send(Msg::Diagnosed {
                    service: i,
                    generation,
                    record,
                })
                .await;
        });
    }

    fn on_msg(&mut self, msg: Msg) {
        let now = Instant::now();
        match msg {
            Msg::Output {
                service,
                generation,
                stream,
                bytes,
            } => self.on_output(service, generation, stream, &bytes, now),
            Msg::Probe {
                service,
                generation,
                ready,
                result,
            } => self.on_probe_result(service, generation, ready, result, now),
            Msg::Control {
                request,
                reply,
                written,
            } => self.on_request(request, reply, written, now),
            Msg::Inspected {
                service,
                record,
                reply,
            } => self.on_inspected(service, record, reply),
            Msg::Leaks { service, found } => self.on_leaks(service, found),
            // [alert]
            Msg::Alert { service, event } => {
                let i = service.and_then(|n| self.services.iter().position(|s| s.cfg.name == n));
                self.emit(i, event);
            }
            Msg::Diagnosed {
                service,
                generation,
                record,
            } => {
                let svc = &self.services[service];
                let Phase::Diagnosing { cause } = svc.phase else {
                    return;
                };
                if svc.generation != generation {
                    return;
                }
                self.services[service].last_incident = record.text_path.clone().map(PathBuf::from);
                self.emit(Some(service), Event::Incident(record));
                if let Err(err) = self.begin_stop(service, cause, Then::Decide(Ending::Stopped)) {
                    tracing::warn!(%err, "cannot stop a stalled service");
                }
            }
        }
    }

    fn on_output(&mut self, i: usize, generation: u32, stream: Stream, bytes: &[u8], now: Instant) {
        let at = SystemTime::now();
        let svc = &mut self.services[i];
        let index = usize::from(stream == Stream::Err);
        let name = svc.cfg.name.as_str();
        let log = &mut svc.log;
        let console = self.console.as_ref();
        let json = self.view == View::Json;
        let mut emit = |line: &[u8]| {
            if let Some(log) = log.as_mut() {
                log.write_line(stream, line, at);
            }
            if let Some(console) = console.filter(|_| !json) {
                console.line(name, stream, line);
            }
        };
        if bytes.is_empty() {
            svc.split[index].finish(&mut emit);
        } else {
            svc.split[index].push(bytes, &mut emit);
            if generation == svc.generation
                && let Some(detector) = &mut svc.detector
            {
                detector.on_output(now);
            }
        }
        if let Some((lines, error)) = svc.log.as_mut().and_then(LogFile::take_dropped) {
            self.emit(Some(i), Event::LogDropped { lines, error });
        }
    }

    fn on_datagram(&mut self, datagram: Datagram) {
        let now = Instant::now();
        // [http]
        if let Some(telemetry) = &self.telemetry {
            let accepted = datagram.sender_pid.and_then(|pid| self.service_of(pid));
            telemetry.notify_datagram(accepted.is_some());
        }
        let Some(sender) = datagram.sender_pid else {
            return;
        };
        let Some(i) = self.service_of(sender) else {
            tracing::debug!(
                sender,
                "notify datagram from outside every service, ignored"
            );
            return;
        };
        for message in &datagram.messages {
            let svc = &mut self.services[i];
            match message {
                NotifyMessage::Ready => {
                    if let Some(detector) = &mut svc.detector {
                        detector.on_watchdog(now);
                    }
                    if svc.cfg.ready == Readiness::Notify {
                        self.mark_ready(i, "notify", now);
                    }
                }
                NotifyMessage::Watchdog => {
                    if let Some(detector) = &mut svc.detector {
                        detector.on_watchdog(now);
                    }
                }
                NotifyMessage::WatchdogTrigger => {
                    if let Some(detector) = &mut svc.detector {
                        detector.trigger(now);
                    }
                }
                NotifyMessage::WatchdogUsec(bound) => {
                    if let Some(detector) = &mut svc.detector {
                        detector.set_watchdog(*bound, now);
                    }
                }
                NotifyMessage::Stopping => {
                    if let Some(detector) = &mut svc.detector {
                        detector.on_stopping(now);
                    }
                }
                NotifyMessage::Status(text) => svc.status_text = Some(text.clone()),
                _ => {}
            }
        }
    }

    /// The service whose tree `pid` belongs to: its program, or a descendant of it.
    fn service_of(&self, pid: i32) -> Option<usize> {
        let main_of = |at: i32| {
            self.services.iter().position(|s| {
                s.main
                    .as_ref()
                    .is_some_and(|m| m.id.pid == at && m.status.is_none())
            })
        };
        let mut at = pid;
        for _ in 0..64 {
            if let Some(i) = main_of(at) {
                return Some(i);
            }
            let stat = hangwatch_process::stat::read_stat(at).ok()??;
            if stat.ppid <= 1 || stat.ppid == self.own_pid {
                return None;
            }
            at = stat.ppid;
        }
        None
    }

    // ----- probes -----

    fn launch_probe(&mut self, i: usize, ready: bool, now: Instant) {
        let svc = &mut self.services[i];
        let probe = if ready {
            match &svc.cfg.ready {
                Readiness::Probe(probe) => probe.clone(),
                _ => return,
            }
        } else {
            match &svc.cfg.liveness.probe {
                Some(probe) => probe.clone(),
                None => return,
            }
        };
        let clock = if ready {
            svc.ready_probe.as_mut()
        } else {
            svc.live_probe.as_mut()
        };
        let Some(clock) = clock else {
            return;
        };
        clock.in_flight = true;
        // [http]
        if let Some(telemetry) = &self.telemetry {
            let kind = crate::http::ProbeKind::of(ready);
            telemetry.probe_launched(&svc.cfg.name, kind, now);
        }
        let generation = svc.generation;
        let timeout = probe.timeout;
        match probe.check {
            Check::Tcp(addr) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = crate::probe::tcp(&addr, timeout)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = tx
                        .send(Msg::Probe {
                            service: i,
                            generation,
                            ready,
                            result,
                        })
                        .await;
                });
            }
            Check::Http(url) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let result = crate::probe::http(&url, timeout)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                    let _ = tx
                        .send(Msg::Probe {
                            service: i,
                            generation,
                            ready,
                            result,
                        })
                        .await;
                });
            }
            Check::Exec(command) => {
                let argv: Vec<OsString> = command.argv.iter().map(OsString::from).collect();
                let Some(mut program) = ProgramCommand::from_argv(&argv) else {
                    return;
                };
                // As the service's user, as systemd runs `ExecStartPre=` and the like: a probe
                // is the service's code and gets no more privilege than the service.
                program.run_as = match run_as(svc.cfg.user.as_deref()) {
                    Ok(user) => user,
                    Err(error) => {
                        return self.on_probe_result(i, generation, ready, Err(error), now);
                    }
                };
                program.cwd = Some(svc.cfg.cwd.clone());
                program.env = service_env(&svc.cfg);
                let null = std::fs::File::options()
                    .write(true)
                    .open("/dev/null")
                    .map(OwnedFd::from);
                if let Ok(null) = null
                    && let Ok(copy) = null.try_clone()
                {
                    program.stdout = Some(null);
                    program.stderr = Some(copy);
                }
                match spawn(
                    program,
                    SpawnOptions {
                        foreground_tty: false,
                        die_with_parent: true,
                    },
                ) {
                    Ok(spawned) => {
                        self.exec_probes.insert(
                            spawned.id.pid,
                            ExecProbe {
                                service: i,
                                generation,
                                ready,
                                pgid: spawned.pgid,
                                deadline: now + timeout,
                            },
                        );
                    }
                    Err(err) => {
                        self.on_probe_result(i, generation, ready, Err(err.to_string()), now);
                    }
                }
            }
        }
    }

    fn on_probe_result(
        &mut self,
        i: usize,
        generation: u32,
        ready: bool,
        result: Result<(), String>,
        now: Instant,
    ) {
        let svc = &mut self.services[i];
        if svc.generation != generation {
            return;
        }
        let (every, failures_allowed) = {
            let probe = if ready {
                match &svc.cfg.ready {
                    Readiness::Probe(p) => p,
                    _ => return,
                }
            } else {
                match &svc.cfg.liveness.probe {
                    Some(p) => p,
                    None => return,
                }
            };
            (probe.every, probe.failures.max(1))
        };
        let clock = if ready {
            svc.ready_probe.as_mut()
        } else {
            svc.live_probe.as_mut()
        };
        let Some(clock) = clock else {
            return;
        };
        clock.in_flight = false;
        clock.next = now + every;
        // [http]
        if let Some(telemetry) = &self.telemetry {
            let kind = crate::http::ProbeKind::of(ready);
            telemetry.probe_finished(&svc.cfg.name, kind, result.is_ok(), now);
        }
        match result {
            Ok(()) => {
                clock.failures = 0;
                if ready {
                    self.mark_ready(i, "probe", now);
                }
            }
            Err(error) => {
                clock.failures += 1;
                let failed = !ready && clock.failures >= failures_allowed;
                svc.last_probe_error = Some(error.clone());
                if failed {
                    let bound_ms = svc
                        .cfg
                        .liveness
                        .probe
                        .as_ref()
                        .map_or(0, |p| millis(p.every) * u64::from(p.failures));
                    self.emit(
                        Some(i),
                        Event::Stalled {
                            source: StallSource::Probe,
                            bound_ms,
                            late_ms: 0.0,
                            detail: Some(format!(
                                "{failures_allowed} probes failed in a row, last: {error}"
                            )),
                        },
                    );
                    self.on_stall(i, Cause::Stall);
                }
            }
        }
    }

    // ----- deadlines -----

    /// The earliest instant at which anything is due.
    fn next_deadline(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for svc in &self.services {
            if let Phase::Backoff { until } = svc.phase
                && self.shutdown.is_none()
            {
                at(until);
            }
            if let Some(clock) = &svc.ready_probe {
                if !clock.in_flight {
                    at(clock.next);
                }
                if let Some(give_up) = clock.give_up {
                    at(give_up);
                }
            }
            if let Some(clock) = &svc.live_probe
                && !clock.in_flight
            {
                at(clock.next);
            }
            if let Some(detector) = &svc.detector
                && let Some((deadline, _)) = detector.next_deadline()
            {
                at(deadline);
            }
            if let Some(check) = svc.memory_check {
                at(check);
            }
            if let Some(stop) = &svc.stop
                && let Some(grace) = stop.tree.grace_deadline()
            {
                at(grace);
            }
        }
        for probe in self.exec_probes.values() {
            at(probe.deadline);
        }
        if let Some(shutdown) = &self.shutdown
            && !shutdown.killing
        {
            at(shutdown.deadline);
        }
        next
    }

    /// Acts on every deadline that has passed.
    fn on_deadlines(&mut self, now: Instant) -> Result<(), UpError> {
        if let Some(shutdown) = &mut self.shutdown
            && !shutdown.killing
            && now >= shutdown.deadline
        {
            shutdown.killing = true;
            self.kill_all()?;
        }
        let overdue: Vec<i32> = self
            .exec_probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in overdue {
            if let Some(probe) = self.exec_probes.get_mut(&pid) {
                // Killed now; its exit is reaped and reported then, as a failure.
                let _ = hangwatch_process::signal::signal_group(probe.pgid, Signal::KILL);
                probe.deadline = now + Duration::from_secs(3600);
            }
        }
        for i in 0..self.services.len() {
            self.service_deadlines(i, now)?;
        }
        Ok(())
    }

    fn service_deadlines(&mut self, i: usize, now: Instant) -> Result<(), UpError> {
        let svc = &mut self.services[i];
        if let Phase::Backoff { until } = svc.phase
            && until <= now
            && self.shutdown.is_none()
        {
            // Started by the next settle, once its dependencies are ready.
            svc.phase = Phase::Waiting;
            return Ok(());
        }
        if svc
            .stop
            .as_ref()
            .and_then(|stop| stop.tree.grace_deadline())
            .is_some_and(|g| g <= now)
        {
            // One scan serves every stop whose grace ends in this wake-up.
            self.table()?;
            if let (Some(stop), Some(table)) = (&mut self.services[i].stop, &self.table) {
                stop.tree
                    .kill_now_in(table)
                    .map_err(io_err("kill a service"))?;
            }
            self.rescan = true;
        }
        let svc = &mut self.services[i];
        if let Some(clock) = svc.ready_probe {
            if clock.give_up.is_some_and(|g| g <= now) {
                let within_ms = match &svc.cfg.ready {
                    Readiness::Probe(p) => millis(p.within),
                    _ => 0,
                };
                let error = svc
                    .last_probe_error
                    .clone()
                    .unwrap_or_else(|| "no answer yet".to_owned());
                svc.ready_probe = None;
                self.emit(Some(i), Event::NotReady { within_ms, error });
                return self.begin_stop(i, Cause::NotReady, Then::Decide(Ending::StartFailed));
            }
            if !clock.in_flight && clock.next <= now {
                self.launch_probe(i, true, now);
            }
        }
        let svc = &mut self.services[i];
        if let Some(clock) = svc.live_probe
            && !clock.in_flight
            && clock.next <= now
        {
            self.launch_probe(i, false, now);
        }
        let svc = &mut self.services[i];
        if let Some(check) = svc.memory_check
            && check <= now
        {
            svc.memory_check = Some(now + MEMORY_EVERY);
            if let (Some(limit), Some(main)) = (svc.cfg.memory_limit, &svc.main) {
                let scope = Scope::Service {
                    adopter: self.own_pid,
                    group: main.pgid,
                    marker: main.marker.clone(),
                };
                // One scan serves every service sampled in this wake-up.
                self.table()?;
                let rss = self
                    .table
                    .as_ref()
                    .map_or(0, |table| tree_rss(&scope, table));
                if rss > limit {
                    self.emit(
                        Some(i),
                        Event::OverMemory {
                            rss_bytes: rss,
                            limit_bytes: limit,
                        },
                    );
                    self.on_stall(i, Cause::Memory);
                    return Ok(());
                }
            }
        }
        let svc = &mut self.services[i];
        if let Some(detector) = &mut svc.detector
            && let Some((deadline, expiry)) = detector.next_deadline()
            && deadline <= now
            && let Some(verdict) = detector.expire(expiry, now)
            && let Expiry::Stall(source) = verdict.expiry
        {
            let detail = svc.status_text.clone().map(|s| format!("last STATUS: {s}"));
            self.emit(
                Some(i),
                Event::Stalled {
                    source,
                    bound_ms: millis(verdict.bound),
                    late_ms: ms(now.saturating_duration_since(verdict.deadline)),
                    detail,
                },
            );
            self.on_stall(i, Cause::Stall);
        }
        Ok(())
    }

    // ----- settling: starts and the shutdown order -----

    fn settle(&mut self, now: Instant) {
        if self.shutdown.is_none() {
            for i in 0..self.services.len() {
                if self.services[i].phase == Phase::Waiting
                    && self.services[i]
                        .deps
                        .iter()
                        .all(|&d| self.services[d].phase == Phase::Ready)
                {
                    self.start(i, now);
                }
            }
            // Ends by itself once nothing can change any more; a service held down by
            // `hangwatch stop` may still be started, so it keeps the supervisor up.
            if !self
                .services
                .iter()
                .any(|s| s.phase.active() || s.phase == Phase::Held)
            {
                let failed = self.services.iter().any(|s| {
                    s.phase == Phase::Failed
                        || s.last_ending
                            .is_some_and(|e| e != Ending::Exited(ExitStatus::Exited(0)))
                });
                self.begin_shutdown("every service ended".to_owned(), i32::from(failed));
            }
            return;
        }
        // Shutting down: a service stops once nothing that depends on it is running.
        for i in 0..self.services.len() {
            let phase = self.services[i].phase;
            if !matches!(
                phase,
                Phase::Starting | Phase::Ready | Phase::Diagnosing { .. }
            ) {
                continue;
            }
            let dependents_down = self
                .services
                .iter()
                .all(|s| !s.deps.contains(&i) || !s.phase.running());
            if dependents_down && let Err(err) = self.begin_stop(i, Cause::Shutdown, Then::Down) {
                tracing::warn!(%err, "cannot stop a service");
            }
        }
    }

    fn begin_shutdown(&mut self, reason: String, exit_code: i32) {
        if self.shutdown.is_some() {
            return;
        }
        let now = Instant::now();
        let timeout = self.config.shutdown_timeout;
        self.emit(
            None,
            Event::ShuttingDown {
                reason: reason.clone(),
                timeout_ms: millis(timeout),
            },
        );
        self.shutdown = Some(Shutdown {
            reason,
            began: now,
            deadline: now + timeout,
            exit_code,
            killing: false,
        });
        self.fail_waiters_for_shutdown();
        for svc in &mut self.services {
            if matches!(svc.phase, Phase::Waiting | Phase::Backoff { .. }) {
                svc.phase = Phase::Stopped;
            }
            svc.detector = None;
            svc.live_probe = None;
            svc.ready_probe = None;
            svc.memory_check = None;
        }
    }

    fn on_stop_signal(&mut self, name: &str) {
        match &mut self.shutdown {
            None => self.begin_shutdown(format!("{name} received"), 0),
            Some(shutdown) if !shutdown.killing => {
                shutdown.killing = true;
                self.note(&format!("{name} again: killing everything now"));
                if let Err(err) = self.kill_all() {
                    tracing::warn!(%err, "cannot kill");
                }
            }
            Some(_) => {}
        }
    }

    /// The shutdown bound passed (or a second signal): KILL every tree, and stop the rest at
    /// once.
    fn kill_all(&mut self) -> Result<(), UpError> {
        self.table()?;
        if let Some(table) = &self.table {
            for svc in &mut self.services {
                if let Some(stop) = &mut svc.stop {
                    kill_at_once(stop, table)?;
                }
            }
        }
        // The rest begin their stop now, and `begin_stop` kills at once while `killing`.
        for i in 0..self.services.len() {
            if matches!(
                self.services[i].phase,
                Phase::Starting | Phase::Ready | Phase::Diagnosing { .. }
            ) {
                self.begin_stop(i, Cause::Shutdown, Then::Down)?;
            }
        }
        self.rescan = true;
        Ok(())
    }

    fn finished(&self) -> bool {
        self.shutdown.is_some()
            && self
                .services
                .iter()
                .all(|s| !s.phase.running() && s.stop.is_none())
            && self.exec_probes.is_empty()
            // The services' leak audits report before `down`, within the shutdown's bound
            // (what one of them did not report, the final audit does).
            && (self.leak_audits == 0
                || self
                    .shutdown
                    .as_ref()
                    .is_some_and(|s| Instant::now() >= s.deadline))
    }

    async fn finish(&mut self) -> Result<UpOutcome, UpError> {
        // Anything still below hangwatch (an escaped probe child): KILL, bounded.
        if has_children().map_err(io_err("look for children"))? {
            let plan = StopPlan {
                signal: Signal::KILL,
                grace: Duration::ZERO,
            };
            if let Ok(mut tree) = TreeStop::begin(plan, self.own_pid, None) {
                let limit = Instant::now() + Duration::from_secs(2);
                while tree.any_alive() && Instant::now() < limit {
                    let _ = tokio::time::timeout_at(limit, tree.exited()).await;
                    let _ = reap_exited();
                    let _ = tree.refresh();
                }
            }
            let _ = reap_exited();
        }
        let shutdown = self.shutdown.take();
        let (reason, exit_code, took) = shutdown.map_or((String::new(), 0, Duration::ZERO), |s| {
            (s.reason, s.exit_code, s.began.elapsed())
        });
        let mut clean = Vec::new();
        let mut killed = Vec::new();
        for svc in &self.services {
            match svc.killed_at_shutdown {
                Some(true) => killed.push(svc.cfg.name.clone()),
                Some(false) => clean.push(svc.cfg.name.clone()),
                None => {}
            }
        }
        let report = self
            .leaks
            .take()
            .map(|leaks| leaks.finish(LeakPolicy::Report, 0))
            .unwrap_or_default();
        if !report.objects.is_empty() {
            self.emit(
                None,
                Event::Leak {
                    leftovers: Vec::new(),
                    objects: report.objects.iter().map(|o| o.name.clone()).collect(),
                },
            );
        }
        self.emit(
            None,
            Event::Down {
                took_ms: ms(took),
                clean: clean.clone(),
                killed: killed.clone(),
                exit_code,
            },
        );
        self.answer_down(&clean, &killed, took, exit_code).await;
        // A clean end: nothing for the next hangwatch to clean up.
        if let Some(file) = self.instance_file.take() {
            let _ = file.close();
        }
        let _ = std::fs::remove_file(self.state.instance_path());
        if let Some(console) = &self.console {
            console.flush(Duration::from_secs(2));
        }
        Ok(UpOutcome {
            exit_code,
            reason,
            clean,
            killed,
            shutdown: took,
        })
    }

    // ----- records -----

    /// The processes below hangwatch, read once per wake-up. Only hangwatch's own subtree:
    /// as a subreaper it adopts every escapee, so every process of every service is in it, and
    /// the cost follows the services, not the machine.
    fn table(&mut self) -> Result<&ProcessTable, UpError> {
        if self.table.is_none() {
            self.table =
                Some(ProcessTable::subtree(self.own_pid).map_err(io_err("scan processes"))?);
        }
        self.table
            .as_ref()
            .ok_or_else(|| io_err("scan processes")(io::Error::other("no scan")))
    }

    fn emit(&self, service: Option<usize>, event: Event) {
        let name = service.map(|i| self.services[i].cfg.name.as_str());
        let record = record(name, event);
        // [http]
        if let Some(telemetry) = &self.telemetry {
            telemetry.observe(&record);
        }
        // [alert]
        if let Some(alerts) = &self.alerts {
            alerts.borrow_mut().offer(&record);
        }
        if let Err(err) = self.events.append(&record) {
            tracing::warn!(%err, "cannot append to the event log");
        }
        match self.view {
            View::Json => {
                if let (Some(console), Ok(line)) = (&self.console, serde_json::to_string(&record)) {
                    console.raw(&line);
                }
            }
            View::Lines { .. } => {
                if let (Some(console), Some(text)) = (&self.console, describe(&record)) {
                    console.event(&text);
                }
            }
            View::Quiet => {}
        }
    }

    fn note(&self, text: &str) {
        if let Some(console) = self.console.as_ref().filter(|_| self.view != View::Json) {
            console.event(text);
        }
    }

    /// Kills what an earlier hangwatch of this state directory left running, and waits
    /// (briefly) for it to be gone, so that a new service does not find its port taken.
    async fn kill_previous_instance(&mut self) {
        let previous = match InstanceRecord::read(&self.state.instance_path()) {
            Ok(Some(previous)) => previous,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%err, "unreadable instance record of an earlier run");
                return;
            }
        };
        match crate::state::instance::find_survivors(&previous, self.own_pid) {
            Ok(ids) if !ids.is_empty() => {
                let killed = crate::state::instance::kill_survivors(&ids);
                let _ = crate::state::instance::wait_gone(&ids, Duration::from_secs(2)).await;
                self.emit(None, Event::Orphans { killed });
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "cannot look for survivors of an earlier run"),
        }
    }

    /// Hands the instance record to its background writer when it changed.
    fn write_instance(&mut self) {
        if !std::mem::take(&mut self.instance_dirty) {
            return;
        }
        for svc in &self.services {
            match &svc.main {
                Some(main) => self.instance.set_group(&svc.cfg.name, main.id),
                None => self.instance.remove_group(&svc.cfg.name),
            }
        }
        if let Some(file) = &self.instance_file
            && let Err(err) = file.update(&self.instance)
        {
            tracing::warn!(%err, "cannot update the instance record");
        }
    }
}

impl Svc {
    /// A service as the config declares it, not started. `names` maps every service's name
    /// to its index.
    fn new(
        cfg: hangwatch_config::Service,
        logs_dir: &std::path::Path,
        names: &HashMap<&str, usize>,
    ) -> Svc {
        let log = open_log(logs_dir, &cfg);
        Svc {
            deps: cfg
                .depends_on
                .iter()
                .filter_map(|d| names.get(d.as_str()).copied())
                .collect(),
            plan: stop_plan(&cfg),
            phase: Phase::Waiting,
            generation: 0,
            main: None,
            stop: None,
            restarts: Restarts::default(),
            detector: None,
            ready_probe: None,
            live_probe: None,
            last_probe_error: None,
            memory_check: None,
            log,
            split: [LineSplitter::new(), LineSplitter::new()],
            status_text: None,
            last_ending: None,
            killed_at_shutdown: None,
            last_exit: None,
            last_incident: None,
            pending: None,
            cfg,
        }
    }
}

/// A service's log file; without one (an unwritable state directory) its output is only
/// shown, and a warning says so.
fn open_log(logs_dir: &std::path::Path, cfg: &hangwatch_config::Service) -> Option<LogFile> {
    LogFile::open(logs_dir, &cfg.name, cfg.log_max_size, cfg.log_keep)
        .inspect_err(|err| tracing::warn!(%err, service = %cfg.name, "no log file"))
        .ok()
}

/// How a service's tree is stopped.
fn stop_plan(cfg: &hangwatch_config::Service) -> StopPlan {
    StopPlan {
        signal: cfg
            .stop_signal
            .parse::<Signal>()
            .unwrap_or(Signal::TERMINATE),
        grace: cfg.stop_grace,
    }
}

/// A program's end, for `hangwatch status`.
fn last_exit(status: ExitStatus, reason: &str) -> LastExit {
    LastExit {
        status: describe_status(status),
        code: match status {
            ExitStatus::Exited(code) => Some(code),
            ExitStatus::Signalled { .. } => None,
        },
        reason: reason.to_owned(),
        at_unix_ms: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, millis),
    }
}

/// The identity to switch to for a service's `user`, looked up now, so that a user created
/// after hangwatch started is found at the next start. `None` without `user`, or when `user`
/// is hangwatch's own user and hangwatch is not root (nothing to switch). Only root may run a
/// program as anyone else.
fn run_as(user: Option<&str>) -> Result<Option<RunAs>, String> {
    let Some(user) = user else {
        return Ok(None);
    };
    let found = RunAs::lookup(user).map_err(|err| err.to_string())?;
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        Ok(Some(found))
    } else if found.uid == euid.as_raw() {
        Ok(None)
    } else {
        Err(format!(
            "cannot run as user `{user}`: hangwatch runs as uid {euid}, and only root can start \
             a program as another user"
        ))
    }
}

/// Diagnoses the tree of `pid` on a blocking thread, bounded by the spec's limit plus its
/// sampling window: the loop never waits for /proc or ptrace. A failed or abandoned diagnosis
/// is a record with its `error`.
async fn diagnose_off_loop(spec: DiagnoseSpec, pid: i32, reason: String) -> IncidentRecord {
    let limit = spec.limit + spec.sample;
    let task = tokio::task::spawn_blocking(move || {
        crate::incident::capture_tree(&spec, pid, false, pid, &reason)
    });
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(record)) => record,
        Ok(Err(err)) => IncidentRecord {
            error: Some(format!("the diagnosis failed: {err}")),
            ..IncidentRecord::default()
        },
        Err(_) => IncidentRecord {
            error: Some("the diagnosis took too long and was abandoned".to_owned()),
            took_ms: ms(limit),
            ..IncidentRecord::default()
        },
    }
}

/// The variables a service's config adds to the environment (its program's and its `exec`
/// probes').
fn service_env(cfg: &hangwatch_config::Service) -> Vec<(OsString, OsString)> {
    cfg.env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

/// KILL for every process of `stop`'s tree now, cleanup helpers included: the helpers'
/// settle step, if any, is skipped.
fn kill_at_once(stop: &mut ActiveStop, table: &ProcessTable) -> Result<(), UpError> {
    stop.tree
        .kill_now_in(table)
        .map_err(io_err("kill a service"))?;
    if stop.tree.grace_deadline().is_some() {
        stop.tree
            .kill_now_in(table)
            .map_err(io_err("kill a service"))?;
    }
    Ok(())
}

/// How often the memory of a service with a `memory_limit` is sampled.
const MEMORY_EVERY: Duration = Duration::from_secs(1);

/// The longest a service's leak audit may take (a search of every process on the machine,
/// tens of milliseconds on a busy one) before its result is abandoned to the final audit.
const LEAK_AUDIT_LIMIT: Duration = Duration::from_secs(2);

/// Resident memory of the processes of `scope`, in bytes.
fn tree_rss(scope: &Scope, table: &ProcessTable) -> u64 {
    let page = rustix::param::page_size() as u64;
    scope
        .pids(table)
        .into_iter()
        .filter_map(|pid| table.get(pid).map(|stat| stat.rss_pages))
        .sum::<u64>()
        * page
}

fn describe_status(status: ExitStatus) -> String {
    match status {
        ExitStatus::Exited(code) => format!("code {code}"),
        ExitStatus::Signalled { signal, .. } => Signal::from_number(signal)
            .map_or_else(|| format!("signal {signal}"), |s| s.name().to_owned()),
    }
}

/// An event in words, as the console of `up` and `hangwatch events` print it; `None` for those
/// not worth a line on the console.
#[must_use]
pub fn describe(record: &EventRecord) -> Option<String> {
    let name = record.service.as_deref().unwrap_or("hangwatch");
    Some(match &record.event {
        Event::Up {
            config, services, ..
        } => {
            format!("supervising {services} services of {config}")
        }
        Event::Orphans { killed } => format!(
            "killed {} processes left by an earlier hangwatch of this state directory",
            killed.len()
        ),
        Event::Started { pid, restarts } if *restarts == 0 => format!("{name} started (pid {pid})"),
        Event::Started { pid, .. } => format!("{name} restarted (pid {pid})"),
        Event::StartFailed { error } => format!("{name} could not start: {error}"),
        Event::Ready { after_ms, by } if by != "started" => {
            format!("{name} ready after {} ({by})", seconds(*after_ms))
        }
        Event::Ready { .. } => return None,
        Event::NotReady { within_ms, error } => format!(
            "{name} not ready within {}: {error}",
            seconds(*within_ms as f64)
        ),
        Event::Stalled {
            source,
            bound_ms,
            detail,
            ..
        } => {
            let what = crate::summary::stall_words(*source, *bound_ms);
            match detail {
                Some(detail) => format!("{name} STALLED: {what} ({detail})"),
                None => format!("{name} STALLED: {what}"),
            }
        }
        Event::OverMemory {
            rss_bytes,
            limit_bytes,
        } => format!(
            "{name} over its memory limit: {} MiB > {} MiB",
            rss_bytes / (1 << 20),
            limit_bytes / (1 << 20)
        ),
        Event::Incident(incident) => {
            let mut text = format!("{name} diagnosed");
            if let Some(verdict) = incident.verdict.first() {
                text.push_str(&format!(": {verdict}"));
            }
            if let Some(path) = &incident.text_path {
                text.push_str(&format!("\n  incident: {path}"));
            }
            if let Some(error) = &incident.error {
                text.push_str(&format!(" ({error})"));
            }
            text
        }
        Event::Stopping {
            cause,
            signal,
            grace_ms,
        } => format!(
            "stopping {name} ({cause}): {signal}, KILL after {}",
            seconds(*grace_ms as f64)
        ),
        Event::Exited {
            status,
            stopped,
            killed,
            uptime_ms,
            ..
        } => {
            let how = match status {
                ProgramStatus::Exited { code } => format!("exited with code {code}"),
                ProgramStatus::Signalled { name: signal, .. } => format!("killed by {signal}"),
                _ => "ended".to_owned(),
            };
            let mut text = format!("{name} {how} after {}", seconds(*uptime_ms));
            if *stopped && !killed.is_empty() {
                text.push_str(&format!(" ({} processes had to be killed)", killed.len()));
            }
            text
        }
        Event::Restarting {
            in_ms,
            attempt,
            reason,
        } => format!(
            "restarting {name} in {} ({reason}, restart {attempt})",
            seconds(*in_ms as f64)
        ),
        Event::GaveUp {
            restarts,
            within_ms,
            action,
        } => format!(
            "{name} FAILED: {restarts} restarts within {}; giving up ({action})",
            seconds(*within_ms as f64)
        ),
        Event::Leak { leftovers, objects } => {
            let mut parts = Vec::new();
            if !leftovers.is_empty() {
                parts.push(format!("{} leftover processes stopped", leftovers.len()));
            }
            if !objects.is_empty() {
                parts.push(format!("objects left: {}", objects.join(", ")));
            }
            format!("{name}: {}", parts.join("; "))
        }
        Event::LogDropped { lines, error } => {
            format!("{name}: {lines} output lines dropped ({error})")
        }
        Event::Requested { request } => format!("{name}: {request} requested"),
        // [alert]
        Event::AlertFailed {
            alert,
            on,
            why,
            detail,
        } => format!("{name}: alert {alert} on {on} {why}: {detail}"),
        Event::Reloaded {
            added,
            removed,
            changed,
        } => {
            let mut parts = Vec::new();
            for (what, names) in [("added", added), ("removed", removed), ("changed", changed)] {
                if !names.is_empty() {
                    parts.push(format!("{what} {}", names.join(", ")));
                }
            }
            if parts.is_empty() {
                "config reloaded: nothing changed".to_owned()
            } else {
                format!("config reloaded: {}", parts.join("; "))
            }
        }
        Event::ShuttingDown { reason, timeout_ms } => format!(
            "shutting down ({reason}), at most {}",
            seconds(*timeout_ms as f64)
        ),
        Event::Down {
            took_ms,
            clean,
            killed,
            ..
        } => {
            let mut text = format!("down in {}", seconds(*took_ms));
            if !clean.is_empty() {
                text.push_str(&format!("; stopped cleanly: {}", clean.join(", ")));
            }
            if !killed.is_empty() {
                text.push_str(&format!("; had to be killed: {}", killed.join(", ")));
            }
            text
        }
        _ => return None,
    })
}

fn seconds(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis().try_into().unwrap_or(u64::MAX)
}
