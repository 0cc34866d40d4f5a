//! Reaping: the one place where hangwatch collects exit statuses.
//!
//! Two reapers steal from each other (a `waitpid(-1)` consumes the status another waiter
//! expects), so hangwatch never uses `tokio::process` or `std::process::Child::wait`: children are
//! spawned with std and reaped only here, by the event loop, after each `SIGCHLD`. Because
//! hangwatch is a subreaper, orphaned descendants are re-parented to it and reaped here too.
//! `SIGCHLD` coalesces, so [`reap_exited`] loops until nothing is left.

use std::io;

use hangwatch_protocol::report::ProgramStatus;
use nix::errno::Errno;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};

use crate::signal::Signal;
use crate::sys;

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Exited(i32),
    /// It died of a signal.
    Signalled {
        /// The signal number.
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
}

impl ExitStatus {
    /// The status as a shell reports it: the exit code, or `128 + N` for signal `N`.
    #[must_use]
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signalled { signal, .. } => {
                hangwatch_protocol::exit_code::for_signal(signal)
            }
        }
    }

    /// The status as recorded in reports.
    #[must_use]
    pub fn to_record(self) -> ProgramStatus {
        match self {
            ExitStatus::Exited(code) => ProgramStatus::Exited { code },
            ExitStatus::Signalled {
                signal,
                core_dumped,
            } => ProgramStatus::Signalled {
                signal,
                name: Signal::from_number(signal)
                    .map_or_else(|| signal.to_string(), |s| s.name().to_owned()),
                core_dumped,
            },
        }
    }
}

/// Makes this process a child subreaper, so escaped descendants come back to it.
pub fn become_subreaper() -> io::Result<()> {
    sys::become_subreaper()
}

/// Reaps every child that has exited, without blocking.
///
/// Returns `(pid, status)` for each. Call it after every `SIGCHLD`; signals coalesce, so one
/// call may reap several children.
pub fn reap_exited() -> io::Result<Vec<(i32, ExitStatus)>> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                reaped.push((pid.as_raw(), ExitStatus::Exited(code)))
            }
            Ok(WaitStatus::Signaled(pid, signal, core_dumped)) => reaped.push((
                pid.as_raw(),
                ExitStatus::Signalled {
                    signal: signal as i32,
                    core_dumped,
                },
            )),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(reaped),
            // Stops and continues are not requested; skip anything else and keep reaping.
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}

/// Whether this process has any child at all, running or waiting to be reaped.
///
/// With the subreaper set, "no child" means "no descendant": an orphan is re-parented to us
/// before its parent's exit is reported, so this is the proof that nothing was left behind.
pub fn has_children() -> io::Result<bool> {
    match waitid(
        Id::All,
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT | WaitPidFlag::__WALL,
    ) {
        Ok(_) => Ok(true),
        Err(Errno::ECHILD) => Ok(false),
        Err(Errno::EINTR) => has_children(),
        Err(err) => Err(err.into()),
    }
}
