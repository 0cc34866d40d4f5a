//! The control socket of a real `hangwatch up`, spoken to directly: the protocol's safety
//! (garbage, oversized frames, another version, another user), and the requests' effects on
//! real services. The `hangwatch status|stop|…` commands have their own tests.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hangwatch_process::{ProcessId, Signal};
use hangwatch_protocol::control::{
    Client, ClientError, ErrorKind, Hello, MAX_REQUEST, Reply, Request, State, VERSION, encode,
};
use hangwatch_protocol::event::Event;

use crate::harness::{Guard, Scratch, Up};

/// A supervisor started on `config` in a scratch directory, its socket ready.
struct Daemon {
    up: Up,
    dir: Scratch,
}

impl Daemon {
    fn start(name: &str, config: &str) -> Daemon {
        let dir = Scratch::new(name);
        let mut up = Up::start(&dir, config);
        // The socket listens before any service starts.
        up.wait(Duration::from_secs(10), |record| {
            matches!(record.event, Event::Started { .. })
        });
        Daemon { up, dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.file("state")
    }

    fn socket(&self) -> PathBuf {
        self.state().join("control.sock")
    }

    fn client(&mut self) -> Client {
        let mut client =
            Client::connect(&self.state(), "test", Duration::from_secs(5)).expect("connect");
        client
            .set_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        client
    }

    /// Calls and tracks the PIDs the reply names.
    fn call(&mut self, request: Request) -> Reply {
        let reply = self.client().call(&request).expect("call");
        let pids: Vec<i32> = match &reply {
            Reply::Status(status) => status.services.iter().filter_map(|s| s.pid).collect(),
            Reply::Service(service) => service.pid.into_iter().collect(),
            _ => Vec::new(),
        };
        for pid in pids {
            if let Ok(Some(id)) = ProcessId::of(pid) {
                self.up.guard.track([id]);
            }
        }
        reply
    }

    fn service(&mut self, name: &str) -> hangwatch_protocol::control::ServiceStatus {
        match self.call(Request::Status {
            service: Some(name.to_owned()),
        }) {
            Reply::Status(mut status) => status.services.remove(0),
            other => panic!("not a status: {other:?}"),
        }
    }

    /// Waits (bounded) until `name` is in `state`.
    fn wait_state(
        &mut self,
        name: &str,
        state: State,
    ) -> hangwatch_protocol::control::ServiceStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let service = self.service(name);
            if service.state == state {
                return service;
            }
            assert!(
                Instant::now() < deadline,
                "{name} not {state:?} within 10 s: {service:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn alive(&self) -> bool {
        crate::harness::alive(&self.up.hw.id())
    }

    fn stop(self) -> Guard {
        let (code, _, guard) = self.up.stop(Signal::TERMINATE);
        assert_eq!(code, 0);
        guard
    }
}

/// Sends raw bytes and reads one reply frame (or nothing, when the daemon closed).
fn exchange(stream: &mut UnixStream, bytes: &[u8]) -> Option<Reply> {
    stream.write_all(bytes).expect("write");
    read_reply(stream)
}

fn read_reply(stream: &mut UnixStream) -> Option<Reply> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut header = [0; 4];
    stream.read_exact(&mut header).ok()?;
    let mut payload = vec![0; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut payload).expect("payload");
    Some(serde_json::from_slice(&payload).expect("a reply"))
}

