//! `hangwatch up` against real services: small shell and Python programs and the fixture.
//!
//! Each test writes a config into a scratch directory, runs `hangwatch up --json` (the event
//! log on stdout), waits for events with a bound, and tracks every PID it learns of in a
//! [`Guard`] so that nothing outlives a failing test.

use std::path::Path;
use std::time::Duration;

use hangwatch_process::{OpenFilesLimit, ProcessId, Signal};
use hangwatch_protocol::event::{Event, EventRecord};
use hangwatch_protocol::report::StopCause;

use crate::harness::{Scratch, Up, fixture, read_pids};

/// The systemd notify protocol in a few lines of Python, for services of the tests.
const NOTIFY_PY: &str = r#"
import os, socket
def notify(message):
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), address)
"#;

/// Writes `config` (with the test's `notify.py` beside it) and starts `hangwatch up` on it.
fn start(dir: &Scratch, config: &str) -> Up {
    std::fs::write(dir.file("notify.py"), NOTIFY_PY).expect("write notify.py");
    Up::start(dir, config)
}

fn is(record: &EventRecord, service: &str, kind: &str) -> bool {
    record.service.as_deref() == Some(service) && event_name(&record.event) == kind
}

fn event_name(event: &Event) -> &'static str {
    match event {
        Event::Up { .. } => "up",
        Event::Orphans { .. } => "orphans",
        Event::Started { .. } => "started",
        Event::StartFailed { .. } => "start-failed",
        Event::Ready { .. } => "ready",
        Event::NotReady { .. } => "not-ready",
        Event::Stalled { .. } => "stalled",
        Event::OverMemory { .. } => "over-memory",
        Event::Incident(_) => "incident",
        Event::Stopping { .. } => "stopping",
        Event::Exited { .. } => "exited",
        Event::Restarting { .. } => "restarting",
        Event::GaveUp { .. } => "gave-up",
        Event::Leak { .. } => "leak",
        Event::LogDropped { .. } => "log-dropped",
        Event::ShuttingDown { .. } => "shutting-down",
        Event::Down { .. } => "down",
        Event::StallWarning { .. } => "stall-warning",
        Event::Killing { .. } => "killing",
        Event::StallDeferred { .. } => "stall-deferred",
        Event::StallCleared { .. } => "stall-cleared",
        Event::Degraded { .. } => "degraded",
        _ => "other",
    }
}

/// Index of the first event of `service` of `kind`.
fn position(events: &[EventRecord], service: &str, kind: &str) -> usize {
    events
        .iter()
        .position(|e| is(e, service, kind))
        .unwrap_or_else(|| panic!("no {kind} event for {service} in {events:#?}"))
}

fn count(events: &[EventRecord], service: &str, kind: &str) -> usize {
    events.iter().filter(|e| is(e, service, kind)).count()
}

const WAIT: Duration = Duration::from_secs(15);

#[test]
fn dependents_start_once_their_dependencies_are_ready_and_stop_first() {
    let dir = Scratch::new("up-order");
    let mut up = start(
        &dir,
        r#"
[service.db]
command = ["python3", "-c", "import time, notify; time.sleep(0.5); notify.notify('READY=1'); time.sleep(300)"]
ready = "notify"

[service.app]
command = ["sleep", "300"]
depends_on = ["db"]

[service.web]
command = "sleep 300"
depends_on = ["app"]
"#,
    );
    up.wait(WAIT, |e| is(e, "web", "started"));
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0, "{events:#?}");
    let started_db = position(&events, "db", "started");
    let ready_db = position(&events, "db", "ready");
    let started_app = position(&events, "app", "started");
    let started_web = position(&events, "web", "started");
    assert!(started_db < ready_db && ready_db < started_app && started_app < started_web);
    let Event::Ready { after_ms, by } = &events[ready_db].event else {
        unreachable!()
    };
    assert_eq!(by, "notify");
    assert!(
        *after_ms >= 400.0,
        "READY=1 came after 0.5 s, not {after_ms} ms"
    );
    // Reverse order: web's exit is seen before app begins stopping, app's before db's.
    let exited_web = position(&events, "web", "exited");
    let stopping_app = position(&events, "app", "stopping");
    let exited_app = position(&events, "app", "exited");
    let stopping_db = position(&events, "db", "stopping");
    assert!(
        exited_web < stopping_app && exited_app < stopping_db,
        "{events:#?}"
    );
    let down = events.last().expect("events");
    let Event::Down { clean, killed, .. } = &down.event else {
        panic!("last event is not down: {down:?}")
    };
    assert_eq!(clean.len(), 3, "{down:?}");
    assert!(killed.is_empty());
    guard.assert_all_gone();
    assert!(dir.file("state/events.jsonl").exists());
}

