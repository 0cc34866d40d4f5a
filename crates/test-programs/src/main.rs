//! `hw-fixture`: small programs that misbehave on purpose, for the integration
//! tests of hangwatch.
//!
//! One multi-call binary, `hw-fixture SUBCOMMAND ARGS...`. Each subcommand is a
//! shape of child process that a supervisor must handle:
//!
//! | subcommand | why it exists |
//! | --- | --- |
//! | `sleep SECS` | the well-behaved baseline: ready, sleep, exit 0 (SECS may be fractional) |
//! | `exit CODE` | exit codes are reported as-is, with no ready line |
//! | `kill-self SIG` | death by a signal (numeric SIG) is reported as such, not as an exit code |
//! | `ignore-term SECS` | SIGTERM is ignored, so only the SIGKILL step of the ladder stops it |
//! | `double-fork PIDFILE SECS [--stay SECS2]` | a daemonising grandchild escapes the group via `setsid` |
//! | `hold-stdout PIDFILE SECS` | a child keeps stdout/stderr open after the main process exits |
//! | `tree N PIDFILE SECS` | N processes several levels deep, for tree kill and tree snapshots |
//! | `signals OUTFILE [--exit-on NAME]` | records which signals arrive, to test forwarding and stop signals |
//! | `spawn-and-exit PIDFILE SECS` | a leftover stays in the process group after the leader exits |
//! | `busy SECS` | burns CPU, for CPU accounting and stall detection that must not fire |
//! | `notify BEATS INTERVAL` | a systemd-style service (the `sd-notify` crate): heartbeats, then a silent stall |
//! | `mutex-cycle` | two threads deadlock on two glibc mutexes taken in opposite order |
//! | `sysv-shm SIZE SECS [--attach]` | abandons a SysV shared memory segment (prints `ready <pid> <shmid>`) |
//!
//! # Conventions
//!
//! - Every subcommand except `exit` and `kill-self` prints `ready <pid>` on
//!   stdout and flushes it as soon as its setup is complete, so tests wait on
//!   an event and not on a sleep. `<pid>` is the PID of the process started.
//! - A PID file holds `<pid> <starttime>` (no trailing newline), where
//!   `<starttime>` is field 22 of `/proc/<pid>/stat`, so that a test can check
//!   the identity of a process before it signals it. It is written to
//!   `PIDFILE.tmp` and renamed, so a reader never sees it half-written. The
//!   file of `tree` is the exception: one such line per process, each ending
//!   in `\n`, appended with one `write(2)` each.
//! - Misuse prints the usage to stderr and exits 2; a failure at run time
//!   prints `hw-fixture: failed to ...` to stderr and exits 1.
//!
//! # Theory of operation
//!
//! Every subcommand that forks is single-threaded from start to end (only
//! `mutex-cycle` starts threads, and it never forks). That is why the children
//! created with `fork(2)` may go on running ordinary Rust code: no other thread
//! can hold a lock (the allocator's, stdout's) at the moment of the fork.
//! Bounded polls (every 5 ms, for a few seconds at most) wait for PID files;
//! this is acceptable in a fixture, never in the supervisor.
//!
//! # Caveats
//!
//! Linux only: start times come from `/proc`.

mod args;
mod cmd;
mod common;
mod sys;

use std::ffi::OsString;
use std::process::ExitCode;

use crate::args::Args;
use crate::common::Error;

/// The text printed for misuse.
const USAGE: &str = "\
usage: hw-fixture SUBCOMMAND ARGS...
subcommands:
  sleep SECS
  exit CODE
  kill-self SIG
  ignore-term SECS
  double-fork PIDFILE SECS [--stay SECS2]
  hold-stdout PIDFILE SECS
  tree N PIDFILE SECS
  signals OUTFILE [--exit-on NAME]
  spawn-and-exit PIDFILE SECS
  busy SECS
  notify BEATS INTERVAL
  mutex-cycle
  sysv-shm SIZE SECS [--attach]
SECS may be fractional; SIG is a signal number; NAME is INT, TERM, HUP, QUIT,
USR1, USR2 or WINCH.";

/// Exit code for misuse (bad arguments), as in most Unix tools.
const EXIT_USAGE: u8 = 2;

/// Exit code for a failure at run time.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let mut argv = std::env::args_os().skip(1);
    let Some(subcommand) = argv.next() else {
        return usage_error("missing subcommand");
    };
    let args = Args::new(argv.collect());
    match run(&subcommand, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(message)) => usage_error(&message),
        Err(error) => {
            eprintln!("hw-fixture: failed to {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(subcommand: &OsString, args: Args) -> Result<(), Error> {
    let Some(subcommand) = subcommand.to_str() else {
        return Err(Error::Usage(format!("unknown subcommand {subcommand:?}")));
    };
    match subcommand {
        "sleep" => cmd::sleep::run(args),
        "exit" => cmd::exit::run(args),
        "kill-self" => cmd::kill_self::run(args),
        "ignore-term" => cmd::ignore_term::run(args),
        "double-fork" => cmd::double_fork::run(args),
        "hold-stdout" => cmd::hold_stdout::run(args),
        "tree" => cmd::tree::run(args),
        "signals" => cmd::signals::run(args),
        "spawn-and-exit" => cmd::spawn_and_exit::run(args),
        "busy" => cmd::busy::run(args),
        "notify" => cmd::notify::run(args),
        "mutex-cycle" => cmd::mutex_cycle::run(args),
        "sysv-shm" => cmd::sysv_shm::run(args),
        other => Err(Error::Usage(format!("unknown subcommand {other:?}"))),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("hw-fixture: {message}\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}
