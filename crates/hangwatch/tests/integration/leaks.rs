//! Nothing left behind: the leak audit after every run and every stop, with real programs
//! (Python's `ProcessPoolExecutor` and `shared_memory`, an abandoned SysV segment).
//!
//! Every object a test makes has a unique name and is removed at the end whatever happens;
//! objects a program under test makes are removed by a [`Leftover`] guard if hangwatch did not.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hangwatch_process::ProcessId;
use hangwatch_protocol::report::{
    Attribution, EndReason, LeakAction, LeakKind, LeakReport, LeakedObject, RunReport,
};

use crate::harness::{Guard, Hangwatch, Scratch, fixture, read_report, report_ids};

/// A Python test program of `tests/programs`.
fn program(name: &str) -> OsString {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
        .into()
}

/// Removes, on drop, the objects a test made or a program under test may have left.
struct Leftover {
    files: Vec<PathBuf>,
    sysv_shm: Vec<i32>,
}

impl Leftover {
    fn file(path: PathBuf) -> Leftover {
        Leftover {
            files: vec![path],
            sysv_shm: Vec::new(),
        }
    }

    fn sysv_shm(id: i32) -> Leftover {
        Leftover {
            files: Vec::new(),
            sysv_shm: vec![id],
        }
    }
}

impl Drop for Leftover {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        for id in &self.sysv_shm {
            let _ = hangwatch_process::ipc::remove_sysv_shm(*id);
        }
    }
}

/// `hangwatch run OPTIONS --report REPORT -- COMMAND`, started; returns the ready line's fields
/// after `ready`, the finished run and its report.
fn run_until_ready(
    options: &[&str],
    command: &[OsString],
) -> (Vec<String>, crate::harness::Finished, RunReport) {
    let scratch = Scratch::new("leaks");
    let report = scratch.file("report.json");
    let mut args: Vec<OsString> = vec!["run".into()];
    args.extend(options.iter().map(OsString::from));
    args.extend(["--report".into(), report.clone().into(), "--".into()]);
    args.extend(command.iter().cloned());
    let mut hw = Hangwatch::start(args);
    let ready = hw.wait_line("ready");
    let fields = ready
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let done = hw.finish();
    let report = read_report(&report);
    (fields, done, report)
}

fn leaks(report: &RunReport) -> &LeakReport {
    report
        .leaks
        .as_ref()
        .unwrap_or_else(|| panic!("no leaks section: {report:#?}"))
}

fn attributable(report: &RunReport) -> Vec<&LeakedObject> {
    leaks(report)
        .objects
        .iter()
        .filter(|o| o.attribution == Attribution::Attributable)
        .collect()
}

/// Tracks every process the report names, plus the program, and checks none is left.
fn assert_tree_gone(report: &RunReport, program_pid: &str) {
    let mut guard = Guard::default();
    guard.track(report_ids(report));
    let pid: i32 = program_pid.parse().expect("pid");
    if let Some(id) = report
        .stopped
        .iter()
        .find(|p| p.process.pid == pid)
        .map(|p| ProcessId {
            pid,
            start_time: p.process.start_time,
        })
    {
        guard.track([id]);
    }
    guard.assert_all_gone();
}

