//! Stall detection with real clients: the `sdnotify` Python package and the `sd-notify` crate
//! over the notify socket, an atomically replaced status file, and output silence.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use hangwatch_protocol::report::{EndReason, RunReport, StallSource};

use crate::harness::{Guard, Hangwatch, Scratch, fixture, read_report, report_ids, run};

/// A Python test program of `tests/programs`.
fn program(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
}

/// `hangwatch run OPTIONS --report REPORT -- COMMAND`, as arguments.
fn args(options: &[&str], report: &std::path::Path, command: &[OsString]) -> Vec<OsString> {
    let mut all: Vec<OsString> = vec!["run".into()];
    all.extend(options.iter().map(OsString::from));
    all.extend([
        "--grace".into(),
        "1s".into(),
        "--report".into(),
        report.into(),
        "--".into(),
    ]);
    all.extend(command.iter().cloned());
    all
}

fn python(name: &str, rest: &[&str]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec!["python3".into(), program(name).into()];
    argv.extend(rest.iter().map(OsString::from));
    argv
}

/// Checks a stall report: the source, the exit code, a detection within twice the bound (an
/// order of magnitude; precision is the benchmark's job), a snapshot, and nothing left alive.
fn assert_stalled(report: &RunReport, source: StallSource) {
    let mut guard = Guard::default();
    guard.track(report_ids(report));
    assert_eq!(report.outcome.reason, EndReason::Stalled, "{report:#?}");
    assert_eq!(report.outcome.exit_code, 122);
    let stall = report.stall.as_ref().expect("stall record");
    assert_eq!(stall.source, source, "{stall:#?}");
    assert!(
        stall.late_ms < (stall.bound_ms.max(100) as f64),
        "detected {} ms after the deadline",
        stall.late_ms
    );
    assert!(
        !stall.snapshot.is_empty(),
        "no snapshot of the stalled tree"
    );
    assert!(stall.snapshot.iter().all(|p| !p.threads.is_empty()));
    guard.assert_all_gone();
}

#[test]
fn sdnotify_heartbeats_then_silence_is_a_stall() {
    let scratch = Scratch::new("sdnotify");
    let report = scratch.file("report.json");
    let mut hw = Hangwatch::start(args(
        &["--stall", "1s"],
        &report,
        &python("notify_client.py", &["heartbeat", "4", "0.2"]),
    ));
    let ready = hw.wait_line("ready");
    let fields: Vec<&str> = ready.split_whitespace().collect();
    assert_eq!(
        fields[3], "1000000",
        "WATCHDOG_USEC as systemd sets it: {ready}"
    );
    assert_eq!(
        fields[4], fields[1],
        "WATCHDOG_PID is the program's own PID: {ready}"
    );
    let done = hw.finish();
    assert_eq!(done.code(), 122, "{}", done.stderr);
    assert!(done.stderr.contains("no WATCHDOG=1"), "{}", done.stderr);
    let report = read_report(&report);
    assert_stalled(&report, StallSource::Notify);
    let notify = report.notify.as_ref().expect("notify summary");
    assert!(notify.datagrams >= 5, "{notify:?}");
    assert!(notify.ready_at_ms.is_some());
    assert_eq!(
        notify.status.as_deref(),
        Some("stuck after the last heartbeat")
    );
    let stall = report.stall.as_ref().expect("stall");
    assert!(stall.last_heartbeat_ago_ms.expect("heartbeat seen") >= 1000.0);
}

#[test]
fn sd_notify_crate_client_is_understood() {
    let scratch = Scratch::new("sd-notify");
    let report = scratch.file("report.json");
    let done = run(args(
        &["--stall", "800ms"],
        &report,
        &[fixture().into(), "notify".into(), "3".into(), "0.2".into()],
    ));
    assert_eq!(done.code(), 122, "{}", done.stderr);
    let report = read_report(&report);
    assert_stalled(&report, StallSource::Notify);
    assert!(
        report
            .notify
            .as_ref()
            .expect("notify")
            .ready_at_ms
            .is_some()
    );
}

#[test]
fn abstract_notify_socket_works_for_clients() {
    let scratch = Scratch::new("abstract");
    let report = scratch.file("report.json");
    let mut hw = Hangwatch::start(args(
        &["--stall", "700ms", "--notify-socket", "abstract"],
        &report,
        &python("notify_client.py", &["heartbeat", "3", "0.2"]),
    ));
    let ready = hw.wait_line("ready");
    assert!(
        ready
            .split_whitespace()
            .nth(2)
            .is_some_and(|s| s.starts_with('@')),
        "{ready}"
    );
    let done = hw.finish();
    assert_eq!(done.code(), 122, "{}", done.stderr);
    let report = read_report(&report);
    assert_stalled(&report, StallSource::Notify);
    assert!(report.notify.as_ref().expect("notify").datagrams >= 4);
}

