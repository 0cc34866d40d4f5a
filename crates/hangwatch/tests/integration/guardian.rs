//! Issue 15: a SIGKILLed hangwatch leaves no survivor. Its guardian kills, within a second,
//! every process carrying the run's or instance's token: grandchildren, `setsid` daemons and
//! TERM-ignorers alike; and the guardian itself is gone afterwards, and after a normal exit.

use std::time::{Duration, Instant};

use hangwatch_process::{ProcessId, Signal};
use hangwatch_protocol::event::Event;

use crate::harness::{
    Guard, Hangwatch, Scratch, Up, fixture, read_pids, tagged_alive, wait_untagged,
};

/// What the issue promises: nothing alive one second after hangwatch's death.
const WITHIN: Duration = Duration::from_secs(1);

/// The `NAME=value` entry of `name` in the environment of `pid`.
fn env_entry(pid: i32, name: &str) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("read environ");
    environ
        .split(|&b| b == 0)
        .map(String::from_utf8_lossy)
        .find(|entry| entry.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in the environment of {pid}"))
        .into_owned()
}

/// Waits (bounded) until `path` lists `n` processes.
fn wait_pids(path: &std::path::Path, n: usize) -> Vec<ProcessId> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = read_pids(path);
        if pids.len() >= n {
            return pids;
        }
        assert!(
            Instant::now() < deadline,
            "{} never had {n} lines",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until hangwatch is dead (a zombie of the test at most); returns when.
fn wait_dead(hw: &Hangwatch) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::harness::alive(&hw.id()) {
        assert!(
            Instant::now() < deadline,
            "hangwatch did not die of SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Instant::now()
}

#[test]
fn issue_15_a_sigkilled_run_leaves_no_survivor() {
    let dir = Scratch::new("guard-run");
    let fx = fixture();
    let tree = dir.file("tree.pids");
    let escaped = dir.file("escaped.pids");
    let script = format!(
        "{fx} tree 5 {tree} 300 & {fx} double-fork {escaped} 300 --stay 300 & \
         {fx} ignore-term 300 & wait",
        fx = fx.display(),
        tree = tree.display(),
        escaped = escaped.display()
    );
    let mut hw = Hangwatch::start(["run", "--", "sh", "-c", &script]);
    let mut guard = Guard::default();
    guard.track([hw.id()]);
    let mut ready = Vec::new();
    for _ in 0..3 {
        let line = hw.wait_line("ready ");
        let pid: i32 = line["ready ".len()..].trim().parse().expect("ready PID");
        ready.extend(ProcessId::of(pid).expect("proc"));
    }
    guard.track(ready.clone());
    guard.track(wait_pids(&tree, 5));
    let daemon = wait_pids(&escaped, 1);
    guard.track(daemon.clone());
    let token = env_entry(daemon[0].pid, "HANGWATCH_RUN");
    let tag = hw.env_tag();
    assert!(
        tagged_alive(&tag)
            .iter()
            .any(|(_, comm)| comm == "hw-guardian"),
        "a guardian runs beside hangwatch: {:?}",
        tagged_alive(&tag)
    );

    // KILL to hangwatch's whole process group, as a terminal's or a runtime's group signal:
    // the guardian, in a session of its own, is not in it.
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(hw.id().pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill hangwatch's group");
    let died = wait_dead(&hw);
    let survivors = wait_untagged(&token, WITHIN.saturating_sub(died.elapsed()));
    assert!(
        survivors.is_empty(),
        "alive 1 s after hangwatch's death: {survivors:?}"
    );
    // The guardian too (it carries hangwatch's environment, not the run's token).
    let left = wait_untagged(&tag, WITHIN.saturating_sub(died.elapsed()));
    assert!(left.is_empty(), "still alive: {left:?}");
    guard.assert_none_alive();
    let finished = hw.finish();
    assert!(
        finished.status.code().is_none(),
        "hangwatch died of SIGKILL"
    );
}

#[test]
fn issue_15_a_sigkilled_up_leaves_no_survivor() {
    let dir = Scratch::new("guard-up");
    let fx = fixture();
    let tree = dir.file("tree.pids");
    let escaped = dir.file("escaped.pids");
    let stubborn = dir.file("stubborn.pid");
    let mut up = Up::start(
        &dir,
        &format!(
            r#"
[service.tree]
command = ["{fx}", "tree", "5", "{tree}", "300"]

[service.escaper]
command = ["{fx}", "double-fork", "{escaped}", "300", "--stay", "300"]

[service.stubborn]
command = ["sh", "-c", "{fx} ignore-term 300 & echo $! > {stubborn}; exec {fx} ignore-term 300"]
"#,
            fx = fx.display(),
            tree = tree.display(),
            escaped = escaped.display(),
            stubborn = stubborn.display(),
        ),
    );
    for name in ["tree", "escaper", "stubborn"] {
        up.wait(Duration::from_secs(10), |e| {
            e.service.as_deref() == Some(name) && matches!(e.event, Event::Started { .. })
        });
    }
    up.guard.track(wait_pids(&tree, 5));
    let daemon = wait_pids(&escaped, 1);
    up.guard.track(daemon.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let stubborn_child = loop {
        if let Some(pid) = std::fs::read_to_string(&stubborn)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            && let Ok(Some(id)) = ProcessId::of(pid)
        {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "the stubborn child never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    up.guard.track([stubborn_child]);
    let token = env_entry(daemon[0].pid, "HANGWATCH_INSTANCE");
    let tag = up.hw.env_tag();

    up.hw.signal(Signal::KILL);
    let died = wait_dead(&up.hw);
    let survivors = wait_untagged(&token, WITHIN.saturating_sub(died.elapsed()));
    assert!(
        survivors.is_empty(),
        "alive 1 s after hangwatch's death: {survivors:?}"
    );
    let left = wait_untagged(&tag, WITHIN.saturating_sub(died.elapsed()));
    assert!(left.is_empty(), "still alive: {left:?}");
    up.guard.assert_none_alive();
    let Up { hw, guard, .. } = up;
    let finished = hw.finish();
    assert!(
        finished.status.code().is_none(),
        "hangwatch died of SIGKILL"
    );
    guard.assert_none_alive();
}

#[test]
fn issue_15_after_a_normal_exit_the_guardian_is_gone() {
    let fx = fixture();
    let hw = Hangwatch::start(["run", "--", fx.to_str().expect("utf-8"), "exit", "3"]);
    let tag = hw.env_tag();
    let finished = hw.finish();
    assert_eq!(finished.code(), 3, "{}", finished.stderr);
    let left = wait_untagged(&tag, WITHIN);
    assert!(left.is_empty(), "alive after a normal exit: {left:?}");
}
