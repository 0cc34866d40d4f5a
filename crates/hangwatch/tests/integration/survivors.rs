//! A stop that needs KILL says why: what each survivor did with the stop signal, and where it
//! was, in the report, the summary line and an incident; and what the program last printed,
//! kept in the incident.

use hangwatch_protocol::report::RunReport;

use crate::harness::{Guard, Scratch, fixture, read_report, report_ids, run};

/// Runs `program` with a 300 ms timeout and a 1 s grace; returns the report and stderr.
fn stop_with_kill(scratch: &Scratch, program: &[&str]) -> (RunReport, String) {
    let report = scratch.file("report.json");
    let incidents = scratch.file("incidents");
    let mut args: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "--timeout".into(),
        "700ms".into(),
        "--grace".into(),
        "1s".into(),
        "--incident-dir".into(),
        incidents.into(),
        "--report".into(),
        report.clone().into(),
        "--".into(),
    ];
    args.extend(program.iter().map(Into::into));
    let done = run(args);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    (read_report(&report), done.stderr)
}

fn survival(report: &RunReport) -> &hangwatch_protocol::report::Survival {
    let program = &report.stopped[0];
    assert!(program.killed, "{report:#?}");
    program.survived.as_ref().expect("why it survived")
}

#[test]
fn a_program_that_ignores_term_is_said_to() {
    let scratch = Scratch::new("survivor-ignore");
    let fixture = fixture();
    let (report, stderr) = stop_with_kill(
        &scratch,
        &[fixture.to_str().expect("utf-8"), "ignore-term", "60"],
    );
    let mut guard = Guard::default();
    guard.track(report_ids(&report));
    let survival = survival(&report);
    assert_eq!(survival.handling, "ignored");
    assert_eq!(survival.signal, "TERM");
    // What it did, where it was, then the KILL.
    assert!(stderr.contains(") ignored TERM: thread "), "{stderr}");
    assert!(stderr.contains("clock_nanosleep"), "{stderr}");
    assert!(stderr.contains("; KILL after the 1s grace"), "{stderr}");
    let stop = report.stop.as_ref().expect("stop");
    assert!(stop.survivors_look_ms.is_some(), "{stop:?}");
    guard.assert_all_gone();
}

const CATCHES_TERM: &str = r#"
import signal, threading
stop = threading.Event()
def on_term(signum, frame):
    print("TERM received, draining first", flush=True)
signal.signal(signal.SIGTERM, on_term)
def drain():
    cond = threading.Condition()
    with cond:
        cond.wait()
drain()
"#;

#[test]
fn a_python_program_that_catches_term_and_waits_is_shown_where_it_waits() {
    let scratch = Scratch::new("survivor-catch");
    let (report, stderr) = stop_with_kill(&scratch, &["python3", "-c", CATCHES_TERM]);
    let mut guard = Guard::default();
    guard.track(report_ids(&report));
    let survival = survival(&report);
    assert_eq!(survival.handling, "caught", "{survival:?}");
    let at = survival.at.join("\n");
    assert!(at.contains("MainThread"), "{at}");
    assert!(at.contains("wait"), "{at}");
    assert!(at.contains("drain()"), "{at}");
    assert!(
        stderr.contains("caught TERM and kept running: thread \"MainThread\""),
        "{stderr}"
    );
    let incident = report
        .stop
        .as_ref()
        .and_then(|s| s.survivors_incident.as_ref())
        .expect("an incident about the survivors");
    let text = std::fs::read_to_string(incident.text_path.as_deref().expect("written"))
        .expect("read the incident");
    assert!(text.contains("Why the stop needed KILL"), "{text}");
    assert!(text.contains("caught TERM"), "{text}");
    guard.assert_all_gone();
}

#[test]
fn a_program_that_blocks_term_in_every_thread_is_said_to() {
    let scratch = Scratch::new("survivor-block");
    let program = "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\ntime.sleep(60)\n";
    let (report, stderr) = stop_with_kill(&scratch, &["python3", "-c", program]);
    let mut guard = Guard::default();
    guard.track(report_ids(&report));
    assert_eq!(survival(&report).handling, "blocked");
    assert!(stderr.contains("blocked TERM in every thread"), "{stderr}");
    guard.assert_all_gone();
}

/// A worker thread prints a traceback and dies; the main thread then waits for ever.
const TRACEBACK_THEN_HANG: &str = r#"
import sys, threading, time
print("serving on :8080", flush=True)
def worker():
    raise RuntimeError("queue connection lost")
t = threading.Thread(target=worker, name="consumer")
t.start()
t.join()
sys.stderr.flush()
threading.Event().wait()
"#;

#[test]
fn a_timeout_incident_keeps_what_the_program_last_printed() {
    let scratch = Scratch::new("last-output-run");
    let report = scratch.file("report.json");
    let incidents = scratch.file("incidents");
    // Its output goes to pipes (the test's): read and passed on by default.
    let done = run([
        "run".as_ref(),
        "--timeout".as_ref(),
        "1500ms".as_ref(),
        "--incident-dir".as_ref(),
        incidents.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
        "--".as_ref(),
        "python3".as_ref(),
        "-c".as_ref(),
        std::ffi::OsStr::new(TRACEBACK_THEN_HANG),
    ]);
    assert_eq!(done.code(), 124, "{}", done.stderr);
    assert!(
        done.stdout.contains("serving on :8080"),
        "passed on: {}",
        done.stdout
    );
    let report = read_report(&report);
    let mut guard = Guard::default();
    guard.track(report_ids(&report));
    let incident = report.incident.as_ref().expect("an incident");
    let text = std::fs::read_to_string(incident.text_path.as_deref().expect("written"))
        .expect("read the incident");
    let last = text
        .split("Last output (oldest first):")
        .nth(1)
        .unwrap_or_else(|| panic!("no last output in the incident:\n{text}"));
    assert!(
        last.contains("stdout:") && last.contains("serving on :8080"),
        "{last}"
    );
    assert!(
        last.contains("stderr:") && last.contains("RuntimeError: queue connection lost"),
        "{last}"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(incident.json_path.as_deref().expect("written")).expect("json"),
    )
    .expect("parse the incident");
    let stderr = json["output"]["stderr"].as_array().expect("output.stderr");
    assert!(
        stderr.iter().any(
            |l| l["line"].as_str().is_some_and(|t| t.contains("Traceback"))
                && l["at"].as_str().is_some()
        ),
        "{stderr:?}"
    );
    guard.assert_all_gone();
}