fn error_kind(reply: Option<Reply>) -> ErrorKind {
    match reply {
        Some(Reply::Error(error)) => error.kind,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn hello(version: u32) -> Vec<u8> {
    encode(&Hello {
        version,
        client: "test".into(),
    })
    .expect("encode")
}

#[test]
fn garbage_oversized_frames_and_other_versions_are_answered_and_never_stop_the_daemon() {
    let mut daemon = Daemon::start("garbage", "[service.a]\ncommand = \"sleep 1000\"\n");
    let mode = std::fs::metadata(daemon.socket())
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // Garbage instead of a hello: an error, then the connection is closed.
    let mut raw = UnixStream::connect(daemon.socket()).expect("connect");
    let mut frame = 5u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"\xff\x00{[}");
    assert_eq!(
        error_kind(exchange(&mut raw, &frame)),
        ErrorKind::BadRequest
    );
    assert!(read_reply(&mut raw).is_none(), "closed after a bad hello");

    // An oversized frame is refused from its header alone.
    let mut raw = UnixStream::connect(daemon.socket()).expect("connect");
    let huge = u32::try_from(MAX_REQUEST + 1).expect("fits").to_be_bytes();
    assert_eq!(error_kind(exchange(&mut raw, &huge)), ErrorKind::TooLarge);

    // Another protocol version.
    let mut raw = UnixStream::connect(daemon.socket()).expect("connect");
    assert_eq!(
        error_kind(exchange(&mut raw, &hello(VERSION + 1))),
        ErrorKind::Version
    );

    // After a good hello: a malformed request is answered and the connection stays usable;
    // an oversized one closes it.
    let mut raw = UnixStream::connect(daemon.socket()).expect("connect");
    assert!(matches!(
        exchange(&mut raw, &hello(VERSION)),
        Some(Reply::Welcome(_))
    ));
    let mut bad = 15u32.to_be_bytes().to_vec();
    bad.extend_from_slice(br#"{"request":"x"}"#);
    assert_eq!(error_kind(exchange(&mut raw, &bad)), ErrorKind::BadRequest);
    let status = encode(&Request::Status { service: None }).expect("encode");
    assert!(matches!(
        exchange(&mut raw, &status),
        Some(Reply::Status(_))
    ));
    assert_eq!(error_kind(exchange(&mut raw, &huge)), ErrorKind::TooLarge);
    assert!(
        read_reply(&mut raw).is_none(),
        "closed after an oversized frame"
    );

    // A client that says nothing, and one that hangs up mid-frame, cost nothing.
    let _silent = UnixStream::connect(daemon.socket()).expect("connect");
    let mut cut = UnixStream::connect(daemon.socket()).expect("connect");
    cut.write_all(&hello(VERSION)[..6]).expect("write");
    drop(cut);

    assert!(daemon.alive());
    let a = daemon.service("a");
    assert_eq!(a.state, State::Ready);
    let guard = daemon.stop();
    guard.assert_all_gone();
}

#[test]
fn another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let Some(setpriv) = which("setpriv") else {
        eprintln!("skipped: setpriv is not installed");
        return;
    };
    // A system Python that `nobody` may run (a user's pyenv under /root is out of its reach).
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        eprintln!("skipped: no /usr/bin/python3 to run a client as nobody");
        return;
    }
    let mut daemon = Daemon::start("other-user", "[service.a]\ncommand = \"sleep 1000\"\n");
    // Let `nobody` reach the socket's directory; the socket itself stays 0600.
    for dir in [daemon.dir.path.clone(), daemon.state()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let connect_as_nobody = |socket: &Path| {
        let script = format!(
            r#"
import socket, struct, json
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({path:?})
except PermissionError:
    print("EACCES"); raise SystemExit
hello = json.dumps({{"version": {VERSION}, "client": "nobody"}}).encode()
s.sendall(struct.pack(">I", len(hello)) + hello)
header = s.recv(4, socket.MSG_WAITALL)
length = struct.unpack(">I", header)[0]
print(s.recv(length, socket.MSG_WAITALL).decode())
"#,
            path = socket.display().to_string()
        );
        let out = Command::new(&setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(python)
            .arg("-c")
            .arg(script)
            .output()
            .expect("run a client as nobody");
        assert!(
            out.status.success(),
            "client as nobody: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // The file mode stops it at connect.
    assert_eq!(connect_as_nobody(&daemon.socket()), "EACCES");
    // And with the mode opened up, the peer's credentials stop it.
    std::fs::set_permissions(daemon.socket(), std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    let answer = connect_as_nobody(&daemon.socket());
    let reply: Reply =
        serde_json::from_str(&answer).unwrap_or_else(|err| panic!("{err}: {answer}"));
    assert!(
        matches!(&reply, Reply::Error(e) if e.kind == ErrorKind::Denied && e.message.contains("65534")),
        "{reply:?}"
    );
    assert_eq!(daemon.service("a").state, State::Ready);
    daemon.stop().assert_all_gone();
}

#[test]
fn stop_start_restart_and_a_held_service_keeps_the_supervisor_up() {
    let mut daemon = Daemon::start(
        "verbs",
        "[service.db]\ncommand = \"sleep 1000\"\n\n\
         [service.app]\ncommand = \"sleep 1000\"\ndepends_on = [\"db\"]\n",
    );
    let app = daemon.wait_state("app", State::Ready);

    // Unknown names are errors that name the services.
    let reply = daemon.call(Request::Stop {
        service: "nope".into(),
    });
    assert!(
        matches!(&reply, Reply::Error(e) if e.kind == ErrorKind::UnknownService && e.message.contains("db")),
        "{reply:?}"
    );

    // Stopping every service holds them down; the supervisor does not end by itself.
    for name in ["app", "db"] {
        let reply = daemon.call(Request::Stop {
            service: name.into(),
        });
        assert!(
            matches!(&reply, Reply::Service(s) if s.state == State::Stopped && s.pid.is_none()),
            "{reply:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(daemon.alive(), "a held service keeps the supervisor up");

    // Starting the dependent starts its dependency first.
    let reply = daemon.call(Request::Start {
        service: "app".into(),
    });
    let Reply::Service(started) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(started.state, State::Ready);
    assert_ne!(started.pid, app.pid, "a new program");
    assert_eq!(daemon.service("db").state, State::Ready);

    // Restart: a new program, answered once it is ready; the old one is gone by then.
    let old = ProcessId::of(started.pid.expect("pid"))
        .expect("read /proc")
        .expect("running");
    let reply = daemon.call(Request::Restart {
        service: "app".into(),
    });
    let Reply::Service(restarted) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(restarted.state, State::Ready);
    assert_ne!(restarted.pid, started.pid);
    assert!(!crate::harness::alive(&old), "the old program is gone");
    daemon.stop().assert_all_gone();
}

#[test]
fn reload_applies_a_changed_an_added_and_a_removed_service_and_refuses_a_broken_config() {
    let mut daemon = Daemon::start(
        "reload",
        "[service.same]\ncommand = \"sleep 1000\"\n\n\
         [service.changes]\ncommand = \"sleep 1000\"\n\n\
         [service.goes]\ncommand = \"sleep 1000\"\n",
    );
    let same = daemon.wait_state("same", State::Ready);
    let changes = daemon.wait_state("changes", State::Ready);
    daemon.wait_state("goes", State::Ready);

    // A broken file: positions, and nothing changes.
    let config = daemon.dir.file("hangwatch.toml");
    let good = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, format!("{good}\n[service.bad]\ncomand = \"x\"\n")).expect("write");
    let reply = daemon.call(Request::Reload);
    let Reply::Error(error) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(error.kind, ErrorKind::Config);
    assert!(
        error
            .diagnostics
            .iter()
            .any(|d| d.contains("hangwatch.toml:12:1") && d.contains("did you mean `command`")),
        "{error:?}"
    );
    assert_eq!(daemon.service("changes").pid, changes.pid);

    // Changed, added, removed, unchanged.
    let next = good
        .replace(
            "[service.changes]\ncommand = \"sleep 1000\"",
            "[service.changes]\ncommand = \"sleep 1001\"",
        )
        .replace("[service.goes]\ncommand = \"sleep 1000\"\n", "")
        + "\n[service.new]\ncommand = \"sleep 1000\"\n";
    std::fs::write(&config, next).expect("write");
    let reply = daemon.call(Request::Reload);
    let Reply::Reloaded(report) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(report.changed, ["changes"]);
    assert_eq!(report.added, ["new"]);
    assert_eq!(report.removed, ["goes"]);
    assert_eq!(report.unchanged, ["same"]);
    let changed = daemon.wait_state("changes", State::Ready);
    assert_ne!(changed.pid, changes.pid, "restarted");
    daemon.wait_state("new", State::Ready);
    assert_eq!(daemon.service("same").pid, same.pid, "untouched");
    let reply = daemon.call(Request::Status { service: None });
    let Reply::Status(status) = reply else {
        panic!("{reply:?}")
    };
    let names: Vec<&str> = status.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["same", "changes", "new"]);
    daemon.stop().assert_all_gone();
}

#[test]
fn down_answers_who_was_killed_within_the_bound_and_the_daemon_exits() {
    let daemon = Daemon::start(
        "down",
        "shutdown_timeout = \"5s\"\n\
         [service.stubborn]\ncommand = [\"sh\", \"-c\", \"trap '' TERM; while :; do sleep 0.1; done\"]\nstop_grace = \"500ms\"\n\n\
         [service.polite]\ncommand = \"sleep 1000\"\n",
    );
    let mut daemon = daemon;
    daemon.wait_state("stubborn", State::Ready);
    daemon.wait_state("polite", State::Ready);
    let began = Instant::now();
    let reply = daemon.call(Request::Down);
    let took = began.elapsed();
    let Reply::Down(report) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(report.killed, ["stubborn"]);
    assert_eq!(report.clean, ["polite"]);
    assert!(took < Duration::from_secs(5), "within the bound: {took:?}");
    let state = daemon.state();
    let Daemon { up, dir: _dir } = daemon;
    let (code, _, guard) = up.finish();
    assert_eq!(code, 0);
    guard.assert_all_gone();
    // Nothing left to connect to.
    let err = Client::connect(&state, "test", Duration::from_secs(1)).expect_err("no daemon");
    assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
}
