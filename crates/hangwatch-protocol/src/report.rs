//! The JSON report of a guarded run, written by `hangwatch run --report PATH`.
//!
//! One JSON object per run. Times are wall-clock RFC 3339 strings for people and logs, plus
//! millisecond offsets from the program's start for arithmetic. A stop is described twice on
//! purpose: [`StopRecord`] says why and when the stop began, [`StoppedProcess`] says what each
//! process received and whether it needed `KILL`.

use serde::{Deserialize, Serialize};

/// The version of this report format. Bumped when a field changes meaning; new fields may be
/// added without a bump.
pub const REPORT_VERSION: u32 = 1;

/// Everything hangwatch knows about one guarded run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunReport {
    /// [`REPORT_VERSION`] of the writer.
    pub version: u32,
    /// The command as given after `--`.
    pub command: Vec<String>,
    /// PID of the program, when it started.
    pub pid: Option<i32>,
    /// When hangwatch started the program (RFC 3339, UTC).
    pub started_at: String,
    /// When hangwatch finished: the program and every descendant gone (RFC 3339, UTC).
    pub ended_at: String,
    /// `ended_at - started_at`, in milliseconds.
    pub duration_ms: f64,
    /// The `--timeout` in milliseconds, if one was set.
    pub timeout_ms: Option<u64>,
    /// How the run ended and the exit code hangwatch returned.
    pub outcome: Outcome,
    /// Why and when hangwatch began to stop the program, if it had to.
    pub stop: Option<StopRecord>,
    /// Every process hangwatch signalled to end the run, with what and when.
    pub stopped: Vec<StoppedProcess>,
    /// Descendants still alive after the program itself ended. They were stopped too and also
    /// appear in [`RunReport::stopped`].
    pub leftovers: Vec<ProcessInfo>,
    /// The stall that made hangwatch stop the program, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<StallRecord>,
    /// Soft deadlines (`--stall-warn`) that passed while the program went on running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<StallRecord>,
    /// What the program said over the notify socket, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySummary>,
    /// The diagnosis taken before a stalled or timed-out program was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentRecord>,
    /// What the program left behind besides processes, audited after it ended (`--leaks`).
    /// Absent when the program never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaks: Option<LeakReport>,
    /// Optional parts that could not work as usual during the run, and what hangwatch did
    /// instead. None of them stops the program from running under its bounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Degraded>,
}

/// An optional part of hangwatch that could not work as usual, and how it degraded: the
/// program still ran (or the service still runs) under every bound.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Degraded {
    /// Which part: `notify-socket`, `guardian`, `incident`, `leak-audit`, `heartbeat-file`,
    /// `terminal`, `pressure`, `python-stacks`, `event-log`.
    pub part: String,
    /// What failed and what hangwatch did instead, in words.
    pub note: String,
}

impl Degraded {
    /// A note about `part`.
    #[must_use]
    pub fn new(part: &str, note: impl Into<String>) -> Degraded {
        Degraded {
            part: part.to_owned(),
            note: note.into(),
        }
    }
}

impl std::fmt::Display for Degraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.part, self.note)
    }
}

/// A diagnosis kept as an incident file before hangwatch stopped the program.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IncidentRecord {
    /// The text report.
    pub text_path: Option<String>,
    /// The JSON diagnosis.
    pub json_path: Option<String>,
    /// The verdict, one line per finding, strongest first.
    pub verdict: Vec<String>,
    /// How long the diagnosis took (the stop began after it), in milliseconds.
    pub took_ms: f64,
    /// Why there is no (complete) incident, when something failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The diagnosis's optional readings that failed as a whole (no `/proc/pressure`, the
    /// Python stack reader refused): the run's notes and `up`'s `degraded` events say them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<Degraded>,
}

/// What to do about what a run left behind (`hangwatch run --leaks`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LeakPolicy {
    /// List every leaked object; change nothing.
    #[default]
    Report,
    /// Remove what is attributable to the program (and say so); list the rest.
    Clean,
    /// List, and exit with [`crate::exit_code::LEAKED`] instead of 0 when the run leaked.
    Fail,
}

