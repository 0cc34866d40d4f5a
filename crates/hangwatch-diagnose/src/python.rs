//! Python stacks of a live CPython process, read from outside without pausing it.
//!
//! A hung Python program rarely says why from `/proc` alone: every thread sleeps in `futex`.
//! What explains the hang is the Python stack of each thread: two threads each in a `with lock:`
//! line waiting for the other's lock, a `queue.get()` nobody will feed. [`dump`] reads those
//! stacks the way `py-spy dump --nonblocking` does, through the [`py_spy`] crate.
//!
//! # Theory of operation
//!
//! [`is_python`] looks at the executable's name and, failing that, for a mapped `libpython`.
//! [`dump`] takes a version in either name that py-spy has no struct layouts for as not Python
//! either, then opens `/proc/PID/mem` (the kernel's ptrace access check, Yama included), lets
//! py-spy locate the interpreter from the binary's symbols and walk its thread list with
//! `process_vm_readv`, and turns what it found into plain records. The process is never stopped
//! (`LockingStrategy::NonBlocking`, no ptrace call at all): a stack may be torn if the thread
//! runs while it is read, which is harmless for a hung thread and is retried when py-spy
//! notices. A read that fails is checked against the process's fate: exited, exiting
//! (`PF_EXITING`: its memory is already gone) or exiting within a few milliseconds (an
//! interpreter tearing itself down) is [`PythonError::Gone`], never a failure or a panic.
//!
//! CPython before 3.11 does not record the kernel thread ID of a thread, and py-spy (built
//! without its libunwind-based `unwind` feature) then reports none. It is recovered here
//! without ptrace: a blocked thread's stack pointer is in `/proc/PID/task/TID/syscall`, and
//! its Python thread ident is the address of its `pthread` control block, which glibc places
//! at the top of the thread's stack mapping. The main thread, whose control block
//! is not on its stack, is the one `threading` names `MainThread`. A thread running on a CPU
//! at that instant has no stack pointer to show and keeps `os_tid: None`.
//!
//! # Caveats
//!
//! - Only the main interpreter is read (no sub-interpreters), as in py-spy.
//! - Reading another process's memory or its `maps` takes that process's memory-map lock: a
//!   process stuck in an uninterruptible wait *holding* that lock (a page fault on a dead NFS
//!   server) makes the read wait too. Callers on a deadline should run [`dump`] on a thread
//!   of its own and stop waiting for it.
//! - `active` is py-spy's view: the thread's kernel state is `R`, and its innermost frame is not
//!   a known idle wait (`threading.Condition.wait`, `selectors.select`, …). A thread spinning
//!   in C code without Python frames counts as active; so does, before 3.11, a thread whose
//!   kernel ID stayed unknown (only the frame test applies).
//! - py-spy may panic on memory that changed under it; the panic is caught and reported as an
//!   error, but the process's panic hook still prints it.
//! - The process is read through its thread-group leader: a program whose main thread called
//!   `pthread_exit` while others run reads as [`PythonError::Gone`].

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;

use hangwatch_process::ProcessId;
use hangwatch_process::stat::read_stat_file;
use py_spy::config::{Config, LockingStrategy};
use serde::{Deserialize, Serialize};

/// The Python stacks of every thread of one process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PythonDump {
    /// The interpreter's version, as `3.11.7`.
    pub version: String,
    /// Every thread the interpreter knows, the oldest (usually `MainThread`) first.
    pub threads: Vec<PythonThread>,
}

/// One Python thread.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PythonThread {
    /// Python's thread ident (`threading.get_ident()`).
    pub thread_id: u64,
    /// The kernel thread ID, to join with `/proc/PID/task/TID`; `None` when it could not be
    /// learnt (see the module documentation).
    pub os_tid: Option<i32>,
    /// The `threading` name, as `MainThread`; `None` for threads `threading` does not know.
    pub name: Option<String>,
    /// Whether this thread held the GIL when it was read.
    pub holds_gil: bool,
    /// Whether the thread seemed to be running rather than waiting (py-spy's heuristic).
    pub active: bool,
    /// The stack, innermost frame first.
    pub frames: Vec<PythonFrame>,
}

/// One frame of a Python stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PythonFrame {
    /// The function's qualified name where the interpreter records it (`Thread.run` on 3.11+,
    /// `run` before), `<module>` for top-level code.
    pub function: String,
    /// The source file as the interpreter knows it (may be relative to the program's start
    /// directory).
    pub file: String,
    /// The line being executed.
    pub line: i32,
    /// Local variables and the addresses of their objects, when asked for
    /// ([`dump_with_locals`]); the evidence that two frames name the same object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<(String, u64)>,
}

