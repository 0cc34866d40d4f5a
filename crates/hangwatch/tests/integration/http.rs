//! The HTTP endpoint of `hangwatch up`: health, the JSON API, its limits and its token, with a
//! real TCP client; `/metrics` scraped by a real Prometheus; the status page in a real headless
//! Chromium (`page.rs`).
//!
//! The client is a few lines of HTTP/1.1 over `std::net::TcpStream` (`Connection: close`, read to
//! the end), so what is tested is the server's bytes on the wire, not a client library's view.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_process::Signal;
use hangwatch_protocol::event::EventRecord;

use crate::harness::{Scratch, Up, hangwatch};

const WAIT: Duration = Duration::from_secs(15);

/// An HTTP answer.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` (a whole HTTP/1.1 request head, and body if any) and reads the answer to
/// the end; bounded by a 10 s socket timeout.
pub fn try_exchange(addr: SocketAddr, request: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

pub fn exchange(addr: SocketAddr, request: &str) -> Answer {
    try_exchange(addr, request).unwrap_or_else(|err| panic!("HTTP exchange with {addr}: {err}"))
}

fn try_get(addr: SocketAddr, path: &str, headers: &str) -> std::io::Result<Answer> {
    try_exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n"),
    )
}

/// `GET path` with extra header lines.
pub fn get_with(addr: SocketAddr, path: &str, headers: &str) -> Answer {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n"),
    )
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    get_with(addr, path, "")
}

/// The address the endpoint of the supervisor in `dir` listens on.
pub fn address(dir: &Scratch) -> SocketAddr {
    let text = std::fs::read_to_string(dir.file("state/http.address")).expect("http.address");
    text.trim().parse().expect("an address")
}

pub fn is(record: &EventRecord, service: &str, kind: &str) -> bool {
    record.service.as_deref() == Some(service)
        && serde_json::to_value(&record.event)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str().map(str::to_owned)))
            .is_some_and(|e| e == kind)
}

/// Starts `hangwatch up` with HTTP on a free loopback port and waits for `first` to start.
pub fn start(dir: &Scratch, config: &str, first: &str) -> (Up, SocketAddr) {
    let mut up = Up::start(dir, &format!("http = \"127.0.0.1:0\"\n{config}"));
    up.wait(WAIT, |e| is(e, first, "started"));
    let addr = address(dir);
    (up, addr)
}

fn json(answer: &Answer) -> serde_json::Value {
    serde_json::from_str(&answer.body)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", answer.body))
}