impl LeakPolicy {
    /// The kebab-case name used in reports and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            LeakPolicy::Report => "report",
            LeakPolicy::Clean => "clean",
            LeakPolicy::Fail => "fail",
        }
    }
}

/// The leak audit of one run: system objects the program created and did not remove.
///
/// Processes left alive are in [`RunReport::leftovers`]; they count towards
/// [`LeakReport::leaked`] too.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LeakReport {
    /// The `--leaks` policy in force.
    pub policy: LeakPolicy,
    /// Whether the run leaked: leftover processes, or an [`Attribution::Attributable`] object
    /// (even one that was cleaned afterwards). [`Attribution::Suspected`] objects do not count.
    pub leaked: bool,
    /// Every object found, attributable ones first.
    pub objects: Vec<LeakedObject>,
    /// Objects that appeared during the run, owned by the program's user, that nothing links
    /// to the program (most likely another program's). Counted, never listed or touched.
    pub unattributed: u64,
    /// How many looks at the live tree gathered the evidence (after creations in `/dev/shm`,
    /// when a stop began, at leftovers).
    pub scans: u64,
    /// Total time of those looks, in milliseconds.
    pub scan_ms: f64,
    /// Time of the snapshot taken before the program started, in milliseconds.
    pub baseline_ms: f64,
    /// Time of the audit after the run (and of the cleaning), in milliseconds.
    pub audit_ms: f64,
    /// Parts of the audit that could not be done, each saying what and why. Objects behind
    /// them may have gone unseen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// One object a run left behind.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LeakedObject {
    /// What sort of object.
    pub kind: LeakKind,
    /// Its name: a path (`/dev/shm/psm_1a2b`), or `shmid 32769 key 0x00000000` for SysV IPC.
    pub name: String,
    /// Its size in bytes, when it has one.
    pub size: Option<u64>,
    /// The owner's user ID.
    pub owner_uid: u32,
    /// The owner's user name, when the system knows it.
    pub owner: Option<String>,
    /// How sure hangwatch is that the program left it.
    pub attribution: Attribution,
    /// Why it is attributed, in words ("held by 1234 when it was created", ...).
    pub evidence: String,
    /// The process of the program's tree that created or held it, when known.
    pub process: Option<ProcessInfo>,
    /// What hangwatch did about it.
    pub action: LeakAction,
    /// Why removing it failed, for [`LeakAction::RemoveFailed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The sorts of objects audited.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LeakKind {
    /// A POSIX named semaphore (`/dev/shm/sem.NAME`).
    PosixSemaphore,
    /// POSIX shared memory (`/dev/shm/NAME`: Python's `psm_*`, loky's, ...).
    PosixSharedMemory,
    /// A SysV shared memory segment.
    SysvSharedMemory,
    /// A SysV semaphore set.
    SysvSemaphore,
    /// A SysV message queue.
    SysvMessageQueue,
    /// A Unix socket file that a process of the tree was listening on.
    UnixSocket,
    /// A file a process of the tree held a lock on.
    LockFile,
    /// A directory at the top level of a temporary directory (`TMPDIR`, `/tmp`, `/var/tmp`):
    /// `multiprocessing`'s `pymp-*`, a `mkdtemp` directory, joblib's memmapping folder.
    TempDirectory,
    /// A file (or socket) at the top level of a temporary directory.
    TempFile,
}

impl LeakKind {
    /// Words for summaries.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            LeakKind::PosixSemaphore => "POSIX semaphore",
            LeakKind::PosixSharedMemory => "POSIX shared memory",
            LeakKind::SysvSharedMemory => "SysV shared memory",
            LeakKind::SysvSemaphore => "SysV semaphore set",
            LeakKind::SysvMessageQueue => "SysV message queue",
            LeakKind::UnixSocket => "Unix socket file",
            LeakKind::LockFile => "lock file",
            LeakKind::TempDirectory => "temporary directory",
            LeakKind::TempFile => "temporary file",
        }
    }
}

