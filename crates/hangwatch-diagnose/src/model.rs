//! What a diagnosis holds: plain data, serialised as the JSON incident file.

use serde::{Deserialize, Serialize};

use crate::fds::OpenFd;
use crate::syscall::Call;

/// Version of the diagnosis JSON; bumped on incompatible changes.
pub const DIAGNOSIS_VERSION: u32 = 1;

/// Everything hangwatch saw in a live process tree, with its verdict first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Diagnosis {
    /// Format version ([`DIAGNOSIS_VERSION`]).
    pub version: u32,
    /// The process the diagnosis is about; its descendants are included.
    pub root: i32,
    /// Wall-clock time of the snapshot, milliseconds since the Unix epoch.
    pub taken_at_ms: u64,
    /// The sampling window used for CPU and context-switch rates.
    pub sample_ms: u64,
    /// How long the diagnosis took, window included.
    pub took_ms: u64,
    /// How long the target was paused: hangwatch never pauses it, so 0 — kept so a reader
    /// need not wonder.
    pub paused_ms: u64,
    /// What the program is waiting on, strongest finding first.
    pub verdict: Vec<Finding>,
    /// Every process of the tree, parents first.
    pub processes: Vec<ProcessDiagnosis>,
    /// What could not be read, and why.
    pub missing: Vec<String>,
    /// The host's pressure stall information over the window, where the kernel has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<crate::pressure::HostPressure>,
    /// The optional readings that failed as a whole (`pressure`, `python-stacks`), once each:
    /// the run's notes and `up`'s `degraded` events repeat them (the details are in
    /// `missing`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<hangwatch_protocol::report::Degraded>,
}

/// One conclusion, with the threads it is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Finding {
    /// What kind of wait.
    pub kind: FindingKind,
    /// One or two sentences a person reads.
    pub text: String,
    /// The process.
    pub pid: i32,
    /// The threads involved.
    pub tids: Vec<i32>,
}

/// The kinds of finding, strongest evidence first.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// Threads wait for locks in a cycle (owners known).
    Deadlock,
    /// The program's threads were runnable but not running: the host starved it of CPU (or
    /// of memory), which looks like a hang but is not one.
    Starved,
    /// An asyncio event loop's thread is blocked on a lock inside a callback.
    BlockedEventLoop,
    /// A thread waits for a lock that another thread holds while doing something else (a
    /// sleep, a wait elsewhere): the holder is named.
    LockHeld,
    /// Every thread waits on a lock or condition with no timeout; owners unknown.
    LockWait,
    /// A thread uses a CPU without pause.
    Spinning,
    /// A thread waits on a pipe or socket whose other end is a named process (or nobody).
    WaitingOnPeer,
    /// An event loop waits for an event with no timeout and nothing else can run.
    IdleEventLoop,
    /// A thread sleeps for a long time.
    LongSleep,
    /// A thread waits for a child process.
    WaitingOnChild,
    /// A thread is in uninterruptible sleep (a kernel or device wait).
    KernelWait,
    /// The process is stopped by a signal.
    Stopped,
    /// The evidence does not decide.
    Undecided,
}

/// One process of the tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessDiagnosis {
    /// Process ID.
    pub pid: i32,
    /// Parent process ID.
    pub ppid: i32,
    /// Command line.
    pub command: String,
    /// Resident memory, KiB.
    pub rss_kib: Option<u64>,
    /// Peak resident memory, KiB.
    pub peak_rss_kib: Option<u64>,
    /// CPython version, when the process is a Python interpreter whose stacks were read.
    pub python: Option<String>,
    /// Its threads.
    pub threads: Vec<ThreadDiagnosis>,
    /// Its open file descriptors, resolved to what is at their other end.
    pub fds: Vec<OpenFd>,
}

/// One thread, with what it waits on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ThreadDiagnosis {
    /// Thread ID.
    pub tid: i32,
    /// Thread name (`comm`; Python's name is in `python`).
    pub name: String,
    /// `running`, `sleeping`, `uninterruptible`, `stopped`, `zombie`, …
    pub state: String,
    /// Kernel wait channel.
    pub wchan: Option<String>,
    /// The system call it is blocked in, decoded.
    pub call: Option<Call>,
    /// The call as a sentence with its file descriptor and lock owner resolved.
    pub blocked_in: Option<String>,
    /// For a wait on a glibc mutex, or a Python lock whose holder the evidence names: the
    /// thread that holds it.
    pub lock_owner: Option<i32>,
    /// For a wait on a Python `threading.Lock` or `RLock`: which lock, who holds it, and how
    /// that is known (or why it is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_lock: Option<crate::pylocks::PythonLockWait>,
    /// Time the thread was runnable but not running during the window (waiting for a CPU),
    /// in milliseconds, from `schedstat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runnable_wait_ms: Option<f64>,
    /// CPU used during the sampling window, in milliseconds.
    pub cpu_ms: Option<f64>,
    /// Context switches during the sampling window.
    pub switches: Option<u64>,
    /// Whether it sat in the same call for the whole window without running once.
    pub blocked_whole_window: bool,
    /// The Python view of the thread, when the process is CPython.
    pub python: Option<PythonThread>,
}

/// A Python thread's name and stack, joined to its OS thread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PythonThread {
    /// `threading` name (`MainThread`, …).
    pub name: Option<String>,
    /// Python's thread ident (`threading.get_ident()`), what an `RLock` records as its owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ident: Option<u64>,
    /// Whether it holds the GIL.
    pub holds_gil: bool,
    /// Whether it is doing Python work (not idle in a wait).
    pub active: bool,
    /// Frames, innermost first.
    pub frames: Vec<PythonFrame>,
}

/// One Python frame.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PythonFrame {
    /// Function name.
    pub function: String,
    /// Source file.
    pub file: String,
    /// Line number.
    pub line: i32,
    /// The source line, when the file could be read.
    pub code: Option<String>,
    /// The `with` statements whose body holds this line, innermost first, from the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with_blocks: Vec<crate::pylocks::WithBlock>,
    /// Local variables and their objects' addresses (evidence only, not serialised).
    #[serde(skip)]
    pub locals: Vec<(String, u64)>,
}

impl PythonFrame {
    /// `worker.py:88`.
    #[must_use]
    pub fn location(&self) -> String {
        let short = self.file.rsplit('/').next().unwrap_or(&self.file);
        format!("{short}:{}", self.line)
    }
}

impl ThreadDiagnosis {
    /// The name a person knows the thread by: Python's, else the kernel's.
    #[must_use]
    pub fn display_name(&self) -> &str {
        self.python
            .as_ref()
            .and_then(|p| p.name.as_deref())
            .unwrap_or(&self.name)
    }

    /// The innermost frame of the program's own code: the first frame outside the Python
    /// standard library (`threading.py`, `asyncio/…`), else the innermost frame.
    #[must_use]
    pub fn user_frame(&self) -> Option<&PythonFrame> {
        let frames = &self.python.as_ref()?.frames;
        frames
            .iter()
            .find(|f| !is_stdlib(&f.file))
            .or_else(|| frames.first())
    }
}

/// Whether a Python source path belongs to the interpreter's own library.
#[must_use]
pub fn is_stdlib(file: &str) -> bool {
    file.contains("/lib/python3") && !file.contains("site-packages") || file.starts_with("<frozen")
}