#[test]
fn restart_policies_and_the_give_up() {
    let dir = Scratch::new("up-policies");
    let up = start(
        &dir,
        r#"
[service.always]
command = ["sh", "-c", "exit 0"]
restart = "always"
backoff = { initial = "0s" }
max_restarts = { count = 3, within = "60s" }

[service.failing]
command = ["sh", "-c", "exit 3"]
restart = "on-failure"
backoff = { initial = "10ms", max = "20ms" }
max_restarts = { count = 2, within = "60s" }

[service.fine]
command = ["sh", "-c", "exit 0"]
restart = "on-failure"

[service.once]
command = ["sh", "-c", "exit 1"]
restart = "never"
"#,
    );
    // Every service ends for good, so the supervisor shuts down by itself, with 1 because two
    // services gave up.
    let (code, events, guard) = up.finish();
    assert_eq!(code, 1, "{events:#?}");
    assert_eq!(
        count(&events, "always", "started"),
        4,
        "first start + 3 restarts"
    );
    assert_eq!(count(&events, "always", "gave-up"), 1);
    assert_eq!(count(&events, "failing", "started"), 3);
    assert_eq!(count(&events, "failing", "gave-up"), 1);
    let delays: Vec<u64> = events
        .iter()
        .filter(|e| e.service.as_deref() == Some("failing"))
        .filter_map(|e| match &e.event {
            Event::Restarting { in_ms, .. } => Some(*in_ms),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 2);
    assert!(delays[1] >= delays[0], "backoff grows: {delays:?}");
    assert_eq!(
        count(&events, "fine", "started"),
        1,
        "exit 0 is not a failure"
    );
    assert_eq!(count(&events, "once", "started"), 1, "never restarts");
    assert_eq!(count(&events, "once", "restarting"), 0);
    guard.assert_all_gone();
}

#[test]
fn a_give_up_with_on_give_up_shutdown_stops_everything() {
    let dir = Scratch::new("up-giveup");
    let up = start(
        &dir,
        r#"
[service.crashy]
command = ["sh", "-c", "exit 2"]
backoff = { initial = "0s" }
max_restarts = { count = 1, within = "60s" }
on_give_up = "shutdown"

[service.bystander]
command = ["sleep", "300"]
"#,
    );
    let (code, events, guard) = up.finish();
    assert_eq!(code, 1);
    let gave_up = position(&events, "crashy", "gave-up");
    let stopped = position(&events, "bystander", "exited");
    assert!(gave_up < stopped);
    let Some(Event::ShuttingDown { reason, .. }) = events
        .iter()
        .map(|e| &e.event)
        .find(|e| matches!(e, Event::ShuttingDown { .. }))
    else {
        panic!("no shutdown: {events:#?}")
    };
    assert!(reason.contains("crashy"), "{reason}");
    guard.assert_all_gone();
}

#[test]
fn a_stalled_service_is_diagnosed_stopped_and_restarted() {
    let dir = Scratch::new("up-stall");
    let mut up = start(
        &dir,
        r#"
[service.worker]
command = ["python3", "-c", """
import os, threading, time, notify
notify.notify('READY=1')
for _ in range(3):
    notify.notify('WATCHDOG=1')
    time.sleep(0.1)
if os.environ['HANGWATCH_RESTARTS'] == '0':
    threading.Lock().acquire(); lock = threading.Lock(); lock.acquire(); lock.acquire()
time.sleep(300)
"""]
watchdog = "1s"
ready = "notify"
backoff = { initial = "0s" }
"#,
    );
    let stalled = up.wait(WAIT, |e| is(e, "worker", "stalled"));
    let Event::Stalled {
        source, late_ms, ..
    } = &stalled.event
    else {
        unreachable!()
    };
    assert_eq!(source.as_str(), "notify");
    assert!(
        *late_ms < 1000.0,
        "detected within 2x the deadline: late by {late_ms} ms"
    );
    // The incident is written while the stop and the restart go on: either may come first.
    let restarted = |e: &EventRecord| {
        is(e, "worker", "started") && matches!(e.event, Event::Started { restarts: 1, .. })
    };
    let first = up.wait(WAIT, |e| is(e, "worker", "incident") || restarted(e));
    let incident = if restarted(&first) {
        up.wait(WAIT, |e| is(e, "worker", "incident"))
    } else {
        up.wait(WAIT, restarted);
        first
    };
    let Event::Incident(record) = &incident.event else {
        unreachable!()
    };
    let text = record.text_path.as_deref().expect("an incident file");
    assert!(
        Path::new(text).starts_with(dir.file("state/incidents")),
        "{text}"
    );
    let report = std::fs::read_to_string(text).expect("read the incident");
    assert!(report.contains("acquire"), "{report}");
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    // The stop began once the diagnosis was taken, before its files were written.
    let stopping = position(&events, "worker", "stopping");
    assert!(position(&events, "worker", "stalled") < stopping);
    guard.assert_all_gone();
}

#[test]
fn an_early_diagnosis_is_thrown_away_when_the_heartbeat_comes() {
    let dir = Scratch::new("up-early");
    // Each beat comes 0.9 s after the last, inside the 200 ms window that a diagnosis begins
    // before the 1 s deadline: every early diagnosis is begun, then thrown away.
    let mut up = start(
        &dir,
        r#"
[service.worker]
command = ["python3", "-c", """
import time, notify
notify.notify('READY=1')
for _ in range(4):
    time.sleep(0.9)
    notify.notify('WATCHDOG=1')
"""]
watchdog = "1s"
ready = "notify"
restart = "never"
"#,
    );
    up.wait(WAIT, |e| is(e, "worker", "exited"));
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    assert_eq!(count(&events, "worker", "stalled"), 0, "{events:#?}");
    assert_eq!(count(&events, "worker", "incident"), 0, "{events:#?}");
    let incidents = std::fs::read_dir(dir.file("state/incidents"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(incidents, 0, "no incident file");
    guard.assert_all_gone();
}

#[test]
fn a_stall_warning_writes_an_incident_and_the_service_runs_on() {
    let dir = Scratch::new("up-warn");
    let mut up = start(
        &dir,
        r#"
[service.worker]
command = ["python3", "-c", """
import time, notify
notify.notify('READY=1')
time.sleep(0.8)
notify.notify('WATCHDOG=1')
time.sleep(300)
"""]
watchdog = "5s"
stall_warn = "400ms"
ready = "notify"
"#,
    );
    let warning = up.wait(WAIT, |e| is(e, "worker", "stall-warning"));
    let Event::StallWarning { bound_ms, .. } = warning.event else {
        unreachable!()
    };
    assert_eq!(bound_ms, 400);
    let incident = up.wait(WAIT, |e| is(e, "worker", "incident"));
    let Event::Incident(record) = &incident.event else {
        unreachable!()
    };
    let text = record.text_path.as_deref().expect("an incident file");
    let report = std::fs::read_to_string(text).expect("read the incident");
    assert!(report.contains("stall-warning"), "{report}");
    assert!(report.contains("sleep"), "{report}");
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    assert_eq!(count(&events, "worker", "stalled"), 0, "{events:#?}");
    assert_eq!(count(&events, "worker", "started"), 1, "never restarted");
    guard.assert_all_gone();
}

#[test]
fn shutdown_of_term_ignoring_services_ends_within_its_bound_and_leaves_nothing() {
    let dir = Scratch::new("up-shutdown");
    let fixture = fixture();
    let pids = dir.file("escaped.pids");
    let mut config = String::from("shutdown_timeout = \"20s\"\n");
    for n in 0..4 {
        config.push_str(&format!(
            "[service.stubborn{n}]\ncommand = [\"{fx}\", \"ignore-term\", \"300\"]\nstop_grace = \"1s\"\n",
            fx = fixture.display()
        ));
    }
    // One escapes with setsid and a double fork, then ignores TERM itself.
    config.push_str(&format!(
        "[service.escaper]\ncommand = [\"sh\", \"-c\", \"'{fx}' double-fork '{pids}' 300 && exec '{fx}' ignore-term 300\"]\nstop_grace = \"1s\"\n",
        fx = fixture.display(),
        pids = pids.display()
    ));
    let mut up = start(&dir, &config);
    for n in 0..4 {
        up.wait(WAIT, |e| is(e, &format!("stubborn{n}"), "started"));
    }
    up.wait(WAIT, |e| is(e, "escaper", "started"));
    let deadline = std::time::Instant::now() + WAIT;
    while read_pids(&pids).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let escaped = read_pids(&pids);
    assert_eq!(escaped.len(), 1, "the grandchild wrote its PID");
    up.guard.track(escaped.clone());
    // Let the fixtures install their handlers.
    std::thread::sleep(Duration::from_millis(300));
    let began = std::time::Instant::now();
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    let took = began.elapsed();
    assert_eq!(code, 0, "{events:#?}");
    assert!(
        took < Duration::from_secs(4),
        "grace 1 s: the shutdown took {took:?}"
    );
    let Some(Event::Down { killed, .. }) = events.last().map(|e| &e.event) else {
        panic!("no down event")
    };
    assert_eq!(killed.len(), 5, "{killed:?}");
    // Before each KILL, why: the fixture ignores TERM.
    for n in 0..4 {
        let name = format!("stubborn{n}");
        let Event::Killing { survivors, .. } = &events[position(&events, &name, "killing")].event
        else {
            unreachable!()
        };
        assert_eq!(survivors.len(), 1, "{survivors:?}");
        assert_eq!(survivors[0].survival.handling, "ignored", "{survivors:?}");
        assert_eq!(survivors[0].survival.signal, "TERM");
    }
    assert!(
        !crate::harness::exists(&escaped[0]),
        "the escaped grandchild is gone"
    );
    guard.assert_all_gone();
}

#[test]
fn services_of_a_killed_hangwatch_die_with_it_or_are_killed_by_the_next() {
    let dir = Scratch::new("up-sigkill");
    let fixture = fixture();
    let pids = dir.file("escaped.pids");
    let mut up = start(
        &dir,
        &format!(
            r#"
[service.plain]
command = ["sleep", "300"]

[service.escaper]
command = ["{fx}", "double-fork", "{pids}", "300", "--stay", "300"]
"#,
            fx = fixture.display(),
            pids = pids.display()
        ),
    );
    let plain = up.wait(WAIT, |e| is(e, "plain", "started"));
    up.wait(WAIT, |e| is(e, "escaper", "started"));
    let deadline = std::time::Instant::now() + WAIT;
    while read_pids(&pids).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let escaped = read_pids(&pids);
    assert_eq!(escaped.len(), 1);
    up.guard.track(escaped.clone());
    let Event::Started { pid, .. } = plain.event else {
        unreachable!()
    };
    let plain_id = ProcessId::of(pid).expect("proc").expect("plain alive");
    // Give the instance record its moment to be written (it is written off the loop).
    let record = dir.file("state/instance.json");
    while !std::fs::read_to_string(&record).is_ok_and(|t| t.contains("escaper"))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The guardian would kill the escapee within a second of hangwatch's death (see
    // `guardian.rs`); killed first, as an OOM killer or an operator might, it leaves the next
    // hangwatch as the last line of defence, which is what this test is about.
    let guardians: Vec<i32> = crate::harness::tagged_alive(&up.hw.env_tag())
        .into_iter()
        .filter(|(_, comm)| comm == "hw-guardian")
        .map(|(pid, _)| pid)
        .collect();
    assert_eq!(guardians.len(), 1, "one guardian per hangwatch");
    let guardian = ProcessId::of(guardians[0])
        .expect("proc")
        .expect("guardian alive");
    hangwatch_process::pidfd::PidFd::open(guardian)
        .expect("pidfd")
        .expect("guardian alive")
        .send(Signal::KILL)
        .expect("kill the guardian");
    let (_, _, first_guard) = up.stop(Signal::KILL);

    // The programs die with hangwatch; the escaped grandchild does not (no death signal
    // reaches it, and its guardian is gone), until the next hangwatch of this state directory
    // finds it.
    let deadline = std::time::Instant::now() + WAIT;
    while crate::harness::exists(&plain_id) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !crate::harness::exists(&plain_id),
        "the program died with hangwatch"
    );
    assert!(
        crate::harness::exists(&escaped[0]),
        "the escapee outlived hangwatch"
    );

    let mut second = Up::resume(&dir);
    second.guard.track(escaped.clone());
    let orphans = second.wait(WAIT, |e| matches!(e.event, Event::Orphans { .. }));
    let Event::Orphans { killed } = &orphans.event else {
        unreachable!()
    };
    assert!(killed.iter().any(|p| p.pid == escaped[0].pid), "{killed:?}");
    second.wait(WAIT, |e| is(e, "plain", "started"));
    let (code, _, guard) = second.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    // The escapee and the first run's programs were orphaned when it died: PID 1 reaps them,
    // or in a container may leave them zombies.
    guard.assert_none_alive();
    first_guard.assert_none_alive();
}

#[test]
fn a_flooding_service_never_blocks_and_its_log_rotates() {
    let dir = Scratch::new("up-flood");
    let up = start(
        &dir,
        r#"
[service.flood]
command = ["python3", "-c", "import sys\nline = 'x' * 99 + '\\n'\nfor _ in range(200000): sys.stdout.write(line)"]
log_max_size = "1MiB"
log_keep = 2
"#,
    );
    // 20 MB of output: the service finishes (exit 0), so the supervisor ends by itself.
    let (code, events, guard) = up.finish();
    assert_eq!(code, 0, "{events:#?}");
    let logs = dir.file("state/logs");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .expect("logs dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["flood.log", "flood.log.1", "flood.log.2"]);
    for name in &names {
        let size = std::fs::metadata(logs.join(name)).expect("stat").len();
        assert!(size <= 1024 * 1024 + 200, "{name}: {size} bytes");
    }
    let last = std::fs::read_to_string(logs.join("flood.log")).expect("read log");
    assert!(
        last.lines()
            .last()
            .is_some_and(|l| l.ends_with(&"x".repeat(99)))
    );
    guard.assert_all_gone();
}

#[test]
fn a_bad_config_is_refused_with_its_position_and_starts_nothing() {
    let dir = Scratch::new("up-bad");
    std::fs::write(
        dir.file("hangwatch.toml"),
        "[service.web]\ncommand = [\"sleep\", \"300\"]\nrestrat = \"always\"\n",
    )
    .expect("write");
    let finished = crate::harness::run([
        "up".as_ref(),
        "-f".as_ref(),
        dir.file("hangwatch.toml").as_os_str(),
    ]);
    assert_eq!(finished.code(), 125);
    assert!(
        finished.stderr.contains("hangwatch.toml:3:1"),
        "{}",
        finished.stderr
    );
    assert!(finished.stderr.contains("restart"), "{}", finished.stderr);
    assert!(!dir.file(".hangwatch").exists(), "nothing was created");
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn probes_gate_readiness_and_a_failing_liveness_probe_restarts_the_service() {
    let dir = Scratch::new("up-probes");
    let port = free_port();
    let flag = dir.file("ready.flag");
    let mut up = start(
        &dir,
        &format!(
            r#"
[service.web]
command = ["python3", "-c", """
import http.server, os, time
time.sleep(0.3)
healthy = [3 if os.environ['HANGWATCH_RESTARTS'] == '0' else 10**9]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        healthy[0] -= 1
        self.send_response(200 if healthy[0] >= 0 else 503)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(('127.0.0.1', {port}), H).serve_forever()
"""]
ready = {{ tcp = "127.0.0.1:{port}", every = "50ms", within = "10s" }}
liveness = {{ http = "http://127.0.0.1:{port}/healthz", every = "100ms", timeout = "1s", failures = 2 }}
backoff = {{ initial = "0s" }}
diagnose = false

[service.flagged]
command = ["sh", "-c", "sleep 0.3; touch '{flag}'; exec sleep 300"]
ready = {{ exec = "test -f '{flag}'", every = "50ms" }}

[service.client]
command = ["sleep", "300"]
depends_on = ["web", "flagged"]
"#,
            flag = flag.display()
        ),
    );
    up.wait(WAIT, |e| is(e, "client", "started"));
    let stalled = up.wait(WAIT, |e| is(e, "web", "stalled"));
    let Event::Stalled { source, detail, .. } = &stalled.event else {
        unreachable!()
    };
    assert_eq!(source.as_str(), "probe");
    assert!(
        detail.as_deref().is_some_and(|d| d.contains("503")),
        "{detail:?}"
    );
    up.seen_or_wait(WAIT, |e| {
        is(e, "web", "started") && matches!(e.event, Event::Started { restarts: 1, .. })
    });
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    let ready_web = position(&events, "web", "ready");
    let ready_flagged = position(&events, "flagged", "ready");
    let started_client = position(&events, "client", "started");
    assert!(ready_web < started_client && ready_flagged < started_client);
    let Event::Ready { by, after_ms } = &events[ready_flagged].event else {
        unreachable!()
    };
    assert_eq!(by, "probe");
    assert!(
        *after_ms >= 250.0,
        "the flag appears after 0.3 s: {after_ms}"
    );
    guard.assert_all_gone();
}

#[test]
fn a_dependency_restart_restarts_the_services_that_ask_for_it() {
    let dir = Scratch::new("up-withdep");
    let mut up = start(
        &dir,
        r#"
[service.db]
command = ["sh", "-c", "sleep 0.5; [ \"$HANGWATCH_RESTARTS\" = 0 ] && exit 1; exec sleep 300"]
backoff = { initial = "0s" }

[service.follower]
command = ["sleep", "300"]
depends_on = ["db"]
restart_with_dependency = true

[service.loner]
command = ["sleep", "300"]
depends_on = ["db"]
"#,
    );
    // The follower's second start: after db's restart and readiness.
    up.wait(WAIT, |e| is(e, "db", "restarting"));
    up.wait(WAIT, |e| is(e, "follower", "started"));
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(count(&events, "db", "started"), 2);
    assert_eq!(count(&events, "follower", "started"), 2, "{events:#?}");
    assert_eq!(count(&events, "loner", "started"), 1, "{events:#?}");
    let stopping = events
        .iter()
        .find(|e| is(e, "follower", "stopping"))
        .expect("follower stopped");
    assert!(
        matches!(&stopping.event, Event::Stopping { cause, .. } if *cause == StopCause::Dependency),
        "{stopping:?}"
    );
    guard.assert_all_gone();
}

#[test]
fn a_service_over_its_memory_limit_is_restarted() {
    let dir = Scratch::new("up-memory");
    let mut up = start(
        &dir,
        r#"
[service.hog]
command = ["python3", "-c", """
import os, time
if os.environ['HANGWATCH_RESTARTS'] == '0':
    hog = bytearray(200 * 1024 * 1024)
    for i in range(0, len(hog), 4096):
        hog[i] = 1
time.sleep(300)
"""]
memory_limit = "100MiB"
backoff = { initial = "0s" }
diagnose = false
"#,
    );
    let over = up.wait(WAIT, |e| is(e, "hog", "over-memory"));
    let Event::OverMemory {
        rss_bytes,
        limit_bytes,
    } = over.event
    else {
        unreachable!()
    };
    assert_eq!(limit_bytes, 100 * 1024 * 1024);
    assert!(rss_bytes > limit_bytes);
    up.seen_or_wait(WAIT, |e| {
        is(e, "hog", "started") && matches!(e.event, Event::Started { restarts: 1, .. })
    });
    let (code, _, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    guard.assert_all_gone();
}

/// Makes `dir` and the test's `notify.py` readable by every user, for a service with a `user`;
/// `false` (with the reason printed) if some directory above it cannot be passed through.
fn open_to_all_users(dir: &Scratch) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod")
    };
    set(&dir.path, 0o755);
    std::fs::write(dir.file("notify.py"), NOTIFY_PY).expect("write notify.py");
    set(&dir.file("notify.py"), 0o644);
    for ancestor in dir.path.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor).map_or(0, |m| m.permissions().mode());
        if mode & 0o001 == 0 {
            eprintln!(
                "skipped: other users cannot pass through {} (mode {:o})",
                ancestor.display(),
                mode & 0o777
            );
            return false;
        }
    }
    true
}

/// `Uid:`, `Gid:` and `Groups:` of `/proc/PID/status`, each as its numbers.
fn ids_of(pid: i32) -> [Vec<u32>; 3] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    ["Uid:", "Gid:", "Groups:"].map(|key| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_default()
            .split_whitespace()
            .map(|n| n.parse().expect("a number"))
            .collect()
    })
}

