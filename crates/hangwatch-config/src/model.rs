//! The validated config: what `hangwatch up` acts on. Every value here has passed its checks, so
//! the daemon never re-validates; relative paths are already resolved against the config's
//! directory.

use std::path::PathBuf;
use std::time::Duration;

/// A whole config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (absolute).
    pub path: PathBuf,
    /// Where logs, incidents, the event log and the instance record live (`state_dir`, default
    /// `.hangwatch/` beside the config).
    pub state_dir: PathBuf,
    /// The bound of the whole shutdown (`shutdown_timeout`, default 30s): anything still alive
    /// then is killed.
    pub shutdown_timeout: Duration,
    /// Rotate the event log (`events.jsonl`) before it passes this many bytes
    /// (`events_max_size`, default 8 MiB).
    pub events_max_size: u64,
    /// Rotated event logs kept (`events_keep`, default 3): `events.jsonl.1` … `.N`.
    pub events_keep: u32,
    /// The read-only HTTP endpoint (`http`, `http_token_file`); off when absent.
    pub http: Option<Http>,
    /// The `[[alert]]` hooks, in file order.
    pub alerts: Vec<Alert>,
    /// The services, in file order.
    pub services: Vec<Service>,
}

/// One `[[alert]]`: a command run when one of the events it names happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// `name` (default `alert-N`, N from 1 in file order): how events about the hook name it.
    pub name: String,
    /// `on`: which events.
    pub on: Vec<AlertOn>,
    /// `command`: what to run, with the event as JSON on stdin.
    pub command: Command,
    /// Its working directory: the config's directory.
    pub cwd: PathBuf,
    /// `services`: only events of these services (default: every service).
    pub services: Vec<String>,
    /// `timeout` (default 10s): then its whole process group is killed.
    pub timeout: Duration,
    /// `rate = { count, within }` (default 10 per 1m): runs beyond it are dropped.
    pub rate: MaxRestarts,
    /// `restarts = { count, within }` (default 3 in 5m): `restarting` fires only when a
    /// service restarts more than `count` times within `within`.
    pub restarts: MaxRestarts,
}

/// The events an `[[alert]]` can be run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertOn {
    /// A service stalled.
    Stalled,
    /// An incident report was written.
    Incident,
    /// A service gave up after too many restarts.
    GaveUp,
    /// A service's tree left processes or objects behind.
    Leak,
    /// A service's program ended without being asked to.
    Down,
    /// A service restarts more often than the alert's `restarts` rate.
    Restarting,
}

impl AlertOn {
    /// Every kind, with the word the config uses.
    pub const ALL: [(AlertOn, &'static str); 6] = [
        (AlertOn::Stalled, "stalled"),
        (AlertOn::Incident, "incident"),
        (AlertOn::GaveUp, "gave-up"),
        (AlertOn::Leak, "leak"),
        (AlertOn::Down, "down"),
        (AlertOn::Restarting, "restarting"),
    ];

    /// The word the config uses.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        AlertOn::ALL
            .iter()
            .find(|(on, _)| *on == self)
            .map_or("", |(_, word)| word)
    }
}

/// Where `/metrics`, `/healthz`, `/readyz`, the JSON API and the status page are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// The address to listen on (`http = "127.0.0.1:9464"`).
    pub listen: std::net::SocketAddr,
    /// A file holding the bearer token every request must carry (`http_token_file`); required
    /// when `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
    /// Paths served without the token (`http_open`): what a kubelet's probes or a scraper
    /// that sends no header need. Empty unless asked.
    pub open: Vec<HttpOpen>,
}

/// A path that `http_open` may serve without the token. Only the read-outs made for machines:
/// the JSON API and the status page name commands and incidents, so they stay behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpOpen {
    /// `/healthz`.
    Healthz,
    /// `/readyz`.
    Readyz,
    /// `/metrics`.
    Metrics,
}

impl HttpOpen {
    /// Every path that may be open, as the config writes it.
    pub const ALL: [(HttpOpen, &'static str); 3] = [
        (HttpOpen::Healthz, "/healthz"),
        (HttpOpen::Readyz, "/readyz"),
        (HttpOpen::Metrics, "/metrics"),
    ];

    /// The request path.
    #[must_use]
    pub fn path(self) -> &'static str {
        HttpOpen::ALL
            .iter()
            .find(|(open, _)| *open == self)
            .map_or("", |(_, path)| path)
    }
}

impl Config {
    /// The service called `name`.
    #[must_use]
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One of the copies of a service with `replicas = N`, named `GROUP.INDEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The service's name as declared.
    pub group: String,
    /// Its number, from 1.
    pub index: u32,
    /// How many copies there are.
    pub of: u32,
}

/// One `[service.NAME]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The table's name: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// What to run.
    pub command: Command,
    /// Working directory (default: the config's directory).
    pub cwd: PathBuf,
    /// Variables added to hangwatch's environment: `env_file` first, then `env` (later wins).
    pub env: Vec<(String, String)>,
    /// Run as this user (only when hangwatch runs as root): name or numeric uid.
    pub user: Option<String>,
    /// Services that must be ready before this one starts (and stop after it).
    pub depends_on: Vec<String>,
    /// Restart this service whenever one of its dependencies restarts
    /// (`restart_with_dependency`, default false).
    pub restart_with_dependency: bool,
    /// When it ends for good (exited and not restarted, or gave up), the supervisor shuts
    /// everything down and exits with its status (`critical`, default false): a container's
    /// main service.
    pub critical: bool,
    /// Set on each copy of a service with `replicas = N`: which one it is.
    pub replica: Option<Replica>,
    /// When the service counts as ready (default: once started).
    pub ready: Readiness,
    /// Stall detection.
    pub liveness: Liveness,
    /// When to restart after an exit (default `on-failure`).
    pub restart: RestartPolicy,
    /// Delay before each restart.
    pub backoff: Backoff,
    /// Restart intensity: more than `count` restarts `within` marks the service failed.
    pub max_restarts: MaxRestarts,
    /// What a failed service means for the supervisor (default `stay-down`).
    pub on_give_up: OnGiveUp,
    /// First signal of a stop, by name without `SIG`, upper-case (default `TERM`): one of
    /// `TERM`, `INT`, `HUP`, `QUIT`, `KILL`, `USR1`, `USR2`; or, when the file gave a number,
    /// that number from 1 to 64 as decimal text (`"15"`, `"40"` for a real-time signal).
    pub stop_signal: String,
    /// Time between the stop signal and KILL (default 10s).
    pub stop_grace: Duration,
    /// Stop (after a diagnosis) and restart the service when its tree's resident memory
    /// exceeds this many bytes.
    pub memory_limit: Option<u64>,
    /// Rotate the service's log file when it reaches this many bytes (default 10 MiB).
    pub log_max_size: u64,
    /// Keep this many rotated files (default 5).
    pub log_keep: u32,
    /// Diagnose a stalled or over-memory service before stopping it (default true).
    pub diagnose: bool,
}

