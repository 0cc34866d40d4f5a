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
//! hangwatch's subtree in `/proc`, acts on the deadlines that passed, and then *settles*: starts
//! each waiting service whose dependencies are ready, and during a shutdown begins the stop of
//! each service whose dependents are all down. Nothing sleeps or polls, except the memory limit,
//! which has no event to wake on without cgroups and is sampled once a second for the services
//! that set one.
//!
//! # A service's state, and who changes it
//!
//! Each service's state is one [`state::Life`] value whose variants carry their data (a running
//! program with what watches it, a diagnosis, a stop with its cause and what follows it). The
//! rules that move it are pure functions in [`machine`], from (state, input) to (state,
//! effects), tested without processes; the loop's modules turn inputs into calls of those
//! functions and perform the effects they return (spawn, signal, diagnose, write an event):
//!
//! - [`lifecycle`]: starting, exits, stops, and the restart decision;
//! - [`liveness`]: notify datagrams, output, stalls, memory;
//! - [`probes`]: readiness and liveness probes;
//! - [`deadlines`]: the one timer, and what is due when it fires;
//! - [`shutdown`]: the order of starts and stops, and the bounded shutdown;
//! - [`records`]: the event log, the console, the instance record, leak audits;
//! - [`requests`] and [`control`]: the control socket;
//! - [`describe`](mod@describe): the events in words.
//!
//! # Which processes are a service's
//!
//! Each program leads its own process group, and gets `HANGWATCH_ID=<instance>/<service>/<n>`
//! in its environment. hangwatch is a subreaper, so a descendant that escaped with `setsid` and a
//! double fork is adopted by hangwatch: it has left the group but kept the environment, and a
//! stop ([`hangwatch_process::stop::Scope::Service`]) finds it by that entry. Every service's program also dies with
//! hangwatch (`PR_SET_PDEATHSIG`, set from this thread, which lives as long as hangwatch); if
//! hangwatch is killed, its guardian ([`crate::guard`]) kills every process that carries this
//! instance's `HANGWATCH_INSTANCE` token, and a later `hangwatch up` on the same state directory
//! kills any survivor still (see [`crate::state::instance`]), the last line of defence.

mod control;
mod deadlines;
mod describe;
mod lifecycle;
mod liveness;
pub(crate) mod machine;
mod output;
mod policy;
mod probes;
mod records;
mod requests;
mod service;
mod shutdown;
pub(crate) mod state;

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hangwatch_config::Config;
use hangwatch_leaks::{LeakWatch, PartFound};
use hangwatch_process::exit_watch::ExitWatch;
use hangwatch_process::reap::become_subreaper;
use hangwatch_process::timer::DeadlineTimer;
use hangwatch_process::tree::ProcessTable;
use hangwatch_protocol::control::{NotifyCounts, Reply, Request, Welcome};
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::IncidentRecord;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::incident::DiagnoseSpec;
use crate::liveness::notify::{NotifyError, NotifySocket};
use crate::state::{Console, EventLog, InstanceFile, InstanceRecord, StateDir, StateError, Stream};
pub use describe::describe;
use machine::Effect;
use probes::ExecProbe;
use service::Svc;

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
    /// The event log's JSON lines, and with `output` the services' output lines as JSON
    /// objects too (`hangwatch up --log-format json`).
    Json {
        /// Whether the services' output lines are printed too.
        output: bool,
    },
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

