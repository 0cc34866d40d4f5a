//! Taking a diagnosis: two readings of the tree a sampling window apart, the blocked calls
//! decoded, descriptors and lock owners resolved, Python stacks joined, and a verdict.
//!
//! Nothing here pauses the target: `/proc` and `process_vm_readv` read a running process. The
//! price is that a fast-changing thread may be caught mid-change; the sampling window and the
//! "blocked for the whole window" flag say how much a reading can be trusted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use hangwatch_process::tree::ProcessTable;
use hangwatch_protocol::report::Degraded;

use crate::fds::OpenFd;
use crate::locks;
use crate::memory::Memory;
use crate::model::{DIAGNOSIS_VERSION, Diagnosis, ProcessDiagnosis, PythonThread, ThreadDiagnosis};
use crate::sample::{self, ReadError, ThreadReading};
use crate::syscall::{self, Call, SyscallLine};
use crate::verdict;

/// How to diagnose.
#[derive(Debug, Clone)]
pub struct Options {
    /// The window over which CPU use and context switches are measured.
    pub sample: Duration,
    /// Whether to read Python stacks of CPython processes.
    pub python: bool,
    /// Leave the root itself out and diagnose only its descendants (a supervisor diagnosing
    /// the programs it started, not itself).
    pub skip_root: bool,
    /// The process to list first and name the diagnosis after (a supervisor's program, ahead
    /// of helpers that escaped its tree).
    pub primary: Option<i32>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            sample: Duration::from_millis(200),
            python: true,
            skip_root: false,
            primary: None,
        }
    }
}

/// Why there is no diagnosis at all.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    /// The process does not exist (or has exited).
    #[error("no process with PID {0}")]
    NoSuchProcess(i32),
    /// `/proc` could not be read.
    #[error("cannot read /proc: {0}")]
    Proc(#[from] std::io::Error),
}

