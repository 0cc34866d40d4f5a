//! Bad input through the doors that had no test of their own (see `docs/bad-input.md`): a
//! broken config at SIGHUP, a corrupt instance record, garbage in the event log.

use std::time::Duration;

use hangwatch_process::{ProcessId, Signal};
use hangwatch_protocol::control::{Reply, State};
use hangwatch_protocol::event::{Event, EventRecord};

use crate::harness::{Guard, Hangwatch, Scratch, Up, run};

const WAIT: Duration = Duration::from_secs(10);

const SLEEPER: &str = "state_dir = \"state\"\n[service.a]\ncommand = [\"sleep\", \"300\"]\n";

/// The PID of service `a`, ready, from `hangwatch status --json`.
fn ready_pid(dir: &Scratch) -> i32 {
    let out = run([
        "status".as_ref(),
        "--json".as_ref(),
        "--state".as_ref(),
        dir.file("state").as_os_str(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let Reply::Status(status) = serde_json::from_str(&out.stdout).expect("a status reply") else {
        panic!("not a status: {}", out.stdout);
    };
    let a = &status.services[0];
    assert_eq!(a.state, State::Ready, "{a:?}");
    a.pid.expect("a PID")
}

#[test]
fn sighup_with_a_broken_config_changes_nothing() {
    let dir = Scratch::new("hup-broken");
    let config = dir.file("hangwatch.toml");
    std::fs::write(&config, SLEEPER).expect("write config");
    let mut hw = Hangwatch::start(["up".as_ref(), "-f".as_ref(), config.as_os_str()]);
    let mut guard = Guard::default();
    guard.track([hw.id()]);
    hw.wait_for(WAIT, |line| line.contains("a started (pid "));
    let pid = ready_pid(&dir);
    guard.track(ProcessId::of(pid).expect("read /proc"));

    std::fs::write(&config, format!("{SLEEPER}restrat = 1\n")).expect("break config");
    hw.signal(Signal(hangwatch_process::signal::RawSignal::SIGHUP));
    hw.wait_for(WAIT, |line| line.contains("SIGHUP: reload refused"));
    // Every diagnostic, with its position, follows.
    hw.wait_for(WAIT, |line| {
        line.contains("hangwatch.toml:4:1: unknown key `restrat`")
    });
    assert_eq!(ready_pid(&dir), pid, "the service was not touched");

    hw.signal(Signal::TERMINATE);
    let finished = hw.finish();
    assert_eq!(finished.code(), 0, "{}", finished.stderr);
    assert!(!finished.stderr.contains("panicked"), "{}", finished.stderr);
    guard.assert_all_gone();
}

#[test]
fn a_corrupt_instance_record_does_not_stop_up() {
    let dir = Scratch::new("instance-corrupt");
    std::fs::create_dir_all(dir.file("state")).expect("state dir");
    std::fs::write(dir.file("state").join("instance.json"), "{\"token\": [1, 2").expect("write");
    let mut up = Up::start(&dir, "[service.a]\ncommand = [\"sleep\", \"300\"]\n");
    up.wait(WAIT, |e| {
        e.service.as_deref() == Some("a") && matches!(e.event, Event::Started { .. })
    });
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0, "{events:#?}");
    guard.assert_all_gone();
}

#[test]
fn garbage_in_the_event_log_is_shown_as_it_is() {
    let dir = Scratch::new("events-garbage");
    let state = dir.file("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let good = EventRecord {
        at: "2026-12-04T10:00:00.000Z".to_owned(),
        service: Some("web".to_owned()),
        event: Event::Started {
            pid: 4242,
            restarts: 0,
        },
    };
    let lines = [
        serde_json::to_string(&good).expect("json"),
        "this is not JSON {".to_owned(),
        r#"{"at":"2026-12-04T10:00:01.000Z","service":"web","event":"teleported"}"#.to_owned(),
        "\u{fffd}\u{0}".to_owned(),
    ];
    std::fs::write(state.join("events.jsonl"), lines.join("\n") + "\n").expect("write");

    let out = run(["events".as_ref(), "--state".as_ref(), state.as_os_str()]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let shown: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(shown.len(), 4, "{}", out.stdout);
    assert!(
        shown[0].contains("web") && shown[0].contains("4242"),
        "{}",
        out.stdout
    );
    assert_eq!(shown[1], "this is not JSON {");
    assert!(shown[2].contains("web teleported"), "{}", out.stdout);

    // `--json` passes every line through untouched.
    let out = run([
        "events".as_ref(),
        "--json".as_ref(),
        "--state".as_ref(),
        state.as_os_str(),
    ]);
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout, lines.join("\n") + "\n");
}