#[test]
fn a_service_runs_as_its_user_and_reaches_the_notify_socket() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: running a service as another user needs root");
        return;
    }
    let nobody = hangwatch_process::RunAs::lookup("nobody").expect("user nobody");
    let dir = Scratch::new("up-user");
    if !open_to_all_users(&dir) {
        return;
    }
    // READY=1, then WATCHDOG=1 every 0.1 s for 2 s and a clean exit: a heartbeat lost on the
    // way would make a stall after 1 s.
    let mut up = start(
        &dir,
        r#"
[service.guest]
command = ["python3", "-c", """
import time, notify
notify.notify('READY=1')
for _ in range(20):
    notify.notify('WATCHDOG=1')
    time.sleep(0.1)
"""]
user = "nobody"
ready = "notify"
watchdog = "1s"
restart = "never"

# Ready once a probe that checks who it runs as succeeds.
[service.probed]
command = ["sleep", "300"]
user = "nobody"
ready = { exec = ["sh", "-c", "test \"$(id -un)\" = nobody"], within = "5s" }
"#,
    );
    let started = up.wait(WAIT, |e| is(e, "guest", "started"));
    let Event::Started { pid, .. } = started.event else {
        unreachable!()
    };
    let ready = up.wait(WAIT, |e| {
        is(e, "guest", "ready") || is(e, "guest", "exited")
    });
    assert!(
        matches!(&ready.event, Event::Ready { by, .. } if by == "notify"),
        "READY=1 from a service of another user: {:#?}",
        up.events
    );
    let [uid, gid, groups] = ids_of(pid);
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    let environ = String::from_utf8_lossy(&environ).replace('\0', "\n");
    up.wait(WAIT, |e| is(e, "guest", "exited"));
    let settled = |e: &EventRecord| is(e, "probed", "ready") || is(e, "probed", "not-ready");
    let probed = match up.events.iter().find(|e| settled(e)) {
        Some(seen) => seen.clone(),
        None => up.wait(WAIT, settled),
    };
    assert!(
        matches!(&probed.event, Event::Ready { by, .. } if by == "probe"),
        "the exec probe runs as the service's user: {probed:?}"
    );
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0, "{events:#?}");
    assert_eq!(uid, [nobody.uid; 4], "real, effective, saved and fs uid");
    assert_eq!(gid, [nobody.gid; 4], "real, effective, saved and fs gid");
    let mut want = nobody.groups.clone();
    want.sort_unstable();
    let mut groups = groups;
    groups.sort_unstable();
    assert_eq!(groups, want, "the user's supplementary groups");
    for var in ["USER=nobody", "LOGNAME=nobody"] {
        assert!(environ.lines().any(|l| l == var), "{var}: {environ}");
    }
    let home = format!("HOME={}", nobody.home.display());
    assert!(environ.lines().any(|l| l == home), "{home}: {environ}");
    assert_eq!(count(&events, "guest", "stalled"), 0, "{events:#?}");
    let exited = &events[position(&events, "guest", "exited")];
    assert!(
        matches!(
            &exited.event,
            Event::Exited {
                status: hangwatch_protocol::report::ProgramStatus::Exited { code: 0 },
                stopped: false,
                ..
            }
        ),
        "{exited:?}"
    );
    guard.assert_all_gone();
}

