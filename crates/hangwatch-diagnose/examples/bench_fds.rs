//! What [`open_fds`] costs on a 20-process tree: when every other end is inside the tree, and
//! when one must be found by searching every process on the machine.
//!
//! ```sh
//! cargo run --release -p hangwatch-diagnose --example bench_fds [-- RUNS]
//! ```
//!
//! The tree is ten pairs of processes: five `cat` reading a pipe whose write end a `sleep`
//! holds, and five pairs of `sleep` joined by a Unix socketpair. Each is started with only
//! its standard streams (a pipe or `/dev/null`), so nothing leaks outside the tree. The
//! second case asks about 19 of them plus one more `sleep` reading a pipe whose write end this
//! benchmark holds: both of those writers are outside the tree, so one search of the whole
//! machine runs.

use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_diagnose::fds::open_fds;

/// Starts `program` with every inherited descriptor but 0, 1 and 2 closed.
fn clean(program: &str, args: &[&str], stdin: Stdio, stdout: Stdio) -> Child {
    const LAUNCH: &str =
        "import os, sys; os.closerange(3, 1 << 20); os.execvp(sys.argv[1], sys.argv[1:])";
    Command::new("python3")
        .args(["-c", LAUNCH, program])
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
}

fn wait_exec(child: &Child, program: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = child.id();
    while !std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(program.as_bytes()))
    {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never exec'd {program}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Median, minimum and maximum of `runs` calls, in milliseconds; checks `searched` each time.
fn measure(pids: &[i32], runs: usize, searched: bool) -> (f64, f64, f64) {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let report = open_fds(pids);
            let elapsed = start.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(report.searched_system, searched, "{report:#?}");
            assert_eq!(report.processes.len(), pids.len());
            elapsed
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

/// Processes and descriptors on the machine now: what the system-wide search reads.
fn machine() -> (usize, usize) {
    let mut processes = 0;
    let mut fds = 0;
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.parse::<i32>().is_ok()) {
            processes += 1;
            fds += std::fs::read_dir(entry.path().join("fd")).map_or(0, |d| d.count());
        }
    }
    (processes, fds)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map_or(20, |n| n.parse().expect("RUNS is a number"));
    let mut children = Vec::new();
    for _ in 0..5 {
        let (read, write) = pipe();
        children.push((clean("cat", &[], Stdio::from(read), Stdio::null()), "cat"));
        children.push((
            clean("sleep", &["600"], Stdio::null(), Stdio::from(write)),
            "sleep",
        ));
    }
    for _ in 0..5 {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        for end in [a, b] {
            let stdin = Stdio::from(OwnedFd::from(end));
            children.push((clean("sleep", &["600"], stdin, Stdio::null()), "sleep"));
        }
    }
    // One more reader, whose write end this process keeps.
    let (read, _write) = pipe();
    let outsider = clean("sleep", &["600"], Stdio::from(read), Stdio::null());
    for (child, program) in &children {
        wait_exec(child, program);
    }
    wait_exec(&outsider, "sleep");

    let tree: Vec<i32> = children.iter().map(|(c, _)| c.id() as i32).collect();
    // The first writer left out, the outsider in: two ends to find outside the tree.
    let widened: Vec<i32> = tree[..1]
        .iter()
        .chain(&tree[2..])
        .copied()
        .chain([outsider.id() as i32])
        .collect();

    // Warm the page cache and the kernel's dentries as a second diagnosis would find them.
    let _ = open_fds(&tree);
    let (processes, fds) = machine();
    let inside = measure(&tree, runs, false);
    let outside = measure(&widened, runs, true);
    println!(
        "open_fds on a 20-process tree, {runs} runs each ({processes} processes and {fds} descriptors on the machine)"
    );
    println!(
        "  every other end in the tree:      median {:6.2} ms  (min {:.2}, max {:.2})",
        inside.0, inside.1, inside.2
    );
    println!(
        "  two ends found system-wide:       median {:6.2} ms  (min {:.2}, max {:.2})",
        outside.0, outside.1, outside.2
    );

    for (mut child, _) in children.into_iter().chain([(outsider, "sleep")]) {
        let _ = child.kill();
        let _ = child.wait();
    }
}
