//! A program killed by the kernel's OOM killer is said to be, with what ran out; a plain
//! `kill -9` is not. Each OOM test makes a memory cgroup of its own with a 64 MiB limit and no
//! swap, runs a Python program that moves itself into it and allocates until the kernel kills
//! it, and removes the cgroup afterwards. Nothing outside that cgroup is ever short of memory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hangwatch_process::ProcessId;
use hangwatch_protocol::event::Event;
use hangwatch_protocol::report::{OomConstraint, OomFinding, ProgramStatus};

use crate::harness::{Hangwatch, Scratch, Up, read_report};

/// The program: into the cgroup named by its first argument, then a MiB at a time until killed.
const GREEDY_PY: &str = r#"
import os, sys
with open(os.path.join(sys.argv[1], "cgroup.procs"), "w") as f:
    f.write(str(os.getpid()))
print("in-cgroup", os.getpid(), flush=True)
held = []
while True:
    held.append(bytearray(1 << 20))
"#;

const LIMIT: u64 = 64 << 20;

/// A memory cgroup made for one test, removed (after its processes are gone) on drop.
struct OomCgroup {
    dir: PathBuf,
}

impl OomCgroup {
    /// A child of this process's memory cgroup: cgroup v2 when its hierarchy has a writable
    /// memory controller, else v1's memory hierarchy. `Err` says why neither can be made.
    fn new() -> Result<OomCgroup, String> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hangwatch-oom-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let path_of = |pick: &dyn Fn(&str, &str) -> bool| {
            own.lines().find_map(|line| {
                let mut f = line.splitn(3, ':');
                let (id, controllers, path) = (f.next()?, f.next()?, f.next()?);
                pick(id, controllers).then(|| path.trim_start_matches('/').to_owned())
            })
        };
        let mut tried = Vec::new();
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let controllers = std::fs::read_to_string(Path::new(root).join("cgroup.controllers"));
            let Ok(controllers) = controllers else {
                continue;
            };
            if !controllers.split_whitespace().any(|c| c == "memory") {
                tried.push(format!("{root}: no memory controller in cgroup v2"));
                continue;
            }
            let Some(path) = path_of(&|id, c| id == "0" && c.is_empty()) else {
                continue;
            };
            // A v2 cgroup with processes of its own cannot have controllers enabled for its
            // children (the "no internal processes" rule): make the test's cgroup at the root's
            // level only when this process's cgroup delegates memory.
            let parent = Path::new(root).join(&path);
            let subtree =
                std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
            if !subtree.split_whitespace().any(|c| c == "memory") {
                tried.push(format!("{}: memory not delegated", parent.display()));
                continue;
            }
            let dir = parent.join(&name);
            match make(&dir, &[("memory.max", LIMIT), ("memory.swap.max", 0)]) {
                Ok(()) => return Ok(OomCgroup { dir }),
                Err(err) => tried.push(format!("{}: {err}", dir.display())),
            }
        }
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            let path = path_of(&|_, c| c.split(',').any(|c| c == "memory")).unwrap_or_default();
            let dir = v1.join(path).join(&name);
            let mut settings = vec![("memory.limit_in_bytes", LIMIT)];
            if v1.join("memory.memsw.limit_in_bytes").exists() {
                settings.push(("memory.memsw.limit_in_bytes", LIMIT));
            }
            settings.push(("memory.swappiness", 0));
            match make(&dir, &settings) {
                Ok(()) => return Ok(OomCgroup { dir }),
                Err(err) => tried.push(format!("{}: {err}", dir.display())),
            }
        } else {
            tried.push("no cgroup v1 memory hierarchy".to_owned());
        }
        Err(tried.join("; "))
    }

    /// The cgroup's path as the kernel names it (below its hierarchy's root).
    fn kernel_path(&self) -> String {
        let dir = self.dir.to_string_lossy();
        let below = [
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ]
        .iter()
        .find_map(|root| dir.strip_prefix(root))
        .unwrap_or(&dir);
        below.to_owned()
    }
}