/// The /dev/shm entries (by name) whose inode is one of `inodes`.
fn shm_entries_with_inodes(inodes: &[u64]) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|entry| {
            entry
                .metadata()
                .is_ok_and(|meta| inodes.contains(&meta.ino()))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The inodes of the ready line `ready <pid> <ino,ino,...>`, at least one (or the test would
/// prove nothing).
fn semaphore_inodes(fields: &[String]) -> Vec<u64> {
    let inodes: Vec<u64> = fields
        .get(1)
        .map(|list| list.split(',').filter_map(|i| i.parse().ok()).collect())
        .unwrap_or_default();
    assert!(
        !inodes.is_empty(),
        "the pool maps no /dev/shm semaphore: {fields:?}"
    );
    inodes
}

/// Checks a stopped pool: nothing of it in /dev/shm, nothing attributable, the resource
/// tracker never killed (it unlinked the semaphores itself).
fn assert_pool_left_nothing(fields: &[String], report: &RunReport) {
    let inodes = semaphore_inodes(fields);
    let left = shm_entries_with_inodes(&inodes);
    let _leftover = Leftover {
        files: left
            .iter()
            .map(|name| Path::new("/dev/shm").join(name))
            .collect(),
        sysv_shm: Vec::new(),
    };
    assert!(left.is_empty(), "semaphores left in /dev/shm: {left:?}");
    assert!(attributable(report).is_empty(), "{:#?}", leaks(report));
    assert!(
        !report
            .stopped
            .iter()
            .any(|p| p.killed && p.process.command.contains("resource_tracker")),
        "the resource tracker was killed: {:#?}",
        report.stopped
    );
    assert_tree_gone(report, &fields[0]);
}

#[test]
fn pool_stopped_on_timeout_with_term_leaves_nothing_in_dev_shm() {
    // The pool starts in well under a second; the timeout leaves it several.
    let (fields, done, report) = run_until_ready(
        &["--timeout", "4s", "--grace", "5s"],
        &["python3".into(), program("pool_job.py"), "hang".into()],
    );
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert!(!report.stop.as_ref().expect("stop").escalated_to_kill);
    assert_pool_left_nothing(&fields, &report);
}

#[test]
fn pool_ignoring_term_is_killed_but_its_tracker_still_cleans_up() {
    let (fields, done, report) = run_until_ready(
        &["--timeout", "4s", "--grace", "1s"],
        &[
            "python3".into(),
            program("pool_job.py"),
            "ignore-term".into(),
        ],
    );
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert!(report.stop.as_ref().expect("stop").escalated_to_kill);
    let main: i32 = fields[0].parse().expect("pid");
    assert!(
        report
            .stopped
            .iter()
            .any(|p| p.process.pid == main && p.killed),
        "the program was not killed: {:#?}",
        report.stopped
    );
    assert_pool_left_nothing(&fields, &report);
}

#[test]
fn pool_that_finishes_leaves_no_leftover_and_no_leak() {
    // Its resource tracker is still unlinking when the program exits: that is no leftover.
    for _ in 0..2 {
        let (fields, done, report) = run_until_ready(
            &["--leaks", "fail"],
            &["python3".into(), program("pool_job.py"), "finish".into()],
        );
        assert_eq!(done.code(), 0, "{}", done.stderr);
        assert!(
            !done.stderr.contains("hangwatch:"),
            "a clean run said something: {}",
            done.stderr
        );
        assert_eq!(report.stop, None, "{report:#?}");
        assert!(report.leftovers.is_empty());
        assert!(!leaks(&report).leaked, "{:#?}", leaks(&report));
        assert!(leaks(&report).objects.is_empty(), "{:#?}", leaks(&report));
        let left = shm_entries_with_inodes(&semaphore_inodes(&fields));
        let _leftover = Leftover {
            files: left
                .iter()
                .map(|name| Path::new("/dev/shm").join(name))
                .collect(),
            sysv_shm: Vec::new(),
        };
        assert!(left.is_empty(), "semaphores left in /dev/shm: {left:?}");
    }
}

#[test]
fn cleanup_helper_outliving_its_program_is_no_leftover() {
    // The helper works 0.1 s after the program exits; helpers get a settle of 1 s.
    let scratch = Scratch::new("helper");
    let done_file = scratch.file("done");
    let (fields, done, report) = run_until_ready(
        &[],
        &[
            "python3".into(),
            program("cleanup_helper.py"),
            "0.1".into(),
            done_file.clone().into(),
        ],
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done_file.exists(), "the helper did not finish its work");
    assert!(!done.stderr.contains("hangwatch:"), "{}", done.stderr);
    assert_eq!(report.stop, None, "{report:#?}");
    assert!(report.leftovers.is_empty());
    assert!(!leaks(&report).leaked);
    assert_tree_gone(&report, &fields[0]);
}

#[test]
fn cleanup_helper_that_never_finishes_is_killed_after_its_settle() {
    let scratch = Scratch::new("helper-hung");
    let done_file = scratch.file("done");
    let (fields, done, report) = run_until_ready(
        &["--grace", "500ms"],
        &[
            "python3".into(),
            program("cleanup_helper.py"),
            "60".into(),
            done_file.clone().into(),
        ],
    );
    assert_tree_gone(&report, &fields[0]);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    // An order of magnitude: the settle is 0.5 s, the helper's work 60 s.
    assert!(
        done.elapsed < std::time::Duration::from_secs(10),
        "{:?}",
        done.elapsed
    );
    assert!(!done_file.exists());
    let helper: i32 = fields[1].parse().expect("helper pid");
    assert_eq!(
        report.leftovers.iter().map(|p| p.pid).collect::<Vec<_>>(),
        vec![helper]
    );
    let stopped = &report.stopped[0];
    assert!(stopped.killed);
    let signals: Vec<&str> = stopped.signals.iter().map(|s| s.signal.as_str()).collect();
    assert_eq!(
        signals,
        vec!["KILL"],
        "a helper gets no TERM it would ignore"
    );
    assert!(leaks(&report).leaked, "leftover processes are a leak");
}

/// Runs `shm_leak.py` (shared memory never unlinked) under `options`; returns what it named.
fn shared_memory_run(
    options: &[&str],
    secs: &str,
) -> (PathBuf, crate::harness::Finished, RunReport, Leftover) {
    let (fields, done, report) = run_until_ready(
        options,
        &["python3".into(), program("shm_leak.py"), secs.into()],
    );
    let path = Path::new("/dev/shm").join(&fields[1]);
    let leftover = Leftover::file(path.clone());
    assert_tree_gone(&report, &fields[0]);
    let found = attributable(&report);
    assert_eq!(found.len(), 1, "{:#?}", leaks(&report));
    assert_eq!(found[0].kind, LeakKind::PosixSharedMemory);
    assert_eq!(found[0].name, path.display().to_string());
    assert_eq!(found[0].size, Some(1 << 16));
    assert_eq!(
        found[0].process.as_ref().map(|p| p.pid.to_string()),
        Some(fields[0].clone()),
        "not named after its creator: {:#?}",
        found[0]
    );
    assert!(leaks(&report).leaked);
    (path, done, report, leftover)
}

#[test]
fn shared_memory_never_unlinked_is_reported_and_left_in_place() {
    let (path, done, report, _leftover) = shared_memory_run(&["--timeout", "3s"], "60");
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert_eq!(attributable(&report)[0].action, LeakAction::Reported);
    assert!(path.exists(), "report removed {}", path.display());
    assert!(
        done.stderr.contains("left 1 object behind: /dev/shm/psm_"),
        "{}",
        done.stderr
    );
}

#[test]
fn leaks_clean_removes_shared_memory_never_unlinked() {
    let (path, done, report, _leftover) =
        shared_memory_run(&["--timeout", "3s", "--leaks", "clean"], "60");
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert_eq!(attributable(&report)[0].action, LeakAction::Removed);
    assert!(!path.exists(), "{} is still there", path.display());
    assert!(
        done.stderr.contains("left 1 object behind, removed"),
        "{}",
        done.stderr
    );
}

#[test]
fn leaks_fail_exits_123_when_the_program_succeeded_but_leaked() {
    // The program holds the memory for a second after creating it: hangwatch looks within
    // milliseconds of the creation.
    let (path, done, report, _leftover) = shared_memory_run(&["--leaks", "fail"], "1");
    assert_eq!(report.outcome.reason, EndReason::Exited);
    assert_eq!(done.code(), 123, "{}", done.stderr);
    assert_eq!(report.outcome.exit_code, 123);
    assert!(path.exists());
}

#[test]
fn abandoned_sysv_segment_is_attributed_to_its_creator_and_cleaned() {
    let (fields, done, report) = run_until_ready(
        &["--leaks", "clean"],
        &[
            fixture().into(),
            "sysv-shm".into(),
            "8192".into(),
            "0".into(),
        ],
    );
    let id: i32 = fields[1].parse().expect("shmid");
    let _leftover = Leftover::sysv_shm(id);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let found = attributable(&report);
    let segment = found
        .iter()
        .find(|o| {
            o.kind == LeakKind::SysvSharedMemory && o.name.starts_with(&format!("shmid {id} "))
        })
        .unwrap_or_else(|| panic!("segment {id} not attributed: {:#?}", leaks(&report)));
    assert_eq!(segment.size, Some(8192));
    assert!(segment.evidence.contains(&fields[0]), "{segment:#?}");
    assert_eq!(segment.action, LeakAction::Removed);
    let listed = std::fs::read_to_string("/proc/sysvipc/shm").expect("read /proc/sysvipc/shm");
    assert!(
        !listed
            .lines()
            .skip(1)
            .any(|line| line.split_whitespace().nth(1) == Some(&fields[1])),
        "segment {id} still exists:\n{listed}"
    );
}

#[test]
fn attached_sysv_segment_of_a_stopped_program_is_reported() {
    let (fields, done, report) = run_until_ready(
        &["--timeout", "2s"],
        &[
            fixture().into(),
            "sysv-shm".into(),
            "4096".into(),
            "60".into(),
            "--attach".into(),
        ],
    );
    let id: i32 = fields[1].parse().expect("shmid");
    let _leftover = Leftover::sysv_shm(id);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert_tree_gone(&report, &fields[0]);
    let found = attributable(&report);
    let segment = found
        .iter()
        .find(|o| o.name.starts_with(&format!("shmid {id} ")))
        .unwrap_or_else(|| panic!("segment {id} not attributed: {:#?}", leaks(&report)));
    assert_eq!(segment.action, LeakAction::Reported);
    assert_eq!(
        segment.process.as_ref().map(|p| p.pid.to_string()),
        Some(fields[0].clone())
    );
}

#[test]
fn object_of_another_process_is_left_alone_even_when_the_program_maps_it() {
    // Made by this test, before the run: another process's object.
    let path =
        Path::new("/dev/shm").join(format!("hangwatch-test-existing-{}", std::process::id()));
    std::fs::write(&path, [0u8; 4096]).expect("create the object");
    let _leftover = Leftover::file(path.clone());
    let (fields, done, report) = run_until_ready(
        &["--timeout", "2s", "--leaks", "clean"],
        &[
            "python3".into(),
            program("map_existing.py"),
            path.clone().into(),
            "60".into(),
        ],
    );
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert_tree_gone(&report, &fields[0]);
    assert!(path.exists(), "clean removed another process's object");
    assert!(
        leaks(&report)
            .objects
            .iter()
            .all(|o| o.name != path.display().to_string()),
        "{:#?}",
        leaks(&report)
    );
}

#[test]
fn clean_program_reports_no_leak() {
    let (_fields, done, report) = run_until_ready(
        &["--leaks", "fail"],
        &[fixture().into(), "sleep".into(), "0".into()],
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stderr.is_empty(), "{}", done.stderr);
    let leaks = leaks(&report);
    assert!(!leaks.leaked);
    assert!(leaks.objects.is_empty(), "{leaks:#?}");
}

#[test]
fn socket_and_lock_files_of_a_stopped_server_are_reported_and_kept() {
    let scratch = Scratch::new("server");
    let (fields, done, report) = run_until_ready(
        &["--timeout", "2s", "--leaks", "clean"],
        &[
            "python3".into(),
            program("socket_and_lock.py"),
            scratch.path.clone().into(),
        ],
    );
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert_tree_gone(&report, &fields[0]);
    let socket = scratch.file("server.sock");
    let lock = scratch.file("server.lock");
    for (path, kind) in [(&socket, LeakKind::UnixSocket), (&lock, LeakKind::LockFile)] {
        let found = leaks(&report)
            .objects
            .iter()
            .find(|o| o.name == path.display().to_string())
            .unwrap_or_else(|| panic!("{} not listed: {:#?}", path.display(), leaks(&report)));
        assert_eq!(found.kind, kind);
        assert_eq!(found.attribution, Attribution::Suspected, "{found:#?}");
        assert_eq!(found.action, LeakAction::Reported);
        assert_eq!(
            found.process.as_ref().map(|p| p.pid.to_string()),
            Some(fields[0].clone())
        );
        assert!(path.exists(), "{} was removed", path.display());
    }
    assert!(
        done.stderr.contains("may be its leak, left in place"),
        "{}",
        done.stderr
    );
}

/// `temp_leak.py` of the leak audit's own tests.
fn temp_program() -> OsString {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../hangwatch-leaks/tests/programs/temp_leak.py")
        .into()
}

/// Removes, on drop, the temporary entries a program under test named, if hangwatch did not.
struct TempLeftover(Vec<PathBuf>);

impl Drop for TempLeftover {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
    }
}

/// Runs `temp_leak.py ARGS` in hangwatch's own temporary directory, stopped by a timeout, with
/// `--leaks clean`; checks that each entry it made is attributed to it and removed.
fn temp_entries_cleaned(options: &[&str], args: &[&str]) -> RunReport {
    let mut command = vec!["python3".into(), temp_program()];
    command.extend(args.iter().map(OsString::from));
    let mut all = vec!["--leaks", "clean"];
    all.extend(options);
    let (fields, done, report) = run_until_ready(&all, &command);
    let entries: Vec<PathBuf> = fields[1..].iter().map(PathBuf::from).collect();
    let _leftover = TempLeftover(entries.clone());
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert_tree_gone(&report, &fields[0]);
    assert!(!entries.is_empty(), "{fields:?}");
    for entry in &entries {
        let name = entry.display().to_string();
        let found = leaks(&report)
            .objects
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("{name} not listed: {:#?}", leaks(&report)));
        assert!(
            matches!(found.kind, LeakKind::TempDirectory | LeakKind::TempFile),
            "{found:#?}"
        );
        assert_eq!(found.attribution, Attribution::Attributable, "{found:#?}");
        assert_eq!(found.action, LeakAction::Removed, "{found:#?}");
        assert!(!entry.exists(), "{name} was not removed");
    }
    report
}

#[test]
fn forkserver_pymp_directory_of_a_program_stopped_by_term_is_cleaned() {
    let report = temp_entries_cleaned(&["--timeout", "5s", "--grace", "5s"], &["forkserver"]);
    assert!(!report.stop.as_ref().expect("stop").escalated_to_kill);
}

#[test]
fn temporary_directory_and_file_of_a_killed_program_are_cleaned() {
    let report = temp_entries_cleaned(
        &["--timeout", "3s", "--grace", "500ms"],
        &["tempfile", "ignore-term"],
    );
    assert!(report.stop.as_ref().expect("stop").escalated_to_kill);
}
