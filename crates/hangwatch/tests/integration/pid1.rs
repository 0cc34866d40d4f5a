//! hangwatch as a container's entrypoint: PID 1 of its own PID namespace (made here with
//! `unshare --pid --fork --mount-proc`, as a container runtime does). The kernel delivers to PID
//! 1 only the signals it has a handler for, and every orphan in the namespace becomes its
//! child: it must reap them all, and turn SIGTERM into its bounded shutdown.

use std::time::{Duration, Instant};

use hangwatch_process::{ProcessId, Signal};
use hangwatch_protocol::event::{Event, EventRecord};

use crate::harness::{Hangwatch, Scratch, exists, fixture};

/// hangwatch's PID as seen from here: the one child of `unshare`.
fn pid1_of(unshare: &Hangwatch) -> ProcessId {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid = unshare.id().pid;
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(child) = children.split_whitespace().next()
            && let Ok(child) = child.parse::<i32>()
            && let Ok(Some(id)) = ProcessId::of(child)
        {
            return id;
        }
        assert!(Instant::now() < deadline, "unshare started no child");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The children of `pid` that are zombies (exited, not reaped).
fn zombie_children(pid: i32) -> Vec<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<i32>().ok())
        .filter(|c| {
            std::fs::read_to_string(format!("/proc/{c}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(')')
                        .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .collect()
}

fn unshare_works() -> bool {
    std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

fn events_of(stdout: &str) -> Vec<EventRecord> {
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[test]
fn as_pid1_up_reaps_every_orphan_and_sigterm_is_a_bounded_shutdown() {
    if !unshare_works() {
        eprintln!("SKIPPED: cannot make a PID namespace here (needs root or user namespaces)");
        return;
    }
    let dir = Scratch::new("pid1-up");
    let fx = fixture();
    std::fs::write(
        dir.file("hangwatch.toml"),
        format!(
            r#"state_dir = "state"
shutdown_timeout = "10s"

[service.stubborn]
command = ["{fx}", "ignore-term", "300"]
stop_grace = "1s"

[service.orphaner]
command = ["sh", "-c", "while :; do (sleep 0.05 &); sleep 0.1; done"]
stop_grace = "1s"
"#,
            fx = fx.display()
        ),
    )
    .expect("write config");
    let mut hw = Hangwatch::start_as_pid1([
        "up".as_ref(),
        "--json".as_ref(),
        "-f".as_ref(),
        dir.file("hangwatch.toml").as_os_str(),
    ]);
    hw.wait_for(Duration::from_secs(15), |line| {
        line.contains("\"started\"") && line.contains("orphaner")
    });
    let init = pid1_of(&hw);
    // Orphans from outside every service too: a process entering the namespace (as `docker
    // exec` does) whose child outlives it becomes PID 1's child.
    let entered = std::process::Command::new("nsenter")
        .args(["--target", &init.pid.to_string(), "--pid", "--mount"])
        .args(["sh", "-c", "(sleep 0.1 &); (sleep 0.2 &)"])
        .status()
        .expect("nsenter");
    assert!(entered.success());
    // The orphans exit every 100 ms or so; none stays a zombie beyond a moment.
    std::thread::sleep(Duration::from_millis(600));
    let mut lingering = zombie_children(init.pid);
    if !lingering.is_empty() {
        // One may have exited just now: a zombie of a moment is reaped at the next SIGCHLD.
        std::thread::sleep(Duration::from_millis(300));
        lingering.retain(|z| zombie_children(init.pid).contains(z));
    }
    assert!(lingering.is_empty(), "zombies left unreaped: {lingering:?}");

    let began = Instant::now();
    let pidfd = hangwatch_process::pidfd::PidFd::open(init)
        .expect("pidfd")
        .expect("hangwatch alive");
    pidfd.send(Signal::TERMINATE).expect("SIGTERM to PID 1");
    let finished = hw.finish();
    let took = began.elapsed();
    assert_eq!(
        finished.code(),
        0,
        "a requested shutdown is a clean exit:\n{}",
        finished.stderr
    );
    assert!(
        took < Duration::from_secs(10),
        "the shutdown is bounded by shutdown_timeout: {took:?}"
    );
    let events = events_of(&finished.stdout);
    let down = events
        .iter()
        .find_map(|e| match &e.event {
            Event::Down { killed, .. } => Some(killed.clone()),
            _ => None,
        })
        .expect("down event");
    assert_eq!(down, vec!["stubborn".to_owned()], "{events:#?}");
    assert!(!exists(&init), "PID 1 has exited");
}

#[test]
fn as_pid1_run_times_out_and_exits_124() {
    if !unshare_works() {
        eprintln!("SKIPPED: cannot make a PID namespace here (needs root or user namespaces)");
        return;
    }
    let fx = fixture();
    let hw = Hangwatch::start_as_pid1([
        "run".as_ref(),
        "--timeout".as_ref(),
        "500ms".as_ref(),
        "--grace".as_ref(),
        "500ms".as_ref(),
        "--".as_ref(),
        fx.as_os_str(),
        "ignore-term".as_ref(),
        "300".as_ref(),
    ]);
    let finished = hw.finish();
    assert_eq!(finished.code(), 124, "{}", finished.stderr);
    assert!(
        finished.stderr.contains("KILL") || finished.stderr.contains("killed"),
        "the TERM-ignoring program is killed after the grace:\n{}",
        finished.stderr
    );
}
