//! The verdict: a few lines naming what the program waits on, from the facts gathered.
//!
//! Each rule looks for one pattern with evidence that decides it: a lock cycle whose owners
//! the locks recorded; every thread waiting with no timeout; a thread burning a CPU; a read
//! whose other end is a named process; an event loop with nothing to wake it; a long sleep.
//! Where none matches, the verdict says so instead of guessing.

use std::collections::BTreeMap;

use crate::fds::FdTarget;
use crate::model::{Finding, FindingKind, ProcessDiagnosis, ThreadDiagnosis};
use crate::pressure::HostPressure;
use crate::syscall::{Call, Timeout, human_ms};

/// A sleep at least this long is worth a finding.
const LONG_SLEEP_MS: u64 = 10_000;
/// A thread using more than this share of the window is spinning.
const SPIN_SHARE: f64 = 0.5;
/// A thread runnable but not running for more than this share of the window was starved.
const STARVED_SHARE: f64 = 0.5;
/// Memory pressure (`some`, last 10 s) worth naming beside a starved thread, percent.
const MEMORY_PRESSURE_PCT: f64 = 10.0;

/// Findings for every process, strongest first. `pressure` is the host's, when read.
#[must_use]
pub fn verdict(
    processes: &[ProcessDiagnosis],
    window_ms: f64,
    pressure: Option<&HostPressure>,
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = processes
        .iter()
        .flat_map(|p| {
            let mut out = process_findings(p, processes, window_ms);
            out.extend(starvation(p, window_ms, pressure));
            out
        })
        .collect();
    findings.sort_by_key(|f| f.kind);
    if findings.is_empty() {
        let threads: usize = processes.iter().map(|p| p.threads.len()).sum();
        let running = processes
            .iter()
            .flat_map(|p| &p.threads)
            .filter(|t| t.state == "running")
            .count();
        findings.push(Finding {
            kind: FindingKind::Undecided,
            text: format!(
                "undecided: {threads} thread(s) in {} process(es), {running} running; none is \
                 blocked in a way that explains a hang, and none spins",
                processes.len()
            ),
            pid: processes.first().map_or(0, |p| p.pid),
            tids: Vec::new(),
        });
    }
    findings
}