/// Makes the cgroup `dir` and writes each setting; removes it again on failure.
fn make(dir: &Path, settings: &[(&str, u64)]) -> Result<(), String> {
    std::fs::create_dir(dir).map_err(|e| format!("mkdir: {e}"))?;
    for (file, value) in settings {
        if let Err(err) = std::fs::write(dir.join(file), value.to_string()) {
            // memory.swappiness and the swap limits are missing without swap accounting.
            if file.contains("swap") {
                continue;
            }
            let _ = std::fs::remove_dir(dir);
            return Err(format!("write {file}: {err}"));
        }
    }
    Ok(())
}

impl Drop for OomCgroup {
    fn drop(&mut self) {
        // The test's own processes only, should one still be in it (a failed test): killed by
        // PID, then the cgroup removed once it is empty (bounded).
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let procs = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
                Err(err) if Instant::now() > deadline => {
                    eprintln!("could not remove {}: {err}", self.dir.display());
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// The cgroup, or why the test cannot run here (printed as `SKIPPED: …`).
fn setup() -> Option<OomCgroup> {
    if let Err(err) = std::fs::File::open("/dev/kmsg") {
        eprintln!("SKIPPED: /dev/kmsg is not readable ({err}): the kernel log cannot answer");
        return None;
    }
    match OomCgroup::new() {
        Ok(cgroup) => Some(cgroup),
        Err(why) => {
            eprintln!("SKIPPED: no memory cgroup can be made here: {why}");
            None
        }
    }
}

#[test]
fn an_oom_killed_program_is_said_to_be_with_its_cgroup() {
    let Some(cgroup) = setup() else {
        return;
    };
    let scratch = Scratch::new("oom-run");
    std::fs::write(scratch.file("greedy.py"), GREEDY_PY).expect("write program");
    let report_path = scratch.file("report.json");
    let mut hw = Hangwatch::start([
        "run".as_ref(),
        "--timeout".as_ref(),
        "15s".as_ref(),
        "--report".as_ref(),
        report_path.as_os_str(),
        "--".as_ref(),
        "python3".as_ref(),
        scratch.file("greedy.py").as_os_str(),
        cgroup.dir.as_os_str(),
    ]);
    let line = hw.wait_line("in-cgroup");
    let done = hw.finish();
    assert_eq!(done.code(), 137, "{}", done.stderr);
    let report = read_report(&report_path);
    let pid: i32 = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("the program's PID");
    assert_eq!(report.pid, Some(pid));
    assert!(matches!(
        report.outcome.program,
        Some(ProgramStatus::Signalled { signal: 9, .. })
    ));
    let check = report.outcome.oom.as_ref().expect("an OOM check");
    eprintln!(
        "the kernel log was read in {:.3} ms, {} bytes",
        check.took_ms, check.kmsg_bytes
    );
    let OomFinding::Killed(kill) = &check.finding else {
        panic!("not said to be OOM-killed: {check:?}\n{}", done.stderr);
    };
    assert_eq!(kill.pid, pid);
    assert_eq!(kill.task, "python3");
    assert_eq!(kill.constraint, OomConstraint::MemoryCgroup);
    assert_eq!(kill.cgroup.as_deref(), Some(cgroup.kernel_path().as_str()));
    let anon = kill.anon_rss_kib.expect("anon-rss") * 1024;
    assert!(
        anon > LIMIT / 4 && anon <= LIMIT + (8 << 20),
        "anon-rss {anon}"
    );
    let expected = format!(
        "hangwatch: the program was killed by the kernel's OOM killer (memory cgroup {} over its \
         limit; anon-rss ",
        cgroup.kernel_path()
    );
    assert!(done.stderr.contains(&expected), "{}", done.stderr);
    // The kernel log since the run began is a few records, read in well under the bound.
    assert!(check.took_ms < 1000.0, "{check:?}");
}

#[test]
fn a_service_killed_by_the_oom_killer_says_so_in_its_exited_event() {
    let Some(cgroup) = setup() else {
        return;
    };
    let scratch = Scratch::new("oom-up");
    std::fs::write(scratch.file("greedy.py"), GREEDY_PY).expect("write program");
    let config = format!(
        "[service.greedy]\ncommand = [\"python3\", \"{}\", \"{}\"]\nrestart = \"never\"\n",
        scratch.file("greedy.py").display(),
        cgroup.dir.display()
    );
    let mut up = Up::start(&scratch, &config);
    let exited = up.wait(Duration::from_secs(15), |e| {
        matches!(e.event, Event::Exited { .. })
    });
    let started = up
        .events
        .iter()
        .find_map(|e| match e.event {
            Event::Started { pid, .. } => Some(pid),
            _ => None,
        })
        .expect("started");
    let Event::Exited { pid, oom, .. } = &exited.event else {
        unreachable!();
    };
    assert_eq!(*pid, started);
    let check = oom.as_ref().expect("an OOM check");
    let OomFinding::Killed(kill) = &check.finding else {
        panic!("not said to be OOM-killed: {check:?}");
    };
    assert_eq!(kill.pid, started);
    assert_eq!(kill.cgroup.as_deref(), Some(cgroup.kernel_path().as_str()));
    // Every service ended for good: hangwatch ends by itself.
    let (_code, _events, guard) = up.finish();
    guard.assert_all_gone();
    // `hangwatch events` says it in words.
    let events = std::process::Command::new(crate::harness::hangwatch())
        .args(["events", "--file"])
        .arg(scratch.file("hangwatch.toml"))
        .output()
        .expect("run hangwatch events");
    let text = String::from_utf8_lossy(&events.stdout);
    let expected = format!(
        "greedy killed by the kernel's OOM killer (memory cgroup {} over its limit; anon-rss ",
        cgroup.kernel_path()
    );
    assert!(text.contains(&expected), "{text}");
}

#[test]
fn a_plain_kill_9_from_outside_is_not_called_an_oom_kill() {
    let scratch = Scratch::new("oom-kill9");
    let report_path = scratch.file("report.json");
    let mut hw = Hangwatch::start([
        "run".as_ref(),
        "--timeout".as_ref(),
        "15s".as_ref(),
        "--report".as_ref(),
        report_path.as_os_str(),
        "--".as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "echo pid $$; exec sleep 30".as_ref(),
    ]);
    let line = hw.wait_line("pid ");
    let pid: i32 = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("a PID");
    let id = ProcessId::of(pid).expect("stat").expect("alive");
    let pidfd = hangwatch_process::pidfd::PidFd::open(id)
        .expect("pidfd")
        .expect("alive");
    pidfd
        .send(hangwatch_process::Signal::KILL)
        .expect("kill -9");
    let done = hw.finish();
    assert_eq!(done.code(), 137);
    let report = read_report(&report_path);
    let check = report.outcome.oom.as_ref().expect("an OOM check");
    match &check.finding {
        OomFinding::NotOom => assert!(
            done.stderr
                .contains("killed by KILL from outside hangwatch (not the kernel's OOM killer"),
            "{}",
            done.stderr
        ),
        // Where the kernel log cannot be read, the answer is undecided, never a guess.
        OomFinding::Undecided { why, .. } => {
            eprintln!("the kernel log is not readable here: {why}");
            assert!(done.stderr.contains("undecided"), "{}", done.stderr);
        }
        other => panic!("a kill -9 called {other:?}"),
    }
}

#[test]
fn a_kill_without_a_readable_kernel_log_is_undecided() {
    // As another user, under `kernel.dmesg_restrict = 1`, /dev/kmsg cannot be opened.
    let restricted =
        std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict").is_ok_and(|v| v.trim() == "1");
    if !nix::unistd::geteuid().is_root() || !restricted {
        eprintln!(
            "SKIPPED: needs root and kernel.dmesg_restrict = 1 to run hangwatch unprivileged"
        );
        return;
    }
    let hangwatch = crate::harness::hangwatch();
    for ancestor in hangwatch.ancestors().skip(1) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ancestor).map_or(0, |m| m.permissions().mode());
        if mode & 0o001 == 0 {
            eprintln!("SKIPPED: other users cannot reach {}", hangwatch.display());
            return;
        }
    }
    let mut command = std::process::Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&hangwatch)
        .args(["run", "--report", "-", "--", "sh", "-c", "kill -9 $$"])
        .env("XDG_STATE_HOME", "/tmp");
    let output = match command.output() {
        Ok(output) => output,
        Err(err) => {
            eprintln!("SKIPPED: setpriv: {err}");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(137), "{stderr}");
    assert!(
        stderr.contains(
            "killed by KILL from outside hangwatch (whether by the kernel's OOM killer is undecided: open /dev/kmsg"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("\"undecided\""), "{stderr}");
}