/// The longest the loop goes on taking queued messages before it looks at its other sources
/// again.
const DRAIN_FOR: Duration = Duration::from_millis(5);

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
        result: probes::Attempt,
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
    /// An `[[alert]]` hook did not do its job; the event to emit.
    Alert {
        service: Option<String>,
        event: Event,
    },
    /// A diagnosis before a stop is taken (its incident is being written): the stop begins.
    Taken { service: usize, generation: u32 },
    /// The look at a stop's survivors is done: they get `KILL` now.
    Survivors {
        service: usize,
        generation: u32,
        look: crate::survivors::Look,
    },
    /// An incident to log about a service that goes on (a stall warning's, a stop's
    /// survivors').
    Noted {
        service: usize,
        /// `None`: nothing to log after all (a look that took no diagnosis).
        record: Option<IncidentRecord>,
    },
    /// A diagnosis asked for with `hangwatch diagnose NAME` is written.
    Inspected {
        service: usize,
        record: IncidentRecord,
        reply: oneshot::Sender<Reply>,
    },
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
    /// Kills this instance's processes if hangwatch is killed (see [`crate::guard`]); disarmed
    /// at the end of a shutdown.
    guardian: Option<hangwatch_process::Guardian>,
    /// The last append to the event log failed (a full disk): said once, until one works.
    events_failing: std::cell::Cell<bool>,
    /// Optional parts that degraded before the event log could say so; emitted after `up`.
    notes: Vec<hangwatch_protocol::report::Degraded>,
    token: String,
    state: StateDir,
    events: EventLog,
    console: Option<Console>,
    services: Vec<Svc>,
    notify: NotifySocket,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// The services' output, a queue of its own: chunks of a flooding service must not stand
    /// in front of a control request, a probe result or a diagnosis on `rx`.
    out_tx: mpsc::Sender<Msg>,
    out_rx: mpsc::Receiver<Msg>,
    watch: Arc<ExitWatch>,
    timer: DeadlineTimer,
    /// The leak audit of the whole supervisor; taken by the final audit.
    leaks: Option<LeakWatch>,
    /// Notify datagrams accepted and refused (their sender was in no service's tree).
    notify_counts: NotifyCounts,
    /// Whether a `degraded` event said that the kernel reports no pressure (for
    /// `stall_defer_under_pressure`): once.
    said_no_pressure: bool,
    /// Audits of services' trees under way (see [`Supervisor::audit_leaks`]).
    leak_audits: usize,
    /// Incidents being taken or written whose event is still to come ([`Msg::Diagnosed`],
    /// [`Msg::Noted`]): the shutdown waits for them, within its bound.
    incidents_due: usize,
    /// The leak audits' failures said so far as `degraded` events: each one once, not at
    /// every stop of every service.
    leak_errors_said: std::collections::HashSet<String>,
    /// The kernel log since the supervisor started: whether a `KILL` it did not send came
    /// from the OOM killer (see [`crate::oom`]).
    oom: crate::oom::OomWatch,
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
    /// What the HTTP endpoint shows beyond a status reply; `None` when HTTP is off.
    telemetry: Option<Arc<crate::http::Telemetry>>,
    /// The HTTP endpoint; dropped (closed) with the supervisor.
    http: Option<crate::http::HttpServer>,
    /// The `[[alert]]` hooks; `None` without any. A cell because `emit` takes `&self`.
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
            View::Json { .. } => Some(Console::new(false, name_width)),
            View::Quiet => None,
        };
        // Programs running as another user must be able to reach the notify socket; a datagram
        // still counts only for the service its sender belongs to (see `bind_in_runtime_dir`).
        let all_users =
            nix::unistd::geteuid().is_root() && config.services.iter().any(|s| s.user.is_some());
        let (notify, notify_note) = NotifySocket::bind_in_runtime_dir_or_abstract(
            &format!("up-{own_pid}.notify"),
            &format!("up/{own_pid}/{}", &token[..token.len().min(8)]),
            all_users,
        )?;
        let (tx, rx) = mpsc::channel(256);
        let (out_tx, out_rx) = mpsc::channel(64);
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
            guardian: None,
            events_failing: std::cell::Cell::new(false),
            notes: notify_note.into_iter().collect(),
            token,
            events,
            console,
            services,
            notify,
            tx,
            rx,
            out_tx,
            out_rx,
            watch: Arc::new(ExitWatch::new().map_err(io_err("create an exit watch"))?),
            timer: DeadlineTimer::new().map_err(io_err("create a timer"))?,
            leaks: Some(LeakWatch::start(own_pid, nix::unistd::geteuid().as_raw())),
            notify_counts: NotifyCounts::default(),
            said_no_pressure: false,
            leak_audits: 0,
            incidents_due: 0,
            leak_errors_said: std::collections::HashSet::new(),
            oom: crate::oom::OomWatch::begin(),
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
        // Before becoming a subreaper, so that the guardian is not re-parented to hangwatch.
        let start = crate::guard::arm(
            crate::state::instance::INSTANCE_ENV,
            &self.token,
            &mut self.notes,
        );
        self.guardian = crate::guard::settle(start, &mut self.notes);
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
        for note in std::mem::take(&mut self.notes) {
            self.emit(
                None,
                Event::Degraded {
                    part: note.part,
                    note: note.note,
                },
            );
        }
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
        // Served beside the control socket, on this runtime; see `crate::http`.
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

            let stopping = self.services.iter().any(|s| s.life.stop().is_some());
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
                Some(msg) = self.out_rx.recv() => self.on_msg(msg),
            }
            // Drain whatever else is ready without waiting, so a burst is handled in one pass;
            // for at most DRAIN_FOR, so that a service flooding its output (64 KiB chunks of
            // two-byte lines) cannot keep the loop from its timers, datagrams and requests.
            let drain_until = std::time::Instant::now() + DRAIN_FOR;
            while std::time::Instant::now() < drain_until {
                let Ok(msg) = self.rx.try_recv().or_else(|_| self.out_rx.try_recv()) else {
                    break;
                };
                self.on_msg(msg);
            }
            let now = Instant::now();
            self.refresh_stops(now)?;
            self.on_deadlines(now)?;
        }
        let outcome = self.finish().await;
        // After a complete shutdown nothing of this instance is left: the guardian may go.
        // After an error it stays armed, and acts when hangwatch exits.
        if outcome.is_ok()
            && let Some(guardian) = self.guardian.take()
        {
            // It also closes the leak watch's inotify instance after hangwatch is gone (a
            // last close waits for an RCU grace period).
            let inotify = self.leaks.as_ref().and_then(LeakWatch::inotify_copy);
            let handed: Vec<_> = inotify.iter().map(std::os::fd::AsFd::as_fd).collect();
            guardian.disarm(&handed);
        }
        outcome
    }

    /// Performs the effects of a transition of service `i`, in order.
    fn perform(&mut self, i: usize, effects: Vec<Effect>, now: Instant) {
        for effect in effects {
            match effect {
                Effect::Emit(event) => self.emit(Some(i), event),
                Effect::LastExit { status, reason } => {
                    self.services[i].last_exit = Some(service::last_exit(status, reason));
                }
                Effect::SignalTree => self.signal_tree(i, now),
                Effect::Diagnose { pid } => self.diagnose_before_stop(i, pid),
                Effect::Start => self.start(i, now),
                Effect::RestartDependents => self.restart_dependents(i, now),
                Effect::Shutdown { reason, exit_code } => self.begin_shutdown(reason, exit_code),
            }
        }
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
            Msg::Alert { service, event } => {
                let i = service.and_then(|n| self.services.iter().position(|s| s.cfg.name == n));
                self.emit(i, event);
            }
            Msg::Diagnosed {
                service,
                generation,
                record,
            } => {
                self.incidents_due = self.incidents_due.saturating_sub(1);
                self.on_diagnosed(service, generation, record, now);
            }
            Msg::Taken {
                service,
                generation,
            } => self.on_taken(service, generation, now),
            Msg::Survivors {
                service,
                generation,
                look,
            } => self.on_survivors(service, generation, look),
            Msg::Noted { service, record } => {
                self.incidents_due = self.incidents_due.saturating_sub(1);
                if let Some(record) = record {
                    self.emit_incident(service, record);
                }
            }
        }
    }
}