fn process_findings(
    process: &ProcessDiagnosis,
    all: &[ProcessDiagnosis],
    window_ms: f64,
) -> Vec<Finding> {
    let pid = process.pid;
    let threads: Vec<&ThreadDiagnosis> = process
        .threads
        .iter()
        .filter(|t| t.state != "zombie" && t.state != "dead")
        .collect();
    let mut out = Vec::new();
    let finding = |kind, text: String, tids: Vec<i32>| Finding {
        kind,
        text,
        pid,
        tids,
    };
    if !threads.is_empty() && threads.iter().all(|t| t.state == "stopped") {
        out.push(finding(
            FindingKind::Stopped,
            format!(
                "process {pid} ({}) is stopped by a signal (SIGSTOP or a terminal stop): it \
                 will do nothing until it gets SIGCONT",
                short_command(&process.command)
            ),
            threads.iter().map(|t| t.tid).collect(),
        ));
        return out;
    }

    // Lock cycles whose owners are known.
    let waits_for: BTreeMap<i32, i32> = threads
        .iter()
        .filter_map(|t| Some((t.tid, t.lock_owner?)))
        .collect();
    let cycles = crate::locks::cycles(&waits_for);
    let by_tid: BTreeMap<i32, &ThreadDiagnosis> = threads.iter().map(|t| (t.tid, *t)).collect();
    for cycle in &cycles {
        let python = cycle.iter().all(|tid| by_tid[tid].python_lock.is_some());
        if python {
            out.push(finding(
                FindingKind::Deadlock,
                format!(
                    "deadlock in process {pid}: {}",
                    python_cycle(cycle, &by_tid).join("; ")
                ),
                cycle.clone(),
            ));
            continue;
        }
        let steps: Vec<String> = cycle
            .iter()
            .map(|tid| {
                let owner = waits_for[tid];
                format!(
                    "{} waits for a mutex held by {}{}",
                    thread_label(by_tid[tid]),
                    by_tid
                        .get(&owner)
                        .map_or(owner.to_string(), |t| thread_label(t)),
                    at(by_tid[tid]),
                )
            })
            .collect();
        out.push(finding(
            FindingKind::Deadlock,
            format!("deadlock in process {pid}: {}", steps.join("; ")),
            cycle.clone(),
        ));
    }
    let in_cycle = |tid: i32| cycles.iter().any(|c| c.contains(&tid));

    // Python locks whose holder is named but not in a cycle, and those the evidence leaves
    // open.
    for thread in threads.iter().copied().filter(|t| !in_cycle(t.tid)) {
        let Some(wait) = &thread.python_lock else {
            continue;
        };
        let waits = format!(
            "{} waits for {}{}",
            thread_label(thread),
            wait.lock,
            wait.at
                .as_ref()
                .map_or(String::new(), |at| format!(" ({at})"))
        );
        match wait.holder.and_then(|h| by_tid.get(&h)) {
            Some(holder) if holder.tid == thread.tid => out.push(finding(
                FindingKind::Deadlock,
                format!(
                    "deadlock in process {pid}: {waits}, which it holds itself{}: a {} cannot \
                     be taken twice",
                    held_at(wait),
                    wait.kind
                ),
                vec![thread.tid],
            )),
            Some(holder) => {
                let count = match wait.count {
                    Some(n) if n > 1 => format!(", {n} times"),
                    _ => String::new(),
                };
                out.push(finding(
                    FindingKind::LockHeld,
                    format!(
                        "{waits}, held by {}{}{count}, which {}",
                        thread_label(holder),
                        held_at(wait),
                        doing(holder)
                    ),
                    vec![thread.tid, holder.tid],
                ));
            }
            None => out.push(finding(
                FindingKind::Undecided,
                format!("undecided: {waits}: {}", wait.evidence),
                vec![thread.tid],
            )),
        }
    }

    // Spinning threads.
    let spinning: Vec<&ThreadDiagnosis> = threads
        .iter()
        .copied()
        .filter(|t| {
            let cpu = t.cpu_ms.unwrap_or(0.0);
            // A thread starved of a CPU spins all the same when it ran or waited to run for
            // the whole window and never slept.
            let wanted = cpu + t.runnable_wait_ms.unwrap_or(0.0);
            cpu >= window_ms * SPIN_SHARE
                || cpu >= window_ms * 0.1 && wanted >= window_ms * 0.9 && t.state == "running"
        })
        .collect();
    for thread in &spinning {
        let share = thread.cpu_ms.unwrap_or(0.0) / window_ms * 100.0;
        let starved = thread
            .runnable_wait_ms
            .filter(|ms| *ms >= window_ms * 0.25)
            .map_or(String::new(), |ms| {
                format!(" and waited {} for one", human_ms(ms as u64))
            });
        out.push(finding(
            FindingKind::Spinning,
            format!(
                "{} is spinning: {share:.0} % of a CPU over the {} window{starved}{}",
                thread_label(thread),
                human_ms(window_ms as u64),
                at(thread)
            ),
            vec![thread.tid],
        ));
    }

    // An asyncio event loop whose thread is blocked on a lock inside a callback: nothing on
    // that loop can run, including what other threads hand it with run_coroutine_threadsafe.
    let blocked_loops: Vec<&ThreadDiagnosis> = threads
        .iter()
        .copied()
        .filter(|t| runs_event_loop(t) && t.call.as_ref().is_some_and(Call::is_futex))
        .collect();
    for looper in &blocked_loops {
        let mut text = format!(
            "the asyncio event loop of {} is blocked on a lock or condition inside a callback{}: \
             no coroutine or callback on it can run",
            thread_label(looper),
            at(looper)
        );
        let waiting_on_results: Vec<String> = threads
            .iter()
            .filter(|t| t.tid != looper.tid && in_function(t, "result"))
            .map(|t| format!("{}{}", thread_label(t), at(t)))
            .collect();
        if !waiting_on_results.is_empty() {
            text.push_str(&format!(
                ". Meanwhile {} waits for a Future's result: if that result is to come from this \
                 loop (run_coroutine_threadsafe), neither can go on, a deadlock",
                waiting_on_results.join(" and ")
            ));
        }
        out.push(finding(
            FindingKind::BlockedEventLoop,
            text,
            vec![looper.tid],
        ));
    }

    // Every thread waiting with no timeout, none able to run, no known cycle: a deadlock whose
    // locks record no owner, or a wait for something outside.
    let forever: Vec<&ThreadDiagnosis> = threads
        .iter()
        .copied()
        .filter(|t| t.call.as_ref().is_some_and(Call::waits_forever))
        .collect();
    let futex_forever: Vec<&ThreadDiagnosis> = forever
        .iter()
        .copied()
        .filter(|t| t.call.as_ref().is_some_and(Call::is_futex) && !in_cycle(t.tid))
        .collect();
    // Idle workers waiting for work are normal; they are left out of a partial list.
    let busy_waits: Vec<&ThreadDiagnosis> = futex_forever
        .iter()
        .copied()
        .filter(|t| !awaits_work(t))
        .collect();
    if cycles.is_empty() && !threads.is_empty() && forever.len() == threads.len() {
        if futex_forever.len() == threads.len() {
            let waits: Vec<String> = futex_forever
                .iter()
                .map(|t| format!("{}{}", thread_label(t), at(t)))
                .collect();
            let python = process.python.is_some();
            out.push(finding(
                FindingKind::LockWait,
                format!(
                    "every thread of process {pid} waits on a lock or condition with no timeout \
                     and none can run: a deadlock, unless another process is to wake them. {} \
                     Waiting: {}",
                    if python {
                        "Python's Lock, Condition, Event and Queue record no owner, and no \
                         `with` block or RLock named a holder here, so who holds each lock \
                         cannot be shown."
                    } else {
                        "These locks record no owner (not glibc mutexes), so the cycle cannot be \
                         shown."
                    },
                    waits.join("; ")
                ),
                futex_forever.iter().map(|t| t.tid).collect(),
            ));
        } else if busy_waits.len() > 1 {
            let waits: Vec<String> = busy_waits
                .iter()
                .map(|t| format!("{}{}", thread_label(t), at(t)))
                .collect();
            out.push(finding(
                FindingKind::LockWait,
                format!(
                    "{} threads of process {pid} wait on locks or conditions with no timeout, and \
                     every other thread waits too: {}",
                    busy_waits.len(),
                    waits.join("; ")
                ),
                busy_waits.iter().map(|t| t.tid).collect(),
            ));
        }
    }

    // Stronger findings explain an idle poller; it is only named when nothing else is.
    let explained = out.iter().any(|f| {
        matches!(
            f.kind,
            FindingKind::Deadlock | FindingKind::BlockedEventLoop | FindingKind::LockWait
        )
    });
    for thread in &threads {
        let Some(call) = &thread.call else { continue };
        if thread.state == "uninterruptible" {
            out.push(finding(
                FindingKind::KernelWait,
                format!(
                    "{} is in uninterruptible sleep in the kernel ({}){}: a disk, network file \
                     system or device wait; no signal, not even SIGKILL, acts until it returns",
                    thread_label(thread),
                    thread.wchan.as_deref().unwrap_or("wait channel unknown"),
                    at(thread)
                ),
                vec![thread.tid],
            ));
            continue;
        }
        match call {
            Call::Sleep { timeout, .. } if long(*timeout) => out.push(finding(
                FindingKind::LongSleep,
                format!(
                    "{} sleeps: {}{}",
                    thread_label(thread),
                    blocked(thread),
                    at(thread)
                ),
                vec![thread.tid],
            )),
            Call::Read { .. } | Call::Write { .. } | Call::Accept { .. } | Call::Connect { .. }
                if talks_to_another_process(process, call) =>
            {
                out.push(finding(
                    FindingKind::WaitingOnPeer,
                    format!(
                        "{} is blocked in {}{}",
                        thread_label(thread),
                        blocked(thread),
                        at(thread)
                    ),
                    vec![thread.tid],
                ));
            }
            Call::WaitChild { pid: child, .. } => {
                let which = if *child > 0 {
                    all.iter()
                        .find(|p| i64::from(p.pid) == *child)
                        .map_or(format!("child {child}"), |p| {
                            format!("child {child} ({})", short_command(&p.command))
                        })
                } else {
                    "any child".to_owned()
                };
                out.push(finding(
                    FindingKind::WaitingOnChild,
                    format!("{} waits for {which}{}", thread_label(thread), at(thread)),
                    vec![thread.tid],
                ));
            }
            Call::EpollWait { timeout, .. } | Call::Poll { timeout, .. }
                if (*timeout == Timeout::Never || long(*timeout))
                    && spinning.is_empty()
                    && !explained =>
            {
                let others_idle = threads.iter().all(|t| {
                    t.tid == thread.tid
                        || t.state != "running"
                            && t.call.as_ref().is_none_or(|c| {
                                c.waits_forever() || matches!(c, Call::Sleep { .. })
                            })
                });
                if others_idle {
                    out.push(finding(
                        FindingKind::IdleEventLoop,
                        format!(
                            "{} is an event loop idle in {}{}, and no other thread can run: it \
                             waits for an event from outside",
                            thread_label(thread),
                            blocked(thread),
                            at(thread)
                        ),
                        vec![thread.tid],
                    ));
                }
            }
            _ => {}
        }
    }

    // A Python main thread that finished and waits for its non-daemon threads (threading's
    // `_shutdown`): the process stays alive for them.
    for thread in &threads {
        let in_shutdown = thread
            .python
            .as_ref()
            .is_some_and(|p| p.frames.iter().any(|f| f.function == "_shutdown"));
        if in_shutdown {
            out.push(finding(
                FindingKind::WaitingOnChild,
                format!(
                    "{} has finished the program and waits in threading._shutdown for \
                     non-daemon threads to end",
                    thread_label(thread)
                ),
                vec![thread.tid],
            ));
        }
    }
    out
}