/// Diagnoses `root` and every descendant. Blocks for the sampling window: call it from a
/// thread that may wait.
pub fn diagnose(root: i32, options: &Options) -> Result<Diagnosis, DiagnoseError> {
    let began = Instant::now();
    let taken_at = SystemTime::now();
    let mut missing: Vec<String> = Vec::new();

    let pressure_before = crate::pressure::read();
    let first = read_tree(root, options.skip_root)?;
    if first.is_empty() {
        return Err(DiagnoseError::NoSuchProcess(root));
    }
    std::thread::sleep(options.sample);
    let window_ms = began.elapsed().as_secs_f64() * 1e3;
    let second = read_tree(root, options.skip_root)?;
    let pressure_after = crate::pressure::read();
    missing.extend(pressure_after.notes.iter().cloned());
    let mut degraded = Vec::new();
    if let Some(absent) = &pressure_after.absent {
        degraded.push(Degraded::new("pressure", absent.clone()));
    }
    let pressure = crate::pressure::over_window(&pressure_before, &pressure_after, window_ms);
    let before: HashMap<i32, HashMap<i32, ThreadReading>> = first
        .into_iter()
        .map(|p| (p.pid, p.threads.into_iter().map(|t| (t.tid, t)).collect()))
        .collect();

    let fds = crate::fds::open_fds(&second.iter().map(|p| p.pid).collect::<Vec<_>>());
    for unreadable in &fds.unreadable {
        missing.push(format!(
            "open files of pid {}: {} (/proc/PID/fd needs the process's user or CAP_SYS_PTRACE)",
            unreadable.pid, unreadable.error
        ));
    }
    missing.extend(fds.notes.iter().cloned());
    let mut processes = Vec::new();
    let mut denied_syscall = false;
    for process in second {
        let memory = Memory::of(process.pid);
        let tids: HashSet<i32> = process.threads.iter().map(|t| t.tid).collect();
        // Local variables are read only when a thread waits on a futex: they are the evidence
        // that two frames name the same lock.
        let futex_waits = process.threads.iter().any(
            |t| matches!(&t.syscall, Ok(SyscallLine::In { nr, .. }) if *nr == libc::SYS_futex),
        );
        let python = if options.python {
            let before = missing.len();
            let read = crate::python_threads(process.pid, futex_waits, &mut missing);
            if read.is_none()
                && missing.len() > before
                && !degraded
                    .iter()
                    .any(|d: &Degraded| d.part == "python-stacks")
            {
                degraded.push(Degraded::new(
                    "python-stacks",
                    format!(
                        "{}; the diagnosis shows the kernel's view of its threads only",
                        missing[before]
                    ),
                ));
            }
            read
        } else {
            None
        };
        let (python_version, mut python_threads) = python.unwrap_or_default();
        let own_fds = fds.fds(process.pid).unwrap_or_default();
        let earlier = before.get(&process.pid);
        let context = Context {
            pid: process.pid,
            memory: &memory,
            tids: &tids,
            fds: own_fds,
        };
        let threads = process
            .threads
            .into_iter()
            .map(|now| {
                let then = earlier.and_then(|e| e.get(&now.tid));
                denied_syscall |= now.syscall == Err(ReadError::NotPermitted);
                thread_diagnosis(
                    &now,
                    then,
                    window_ms,
                    &context,
                    python_threads.remove(&now.tid),
                )
            })
            .collect::<Vec<_>>();
        let mut threads = threads;
        if !python_version.is_empty() {
            crate::pylocks::resolve(process.pid, &memory, &mut threads, &mut missing);
        }
        let threads = name_lock_owners(threads);
        let (rss_kib, peak_rss_kib) = sample::read_memory_kib(process.pid);
        processes.push(ProcessDiagnosis {
            pid: process.pid,
            ppid: process.ppid,
            command: process.command,
            rss_kib,
            peak_rss_kib,
            python: (!python_version.is_empty()).then_some(python_version),
            threads,
            fds: own_fds.to_vec(),
        });
    }
    if denied_syscall {
        missing.push(
            "blocked system calls: the kernel refused /proc/PID/task/TID/syscall (it needs the \
             rights to ptrace the process: the same user, and with yama ptrace_scope >= 1 an \
             ancestor or CAP_SYS_PTRACE)"
                .to_owned(),
        );
    }
    if let Some(primary) = options.primary {
        // Stable: the rest keep their parents-first order.
        processes.sort_by_key(|p| p.pid != primary);
    }
    let pressure = (!pressure.resources.is_empty()).then_some(pressure);
    let mut verdict = verdict::verdict(&processes, window_ms, pressure.as_ref());
    if processes.is_empty() {
        // Exited during the window: not an error, and nothing left to show.
        verdict = vec![crate::model::Finding {
            kind: crate::model::FindingKind::Undecided,
            text: format!("process {root} exited during the sampling window"),
            pid: root,
            tids: Vec::new(),
        }];
    }
    Ok(Diagnosis {
        version: DIAGNOSIS_VERSION,
        root,
        taken_at_ms: taken_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        sample_ms: options.sample.as_millis() as u64,
        took_ms: began.elapsed().as_millis() as u64,
        paused_ms: 0,
        verdict,
        processes,
        missing,
        pressure,
        degraded,
    })
}

/// One process's reading.
struct ProcessReading {
    pid: i32,
    ppid: i32,
    command: String,
    threads: Vec<ThreadReading>,
}

/// Reads every live process of the tree rooted at `root`, parents first.
fn read_tree(root: i32, skip_root: bool) -> std::io::Result<Vec<ProcessReading>> {
    let table = ProcessTable::scan()?;
    // Without its root there is no tree: PID 0's "children" would be the whole machine.
    if table.get(root).is_none() {
        return Ok(Vec::new());
    }
    Ok(table
        .get(root)
        .filter(|_| !skip_root)
        .into_iter()
        .chain(table.descendants(root))
        .filter(|stat| !stat.is_zombie())
        .map(|stat| {
            let info = stat.info();
            ProcessReading {
                pid: info.pid,
                ppid: info.ppid,
                command: info.command,
                threads: sample::read_threads(info.pid),
            }
        })
        .filter(|p| !p.threads.is_empty())
        .collect())
}

