//! What a container's entrypoint needs besides PID 1 (see `pid1.rs`): everything on stdout as
//! JSON lines for the log pipeline, and a `critical` service whose end is the container's.

use hangwatch_protocol::event::{Event, EventRecord};

use crate::harness::{Guard, Hangwatch, Scratch};

#[test]
fn a_critical_service_ends_the_supervisor_with_its_status_and_every_line_is_json() {
    let dir = Scratch::new("container");
    std::fs::write(
        dir.file("hangwatch.toml"),
        r#"state_dir = "state"

[service.main]
command = ["sh", "-c", "echo 'hello from main'; echo 'to stderr' >&2; sleep 0.5; exit 3"]
restart = "never"
critical = true

[service.side]
command = ["sleep", "300"]
"#,
    )
    .expect("write config");
    let hw = Hangwatch::start([
        "up".as_ref(),
        "--log-format".as_ref(),
        "json".as_ref(),
        "-f".as_ref(),
        dir.file("hangwatch.toml").as_os_str(),
    ]);
    let mut guard = Guard::default();
    guard.track([hw.id()]);
    let finished = hw.finish();
    assert_eq!(
        finished.code(),
        3,
        "the critical service's exit code is the supervisor's:\n{}\n{}",
        finished.stdout,
        finished.stderr
    );
    let mut output = Vec::new();
    let mut events = Vec::new();
    for line in finished.stdout.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
        if value.get("event").is_some() {
            let record: EventRecord = serde_json::from_value(value).expect("an event record");
            if let Event::Started { pid, .. } = record.event
                && let Ok(Some(id)) = hangwatch_process::ProcessId::of(pid)
            {
                guard.track([id]);
            }
            events.push(record);
        } else {
            output.push(value);
        }
    }
    assert!(
        output.iter().any(|o| o["service"] == "main"
            && o["stream"] == "stdout"
            && o["text"] == "hello from main"
            && o["at"].is_string()),
        "{output:#?}"
    );
    assert!(
        output
            .iter()
            .any(|o| o["stream"] == "stderr" && o["text"] == "to stderr"),
        "{output:#?}"
    );
    let reason = events
        .iter()
        .find_map(|e| match &e.event {
            Event::ShuttingDown { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("shutting-down event");
    assert!(
        reason.contains("main") && reason.contains("critical"),
        "{reason}"
    );
    assert!(
        events.iter().any(|e| e.service.as_deref() == Some("side")
            && matches!(e.event, Event::Exited { stopped: true, .. })),
        "the other service is stopped: {events:#?}"
    );
    guard.assert_all_gone();
}

/// The value of `name` in the environment of process `pid`.
fn env_of(pid: i32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        entry
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
            .map(str::to_owned)
    })
}

#[test]
fn replicas_run_as_numbered_copies_and_verbs_act_on_all_of_them() {
    let dir = Scratch::new("replicas");
    let mut up = crate::harness::Up::start(
        &dir,
        r#"
[service.worker]
command = ["sleep", "300"]
replicas = 3
"#,
    );
    let within = std::time::Duration::from_secs(15);
    for n in 1..=3 {
        let name = format!("worker.{n}");
        let started = match up.events.iter().find(|e| {
            e.service.as_deref() == Some(name.as_str()) && matches!(e.event, Event::Started { .. })
        }) {
            Some(found) => found.clone(),
            None => up.wait(within, |e| {
                e.service.as_deref() == Some(name.as_str())
                    && matches!(e.event, Event::Started { .. })
            }),
        };
        let Event::Started { pid, .. } = started.event else {
            unreachable!()
        };
        assert_eq!(
            env_of(pid, "HANGWATCH_REPLICA").as_deref(),
            Some(n.to_string().as_str())
        );
    }
    let config = dir.file("hangwatch.toml");
    let verb = |verb: &str| {
        crate::harness::run([
            verb.as_ref(),
            "worker".as_ref(),
            "-f".as_ref(),
            config.as_os_str(),
        ])
    };
    let stopped = verb("stop");
    assert_eq!(stopped.code(), 0, "{}{}", stopped.stdout, stopped.stderr);
    assert_eq!(
        stopped
            .stdout
            .lines()
            .filter(|l| l.contains("stopped"))
            .count(),
        3,
        "{}",
        stopped.stdout
    );
    let started = verb("start");
    assert_eq!(started.code(), 0, "{}{}", started.stdout, started.stderr);
    assert_eq!(started.stdout.lines().count(), 3, "{}", started.stdout);
    let (code, _events, guard) = up.stop(hangwatch_process::Signal::TERMINATE);
    assert_eq!(code, 0);
    guard.assert_all_gone();
}
