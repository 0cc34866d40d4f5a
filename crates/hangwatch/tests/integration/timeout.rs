//! The deadline and the escalation ladder: TERM, grace, KILL, for the whole tree.

use std::time::Duration;

use hangwatch_protocol::report::{EndReason, StopCause};

use crate::harness::{Guard, Scratch, fixture, read_pids, read_report, report_ids, run};

#[test]
fn sleep_past_the_timeout_is_stopped_with_124() {
    let scratch = Scratch::new("timeout");
    let report = scratch.file("report.json");
    let done = run([
        "run".as_ref(),
        "--timeout".as_ref(),
        "500ms".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
        "--".as_ref(),
        fixture().as_os_str(),
        "sleep".as_ref(),
        "60".as_ref(),
    ]);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    // An order of magnitude, not a precise figure: precision is measured by the benchmark.
    assert!(done.elapsed < Duration::from_secs(5), "{:?}", done.elapsed);
    assert!(done.stderr.contains("timed out"), "{}", done.stderr);

    let report = read_report(&report);
    let mut guard = Guard::default();
    guard.track(report_ids(&report));
    assert_eq!(report.outcome.reason, EndReason::TimedOut);
    assert_eq!(report.outcome.exit_code, 124);
    let stop = report.stop.as_ref().expect("stop record");
    assert_eq!(stop.cause, StopCause::Timeout);
    assert!(
        stop.began_at_ms >= 500.0,
        "stopped before the deadline: {stop:?}"
    );
    assert!(!stop.escalated_to_kill);
    assert_eq!(report.stopped.len(), 1);
    assert_eq!(report.stopped[0].process.pid, report.pid.expect("pid"));
    assert_eq!(report.stopped[0].signals[0].signal, "TERM");
    guard.assert_all_gone();
}

#[test]
fn term_ignored_is_killed_after_grace_and_not_before() {
    let scratch = Scratch::new("ignore-term");
    let report = scratch.file("report.json");
    let done = run([
        "run".as_ref(),
        "--timeout".as_ref(),
        "300ms".as_ref(),
        "--grace".as_ref(),
        "1500ms".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
        "--".as_ref(),
        fixture().as_os_str(),
        "ignore-term".as_ref(),
        "60".as_ref(),
    ]);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert!(
        done.elapsed >= Duration::from_millis(1800),
        "{:?}",
        done.elapsed
    );
    assert!(done.elapsed < Duration::from_secs(10), "{:?}", done.elapsed);

    let report = read_report(&report);
    let mut guard = Guard::default();
    guard.track(report_ids(&report));
    let stop = report.stop.as_ref().expect("stop record");
    assert!(stop.escalated_to_kill);
    let program = &report.stopped[0];
    assert!(program.killed);
    let signals: Vec<_> = program.signals.iter().map(|s| s.signal.as_str()).collect();
    assert_eq!(signals, ["TERM", "KILL"]);
    assert!(
        program.signals[1].after_ms >= 1500.0,
        "KILL sent before the grace ran out: {program:?}"
    );
    assert!(
        done.stderr.contains("ignored TERM")
            && done.stderr.contains("; KILL after the 1s 500ms grace"),
        "{}",
        done.stderr
    );
    guard.assert_all_gone();
}

#[test]
fn escaped_setsid_grandchild_is_found_killed_and_reported() {
    let scratch = Scratch::new("escapee");
    let pidfile = scratch.file("grandchild.pid");
    let report = scratch.file("report.json");
    let done = run([
        "run".as_ref(),
        "--timeout".as_ref(),
        "1s".as_ref(),
        "--grace".as_ref(),
        "2s".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
        "--".as_ref(),
        fixture().as_os_str(),
        "double-fork".as_ref(),
        pidfile.as_os_str(),
        "60".as_ref(),
        "--stay".as_ref(),
        "60".as_ref(),
    ]);
    let mut guard = Guard::default();
    let grandchild = read_pids(&pidfile);
    guard.track(grandchild.iter().copied());
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert_eq!(
        grandchild.len(),
        1,
        "the fixture did not write its grandchild's pid"
    );

    let report = read_report(&report);
    guard.track(report_ids(&report));
    let escapee = report
        .stopped
        .iter()
        .find(|p| p.process.pid == grandchild[0].pid)
        .unwrap_or_else(|| panic!("grandchild not in the report: {report:?}"));
    assert!(escapee.escaped_group, "{escapee:?}");
    assert_eq!(escapee.signals[0].signal, "TERM");
    guard.assert_all_gone();
}

#[test]
fn tree_of_100_processes_is_killed_completely() {
    let scratch = Scratch::new("tree");
    let pidfile = scratch.file("tree.pids");
    let report = scratch.file("report.json");
    let mut hw = crate::harness::Hangwatch::start([
        "run".as_ref(),
        "--timeout".as_ref(),
        "3s".as_ref(),
        "--grace".as_ref(),
        "1s".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
        "--".as_ref(),
        fixture().as_os_str(),
        "tree".as_ref(),
        "100".as_ref(),
        pidfile.as_os_str(),
        "60".as_ref(),
    ]);
    hw.wait_line("ready");
    let mut guard = Guard::default();
    let tree = read_pids(&pidfile);
    guard.track(tree.iter().copied());
    assert_eq!(tree.len(), 100);
    let done = hw.finish();
    assert_eq!(done.code(), 124, "{}", done.stderr);
    let report = read_report(&report);
    assert_eq!(report.stopped.len(), 100, "{:?}", report.stopped);
    guard.assert_all_gone();
}
