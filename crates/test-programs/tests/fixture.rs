//! Quick checks that `hw-fixture` misbehaves as documented, so that a failing
//! supervisor test is about the supervisor and not about its fixture.
//!
//! This test target also makes `cargo nextest run --workspace` build the
//! `hw-fixture` executable, which other packages' tests find in the target
//! directory.
//!
//! Every wait has a deadline. Each fixture runs in its own process group and
//! is owned by a [`Running`] guard that, on drop (a failed assertion
//! included), kills the fixture and every process named in its PID files
//! whose start time still matches.

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

const FIXTURE: &str = env!("CARGO_BIN_EXE_hw-fixture");

/// The bound on any single wait. Generous, because a loaded CI machine may
/// be slow to fork; the fixtures themselves take milliseconds.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long the fixtures' own sleeps last: far longer than a test, so a
/// process that is gone was killed by the test and did not time out.
const LONG_SLEEP: &str = "60";

/// A fresh directory under the system temporary directory, removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "hw-fixture-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir(&path).expect("create the test directory");
        Self(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The fields of `/proc/<pid>/stat` the tests look at.
#[derive(Debug)]
struct Stat {
    state: char,
    ppid: i32,
    pgrp: i32,
    session: i32,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = text.rsplit_once(')')?;
    // Fields 3 onwards; see proc_pid_stat(5).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// A process named by PID and start time, as the fixtures record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessId {
    pid: i32,
    start_time: u64,
}

impl ProcessId {
    /// Parses `<pid> <starttime>`.
    fn parse(line: &str) -> Self {
        let mut fields = line.split_whitespace();
        let mut next = |what| {
            fields
                .next()
                .unwrap_or_else(|| panic!("no {what} in {line:?}"))
        };
        let pid = next("pid").parse().expect("pid is a number");
        let start_time = next("start time").parse().expect("start time is a number");
        assert_eq!(fields.next(), None, "extra fields in {line:?}");
        Self { pid, start_time }
    }

    /// The process's stat, if this very process still exists (as a zombie
    /// too).
    fn stat(&self) -> Option<Stat> {
        read_stat(self.pid).filter(|stat| stat.start_time == self.start_time)
    }

    /// Whether this very process exists and has not exited. A zombie counts
    /// as gone: reparented orphans are not always reaped in containers.
    fn is_running(&self) -> bool {
        self.stat()
            .is_some_and(|stat| !matches!(stat.state, 'Z' | 'X'))
    }

    /// Sends SIGKILL if the PID still names this process.
    fn kill(&self) {
        if self.is_running() {
            let _ = signal::kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }

    fn wait_gone(&self) {
        let start = Instant::now();
        while self.is_running() {
            assert!(
                start.elapsed() < DEADLINE,
                "{self:?} still running after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn read_pid_file(path: &Path) -> Vec<ProcessId> {
    fs::read_to_string(path)
        .map(|text| text.lines().map(ProcessId::parse).collect())
        .unwrap_or_default()
}

/// A running fixture, its stdout lines, and the PID files that name its
/// descendants. Dropping it kills them all.
struct Running {
    child: Child,
    lines: Receiver<String>,
    pid_files: Vec<PathBuf>,
}

impl Running {
    fn start(args: &[&OsStr], pid_files: &[&Path]) -> Self {
        let mut child = Command::new(FIXTURE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn hw-fixture");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        // Ends at EOF, which the guard's kills guarantee.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            pid_files: pid_files.iter().map(|path| path.to_path_buf()).collect(),
        }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits in i32")
    }

    /// Waits for `ready <pid>` and checks that it names the fixture.
    fn wait_ready(&self) {
        let line = self
            .lines
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|error| panic!("no ready line: {error}"));
        assert_eq!(line, format!("ready {}", self.pid()));
    }

    fn signal(&self, sig: Signal) {
        // The child is not reaped before `wait_exit`, so its PID cannot have
        // been reused.
        signal::kill(Pid::from_raw(self.pid()), sig).expect("signal the fixture");
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the fixture") {
                return status;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "fixture still running after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Everything the fixture wrote to stderr; call after it exited.
    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut text).expect("read stderr");
        }
        text
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Child::kill signals by PID; the child is unreaped until the wait
        // below, so the PID is still its own.
        let _ = self.child.kill();
        let _ = self.child.wait();
        for path in &self.pid_files {
            for process in read_pid_file(path) {
                process.kill();
            }
        }
    }
}

fn args<'a>(args: &'a [&'a str]) -> Vec<&'a OsStr> {
    args.iter().map(OsStr::new).collect()
}

#[test]
fn exit_code_is_passed_through() {
    let mut fixture = Running::start(&args(&["exit", "3"]), &[]);
    assert_eq!(fixture.wait_exit().code(), Some(3));
}

#[test]
fn kill_self_dies_of_the_signal() {
    let mut fixture = Running::start(&args(&["kill-self", "15"]), &[]);
    let status = fixture.wait_exit();
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

#[test]
fn misuse_prints_usage_and_exits_2() {
    let cases: [&[&str]; 6] = [
        &[],
        &["no-such-subcommand"],
        &["sleep"],
        &["sleep", "1", "extra"],
        &["sleep", "-1"],
        &["signals", "out", "--exit-on", "KILL"],
    ];
    for case in cases {
        let mut fixture = Running::start(&args(case), &[]);
        assert_eq!(fixture.wait_exit().code(), Some(2), "{case:?}");
        assert!(fixture.stderr().contains("usage:"), "{case:?}");
    }
}

#[test]
fn sleep_announces_its_own_pid() {
    let mut fixture = Running::start(&args(&["sleep", LONG_SLEEP]), &[]);
    fixture.wait_ready();
    fixture.signal(Signal::SIGKILL);
    assert_eq!(fixture.wait_exit().signal(), Some(libc::SIGKILL));
}

#[test]
fn ignore_term_survives_sigterm() {
    let mut fixture = Running::start(&args(&["ignore-term", LONG_SLEEP]), &[]);
    fixture.wait_ready();
    // An ignored signal is discarded when sent, so had SIGTERM been fatal
    // the process would have died of it and not of the SIGKILL after it.
    fixture.signal(Signal::SIGTERM);
    fixture.signal(Signal::SIGKILL);
    assert_eq!(fixture.wait_exit().signal(), Some(libc::SIGKILL));
}

#[test]
fn busy_spins_then_exits() {
    let mut fixture = Running::start(&args(&["busy", "0.2"]), &[]);
    fixture.wait_ready();
    assert_eq!(fixture.wait_exit().code(), Some(0));
}

#[test]
fn tree_records_every_process_several_levels_deep() {
    let dir = TestDir::new();
    let pid_file = dir.join("tree.pids");
    let mut fixture = Running::start(
        &[
            OsStr::new("tree"),
            OsStr::new("5"),
            pid_file.as_os_str(),
            OsStr::new(LONG_SLEEP),
        ],
        &[&pid_file],
    );
    fixture.wait_ready();

    let processes = read_pid_file(&pid_file);
    assert_eq!(processes.len(), 5, "{processes:?}");
    let root = fixture.pid();
    assert!(processes.iter().any(|process| process.pid == root));
    let stats: Vec<Stat> = processes
        .iter()
        .map(|process| process.stat().expect("every recorded process is alive"))
        .collect();
    assert!(stats.iter().all(|stat| stat.pgrp == root), "{stats:?}");
    assert!(
        stats.iter().any(|stat| stat.ppid != root
            && stat.ppid != 0
            && processes.iter().any(|p| p.pid == stat.ppid)),
        "no grandchild of the root: {stats:?}"
    );

    for process in &processes {
        process.kill();
    }
    assert_eq!(fixture.wait_exit().signal(), Some(libc::SIGKILL));
    for process in &processes {
        process.wait_gone();
    }
}

#[test]
fn signals_records_each_signal_and_exits_on_the_named_one() {
    let dir = TestDir::new();
    let out_file = dir.join("signals.out");
    let mut fixture = Running::start(
        &[
            OsStr::new("signals"),
            out_file.as_os_str(),
            OsStr::new("--exit-on"),
            OsStr::new("TERM"),
        ],
        &[],
    );
    fixture.wait_ready();

    fixture.signal(Signal::SIGUSR1);
    let start = Instant::now();
    while fs::read_to_string(&out_file).unwrap_or_default() != "USR1\n" {
        assert!(start.elapsed() < DEADLINE, "USR1 not recorded");
        std::thread::sleep(Duration::from_millis(5));
    }
    fixture.signal(Signal::SIGTERM);
    assert_eq!(fixture.wait_exit().code(), Some(0));
    assert_eq!(
        fs::read_to_string(&out_file).expect("read the record"),
        "USR1\nTERM\n"
    );
}

#[test]
fn double_fork_leaves_a_grandchild_in_another_session() {
    let dir = TestDir::new();
    let pid_file = dir.join("daemon.pid");
    let mut fixture = Running::start(
        &[
            OsStr::new("double-fork"),
            pid_file.as_os_str(),
            OsStr::new(LONG_SLEEP),
        ],
        &[&pid_file],
    );
    fixture.wait_ready();
    assert_eq!(fixture.wait_exit().code(), Some(0));

    let [daemon] = read_pid_file(&pid_file)[..] else {
        panic!("expected one process in {}", pid_file.display());
    };
    let stat = daemon.stat().expect("the grandchild is alive");
    let root = fixture.pid();
    assert_ne!(stat.pgrp, root, "{stat:?}");
    assert_ne!(stat.session, root, "{stat:?}");
    assert_eq!(stat.pgrp, stat.session, "{stat:?}");
    daemon.kill();
    daemon.wait_gone();
}

#[test]
fn hold_stdout_keeps_the_pipe_open_after_exit() {
    let dir = TestDir::new();
    let pid_file = dir.join("holder.pid");
    let mut fixture = Running::start(
        &[
            OsStr::new("hold-stdout"),
            pid_file.as_os_str(),
            OsStr::new(LONG_SLEEP),
        ],
        &[&pid_file],
    );
    fixture.wait_ready();
    assert_eq!(fixture.wait_exit().code(), Some(0));

    let [holder] = read_pid_file(&pid_file)[..] else {
        panic!("expected one process in {}", pid_file.display());
    };
    assert!(holder.is_running());
    assert_eq!(fixture.lines.try_recv(), Err(TryRecvError::Empty));
    holder.kill();
    assert_eq!(
        fixture.lines.recv_timeout(DEADLINE),
        Err(RecvTimeoutError::Disconnected),
        "stdout reaches EOF once the holder is dead"
    );
}

#[test]
fn spawn_and_exit_leaves_a_child_in_the_group() {
    let dir = TestDir::new();
    let pid_file = dir.join("leftover.pid");
    let mut fixture = Running::start(
        &[
            OsStr::new("spawn-and-exit"),
            pid_file.as_os_str(),
            OsStr::new(LONG_SLEEP),
        ],
        &[&pid_file],
    );
    fixture.wait_ready();
    assert_eq!(fixture.wait_exit().code(), Some(0));

    let [leftover] = read_pid_file(&pid_file)[..] else {
        panic!("expected one process in {}", pid_file.display());
    };
    let stat = leftover.stat().expect("the leftover is alive");
    assert_eq!(stat.pgrp, fixture.pid(), "{stat:?}");
    leftover.kill();
    leftover.wait_gone();
}
