//! `hangwatch diagnose PID` and the incident written before a stop, against real hung programs:
//! Python deadlocks, a pipe whose writer never writes, a busy loop, an idle event loop, a long
//! sleep, and a native lock cycle. Each test asserts decoded facts and the verdict's kind, not
//! a snapshot of text.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangwatch_diagnose::model::{Diagnosis, FindingKind, ThreadDiagnosis};
use hangwatch_diagnose::syscall::{Call, Timeout};

use crate::harness::{Scratch, fixture, hangwatch, read_report, run};

/// How long a test waits for a program to reach the state it is diagnosed in.
const SETTLE: Duration = Duration::from_secs(10);

fn program(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
}

/// A program started in a process group of its own, killed as a group when dropped.
struct Target {
    child: Child,
    ready: String,
}

impl Target {
    fn python(script: &str, args: &[&str]) -> Target {
        let mut command = Command::new("python3");
        command.arg(program(script)).args(args);
        Target::start(command)
    }

    fn start(mut command: Command) -> Target {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn the program");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut target = Target {
            child,
            ready: String::new(),
        };
        target.ready = rx
            .recv_timeout(SETTLE)
            .unwrap_or_else(|_| panic!("the program never printed ready"));
        assert!(target.ready.starts_with("ready"), "{:?}", target.ready);
        target
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        // The group was created for this program alone (process_group(0) above).
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

/// Runs `hangwatch diagnose PID --json` until `done` holds (bounded), and returns that diagnosis.
fn diagnose_until(pid: i32, what: &str, done: impl Fn(&Diagnosis) -> bool) -> Diagnosis {
    let deadline = Instant::now() + SETTLE;
    loop {
        let out = Command::new(hangwatch())
            .args(["diagnose", "--json", "--sample", "100ms", &pid.to_string()])
            .output()
            .expect("run hangwatch diagnose");
        assert!(
            out.status.success(),
            "diagnose failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let diagnosis: Diagnosis = serde_json::from_slice(&out.stdout).expect("diagnosis JSON");
        if done(&diagnosis) {
            return diagnosis;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}; last diagnosis:\n{}",
            hangwatch_diagnose::render(&diagnosis)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn has(diagnosis: &Diagnosis, kind: FindingKind) -> bool {
    diagnosis.verdict.iter().any(|f| f.kind == kind)
}

fn threads(diagnosis: &Diagnosis) -> impl Iterator<Item = &ThreadDiagnosis> {
    diagnosis.processes.iter().flat_map(|p| &p.threads)
}

#[test]
fn native_mutex_cycle_is_named_as_a_deadlock_with_both_owners() {
    let mut command = Command::new(fixture());
    command.arg("mutex-cycle");
    let target = Target::start(command);
    let diagnosis = diagnose_until(target.pid(), "a deadlock", |d| {
        has(d, FindingKind::Deadlock)
    });
    let finding = &diagnosis.verdict[0];
    assert_eq!(finding.kind, FindingKind::Deadlock);
    assert_eq!(finding.tids.len(), 2, "{finding:?}");
    // Each of the two waits for a mutex the other one holds.
    let by_tid = |tid: i32| {
        threads(&diagnosis)
            .find(|t| t.tid == tid)
            .expect("thread of the cycle listed")
    };
    let (a, b) = (by_tid(finding.tids[0]), by_tid(finding.tids[1]));
    assert_eq!(a.lock_owner, Some(b.tid));
    assert_eq!(b.lock_owner, Some(a.tid));
    let mut names = vec![a.name.as_str(), b.name.as_str()];
    names.sort_unstable();
    assert_eq!(names, ["holder-a", "holder-b"]);
    assert!(matches!(&a.call, Some(Call::Futex { op, .. }) if op == "WAIT"));
    assert!(a.blocked_whole_window && b.blocked_whole_window);
    assert_eq!(diagnosis.paused_ms, 0);
}

#[test]
fn python_lock_order_deadlock_names_who_holds_each_lock() {
    let target = Target::python("lock_deadlock.py", &[]);
    let diagnosis = diagnose_until(target.pid(), "a deadlock", |d| {
        has(d, FindingKind::Deadlock)
    });
    let finding = diagnosis
        .verdict
        .iter()
        .find(|f| f.kind == FindingKind::Deadlock)
        .expect("deadlock");
    // Both workers, each holding (in a `with` block) the lock the other waits for.
    assert_eq!(finding.tids.len(), 2, "{finding:?}");
    assert!(
        diagnosis.processes[0].python.is_some(),
        "CPython recognised"
    );
    // Python stacks, joined to the kernel threads: each worker at its `with` line.
    for (name, function, code) in [
        ("forward", "forward", "with second:"),
        ("backward", "backward", "with first:"),
    ] {
        let thread = threads(&diagnosis)
            .find(|t| t.display_name() == name)
            .unwrap_or_else(|| panic!("no thread named {name}"));
        let frame = thread.user_frame().expect("a Python frame");
        assert_eq!(frame.function, function);
        assert!(
            frame.location().starts_with("lock_deadlock.py:"),
            "{frame:?}"
        );
        assert!(
            frame.code.as_deref().is_some_and(|c| c.starts_with(code)),
            "{frame:?}"
        );
    }
    let main = threads(&diagnosis)
        .find(|t| t.tid == target.pid())
        .expect("main thread");
    assert_eq!(main.display_name(), "MainThread");
    for step in [
        "thread \"forward\" holds first (lock_deadlock.py:13) and waits for second \
         (lock_deadlock.py:15)",
        "thread \"backward\" holds second (lock_deadlock.py:20) and waits for first \
         (lock_deadlock.py:22)",
    ] {
        assert!(finding.text.contains(step), "{}", finding.text);
    }
    for thread in threads(&diagnosis) {
        assert!(
            matches!(
                &thread.call,
                Some(Call::Futex {
                    timeout: Timeout::Never,
                    ..
                })
            ),
            "{thread:?}"
        );
    }
}

#[test]
fn pipe_reader_is_waiting_on_its_sibling_writer() {
    let target = Target::python("pipe_wait.py", &[]);
    let pids: Vec<i32> = target
        .ready
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().expect("pid"))
        .collect();
    let (writer, reader) = (pids[0], pids[1]);
    let diagnosis = diagnose_until(target.pid(), "the reader blocked on the pipe", |d| {
        d.processes.iter().any(|p| {
            p.pid == reader
                && p.threads
                    .iter()
                    .any(|t| matches!(t.call, Some(Call::Read { fd: 0, .. })))
        })
    });
    let reading = threads(&diagnosis)
        .find(|t| matches!(t.call, Some(Call::Read { fd: 0, .. })))
        .expect("reader thread");
    let blocked = reading.blocked_in.as_deref().unwrap_or_default();
    // Named: the other end, its holder's PID and command line.
    assert!(blocked.contains("pipe:["), "{blocked}");
    assert!(
        blocked.contains(&format!("write end is held by pid {writer}")),
        "{blocked}"
    );
    assert!(blocked.contains("pipe-writer"), "{blocked}");
    assert!(has(&diagnosis, FindingKind::WaitingOnPeer));
    // The parent waits for its children.
    assert!(
        has(&diagnosis, FindingKind::WaitingOnChild),
        "{}",
        hangwatch_diagnose::render(&diagnosis)
    );
    assert!(diagnosis.processes.iter().any(|p| p.pid == writer));
}

#[test]
fn busy_loop_is_spinning_and_the_sleeper_is_not() {
    let target = Target::python("busy_loop.py", &[]);
    let diagnosis = diagnose_until(target.pid(), "a spinning thread", |d| {
        has(d, FindingKind::Spinning)
    });
    let spinning = diagnosis
        .verdict
        .iter()
        .find(|f| f.kind == FindingKind::Spinning)
        .expect("spinning finding");
    assert_eq!(spinning.tids, vec![target.pid()], "the main thread spins");
    // Caught at the loop's `while` or its body: either way, the script's own line.
    assert!(
        spinning.text.contains("busy_loop.py:") && spinning.text.contains("in <module>"),
        "{}",
        spinning.text
    );
    let sleeper = threads(&diagnosis)
        .find(|t| t.tid != target.pid())
        .expect("sleeper thread");
    assert!(
        matches!(sleeper.call, Some(Call::Sleep { .. })),
        "{sleeper:?}"
    );
    assert!(sleeper.cpu_ms.is_some_and(|ms| ms < 5.0), "{sleeper:?}");
}

#[test]
fn idle_asyncio_loop_waits_in_epoll_with_no_timeout() {
    let target = Target::python("idle_asyncio.py", &[]);
    let diagnosis = diagnose_until(target.pid(), "an idle event loop", |d| {
        has(d, FindingKind::IdleEventLoop)
    });
    let main = threads(&diagnosis)
        .find(|t| t.tid == target.pid())
        .expect("main thread");
    assert!(
        matches!(
            main.call,
            Some(Call::EpollWait {
                timeout: Timeout::Never,
                ..
            })
        ),
        "{main:?}"
    );
    let frames = &main.python.as_ref().expect("Python stack").frames;
    assert!(
        frames.iter().any(|f| f.function.ends_with("run_forever")),
        "{frames:?}"
    );
}

#[test]
fn long_sleep_in_a_non_daemon_thread_is_named_with_its_length() {
    let target = Target::python("long_sleep_thread.py", &[]);
    let diagnosis = diagnose_until(target.pid(), "a long sleep", |d| {
        has(d, FindingKind::LongSleep)
    });
    let sleeper = threads(&diagnosis)
        .find(|t| matches!(t.call, Some(Call::Sleep { .. })))
        .expect("sleeping thread");
    let Some(Call::Sleep { timeout, .. }) = sleeper.call else {
        unreachable!()
    };
    assert_eq!(sleeper.display_name(), "poller");
    assert_eq!(
        sleeper.user_frame().map(|f| f.function.as_str()),
        Some("poll_later")
    );
    // The main thread has finished and waits for the non-daemon thread at exit.
    assert!(
        diagnosis
            .verdict
            .iter()
            .any(|f| f.tids == [target.pid()] && f.text.contains("_shutdown")),
        "{}",
        hangwatch_diagnose::render(&diagnosis)
    );
    // time.sleep(900) sleeps until an absolute deadline: about 900 s are left.
    assert!(
        matches!(timeout, Timeout::Left(ms) | Timeout::Requested(ms) if (800_000..=900_000).contains(&ms)),
        "{timeout:?}"
    );
}

#[test]
fn observer_and_event_loop_deadlock_of_incident_001_is_a_blocked_loop() {
    let watched = Scratch::new("watched");
    let target = Target::python(
        "observer_loop_deadlock.py",
        &[watched.path.to_str().expect("utf-8 path")],
    );
    // The loop blocks first; the observer reaches result() after its 0.3 s in the callback.
    let diagnosis = diagnose_until(target.pid(), "a blocked loop and a result() wait", |d| {
        d.verdict
            .iter()
            .any(|f| f.kind == FindingKind::BlockedEventLoop && f.text.contains("Future's result"))
    });
    let finding = &diagnosis.verdict[0];
    assert_eq!(finding.kind, FindingKind::BlockedEventLoop);
    assert_eq!(finding.tids, vec![target.pid()]);
    // Both sides of the cycle are named: the loop's callback and the observer's result() wait.
    assert!(finding.text.contains("write_status"), "{}", finding.text);
    assert!(finding.text.contains("future.result()"), "{}", finding.text);
    // The loop's own thread (the main thread) is blocked on a lock, not idle in epoll.
    let main = threads(&diagnosis)
        .find(|t| t.tid == target.pid())
        .expect("main thread");
    assert!(main.call.as_ref().is_some_and(Call::is_futex), "{main:?}");
}

#[test]
fn a_process_that_exits_during_the_window_is_not_an_error() {
    let mut command = Command::new(fixture());
    command.args(["sleep", "0.1"]);
    let target = Target::start(command);
    let out = Command::new(hangwatch())
        .args([
            "diagnose",
            "--json",
            "--sample",
            "500ms",
            &target.pid().to_string(),
        ])
        .output()
        .expect("run hangwatch diagnose");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diagnosis: Diagnosis = serde_json::from_slice(&out.stdout).expect("diagnosis JSON");
    assert_eq!(diagnosis.verdict[0].kind, FindingKind::Undecided);
}

#[test]
fn no_such_process_is_hangwatchs_error() {
    // PID 0 never names a process that can be diagnosed.
    let out = Command::new(hangwatch())
        .args(["diagnose", "0"])
        .output()
        .expect("run hangwatch diagnose");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no process"));
}

#[test]
fn without_ptrace_rights_it_degrades_and_says_what_is_missing() {
    // Another user may not read this (root's) process's system calls or open files.
    let mut command = Command::new(fixture());
    command.args(["sleep", "30"]);
    let target = Target::start(command);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(hangwatch())
        .args([
            "diagnose",
            "--json",
            "--sample",
            "50ms",
            &target.pid().to_string(),
        ])
        .output()
        .expect("run setpriv (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diagnosis: Diagnosis = serde_json::from_slice(&out.stdout).expect("diagnosis JSON");
    let thread = threads(&diagnosis)
        .next()
        .expect("the thread is still listed");
    assert_eq!(thread.state, "sleeping");
    assert!(thread.call.is_none());
    let missing = diagnosis.missing.join("\n");
    assert!(missing.contains("syscall"), "{missing}");
    assert!(missing.contains("open files"), "{missing}");
}

#[test]
fn a_timed_out_program_is_diagnosed_before_it_is_stopped() {
    let scratch = Scratch::new("incident");
    let report_path = scratch.file("report.json");
    let incidents = scratch.file("incidents");
    let finished = run([
        "run".as_ref(),
        "--timeout".as_ref(),
        "1s".as_ref(),
        "--grace".as_ref(),
        "2s".as_ref(),
        "--incident-dir".as_ref(),
        incidents.as_os_str(),
        "--report".as_ref(),
        report_path.as_os_str(),
        "--".as_ref(),
        fixture().as_os_str(),
        "mutex-cycle".as_ref(),
    ]);
    assert_eq!(finished.code(), 124, "{}", finished.stderr);
    let report = read_report(&report_path);
    let incident = report.incident.expect("an incident in the report");
    assert!(incident.error.is_none(), "{incident:?}");
    assert!(incident.verdict[0].starts_with("deadlock"), "{incident:?}");
    let json_path = PathBuf::from(incident.json_path.expect("JSON path"));
    let text_path = PathBuf::from(incident.text_path.expect("text path"));
    assert!(json_path.starts_with(&incidents) && text_path.starts_with(&incidents));
    let diagnosis: Diagnosis =
        serde_json::from_slice(&std::fs::read(&json_path).expect("read incident")).expect("JSON");
    assert!(has(&diagnosis, FindingKind::Deadlock));
    // The program, not hangwatch, is what was diagnosed.
    assert_eq!(Some(diagnosis.processes[0].pid), report.pid);
    // The summary points at the file.
    assert!(
        finished.stderr.contains(&text_path.display().to_string()),
        "{}",
        finished.stderr
    );
    // The stop began after the diagnosis, which took the sampling window at least.
    let stop = report.stop.expect("stop record");
    assert!(stop.began_at_ms >= 1000.0 + 150.0, "{stop:?}");
}

#[test]
fn a_stalled_program_is_diagnosed_and_no_diagnose_skips_it() {
    let scratch = Scratch::new("incident-stall");
    for skip in [false, true] {
        let report_path = scratch.file(&format!("report-{skip}.json"));
        let incidents = scratch.file("incidents");
        let mut args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--stall".into(),
            "500ms".into(),
            "--grace".into(),
            "2s".into(),
            "--report".into(),
            report_path.clone().into(),
        ];
        if skip {
            args.push("--no-diagnose".into());
        } else {
            args.push("--incident-dir".into());
            args.push(incidents.clone().into());
        }
        args.extend([
            "--".into(),
            fixture().into(),
            "notify".into(),
            "2".into(),
            "0.1".into(),
        ]);
        let finished = run(args);
        assert_eq!(finished.code(), 122, "{}", finished.stderr);
        let report = read_report(&report_path);
        assert_eq!(report.incident.is_some(), !skip, "{:?}", report.incident);
        if !skip {
            let incident = report.incident.expect("incident");
            assert!(incident.json_path.is_some(), "{incident:?}");
        }
    }
}