/// Why the stacks of a process could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PythonError {
    /// Not a CPython process, or a version py-spy cannot read. Not a failure: there are just no
    /// Python stacks to show.
    #[error("read Python stacks: not a CPython process (or a version that cannot be read)")]
    NotPython,
    /// The kernel refused access to the process's memory; the text says what is missing.
    #[error("read Python stacks: not permitted: {0}")]
    NotPermitted(String),
    /// The process exited before or while it was read.
    #[error("read Python stacks: the process exited")]
    Gone,
    /// Anything else (an interpreter not initialised yet, memory that never read consistently).
    #[error("read Python stacks: {0}")]
    Failed(String),
}

/// Whether `pid` looks like a CPython process, cheaply: its executable is named like
/// `python3.11`, or it maps a `libpython` (embedded interpreters, frozen applications).
///
/// When the executable cannot be inspected (another user's process), the command line decides,
/// so that [`dump`] can then say what permission is missing. `false` for a process that is gone.
#[must_use]
pub fn is_python(pid: i32) -> bool {
    look(pid).is_python
}

/// What the names of a process's files say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Looks {
    is_python: bool,
    /// `(major, minor)` when the executable's or `libpython`'s name carries it.
    version: Option<(u32, u32)>,
}

fn look(pid: i32) -> Looks {
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => {
            let exe = exe.to_string_lossy();
            if is_python_executable(&exe) {
                return Looks {
                    is_python: true,
                    version: version_in_name(&exe, "python"),
                };
            }
            let libpython = std::fs::read_to_string(format!("/proc/{pid}/maps"))
                .ok()
                .and_then(|maps| libpython_in_maps(&maps).map(str::to_owned));
            Looks {
                is_python: libpython.is_some(),
                version: libpython.and_then(|path| version_in_name(&path, "libpython")),
            }
        }
        Err(_) => {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
            let argv0 = String::from_utf8_lossy(argv0);
            Looks {
                is_python: is_python_executable(&argv0),
                version: None,
            }
        }
    }
}

/// Whether py-spy has the struct layouts of this CPython version; any other would be read as
/// garbage (or refused with an error that only says so in text).
fn is_supported((major, minor): (u32, u32)) -> bool {
    matches!((major, minor), (2, 3..=7) | (3, 3..=15))
}

/// Stacks of every thread of `pid`, read without pausing the process.
///
/// Takes a few milliseconds for tens of threads, plus about 5 ms to locate the interpreter.
pub fn dump(pid: i32) -> Result<PythonDump, PythonError> {
    dump_as(pid, false)
}

/// [`dump`], with each frame's local variables and their objects' addresses (not their values).
/// Costs a read of every local of every frame.
pub fn dump_with_locals(pid: i32) -> Result<PythonDump, PythonError> {
    dump_as(pid, true)
}

fn dump_as(pid: i32, locals: bool) -> Result<PythonDump, PythonError> {
    let id = match ProcessId::of(pid) {
        Ok(Some(id)) => id,
        Ok(None) => return Err(PythonError::Gone),
        Err(err) => return Err(PythonError::Failed(format!("read /proc/{pid}/stat: {err}"))),
    };
    if has_exited(id) {
        return Err(PythonError::Gone);
    }
    let looks = look(pid);
    if !looks.is_python || looks.version.is_some_and(|version| !is_supported(version)) {
        return Err(if has_exited(id) {
            PythonError::Gone
        } else {
            PythonError::NotPython
        });
    }
    // The same access check as `process_vm_readv` (ptrace attach mode, Yama included), made
    // up front so that a refusal is reported as such rather than as a failed read.
    if let Err(err) = std::fs::File::open(format!("/proc/{pid}/mem")) {
        return Err(match err.kind() {
            io::ErrorKind::PermissionDenied => PythonError::NotPermitted(permission_reason(pid)),
            _ if has_exited(id) => PythonError::Gone,
            _ => PythonError::Failed(format!("open /proc/{pid}/mem: {err}")),
        });
    }
    // A panic inside py-spy (it decodes memory that may change under it) must not take the
    // caller down: it becomes an error like any other unreadable state.
    let read = std::panic::catch_unwind(|| read_stacks(pid, locals));
    match read {
        Ok(Ok(dump)) => Ok(dump),
        Ok(Err(_)) | Err(_) if has_exited(id) => Err(PythonError::Gone),
        Ok(Err(Problem::Unsupported)) => Err(PythonError::NotPython),
        Ok(Err(Problem::Read(err))) => match classify(pid, &err) {
            PythonError::Failed(_) if exits_soon(id) => Err(PythonError::Gone),
            other => Err(other),
        },
        Err(_) => Err(PythonError::Failed(
            "py-spy panicked on the process's memory".to_owned(),
        )),
    }
}