#[test]
fn watchdog_trigger_is_a_stall_at_once() {
    let scratch = Scratch::new("trigger");
    let report = scratch.file("report.json");
    let done = run(args(
        &[],
        &report,
        &python("notify_client.py", &["trigger"]),
    ));
    assert_eq!(done.code(), 122, "{}", done.stderr);
    assert_stalled(&read_report(&report), StallSource::Trigger);
}

#[test]
fn program_sets_its_own_watchdog() {
    let scratch = Scratch::new("usec");
    let report = scratch.file("report.json");
    let done = run(args(
        &[],
        &report,
        &python("notify_client.py", &["usec", "500000"]),
    ));
    assert_eq!(done.code(), 122, "{}", done.stderr);
    let report = read_report(&report);
    assert_stalled(&report, StallSource::Notify);
    assert_eq!(
        report.notify.as_ref().expect("notify").watchdog_ms,
        Some(500)
    );
}

#[test]
fn stopping_without_exit_is_a_stall() {
    let scratch = Scratch::new("stopping");
    let report = scratch.file("report.json");
    let done = run(args(
        &["--exit-grace", "500ms"],
        &report,
        &python("notify_client.py", &["stopping"]),
    ));
    assert_eq!(done.code(), 122, "{}", done.stderr);
    let report = read_report(&report);
    assert_stalled(&report, StallSource::Stopping);
    assert!(
        report
            .notify
            .as_ref()
            .expect("notify")
            .stopping_at_ms
            .is_some()
    );
}

#[test]
fn garbage_datagrams_are_counted_and_harmless() {
    let scratch = Scratch::new("garbage");
    let report = scratch.file("report.json");
    let done = run(args(
        &["--stall", "2s"],
        &report,
        &python("notify_client.py", &["garbage", "5", "0.05"]),
    ));
    assert_eq!(
        done.code(),
        0,
        "the program exits 0 by itself: {}",
        done.stderr
    );
    let report = read_report(&report);
    assert!(report.stall.is_none(), "{:?}", report.stall);
    let notify = report.notify.expect("notify");
    assert!(notify.ignored >= 15, "{notify:?}");
}