#[test]
fn a_service_with_an_unknown_user_fails_to_start_naming_it() {
    let dir = Scratch::new("up-no-user");
    let mut up = start(
        &dir,
        r#"
[service.ghost]
command = ["sleep", "300"]
user = "hangwatch-no-such-user"
restart = "never"
"#,
    );
    let failed = up.wait(WAIT, |e| is(e, "ghost", "start-failed"));
    let Event::StartFailed { error } = &failed.event else {
        unreachable!()
    };
    assert!(error.contains("`hangwatch-no-such-user`"), "{error}");
    // Its only service is down for good: hangwatch ends by itself.
    let (_, events, guard) = up.finish();
    assert_eq!(count(&events, "ghost", "started"), 0, "{events:#?}");
    guard.assert_all_gone();
}

/// The soft and hard "Max open files" of `/proc/PID/limits`.
fn open_files_of(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open files line");
    let mut numbers = line["Max open files".len()..]
        .split_whitespace()
        .map(|n| n.parse::<u64>().expect("a number"));
    (numbers.next().expect("soft"), numbers.next().expect("hard"))
}

#[test]
fn hangwatch_raises_its_limit_of_open_files_and_its_services_keep_the_original() {
    // hangwatch inherits this process's limit: a soft one below the hard one, as on most
    // machines (1024), so that the raise shows.
    let before = OpenFilesLimit::current().expect("getrlimit");
    let low = (before.hard / 2).min(1024);
    OpenFilesLimit {
        soft: low,
        hard: before.hard,
    }
    .apply()
    .expect("lower the soft limit");
    let dir = Scratch::new("up-nofile");
    let mut up = start(
        &dir,
        r#"
[service.sleeper]
command = ["sleep", "60"]
"#,
    );
    before.apply().expect("restore the limit");
    let started = up.wait(WAIT, |e| is(e, "sleeper", "started"));
    let Event::Started { pid, .. } = started.event else {
        unreachable!()
    };
    assert_eq!(
        open_files_of(pid),
        (low, before.hard),
        "the service's limit"
    );
    assert_eq!(
        open_files_of(up.hw.id().pid),
        (before.hard, before.hard),
        "hangwatch's limit"
    );
    let (code, _events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    guard.assert_all_gone();
}

/// What leak events name, by service (`None`: the final audit's).
fn leaked_objects(events: &[EventRecord], service: Option<&str>) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.service.as_deref() == service)
        .filter_map(|e| match &e.event {
            Event::Leak { objects, .. } => Some(objects.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Removes, on drop, every object the services of a test may have left: the POSIX shared
/// memory and SysV segments they printed in their logs (`ready <pid> <name or shmid>`).
struct LeftBehind {
    logs: std::path::PathBuf,
}

impl LeftBehind {
    /// The last word of each `ready` line `service` printed: what it made.
    fn made_by(&self, service: &str) -> Vec<String> {
        std::fs::read_to_string(self.logs.join(format!("{service}.log")))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("| ready "))
            .filter_map(|line| line.split_whitespace().last().map(str::to_owned))
            .collect()
    }
}

impl Drop for LeftBehind {
    fn drop(&mut self) {
        let lines = |service: &str| self.made_by(service);
        for name in lines("shm") {
            if name.starts_with("psm_") && !name.contains('/') {
                let _ = std::fs::remove_file(Path::new("/dev/shm").join(name));
            }
        }
        for id in lines("sysv") {
            if let Ok(id) = id.parse::<i32>() {
                let _ = hangwatch_process::ipc::remove_sysv_shm(id);
            }
        }
    }
}

#[test]
fn what_a_service_leaves_at_each_end_is_reported_with_it_once() {
    let dir = Scratch::new("up-leaks");
    let left = LeftBehind {
        logs: dir.path.join("state/logs"),
    };
    let program = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/shm_leak.py");
    // `shm` makes POSIX shared memory and never unlinks it, `sysv` abandons a SysV segment, each
    // once per start; `clean` makes nothing. All three restart until hangwatch is stopped.
    let mut up = start(
        &dir,
        &format!(
            r#"
[service.shm]
command = ["python3", "{program}", "0.2"]
restart = "always"
backoff = {{ initial = "0s" }}
max_restarts = {{ count = 1000, within = "60s" }}

[service.sysv]
command = ["{fixture}", "sysv-shm", "4096", "0.1"]
restart = "always"
backoff = {{ initial = "0s" }}
max_restarts = {{ count = 1000, within = "60s" }}

[service.clean]
command = ["sh", "-c", "sleep 0.1"]
restart = "always"
backoff = {{ initial = "0s" }}
max_restarts = {{ count = 1000, within = "60s" }}
"#,
            program = program.display(),
            fixture = fixture().display(),
        ),
    );
    // Leftover processes are reported in leak events too; these tests are about objects.
    let left_objects = |e: &EventRecord, service: &str| {
        is(e, service, "leak")
            && matches!(&e.event, Event::Leak { objects, .. } if !objects.is_empty())
    };
    for _ in 0..2 {
        for service in ["shm", "sysv"] {
            up.wait(WAIT, |e| left_objects(e, service));
        }
    }
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0, "{events:#?}");
    let down = events
        .iter()
        .position(|e| matches!(e.event, Event::Down { .. }))
        .expect("a down event");

    let made: Vec<(&str, Vec<String>)> = vec![
        (
            "shm",
            left.made_by("shm")
                .iter()
                .map(|name| format!("/dev/shm/{name}"))
                .collect(),
        ),
        (
            "sysv",
            left.made_by("sysv")
                .iter()
                .map(|id| format!("shmid {id} "))
                .collect(),
        ),
    ];
    for (service, made) in &made {
        let service = *service;
        // One event per end that left something, each naming that end's object only.
        let ends: Vec<&EventRecord> = events.iter().filter(|e| left_objects(e, service)).collect();
        assert!(ends.len() >= 2, "{service}: {events:#?}");
        for end in &ends {
            let Event::Leak { objects, .. } = &end.event else {
                unreachable!()
            };
            assert_eq!(objects.len(), 1, "{end:?}");
            assert!(
                made.iter().any(|m| objects[0].starts_with(m.as_str())),
                "{end:?}: not one of {made:?}"
            );
        }
        assert!(
            events
                .iter()
                .enumerate()
                .all(|(n, e)| !is(e, service, "leak") || n < down),
            "a leak reported after down: {events:#?}"
        );
        // Each object once: not again at a later end, nor in the final audit.
        let mut named = leaked_objects(&events, Some(service));
        let total = named.len();
        named.sort();
        named.dedup();
        assert_eq!(named.len(), total, "{service}: reported twice: {events:#?}");
        let last = leaked_objects(&events, None);
        assert!(
            named.iter().all(|name| !last.contains(name)),
            "{service}'s objects again in the final audit: {last:?}"
        );
        assert!(
            count(&events, service, "started") >= ends.len(),
            "{events:#?}"
        );
    }
    assert!(count(&events, "clean", "started") >= 2, "{events:#?}");
    assert_eq!(count(&events, "clean", "leak"), 0, "{events:#?}");
    guard.assert_all_gone();
}

#[test]
fn temporary_directories_a_stopped_service_left_are_in_its_leak_event() {
    let dir = Scratch::new("up-temp");
    let program = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../hangwatch-leaks/tests/programs/temp_leak.py");
    // A manager and a pool on a fork server, each listening in a `pymp-*` directory; silent
    // after its ready line, so that the stall detection stops it (the stop's look sees the
    // listeners) and SIGTERM leaves the directories behind. The bound leaves Python several
    // seconds to start them all (it prints nothing before).
    let mut up = start(
        &dir,
        &format!(
            r#"
[service.pool]
command = ["python3", "{program}", "forkserver"]
stall_on_silence = "5s"
restart = "never"
diagnose = false
"#,
            program = program.display(),
        ),
    );
    let leak = up.wait(WAIT + Duration::from_secs(5), |e| {
        is(e, "pool", "leak")
            && matches!(&e.event, Event::Leak { objects, .. } if !objects.is_empty())
    });
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    let log = std::fs::read_to_string(dir.path.join("state/logs/pool.log")).unwrap_or_default();
    let made: Vec<String> = log
        .lines()
        .find_map(|line| line.split_once("| ready "))
        .map(|(_, rest)| rest.split_whitespace().skip(1).map(str::to_owned).collect())
        .unwrap_or_default();
    for path in &made {
        if Path::new(path)
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("pymp-"))
        {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    // A stalled service that is not restarted makes the supervisor's exit code 1.
    assert_eq!(code, 1, "{events:#?}");
    guard.assert_all_gone();
    assert_eq!(made.len(), 2, "the ready line: {log}");
    let Event::Leak { objects, .. } = &leak.event else {
        unreachable!()
    };
    // Besides the two directories, multiprocessing's semaphores may be listed: its resource
    // tracker unlinks them at the pool's end, unless the stop reached the tracker first (a
    // loaded machine). They are real leftovers; removed here.
    let (semaphores, mut objects): (Vec<String>, Vec<String>) = objects
        .iter()
        .cloned()
        .partition(|o| o.starts_with("/dev/shm/sem.mp-"));
    for semaphore in &semaphores {
        let _ = std::fs::remove_file(semaphore);
    }
    objects.sort();
    assert_eq!(objects, made, "{leak:?}");
    let last = leaked_objects(&events, None);
    assert!(
        made.iter().all(|name| !last.contains(name)),
        "again in the final audit: {last:?}"
    );
}

/// A service that says READY=1 and one heartbeat, then sleeps: its watchdog stalls at 1 s.
const SILENT_AFTER_READY: &str = r#"
[service.worker]
command = ["python3", "-c", """
import time, notify
notify.notify('READY=1')
time.sleep(300)
"""]
watchdog = "1s"
ready = "notify"
restart = "never"
"#;

#[test]
fn a_stall_deferred_for_pressure_still_stops_by_its_bound() {
    if std::fs::read_to_string("/proc/pressure/cpu").is_err() {
        eprintln!("skipped: this kernel reports no pressure stall information");
        return;
    }
    let dir = Scratch::new("up-defer");
    // A threshold of 0 % takes any reading as pressure: real pressure cannot be forced.
    let config = format!(
        "{SILENT_AFTER_READY}stall_defer_under_pressure = {{ up_to = \"3s\", above = \"0%\" }}\n"
    );
    let mut up = start(&dir, &config);
    let deferred = up.wait(WAIT, |e| is(e, "worker", "stall-deferred"));
    let Event::StallDeferred {
        up_to_ms,
        above_pct,
        cpu_pct,
        ..
    } = &deferred.event
    else {
        unreachable!()
    };
    assert_eq!((*up_to_ms, *above_pct), (3000, 0.0));
    assert!(cpu_pct.is_some(), "{deferred:?}");
    let waited = std::time::Instant::now();
    let stalled = up.wait(WAIT, |e| is(e, "worker", "stalled"));
    let waited = waited.elapsed();
    assert!(
        waited > Duration::from_secs(2) && waited < Duration::from_secs(8),
        "the stop came {waited:?} after the deferral, not by its 3 s bound"
    );
    let Event::Stalled { detail, .. } = &stalled.event else {
        unreachable!()
    };
    let detail = detail.as_deref().unwrap_or_default();
    assert!(detail.contains("deferred"), "{detail}");
    let incident = up.wait(WAIT, |e| is(e, "worker", "incident"));
    let Event::Incident(record) = &incident.event else {
        unreachable!()
    };
    assert!(
        record.verdict.iter().any(|v| v.contains("deferred")),
        "{record:?}"
    );
    let text = record.text_path.as_deref().expect("an incident file");
    let report = std::fs::read_to_string(text).expect("read the incident");
    assert!(report.contains("Deferred for host pressure"), "{report}");
    // Stopped for a stall and not restarted: the supervisor ends by itself, with 1.
    let (code, events, guard) = up.finish();
    assert_eq!(code, 1);
    assert_eq!(count(&events, "worker", "stall-deferred"), 1, "said once");
    assert_eq!(count(&events, "worker", "stall-cleared"), 0, "{events:#?}");
    guard.assert_all_gone();
}

#[test]
fn a_heartbeat_during_a_deferral_clears_the_stall() {
    if std::fs::read_to_string("/proc/pressure/cpu").is_err() {
        eprintln!("skipped: this kernel reports no pressure stall information");
        return;
    }
    let dir = Scratch::new("up-defer-beat");
    let mut up = start(
        &dir,
        r#"
[service.worker]
command = ["python3", "-c", """
import time, notify
notify.notify('READY=1')
time.sleep(1.6)
notify.notify('WATCHDOG=1')
time.sleep(300)
"""]
watchdog = "1s"
ready = "notify"
restart = "never"
stall_defer_under_pressure = { up_to = "20s", above = "0%" }
"#,
    );
    up.wait(WAIT, |e| is(e, "worker", "stall-deferred"));
    let cleared = up.wait(WAIT, |e| is(e, "worker", "stall-cleared"));
    let Event::StallCleared { deferred_ms, .. } = cleared.event else {
        unreachable!()
    };
    assert!(
        deferred_ms > 100.0 && deferred_ms < 5000.0,
        "cleared {deferred_ms} ms after the deadline"
    );
    // Then silent again: deferred again, the bound far away; nothing stopped it meanwhile.
    up.wait(WAIT, |e| is(e, "worker", "stall-deferred"));
    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    assert_eq!(count(&events, "worker", "stalled"), 0, "{events:#?}");
    assert_eq!(count(&events, "worker", "started"), 1, "never restarted");
    guard.assert_all_gone();
}

#[test]
fn without_stall_defer_a_stall_under_pressure_stops_at_once() {
    let dir = Scratch::new("up-no-defer");
    let mut up = start(&dir, SILENT_AFTER_READY);
    let ready = std::time::Instant::now();
    up.wait(WAIT, |e| is(e, "worker", "ready"));
    let stalled = up.wait(WAIT, |e| is(e, "worker", "stalled"));
    assert!(
        ready.elapsed() < Duration::from_secs(3),
        "stalled {:?} after ready with a 1 s watchdog",
        ready.elapsed()
    );
    let Event::Stalled { detail, .. } = &stalled.event else {
        unreachable!()
    };
    assert!(
        !detail.as_deref().unwrap_or_default().contains("deferred"),
        "{detail:?}"
    );
    // Stopped for a stall and not restarted: the supervisor ends by itself, with 1.
    let (code, events, guard) = up.finish();
    assert_eq!(code, 1);
    assert_eq!(count(&events, "worker", "stall-deferred"), 0, "{events:#?}");
    assert_eq!(count(&events, "hangwatch", "degraded"), 0, "{events:#?}");
    guard.assert_all_gone();
}

#[test]
fn a_stall_incident_in_up_keeps_what_the_service_last_printed() {
    let dir = Scratch::new("up-last-output");
    let mut up = start(
        &dir,
        r#"
[service.worker]
command = ["python3", "-c", """
import sys, threading, notify
print('consuming from orders', flush=True)
def worker():
    raise RuntimeError('queue connection lost')
t = threading.Thread(target=worker, name='consumer')
t.start()
t.join()
sys.stderr.flush()
notify.notify('READY=1')
threading.Event().wait()
"""]
watchdog = "1s"
ready = "notify"
restart = "never"
"#,
    );
    let incident = up.wait(WAIT, |e| is(e, "worker", "incident"));
    let Event::Incident(record) = &incident.event else {
        unreachable!()
    };
    let text = std::fs::read_to_string(record.text_path.as_deref().expect("an incident file"))
        .expect("read the incident");
    let last = text
        .split("Last output (oldest first):")
        .nth(1)
        .unwrap_or_else(|| panic!("no last output in the incident:\n{text}"));
    assert!(last.contains("consuming from orders"), "{last}");
    assert!(
        last.contains("RuntimeError: queue connection lost"),
        "{last}"
    );
    let (_, _, guard) = up.finish();
    guard.assert_all_gone();
}

/// A service that floods its output as fast as the pipe takes it (`yes`: 64 KiB chunks of
/// two-byte lines) must not starve the loop: a healthy service's heartbeats are still heard and
/// `hangwatch status` is still answered.
#[test]
fn a_flood_at_pipe_speed_starves_nothing() {
    let dir = Scratch::new("up-flood");
    let mut up = start(
        &dir,
        r#"
[service.flood]
command = ["yes"]
log_max_size = "1MiB"
log_keep = 1

[service.beat]
command = ["python3", "-c", """
import time, notify
notify.notify('READY=1')
while True:
    notify.notify('WATCHDOG=1')
    time.sleep(0.1)
"""]
ready = "notify"
watchdog = "2s"
"#,
    );
    up.wait(Duration::from_secs(20), |e| is(e, "beat", "ready"));
    // Several watchdog periods under the flood.
    let began = std::time::Instant::now();
    while began.elapsed() < Duration::from_secs(6) {
        let asked = std::time::Instant::now();
        let status = std::process::Command::new(crate::harness::hangwatch())
            .args(["status", "-f"])
            .arg(dir.file("hangwatch.toml"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run hangwatch status");
        assert!(status.status.success(), "{status:?}");
        // Starved, a request waited behind every queued chunk of output: 5 s and more.
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "status took {:?}",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, events, guard) = up.stop(Signal::TERMINATE);
    assert!(
        !events.iter().any(|e| is(e, "beat", "stalled")),
        "a healthy service stalled under the flood"
    );
    guard.assert_all_gone();
}