/// How many times a torn read of the thread list is retried before giving up. A thread that
/// starts or exits while the list is walked makes a read fail; a hung process does not churn.
const READ_ATTEMPTS: usize = 3;

enum Problem {
    Unsupported,
    Read(anyhow::Error),
}

fn read_stacks(pid: i32, locals: bool) -> Result<PythonDump, Problem> {
    let config = Config {
        blocking: LockingStrategy::NonBlocking,
        native: false,
        // File names as the interpreter has them; shortening costs a `stat` per directory.
        full_filenames: true,
        // py-spy formats each local's value as well; one short line per local is the least.
        dump_locals: u64::from(locals),
        ..Config::default()
    };
    let mut spy = py_spy::PythonSpy::new(pid, &config).map_err(Problem::Read)?;
    let version = &spy.version;
    let known = u32::try_from(version.major)
        .ok()
        .zip(u32::try_from(version.minor).ok())
        .is_some_and(is_supported);
    if !known {
        return Err(Problem::Unsupported);
    }
    let version = version.to_string();
    let mut attempt = 1;
    let traces = loop {
        match spy.get_stack_traces() {
            Ok(traces) => break traces,
            Err(_) if attempt < READ_ATTEMPTS => attempt += 1,
            Err(err) => return Err(Problem::Read(err)),
        }
    };
    // py-spy lists threads as the interpreter links them, the newest first.
    let mut threads: Vec<PythonThread> = traces
        .into_iter()
        .rev()
        .map(|trace| PythonThread {
            thread_id: trace.thread_id,
            os_tid: trace.os_thread_id.and_then(|tid| i32::try_from(tid).ok()),
            name: trace.thread_name,
            holds_gil: trace.owns_gil,
            active: trace.active,
            frames: trace
                .frames
                .into_iter()
                .map(|frame| PythonFrame {
                    function: frame.name,
                    file: frame.filename,
                    line: frame.line,
                    locals: frame
                        .locals
                        .unwrap_or_default()
                        .into_iter()
                        .map(|local| (local.name, local.addr as u64))
                        .collect(),
                })
                .collect(),
        })
        .collect();
    if threads.iter().any(|thread| thread.os_tid.is_none()) {
        recover_os_tids(pid, &mut threads);
    }
    Ok(PythonDump { version, threads })
}

/// Fills in `os_tid` for threads py-spy left without one (CPython before 3.11), from each
/// blocked thread's stack pointer; see the module documentation.
///
/// py-spy's `active` for such a thread was its frame heuristic alone, since it had no kernel
/// state to consult; a thread matched here is blocked in the kernel, so it is not active
/// unless it runs again by the time its state is read.
fn recover_os_tids(pid: i32, threads: &mut [PythonThread]) {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return;
    };
    let regions = parse_maps(&maps);
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    let tasks: Vec<Task> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .map(|tid| Task {
            tid,
            stack_pointer: std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))
                .ok()
                .and_then(|text| parse_syscall_stack_pointer(&text)),
        })
        .collect();
    let unknown: Vec<(u64, Option<&str>)> = threads
        .iter()
        .filter(|thread| thread.os_tid.is_none())
        .map(|thread| (thread.thread_id, thread.name.as_deref()))
        .collect();
    let known: Vec<i32> = threads.iter().filter_map(|thread| thread.os_tid).collect();
    let found = match_threads(pid, &unknown, &known, &tasks, &regions);
    for thread in threads.iter_mut() {
        if thread.os_tid.is_some() {
            continue;
        }
        if let Some(&tid) = found.get(&thread.thread_id) {
            thread.os_tid = Some(tid);
            let path = format!("/proc/{pid}/task/{tid}/stat");
            let running = read_stat_file(std::path::Path::new(&path))
                .ok()
                .flatten()
                .is_some_and(|stat| stat.state == 'R');
            thread.active = thread.active && running;
        }
    }
}