/// The steps of a cycle of Python lock waits: `thread "A" holds orders (w.py:28) and waits
/// for payments (w.py:30)`, each thread holding what the one before it waits for.
fn python_cycle(cycle: &[i32], by_tid: &BTreeMap<i32, &ThreadDiagnosis>) -> Vec<String> {
    let waits: Vec<Option<&crate::pylocks::PythonLockWait>> = cycle
        .iter()
        .map(|tid| by_tid[tid].python_lock.as_ref())
        .collect();
    // One name on different objects (a parameter `x` in each thread) gets the addresses.
    let names: Vec<(&str, u64)> = waits
        .iter()
        .flatten()
        .flat_map(|w| {
            [
                (w.lock.as_str(), w.address),
                (w.held_as.as_deref().unwrap_or(&w.lock), w.address),
            ]
        })
        .collect();
    let ambiguous =
        |name: &str, address: u64| names.iter().any(|&(n, a)| n == name && a != address);
    let label = |name: &str, address: u64, kind: &str| {
        if ambiguous(name, address) {
            format!("{name} (the {kind} at {address:#x})")
        } else {
            name.to_owned()
        }
    };
    let place = |at: Option<&String>| at.map_or(String::new(), |at| format!(" ({at})"));
    cycle
        .iter()
        .enumerate()
        .map(|(i, tid)| {
            let thread = by_tid[tid];
            let before = waits[(i + cycle.len() - 1) % cycle.len()];
            let holds = before.map_or_else(
                || "a lock".to_owned(),
                |w| {
                    let name = w.held_as.as_ref().unwrap_or(&w.lock);
                    format!(
                        "{}{}",
                        label(name, w.address, &w.kind),
                        place(w.held_at.as_ref())
                    )
                },
            );
            let waits = waits[i].map_or_else(
                || "a lock".to_owned(),
                |w| {
                    format!(
                        "{}{}",
                        label(&w.lock, w.address, &w.kind),
                        place(w.at.as_ref())
                    )
                },
            );
            format!(
                "thread \"{}\" holds {holds} and waits for {waits}",
                thread.display_name()
            )
        })
        .collect()
}

