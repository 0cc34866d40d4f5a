//! The audit of temporary directories against real Python programs (`multiprocessing` with each
//! start method, `tempfile`), stopped by SIGTERM and by SIGKILL, in a temporary directory of
//! each test's own (the program's `TMPDIR`), so that other programs' entries cannot mix in.
//!
//! As the engine does, each test takes the stop look ([`LeakWatch::observe`]) before its first
//! signal. The program leads a process group of its own; the test signals that group, waits
//! (with a deadline) until no process of it is left, and kills it on any failure. The scratch
//! directory is removed whatever happens.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_leaks::{LeakPolicy, LeakReport, LeakWatch, Part};
use hangwatch_process::ProcessId;
use hangwatch_protocol::report::{Attribution, LeakAction, LeakKind, LeakedObject};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

const DEADLINE: Duration = Duration::from_secs(15);

fn program() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/temp_leak.py")
}

/// A temporary directory of this test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "hangwatch-leaks-temp-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).expect("create the scratch directory");
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `temp_leak.py` in a process group of its own, with `TMPDIR` set.
struct Program {
    child: Child,
    pgid: i32,
    /// The top-level entries it says it made.
    entries: Vec<PathBuf>,
}

impl Program {
    fn start(tmpdir: &Path, args: &[&str]) -> Program {
        let mut child = Command::new("python3")
            .arg(program())
            .args(args)
            .env("TMPDIR", tmpdir)
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn python3");
        let pgid = child.id() as i32;
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut program = Program {
            child,
            pgid,
            entries: Vec::new(),
        };
        match rx.recv_timeout(DEADLINE) {
            Ok(line) if line.starts_with("ready ") => {
                program.entries = line.split_whitespace().skip(2).map(PathBuf::from).collect();
                assert!(!program.entries.is_empty(), "it made nothing: {line}");
                program
            }
            other => {
                program.kill();
                panic!("temp_leak.py {args:?} not ready: {other:?}");
            }
        }
    }

    /// The part of the tree it leads.
    fn part(&self) -> Part {
        let id = ProcessId::of(self.pgid)
            .expect("read the program's stat")
            .expect("the program is alive");
        Part::program(id, self.pgid)
    }

    /// Sends `signal` to its group; waits until the group is empty.
    fn stop(&mut self, signal: Signal) {
        let _ = killpg(Pid::from_raw(self.pgid), signal);
        let _ = self.child.wait();
        if !wait_group_gone(self.pgid, Instant::now() + DEADLINE) {
            self.kill();
            panic!("process group {} outlived {signal:?}", self.pgid);
        }
    }

    fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        let _ = self.child.wait();
        wait_group_gone(self.pgid, Instant::now() + DEADLINE);
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until no process is in group `pgid` (orphans are re-parented to init, which reaps
/// them); false past `deadline`.
fn wait_group_gone(pgid: i32, deadline: Instant) -> bool {
    loop {
        let alive = std::fs::read_dir("/proc")
            .expect("list /proc")
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(|pid| hangwatch_process::stat::read_stat(pid).ok().flatten())
            .any(|stat| stat.pgrp == pgid && !stat.is_zombie());
        if !alive {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn start_watch(scratch: &Scratch) -> LeakWatch {
    LeakWatch::start_with(
        Path::new("/dev/shm"),
        vec![scratch.0.clone()],
        std::process::id() as i32,
        own_uid(),
    )
}

fn temp_objects(report: &LeakReport) -> Vec<&LeakedObject> {
    report
        .objects
        .iter()
        .filter(|o| matches!(o.kind, LeakKind::TempDirectory | LeakKind::TempFile))
        .collect()
}

fn object<'a>(report: &'a LeakReport, path: &Path) -> &'a LeakedObject {
    let name = path.display().to_string();
    report
        .objects
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("{name} not in the report: {report:#?}"))
}

/// Runs `temp_leak.py ARGS`, takes the stop look, stops it with `signal` (TERM then, after a
/// moment, KILL when it ignores TERM), audits with `clean`; checks that every entry it made is
/// attributable to it and removed.
async fn left_and_cleaned(name: &str, args: &[&str], signal: Signal) {
    let scratch = Scratch::new(name);
    let watch = start_watch(&scratch);
    let mut program = Program::start(&scratch.0, args);
    watch.observe();
    if args.contains(&"ignore-term") {
        let _ = killpg(Pid::from_raw(program.pgid), Signal::SIGTERM);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    program.stop(signal);
    let kinds: Vec<LeakKind> = program
        .entries
        .iter()
        .map(|entry| {
            assert!(entry.exists(), "{} is not left behind", entry.display());
            if entry.is_dir() {
                LeakKind::TempDirectory
            } else {
                LeakKind::TempFile
            }
        })
        .collect();
    let report = watch.finish(LeakPolicy::Clean, 0);
    assert!(report.leaked, "{report:#?}");
    for (entry, kind) in program.entries.iter().zip(kinds) {
        let found = object(&report, entry);
        assert_eq!(found.attribution, Attribution::Attributable, "{found:#?}");
        assert_eq!(found.action, LeakAction::Removed, "{found:#?}");
        assert_eq!(found.kind, kind, "{found:#?}");
        assert!(
            found.process.is_some(),
            "not named after a process: {found:#?}"
        );
        assert!(!entry.exists(), "{} was not removed", entry.display());
    }
    assert_eq!(
        temp_objects(&report).len(),
        program.entries.len(),
        "{report:#?}"
    );
}

#[tokio::test]
async fn fork_pool_and_manager_stopped_by_term_leave_pymp_cleaned() {
    left_and_cleaned("fork-term", &["fork"], Signal::SIGTERM).await;
}

#[tokio::test]
async fn fork_pool_and_manager_killed_leave_pymp_cleaned() {
    left_and_cleaned("fork-kill", &["fork", "ignore-term"], Signal::SIGKILL).await;
}

#[tokio::test]
async fn spawn_pool_and_manager_stopped_by_term_leave_pymp_cleaned() {
    left_and_cleaned("spawn-term", &["spawn"], Signal::SIGTERM).await;
}

#[tokio::test]
async fn spawn_pool_and_manager_killed_leave_pymp_cleaned() {
    left_and_cleaned("spawn-kill", &["spawn", "ignore-term"], Signal::SIGKILL).await;
}

#[tokio::test]
async fn forkserver_stopped_by_term_leaves_its_listener_directory_cleaned() {
    left_and_cleaned("forkserver-term", &["forkserver"], Signal::SIGTERM).await;
}

#[tokio::test]
async fn forkserver_killed_leaves_its_listener_directory_cleaned() {
    left_and_cleaned(
        "forkserver-kill",
        &["forkserver", "ignore-term"],
        Signal::SIGKILL,
    )
    .await;
}

#[tokio::test]
async fn mkdtemp_and_named_temporary_file_stopped_by_term_are_cleaned() {
    left_and_cleaned("tempfile-term", &["tempfile"], Signal::SIGTERM).await;
}

#[tokio::test]
async fn mkdtemp_and_named_temporary_file_killed_are_cleaned() {
    left_and_cleaned(
        "tempfile-kill",
        &["tempfile", "ignore-term"],
        Signal::SIGKILL,
    )
    .await;
}

#[tokio::test]
async fn a_directory_holding_an_older_file_or_another_users_is_reported_and_kept() {
    let scratch = Scratch::new("mixed");
    // Made before the run, outside the temporary directory; the program moves it into its
    // own fresh directory.
    let outside = Scratch::new("mixed-outside");
    let old = outside.0.join("old");
    std::fs::write(&old, b"made before the run").expect("write");
    // Past the clock slack the audit allows for birth times (a tick of the kernel's clock).
    std::thread::sleep(Duration::from_millis(100));
    let watch = start_watch(&scratch);
    let old_arg = old.display().to_string();
    let mut moved = Program::start(&scratch.0, &["tempfile", "--move-in", &old_arg]);
    watch.observe();
    moved.stop(Signal::SIGKILL);
    let directory = moved
        .entries
        .iter()
        .find(|e| e.is_dir())
        .expect("the mkdtemp directory");
    let named = moved
        .entries
        .iter()
        .find(|e| e.is_file())
        .expect("the named temporary file");
    let report = watch.finish(LeakPolicy::Clean, 0);
    let found = object(&report, directory);
    assert_eq!(found.kind, LeakKind::TempDirectory);
    assert_eq!(found.attribution, Attribution::Suspected, "{found:#?}");
    assert!(found.evidence.contains("predates the run"), "{found:#?}");
    assert_eq!(found.action, LeakAction::Reported);
    assert!(directory.join("old").exists(), "the older file was removed");
    // The named temporary file beside it is the program's alone.
    assert_eq!(object(&report, named).action, LeakAction::Removed);

    if own_uid() != 0 {
        return;
    }
    let scratch = Scratch::new("stranger");
    let watch = start_watch(&scratch);
    let mut chowned = Program::start(&scratch.0, &["tempfile", "--chown-inside"]);
    watch.observe();
    chowned.stop(Signal::SIGTERM);
    let directory = chowned
        .entries
        .iter()
        .find(|e| e.is_dir())
        .expect("the mkdtemp directory");
    let report = watch.finish(LeakPolicy::Clean, 0);
    let found = object(&report, directory);
    assert_eq!(found.attribution, Attribution::Suspected, "{found:#?}");
    assert!(
        found.evidence.contains("belongs to user 65534"),
        "{found:#?}"
    );
    assert!(directory.join("stranger").exists());
}

#[tokio::test]
async fn what_existed_before_or_the_tree_never_used_is_left_alone() {
    let scratch = Scratch::new("before");
    // A directory from before the run, that the program's tree then works in.
    let old_dir = scratch.0.join("from-before");
    std::fs::create_dir(&old_dir).expect("mkdir");
    let watch = start_watch(&scratch);
    let mut holder = Command::new("sh")
        .args([
            "-c",
            r#"cd "$1" && exec 3>"$1/new-inside" && echo ready && read _ignored"#,
            "sh",
        ])
        .arg(&old_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the ready line");
    // Made during the run, by this test (not of the tree), and never used by the tree.
    let stranger = scratch.0.join("made-by-someone-else");
    std::fs::create_dir(&stranger).expect("mkdir");
    watch.observe();
    let _ = holder.kill();
    let _ = holder.wait();
    let report = watch.finish(LeakPolicy::Clean, 0);
    assert!(line.starts_with("ready"), "{line:?}");
    assert!(temp_objects(&report).is_empty(), "{report:#?}");
    assert!(report.unattributed >= 1, "{report:#?}");
    assert!(old_dir.join("new-inside").exists());
    assert!(stranger.exists());
}

#[tokio::test]
async fn a_part_audit_reports_its_pymp_directory_once() {
    let scratch = Scratch::new("part");
    let watch = start_watch(&scratch);
    let mut program = Program::start(&scratch.0, &["forkserver"]);
    let part = program.part();
    watch.observe();
    program.stop(Signal::SIGKILL);
    let audit = watch.audit_part(&part).expect("candidates for the part");
    let report = watch.reported(audit.run());
    for entry in &program.entries {
        let found = object(&report, entry);
        assert_eq!(found.kind, LeakKind::TempDirectory);
        assert_eq!(found.attribution, Attribution::Attributable, "{found:#?}");
        // A part's audit only reports.
        assert_eq!(found.action, LeakAction::Reported);
        assert!(entry.exists());
    }
    // The part's audit reported the pool's semaphores too (the program was killed with its
    // resource tracker): this test removes them.
    for shm in report.objects.iter().filter(|o| {
        matches!(
            o.kind,
            LeakKind::PosixSemaphore | LeakKind::PosixSharedMemory
        )
    }) {
        let _ = std::fs::remove_file(&shm.name);
    }
    // The final audit does not list them again, and so leaves them in place.
    let last = watch.finish(LeakPolicy::Clean, 0);
    assert!(temp_objects(&last).is_empty(), "{last:#?}");
    for entry in &program.entries {
        assert!(entry.exists());
    }
}