/// A kernel thread of the process and, when it is blocked, its user stack pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Task {
    tid: i32,
    stack_pointer: Option<u64>,
}

/// One mapping of `/proc/PID/maps`: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Region {
    start: u64,
    end: u64,
}

/// Pairs Python thread idents (`unknown`, with their `threading` names) with kernel thread
/// IDs not already taken (`known`).
///
/// A thread's ident is the address of its `pthread` block at the top of its stack mapping, so a
/// blocked thread belongs to the lowest ident above its stack pointer in the same mapping.
/// `MainThread` gets the thread-group leader (`tid == pid`) if no stack claimed either.
fn match_threads(
    pid: i32,
    unknown: &[(u64, Option<&str>)],
    known: &[i32],
    tasks: &[Task],
    regions: &[Region],
) -> HashMap<u64, i32> {
    let mut found: HashMap<u64, i32> = HashMap::new();
    for task in tasks.iter().filter(|task| !known.contains(&task.tid)) {
        let Some(sp) = task.stack_pointer else {
            continue;
        };
        let Some(region) = regions.iter().find(|r| r.start <= sp && sp < r.end) else {
            continue;
        };
        let owner = unknown
            .iter()
            .map(|&(ident, _)| ident)
            .filter(|&ident| sp < ident && ident < region.end)
            .min();
        if let Some(ident) = owner {
            // Two kernel threads claiming one ident means the layout is not what this relies
            // on; claim nothing rather than guess.
            if found.insert(ident, task.tid).is_some() {
                return HashMap::new();
            }
        }
    }
    let leader_free = !known.contains(&pid)
        && !found.values().any(|&tid| tid == pid)
        && tasks.iter().any(|task| task.tid == pid);
    if leader_free {
        let main = unknown
            .iter()
            .find(|&&(ident, name)| name == Some("MainThread") && !found.contains_key(&ident));
        if let Some(&(ident, _)) = main {
            found.insert(ident, pid);
        }
    }
    found
}

/// The user stack pointer in a `/proc/PID/task/TID/syscall` line: the second-to-last field of
/// `NR ARG1..ARG6 SP PC` (or `-1 SP PC` when blocked outside a system call); `None` for
/// `running`, whose registers cannot be read without stopping the thread.
fn parse_syscall_stack_pointer(text: &str) -> Option<u64> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    if fields.len() < 3 {
        return None;
    }
    let sp = fields[fields.len() - 2];
    u64::from_str_radix(sp.strip_prefix("0x")?, 16).ok()
}

/// The address ranges of `/proc/PID/maps`.
fn parse_maps(text: &str) -> Vec<Region> {
    text.lines()
        .filter_map(|line| {
            let range = line.split_whitespace().next()?;
            let (start, end) = range.split_once('-')?;
            Some(Region {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
            })
        })
        .collect()
}

/// The path of the `libpython` that `/proc/PID/maps` shows (`libpython3.11.so.1.0`,
/// `libpython3.6m.so`), if any.
fn libpython_in_maps(text: &str) -> Option<&str> {
    text.lines().find_map(|line| {
        let path = line.split_whitespace().nth(5)?;
        let file = path.rsplit('/').next()?;
        (file.starts_with("libpython") && file.contains(".so")).then_some(path)
    })
}

/// `(major, minor)` from a file name such as `python3.11`, `python3.13t` or
/// `libpython3.11.so.1.0` (`prefix` being `python` or `libpython`).
fn version_in_name(path: &str, prefix: &str) -> Option<(u32, u32)> {
    let name = path.rsplit('/').next()?.strip_prefix(prefix)?;
    let mut numbers = name.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether an executable path names a CPython interpreter: `python`, `python3`, `python3.11`,
/// and the `d`/`m`/`t`/`u` ABI suffixes (`python3.13t`). A binary replaced on disk reads as
/// `… (deleted)`.
fn is_python_executable(path: &str) -> bool {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some(rest) = name.strip_prefix("python") else {
        return false;
    };
    let suffix = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.');
    suffix.chars().all(|c| matches!(c, 'd' | 'm' | 't' | 'u'))
}

/// Whether the process has exited (a zombie included) or is exiting.
///
/// An exiting process has released its memory before it becomes a zombie: its executable,
/// command line and memory no longer read, which must not pass for "not Python" or a failure.
fn has_exited(id: ProcessId) -> bool {
    if !id.is_alive().unwrap_or(false) {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{}/stat", id.pid)).map_or(true, |text| {
        stat_flags(&text).is_some_and(|flags| flags & PF_EXITING != 0)
    })
}