/// ` (taken at worker.py:15)`, or nothing.
fn held_at(wait: &crate::pylocks::PythonLockWait) -> String {
    wait.held_at
        .as_ref()
        .map_or(String::new(), |at| format!(" (taken at {at})"))
}

/// What a lock's holder is doing: `is blocked in nanosleep 1 h at w.py:16 in hold`.
fn doing(holder: &ThreadDiagnosis) -> String {
    if let Some(wait) = &holder.python_lock {
        return format!(
            "itself waits for {}{}",
            wait.lock,
            wait.at
                .as_ref()
                .map_or(String::new(), |at| format!(" ({at})"))
        );
    }
    match &holder.blocked_in {
        Some(blocked) => format!("is blocked in {blocked}{}", at(holder)),
        None => format!("is {}{}", holder.state, at(holder)),
    }
}

/// A finding when a thread of `process` was runnable but not running for most of the window.
fn starvation(
    process: &ProcessDiagnosis,
    window_ms: f64,
    pressure: Option<&HostPressure>,
) -> Option<Finding> {
    let starved: Vec<&ThreadDiagnosis> = process
        .threads
        .iter()
        .filter(|t| {
            t.runnable_wait_ms
                .is_some_and(|ms| ms >= window_ms * STARVED_SHARE)
        })
        .collect();
    let worst = starved.iter().copied().max_by(|a, b| {
        a.runnable_wait_ms
            .unwrap_or(0.0)
            .total_cmp(&b.runnable_wait_ms.unwrap_or(0.0))
    })?;
    let mut causes = Vec::new();
    if let Some(cpu) = pressure.and_then(|p| p.get("cpu")) {
        causes.push(format!(
            "CPU pressure {:.0} % over the last 10 s{}",
            cpu.now.some.avg10,
            cpu.some_window_pct
                .map_or(String::new(), |w| format!(" ({w:.0} % of the window)"))
        ));
    }
    if let Some(memory) = pressure
        .and_then(|p| p.get("memory"))
        .filter(|m| m.now.some.avg10 >= MEMORY_PRESSURE_PCT)
    {
        causes.push(format!(
            "memory pressure {:.0} % over the last 10 s",
            memory.now.some.avg10
        ));
    }
    let others = if starved.len() > 1 {
        format!(" ({} threads of the process were)", starved.len())
    } else {
        String::new()
    };
    let cause = if causes.is_empty() {
        String::new()
    } else {
        format!("{}; ", causes.join(", "))
    };
    Some(Finding {
        kind: FindingKind::Starved,
        text: format!(
            "{cause}{} was runnable but not running for {} of the {} window{others}, and ran \
             {}: this looks like starvation, not a hang",
            thread_label(worst),
            human_ms(worst.runnable_wait_ms.unwrap_or(0.0) as u64),
            human_ms(window_ms as u64),
            worst
                .cpu_ms
                .map_or("an unknown time".to_owned(), |ms| human_ms(ms as u64)),
        ),
        pid: process.pid,
        tids: starved.iter().map(|t| t.tid).collect(),
    })
}

