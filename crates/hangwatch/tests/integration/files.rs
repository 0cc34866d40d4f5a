//! `hangwatch logs`, `events` and `incidents` against the state directory of a real
//! `hangwatch up`: while it runs (following), and after it ended (a post-mortem).
//!
//! Every wait is bounded; the supervisor's services are tracked by PID in a [`Guard`], and
//! each follower process is killed by its handle when the test ends.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hangwatch_process::Signal;
use hangwatch_protocol::event::{Event, EventRecord};

use crate::harness::{Finished, Guard, Scratch, Up, hangwatch, run};

const WAIT: Duration = Duration::from_secs(15);

/// A supervisor running on a config in a scratch directory (state in `DIR/state`).
struct Daemon {
    up: Up,
    config: PathBuf,
}

impl Daemon {
    fn start(dir: &Scratch, config: &str) -> Daemon {
        Daemon {
            up: Up::start(dir, config),
            config: dir.file("hangwatch.toml"),
        }
    }

    /// Waits for an event matching `pred` on the supervisor's stdout; tracks started programs.
    fn wait(&mut self, pred: impl Fn(&EventRecord) -> bool) -> EventRecord {
        self.up.wait(WAIT, pred)
    }

    /// Stops the supervisor (TERM) and waits for it; returns the guard of what it ran.
    fn stop(self) -> Guard {
        let (code, _, guard) = self.up.stop(Signal::TERMINATE);
        assert_eq!(code, 0);
        guard
    }

    /// Runs `hangwatch VERB ARGS… --file CONFIG` to its end.
    fn client(&self, args: &[&str]) -> Finished {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        all.extend(["--file".as_ref(), self.config.as_os_str()]);
        run(all)
    }

    fn state(&self) -> PathBuf {
        self.config.with_file_name("state")
    }
}

fn is(record: &EventRecord, service: &str, started: bool) -> bool {
    record.service.as_deref() == Some(service)
        && (!started || matches!(record.event, Event::Started { .. }))
}

