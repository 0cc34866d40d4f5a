//! Signals sent to hangwatch: forwarded to the program; a second INT/TERM stops it; a third
//! kills it at once.

use std::time::Duration;

use hangwatch_process::Signal;
use hangwatch_protocol::report::EndReason;

use crate::harness::{Guard, Hangwatch, Scratch, fixture, read_report};

fn recorded(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (bounded) until the fixture has recorded `count` signals.
fn wait_recorded(path: &std::path::Path, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = recorded(path);
        if lines.len() >= count || std::time::Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_forwarded_signal_reaches_the_program() {
    let scratch = Scratch::new("forward");
    let out = scratch.file("signals.txt");
    let mut hw = Hangwatch::start([
        "run".as_ref(),
        "--".as_ref(),
        fixture().as_os_str(),
        "signals".as_ref(),
        out.as_os_str(),
        "--exit-on".as_ref(),
        "TERM".as_ref(),
    ]);
    hw.wait_line("ready");
    // INT is a termination request like TERM (two of them stop the program), so it has a
    // test of its own below.
    let sent = ["HUP", "USR1", "USR2", "WINCH", "QUIT"];
    for (n, name) in sent.iter().enumerate() {
        hw.signal(name.parse::<Signal>().expect("signal"));
        // One at a time, so the record's order is the sending order.
        let lines = wait_recorded(&out, n + 1);
        assert_eq!(lines.len(), n + 1, "{name} not forwarded: {lines:?}");
    }
    hw.signal(Signal::TERMINATE);
    let done = hw.finish();
    assert_eq!(
        done.code(),
        0,
        "the program exits 0 on TERM: {}",
        done.stderr
    );
    let mut expected: Vec<String> = sent.iter().map(|s| (*s).to_owned()).collect();
    expected.push("TERM".into());
    assert_eq!(recorded(&out), expected);
    assert_eq!(done.stderr, "", "forwarding is not an intervention");
}

#[test]
fn interrupt_is_forwarded() {
    let scratch = Scratch::new("forward-int");
    let out = scratch.file("signals.txt");
    let mut hw = Hangwatch::start([
        "run".as_ref(),
        "--".as_ref(),
        fixture().as_os_str(),
        "signals".as_ref(),
        out.as_os_str(),
        "--exit-on".as_ref(),
        "INT".as_ref(),
    ]);
    hw.wait_line("ready");
    hw.signal(Signal::INTERRUPT);
    let done = hw.finish();
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert_eq!(recorded(&out), ["INT"]);
}

#[test]
fn second_term_escalates_to_the_stop_sequence() {
    let scratch = Scratch::new("escalate");
    let out = scratch.file("signals.txt");
    let report = scratch.file("report.json");
    let mut hw = Hangwatch::start([
        "run".as_ref(),
        "--grace".as_ref(),
        "1s".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
        "--".as_ref(),
        fixture().as_os_str(),
        "signals".as_ref(),
        out.as_os_str(),
    ]);
    let pid: i32 = hw.wait_line("ready")[6..].trim().parse().expect("pid");
    let mut guard = Guard::default();
    guard.track(hangwatch_process::ProcessId::of(pid).ok().flatten());
    hw.signal(Signal::TERMINATE);
    assert_eq!(wait_recorded(&out, 1), ["TERM"], "first TERM is forwarded");
    hw.signal(Signal::TERMINATE);
    let done = hw.finish();
    // The fixture survives TERM, so the stop ends with KILL after the grace.
    assert_eq!(done.code(), 137, "{}", done.stderr);
    assert!(
        done.elapsed >= Duration::from_millis(900),
        "{:?}",
        done.elapsed
    );
    let report = read_report(&report);
    assert_eq!(report.outcome.reason, EndReason::StoppedOnRequest);
    assert!(report.stopped[0].killed);
    guard.assert_all_gone();
}

#[test]
fn third_term_kills_without_waiting_for_the_grace() {
    let scratch = Scratch::new("third");
    let out = scratch.file("signals.txt");
    let mut hw = Hangwatch::start([
        "run".as_ref(),
        "--grace".as_ref(),
        "60s".as_ref(),
        "--".as_ref(),
        fixture().as_os_str(),
        "signals".as_ref(),
        out.as_os_str(),
    ]);
    let pid: i32 = hw.wait_line("ready")[6..].trim().parse().expect("pid");
    let mut guard = Guard::default();
    guard.track(hangwatch_process::ProcessId::of(pid).ok().flatten());
    hw.signal(Signal::TERMINATE);
    wait_recorded(&out, 1);
    hw.signal(Signal::TERMINATE);
    // The stop sequence has begun when the program records its second TERM.
    wait_recorded(&out, 2);
    hw.signal(Signal::INTERRUPT);
    let done = hw.finish();
    assert_eq!(done.code(), 137, "{}", done.stderr);
    assert!(
        done.elapsed < Duration::from_secs(30),
        "waited for the grace: {:?}",
        done.elapsed
    );
    guard.assert_all_gone();
}
