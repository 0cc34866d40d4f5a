//! Operating a running supervisor (issue 7): `up --detach`, then every verb of the control
//! socket against that real daemon.
//!
//! Each test starts its own detached supervisor on a config in a scratch directory (state in
//! `.hangwatch/` beside it), learns its PID and its services' PIDs from `--json` replies, and
//! tracks them in a [`Guard`] that kills them by PID (start time checked) if the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_process::ProcessId;
use hangwatch_protocol::control::{Reply, ServiceStatus, State, Status};

use crate::harness::{Finished, Guard, Scratch, alive, fixture, hangwatch, run};

/// A detached supervisor started by a test.
struct Daemon {
    /// First, so that it is dropped (and kills) before the directory is removed.
    guard: Guard,
    dir: Scratch,
    config: PathBuf,
    pid: ProcessId,
}

impl Daemon {
    /// Writes `config` as `hangwatch.toml` and runs `hangwatch up --detach --json` on it.
    fn start(config: &str) -> Daemon {
        let dir = Scratch::new("control");
        let path = dir.file("hangwatch.toml");
        std::fs::write(&path, config).expect("write config");
        let started = Instant::now();
        let up = run([
            "up".as_ref(),
            "--detach".as_ref(),
            "--json".as_ref(),
            "-f".as_ref(),
            path.as_os_str(),
        ]);
        assert_eq!(up.code(), 0, "up --detach failed:\n{}", up.stderr);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "up --detach took {:?}",
            started.elapsed()
        );
        let value: serde_json::Value = serde_json::from_str(&up.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", up.stdout));
        let pid = value["pid"].as_i64().expect("pid") as i32;
        let pid = ProcessId::of(pid)
            .expect("read /proc")
            .expect("the supervisor runs");
        let mut guard = Guard::default();
        guard.track([pid]);
        assert_eq!(
            Path::new(value["state_dir"].as_str().expect("state_dir")),
            dir.file(".hangwatch")
        );
        let mut daemon = Daemon {
            dir,
            config: path,
            pid,
            guard,
        };
        let status: Status =
            serde_json::from_value(value["status"].clone()).expect("a status in the JSON");
        daemon.track(&status);
        daemon
    }

    /// Tracks the PID of every running service.
    fn track(&mut self, status: &Status) {
        for pid in status.services.iter().filter_map(|s| s.pid) {
            if let Ok(Some(id)) = ProcessId::of(pid) {
                self.guard.track([id]);
            }
        }
    }

    /// Runs `hangwatch VERB ARGS -f CONFIG` to its end (bounded).
    fn hw(&self, args: &[&str]) -> Finished {
        let mut all: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        all.extend(["-f".as_ref(), self.config.as_os_str()]);
        run(all)
    }

    /// `status --json`, parsed.
    fn status(&mut self) -> Status {
        let out = self.hw(&["status", "--json"]);
        assert_eq!(out.code(), 0, "status failed:\n{}", out.stderr);
        let Reply::Status(status) = parse(&out.stdout) else {
            panic!("not a status: {}", out.stdout)
        };
        self.track(&status);
        status
    }

    fn service(&mut self, name: &str) -> ServiceStatus {
        self.status()
            .services
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no service {name}"))
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.file(".hangwatch")
    }
}

fn parse(json: &str) -> Reply {
    serde_json::from_str(json).unwrap_or_else(|err| panic!("not a reply ({err}): {json}"))
}

/// A service that runs until stopped.
fn sleeper(name: &str, secs: u32) -> String {
    format!(
        "[service.{name}]\ncommand = [\"{}\", \"sleep\", \"{secs}\"]\n",
        fixture().display()
    )
}

