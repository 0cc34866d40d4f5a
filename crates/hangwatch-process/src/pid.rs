//! Process identity that survives PID reuse.

use std::fmt;
use std::io;

use crate::stat::{Stat, read_stat};

/// A process named by its PID *and* its start time.
///
/// A PID alone is reused by the kernel once its process is reaped; a recorded PID may name a
/// stranger a moment later. Pairing it with the start time (field 22 of `/proc/PID/stat`) makes
/// a stale identity detectable: [`ProcessId::is_alive`] and every signal sent through
/// [`crate::pidfd::PidFd`] check it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessId {
    /// The PID.
    pub pid: i32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of the live process `pid`, or `None` if there is none.
    pub fn of(pid: i32) -> io::Result<Option<ProcessId>> {
        Ok(read_stat(pid)?.map(|stat| ProcessId::from(&stat)))
    }

    /// Whether this very process still exists and has not exited (a zombie counts as exited).
    pub fn is_alive(&self) -> io::Result<bool> {
        Ok(read_stat(self.pid)?
            .is_some_and(|stat| stat.start_time == self.start_time && !stat.is_zombie()))
    }
}

impl From<&Stat> for ProcessId {
    fn from(stat: &Stat) -> Self {
        ProcessId {
            pid: stat.pid,
            start_time: stat.start_time,
        }
    }
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_identity_is_alive_and_a_wrong_start_time_is_not() {
        let me = ProcessId::of(std::process::id() as i32)
            .expect("read")
            .expect("present");
        assert!(me.is_alive().expect("read"));
        let stale = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!stale.is_alive().expect("read"));
    }
}
