//! The status page in a real headless Chromium (Debian's `chromium`, driven by playwright-core
//! from `crates/hangwatch/tests/page/`, which `.ci/run` installs with `npm ci`).
//!
//! A service stalls (its watchdog heartbeats stop) on its first run and heartbeats on its
//! second: the page must load without a console error, show the service stalled with the
//! incident's verdict within two seconds of the stall, link the whole report, and show the
//! service ready again after the restart. Screenshots go to `target/status-page/`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_process::Signal;

use crate::harness::{Scratch, hangwatch};
use crate::http::{is, required, start};

/// The systemd notify protocol in a few lines of Python.
const NOTIFY_PY: &str = r#"
import os, socket
def notify(message):
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), address)
"#;

/// The longest the browser side may take: start, a stall, a diagnosis, a restart.
const BROWSER_DEADLINE: Duration = Duration::from_secs(45);

fn page_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/page")
}

#[test]
fn status_page_in_chromium_follows_a_stall_and_the_recovery() {
    let (Some(_), Some(node)) = (required("chromium"), required("node")) else {
        return;
    };
    if !page_dir().join("node_modules/playwright-core").is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "playwright-core is not installed: npm ci --prefix crates/hangwatch/tests/page"
        );
        eprintln!("SKIPPED: npm ci --prefix crates/hangwatch/tests/page first");
        return;
    }
    let dir = Scratch::new("http-page");
    std::fs::write(dir.file("notify.py"), NOTIFY_PY).expect("write notify.py");
    // `stuck` stalls when told to (the file `go` appears): the browser writes it once the page
    // shows `stuck` ready.
    let (mut up, addr) = start(
        &dir,
        r#"
[service.db]
command = ["sleep", "300"]

[service.stuck]
command = ["python3", "-c", """
import os, threading, time, notify
notify.notify('READY=1')
while True:
    notify.notify('WATCHDOG=1')
    time.sleep(0.2)
    if os.environ['HANGWATCH_RESTARTS'] == '0' and os.path.exists('go'):
        lock = threading.Lock(); lock.acquire(); lock.acquire()
"""]
ready = "notify"
watchdog = "1s"
backoff = { initial = "0s" }
depends_on = ["db"]

[service.chatty]
command = ["sh", "-c", "while true; do echo tick; sleep 0.5; done"]
stall_on_silence = "3s"
"#,
        "db",
    );
    up.wait(Duration::from_secs(15), |e| is(e, "stuck", "ready"));

    let out_dir = hangwatch()
        .parent()
        .and_then(|debug| debug.parent())
        .expect("target directory")
        .join("status-page");
    std::fs::create_dir_all(&out_dir).expect("create target/status-page");
    let mut browser = Command::new(node)
        .arg(page_dir().join("page.mjs"))
        .arg(format!("http://{addr}/"))
        .arg(&out_dir)
        .arg("stuck")
        .arg(dir.file("go"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that the deadline kills Chromium with it.
        .process_group(0)
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + BROWSER_DEADLINE;
    let status = loop {
        if let Some(status) = browser.try_wait().expect("wait for node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(browser.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = browser.wait();
            panic!("the browser test did not finish within {BROWSER_DEADLINE:?}");
        }
        // A child of the test with no event to wait on but its exit.
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = browser.wait_with_output().expect("node output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let result: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no result from the browser ({status}):\n{stdout}\n{stderr}"));
    eprintln!("status page: {result}");
    assert_eq!(result["ok"], true, "{result}\n{stderr}");
    let shown = result["stall_shown_ms"].as_f64().expect("stall_shown_ms");
    assert!(
        shown <= 2000.0,
        "the page showed the stall {shown} ms after it"
    );
    assert!(
        result["verdict"].as_array().is_some_and(|v| !v.is_empty()),
        "{result}"
    );
    assert!(result["report_chars"].as_u64() > Some(0), "{result}");
    for shot in ["status-page-stalled.png", "status-page-recovered.png"] {
        assert!(out_dir.join(shot).is_file(), "no {shot}");
    }
    let (_, _, guard) = up.stop(Signal::TERMINATE);
    guard.assert_all_gone();
}