/// How sure hangwatch is that an object is the program's leak.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Attribution {
    /// Created during the run by the program's tree and held by nobody now: `--leaks clean`
    /// removes it.
    Attributable,
    /// Linked to the program, but not surely its leak (or not something to remove): listed only.
    Suspected,
}

/// What hangwatch did about a leaked object.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum LeakAction {
    /// Listed, left in place.
    Reported,
    /// Removed (`--leaks clean`).
    Removed,
    /// `--leaks clean` tried and failed (see [`LeakedObject::error`]).
    RemoveFailed,
    /// Gone by the time `--leaks clean` came to remove it.
    AlreadyGone,
}

/// A heartbeat deadline that passed: which source, how late, and what the program looked like.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StallRecord {
    /// Which heartbeat stopped, or what else declared the stall.
    pub source: StallSource,
    /// The bound that was exceeded, in milliseconds.
    pub bound_ms: u64,
    /// When the stall was detected, in milliseconds since the program started.
    pub detected_at_ms: f64,
    /// How long after the deadline the detection came, in milliseconds.
    pub late_ms: f64,
    /// How long before detection the last heartbeat of that source came; `None` if none ever did.
    pub last_heartbeat_ago_ms: Option<f64>,
    /// The program's last `STATUS=` text, if it sent one.
    pub status: Option<String>,
    /// Every process of the tree with its threads, as seen when the stall was detected.
    pub snapshot: Vec<ProcessSnapshot>,
    /// How the stop waited out host pressure first (`--stall-defer-under-pressure`), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deferred: Option<StallDeferral>,
}

/// A stall's stop that waited out host pressure: a starved program misses its heartbeat like
/// a hung one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct StallDeferral {
    /// From the stall deadline to the end of the wait, in milliseconds.
    pub for_ms: f64,
    /// The highest CPU or memory pressure read meanwhile (`some avg10`), percent.
    pub peak_pct: f64,
    /// The threshold that deferred, percent.
    pub above_pct: f64,
    /// Whether the wait reached its bound (else the pressure fell below the threshold).
    pub bound_reached: bool,
}

/// What declared a stall.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StallSource {
    /// No `WATCHDOG=1` over the notify socket within the watchdog bound.
    Notify,
    /// The status file was not modified within its bound.
    File,
    /// No byte on stdout or stderr within the silence bound.
    Output,
    /// The program sent `WATCHDOG=trigger`.
    Trigger,
    /// The program sent `STOPPING=1` and did not exit within the exit grace.
    Stopping,
    /// A liveness probe (HTTP, TCP or a command) failed too many times in a row.
    Probe,
}

impl StallSource {
    /// The kebab-case name used in reports and summaries.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StallSource::Notify => "notify",
            StallSource::File => "file",
            StallSource::Output => "output",
            StallSource::Trigger => "trigger",
            StallSource::Stopping => "stopping",
            StallSource::Probe => "probe",
        }
    }
}

/// One process and its threads at one moment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessSnapshot {
    /// Which process.
    #[serde(flatten)]
    pub process: ProcessInfo,
    /// Its threads.
    pub threads: Vec<ThreadSnapshot>,
}

/// One thread at one moment, from `/proc/PID/task/TID`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadSnapshot {
    /// Thread ID.
    pub tid: i32,
    /// Thread name (`comm`).
    pub name: String,
    /// State letter: `R` running, `S` sleeping, `D` uninterruptible, `T` stopped, `Z` zombie.
    pub state: String,
    /// The kernel function the thread sleeps in (`wchan`), when readable and not running.
    pub wchan: Option<String>,
}

