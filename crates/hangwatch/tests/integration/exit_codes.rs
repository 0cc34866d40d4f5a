//! Every documented exit status of `hangwatch run`, and bad input refused with nothing started.

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Scratch, fixture, run};

#[test]
fn program_exit_code_passes_through_and_hangwatch_stays_silent() {
    let done = run([
        "run".as_ref(),
        "--".as_ref(),
        fixture().as_os_str(),
        "exit".as_ref(),
        "3".as_ref(),
    ]);
    assert_eq!(done.code(), 3);
    assert_eq!(done.stderr, "", "no summary when the program simply exits");

    let done = run(["run", "--", "true"]);
    assert_eq!(done.code(), 0);
    assert_eq!(done.stderr, "");
}

/// Under pipes (a CI runner, `| tee`) hangwatch reads the output and passes it on: a program
/// that writes and exits at once ends the run before its pipes are read, and its output must
/// still come through, every time.
#[test]
fn output_of_a_program_that_exits_at_once_is_never_lost() {
    for attempt in 0..20 {
        let done = run(["run", "--", "sh", "-c", "echo out-line; echo err-line >&2"]);
        assert_eq!(done.code(), 0);
        assert_eq!(done.stdout, "out-line\n", "attempt {attempt}");
        assert_eq!(done.stderr, "err-line\n", "attempt {attempt}");
    }
}

#[test]
fn death_by_signal_is_128_plus_the_signal() {
    for (signal, code) in [("9", 137), ("15", 143), ("2", 130)] {
        let done = run([
            "run".as_ref(),
            "--".as_ref(),
            fixture().as_os_str(),
            "kill-self".as_ref(),
            signal.as_ref(),
        ]);
        assert_eq!(done.code(), code, "signal {signal}");
    }
}

#[test]
fn command_not_found_is_127() {
    let done = run(["run", "--", "hangwatch-test-no-such-command"]);
    assert_eq!(done.code(), 127);
    assert!(done.stderr.contains("command not found"), "{}", done.stderr);
}

#[test]
fn command_not_executable_is_126() {
    let scratch = Scratch::new("noexec");
    let script = scratch.file("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let done = run(["run".as_ref(), "--".as_ref(), script.as_os_str()]);
    assert_eq!(done.code(), 126);

    let done = run(["run".as_ref(), "--".as_ref(), scratch.path.as_os_str()]);
    assert_eq!(done.code(), 126, "a directory is not executable");
}

#[test]
fn bad_input_is_125_and_starts_nothing() {
    let scratch = Scratch::new("badinput");
    let marker = scratch.file("started");
    let marker_cmd = format!("touch {}", marker.display());
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "--timeout", "soon", "--", "sh", "-c", &marker_cmd],
        vec!["run", "--grace", "-1s", "--", "sh", "-c", &marker_cmd],
        vec![
            "run",
            "--stop-signal",
            "NOPE",
            "--",
            "sh",
            "-c",
            &marker_cmd,
        ],
        vec!["run", "--no-such-option", "--", "sh", "-c", &marker_cmd],
        vec!["run", "sh", "-c", &marker_cmd],
        vec!["run", "--timeout", "5s"],
        vec!["run", "--"],
        vec![
            "run",
            "--report",
            "/nonexistent-dir/report.json",
            "--",
            "sh",
            "-c",
            &marker_cmd,
        ],
    ];
    for args in cases {
        let done = run(&args);
        assert_eq!(done.code(), 125, "{args:?}\n{}", done.stderr);
        assert!(!done.stderr.is_empty(), "{args:?}: no error message");
        assert!(!marker.exists(), "{args:?} started the program");
    }
}

#[test]
fn help_documents_the_exit_statuses() {
    let done = run(["run", "--help"]);
    assert_eq!(done.code(), 0);
    for needle in [
        "123",
        "124",
        "125",
        "126",
        "127",
        "128+N",
        "--timeout",
        "--grace",
        "--leaks",
    ] {
        assert!(
            done.stdout.contains(needle),
            "{needle} missing:\n{}",
            done.stdout
        );
    }
}