#[test]
fn health_and_the_json_api_answer_and_nothing_can_be_changed() {
    let dir = Scratch::new("http-api");
    let (mut up, addr) = start(
        &dir,
        r#"
[service.web]
command = ["sleep", "300"]
"#,
        "web",
    );
    up.wait(WAIT, |e| is(e, "web", "ready"));

    let healthz = get(addr, "/healthz");
    assert_eq!(healthz.status, 200, "{}", healthz.body);
    assert_eq!(json(&healthz)["ok"], true);
    let readyz = get(addr, "/readyz");
    assert_eq!(readyz.status, 200, "{}", readyz.body);

    let status = json(&get(addr, "/api/status"));
    assert_eq!(status["services"][0]["name"], "web");
    assert_eq!(status["services"][0]["state"], "ready");

    let events = json(&get(addr, "/api/events"));
    let list = events["events"].as_array().expect("events");
    assert!(
        list.iter()
            .any(|e| e["event"] == "ready" && e["service"] == "web"),
        "{events}"
    );
    let last = list.last().expect("an event")["seq"].as_u64().expect("seq");
    let after = json(&get(addr, &format!("/api/events?since={last}")));
    assert_eq!(after["events"].as_array().map(Vec::len), Some(0), "{after}");
    assert_eq!(json(&get(addr, "/api/incidents")), serde_json::json!([]));
    assert_eq!(get(addr, "/api/incidents/nope").status, 404);
    assert_eq!(get(addr, "/api/incidents/..%2Fhangwatch.toml").status, 404);

    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>hangwatch</title>"));
    assert!(
        page.head
            .to_ascii_lowercase()
            .contains("content-security-policy")
    );
    assert_eq!(get(addr, "/assets/app.js").status, 200);
    assert_eq!(get(addr, "/nothing").status, 404);

    // Read-only: every other method is refused, and no route takes a body.
    let post = exchange(
        addr,
        &format!(
            "POST /api/status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert_eq!(post.status, 405);
    let body = exchange(
        addr,
        &format!(
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
        ),
    );
    assert_eq!(body.status, 413);
    // A head larger than the read buffer is refused, not buffered.
    let huge = format!("X-Big: {}\r\n", "a".repeat(64 * 1024));
    let refused = try_get(addr, "/healthz", &huge).map(|a| a.status);
    assert!(!matches!(refused, Ok(200)), "a 64 KiB head was served");

    let (code, _, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0);
    guard.assert_all_gone();
}

#[test]
fn readyz_names_a_stalled_service_and_healthz_one_that_gave_up() {
    let dir = Scratch::new("http-health");
    let (mut up, addr) = start(
        &dir,
        r#"
[service.quiet]
command = ["sh", "-c", "echo hello; exec sleep 300"]
stall_on_silence = "1s"
diagnose = false
backoff = { initial = "30s" }

[service.broken]
command = ["sh", "-c", "exit 3"]
restart = "on-failure"
max_restarts = { count = 0, within = "1m" }
"#,
        "quiet",
    );
    up.wait(WAIT, |e| is(e, "broken", "gave-up"));
    let healthz = get(addr, "/healthz");
    assert_eq!(healthz.status, 503, "{}", healthz.body);
    let body = json(&healthz);
    assert_eq!(body["problems"][0]["service"], "broken", "{body}");
    assert_eq!(body["problems"][0]["state"], "failed", "{body}");

    let alive = check(&dir, "alive");
    assert_eq!(alive.0, 1, "{alive:?}");
    assert!(alive.1.contains("broken (failed)"), "{alive:?}");

    up.wait(WAIT, |e| is(e, "quiet", "stalled"));
    let readyz = get(addr, "/readyz");
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    let body = json(&readyz);
    let problems = body["problems"].as_array().expect("problems");
    assert!(problems.iter().any(|p| p["service"] == "quiet"), "{body}");
    assert_eq!(check(&dir, "ready").0, 1);

    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
    // No supervisor: neither alive nor ready.
    assert_eq!(check(&dir, "alive").0, 1);
}

#[test]
fn status_check_says_yes_when_all_is_well() {
    let dir = Scratch::new("http-check-ok");
    let mut up = Up::start(&dir, "[service.web]\ncommand = [\"sleep\", \"300\"]\n");
    up.wait(WAIT, |e| is(e, "web", "ready"));
    assert_eq!(check(&dir, "alive"), (0, String::new()));
    assert_eq!(check(&dir, "ready"), (0, String::new()));
    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
}

/// `hangwatch status --check WHAT` in `dir`: its exit code and stderr.
fn check(dir: &Scratch, what: &str) -> (i32, String) {
    let out = Command::new(hangwatch())
        .args(["status", "--check", what, "-f"])
        .arg(dir.file("hangwatch.toml"))
        .stdin(Stdio::null())
        .output()
        .expect("run hangwatch status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_token_file_makes_every_request_carry_the_token() {
    let dir = Scratch::new("http-token");
    std::fs::write(dir.file("token"), "s3cret-token\n").expect("write token");
    let (up, addr) = start(
        &dir,
        "http_token_file = \"token\"\n[service.web]\ncommand = [\"sleep\", \"300\"]\n",
        "web",
    );
    for path in ["/healthz", "/metrics", "/api/status", "/"] {
        let none = get(addr, path);
        assert_eq!(none.status, 401, "{path}");
        assert!(
            none.head
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer")
        );
        let wrong = get_with(addr, path, "Authorization: Bearer s3cret-tokex\r\n");
        assert_eq!(wrong.status, 401, "{path}");
        let right = get_with(addr, path, "Authorization: Bearer s3cret-token\r\n");
        assert_eq!(right.status, 200, "{path}: {}", right.body);
    }
    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
}

#[test]
fn http_open_lets_probes_in_without_the_token_and_nothing_else() {
    let dir = Scratch::new("http-open-paths");
    std::fs::write(dir.file("token"), "s3cret-token\n").expect("write token");
    let (up, addr) = start(
        &dir,
        "http_token_file = \"token\"\nhttp_open = [\"/healthz\", \"/readyz\"]\n\
         [service.web]\ncommand = [\"sleep\", \"300\"]\n",
        "web",
    );
    for path in ["/healthz", "/readyz"] {
        let open = get(addr, path);
        assert_ne!(open.status, 401, "{path}: {}", open.body);
        assert!(open.body.contains("\"ok\""), "{path}: {}", open.body);
    }
    // A query string does not make another path, and the rest still needs the token.
    assert_ne!(get(addr, "/healthz?verbose=1").status, 401);
    for path in ["/metrics", "/api/status", "/", "/healthz/../api/status"] {
        assert_eq!(get(addr, path).status, 401, "{path}");
    }
    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
}

#[test]
fn an_address_beyond_loopback_without_a_token_is_refused() {
    let dir = Scratch::new("http-open");
    std::fs::write(
        dir.file("hangwatch.toml"),
        "state_dir = \"state\"\n[service.web]\ncommand = [\"sleep\", \"300\"]\n",
    )
    .expect("write config");
    let out = Command::new(hangwatch())
        .args(["up", "--http", "0.0.0.0:0", "-f"])
        .arg(dir.file("hangwatch.toml"))
        .stdin(Stdio::null())
        .output()
        .expect("run hangwatch up");
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("http_token_file"), "{stderr}");
}

#[test]
fn slow_and_greedy_clients_hold_nothing() {
    let dir = Scratch::new("http-limits");
    let (up, addr) = start(
        &dir,
        "[service.web]\ncommand = [\"sleep\", \"300\"]\n",
        "web",
    );
    // A client that never finishes its head is dropped after the header timeout (5 s).
    let mut slow = TcpStream::connect(addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("send half a head");
    slow.set_read_timeout(Some(Duration::from_secs(9)))
        .expect("timeout");
    let began = Instant::now();
    let mut rest = Vec::new();
    let read = slow.read_to_end(&mut rest);
    assert!(read.is_ok(), "not closed within 9 s: {read:?}");
    assert!(began.elapsed() < Duration::from_secs(9));

    // Past 64 connections at once, the next is closed at once; those served still work.
    let held: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // Each held connection is accepted before the next probe (the accept loop is in order).
    let mut extra = TcpStream::connect(addr).expect("connect");
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = extra.read_to_end(&mut answer);
    assert!(
        answer.is_empty(),
        "served past the limit: {}",
        String::from_utf8_lossy(&answer)
    );
    drop(held);
    // The slots come back once those connections are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ok = try_get(addr, "/healthz", "").map(|a| a.status);
        if matches!(ok, Ok(200)) {
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint did not recover");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
}

/// The path of a program, or `None` when it is not installed.
pub fn installed(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// A program a test needs: CI installs it (`.ci/run`) and fails without it; elsewhere the test
/// says it is skipped.
pub fn required(program: &str) -> Option<std::path::PathBuf> {
    let found = installed(program);
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{program} is not installed; .ci/run installs it"
        );
        eprintln!("SKIPPED: {program} is not installed (.ci/run installs it)");
    }
    found
}

/// A free loopback port (bound then released: the kernel does not hand it out again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

/// A process of a test's own, killed (by PID, with its group) on drop.
pub struct Spawned(pub std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_every_service_and_counts_a_stall() {
    let (Some(prometheus), Some(promtool)) = (required("prometheus"), required("promtool")) else {
        return;
    };
    let dir = Scratch::new("http-prometheus");
    let (mut up, addr) = start(
        &dir,
        r#"
[service.web]
command = ["sleep", "300"]

[service.worker]
command = ["sh", "-c", "sleep 300 & sleep 300"]

[service.quiet]
command = ["sh", "-c", "echo hello; exec sleep 300"]
stall_on_silence = "1s"
backoff = { initial = "30s" }
"#,
        "web",
    );
    up.wait(WAIT, |e| is(e, "quiet", "stalled"));

    // The exposition passes Prometheus's own linter.
    let exposition = get(addr, "/metrics");
    assert_eq!(exposition.status, 200);
    assert!(
        exposition.head.contains("text/plain; version=0.0.4"),
        "{}",
        exposition.head
    );
    let mut lint = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(exposition.body.as_bytes())
        .expect("feed promtool");
    let lint = lint.wait_with_output().expect("promtool");
    assert!(
        lint.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // A real Prometheus on loopback, scraping every second, with storage of its own.
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: hangwatch\n    static_configs:\n      - targets: ['{addr}']\n"
    );
    std::fs::write(dir.file("prometheus.yml"), config).expect("write prometheus.yml");
    let _prometheus = Spawned(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.file("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.file("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let api: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let up_series = query_until(api, "hangwatch_service_up", |result| result.len() == 3);
    let mut services: Vec<&str> = up_series
        .iter()
        .filter_map(|s| s["metric"]["service"].as_str())
        .collect();
    services.sort_unstable();
    assert_eq!(services, ["quiet", "web", "worker"]);
    let stalls = query_until(
        api,
        "sum by (service) (hangwatch_service_stalls_total{source=\"output\"})",
        |result| {
            result.iter().any(|s| {
                s["metric"]["service"] == "quiet"
                    && s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0)
            })
        },
    );
    assert!(!stalls.is_empty());
    let processes = query_until(
        api,
        "hangwatch_service_processes{service=\"worker\"}",
        |r| !r.is_empty(),
    );
    // sh and its two sleeps.
    assert_eq!(processes[0]["value"][1], "3", "{processes:?}");

    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
}

/// Asks Prometheus's HTTP API for `query` until `done` holds for the result (bounded: 20 s,
/// enough for Prometheus to start and scrape a few times).
fn query_until(
    api: SocketAddr,
    query: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect();
    let mut last = String::new();
    loop {
        if let Ok(answer) = try_get(api, &format!("/api/v1/query?query={encoded}"), "") {
            if answer.status == 200
                && let Ok(body) = serde_json::from_str::<serde_json::Value>(&answer.body)
                && let Some(result) = body["data"]["result"].as_array()
                && done(result)
            {
                return result.clone();
            }
            last = answer.body;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered {query} as expected; last: {last}"
        );
        // Prometheus is another program: there is no event to wait on but its next scrape.
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn run_metrics_file_holds_the_last_run_for_the_textfile_collector() {
    let dir = Scratch::new("run-metrics-file");
    let path = dir.file("job.prom");
    let run = |args: &[&str]| {
        Command::new(hangwatch())
            .arg("run")
            .arg("--metrics-file")
            .arg(&path)
            .args(["--incident-dir"])
            .arg(dir.file("incidents"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run hangwatch run")
    };
    let stalled = run(&["--stall-on-silence", "300ms", "--", "sleep", "5"]);
    assert_eq!(stalled.status.code(), Some(122));
    let text = std::fs::read_to_string(&path).expect("metrics file");
    for line in [
        "hangwatch_run_success{command=\"sleep\"} 0",
        "hangwatch_run_outcome{command=\"sleep\",outcome=\"stalled\"} 1",
        "hangwatch_run_stalls{command=\"sleep\",source=\"output\"} 1",
        "hangwatch_run_exit_code{command=\"sleep\"} 122",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    if let Some(promtool) = installed("promtool") {
        let lint = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&path).expect("open"))
            .output()
            .expect("promtool");
        assert!(
            lint.status.success(),
            "{}",
            String::from_utf8_lossy(&lint.stderr)
        );
    }
    // The next run replaces the file whole.
    let ok = run(&["--", "true"]);
    assert_eq!(ok.status.code(), Some(0));
    let text = std::fs::read_to_string(&path).expect("metrics file");
    assert!(
        text.contains("hangwatch_run_success{command=\"true\"} 1"),
        "{text}"
    );
    assert!(!text.contains("sleep"), "{text}");
    let names: Vec<_> = std::fs::read_dir(&dir.path)
        .expect("list")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}
