//! Verdicts of whole diagnoses of real programs: Python lock holders named from evidence (or
//! said to be unknown), and starvation told apart from a hang.

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangwatch_diagnose::model::{Diagnosis, Finding, FindingKind, ThreadDiagnosis};
use hangwatch_diagnose::{Options, diagnose, render};

use crate::harness::{DEADLINE, Running, marked_line};

/// Diagnoses `pid` until `done` accepts the diagnosis, within [`DEADLINE`].
pub fn diagnose_until(pid: i32, what: &str, done: impl Fn(&Diagnosis) -> bool) -> Diagnosis {
    let deadline = Instant::now() + DEADLINE;
    let mut last = None;
    while Instant::now() < deadline {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(diagnose(pid, &Options::default()));
        });
        let diagnosis = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("diagnose({pid}) took longer than {DEADLINE:?}"))
            .unwrap_or_else(|err| panic!("diagnose({pid}): {err}"));
        if done(&diagnosis) {
            return diagnosis;
        }
        last = Some(diagnosis);
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "no diagnosis of {pid} showed {what} within {DEADLINE:?}; the last one:\n{}",
        last.as_ref().map(render).unwrap_or_default()
    );
}

fn threads(diagnosis: &Diagnosis) -> impl Iterator<Item = &ThreadDiagnosis> {
    diagnosis.processes.iter().flat_map(|p| &p.threads)
}

fn thread<'a>(diagnosis: &'a Diagnosis, name: &str) -> &'a ThreadDiagnosis {
    threads(diagnosis)
        .find(|t| t.display_name() == name)
        .unwrap_or_else(|| panic!("no thread {name}:\n{}", render(diagnosis)))
}

fn finding(diagnosis: &Diagnosis, kind: FindingKind) -> Option<&Finding> {
    diagnosis.verdict.iter().find(|f| f.kind == kind)
}

/// `python_locks.py:N` for the line marked `# MODE MARKER`.
fn line_of(mode: &str, marker: &str) -> String {
    format!(
        "python_locks.py:{}",
        marked_line("python_locks.py", &format!("{mode} {marker}"))
    )
}

/// The modes of `python_locks.py`, each with the check of its verdict.
const MODES: [&str; 6] = [
    "lock-order",
    "rlock-call",
    "condition",
    "bare-acquire",
    "holder-sleeps",
    "ring",
];

/// Runs every mode of `python_locks.py` under `python` at once, diagnoses each (in parallel:
/// each diagnosis waits out its sampling window) and checks its verdict. Returns `(mode,
/// verdict)` pairs for the report.
pub fn check_python_locks(python: &Path) -> Vec<(String, String)> {
    let programs: Vec<Running> = MODES
        .iter()
        .map(|mode| Running::python(python, "python_locks.py", &[mode]))
        .collect();
    let checks: Vec<_> = MODES
        .iter()
        .zip(&programs)
        .map(|(mode, program)| {
            let (mode, pid) = (*mode, program.pid());
            std::thread::spawn(move || (mode, check_mode(mode, pid)))
        })
        .collect();
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for check in checks {
        match check.join() {
            Ok((mode, verdict)) => out.push((mode.to_owned(), verdict)),
            Err(panic) => failures.push(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "a check panicked".to_owned()),
            ),
        }
    }
    drop(programs);
    assert!(
        failures.is_empty(),
        "{}: {}",
        python.display(),
        failures.join("\n\n")
    );
    out
}

