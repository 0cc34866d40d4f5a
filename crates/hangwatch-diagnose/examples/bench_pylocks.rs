//! What naming a Python lock's holder costs: the stacks read without and with local variables,
//! and the two scans of the writable memory for the lock object and its bound methods.
//!
//! ```sh
//! cargo run --release -p hangwatch-diagnose --example bench_pylocks [-- RUNS]
//! ```
//!
//! The target is `tests/programs/python_locks.py holder-sleeps` under `python3`: one thread
//! sleeps inside `with lock:`, the main thread waits to enter it.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hangwatch_diagnose::memory::Memory;
use hangwatch_diagnose::pylocks::{find_locks, scannable_regions};
use hangwatch_diagnose::python::{dump, dump_with_locals};
use hangwatch_diagnose::syscall::{SyscallLine, parse_line};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let began = Instant::now();
                std::hint::black_box(f());
                began.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/programs/python_locks.py"
    );
    let mut child = Command::new("python3")
        .args([script, "holder-sleeps"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let pid = child.id() as i32;
    // The main thread blocks on the lock's semaphore a moment after `ready`.
    let deadline = Instant::now() + Duration::from_secs(10);
    let futex = loop {
        let text = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if let Some(SyscallLine::In { nr, args }) = parse_line(&text)
            && nr == libc::SYS_futex
        {
            break args[0];
        }
        assert!(Instant::now() < deadline, "the main thread never blocked");
        std::thread::sleep(Duration::from_millis(10));
    };
    let memory = Memory::of(pid);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let scanned: u64 = scannable_regions(&maps).iter().map(|(s, e)| e - s).sum();
    let futexes = HashSet::from([futex]);
    let (found, _) = find_locks(&memory, &maps, &futexes);
    assert_eq!(found.len(), 1, "the lock is found");

    let stacks = time(runs, || dump(pid));
    let with_locals = time(runs, || dump_with_locals(pid));
    let scans = time(runs, || find_locks(&memory, &maps, &futexes));
    println!("python3 holder-sleeps, {runs} runs, medians:");
    println!("  stacks                     {stacks:>10.2?}");
    println!("  stacks with locals         {with_locals:>10.2?}");
    println!(
        "  lock scans ({:.1} MiB x 2)  {scans:>10.2?}",
        scanned as f64 / f64::from(1 << 20)
    );
    let _ = child.kill();
    let _ = child.wait();
}