#[test]
fn detach_returns_with_services_started_and_status_shows_them() {
    let mut daemon = Daemon::start(&format!("{}{}", sleeper("db", 60), sleeper("web", 60)));
    let status = daemon.status();
    assert_eq!(status.pid, daemon.pid.pid);
    assert_eq!(status.config, daemon.config);
    let names: Vec<&str> = status.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "web"]);
    for service in &status.services {
        assert_eq!(service.state, State::Ready, "{service:?}");
        assert!(service.pid.is_some(), "{service:?}");
    }
    // The daemon left our session: it leads a session of its own, with no terminal (fields
    // 6 and 7 of /proc/PID/stat, the 4th and 5th after the command name).
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.pid.pid)).expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .expect("stat fields");
    assert_eq!(fields[3], daemon.pid.pid.to_string(), "session: {stat}");
    assert_eq!(fields[4], "0", "no controlling terminal: {stat}");
    assert!(daemon.state_dir().join("hangwatch.log").exists());

    // The table: a header line about the supervisor, then aligned columns.
    let table = daemon.hw(&["status"]);
    assert_eq!(table.code(), 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with(&format!("hangwatch: pid {}, up ", daemon.pid.pid)),
        "{}",
        table.stdout
    );
    assert!(lines[1].starts_with("NAME"), "{}", table.stdout);
    let state_column = lines[1].find("STATE").expect("STATE column");
    for line in &lines[2..] {
        assert_eq!(
            &line[state_column..state_column + 5],
            "ready",
            "{}",
            table.stdout
        );
    }
    assert!(!table.stdout.contains('\x1b'), "no colour into a pipe");

    // One service, and an unknown one.
    let one = daemon.hw(&["status", "web"]);
    assert_eq!(one.code(), 0, "{}", one.stderr);
    assert_eq!(one.stdout.lines().count(), 3, "{}", one.stdout);
    let unknown = daemon.hw(&["status", "nope"]);
    assert_eq!(unknown.code(), 1);
    assert!(unknown.stderr.contains("nope"), "{}", unknown.stderr);

    // A second supervisor for the same state directory is refused by the first one's lock.
    let again = daemon.hw(&["up", "--detach"]);
    assert_eq!(again.code(), 125, "{}\n{}", again.stdout, again.stderr);
    assert!(
        again
            .stderr
            .to_lowercase()
            .contains(&format!("pid {})", daemon.pid.pid)),
        "{}",
        again.stderr
    );
    assert!(alive(&daemon.pid), "the first supervisor runs on");
}

#[test]
fn a_closed_stdout_is_a_clean_exit() {
    let daemon = Daemon::start(&sleeper("db", 60));
    // A pipe whose reader is gone before hangwatch writes: its write fails with EPIPE.
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = Command::new(hangwatch())
        .args(["status", "-f"])
        .arg(&daemon.config)
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run status");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // And as a user writes it.
    let shell = Command::new("bash")
        .arg("-c")
        .arg(r#"set -o pipefail; "$0" status -f "$1" | head -1 >/dev/null"#)
        .arg(hangwatch())
        .arg(&daemon.config)
        .output()
        .expect("run sh");
    assert!(shell.status.success());
    assert!(
        shell.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&shell.stderr)
    );
}

#[test]
fn stop_start_and_restart_move_the_service_and_change_its_pid() {
    let mut daemon = Daemon::start(&format!("{}{}", sleeper("db", 60), sleeper("web", 60)));
    let first = daemon.service("web");
    let first_pid = ProcessId::of(first.pid.expect("pid"))
        .expect("/proc")
        .expect("alive");

    let stop = daemon.hw(&["stop", "web"]);
    assert_eq!(stop.code(), 0, "{}", stop.stderr);
    assert_eq!(stop.stdout, "web: stopped\n");
    assert!(
        !alive(&first_pid),
        "the old program is gone once stop returns"
    );
    assert_eq!(daemon.service("web").state, State::Stopped);
    assert_eq!(
        daemon.service("db").state,
        State::Ready,
        "the others run on"
    );

    let start = daemon.hw(&["start", "web"]);
    assert_eq!(start.code(), 0, "{}", start.stderr);
    let second = daemon.service("web");
    let second_pid = second.pid.expect("running again");
    assert_ne!(second_pid, first_pid.pid);
    assert_eq!(start.stdout, format!("web: ready (pid {second_pid})\n"));

    let restart = daemon.hw(&["restart", "web", "--json"]);
    assert_eq!(restart.code(), 0, "{}", restart.stderr);
    let Reply::Service(third) = parse(&restart.stdout) else {
        panic!("not a service: {}", restart.stdout)
    };
    assert_eq!(third.state, State::Ready);
    let third_pid = third.pid.expect("running");
    assert_ne!(third_pid, second_pid);
    daemon.status();

    let unknown = daemon.hw(&["stop", "nope"]);
    assert_eq!(unknown.code(), 1);
    assert!(unknown.stderr.contains("nope"), "{}", unknown.stderr);
    assert!(unknown.stdout.is_empty());
}