#[test]
fn datagrams_from_outside_the_tree_do_not_count() {
    let scratch = Scratch::new("outsider");
    let report = scratch.file("report.json");
    let mut hw = Hangwatch::start(args(
        &["--stall", "1s"],
        &report,
        &python("notify_client.py", &["heartbeat", "1", "0.1"]),
    ));
    let ready = hw.wait_line("ready");
    let socket = ready.split_whitespace().nth(2).expect("socket").to_owned();
    // This test process is not in hangwatch's tree: its heartbeats must be refused.
    let sender = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop.clone();
    let beats = std::thread::spawn(move || {
        for _ in 0..100 {
            if stop_flag.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let _ = sender.send_to(b"WATCHDOG=1", &socket);
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let done = hw.finish();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    beats.join().expect("sender thread");
    assert_eq!(done.code(), 122, "{}", done.stderr);
    let report = read_report(&report);
    assert_stalled(&report, StallSource::Notify);
    assert!(report.notify.expect("notify").rejected >= 5);
}

#[test]
fn refreshed_status_file_is_not_flagged() {
    let scratch = Scratch::new("status-ok");
    let status = scratch.file("status.json");
    let report = scratch.file("report.json");
    let status_arg = status.to_string_lossy().into_owned();
    let done = run(args(
        &[
            "--stall",
            "500ms",
            "--heartbeat-file",
            &status_arg,
            "--timeout",
            "2s",
        ],
        &report,
        &python("status_file.py", &[&status_arg, "0.1", "-1"]),
    ));
    assert_eq!(done.code(), 124, "ran until the timeout: {}", done.stderr);
    let report = read_report(&report);
    assert!(report.stall.is_none(), "{:?}", report.stall);
}

#[test]
fn status_file_that_stops_is_a_stall() {
    let scratch = Scratch::new("status-stale");
    let status = scratch.file("status.json");
    let report = scratch.file("report.json");
    let status_arg = status.to_string_lossy().into_owned();
    let done = run(args(
        &["--stall", "500ms", "--heartbeat-file", &status_arg],
        &report,
        &python("status_file.py", &[&status_arg, "0.1", "5"]),
    ));
    assert_eq!(done.code(), 122, "{}", done.stderr);
    let report = read_report(&report);
    assert_stalled(&report, StallSource::File);
    assert!(report.stall.expect("stall").last_heartbeat_ago_ms.is_some());
}

#[test]
fn silent_program_is_a_stall_after_a_warning() {
    let scratch = Scratch::new("silence");
    let report = scratch.file("report.json");
    let done = run(args(
        &["--stall-on-silence", "800ms", "--stall-warn", "300ms"],
        &report,
        &[fixture().into(), "sleep".into(), "60".into()],
    ));
    assert_eq!(done.code(), 122, "{}", done.stderr);
    assert!(
        done.stdout.starts_with("ready "),
        "output passes through: {}",
        done.stdout
    );
    assert!(
        done.stderr.contains("warning: no output"),
        "{}",
        done.stderr
    );
    let report = read_report(&report);
    assert_stalled(&report, StallSource::Output);
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert_eq!(report.warnings[0].source, StallSource::Output);
}

#[test]
fn output_burst_of_100_mb_is_neither_flagged_nor_blocked() {
    use std::process::{Command, Stdio};
    let scratch = Scratch::new("burst");
    let report = scratch.file("report.json");
    // hangwatch's stdout goes to /dev/null here; a slow reader is the output module's test.
    let mut child = Command::new(crate::harness::hangwatch())
        .args(args(
            &["--stall-on-silence", "2s", "--timeout", "60s"],
            &report,
            &[
                "sh".into(),
                "-c".into(),
                "head -c 100000000 /dev/zero; echo done >&2".into(),
            ],
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hangwatch");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("100 MB burst took more than 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let report = read_report(&report);
    assert!(report.stall.is_none(), "{:?}", report.stall);
}

#[test]
fn a_stall_deferred_for_pressure_in_run_still_stops_by_its_bound() {
    if std::fs::read_to_string("/proc/pressure/cpu").is_err() {
        eprintln!("skipped: this kernel reports no pressure stall information");
        return;
    }
    let scratch = Scratch::new("run-defer");
    let report = scratch.file("report.json");
    let incidents = scratch.file("incidents");
    let began = std::time::Instant::now();
    // A threshold of 0 % takes any reading as pressure: real pressure cannot be forced.
    let done = run(args(
        &[
            "--stall",
            "1s",
            "--stall-defer-under-pressure",
            "2s",
            "--stall-defer-above",
            "0%",
            "--incident-dir",
            incidents.to_str().expect("utf-8"),
        ],
        &report,
        &python("notify_client.py", &["heartbeat", "2", "0.2"]),
    ));
    let took = began.elapsed();
    assert_eq!(done.code(), 122, "{}", done.stderr);
    assert!(
        done.stderr.contains("under pressure") && done.stderr.contains("waits up to 2"),
        "{}",
        done.stderr
    );
    assert!(done.stderr.contains("deferred 2s"), "{}", done.stderr);
    assert!(
        took > Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
    let report = read_report(&report);
    let mut guard = Guard::default();
    guard.track(report_ids(&report));
    let stall = report.stall.as_ref().expect("stall record");
    let deferred = stall.deferred.expect("deferred");
    assert!(deferred.bound_reached, "{deferred:?}");
    assert!(
        deferred.for_ms >= 1900.0 && deferred.for_ms < 6000.0,
        "{deferred:?}"
    );
    let verdict = &report.incident.as_ref().expect("incident").verdict;
    assert!(
        verdict.iter().any(|v| v.contains("deferred")),
        "{verdict:?}"
    );
    guard.assert_all_gone();
}

#[test]
fn without_stall_defer_run_stops_a_stall_at_once() {
    let scratch = Scratch::new("run-no-defer");
    let report = scratch.file("report.json");
    let done = run(args(
        &["--stall", "1s", "--no-diagnose"],
        &report,
        &python("notify_client.py", &["heartbeat", "2", "0.2"]),
    ));
    assert_eq!(done.code(), 122, "{}", done.stderr);
    assert!(!done.stderr.contains("pressure"), "{}", done.stderr);
    let report = read_report(&report);
    assert_stalled(&report, StallSource::Notify);
    assert!(report.stall.as_ref().expect("stall").deferred.is_none());
}
