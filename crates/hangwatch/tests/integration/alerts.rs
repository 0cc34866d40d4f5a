//! `[[alert]]` hooks with real commands: one that works (the bundled webhook sender, posting to
//! a listener of the test), one that fails, one that hangs, one that floods.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use hangwatch_process::{ProcessId, Signal};
use hangwatch_protocol::event::{Event, EventRecord};

use crate::harness::{Scratch, Up, alive};
use crate::http::is;

const WAIT: Duration = Duration::from_secs(15);

fn alert_failed<'a>(record: &'a EventRecord, wanted: &str) -> Option<(&'a str, &'a str)> {
    match &record.event {
        Event::AlertFailed { why, detail, .. } if why == wanted => Some((why, detail)),
        _ => None,
    }
}

fn webhook() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/alerts/webhook.py")
}

#[test]
fn a_hook_gets_the_event_and_the_webhook_example_posts_it() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (got_tx, got) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut request = Vec::new();
        let mut buf = [0; 4096];
        // Read the head, then the body by its length.
        loop {
            let n = stream.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= len {
                    break;
                }
            }
        }
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let _ = got_tx.send(String::from_utf8_lossy(&request).into_owned());
    });
    let dir = Scratch::new("alert-works");
    let mut up = Up::start(
        &dir,
        &format!(
            r#"
[[alert]]
name = "chat"
on = ["down"]
command = ["python3", "{}", "http://127.0.0.1:{port}/hook"]

[service.crashy]
command = ["sh", "-c", "exit 3"]
restart = "never"

# Keeps the supervisor up once `crashy` has ended (hooks in flight end with it).
[service.keep]
command = ["sleep", "300"]
"#,
            webhook().display()
        ),
    );
    up.wait(WAIT, |e| is(e, "crashy", "exited"));
    let request = got
        .recv_timeout(WAIT)
        .expect("the webhook posted nothing within 15 s");
    let (head, body) = request.split_once("\r\n\r\n").expect("an HTTP request");
    assert!(head.starts_with("POST /hook "), "{head}");
    let posted: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(posted["event"]["event"], "exited", "{posted}");
    assert_eq!(posted["event"]["service"], "crashy", "{posted}");
    assert!(
        posted["text"]
            .as_str()
            .is_some_and(|t| t.contains("crashy")),
        "{posted}"
    );
    let (_, events, guard) = up.stop(Signal::TERMINATE);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.event, Event::AlertFailed { .. })),
        "{events:#?}"
    );
    guard.assert_all_gone();
}

#[test]
fn a_hook_that_fails_or_hangs_is_an_event_and_a_hung_one_is_killed() {
    let dir = Scratch::new("alert-bad");
    let mut up = Up::start(
        &dir,
        r#"
[[alert]]
name = "broken"
on = ["down"]
command = ["sh", "-c", "cat > /dev/null; exit 3"]

[[alert]]
name = "stuck"
on = ["down"]
command = ["sh", "-c", "echo $$ > hook.pid; exec sleep 300"]
timeout = "500ms"

[service.crashy]
command = ["sh", "-c", "exit 3"]
restart = "never"

# Keeps the supervisor up once `crashy` has ended (hooks in flight end with it).
[service.keep]
command = ["sleep", "300"]
"#,
    );
    let failed = up.wait(WAIT, |e| alert_failed(e, "failed").is_some());
    let (_, detail) = alert_failed(&failed, "failed").expect("failed");
    assert_eq!(detail, "ended with code 3");
    assert_eq!(failed.service.as_deref(), Some("crashy"));
    up.wait(WAIT, |e| alert_failed(e, "timed-out").is_some());
    let pid: i32 = std::fs::read_to_string(dir.file("hook.pid"))
        .expect("the hook wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    // The timeout event comes after the kill and the reaping: the hook is gone.
    if let Ok(Some(id)) = ProcessId::of(pid) {
        assert!(!alive(&id), "the hung hook {pid} is still alive");
    }
    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
}

#[test]
fn a_crash_loop_cannot_flood_hooks() {
    let dir = Scratch::new("alert-flood");
    let mut up = Up::start(
        &dir,
        r#"
[[alert]]
name = "counted"
on = ["down"]
command = ["sh", "-c", "echo run >> runs.txt"]
rate = { count = 2, within = "1m" }

[service.crashy]
command = ["sh", "-c", "exit 1"]
restart = "always"
backoff = { initial = "20ms", max = "20ms" }
max_restarts = { count = 1000, within = "1m" }
"#,
    );
    let dropped = up.wait(WAIT, |e| alert_failed(e, "dropped").is_some());
    let (_, detail) = alert_failed(&dropped, "dropped").expect("dropped");
    assert!(detail.contains("more than 2 runs"), "{detail}");
    // Let a few more crashes pass: still no more than two runs.
    for _ in 0..5 {
        up.wait(WAIT, |e| is(e, "crashy", "exited"));
    }
    let (_, events, guard) = up.stop(Signal::TERMINATE);
    let runs = std::fs::read_to_string(dir.file("runs.txt")).unwrap_or_default();
    assert_eq!(runs.lines().count(), 2, "{runs}");
    let told = events
        .iter()
        .filter(|e| alert_failed(e, "dropped").is_some())
        .count();
    assert_eq!(told, 1, "drops are told once per rate window");
    guard.assert_all_gone();
}