/// Checks the verdict on one mode's program; returns the verdict's first line.
fn check_mode(mode: &str, pid: i32) -> String {
    let at = |marker: &str| line_of(mode, marker);
    let diagnosis = match mode {
        "lock-order" => {
            let d = diagnose_until(pid, "a deadlock", |d| {
                finding(d, FindingKind::Deadlock).is_some()
            });
            let text = &finding(&d, FindingKind::Deadlock).expect("deadlock").text;
            let main = format!(
                "thread \"MainThread\" holds orders ({}) and waits for payments ({})",
                at("holds: MainThread"),
                at("waits: MainThread")
            );
            let payments = format!(
                "thread \"payments\" holds payments ({}) and waits for orders ({})",
                at("holds: payments"),
                at("waits: payments")
            );
            assert!(
                text.contains(&main) && text.contains(&payments),
                "{}",
                render(&d)
            );
            assert!(
                finding(&d, FindingKind::LockWait).is_none(),
                "the cycle explains the waits: {}",
                render(&d)
            );
            d
        }
        "rlock-call" => {
            let d = diagnose_until(pid, "the RLock's holder", |d| {
                finding(d, FindingKind::LockHeld).is_some()
            });
            let holder = thread(&d, "holder").tid;
            let wait = thread(&d, "MainThread")
                .python_lock
                .clone()
                .expect("MainThread waits for a Python lock");
            assert_eq!(
                (wait.kind.as_str(), wait.lock.as_str()),
                ("RLock", "registry")
            );
            assert_eq!(wait.holder, Some(holder), "{}", render(&d));
            assert_eq!(wait.count, Some(2), "held across a call: {}", render(&d));
            assert_eq!(
                wait.held_at,
                Some(format!(
                    "{} and {}",
                    at("holds: holder"),
                    at("holds: refresh")
                ))
            );
            d
        }
        "condition" => {
            let d = diagnose_until(pid, "the Condition's holder", |d| {
                finding(d, FindingKind::LockHeld).is_some()
            });
            let producer = thread(&d, "producer").tid;
            let wait = thread(&d, "MainThread").python_lock.clone().expect("wait");
            assert_eq!((wait.kind.as_str(), wait.lock.as_str()), ("RLock", "cond"));
            assert_eq!(wait.holder, Some(producer), "{}", render(&d));
            assert_eq!(wait.held_at, Some(at("holds: producer")));
            // Waiting in cond.wait() is waiting for a notify, not for a lock someone holds.
            assert!(
                thread(&d, "consumer").python_lock.is_none(),
                "{}",
                render(&d)
            );
            d
        }
        "bare-acquire" => {
            let d = diagnose_until(pid, "the undecided wait", |d| {
                threads(d).any(|t| t.python_lock.is_some())
            });
            let wait = thread(&d, "MainThread").python_lock.clone().expect("wait");
            assert_eq!((wait.kind.as_str(), wait.lock.as_str()), ("Lock", "gate"));
            assert_eq!(wait.holder, None, "no evidence names it: {}", render(&d));
            assert!(wait.evidence.contains("bare acquire()"), "{wait:?}");
            let undecided = finding(&d, FindingKind::Undecided).expect("undecided");
            assert!(undecided.text.contains("gate"), "{}", undecided.text);
            assert!(
                finding(&d, FindingKind::LockHeld).is_none()
                    && finding(&d, FindingKind::Deadlock).is_none(),
                "{}",
                render(&d)
            );
            d
        }
        "holder-sleeps" => {
            let d = diagnose_until(pid, "the sleeping holder", |d| {
                finding(d, FindingKind::LockHeld).is_some()
            });
            let holder = thread(&d, "holder").tid;
            let text = &finding(&d, FindingKind::LockHeld).expect("held").text;
            assert!(
                text.contains(&format!("held by thread {holder} \"holder\""))
                    && text.contains(&at("holds: holder"))
                    && text.contains(&at("sleeps: holder")),
                "{}",
                render(&d)
            );
            d
        }
        "ring" => {
            let d = diagnose_until(pid, "a cycle of three", |d| {
                finding(d, FindingKind::Deadlock).is_some()
            });
            let cycle = finding(&d, FindingKind::Deadlock).expect("deadlock");
            assert_eq!(cycle.tids.len(), 3, "{}", render(&d));
            // Each holds, as its parameter `mine`, the Lock the one before it waits for as
            // `theirs`: the same name on different objects, told apart by the locals.
            for (name, next) in [("ab", "bc"), ("bc", "ca"), ("ca", "ab")] {
                let wait = thread(&d, name).python_lock.clone().expect("wait");
                assert_eq!(wait.holder, Some(thread(&d, next).tid), "{}", render(&d));
                assert_eq!(wait.lock, "theirs");
                assert_eq!(wait.held_as.as_deref(), Some("mine"));
                assert_eq!(wait.held_at, Some(at("holds: take")));
            }
            d
        }
        other => panic!("no check for {other}"),
    };
    diagnosis
        .verdict
        .iter()
        .find(|f| {
            matches!(
                f.kind,
                FindingKind::Deadlock | FindingKind::LockHeld | FindingKind::Undecided
            )
        })
        .map(|f| f.text.clone())
        .unwrap_or_default()
}

