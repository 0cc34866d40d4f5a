//! Python stacks of real CPython programs, read from outside without pausing them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hangwatch_diagnose::python::{PythonDump, PythonError, PythonThread, dump, is_python};

use crate::harness::{
    DEADLINE, Running, default_python, dump_until, dump_within_deadline, installed_pythons,
    marked_line, ready_fields,
};

fn thread<'a>(dumped: &'a PythonDump, name: &str) -> &'a PythonThread {
    dumped
        .threads
        .iter()
        .find(|thread| thread.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no thread named {name} in {dumped:#?}"))
}

/// Whether the innermost frame of the thread named `name` is `function` at `line` of `script`.
fn innermost_is(dumped: &PythonDump, name: &str, script: &str, function: &str, line: i32) -> bool {
    dumped
        .threads
        .iter()
        .find(|thread| thread.name.as_deref() == Some(name))
        .and_then(|thread| thread.frames.first())
        .is_some_and(|frame| {
            frame.function == function && frame.line == line && frame.file.ends_with(script)
        })
}

fn tasks_of(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("read /proc/PID/task")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Two threads deadlocked on two locks: both stacks end on the lines that block, with the
/// right function and thread names, and the kernel thread IDs the threads gave themselves.
fn check_deadlock(python: &Path) -> PythonDump {
    let program = Running::python(python, "deadlock.py", &[]);
    let pid = program.pid();
    let first = marked_line("deadlock.py", "blocks: take_first_then_second");
    let second = marked_line("deadlock.py", "blocks: take_second_then_first");
    let join = marked_line("deadlock.py", "blocks: <module>");
    let main_in_join = |dumped: &PythonDump| {
        thread(dumped, "MainThread")
            .frames
            .iter()
            .any(|frame| frame.function == "<module>" && frame.line == join)
    };
    // A thread at its blocking line may still be on its way into the kernel (runnable, even
    // holding the GIL) on a loaded machine: wait until every one has settled.
    let dumped = dump_until(pid, "every thread blocked where it deadlocks", |dumped| {
        dumped.threads.iter().all(|t| !t.active && !t.holds_gil)
            && main_in_join(dumped)
            && innermost_is(
                dumped,
                "first-worker",
                "deadlock.py",
                "take_first_then_second",
                first,
            )
            && innermost_is(
                dumped,
                "second-worker",
                "deadlock.py",
                "take_second_then_first",
                second,
            )
    });

    assert_eq!(dumped.threads.len(), 3, "{dumped:#?}");
    let main = thread(&dumped, "MainThread");
    assert_eq!(
        main.frames.last().map(|frame| frame.function.as_str()),
        Some("<module>"),
        "frames are innermost first: {main:#?}"
    );

    let tasks = tasks_of(pid);
    for (name, native_id) in ready_fields(&program.ready_line) {
        let native_id: i32 = native_id.parse().expect("thread ID");
        let found = thread(&dumped, &name);
        assert_eq!(
            found.os_tid,
            Some(native_id),
            "{name} gave itself TID {native_id}: {found:#?}"
        );
        assert!(tasks.contains(&native_id), "{native_id} not in {tasks:?}");
    }
    for thread in &dumped.threads {
        assert!(!thread.holds_gil, "every thread waits: {thread:#?}");
        assert!(!thread.active, "every thread is blocked: {thread:#?}");
    }
    dumped
}

/// A thread spinning in Python is active and holds the GIL; one in `time.sleep` is neither.
fn check_busy_and_idle(python: &Path) -> PythonDump {
    let program = Running::python(python, "busy_and_idle.py", &[]);
    let pid = program.pid();
    let sleep_line = marked_line("busy_and_idle.py", "sleeps: sleep");
    let dumped = dump_until(
        pid,
        "the spinner active with the GIL, the sleeper asleep",
        |dumped| {
            let holders = dumped.threads.iter().filter(|t| t.holds_gil).count();
            assert!(holders <= 1, "one GIL: {dumped:#?}");
            let spinner = thread(dumped, "spinner");
            spinner.active
                && spinner.holds_gil
                && innermost_is(dumped, "sleeper", "busy_and_idle.py", "sleep", sleep_line)
        },
    );
    let sleeper = thread(&dumped, "sleeper");
    assert!(!sleeper.active, "a sleeping thread is idle: {dumped:#?}");
    assert!(!sleeper.holds_gil, "{dumped:#?}");
    assert_eq!(
        thread(&dumped, "spinner")
            .frames
            .first()
            .map(|frame| frame.function.as_str()),
        Some("spin")
    );
    dumped
}

#[test]
fn deadlocked_threads_show_the_lines_they_block_on() {
    let dumped = check_deadlock(&default_python());
    assert!(dumped.version.starts_with("3."), "{}", dumped.version);
}

#[test]
fn a_spinning_thread_is_active_and_a_sleeping_one_is_not() {
    check_busy_and_idle(&default_python());
}

/// The Python diagnosis on the default `python3` and on every CPython 3.8–3.13 present
/// (pyenv's versions, `/usr/bin`, `/usr/local/bin`): stacks, thread names and kernel thread IDs,
/// the GIL holder, and the verdicts on Python lock holders. A version absent from the machine
/// is skipped with a note; the default `python3` always runs. Before 3.11 the kernel thread
/// IDs are not in the interpreter's memory; that the deadlock check still matches them is the
/// test of their recovery from the threads' stack pointers.
#[test]
fn every_cpython_present_is_diagnosed() {
    let found = installed_pythons();
    let mut runs: Vec<(Option<String>, std::path::PathBuf)> = vec![(None, default_python())];
    for minor in 8..=13 {
        let version = format!("3.{minor}");
        match found.iter().find(|(v, _)| *v == version) {
            Some((_, path)) => runs.push((Some(version), path.clone())),
            None => eprintln!("skipped CPython {version}: not present on this machine"),
        }
    }
    let mut ran = Vec::new();
    for (version, python) in &runs {
        let dumped = check_deadlock(python);
        if let Some(version) = version {
            assert!(
                dumped.version.starts_with(&format!("{version}.")),
                "{} reports {}",
                python.display(),
                dumped.version
            );
        }
        check_busy_and_idle(python);
        let verdicts = crate::verdicts::check_python_locks(python);
        for (mode, verdict) in &verdicts {
            eprintln!("  CPython {} {mode}: {verdict}", dumped.version);
        }
        eprintln!(
            "diagnosed CPython {} ({}): stacks, thread IDs, GIL holder and {} lock verdicts",
            dumped.version,
            python.display(),
            verdicts.len()
        );
        ran.push(dumped.version);
    }
    eprintln!("ran on CPython {}", ran.join(", "));
}

#[test]
fn a_program_that_is_not_python_is_told_apart() {
    let mut command = Command::new("sleep");
    command.arg("60");
    let program = Running::start(command, false);
    let pid = program.pid();
    // Until `exec`, the child is a copy of this test binary; wait until it is `sleep`.
    let deadline = Instant::now() + DEADLINE;
    let is_sleep =
        || std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe.ends_with("sleep"));
    while !is_sleep() {
        assert!(Instant::now() < deadline, "sleep never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!is_python(pid));
    assert!(
        matches!(dump_within_deadline(pid), Err(PythonError::NotPython)),
        "sleep is not Python"
    );
    // And this test binary, a Rust program with threads, is not either.
    let me = std::process::id() as i32;
    assert!(!is_python(me));
    assert!(matches!(dump(me), Err(PythonError::NotPython)));
}

/// Reading a program while its interpreter shuts down and the process exits never panics and
/// ends in `Gone`; a PID that names no process is `Gone` too.
#[test]
fn a_process_that_exits_while_read_is_gone() {
    let mut program = Running::python(&default_python(), "exits_soon.py", &["0.3"]);
    let pid = program.pid();
    assert!(is_python(pid));
    let deadline = Instant::now() + DEADLINE;
    let (mut read, mut failed) = (0, Vec::new());
    loop {
        assert!(Instant::now() < deadline, "the program never exited");
        // Checked before the dump: once it has exited (a zombie, not reaped, so the PID is
        // still its own), the dump that follows must say so.
        let exited = program.has_exited_unreaped();
        match dump(pid) {
            Ok(_) => read += 1,
            Err(PythonError::Gone | PythonError::NotPython) => {}
            Err(PythonError::Failed(text)) => failed.push(text),
            Err(other) => panic!("{other}"),
        }
        if exited {
            assert!(matches!(dump(pid), Err(PythonError::Gone)));
            break;
        }
    }
    eprintln!("{read} dumps read while the program ran");
    assert!(failed.is_empty(), "failed during shutdown: {failed:?}");
    assert!(program.try_reap());

    let pid_max: i32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .expect("read pid_max")
        .trim()
        .parse()
        .expect("pid_max");
    // PIDs are below pid_max: this one names no process.
    assert!(!is_python(pid_max));
    assert!(matches!(dump(pid_max), Err(PythonError::Gone)));
}

/// The environment variable through which [`not_permitted_names_what_is_missing`] tells its
/// unprivileged half which process to read.
const TARGET_PID_VAR: &str = "HANGWATCH_TEST_PYTHON_PID";

/// The unprivileged half of [`not_permitted_names_what_is_missing`]: this test binary,
/// started again as `nobody`, reads a Python process that root owns.
#[test]
#[ignore = "run as another user by not_permitted_names_what_is_missing"]
fn read_as_an_unprivileged_user() {
    let pid: i32 = std::env::var(TARGET_PID_VAR)
        .expect("the target PID")
        .parse()
        .expect("a PID");
    assert!(is_python(pid), "told apart by its command line");
    match dump(pid) {
        Err(PythonError::NotPermitted(reason)) => {
            println!("REASON {reason}");
            assert!(
                reason.contains("uid 0") && reason.contains("uid 65534"),
                "{reason}"
            );
            assert!(reason.contains("CAP_SYS_PTRACE"), "{reason}");
        }
        other => panic!("expected NotPermitted, got {other:?}"),
    }
}

/// A copy of this test binary in a fresh directory of the temporary directory, readable and
/// executable by everyone, removed on drop.
struct ReaderCopy {
    dir: std::path::PathBuf,
    executable: std::path::PathBuf,
}

impl ReaderCopy {
    fn new() -> ReaderCopy {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "hangwatch-test-unprivileged-reader-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the reader's directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .expect("open the reader's directory to all");
        let executable = dir.join("reader");
        std::fs::copy(
            std::env::current_exe().expect("own executable"),
            &executable,
        )
        .expect("copy this test binary");
        std::fs::set_permissions(&executable, std::fs::Permissions::from_mode(0o755))
            .expect("make the copy executable by all");
        ReaderCopy { dir, executable }
    }
}

impl Drop for ReaderCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A reader without the right to read another user's process gets `NotPermitted` saying why.
/// Needs root, to run the reader as `nobody` against a process of root's.
#[test]
fn not_permitted_names_what_is_missing() {
    use std::os::unix::process::CommandExt;
    let status = std::fs::read_to_string("/proc/self/status").expect("read own status");
    let euid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        .expect("Uid line");
    if euid != "0" {
        eprintln!("skipped: only root can run the reader as another user");
        return;
    }
    let program = Running::python(&default_python(), "deadlock.py", &[]);
    // `nobody` may not be able to reach this binary where it was built (a checkout under a
    // home directory of mode 0700): run a copy from a directory anyone can enter.
    let copy = ReaderCopy::new();
    let mut command = Command::new(&copy.executable);
    command
        .args([
            "--exact",
            "python::read_as_an_unprivileged_user",
            "--ignored",
            "--nocapture",
        ])
        .env(TARGET_PID_VAR, program.pid().to_string())
        .uid(65534)
        .gid(65534);
    let (status, stdout, stderr) = Running::start(command, false).wait_exit();
    let stdout = stdout.join("\n");
    assert!(
        status.success() && stdout.contains("1 passed"),
        "reader failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let reason = stdout
        .lines()
        .find_map(|line| line.strip_prefix("REASON "))
        .expect("the reader printed the reason");
    eprintln!("NotPermitted: {reason}");
}