/// What a program said over the notify socket during a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NotifySummary {
    /// The value given in `NOTIFY_SOCKET`.
    pub socket: String,
    /// Datagrams accepted from the program's tree.
    pub datagrams: u64,
    /// Assignments that were unknown or malformed, ignored.
    pub ignored: u64,
    /// Datagrams refused because the sender was not in the program's tree (or had exited).
    pub rejected: u64,
    /// When `READY=1` came, in milliseconds since start.
    pub ready_at_ms: Option<f64>,
    /// When `STOPPING=1` came, in milliseconds since start.
    pub stopping_at_ms: Option<f64>,
    /// The last `STATUS=` text.
    pub status: Option<String>,
    /// The last `ERRNO=` value.
    pub errno: Option<i32>,
    /// The last `MAINPID=` value.
    pub main_pid: Option<i32>,
    /// The watchdog bound in force at the end, in milliseconds (`--stall` or `WATCHDOG_USEC=`).
    pub watchdog_ms: Option<u64>,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// Why the run ended.
    pub reason: EndReason,
    /// The exit code hangwatch returned (see [`crate::exit_code`]).
    pub exit_code: i32,
    /// What the program's own wait status was, if it ran.
    pub program: Option<ProgramStatus>,
    /// Why the program could not be started, for [`EndReason::FailedToStart`].
    pub error: Option<String>,
    /// For a program that died of a `KILL` hangwatch did not send: whether the kernel's OOM
    /// killer sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom: Option<OomCheck>,
}

/// Whether the kernel's OOM killer killed a program that died of a `KILL` hangwatch did not
/// send, and what the look cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OomCheck {
    /// The answer.
    pub finding: OomFinding,
    /// How long the look at the kernel log took, in milliseconds.
    pub took_ms: f64,
    /// How many bytes of the kernel log the look read.
    pub kmsg_bytes: u64,
}

impl OomCheck {
    /// Whether the kernel log says that the OOM killer killed the program.
    #[must_use]
    pub fn killed(&self) -> bool {
        matches!(self.finding, OomFinding::Killed(_))
    }
}

/// What the kernel log says about a `KILL` hangwatch did not send.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OomFinding {
    /// The kernel log records the OOM kill of this very process (its PID, after it started).
    Killed(OomKill),
    /// The kernel log was read over the whole life of the process and records no OOM kill of
    /// it: the `KILL` came from elsewhere.
    NotOom,
    /// The kernel log could not be read (a container, `dmesg_restrict`), or not all of it:
    /// nothing weaker is taken for an answer.
    Undecided {
        /// Why, as a fragment: `/dev/kmsg cannot be opened: permission denied`.
        why: String,
        /// A hint, never a verdict: the program's cgroup counted an OOM kill during its run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cgroup_hint: Option<CgroupOomHint>,
    },
}

/// An OOM kill as the kernel logged it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OomKill {
    /// The killed process's PID.
    pub pid: i32,
    /// Its command name as the kernel logged it (at most 15 bytes).
    pub task: String,
    /// Why memory ran out: the whole machine, a memory cgroup's limit, a cpuset, a memory policy.
    pub constraint: OomConstraint,
    /// The memory cgroup whose limit was reached (`oom_memcg=`), when it was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The memory cgroup the process was in (`task_memcg=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_cgroup: Option<String>,
    /// Its anonymous resident memory at the kill, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anon_rss_kib: Option<u64>,
    /// Its virtual memory size at the kill, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_vm_kib: Option<u64>,
    /// When the kernel logged the kill, in microseconds since boot.
    pub at_usec: u64,
}

/// What ran out of memory, after the kernel's `constraint=` (`enum oom_constraint`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum OomConstraint {
    /// The whole machine (`CONSTRAINT_NONE`).
    Machine,
    /// A memory cgroup's limit (`CONSTRAINT_MEMCG`).
    MemoryCgroup,
    /// The memory nodes of a cpuset (`CONSTRAINT_CPUSET`).
    Cpuset,
    /// The nodes of a memory policy (`CONSTRAINT_MEMORY_POLICY`).
    MemoryPolicy,
}

