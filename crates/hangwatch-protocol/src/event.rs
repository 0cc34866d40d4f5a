//! The supervisor's event log: one JSON object per line in `STATE_DIR/events.jsonl`.
//!
//! Each line is an [`EventRecord`]: when, which service (none for the supervisor's own events),
//! and what happened, tagged by `"event"`. The log is append-only and only ever gains fields, so
//! `jq`, `grep` and `tail -f` are enough to read it; `hangwatch events` prints the same records.

use serde::{Deserialize, Serialize};

use crate::report::{
    IncidentRecord, OomCheck, ProcessInfo, ProgramStatus, StallSource, StopCause, Survivor,
};

/// Version of the event format, written in the supervisor's `up` event.
pub const EVENT_VERSION: u32 = 1;

/// One line of the event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventRecord {
    /// Wall-clock time, RFC 3339 with milliseconds, UTC.
    pub at: String,
    /// The service concerned; absent for the supervisor's own events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Event {
    /// The supervisor started.
    Up {
        /// Format version of this log ([`EVENT_VERSION`]).
        version: u32,
        /// hangwatch's PID.
        pid: i32,
        /// The config file.
        config: String,
        /// How many services it declares.
        services: usize,
    },
    /// An optional part could not work as usual and degraded (see
    /// [`crate::report::Degraded`]); the services still run under every bound.
    Degraded {
        /// Which part.
        part: String,
        /// What failed and what hangwatch did instead.
        note: String,
    },
    /// Processes left by an earlier hangwatch of this state directory were found and killed.
    Orphans {
        /// What was killed.
        killed: Vec<ProcessInfo>,
    },
    /// A service's program was started.
    Started {
        /// Its PID (it leads its own process group).
        pid: i32,
        /// 0 for the first start, then one more per restart.
        restarts: u32,
    },
    /// A service could not be started (command not found, not executable, bad user…).
    StartFailed {
        /// Why.
        error: String,
    },
    /// A service became ready; its dependents may start.
    Ready {
        /// Time from start to ready, in milliseconds.
        after_ms: f64,
        /// `started`, `notify` or `probe`.
        by: String,
    },
    /// A readiness probe did not succeed in time.
    NotReady {
        /// The bound that passed, in milliseconds.
        within_ms: u64,
        /// The last probe error.
        error: String,
    },
    /// A service stalled (or exceeded its memory limit): it will be diagnosed and stopped.
    Stalled {
        /// Which liveness source missed its deadline.
        source: StallSource,
        /// The bound, in milliseconds.
        bound_ms: u64,
        /// How long after the deadline it was noticed, in milliseconds.
        late_ms: f64,
        /// More words (the probe's error, the last STATUS=).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A service's liveness source passed its `stall_warn`: an incident is written, and the
    /// service keeps running.
    StallWarning {
        /// Which liveness source is late.
        source: StallSource,
        /// The warning bound, in milliseconds.
        bound_ms: u64,
        /// How long after the warning deadline it was noticed, in milliseconds.
        late_ms: f64,
    },
    /// A service's stall deadline passed while the host was under CPU or memory pressure, and
    /// its `stall_defer_under_pressure` lets the stop wait (a starved program misses its
    /// heartbeat like a hung one). A heartbeat meanwhile clears the stall
    /// ([`Event::StallCleared`]); past `up_to_ms`, or once the pressure falls below the
    /// threshold, the stall proceeds ([`Event::Stalled`] says it was deferred).
    StallDeferred {
        /// Which liveness source missed its deadline.
        source: StallSource,
        /// `some avg10` of `/proc/pressure/cpu`, percent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_pct: Option<f64>,
        /// `some avg10` of `/proc/pressure/memory`, percent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_pct: Option<f64>,
        /// The threshold that defers, percent.
        above_pct: f64,
        /// The longest the stop waits after the deadline, in milliseconds.
        up_to_ms: u64,
    },
    /// A heartbeat came while a stall was deferred for host pressure: no stop.
    StallCleared {
        /// Which liveness source's stall was deferred.
        source: StallSource,
        /// How long after the deadline the stall was cleared, in milliseconds.
        deferred_ms: f64,
    },
    /// A service's processes used more memory than its `memory_limit`.
    OverMemory {
        /// Resident memory of the service's tree, in bytes.
        rss_bytes: u64,
        /// The limit, in bytes.
        limit_bytes: u64,
    },
    /// A diagnosis was written before a stop.
    Incident(IncidentRecord),
    /// hangwatch began stopping a service's tree.
    Stopping {
        /// Why.
        cause: StopCause,
        /// The first signal.
        signal: String,
        /// Grace before KILL, in milliseconds.
        grace_ms: u64,
    },
    /// The grace of a stop ran out: these processes are killed now, and why each was still
    /// alive (what it did with the stop signal, where it was).
    Killing {
        /// Why the stop began.
        cause: StopCause,
        /// The grace that ran out, in milliseconds.
        grace_ms: u64,
        /// The processes about to get `KILL`.
        survivors: Vec<Survivor>,
        /// How long the look at them took, in milliseconds.
        look_ms: f64,
    },
    /// A stop could not begin (the scan of its tree or a signal failed). The service stays in
    /// the stop, watched, and the stop is tried again.
    StopFailed {
        /// Why the stop was begun.
        cause: StopCause,
        /// What failed.
        error: String,
        /// When it is tried again, in milliseconds.
        retry_in_ms: u64,
    },
    /// A service's program exited (on its own or because it was stopped).
    Exited {
        /// Its PID.
        pid: i32,
        /// Exit code or signal.
        status: ProgramStatus,
        /// How long it ran, in milliseconds.
        uptime_ms: f64,
        /// Whether hangwatch had asked it to stop.
        stopped: bool,
        /// Processes of its tree that had to be killed (stop signal ignored past the grace).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        killed: Vec<ProcessInfo>,
        /// For a program that died of a `KILL` hangwatch did not send: whether the kernel's
        /// OOM killer sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oom: Option<OomCheck>,
    },
    /// A restart was scheduled.
    Restarting {
        /// Delay before the new start (backoff), in milliseconds.
        in_ms: u64,
        /// Restarts so far in the `max_restarts` window, this one included.
        attempt: u32,
        /// Why: `exited`, `stalled`, `memory`, `dependency`, `start-failed`.
        reason: String,
    },
    /// Too many restarts: the service is marked failed.
    GaveUp {
        /// Restarts counted in the window.
        restarts: u32,
        /// The window, in milliseconds.
        within_ms: u64,
        /// `stay-down` or `shutdown`.
        action: String,
    },
    /// Objects or processes a service's tree left behind. With a service: what its tree left
    /// when it ended (each end of its program: exit, stop, restart). Without one: what the
    /// final audit at shutdown found that no single service is known to have left. Each object
    /// is named in one event only.
    Leak {
        /// Leftover processes stopped after the program exited.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        leftovers: Vec<ProcessInfo>,
        /// Shared-memory and IPC objects left, by name (`/dev/shm/psm_1a2b`,
        /// `shmid 32769 key 0x00000000`, a socket or lock file's path). Reported, not removed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        objects: Vec<String>,
    },
    /// Output lines were dropped (the disk was full or unwritable).
    LogDropped {
        /// Lines lost since the last such event.
        lines: u64,
        /// Why.
        error: String,
    },
    /// A client of the control socket asked for something (`stop`, `start`, `restart`,
    /// `diagnose`, `down`); what follows is logged as usual.
    Requested {
        /// The request's verb.
        request: String,
    },
    /// The config file was read again and its difference applied (`hangwatch reload`, SIGHUP).
    Reloaded {
        /// New services.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        added: Vec<String>,
        /// Services removed (stopped).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removed: Vec<String>,
        /// Services whose definition changed (restarted).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changed: Vec<String>,
    },
    /// An `[[alert]]` hook did not do its job: it failed, ran past its timeout (and was
    /// killed), could not start, or was not run because of its rate or the limit of hooks
    /// running at once. Never itself the cause of a hook.
    AlertFailed {
        /// The alert's name.
        alert: String,
        /// The event it was run (or not run) for.
        on: String,
        /// `failed`, `timed-out`, `not-started` or `dropped`.
        why: String,
        /// More words: the exit status, the error, how many were dropped.
        detail: String,
    },
    /// The supervisor began shutting down.
    ShuttingDown {
        /// Why: `signal SIGTERM`, `give-up of NAME`, `request`, `all services ended`.
        reason: String,
        /// The bound of the whole shutdown, in milliseconds.
        timeout_ms: u64,
    },
    /// The supervisor is done.
    Down {
        /// How long the shutdown took, in milliseconds.
        took_ms: f64,
        /// Services whose processes all exited within their grace.
        clean: Vec<String>,
        /// Services that had at least one process killed.
        killed: Vec<String>,
        /// hangwatch's exit code.
        exit_code: i32,
    },
}
