//! The pytest plugin of the Python package (`python/hangwatch/pytest_plugin.py`), from the source
//! tree, under a real pytest (installed by scripts/test from tests/programs/requirements.txt):
//! under `hangwatch run --stall` it bounds each test and names the one that hung; outside
//! hangwatch it sends nothing. scripts/check_wheel.py checks the same through the installed
//! wheel, where pytest loads the plugin by its entry point.

use std::ffi::OsString;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_protocol::report::{EndReason, StallSource};

use crate::harness::{Guard, Scratch, read_report, report_ids, run};

/// The Python package's source (`python/` at the root of the repository).
fn python_source() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../python")
}

/// The suite with a deadlocking test.
fn suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/programs/pytest_suite")
}

/// `python3 -m pytest` on the suite, with the plugin from the source tree and no other plugin
/// of the environment (the installed wheel's would be loaded twice), through `env` so that
/// hangwatch can run it as one command.
fn pytest(sleep_each: &str, extra: &[&str]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        "env".into(),
        format!("PYTHONPATH={}", python_source().display()).into(),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD=1".into(),
        format!("SLEEP_EACH={sleep_each}").into(),
        "python3".into(),
        "-m".into(),
        "pytest".into(),
        "-p".into(),
        "hangwatch.pytest_plugin".into(),
        "-p".into(),
        "no:cacheprovider".into(),
        "-q".into(),
        "--rootdir".into(),
        suite().into(),
    ];
    argv.extend(extra.iter().map(OsString::from));
    argv.push(suite().into());
    argv
}

fn run_args(options: &[&str], scratch: &Scratch, command: Vec<OsString>) -> Vec<OsString> {
    let mut all: Vec<OsString> = vec!["run".into()];
    all.extend(options.iter().map(OsString::from));
    all.extend([
        "--grace".into(),
        "1s".into(),
        "--incident-dir".into(),
        scratch.file("incidents").into(),
        "--report".into(),
        scratch.file("report.json").into(),
        "--".into(),
    ]);
    all.extend(command);
    all
}

#[test]
fn a_deadlocked_test_is_stopped_and_named_in_summary_report_and_incident() {
    let scratch = Scratch::new("pytest-deadlock");
    // The bound is wide for a busy machine: pytest's own start-up, before the plugin's first
    // heartbeat, takes seconds there.
    let done = run(run_args(&["--stall", "5s"], &scratch, pytest("0.1", &[])));
    let report = read_report(&scratch.file("report.json"));
    let mut guard = Guard::default();
    guard.track(report_ids(&report));
    assert_eq!(done.code(), 122, "{}", done.stderr);
    assert_eq!(report.outcome.reason, EndReason::Stalled);
    let stall = report.stall.as_ref().expect("a stall record");
    assert_eq!(stall.source, StallSource::Notify);
    assert_eq!(
        stall.status.as_deref(),
        Some("test_suite.py::test_deadlocks"),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("(last STATUS: test_suite.py::test_deadlocks)"),
        "{}",
        done.stderr
    );
    // The tests before it passed and said so: three starts and ends, and the plugin's greetings.
    let notify = report.notify.as_ref().expect("notify summary");
    assert!(notify.datagrams >= 8, "{notify:?}");
    let incident = report.incident.as_ref().expect("an incident");
    let text_path = incident.text_path.as_ref().expect("an incident file");
    let text = std::fs::read_to_string(text_path).expect("read the incident");
    assert!(
        text.contains("test_suite.py:") && text.contains("in test_deadlocks"),
        "the incident's stacks show the test:\n{text}"
    );
    guard.assert_none_alive();
}

#[test]
fn each_test_is_bounded_not_the_whole_suite() {
    let scratch = Scratch::new("pytest-bounded");
    // Three tests of 1.5 s each: the suite takes longer than the bound, no test does.
    let done = run(run_args(
        &["--stall", "4s"],
        &scratch,
        pytest("1.5", &["-k", "not deadlocks"]),
    ));
    let report = read_report(&scratch.file("report.json"));
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(report.duration_ms > 4000.0, "{}", report.duration_ms);
    let notify = report.notify.as_ref().expect("notify summary");
    assert_eq!(
        notify.status.as_deref(),
        Some("pytest: session finished"),
        "{notify:?}"
    );
}

/// Runs the suite's first test with pytest directly (no hangwatch), `NOTIFY_SOCKET` naming a
/// socket of the test's, and returns what arrived on it.
fn pytest_outside_hangwatch(extra_env: &[(&str, &str)]) -> Vec<String> {
    let scratch = Scratch::new("pytest-outside");
    let socket_path = scratch.file("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind a notify socket");
    socket.set_nonblocking(true).expect("non-blocking");
    let mut argv = pytest("0.1", &["-k", "test_first"]).into_iter();
    let mut command = Command::new(argv.next().expect("env"));
    command
        .args(argv)
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("HANGWATCH_PID")
        .env_remove("HANGWATCH_SERVICE")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = command.spawn().expect("spawn pytest");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        // A test may poll: it is bounded.
        if let Some(status) = child.try_wait().expect("wait for pytest") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            panic!("pytest did not end within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "pytest failed: {status:?}");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    // Every datagram was queued before pytest exited.
    while let Ok(n) = socket.recv(&mut buffer) {
        received.push(String::from_utf8_lossy(&buffer[..n]).into_owned());
    }
    received
}

#[test]
fn outside_hangwatch_the_plugin_sends_nothing() {
    // A NOTIFY_SOCKET of someone else (systemd's, say) is left alone.
    assert_eq!(pytest_outside_hangwatch(&[]), Vec::<String>::new());
    // The same run with hangwatch's marker is heard: what the socket would have got.
    let heard = pytest_outside_hangwatch(&[("HANGWATCH_PID", "1")]);
    assert!(
        heard
            .iter()
            .any(|d| d == "STATUS=test_suite.py::test_first\nWATCHDOG=1\n"),
        "{heard:?}"
    );
}