/// The program's cgroup counted OOM kills during its run (`oom_kill` of `memory.events`, or
/// of `memory.oom_control` under cgroup v1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupOomHint {
    /// The file read.
    pub file: String,
    /// `oom_kill` when the program started.
    pub before: u64,
    /// `oom_kill` after it died.
    pub after: u64,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EndReason {
    /// The program exited by itself.
    Exited,
    /// The program died of a signal hangwatch did not send as part of a stop (for example one it
    /// forwarded, or one from elsewhere).
    Signalled,
    /// The `--timeout` deadline passed and hangwatch stopped the program.
    TimedOut,
    /// hangwatch received a termination signal again while the program was still running, and
    /// stopped it.
    StoppedOnRequest,
    /// The program could not be started.
    FailedToStart,
    /// The program stalled and hangwatch stopped it.
    Stalled,
}

impl EndReason {
    /// The kebab-case name used in the JSON report and in summaries.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Exited => "exited",
            EndReason::Signalled => "signalled",
            EndReason::TimedOut => "timed-out",
            EndReason::StoppedOnRequest => "stopped-on-request",
            EndReason::FailedToStart => "failed-to-start",
            EndReason::Stalled => "stalled",
        }
    }
}

/// The program's own wait status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ProgramStatus {
    /// `exit(code)`.
    Exited {
        /// The exit code, 0–255.
        code: i32,
    },
    /// Killed by a signal.
    Signalled {
        /// Signal number.
        signal: i32,
        /// Signal name without the `SIG` prefix (`TERM`).
        name: String,
        /// Whether a core dump was written.
        core_dumped: bool,
    },
}

/// Why and when hangwatch began to stop the program.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StopRecord {
    /// What made hangwatch stop the program.
    pub cause: StopCause,
    /// When the stop began, in milliseconds since the program started.
    pub began_at_ms: f64,
    /// For a timeout: how late the first stop signal was sent after the deadline, in milliseconds.
    pub late_ms: Option<f64>,
    /// The stop signal sent first (`TERM` unless `--stop-signal` said otherwise).
    pub signal: String,
    /// The grace given after the stop signal before `KILL`, in milliseconds.
    pub grace_ms: u64,
    /// Whether any process needed `KILL`.
    pub escalated_to_kill: bool,
    /// How long the stop took until every process was gone, in milliseconds.
    pub took_ms: f64,
    /// How long the look at the survivors before the `KILL` took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivors_look_ms: Option<f64>,
    /// The incident written about the survivors just before the `KILL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivors_incident: Option<IncidentRecord>,
}

/// Why an incident file was written, the last word of its name (`SERVICE-WHY` under `up`,
/// `WHY` under `run`): one list for the writers and for `hangwatch incidents`, which reads it
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IncidentWhy {
    /// A liveness source missed its deadline.
    Stalled,
    /// The tree passed its memory limit.
    OverMemory,
    /// `hangwatch run`'s `--timeout` passed.
    TimedOut,
    /// Someone asked (`hangwatch diagnose NAME`).
    Requested,
    /// A stop's survivors, looked at just before the `KILL`.
    Killed,
    /// `stall_warn` passed: a warning, the service runs on.
    StallWarning,
}

impl IncidentWhy {
    /// Every reason, for readers of file names.
    pub const ALL: [IncidentWhy; 6] = [
        IncidentWhy::Stalled,
        IncidentWhy::OverMemory,
        IncidentWhy::TimedOut,
        IncidentWhy::Requested,
        IncidentWhy::Killed,
        IncidentWhy::StallWarning,
    ];

    /// The reason as written in the file name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentWhy::Stalled => "stalled",
            IncidentWhy::OverMemory => "over-memory",
            IncidentWhy::TimedOut => "timed-out",
            IncidentWhy::Requested => "requested",
            IncidentWhy::Killed => "killed",
            IncidentWhy::StallWarning => "stall-warning",
        }
    }

    /// The reason for a diagnosis before a stop of this cause.
    #[must_use]
    pub fn before_stop(cause: StopCause) -> IncidentWhy {
        match cause {
            StopCause::Memory => IncidentWhy::OverMemory,
            StopCause::Timeout => IncidentWhy::TimedOut,
            _ => IncidentWhy::Stalled,
        }
    }
}