/// How long a process whose memory stopped making sense is given to exit: a Python program
/// past its last line frees its interpreter's structures, and then exits within milliseconds.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_millis(20);

/// Whether the process exits within [`EXIT_GRACE`]. Called only on a failed read.
fn exits_soon(id: ProcessId) -> bool {
    std::thread::sleep(EXIT_GRACE);
    has_exited(id)
}

/// `PF_EXITING` of `include/linux/sched.h`: set as a task begins to exit.
const PF_EXITING: u64 = 0x4;

/// The `flags` field (9) of a `/proc/PID/stat` line, counted after the command name's `)`.
fn stat_flags(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(6)?.parse().ok()
}

/// Turns a py-spy failure on a live process into an error. Only typed errors are looked at:
/// an `io::Error` in the chain saying the kernel refused access.
fn classify(pid: i32, err: &anyhow::Error) -> PythonError {
    let denied = err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied)
    });
    if denied {
        PythonError::NotPermitted(permission_reason(pid))
    } else {
        PythonError::Failed(format!("{err:#}"))
    }
}

/// What the kernel checks before it lets one process read another's memory, as far as
/// `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AccessFacts {
    pid: i32,
    reader_uid: Option<u32>,
    reader_has_ptrace_capability: bool,
    target_uid: Option<u32>,
    /// The owner of `/proc/PID`: the kernel shows root there for a process that is not
    /// dumpable (it changed credentials, or called `prctl(PR_SET_DUMPABLE, 0)`).
    target_proc_owner: Option<u32>,
    /// `kernel.yama.ptrace_scope`, `None` without Yama.
    ptrace_scope: Option<u8>,
    target_is_descendant: bool,
}

impl AccessFacts {
    fn gather(pid: i32) -> AccessFacts {
        let own = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let target = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        AccessFacts {
            pid,
            reader_uid: status_field(&own, "Uid:").and_then(effective_uid),
            reader_has_ptrace_capability: status_field(&own, "CapEff:")
                .and_then(|caps| u64::from_str_radix(caps.trim(), 16).ok())
                .is_some_and(|caps| caps & (1 << CAP_SYS_PTRACE) != 0),
            target_uid: status_field(&target, "Uid:")
                .and_then(|uids| uids.split_whitespace().next()?.parse().ok()),
            target_proc_owner: std::fs::metadata(format!("/proc/{pid}"))
                .ok()
                .map(|meta| meta.uid()),
            ptrace_scope: std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
                .ok()
                .and_then(|text| text.trim().parse().ok()),
            target_is_descendant: hangwatch_process::tree::is_descendant(
                pid,
                std::process::id() as i32,
            )
            .unwrap_or(false),
        }
    }
}

/// `CAP_SYS_PTRACE`, from `linux/capability.h`.
const CAP_SYS_PTRACE: u32 = 19;

fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|line| line.strip_prefix(key))
}

/// The second of `Uid:`'s real, effective, saved and filesystem IDs.
fn effective_uid(uids: &str) -> Option<u32> {
    uids.split_whitespace().nth(1)?.parse().ok()
}

fn permission_reason(pid: i32) -> String {
    explain_denial(&AccessFacts::gather(pid))
}