/// What every thread of one process is read against.
struct Context<'a> {
    pid: i32,
    memory: &'a Memory,
    tids: &'a HashSet<i32>,
    fds: &'a [OpenFd],
}

fn thread_diagnosis(
    now: &ThreadReading,
    then: Option<&ThreadReading>,
    window_ms: f64,
    context: &Context<'_>,
    python: Option<PythonThread>,
) -> ThreadDiagnosis {
    let Context {
        pid,
        memory,
        tids,
        fds,
    } = *context;
    let call = match &now.syscall {
        Ok(SyscallLine::In { nr, args }) if now.state != 'R' => {
            Some(syscall::decode(*nr, *args, memory))
        }
        _ => None,
    };
    let lock_owner = call
        .as_ref()
        .and_then(|call| locks::mutex_owner(memory, call, now.tid, tids));
    let cpu_ms = then
        .and_then(|then| Some(now.cpu_ns?.saturating_sub(then.cpu_ns?) as f64 / 1e6))
        .map(|ms| ms.min(window_ms));
    let switches = then.and_then(|then| Some(now.switches?.saturating_sub(then.switches?)));
    let runnable_wait_ms = then
        .and_then(|then| Some(now.run_delay_ns?.saturating_sub(then.run_delay_ns?) as f64 / 1e6))
        .map(|ms| ms.min(window_ms));
    let blocked_whole_window = call.is_some()
        && then.is_some_and(|then| then.syscall == now.syscall)
        && switches == Some(0);
    let blocked_in = call.as_ref().map(|call| {
        let mut text = call.to_string();
        if let Some(fd) = call.fd()
            && let Some(open) = fds.iter().find(|d| d.fd == fd)
        {
            text = format!("{text} = {}", open.describe_target(pid));
        }
        text
    });
    ThreadDiagnosis {
        tid: now.tid,
        name: now.name.clone(),
        state: state_word(now.state).to_owned(),
        wchan: now.wchan.clone(),
        call,
        blocked_in,
        lock_owner,
        python_lock: None,
        runnable_wait_ms,
        cpu_ms,
        switches,
        blocked_whole_window,
        python,
    }
}

/// Adds the owner's name to each "blocked in" sentence of a lock wait.
fn name_lock_owners(mut threads: Vec<ThreadDiagnosis>) -> Vec<ThreadDiagnosis> {
    let names: BTreeMap<i32, String> = threads
        .iter()
        .map(|t| (t.tid, t.display_name().to_owned()))
        .collect();
    for thread in &mut threads {
        let Some(text) = thread.blocked_in.as_mut() else {
            continue;
        };
        if let Some(wait) = &thread.python_lock {
            text.push_str(&format!(", the {} {}", wait.kind, wait.lock));
            match wait.holder {
                Some(holder) if holder == thread.tid => text.push_str(", which it holds itself"),
                Some(holder) => {
                    let name = names.get(&holder).map_or("?", String::as_str);
                    text.push_str(&format!(", held by thread {holder} ({name})"));
                }
                None => text.push_str(": holder unknown"),
            }
        } else if let Some(owner) = thread.lock_owner {
            let name = names.get(&owner).map_or("?", String::as_str);
            text.push_str(&format!(", a mutex held by thread {owner} ({name})"));
        }
    }
    threads
}

/// The word for a state letter of `/proc/PID/stat`.
#[must_use]
pub fn state_word(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "uninterruptible",
        'T' => "stopped",
        't' => "traced",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        _ => "unknown",
    }
}

/// Whether the call was decoded into a wait worth explaining.
#[must_use]
pub fn is_wait(call: &Call) -> bool {
    !matches!(call, Call::Other { .. })
}