/// What made hangwatch stop a program's tree: the one vocabulary of `hangwatch run`'s report
/// and of the supervisor's events (`stopping`, `stop-failed`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum StopCause {
    /// The `--timeout` deadline passed.
    Timeout,
    /// Someone asked: a second INT or TERM to `hangwatch run`, or `hangwatch stop`/`restart`.
    /// (Event logs written before the report and the events shared this type said
    /// `requested`.)
    #[serde(alias = "requested")]
    Request,
    /// The program exited and left descendants behind.
    Leftovers,
    /// The program stalled (see [`RunReport::stall`]).
    Stall,
    /// Its tree used more memory than its `memory_limit`.
    Memory,
    /// It did not become ready in time.
    NotReady,
    /// A dependency restarts and it declared `restart_with_dependency`.
    Dependency,
    /// The supervisor shuts down.
    Shutdown,
    /// A reload changed or removed its definition.
    Reload,
}

impl StopCause {
    /// The cause as written in reports and events (`stall`, `not-ready`, …).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StopCause::Timeout => "timeout",
            StopCause::Request => "request",
            StopCause::Leftovers => "leftovers",
            StopCause::Stall => "stall",
            StopCause::Memory => "memory",
            StopCause::NotReady => "not-ready",
            StopCause::Dependency => "dependency",
            StopCause::Shutdown => "shutdown",
            StopCause::Reload => "reload",
        }
    }

    /// How a program stopped for this cause ended, as `hangwatch status` and the restart
    /// events say it: `stalled`, `timed-out`, `memory`, `not-ready`, or `stopped`.
    #[must_use]
    pub fn ending_word(self) -> &'static str {
        match self {
            StopCause::Timeout => "timed-out",
            StopCause::Stall => "stalled",
            StopCause::Memory => "memory",
            StopCause::NotReady => "not-ready",
            StopCause::Dependency => "dependency",
            StopCause::Reload => "reload",
            StopCause::Request | StopCause::Leftovers | StopCause::Shutdown => "stopped",
        }
    }
}

impl std::fmt::Display for StopCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity and command line of a process, as seen in `/proc`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process ID.
    pub pid: i32,
    /// Start time in clock ticks since boot (field 22 of `/proc/PID/stat`); with `pid`, the
    /// process's identity that a reused PID cannot fake.
    pub start_time: u64,
    /// Parent PID when it was seen.
    pub ppid: i32,
    /// Process group ID.
    pub pgid: i32,
    /// Command line, arguments joined by spaces (or `[comm]` when it has none).
    pub command: String,
}

/// A process hangwatch signalled to end the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoppedProcess {
    /// Which process.
    #[serde(flatten)]
    pub process: ProcessInfo,
    /// Whether it had left the program's process group (`setsid`, `setpgid`): found only through
    /// descendant tracking.
    pub escaped_group: bool,
    /// The signals sent to it, in order.
    pub signals: Vec<SentSignal>,
    /// Whether it was still alive when the grace ran out and needed `KILL`.
    pub killed: bool,
    /// For a process that needed `KILL`: why the stop signal did not end it, and where it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survived: Option<Survival>,
}

/// Why a process outlived its stop signal, as seen just before its `KILL`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Survival {
    /// The stop signal, without `SIG` (`TERM`).
    pub signal: String,
    /// What the process did with it (`SigIgn`, `SigCgt`, `SigBlk` of `/proc/PID/status`):
    /// `ignored`, `caught` (a handler ran and the process kept running), `blocked` (by every
    /// thread), `default` (the default action had not ended it yet), or `unknown` (unreadable).
    pub handling: String,
    /// Where it was: one line per thread worth naming (blocked call, Python stack), the most
    /// telling first. Empty when the bounded look found nothing to say or ran out of time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<String>,
}