/// The program of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The argument vector to exec: `["/bin/sh", "-c", text]` when `shell = true`, else the
    /// array as given or the string split as a POSIX shell would (quotes, backslashes; no
    /// expansion).
    pub argv: Vec<String>,
    /// Whether it runs through `/bin/sh -c` (`shell = true`).
    pub shell: bool,
}

/// When a service counts as ready, so its dependents may start.
#[derive(Debug, Clone, PartialEq)]
pub enum Readiness {
    /// As soon as it has started (`ready` absent).
    Started,
    /// When it sends `READY=1` on its notify socket (`ready = "notify"`).
    Notify,
    /// When a probe first succeeds (`ready = { tcp = "…" }` etc.).
    Probe(Probe),
}

/// A check hangwatch runs from outside, repeatedly.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What is checked.
    pub check: Check,
    /// Time between attempts (default 1s for liveness, 100ms for readiness).
    pub every: Duration,
    /// Bound of one attempt (default 1s).
    pub timeout: Duration,
    /// Liveness: consecutive failures that make a stall (default 3). Readiness: unused.
    pub failures: u32,
    /// Readiness: give up (the start failed) if not ready within this long (default 60s).
    /// Liveness: first attempt this long after the service became ready (default 0s).
    pub within: Duration,
}

/// One probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A TCP connect to `host:port` succeeds.
    Tcp(String),
    /// An HTTP GET of this `http://` URL answers 2xx or 3xx.
    Http(String),
    /// This command exits 0 (same command syntax as `command`; run in the service's cwd and env).
    Exec(Command),
}

/// Stall detection for a service. Every source is optional; none means no stall detection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Liveness {
    /// `watchdog = "30s"`: expect `WATCHDOG=1` at least this often.
    pub watchdog: Option<Duration>,
    /// `heartbeat_file = { path, stale_after }`: expect the file modified this often (path
    /// resolved against the service's cwd).
    pub heartbeat_file: Option<(PathBuf, Duration)>,
    /// `stall_on_silence = "60s"`: expect output at least this often.
    pub stall_on_silence: Option<Duration>,
    /// `stall_warn = "20s"`: a softer bound for every heartbeat source, below each of their
    /// bounds. Past it: an incident and a `stall-warning` event; the service keeps running.
    pub stall_warn: Option<Duration>,
    /// `stall_defer_under_pressure = "30s"` (or `{ up_to, above }`): a heartbeat stall waits
    /// while the host is under CPU or memory pressure, at most this long. Off by default.
    pub stall_defer: Option<StallDefer>,
    /// `liveness = { http|tcp|exec = …, every, timeout, failures }`.
    pub probe: Option<Probe>,
}

/// How a heartbeat stall waits out host pressure: a starved program misses its heartbeat
/// like a hung one, and a restart does not feed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StallDefer {
    /// The longest the stop waits after the stall deadline.
    pub up_to: Duration,
    /// The pressure that defers: `some avg10` of `/proc/pressure/cpu` or `memory` at or above
    /// this percentage (default [`StallDefer::ABOVE`]).
    pub above_pct: f64,
}

impl StallDefer {
    /// The default threshold, in percent: a quarter of the last 10 s with some task waiting
    /// for a CPU or for memory is contention that delays a heartbeat by whole seconds.
    pub const ABOVE: f64 = 25.0;
}

/// When a service is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// After any exit.
    Always,
    /// After a non-zero exit, a death by signal, or a stop by hangwatch for a stall.
    OnFailure,
    /// Never.
    Never,
}

/// Exponential backoff with jitter: `initial`, times `factor` per consecutive restart, at most
/// `max`, each delay moved by up to ±`jitter` of itself; back to `initial` once the service has
/// run `reset_after` without exiting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// First delay (default 100ms; 0 restarts at once).
    pub initial: Duration,
    /// Largest delay (default 30s).
    pub max: Duration,
    /// Growth per restart (default 2.0).
    pub factor: f64,
    /// Fraction of random spread (default 0.1).
    pub jitter: f64,
    /// Stable run time that resets the delay (default 10s).
    pub reset_after: Duration,
}

/// Restart intensity (Erlang/OTP's): more than `count` restarts in any window of `within`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxRestarts {
    /// Default 5.
    pub count: u32,
    /// Default 60s.
    pub within: Duration,
}

/// What giving up on a service does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnGiveUp {
    /// The service stays down; the rest go on.
    StayDown,
    /// The whole supervisor shuts down and exits non-zero.
    Shutdown,
}
