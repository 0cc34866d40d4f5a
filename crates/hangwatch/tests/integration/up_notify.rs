//! The notify protocol under `hangwatch up` means what it means under `hangwatch run`:
//! `EXTEND_TIMEOUT_USEC=` buys a start or a stop more time (as systemd), and a datagram from
//! outside every service is refused and counted.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use hangwatch_process::Signal;
use hangwatch_protocol::control::Reply;
use hangwatch_protocol::event::{Event, EventRecord};
use hangwatch_protocol::report::ProgramStatus;

use crate::harness::{Scratch, Up, run};

const NOTIFY_PY: &str = r#"
import os, socket
def notify(message):
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), address)
"#;

const WAIT: Duration = Duration::from_secs(15);

fn of(record: &EventRecord, service: &str) -> bool {
    record.service.as_deref() == Some(service)
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
fn extend_timeout_usec_extends_a_start_and_a_stop_and_foreign_datagrams_are_counted() {
    let dir = Scratch::new("up-notify");
    std::fs::write(dir.file("notify.py"), NOTIFY_PY).expect("write notify.py");
    let flag = dir.file("started.flag");
    let mut up = Up::start(
        &dir,
        &format!(
            r#"
[service.slowstart]
command = ["python3", "-c", """
import time, notify
notify.notify('EXTEND_TIMEOUT_USEC=10000000')
time.sleep(4)
open('{flag}', 'w').close()
time.sleep(300)
"""]
ready = {{ exec = "test -f '{flag}'", every = "50ms", within = "3s" }}

[service.slowstop]
command = ["python3", "-c", """
import signal, sys, time, notify
def on_term(*_):
    notify.notify('STOPPING=1\\nEXTEND_TIMEOUT_USEC=10000000')
    time.sleep(3)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
notify.notify('READY=1')
time.sleep(300)
"""]
ready = "notify"
stop_grace = "1s"
"#,
            flag = flag.display()
        ),
    );
    let ready = up.wait(WAIT, |e| {
        of(e, "slowstart") && matches!(e.event, Event::Ready { .. } | Event::NotReady { .. })
    });
    assert!(
        matches!(&ready.event, Event::Ready { by, .. } if by == "probe"),
        "EXTEND_TIMEOUT_USEC=10s should carry the start past its 3s bound: {ready:?}"
    );
    let slowstop_ready =
        |e: &EventRecord| of(e, "slowstop") && matches!(e.event, Event::Ready { .. });
    if !up.events.iter().any(slowstop_ready) {
        up.wait(WAIT, slowstop_ready);
    }
    // A datagram from this test, which is in no service's tree.
    let program = up
        .events
        .iter()
        .find_map(|e| match e.event {
            Event::Started { pid, .. } if of(e, "slowstop") => Some(pid),
            _ => None,
        })
        .expect("slowstop started");
    let socket = env_of(program, "NOTIFY_SOCKET").expect("NOTIFY_SOCKET");
    let sender = UnixDatagram::unbound().expect("socket");
    sender
        .send_to(b"WATCHDOG=1", &socket)
        .expect("send to the notify socket");
    let config = dir.file("hangwatch.toml");
    let rejected = {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let out = run([
                "status".as_ref(),
                "--json".as_ref(),
                "-f".as_ref(),
                config.as_os_str(),
            ]);
            assert_eq!(out.code(), 0, "status failed:\n{}", out.stderr);
            let reply: Reply = serde_json::from_str(&out.stdout).expect("status reply");
            let Reply::Status(status) = reply else {
                panic!("not a status: {}", out.stdout)
            };
            if status.notify.rejected > 0 || std::time::Instant::now() > deadline {
                break status.notify.rejected;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(rejected, 1, "the foreign datagram is refused and counted");

    let (code, events, guard) = up.stop(Signal::TERMINATE);
    assert_eq!(code, 0, "{events:#?}");
    let exited = events
        .iter()
        .find(|e| of(e, "slowstop") && matches!(e.event, Event::Exited { .. }))
        .expect("slowstop exited");
    let Event::Exited { killed, status, .. } = &exited.event else {
        unreachable!()
    };
    assert!(
        killed.is_empty(),
        "EXTEND_TIMEOUT_USEC=10s during the stop should carry it past its 1s grace: {exited:?}"
    );
    assert!(
        matches!(status, ProgramStatus::Exited { code: 0 }),
        "{exited:?}"
    );
    guard.assert_all_gone();
}