/// The most likely reason the kernel refused, with what would lift it. The checks are those of
/// `ptrace_may_access` and Yama, in the order they bite.
fn explain_denial(facts: &AccessFacts) -> String {
    let pid = facts.pid;
    let uid = |uid: Option<u32>| uid.map_or_else(|| "?".to_owned(), |uid| uid.to_string());
    if facts.ptrace_scope == Some(3) {
        return "kernel.yama.ptrace_scope is 3: no process may read another's memory until \
                the next reboot"
            .to_owned();
    }
    if facts.reader_has_ptrace_capability {
        return format!(
            "the kernel refused access to process {pid} although this reader has \
             CAP_SYS_PTRACE (a security module such as SELinux or AppArmor, a seccomp profile, \
             or a capability that holds only in another user namespace)"
        );
    }
    if facts.target_uid.is_some() && facts.target_uid != facts.reader_uid {
        return format!(
            "process {pid} runs as uid {} and this reader as uid {} without CAP_SYS_PTRACE: \
             run hangwatch as uid {} or with CAP_SYS_PTRACE",
            uid(facts.target_uid),
            uid(facts.reader_uid),
            uid(facts.target_uid),
        );
    }
    if facts.target_proc_owner.is_some() && facts.target_proc_owner != facts.target_uid {
        return format!(
            "process {pid} is not dumpable (it changed credentials or called \
             prctl(PR_SET_DUMPABLE, 0)): only a reader with CAP_SYS_PTRACE may read it"
        );
    }
    match facts.ptrace_scope {
        Some(2) => "kernel.yama.ptrace_scope is 2: only a reader with CAP_SYS_PTRACE may read \
                    another process's memory"
            .to_owned(),
        Some(1) if !facts.target_is_descendant => format!(
            "kernel.yama.ptrace_scope is 1: only an ancestor may read a process's memory, and \
             process {pid} is not a descendant of this reader: run the program under hangwatch, \
             set the sysctl to 0, or grant CAP_SYS_PTRACE"
        ),
        _ => format!(
            "the kernel refused access to process {pid} (uid {}, no CAP_SYS_PTRACE; a security \
             module or seccomp profile may forbid reading another process's memory)",
            uid(facts.reader_uid)
        ),
    }
}

/// The `/proc` text parsers of this module behind one door each, for the fuzz targets (`fuzz/`)
/// and the property tests: not an API.
#[doc(hidden)]
pub mod parsers {
    use std::fmt::Debug;

