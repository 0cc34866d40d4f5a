//! Issue 15: optional parts never refuse a run. Each test makes one part fail for real and
//! checks that the program still runs under its bounds, with a note saying what degraded.

use std::path::PathBuf;
use std::time::Duration;

use hangwatch_process::Signal;
use hangwatch_protocol::event::Event;
use hangwatch_protocol::exit_code;

use crate::harness::{Hangwatch, Scratch, Up, fixture, read_report};

/// A real directory whose path is `len` bytes long or more: far past the 107 bytes a socket
/// address holds.
fn deep_dir(scratch: &Scratch, len: usize) -> PathBuf {
    let mut dir = scratch.path.clone();
    while dir.as_os_str().len() < len {
        dir.push("a-directory-level-of-a-deep-runtime-dir");
    }
    std::fs::create_dir_all(&dir).expect("create the deep directory");
    dir
}

#[test]
fn issue_15_run_with_a_deep_runtime_dir_falls_back_to_a_short_notify_socket_and_says_so() {
    let scratch = Scratch::new("deep-run");
    let runtime = deep_dir(&scratch, 200);
    let report = scratch.file("report.json");
    let fx = fixture();
    // READY=1 and two WATCHDOG=1 50 ms apart, then silence: the watchdog (300 ms) must see the
    // beats and then the stall, through whatever socket hangwatch fell back to.
    let hw = Hangwatch::start_with_env(
        [
            "run".as_ref(),
            "--stall".as_ref(),
            "300ms".as_ref(),
            "--no-diagnose".as_ref(),
            "--report".as_ref(),
            report.as_os_str(),
            "--".as_ref(),
            fx.as_os_str(),
            "notify".as_ref(),
            "2".as_ref(),
            "0.05".as_ref(),
        ],
        [("XDG_RUNTIME_DIR", &runtime)],
    );
    let finished = hw.finish();
    assert_eq!(finished.code(), exit_code::STALLED, "{}", finished.stderr);
    let report = read_report(&report);
    let note = report
        .notes
        .iter()
        .find(|n| n.part == "notify-socket")
        .unwrap_or_else(|| panic!("no notify-socket note: {:?}", report.notes));
    let uid = nix::unistd::getuid().as_raw();
    let short = format!("/tmp/hangwatch-{uid}/");
    assert!(note.note.contains(&short), "{note}");
    let notify = report
        .notify
        .expect("the program's datagrams were received");
    assert!(notify.socket.starts_with(&short), "{}", notify.socket);
    assert!(notify.datagrams >= 3, "READY and two beats: {notify:?}");
}