/// Whether the call's descriptor is a pipe or socket: something another process answers.
fn talks_to_another_process(process: &ProcessDiagnosis, call: &Call) -> bool {
    let Some(fd) = call.fd() else { return false };
    process.fds.iter().any(|open| {
        open.fd == fd
            && matches!(
                open.target,
                FdTarget::Pipe { .. }
                    | FdTarget::Unix { .. }
                    | FdTarget::Tcp { .. }
                    | FdTarget::Udp { .. }
            )
    })
}

/// Whether the thread runs an asyncio event loop (its stack passes through `run_forever`).
fn runs_event_loop(thread: &ThreadDiagnosis) -> bool {
    thread.python.as_ref().is_some_and(|p| {
        p.frames
            .iter()
            .any(|f| f.function.ends_with("run_forever") && f.file.contains("asyncio"))
    })
}

/// Whether the thread's stack has a call of `name` (`Future.result`, `Thread.join`) in the
/// Python standard library.
fn in_function(thread: &ThreadDiagnosis, name: &str) -> bool {
    thread.python.as_ref().is_some_and(|p| {
        p.frames.iter().any(|f| {
            crate::model::is_stdlib(&f.file)
                && f.function.rsplit('.').next().is_some_and(|n| n == name)
        })
    })
}

/// Whether the thread is a worker waiting for its next job: in a queue's `get` or an
/// executor's `_worker`.
fn awaits_work(thread: &ThreadDiagnosis) -> bool {
    thread.python.as_ref().is_some_and(|p| {
        p.frames.iter().any(|f| {
            let function = f.function.rsplit('.').next().unwrap_or(&f.function);
            (function == "get" && f.file.contains("queue")) || function == "_worker"
        })
    })
}

fn long(timeout: Timeout) -> bool {
    matches!(timeout, Timeout::Requested(ms) | Timeout::Left(ms) if ms >= LONG_SLEEP_MS)
}

fn blocked(thread: &ThreadDiagnosis) -> String {
    thread.blocked_in.clone().unwrap_or_default()
}

/// `thread 1236 "worker-1"`.
fn thread_label(thread: &ThreadDiagnosis) -> String {
    format!("thread {} \"{}\"", thread.tid, thread.display_name())
}

/// ` at worker.py:88 in result: `future.result()``, or nothing without a Python stack.
fn at(thread: &ThreadDiagnosis) -> String {
    let Some(frame) = thread.user_frame() else {
        return String::new();
    };
    match &frame.code {
        Some(code) => format!(" at {} in {}: `{code}`", frame.location(), frame.function),
        None => format!(" at {} in {}", frame.location(), frame.function),
    }
}

fn short_command(command: &str) -> String {
    const MAX: usize = 60;
    if command.chars().count() <= MAX {
        command.to_owned()
    } else {
        format!("{}…", command.chars().take(MAX).collect::<String>())
    }
}
