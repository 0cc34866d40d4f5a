//! A handle on one process that a reused PID cannot fool.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::pid::ProcessId;
use crate::signal::Signal;
use crate::stat::read_stat;
use crate::sys;

/// A pidfd bound to a verified [`ProcessId`].
///
/// Opening checks the start time *after* the fd exists: if it still matches, the fd refers to
/// the process that was recorded, and every later signal through it reaches that process or
/// nothing. The fd becomes readable when the process exits, which is how a stop waits for a
/// whole tree without polling.
#[derive(Debug)]
pub struct PidFd {
    id: ProcessId,
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd for `id`. `Ok(None)` when that process is gone (or its PID now names
    /// another process).
    pub fn open(id: ProcessId) -> io::Result<Option<PidFd>> {
        let fd = match sys::pidfd_open(id.pid) {
            Ok(fd) => fd,
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(err) => return Err(err),
        };
        match read_stat(id.pid)? {
            Some(stat) if stat.start_time == id.start_time => Ok(Some(PidFd { id, fd })),
            _ => Ok(None),
        }
    }

    /// The process this fd refers to.
    #[must_use]
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// Sends `signal`. `Ok(false)` when the process has already exited.
    pub fn send(&self, signal: Signal) -> io::Result<bool> {
        match sys::pidfd_send_signal(self.fd.as_fd(), signal.number()) {
            Ok(()) => Ok(true),
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(err) => Err(err),
        }
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