/// A process about to be killed because its grace ran out, and why it was still alive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Survivor {
    /// Which process.
    #[serde(flatten)]
    pub process: ProcessInfo,
    /// Why it was still alive.
    #[serde(flatten)]
    pub survival: Survival,
}

/// One signal sent to one process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SentSignal {
    /// Signal name without the `SIG` prefix.
    pub signal: String,
    /// Milliseconds after the stop began.
    pub after_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_json() {
        let report = RunReport {
            version: REPORT_VERSION,
            command: vec!["sleep".into(), "100".into()],
            pid: Some(42),
            started_at: "2026-01-01T00:00:00.000Z".into(),
            ended_at: "2026-01-01T00:00:01.000Z".into(),
            duration_ms: 1000.0,
            timeout_ms: Some(1000),
            outcome: Outcome {
                reason: EndReason::TimedOut,
                exit_code: crate::exit_code::TIMED_OUT,
                program: Some(ProgramStatus::Signalled {
                    signal: 15,
                    name: "TERM".into(),
                    core_dumped: false,
                }),
                error: None,
                oom: None,
            },
            stop: Some(StopRecord {
                cause: StopCause::Timeout,
                began_at_ms: 1000.2,
                late_ms: Some(0.2),
                signal: "TERM".into(),
                grace_ms: 10_000,
                escalated_to_kill: true,
                took_ms: 1.0,
                survivors_look_ms: Some(12.5),
                survivors_incident: None,
            }),
            stopped: vec![StoppedProcess {
                process: ProcessInfo {
                    pid: 42,
                    start_time: 7,
                    ppid: 1,
                    pgid: 42,
                    command: "sleep 100".into(),
                },
                escaped_group: false,
                signals: vec![SentSignal {
                    signal: "TERM".into(),
                    after_ms: 0.0,
                }],
                killed: true,
                survived: Some(Survival {
                    signal: "TERM".into(),
                    handling: "caught".into(),
                    at: vec!["thread \"MainThread\" in app.py:57 drain()".into()],
                }),
            }],
            leftovers: vec![],
            stall: None,
            warnings: vec![],
            notify: None,
            incident: None,
            leaks: Some(LeakReport {
                policy: LeakPolicy::Clean,
                leaked: true,
                objects: vec![LeakedObject {
                    kind: LeakKind::PosixSharedMemory,
                    name: "/dev/shm/psm_1a2b".into(),
                    size: Some(4096),
                    owner_uid: 1000,
                    owner: Some("ci".into()),
                    attribution: Attribution::Attributable,
                    evidence: "held by 42 when it was created".into(),
                    process: None,
                    action: LeakAction::Removed,
                    error: None,
                }],
                ..LeakReport::default()
            }),
            notes: vec![Degraded::new(
                "notify-socket",
                "the path is too long; an abstract socket is used",
            )],
        };
        let json = serde_json::to_string(&report).expect("serialize");
        assert!(json.contains(r#""reason":"timed-out""#), "{json}");
        assert!(json.contains(r#""kind":"signalled""#), "{json}");
        assert!(json.contains(r#""kind":"posix-shared-memory""#), "{json}");
        assert!(json.contains(r#""attribution":"attributable""#), "{json}");
        assert!(
            json.contains(r#""notes":[{"part":"notify-socket""#),
            "{json}"
        );
        assert!(json.contains(r#""handling":"caught""#), "{json}");
        // A report of an older hangwatch, without the survivors' fields, still reads.
        let older = json
            .replace(r#","survivors_look_ms":12.5"#, "")
            .replace(
                r#","survived":{"signal":"TERM","handling":"caught","at":["thread \"MainThread\" in app.py:57 drain()"]}"#,
                "",
            );
        assert_ne!(older, json);
        let old: RunReport = serde_json::from_str(&older).expect("deserialize the older form");
        assert_eq!(old.stopped[0].survived, None);
        let back: RunReport = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, report);
    }
}
