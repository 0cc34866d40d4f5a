//! Prints the Python stacks of a process as JSON, and how long reading them took.
//!
//! ```sh
//! cargo run --release -p hangwatch-diagnose --example python_dump -- PID [REPEAT]
//! ```
//!
//! Reads the stacks REPEAT times (default 1), prints the last dump on stdout and one line
//! `{"dump_ms": [...]}` on stderr, for `scripts/bench_python_dump.py`.

use std::process::ExitCode;
use std::time::Instant;

use hangwatch_diagnose::python::dump;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(pid), repeat) = (
        args.next().and_then(|pid| pid.parse::<i32>().ok()),
        args.next()
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(1),
    ) else {
        eprintln!("usage: python_dump PID [REPEAT]");
        return ExitCode::from(2);
    };
    let mut times_ms = Vec::with_capacity(repeat);
    let mut last = None;
    for _ in 0..repeat {
        let start = Instant::now();
        let result = dump(pid);
        times_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        last = Some(result);
    }
    eprintln!("{}", serde_json::json!({ "dump_ms": times_ms }));
    match last {
        Some(Ok(dumped)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&dumped).expect("a dump serialises")
            );
            ExitCode::SUCCESS
        }
        Some(Err(err)) => {
            eprintln!("python_dump: failed to {err}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    }
}