#[test]
fn diagnose_by_name_answers_with_text_and_keeps_an_incident() {
    let mut daemon = Daemon::start(&sleeper("db", 60));
    let pid = daemon.service("db").pid.expect("running");
    let incidents = daemon.state_dir().join("incidents");
    let before = std::fs::read_dir(&incidents).map_or(0, Iterator::count);

    let text = daemon.hw(&["diagnose", "db"]);
    assert_eq!(text.code(), 0, "{}", text.stderr);
    assert!(text.stdout.contains(&pid.to_string()), "{}", text.stdout);
    let after = std::fs::read_dir(&incidents).map_or(0, Iterator::count);
    assert!(
        after > before,
        "no incident file in {}",
        incidents.display()
    );
    assert_eq!(daemon.service("db").pid, Some(pid), "not stopped");

    let json = daemon.hw(&["diagnose", "db", "--json", "--sample", "50ms"]);
    assert_eq!(json.code(), 0, "{}", json.stderr);
    let Reply::Diagnosis(diagnosis) = parse(&json.stdout) else {
        panic!("not a diagnosis: {}", json.stdout)
    };
    assert_eq!(diagnosis.service, "db");
    let path = diagnosis.incident.text_path.expect("an incident file");
    assert!(Path::new(&path).exists(), "{path}");

    // A PID is still diagnosed directly.
    let direct = run(["diagnose", &pid.to_string(), "--sample", "50ms"]);
    assert_eq!(direct.code(), 0, "{}", direct.stderr);
    let unknown = daemon.hw(&["diagnose", "nope"]);
    assert_eq!(unknown.code(), 1, "{}", unknown.stderr);
}

#[test]
fn reload_restarts_the_changed_starts_the_added_and_rejects_a_broken_config() {
    let mut daemon = Daemon::start(&format!("{}{}", sleeper("same", 60), sleeper("edited", 60)));
    let same = daemon.service("same").pid.expect("running");
    let edited = daemon.service("edited").pid.expect("running");

    let config = format!(
        "{}{}{}",
        sleeper("same", 60),
        sleeper("edited", 61),
        sleeper("added", 60)
    );
    std::fs::write(&daemon.config, config).expect("write config");
    let reload = daemon.hw(&["reload"]);
    assert_eq!(reload.code(), 0, "{}", reload.stderr);
    assert!(
        reload.stdout.contains("added:     added\n"),
        "{}",
        reload.stdout
    );
    assert!(
        reload.stdout.contains("changed:   edited\n"),
        "{}",
        reload.stdout
    );
    assert!(
        reload.stdout.contains("unchanged: same\n"),
        "{}",
        reload.stdout
    );
    assert!(
        reload.stdout.contains("removed:   -\n"),
        "{}",
        reload.stdout
    );
    let status = daemon.status();
    let pid_of = |name: &str| {
        status
            .services
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.pid)
    };
    assert_eq!(pid_of("same"), Some(same), "unchanged: not touched");
    assert!(
        pid_of("edited").is_some_and(|pid| pid != edited),
        "changed: restarted"
    );
    assert!(pid_of("added").is_some(), "added: started");

    // A broken config: each error with its position, exit 125 as `check`, nothing changed.
    std::fs::write(
        &daemon.config,
        format!("{}[service.oops]\nrestrat = 1\n", sleeper("same", 60)),
    )
    .expect("write config");
    let broken = daemon.hw(&["reload"]);
    assert_eq!(broken.code(), 125, "{}\n{}", broken.stdout, broken.stderr);
    let position = format!("{}:", daemon.config.display());
    let diagnostic = broken
        .stderr
        .lines()
        .find(|line| line.contains(&position))
        .unwrap_or_else(|| panic!("no file:line:column in:\n{}", broken.stderr));
    let rest = diagnostic.split_once(&position).expect("position").1;
    let mut numbers = rest.split(':').take(2).map(str::parse::<u32>);
    assert!(
        matches!((numbers.next(), numbers.next()), (Some(Ok(_)), Some(Ok(_)))),
        "{diagnostic}"
    );
    let unchanged = daemon.status();
    let names: Vec<&str> = unchanged.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["same", "edited", "added"]);
    assert!(unchanged.services.iter().all(|s| s.state == State::Ready));
}

#[test]
fn down_kills_what_ignores_term_and_reports_it() {
    let config = format!(
        "shutdown_timeout = \"10s\"\n{}[service.stubborn]\ncommand = [\"{}\", \"ignore-term\", \"60\"]\nstop_grace = \"500ms\"\n",
        sleeper("polite", 60),
        fixture().display()
    );
    let mut daemon = Daemon::start(&config);
    let status = daemon.status();
    let ids: Vec<ProcessId> = status
        .services
        .iter()
        .filter_map(|s| ProcessId::of(s.pid?).ok().flatten())
        .collect();
    assert_eq!(ids.len(), 2);

    let started = Instant::now();
    let down = daemon.hw(&["down"]);
    let took = started.elapsed();
    assert_eq!(down.code(), 0, "{}", down.stderr);
    assert!(
        down.stdout.contains("stopped cleanly: polite\n"),
        "{}",
        down.stdout
    );
    assert!(
        down.stdout.contains("killed: stubborn\n"),
        "{}",
        down.stdout
    );
    assert!(
        took < Duration::from_secs(8),
        "down took {took:?}, past the 500 ms grace by far"
    );
    // The supervisor's reply comes just before it exits: bounded wait for its end.
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(&daemon.pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(&daemon.pid), "the supervisor ended");
    for id in &ids {
        assert!(!alive(id), "{id} survived down");
    }
    let after = daemon.hw(&["status"]);
    assert_eq!(after.code(), 1);
    assert!(
        after.stderr.contains("no hangwatch is running for"),
        "{}",
        after.stderr
    );
}