    /// `/proc/PID/maps`: the address ranges, the `libpython` path and its version.
    pub fn maps(text: &str) -> impl Debug + use<'_> {
        let libpython = super::libpython_in_maps(text);
        (
            super::parse_maps(text),
            libpython,
            libpython.and_then(|path| super::version_in_name(path, "libpython")),
        )
    }

    /// `/proc/PID/status`: the effective user ID and the `CapEff:` field.
    pub fn status(text: &str) -> impl Debug + use<'_> {
        (
            super::status_field(text, "Uid:").and_then(super::effective_uid),
            super::status_field(text, "CapEff:"),
        )
    }

    /// The stack pointer in `/proc/PID/task/TID/syscall`.
    pub fn syscall_stack_pointer(text: &str) -> Option<u64> {
        super::parse_syscall_stack_pointer(text)
    }

    /// Whether an executable path names a CPython interpreter, and its version.
    pub fn python_executable(path: &str) -> (bool, Option<(u32, u32)>) {
        (
            super::is_python_executable(path),
            super::version_in_name(path, "python"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_executables_are_recognised_by_name() {
        for path in [
            "/usr/bin/python3.11",
            "/usr/bin/python3",
            "/usr/bin/python",
            "/opt/py/bin/python3.13t",
            "/usr/bin/python3.11d",
            "/usr/bin/python3.6m",
            "/usr/bin/python3.11 (deleted)",
            "python2.7",
        ] {
            assert!(is_python_executable(path), "{path}");
        }
        for path in [
            "/usr/bin/sleep",
            "/usr/bin/python-argcomplete-check-easy-install-script",
            "/usr/bin/pypy3",
            "/usr/bin/ipython3",
            "/usr/bin/python3-config",
        ] {
            assert!(!is_python_executable(path), "{path}");
        }
    }

    #[test]
    fn versions_are_read_from_names_and_checked() {
        assert_eq!(
            version_in_name("/usr/bin/python3.11", "python"),
            Some((3, 11))
        );
        assert_eq!(version_in_name("python3.13t", "python"), Some((3, 13)));
        assert_eq!(
            version_in_name("/x/libpython3.6m.so.1.0", "libpython"),
            Some((3, 6))
        );
        assert_eq!(version_in_name("/usr/bin/python3", "python"), None);
        assert_eq!(version_in_name("/usr/bin/python", "python"), None);
        assert!(is_supported((3, 8)) && is_supported((3, 13)) && is_supported((2, 7)));
        assert!(!is_supported((3, 16)) && !is_supported((4, 0)) && !is_supported((2, 2)));
    }

    #[test]
    fn libpython_mappings_are_found() {
        let maps = "\
55d0c0a00000-55d0c0a01000 r--p 00000000 08:01 1234  /usr/bin/uwsgi
7f1e2a000000-7f1e2a100000 r-xp 00000000 08:01 5678  /opt/py/lib/libpython3.11.so.1.0
7ffc1a000000-7ffc1a021000 rw-p 00000000 00:00 0     [stack]
";
        assert_eq!(
            libpython_in_maps(maps),
            Some("/opt/py/lib/libpython3.11.so.1.0")
        );
        assert_eq!(
            libpython_in_maps(
                "7f1e2a000000-7f1e2a100000 r-xp 00000000 08:01 5678  /usr/lib/libc.so.6\n"
            ),
            None
        );
        assert_eq!(
            parse_maps(maps)[1],
            Region {
                start: 0x7f1e_2a00_0000,
                end: 0x7f1e_2a10_0000
            }
        );
    }

    #[test]
    fn stack_pointer_is_read_from_blocked_threads_only() {
        // Captured from a thread blocked in futex, one outside a system call, and one running.
        let blocked =
            "202 0x561cc9120a20 0x189 0x0 0x0 0x0 0xffffffff 0x7ffa96248940 0x7ffa968a3f16\n";
        assert_eq!(parse_syscall_stack_pointer(blocked), Some(0x7ffa_9624_8940));
        assert_eq!(
            parse_syscall_stack_pointer("-1 0x7ffa96248940 0x7ffa968a3f16\n"),
            Some(0x7ffa_9624_8940)
        );
        assert_eq!(parse_syscall_stack_pointer("running\n"), None);
        assert_eq!(parse_syscall_stack_pointer(""), None);
    }

    /// Two worker threads blocked on their own stacks, the main thread on `[stack]` with its
    /// control block elsewhere, and a running thread with no stack pointer.
    #[test]
    fn threads_are_matched_by_the_stack_that_holds_their_control_block() {
        let regions = [
            Region {
                start: 0x7f00_0000_0000,
                end: 0x7f00_0080_0000,
            },
            Region {
                start: 0x7f00_0100_0000,
                end: 0x7f00_0180_0000,
            },
            Region {
                start: 0x7f00_0200_0000,
                end: 0x7f00_0280_0000,
            },
            Region {
                start: 0x7ffc_0000_0000,
                end: 0x7ffc_0002_1000,
            },
        ];
        let worker_a = 0x7f00_007f_f6c0;
        let worker_b = 0x7f00_017f_f6c0;
        let busy = 0x7f00_027f_f6c0;
        let main = 0x7f00_5555_5b80;
        let unknown = [
            (main, Some("MainThread")),
            (worker_a, Some("a")),
            (worker_b, Some("b")),
            (busy, Some("busy")),
        ];
        let tasks = [
            Task {
                tid: 100,
                stack_pointer: Some(0x7ffc_0001_0000),
            },
            Task {
                tid: 101,
                stack_pointer: Some(0x7f00_007f_e940),
            },
            Task {
                tid: 102,
                stack_pointer: Some(0x7f00_017f_e940),
            },
            Task {
                tid: 103,
                stack_pointer: None,
            },
        ];
        let found = match_threads(100, &unknown, &[], &tasks, &regions);
        assert_eq!(found.get(&worker_a), Some(&101));
        assert_eq!(found.get(&worker_b), Some(&102));
        assert_eq!(found.get(&main), Some(&100));
        assert_eq!(found.get(&busy), None, "a running thread shows no stack");

        // A thread already known keeps its ID; nothing else may take it.
        let found = match_threads(100, &unknown[..2], &[101], &tasks, &regions);
        assert_eq!(found.get(&worker_a), None);
        assert_eq!(found.get(&main), Some(&100));
    }

    #[test]
    fn an_ambiguous_layout_claims_nothing() {
        let regions = [Region {
            start: 0x1000,
            end: 0x9000,
        }];
        let tasks = [
            Task {
                tid: 11,
                stack_pointer: Some(0x2000),
            },
            Task {
                tid: 12,
                stack_pointer: Some(0x3000),
            },
        ];
        let found = match_threads(10, &[(0x8000, None)], &[], &tasks, &regions);
        assert!(found.is_empty(), "{found:?}");
    }

    /// A child killed (by PID, not yet reaped) on drop.
    struct Killed(std::process::Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// CPython 3.11+ records each thread's kernel ID; the recovery used before 3.11 must find
    /// the same ones when it is made to work without them.
    #[test]
    fn recovered_thread_ids_match_the_ones_cpython_records() {
        use std::io::BufRead;
        use std::time::{Duration, Instant};
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/deadlock.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let stdout = child.stdout.take().expect("stdout");
        let child = Killed(child);
        let pid = child.0.id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("deadlock.py ready");
        assert!(line.starts_with("ready"), "{line}");

        // Every thread must be blocked (showing a stack pointer) for all to be recovered;
        // the main thread reaches its join() a moment after printing `ready`.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Ok(dumped) = read_stacks(pid, false) else {
                panic!("read the stacks of {pid}");
            };
            let recorded: Vec<Option<i32>> = dumped.threads.iter().map(|t| t.os_tid).collect();
            assert!(
                recorded.iter().all(Option::is_some),
                "python3 must be CPython 3.11 or later: {dumped:#?}"
            );
            let mut recovered = dumped.threads.clone();
            for thread in &mut recovered {
                thread.os_tid = None;
            }
            recover_os_tids(pid, &mut recovered);
            let found: Vec<Option<i32>> = recovered.iter().map(|t| t.os_tid).collect();
            if found == recorded {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "recovered {found:?}, CPython recorded {recorded:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_dump_round_trips_through_json() {
        let dumped = PythonDump {
            version: "3.11.7".to_owned(),
            threads: vec![PythonThread {
                thread_id: 140_666_571_740_864,
                os_tid: Some(11_173),
                name: Some("MainThread".to_owned()),
                holds_gil: true,
                active: true,
                frames: vec![PythonFrame {
                    function: "<module>".to_owned(),
                    file: "deadlock.py".to_owned(),
                    line: 42,
                    locals: vec![("self".to_owned(), 0x7f00_0000_1000)],
                }],
            }],
        };
        let text = serde_json::to_string(&dumped).expect("serialise");
        assert_eq!(
            serde_json::from_str::<PythonDump>(&text).expect("deserialise"),
            dumped
        );
    }

    fn facts() -> AccessFacts {
        AccessFacts {
            pid: 42,
            reader_uid: Some(1000),
            reader_has_ptrace_capability: false,
            target_uid: Some(1000),
            target_proc_owner: Some(1000),
            ptrace_scope: Some(0),
            target_is_descendant: false,
        }
    }

    #[test]
    fn denial_names_the_missing_permission() {
        let other_user = AccessFacts {
            target_uid: Some(0),
            target_proc_owner: Some(0),
            ..facts()
        };
        let text = explain_denial(&other_user);
        assert!(
            text.contains("uid 0") && text.contains("uid 1000"),
            "{text}"
        );
        assert!(text.contains("CAP_SYS_PTRACE"), "{text}");

        let yama = AccessFacts {
            ptrace_scope: Some(1),
            ..facts()
        };
        assert!(explain_denial(&yama).contains("ptrace_scope is 1"));
        let yama_descendant = AccessFacts {
            target_is_descendant: true,
            ..yama.clone()
        };
        assert!(!explain_denial(&yama_descendant).contains("ptrace_scope is 1"));
        let admin_only = AccessFacts {
            ptrace_scope: Some(2),
            ..facts()
        };
        assert!(explain_denial(&admin_only).contains("ptrace_scope is 2"));
        let locked = AccessFacts {
            ptrace_scope: Some(3),
            reader_has_ptrace_capability: true,
            ..facts()
        };
        assert!(explain_denial(&locked).contains("ptrace_scope is 3"));

        let undumpable = AccessFacts {
            target_proc_owner: Some(0),
            ..facts()
        };
        assert!(explain_denial(&undumpable).contains("not dumpable"));

        let privileged = AccessFacts {
            reader_has_ptrace_capability: true,
            ..facts()
        };
        assert!(explain_denial(&privileged).contains("security module"));
    }

    #[test]
    fn stat_flags_are_read_past_the_command_name() {
        // Captured from a Python process; the name may hold `)` and spaces.
        let line = "4242 (python3 (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 3 1 0 0 20 0 3 0 \
                    9000 30000000 2000 18446744073709551615";
        assert_eq!(stat_flags(line), Some(4_194_560));
        assert_eq!(stat_flags(line).map(|flags| flags & PF_EXITING), Some(0));
        assert_eq!(stat_flags("4242 (python3) S 1"), None);
    }

    #[test]
    fn status_fields_are_parsed() {
        let status = "Name:\tpython3\nUid:\t1000\t1001\t1000\t1000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(
            status_field(status, "Uid:").and_then(effective_uid),
            Some(1001)
        );
        assert_eq!(status_field(status, "CapEff:"), Some("\t000001ffffffffff"));
    }
}