#[test]
fn issue_15_up_with_a_deep_runtime_dir_falls_back_to_a_short_notify_socket_and_logs_it() {
    let dir = Scratch::new("deep-up");
    let runtime = deep_dir(&dir, 200);
    let fx = fixture();
    std::fs::write(
        dir.file("hangwatch.toml"),
        format!(
            r#"state_dir = "state"

[service.beating]
command = ["{fx}", "notify", "1000", "0.05"]
ready = "notify"
watchdog = "2s"
"#,
            fx = fx.display()
        ),
    )
    .expect("write config");
    let mut up = Up::resume_with_env(&dir, [("XDG_RUNTIME_DIR", &runtime)]);
    let degraded = up.wait(Duration::from_secs(10), |e| {
        matches!(e.event, Event::Degraded { .. })
    });
    let Event::Degraded { part, note } = &degraded.event else {
        unreachable!()
    };
    assert_eq!(part, "notify-socket");
    assert!(note.contains("instead"), "{note}");
    let ready = up.wait(Duration::from_secs(10), |e| {
        e.service.as_deref() == Some("beating") && matches!(e.event, Event::Ready { .. })
    });
    assert!(
        matches!(&ready.event, Event::Ready { by, .. } if by == "notify"),
        "{ready:?}"
    );
    let (code, _, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    guard.assert_none_alive();
}

#[test]
fn issue_15_an_unwritable_incident_directory_still_stops_the_stalled_program() {
    let scratch = Scratch::new("no-incident-dir");
    // A regular file where the state directory should be: the incident directory under it
    // cannot be created, for root too (a read-only mode would not stop root).
    let state = scratch.file("not-a-directory");
    std::fs::write(&state, "").expect("write the file");
    let report = scratch.file("report.json");
    let fx = fixture();
    let hw = Hangwatch::start_with_env(
        [
            "run".as_ref(),
            "--stall".as_ref(),
            "300ms".as_ref(),
            "--report".as_ref(),
            report.as_os_str(),
            "--".as_ref(),
            fx.as_os_str(),
            "notify".as_ref(),
            "1".as_ref(),
            "0.05".as_ref(),
        ],
        [("XDG_STATE_HOME", &state)],
    );
    let finished = hw.finish();
    assert_eq!(finished.code(), exit_code::STALLED, "{}", finished.stderr);
    let report = read_report(&report);
    let incident = report.incident.expect("an incident record");
    assert!(incident.text_path.is_none(), "{incident:?}");
    assert!(
        !incident.verdict.is_empty(),
        "the verdict is kept: {incident:?}"
    );
    let note = report
        .notes
        .iter()
        .find(|n| n.part == "incident")
        .unwrap_or_else(|| panic!("no incident note: {:?}", report.notes));
    assert!(note.note.contains("not-a-directory"), "{note}");
}

#[test]
fn issue_15_a_full_event_log_disk_is_said_once_and_the_services_run_on() {
    let dir = Scratch::new("full-events");
    std::fs::create_dir_all(dir.file("state")).expect("state dir");
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    std::os::unix::fs::symlink("/dev/full", dir.file("state/events.jsonl")).expect("symlink");
    let mut up = Up::start(
        &dir,
        r#"
[service.plain]
command = ["sleep", "300"]
"#,
    );
    let degraded = up.wait(
        Duration::from_secs(10),
        |e| matches!(&e.event, Event::Degraded { part, .. } if part == "event-log"),
    );
    let Event::Degraded { note, .. } = &degraded.event else {
        unreachable!()
    };
    assert!(note.contains("No space left"), "{note}");
    up.wait(Duration::from_secs(10), |e| {
        e.service.as_deref() == Some("plain") && matches!(e.event, Event::Started { .. })
    });
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    guard.assert_none_alive();
    let said = events
        .iter()
        .filter(|e| matches!(&e.event, Event::Degraded { part, .. } if part == "event-log"))
        .count();
    assert_eq!(said, 1, "said once: {events:?}");
}

/// Whether this test process may make a mount namespace (root, `unshare` installed).
fn can_unshare_mounts() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn issue_15_no_pseudo_terminal_to_be_had_still_runs_the_program() {
    if !can_unshare_mounts() || which("script").is_none() {
        eprintln!("skipped: needs root, `unshare` and `script` to take /dev/ptmx away");
        return;
    }
    let scratch = Scratch::new("no-pty");
    let report = scratch.file("report.json");
    // `script` gives hangwatch a terminal (so it asks for a pseudo-terminal for the program);
    // in a mount namespace of its own, /dev/ptmx is /dev/null, so opening one fails for real.
    let inner = format!(
        "mount --bind /dev/null /dev/ptmx && exec {hw} run --stall-on-silence 10s --report {report} \
         -- sh -c 'echo program-ran'",
        hw = crate::harness::hangwatch().display(),
        report = report.display()
    );
    let outer = format!("timeout 20 unshare --mount sh -c \"{inner}\"");
    let output = std::process::Command::new("script")
        .args(["-qec", &outer, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("program-ran"), "{stdout}");
    let report = read_report(&report);
    assert_eq!(report.outcome.exit_code, 0);
    let note = report
        .notes
        .iter()
        .find(|n| n.part == "terminal")
        .unwrap_or_else(|| panic!("no terminal note: {:?}", report.notes));
    assert!(note.note.contains("pseudo-terminal"), "{note}");
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

#[test]
fn issue_15_inotify_limits_reached_still_run_the_program_with_a_leak_audit_note() {
    for limit in ["max_inotify_instances", "max_inotify_watches"] {
        inotify_limit_reached(limit);
    }
}

/// One run with the user namespace's `limit` set to 0.
fn inotify_limit_reached(limit: &str) {
    // A user namespace of its own may lower its inotify limit for itself alone: no global
    // sysctl is touched, so nothing else on the machine is affected.
    let probe = std::process::Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            &format!("echo 0 > /proc/sys/user/{limit}"),
        ])
        .status();
    if !probe.is_ok_and(|status| status.success()) {
        eprintln!("skipped: needs `unshare --user` (unprivileged user namespaces)");
        return;
    }
    let scratch = Scratch::new(limit);
    let report = scratch.file("report.json");
    let inner = format!(
        "echo 0 > /proc/sys/user/{limit} && exec {hw} run --report {report} \
         -- sh -c 'echo program-ran'",
        hw = crate::harness::hangwatch().display(),
        report = report.display()
    );
    let output = std::process::Command::new("timeout")
        .args([
            "20",
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            &inner,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("program-ran"), "{stdout}");
    let report = read_report(&report);
    assert_eq!(report.outcome.exit_code, 0);
    let note = report
        .notes
        .iter()
        .find(|n| n.part == "leak-audit")
        .unwrap_or_else(|| panic!("{limit}: no leak-audit note: {:?}", report.notes));
    assert!(note.note.contains("/dev/shm"), "{note}");
}

#[test]
fn issue_15_no_pressure_information_is_said_once_and_the_stall_is_still_stopped() {
    if !can_unshare_mounts() {
        eprintln!("skipped: needs root and `unshare` to hide /proc/pressure");
        return;
    }
    let scratch = Scratch::new("no-pressure");
    let report = scratch.file("report.json");
    // In a mount namespace of its own, an empty tmpfs hides /proc/pressure: reading the
    // pressure files fails for real, as on a kernel without PSI.
    let inner = format!(
        "mount -t tmpfs tmpfs /proc/pressure && exec {hw} run --stall 300ms --report {report} \
         -- {fx} notify 1 0.05",
        hw = crate::harness::hangwatch().display(),
        fx = fixture().display(),
        report = report.display()
    );
    let output = std::process::Command::new("timeout")
        .args(["20", "unshare", "--mount", "sh", "-c", &inner])
        .env("XDG_STATE_HOME", scratch.file("state"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unshare");
    assert_eq!(output.status.code(), Some(exit_code::STALLED), "{output:?}");
    let report = read_report(&report);
    let incident = report.incident.expect("an incident record");
    assert!(incident.text_path.is_some(), "{incident:?}");
    let notes: Vec<_> = report
        .notes
        .iter()
        .filter(|n| n.part == "pressure")
        .collect();
    assert_eq!(notes.len(), 1, "one pressure note: {:?}", report.notes);
    assert!(notes[0].note.contains("/proc/pressure"), "{}", notes[0]);
    let text = std::fs::read_to_string(incident.text_path.expect("a text incident"))
        .expect("read the incident");
    assert_eq!(
        text.matches("no pressure stall information").count(),
        1,
        "said once in the incident: {text}"
    );
}

#[test]
fn without_pressure_information_a_stall_deferral_says_it_defers_nothing() {
    if !can_unshare_mounts() {
        eprintln!("skipped: needs root and `unshare` to hide /proc/pressure");
        return;
    }
    let scratch = Scratch::new("no-pressure-defer");
    let report = scratch.file("report.json");
    let inner = format!(
        "mount -t tmpfs tmpfs /proc/pressure && exec {hw} run --stall 300ms \
         --stall-defer-under-pressure 30s --no-diagnose --report {report} \
         -- {fx} notify 1 0.05",
        hw = crate::harness::hangwatch().display(),
        fx = fixture().display(),
        report = report.display()
    );
    let output = std::process::Command::new("timeout")
        .args(["20", "unshare", "--mount", "sh", "-c", &inner])
        .env("XDG_STATE_HOME", scratch.file("state"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unshare");
    // Nothing to defer on: the stall is stopped at its bound, and the report says why the
    // option did nothing.
    assert_eq!(output.status.code(), Some(exit_code::STALLED), "{output:?}");
    let report = read_report(&report);
    let notes: Vec<_> = report
        .notes
        .iter()
        .filter(|n| n.part == "stall-defer")
        .collect();
    assert_eq!(notes.len(), 1, "one stall-defer note: {:?}", report.notes);
    assert!(notes[0].note.contains("defers nothing"), "{}", notes[0]);
}

#[test]
fn issue_15_a_leak_snapshot_that_fails_at_start_still_runs_the_program() {
    if !can_unshare_mounts() {
        eprintln!("skipped: needs root and `unshare` to replace /dev/shm");
        return;
    }
    let scratch = Scratch::new("no-shm");
    let report = scratch.file("report.json");
    let old_dev = scratch.file("old-dev");
    std::fs::create_dir_all(&old_dev).expect("create the mount point");
    // In a mount namespace of its own, /dev is a fresh tmpfs holding /dev/null and a regular
    // file named shm: listing and watching /dev/shm fail for real (not a directory).
    let inner = format!(
        "mount --bind /dev {old} && mount -t tmpfs tmpfs /dev && touch /dev/null /dev/shm && \
         mount --bind {old}/null /dev/null && exec {hw} run --report {report} \
         -- sh -c 'echo program-ran'",
        old = old_dev.display(),
        hw = crate::harness::hangwatch().display(),
        report = report.display()
    );
    let output = std::process::Command::new("timeout")
        .args(["20", "unshare", "--mount", "sh", "-c", &inner])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("program-ran"), "{stdout}");
    let report = read_report(&report);
    assert_eq!(report.outcome.exit_code, 0);
    let notes: Vec<_> = report
        .notes
        .iter()
        .filter(|n| n.part == "leak-audit" && n.note.contains("/dev/shm"))
        .collect();
    assert!(!notes.is_empty(), "no leak-audit note: {:?}", report.notes);
    let mut texts: Vec<_> = notes.iter().map(|n| &n.note).collect();
    texts.dedup();
    assert_eq!(texts.len(), notes.len(), "each failure once: {notes:?}");
}

#[test]
fn issue_15_a_refused_python_stack_reader_still_stops_the_stalled_program() {
    let python = PathBuf::from("/usr/bin/python3");
    if !nix::unistd::geteuid().is_root() || which("setpriv").is_none() || !python.exists() {
        eprintln!("skipped: needs root, `setpriv` and /usr/bin/python3 to run as another user");
        return;
    }
    let scratch = Scratch::new("no-python-stacks");
    // hangwatch runs as nobody; the program, as nobody too, makes itself not dumpable: without
    // CAP_SYS_PTRACE the kernel refuses to let hangwatch read its memory, for real.
    std::fs::set_permissions(
        &scratch.path,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("open the scratch directory to nobody");
    let program = scratch.file("locked.py");
    std::fs::write(
        &program,
        "import ctypes, threading\n\
         ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0\n\
         print('ready', flush=True)\n\
         lock = threading.Lock()\n\
         lock.acquire()\n\
         lock.acquire()\n",
    )
    .expect("write the program");
    let report = scratch.file("report.json");
    let output = std::process::Command::new("timeout")
        .arg("30")
        .args([
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ])
        .arg(crate::harness::hangwatch())
        .args(["run", "--stall-on-silence", "500ms", "--report"])
        .arg(&report)
        .arg("--")
        .arg(&python)
        .arg(&program)
        .env("XDG_STATE_HOME", scratch.file("state"))
        .env_remove("XDG_RUNTIME_DIR")
        .current_dir(&scratch.path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ready"), "{output:?}");
    assert_eq!(output.status.code(), Some(exit_code::STALLED), "{output:?}");
    let report = read_report(&report);
    let incident = report.incident.expect("an incident record");
    assert!(incident.text_path.is_some(), "{incident:?}");
    let note = report
        .notes
        .iter()
        .find(|n| n.part == "python-stacks")
        .unwrap_or_else(|| panic!("no python-stacks note: {:?}", report.notes));
    assert!(note.note.contains("not permitted"), "{note}");
}

#[test]
fn issue_15_up_says_once_per_incident_that_there_is_no_pressure_information() {
    if !can_unshare_mounts() {
        eprintln!("skipped: needs root and `unshare` to hide /proc/pressure");
        return;
    }
    let dir = Scratch::new("up-no-pressure");
    let mut up = Up::start_in_mount_namespace(
        &dir,
        r#"
[service.quiet]
command = ["sh", "-c", "echo hello; exec sleep 300"]
stall_on_silence = "300ms"
backoff = { initial = "30s" }
"#,
        "mount -t tmpfs tmpfs /proc/pressure",
    );
    let degraded = up.wait(
        Duration::from_secs(15),
        |e| matches!(&e.event, Event::Degraded { part, .. } if part == "pressure"),
    );
    assert_eq!(degraded.service.as_deref(), Some("quiet"));
    let incident = up.wait(Duration::from_secs(15), |e| {
        matches!(&e.event, Event::Incident(_))
    });
    let Event::Incident(record) = &incident.event else {
        unreachable!()
    };
    assert!(record.text_path.is_some(), "{record:?}");
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0, "{events:?}");
    guard.assert_none_alive();
    let said = events
        .iter()
        .filter(|e| matches!(&e.event, Event::Degraded { part, .. } if part == "pressure"))
        .count();
    assert_eq!(said, 1, "said once: {events:?}");
}

/// Sets the soft limit of open files of process `pid` (with Python's `resource.prlimit`, as
/// util-linux's `prlimit` may be absent) and returns the old `(soft, hard)`.
fn set_open_files_limit(pid: i32, soft: Option<u64>) -> (u64, u64) {
    let script = "import resource, sys\n\
                  pid = int(sys.argv[1])\n\
                  old = resource.prlimit(pid, resource.RLIMIT_NOFILE)\n\
                  soft = int(sys.argv[2]) if sys.argv[2] != '-' else old[0]\n\
                  resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, old[1]))\n\
                  print(old[0], old[1])";
    let soft = soft.map_or_else(|| "-".to_owned(), |soft| soft.to_string());
    let out = std::process::Command::new("python3")
        .args(["-c", script, &pid.to_string(), &soft])
        .output()
        .expect("run python3");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut old = text.split_whitespace().map(|n| n.parse().expect("a limit"));
    (old.next().expect("soft"), old.next().expect("hard"))
}

#[test]
fn a_probe_hangwatch_cannot_make_is_not_counted_against_the_service() {
    let dir = Scratch::new("probe-short");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut up = Up::start(
        &dir,
        &format!(
            r#"
[service.web]
command = ["python3", "-c", """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', {port}))
s.listen(64)
while True:
    s.accept()[0].close()
"""]
ready = {{ tcp = "127.0.0.1:{port}", every = "50ms", within = "10s" }}
liveness = {{ tcp = "127.0.0.1:{port}", every = "100ms", timeout = "1s", failures = 2 }}
diagnose = false
"#
        ),
    );
    up.wait(Duration::from_secs(10), |e| {
        e.service.as_deref() == Some("web") && matches!(e.event, Event::Ready { .. })
    });
    // hangwatch may keep every descriptor it has, but gets no new one: a limit below its
    // lowest free descriptor fails each probe's socket with EMFILE, as when it runs out.
    let pid = up.hw.id().pid;
    let old = set_open_files_limit(pid, Some(3));
    let degraded = up.wait(
        Duration::from_secs(10),
        |e| matches!(&e.event, Event::Degraded { part, .. } if part == "probe"),
    );
    // Two failures in a row (0.2 s) would stop the service if these counted; give it five
    // times that before the limit is lifted.
    std::thread::sleep(Duration::from_secs(1));
    set_open_files_limit(pid, Some(old.0));
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    guard.assert_none_alive();
    let Event::Degraded { note, .. } = &degraded.event else {
        unreachable!()
    };
    assert!(
        note.contains("liveness probe") && note.contains("open files"),
        "{note}"
    );
    assert_eq!(degraded.service.as_deref(), Some("web"));
    // The shutdown stops it too, but says no stall and starts nothing.
    let counted: Vec<_> = events
        .iter()
        .filter(|e| e.service.as_deref() == Some("web"))
        .filter(|e| {
            matches!(e.event, Event::Stalled { .. })
                || matches!(e.event, Event::Started { restarts, .. } if restarts > 0)
        })
        .collect();
    assert!(
        counted.is_empty(),
        "counted against the service: {counted:?}"
    );
    let said = events
        .iter()
        .filter(|e| matches!(&e.event, Event::Degraded { part, .. } if part == "probe"))
        .count();
    assert_eq!(said, 1, "said once per spell: {events:?}");
}