#[test]
fn python_lock_holders_are_named_from_evidence_or_said_unknown() {
    for (mode, verdict) in check_python_locks(Path::new("python3")) {
        eprintln!("{mode}: {verdict}");
    }
}

/// The first CPU this process may run on.
fn one_cpu() -> usize {
    let mine = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).expect("affinity");
    (0..nix::sched::CpuSet::count())
        .find(|&cpu| mine.is_set(cpu).unwrap_or(false))
        .expect("a CPU")
}

/// Three busy processes pinned to one CPU: the diagnosed one was runnable but not running for
/// most of the window, and the verdict says starvation rather than a hang.
#[test]
fn a_program_starved_of_cpu_is_called_starved() {
    let busy = || {
        let mut command = Command::new("sh");
        command.args(["-c", "while :; do :; done"]);
        Running::start(command, false)
    };
    let (target, hog_a, hog_b) = (busy(), busy(), busy());
    let mut cpu = nix::sched::CpuSet::new();
    cpu.set(one_cpu()).expect("CPU set");
    for program in [&target, &hog_a, &hog_b] {
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(program.pid()), &cpu)
            .expect("pin to one CPU");
    }
    let diagnosis = diagnose_until(target.pid(), "starvation", |d| {
        finding(d, FindingKind::Starved).is_some()
    });
    let starved = finding(&diagnosis, FindingKind::Starved).expect("starved");
    let thread = threads(&diagnosis)
        .find(|t| t.tid == target.pid())
        .expect("the target's thread");
    let window = diagnosis.sample_ms as f64;
    let waited = thread.runnable_wait_ms.expect("schedstat read");
    assert!(waited >= window * 0.5, "{}", render(&diagnosis));
    assert!(
        starved.text.contains("runnable but not running")
            && starved.text.contains("starvation, not a hang"),
        "{}",
        starved.text
    );
    // The loop spins all the same, on a third of a CPU, waiting for it the rest.
    if let Some(spinning) = finding(&diagnosis, FindingKind::Spinning) {
        assert!(spinning.text.contains("waited"), "{}", spinning.text);
    }
    // A kernel without PSI has no file; one booted with psi=0 has it but refuses the read.
    if std::fs::read_to_string("/proc/pressure/cpu").is_ok() {
        let cpu = diagnosis
            .pressure
            .as_ref()
            .and_then(|p| p.get("cpu"))
            .expect("CPU pressure read");
        assert!(cpu.some_window_pct.is_some_and(|pct| pct > 0.0), "{cpu:?}");
        assert!(starved.text.contains("CPU pressure"), "{}", starved.text);
    } else {
        assert!(
            diagnosis
                .missing
                .iter()
                .any(|note| note.starts_with("/proc/pressure/cpu")),
            "the missing pressure is a note: {:?}",
            diagnosis.missing
        );
    }
    eprintln!(
        "runnable but waiting {waited:.0} ms of a {window:.0} ms window; {}",
        starved.text
    );
}