#[test]
fn without_a_supervisor_every_verb_says_so() {
    let dir = Scratch::new("control-none");
    let state = dir.file("state");
    for verb in [
        &["status"][..],
        &["stop", "web"],
        &["down"],
        &["reload"],
        &["diagnose", "web"],
    ] {
        let mut args: Vec<&std::ffi::OsStr> = verb.iter().map(|a| a.as_ref()).collect();
        args.extend(["--state".as_ref(), state.as_os_str()]);
        let out = run(args);
        assert_eq!(out.code(), 1, "{verb:?}: {}", out.stderr);
        assert_eq!(
            out.stderr,
            format!(
                "hangwatch: no hangwatch is running for {}\n",
                state.display()
            ),
            "{verb:?}"
        );
    }
}

#[test]
fn a_client_of_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipped: needs root to run a client as nobody");
        return;
    }
    let Some(setpriv) = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        println!("skipped: setpriv is not installed");
        return;
    };
    let daemon = Daemon::start(&sleeper("db", 60));
    // The binary may sit under a directory nobody cannot enter: run a copy from the scratch
    // directory, which (like the state directory) is traversable by everyone.
    let binary = daemon.dir.file("hangwatch");
    std::fs::copy(hangwatch(), &binary).expect("copy the binary");
    let out = Command::new(setpriv)
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&binary)
        .args(["status", "--state"])
        .arg(daemon.state_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("setresuid") || stderr.contains("unknown user") {
        println!("skipped: setpriv cannot become nobody here: {stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("permission denied"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// Each program's clocks (its uptime, its watchdog deadline) start when it was spawned, not when
/// its start level began: a level of many services takes a while to spawn, and the last one
/// must get its whole watchdog bound (the soak saw healthy services stall at start on a busy
/// machine because of this).
#[test]
fn issue_18_each_start_of_a_level_has_its_own_clock() {
    const N: usize = 60;
    let mut config = String::new();
    for i in 0..N {
        config.push_str(&sleeper(&format!("s{i}"), 60));
        config.push_str("watchdog = \"60s\"\n");
    }
    let mut daemon = Daemon::start(&config);
    let status = daemon.status();
    let first = &status.services[0];
    let last = &status.services[N - 1];
    // The spawns of the 59 services between them took at least a millisecond: the first has
    // run longer, and waited longer for its first WATCHDOG=1, than the last.
    assert!(
        first.uptime_ms > last.uptime_ms,
        "uptime of the first {:?} ms, of the last {:?} ms",
        first.uptime_ms,
        last.uptime_ms
    );
    let age = |s: &ServiceStatus| s.heartbeat.as_ref().expect("a watchdog").age_ms;
    assert!(
        age(first) > age(last),
        "heartbeat age of the first {} ms, of the last {} ms",
        age(first),
        age(last)
    );
    let down = daemon.hw(&["down"]);
    assert_eq!(down.code(), 0, "{}", down.stderr);
}

/// Every stop whose grace runs out says so in a `killing` event before the `exited` that lists
/// the processes killed, even when the look at the survivors comes back late: here a flood of
/// output keeps the supervisor's loop busy (the soak saw such `KILL`s go unsaid).
#[test]
fn issue_18_a_kill_is_said_even_when_the_look_comes_back_late() {
    let mut daemon = Daemon::start(
        "[service.flood]\ncommand = \"trap '' TERM; exec yes\"\nshell = true\nstop_grace = \"100ms\"\n",
    );
    for _ in 0..2 {
        let out = daemon.hw(&["restart", "flood"]);
        assert_eq!(out.code(), 0, "restart failed:\n{}", out.stderr);
    }
    daemon.status();
    let log =
        std::fs::read_to_string(daemon.state_dir().join("events.jsonl")).expect("read events");
    let (mut kills, mut said) = (0, false);
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("an event");
        match event["event"].as_str() {
            Some("stopping") => said = false,
            Some("killing") => said = true,
            Some("exited") if event["killed"].as_array().is_some_and(|k| !k.is_empty()) => {
                kills += 1;
                assert!(said, "a KILL without a killing event before it:\n{log}");
            }
            _ => {}
        }
    }
    assert_eq!(kills, 2, "{log}");
}
