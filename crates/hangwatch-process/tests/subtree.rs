//! [`ProcessTable::subtree`] against a real tree below this test process, which makes itself a
//! subreaper as `hangwatch up` does: a program in a group of its own with a child and a
//! grandchild, a `setsid` double-fork escapee adopted by this process, and a child forked by
//! another thread of this process.
//!
//! One test in this file: the tree is every child of this process. Every wait has a deadline;
//! every process started is killed through a start-time-checked pidfd and reaped.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_process::pidfd::PidFd;
use hangwatch_process::reap::become_subreaper;
use hangwatch_process::tree::ProcessTable;
use hangwatch_process::{ProcessId, Scope, Signal};
use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, waitpid};

const DEADLINE: Duration = Duration::from_secs(10);

/// Prints `LABEL PID` for each process it makes, then `ready`, and waits. The escapee's parent
/// exits at once, so the escapee is adopted by this test process.
const SCRIPT: &str = r#"
sleep 60 >/dev/null 2>&1 &
echo child $!
sh -c 'sleep 60 >/dev/null 2>&1 & echo grand $!; wait' &
echo mid $!
setsid sh -c 'sleep 60 >/dev/null 2>&1 & echo escapee $!'
echo ready
wait
"#;

/// Kills every process it was given (by PID and start time) and reaps this process's
/// children, bounded, even when the test fails half-way.
#[derive(Default)]
struct Cleanup(Vec<ProcessId>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.0 {
            if let Ok(Some(pidfd)) = PidFd::open(*id) {
                let _ = pidfd.send(Signal::KILL);
            }
        }
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Err(Errno::ECHILD) => return,
                Ok(nix::sys::wait::WaitStatus::StillAlive) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => {}
            }
        }
    }
}

fn id_of(pid: i32) -> ProcessId {
    ProcessId::of(pid)
        .expect("read stat")
        .expect("process alive")
}

#[test]
fn the_subtree_holds_every_descendant_and_nothing_else() {
    become_subreaper().expect("become a subreaper");
    let me = std::process::id() as i32;
    let marker = format!("HANGWATCH_ID=subtree-test/{me}");
    let mut cleanup = Cleanup::default();

    let mut program = Command::new("sh")
        .args(["-c", SCRIPT])
        .env("HANGWATCH_ID", format!("subtree-test/{me}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let main = program.id() as i32;
    cleanup.0.push(id_of(main));
    let stdout = program.stdout.take().expect("stdout");
    // Reaping is this test's own (through `Cleanup`), never std's.
    drop(program);

    // A child forked by another thread is listed under that thread's children file; the thread
    // waits until the table is read.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (forked_tx, forked_rx) = std::sync::mpsc::channel();
    let forker = std::thread::spawn(move || {
        let child = Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .expect("spawn sleep from a thread");
        let _ = forked_tx.send(child.id() as i32);
        drop(child);
        let _ = released.recv_timeout(DEADLINE);
    });
    let threaded = forked_rx.recv_timeout(DEADLINE).expect("thread forked");
    cleanup.0.push(id_of(threaded));

    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut pids: HashMap<String, i32> = HashMap::new();
    let mut ready = false;
    while !(ready && pids.len() == 4) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left)
            .expect("the script's PIDs in time");
        match line.split_once(' ') {
            Some((label, pid)) => {
                let pid: i32 = pid.parse().expect("a PID");
                cleanup.0.push(id_of(pid));
                pids.insert(label.to_owned(), pid);
            }
            None if line == "ready" => ready = true,
            None => panic!("unexpected line {line:?}"),
        }
    }

    let table = ProcessTable::subtree(me).expect("read the subtree");
    let _ = release.send(());
    let all: BTreeSet<i32> = [me, main, threaded]
        .into_iter()
        .chain(pids.values().copied())
        .collect();
    let found: BTreeSet<i32> = all
        .iter()
        .copied()
        .filter(|pid| table.get(*pid).is_some())
        .collect();
    assert_eq!(found, all, "every process of the tree is in the table");
    let descendants: BTreeSet<i32> = table.descendants(me).iter().map(|s| s.pid).collect();
    let expected: BTreeSet<i32> = all.iter().copied().filter(|pid| *pid != me).collect();
    assert_eq!(descendants, expected, "nothing but the tree below the root");
    assert!(table.get(1).is_none(), "PID 1 is not below this process");
    let parent = nix::unistd::getppid().as_raw();
    assert!(table.get(parent).is_none(), "the parent is not below it");

    // The escapee left the group and was adopted, and is still found by its environment.
    let escapee = table.get(pids["escapee"]).expect("escapee");
    assert_eq!(escapee.ppid, me, "adopted by the subreaper");
    assert_ne!(escapee.pgrp, main, "out of the program's group");
    let scope = Scope::Service {
        adopter: me,
        group: main,
        marker: marker.into_bytes(),
    };
    let in_scope: BTreeSet<i32> = scope.pids(&table).into_iter().collect();
    let service: BTreeSet<i32> = expected
        .iter()
        .copied()
        .filter(|pid| *pid != threaded)
        .collect();
    assert_eq!(
        in_scope, service,
        "the service's processes, escapee included"
    );

    // The same answers as a full scan gives.
    let scan = ProcessTable::scan().expect("scan /proc");
    let scanned: BTreeSet<i32> = scan.descendants(me).iter().map(|s| s.pid).collect();
    assert_eq!(scanned, descendants);
    let _ = forker.join();
}