/// Waits (bounded) until `path` contains `text`. A test may poll; the code under test does not.
fn wait_for_text(path: &Path, text: &str) {
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(path).is_ok_and(|t| t.contains(text)) {
        assert!(
            Instant::now() < deadline,
            "{} never contained {text:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `hangwatch … -f` follower with its stdout read line by line on a thread.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(daemon: &Daemon, args: &[&str]) -> Follower {
        let mut child = Command::new(hangwatch())
            .args(args)
            .arg("--file")
            .arg(&daemon.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a follower");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// The next line, within `WAIT`.
    fn next(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("the follower printed nothing within {WAIT:?}"))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) for `child` to exit; its exit code.
fn exit_code(child: &mut Child) -> i32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().expect("an exit code, not a signal");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the client did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn logs_and_events_read_the_state_directory_during_and_after_the_run() {
    let dir = Scratch::new("files-read");
    let mut daemon = Daemon::start(
        &dir,
        r#"
[service.a]
command = ["sh", "-c", "for i in $(seq 1 20); do echo a $i; sleep 0.01; done; exec sleep 300"]

[service.b]
command = ["sh", "-c", "for i in $(seq 1 20); do echo b $i >&2; sleep 0.01; done; exec sleep 300"]
"#,
    );
    daemon.wait(|e| is(e, "a", true));
    daemon.wait(|e| is(e, "b", true));
    let logs = daemon.state().join("logs");
    wait_for_text(&logs.join("a.log"), "a 20\n");
    wait_for_text(&logs.join("b.log"), "b 20\n");

    // Every service, interleaved by time, the name in front.
    let all = daemon.client(&["logs", "-n", "3", "--color", "never"]);
    assert_eq!(all.code(), 0, "{}", all.stderr);
    let lines: Vec<&str> = all.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", all.stdout);
    for name in ["a", "b"] {
        let own: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{name} ")))
            .collect();
        assert_eq!(own.len(), 3, "{}", all.stdout);
        assert!(own[2].ends_with(&format!("| {name} 20")), "{}", all.stdout);
    }
    let stamps: Vec<&str> = lines.iter().map(|l| &l[2..26]).collect();
    assert!(stamps.is_sorted(), "{stamps:?}");
    assert!(
        lines.iter().any(|l| l.contains(" err | b 20")),
        "{}",
        all.stdout
    );

    // One service: the log's lines as they are.
    let one = daemon.client(&["logs", "a", "-n", "5"]);
    assert_eq!(one.code(), 0, "{}", one.stderr);
    let lines: Vec<&str> = one.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", one.stdout);
    assert!(lines[0].ends_with(" out | a 16") && lines[4].ends_with(" out | a 20"));
    assert!(lines[0].starts_with("20"), "{}", lines[0]);

    // An unknown name says which exist.
    let unknown = daemon.client(&["logs", "nope"]);
    assert_eq!(unknown.code(), 125);
    assert!(
        unknown.stderr.contains("nope") && unknown.stderr.contains("a, b"),
        "{}",
        unknown.stderr
    );

    // The event log as JSON records, all of them, and since a time.
    let events = daemon.client(&["events", "--json"]);
    assert_eq!(events.code(), 0, "{}", events.stderr);
    let records: Vec<EventRecord> = events
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {l}")))
        .collect();
    assert!(matches!(records[0].event, Event::Up { .. }), "{records:#?}");
    let started_b = records
        .iter()
        .find(|r| is(r, "b", true))
        .expect("b started");
    let since = daemon.client(&["events", "--json", "--since", &started_b.at]);
    let later: Vec<EventRecord> = since
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    assert!(later.iter().all(|r| r.at >= started_b.at), "{later:#?}");
    assert!(later.contains(started_b) && !later.contains(&records[0]));
    let hour = daemon.client(&["events", "--json", "--since", "1h"]);
    assert_eq!(hour.stdout.lines().count(), records.len());
    let future = daemon.client(&["events", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(future.code(), 0);
    assert!(future.stdout.is_empty(), "{}", future.stdout);
    let human = daemon.client(&["events", "--color", "never"]);
    assert!(
        human.stdout.contains("Z  a started (pid "),
        "{}",
        human.stdout
    );

    // After the supervisor ended, the same records are there, its shutdown included.
    let guard = daemon.stop();
    let after = run([
        "events".as_ref(),
        "-n".as_ref(),
        "1".as_ref(),
        "--json".as_ref(),
        "--file".as_ref(),
        dir.file("hangwatch.toml").as_os_str(),
    ]);
    let last: EventRecord = serde_json::from_str(after.stdout.trim()).expect("a record");
    assert!(matches!(last.event, Event::Down { .. }), "{last:?}");
    // A config gone: the state directory beside it is still read, with a note.
    std::fs::remove_file(dir.file("hangwatch.toml")).expect("remove the config");
    let orphan = run([
        "logs".as_ref(),
        "b".as_ref(),
        "-n".as_ref(),
        "1".as_ref(),
        "--state".as_ref(),
        dir.file("state").as_os_str(),
        "--file".as_ref(),
        dir.file("hangwatch.toml").as_os_str(),
    ]);
    assert_eq!(orphan.code(), 0, "{}", orphan.stderr);
    assert!(
        orphan.stdout.trim_end().ends_with("err | b 20"),
        "{}",
        orphan.stdout
    );
    guard.assert_all_gone();
}

#[test]
fn incidents_are_listed_and_shown_after_a_stall() {
    let dir = Scratch::new("files-incidents");
    std::fs::write(
        dir.file("notify.py"),
        "import os, socket\n\
         def notify(message):\n\
         \x20   with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:\n\
         \x20       s.sendto(message.encode(), os.environ['NOTIFY_SOCKET'])\n",
    )
    .expect("write notify.py");
    let mut daemon = Daemon::start(
        &dir,
        r#"
[service.worker]
command = ["python3", "-c", """
import os, threading, time, notify
notify.notify('READY=1')
notify.notify('WATCHDOG=1')
if os.environ['HANGWATCH_RESTARTS'] == '0':
    lock = threading.Lock(); lock.acquire(); lock.acquire()
time.sleep(300)
"""]
watchdog = "500ms"
ready = "notify"
backoff = { initial = "0s" }
"#,
    );
    daemon.wait(|e| is(e, "worker", false) && matches!(e.event, Event::Incident(_)));

    let json = daemon.client(&["incidents", "--json"]);
    let incidents: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let incidents = incidents.as_array().expect("an array");
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0]["service"], "worker");
    assert_eq!(incidents[0]["cause"], "stalled");
    assert_eq!(incidents[0]["source"], "notify");
    let id = incidents[0]["id"].as_str().expect("an id");
    let at = incidents[0]["at"].as_str().expect("a time");

    let list = daemon.client(&["incidents"]);
    assert_eq!(list.code(), 0, "{}", list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", list.stdout);
    assert!(lines[0].starts_with("ID ") && lines[0].contains("VERDICT"));
    // Aligned columns: each value starts under its heading.
    for (heading, value) in [
        ("ID", id),
        ("TIME", at),
        ("SERVICE", "worker"),
        ("CAUSE", "stalled (notify)"),
    ] {
        let column = lines[0].find(heading).expect("a heading");
        assert!(
            lines[1][column..].starts_with(value),
            "{heading}:\n{}",
            list.stdout
        );
    }

    let show = daemon.client(&["incidents", "show", &id[..12]]);
    assert_eq!(show.code(), 0, "{}", show.stderr);
    assert!(
        show.stdout.starts_with("Incident: worker-stalled"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("acquire"), "{}", show.stdout);
    let newest = daemon.client(&["incidents", "show"]);
    assert_eq!(newest.stdout, show.stdout);
    let diagnosis = daemon.client(&["incidents", "show", id, "--json"]);
    let diagnosis: serde_json::Value = serde_json::from_str(&diagnosis.stdout).expect("JSON");
    assert!(diagnosis["verdict"].is_array());
    let missing = daemon.client(&["incidents", "show", "nope"]);
    assert_eq!(missing.code(), 125);
    assert!(
        missing.stderr.contains("no incident `nope`"),
        "{}",
        missing.stderr
    );

    daemon.stop().assert_all_gone();
}

#[test]
fn logs_follow_new_lines_across_rotations() {
    let dir = Scratch::new("files-follow-logs");
    let go = dir.file("go");
    let mut daemon = Daemon::start(
        &dir,
        &format!(
            r#"
[service.r]
command = ["sh", "-c", "echo waiting; while [ ! -e {go} ]; do sleep 0.02; done; for i in $(seq 1 300); do echo line $i; done; exec sleep 300"]
log_max_size = "1KiB"
log_keep = 50
"#,
            go = go.display()
        ),
    );
    daemon.wait(|e| is(e, "r", true));
    let logs = daemon.state().join("logs");
    wait_for_text(&logs.join("r.log"), "waiting\n");
    // The follower watches before it reads the backlog: its first line proves it watches.
    let follower = Follower::start(&daemon, &["logs", "r", "-f", "-n", "1"]);
    assert!(follower.next().ends_with(" out | waiting"));
    std::fs::write(&go, "").expect("go");
    // 300 lines of ~40 bytes in a burst: about a dozen rotations of a 1 KiB log, most of them
    // before the follower wakes up; every line is seen once, in order.
    for i in 1..=300 {
        let line = follower.next();
        assert!(
            line.ends_with(&format!(" out | line {i}")),
            "line {i}: {line}"
        );
    }
    assert!(logs.join("r.log.2").exists());
    drop(follower);
    daemon.stop().assert_all_gone();
}

#[test]
fn two_event_followers_see_the_same_new_records() {
    let dir = Scratch::new("files-follow-events");
    let mut daemon = Daemon::start(
        &dir,
        r#"
[service.tick]
command = ["sh", "-c", "echo tick; sleep 0.2"]
restart = "always"
backoff = { initial = "100ms", max = "100ms" }
max_restarts = { count = 1000, within = "1s" }
"#,
    );
    daemon.wait(|e| is(e, "tick", true));
    let first = Follower::start(&daemon, &["events", "-f", "-n", "0", "--json"]);
    let second = Follower::start(&daemon, &["events", "-f", "-n", "0", "--json"]);
    let logs_follower = Follower::start(&daemon, &["logs", "-f", "-n", "0", "--color", "never"]);
    // New records as they are written: restarts of tick.
    let collect = |follower: &Follower, until: &dyn Fn(&EventRecord) -> bool| {
        let mut records = Vec::new();
        loop {
            let line = follower.next();
            let record: EventRecord = serde_json::from_str(&line).expect("a record");
            let done = until(&record);
            records.push(record);
            if done {
                return records;
            }
        }
    };
    let a = collect(
        &first,
        &|r| matches!(r.event, Event::Started { restarts, .. } if restarts >= 3),
    );
    // Everything after the point both certainly follow: each gets the same records.
    let mark = a.last().expect("a record").clone();
    let b = collect(&second, &|r| *r == mark);
    let a_more = collect(
        &first,
        &|r| matches!(r.event, Event::Started { restarts, .. } if restarts >= 5),
    );
    let b_more = collect(&second, &|r| *r == *a_more.last().expect("a record"));
    assert_eq!(a_more, b_more);
    // Whichever began first saw more at the start, the same records after.
    assert!(a.ends_with(&b) || b.ends_with(&a), "{a:#?}\n{b:#?}");
    // The logs follower saw the new services' output too, with the name in front.
    assert!(logs_follower.next().starts_with("tick "));
    drop((first, second, logs_follower));
    daemon.stop().assert_all_gone();
}

#[test]
fn a_reader_that_goes_away_is_a_clean_exit() {
    let dir = Scratch::new("files-pipe");
    let mut daemon = Daemon::start(
        &dir,
        r#"
[service.loud]
command = ["sh", "-c", "seq 1 20000; exec sleep 300"]
"#,
    );
    daemon.wait(|e| is(e, "loud", true));
    let log = daemon.state().join("logs/loud.log");
    wait_for_text(&log, " out | 20000\n");

    // `hangwatch logs -n 20000 | head -1`: far more than a pipe holds.
    let spawn = |args: &[&str]| {
        let mut child = Command::new(hangwatch())
            .args(args)
            .arg("--file")
            .arg(&daemon.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut first = String::new();
        reader.read_line(&mut first).expect("read a line");
        assert!(!first.is_empty());
        drop(reader);
        let code = exit_code(&mut child);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .expect("read stderr");
        (code, stderr)
    };
    let (code, stderr) = spawn(&["logs", "-n", "20000"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    // Followers end when their reader does, without waiting for another line.
    let (code, stderr) = spawn(&["events", "-f"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let (code, stderr) = spawn(&["logs", "-f", "-n", "1"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    daemon.stop().assert_all_gone();
}
