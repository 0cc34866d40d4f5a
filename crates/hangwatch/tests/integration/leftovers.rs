//! Descendants still alive when the program exits: stopped, reported, and never waited on
//! through a pipe they hold.

use std::time::Duration;

use hangwatch_protocol::report::{EndReason, StopCause};

use crate::harness::{Guard, Hangwatch, Scratch, fixture, read_pids, read_report, run};

#[test]
fn double_forked_leftover_is_stopped_and_listed() {
    let scratch = Scratch::new("leftover");
    let pidfile = scratch.file("grandchild.pid");
    let report = scratch.file("report.json");
    let done = run([
        "run".as_ref(),
        "--grace".as_ref(),
        "2s".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
        "--".as_ref(),
        fixture().as_os_str(),
        "double-fork".as_ref(),
        pidfile.as_os_str(),
        "60".as_ref(),
    ]);
    let mut guard = Guard::default();
    let grandchild = read_pids(&pidfile);
    guard.track(grandchild.iter().copied());
    assert_eq!(done.code(), 0, "the program's own status: {}", done.stderr);
    assert!(
        done.stderr.contains("left 1 process behind"),
        "{}",
        done.stderr
    );

    let report = read_report(&report);
    assert_eq!(report.outcome.reason, EndReason::Exited);
    assert_eq!(
        report.stop.as_ref().map(|s| s.cause),
        Some(StopCause::Leftovers)
    );
    let pids: Vec<_> = report.leftovers.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![grandchild[0].pid]);
    guard.assert_all_gone();
}

#[test]
fn grandchild_holding_stdout_does_not_keep_hangwatch_waiting() {
    let scratch = Scratch::new("hold-stdout");
    let pidfile = scratch.file("holder.pid");
    // stdout is a pipe read by the test: EOF comes only once the holder is gone.
    let mut hw = Hangwatch::start([
        "run".as_ref(),
        "--grace".as_ref(),
        "1s".as_ref(),
        "--".as_ref(),
        fixture().as_os_str(),
        "hold-stdout".as_ref(),
        pidfile.as_os_str(),
        "60".as_ref(),
    ]);
    hw.wait_line("ready");
    let mut guard = Guard::default();
    guard.track(read_pids(&pidfile));
    let done = hw.finish();
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.elapsed < Duration::from_secs(10), "{:?}", done.elapsed);
    guard.assert_all_gone();
}

#[test]
fn leftover_in_the_same_group_is_stopped() {
    let scratch = Scratch::new("group-leftover");
    let pidfile = scratch.file("child.pid");
    let report = scratch.file("report.json");
    let done = run([
        "run".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
        "--".as_ref(),
        fixture().as_os_str(),
        "spawn-and-exit".as_ref(),
        pidfile.as_os_str(),
        "60".as_ref(),
    ]);
    let mut guard = Guard::default();
    let child = read_pids(&pidfile);
    guard.track(child.iter().copied());
    assert_eq!(done.code(), 0, "{}", done.stderr);
    let report = read_report(&report);
    assert_eq!(report.leftovers.len(), 1, "{report:?}");
    assert!(!report.stopped[0].escaped_group);
    guard.assert_all_gone();
}
