//! Waiting for any of many processes to exit, as one file descriptor.

use std::io;

use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
use tokio::io::unix::AsyncFd;

use crate::pidfd::PidFd;
use crate::sys::{self, EpollFd};

/// An epoll set of pidfds, itself registered with the tokio reactor.
///
/// A pidfd becomes readable when its process exits, so one await covers a whole tree of any
/// size. Remove a pidfd (or close it) once its exit was seen, or the set stays readable.
#[derive(Debug)]
pub struct ExitWatch {
    inner: AsyncFd<EpollFd>,
}

impl ExitWatch {
    /// An empty set. Must be called inside a tokio runtime.
    pub fn new() -> io::Result<ExitWatch> {
        Ok(ExitWatch {
            inner: sys::async_epoll()?,
        })
    }

    /// Watches `pidfd`; its PID comes back from [`ExitWatch::exited`] once it exits.
    pub fn add(&self, pidfd: &PidFd) -> io::Result<()> {
        let token = u64::try_from(pidfd.id().pid).unwrap_or_default();
        self.inner
            .get_ref()
            .0
            .add(pidfd, EpollEvent::new(EpollFlags::EPOLLIN, token))?;
        Ok(())
    }

    /// Stops watching `pidfd`.
    pub fn remove(&self, pidfd: &PidFd) {
        // Fails only if it was never added or is already closed; both mean "not watched".
        let _ = self.inner.get_ref().0.delete(pidfd);
    }

    /// Waits until at least one watched process has exited and returns the PIDs seen exiting.
    /// The caller must [`ExitWatch::remove`] them.
    pub async fn exited(&self) -> io::Result<Vec<i32>> {
        loop {
            let mut guard = self.inner.readable().await?;
            let result = guard.try_io(|inner| {
                let mut events = [EpollEvent::empty(); 64];
                let n = inner.get_ref().0.wait(&mut events, EpollTimeout::ZERO)?;
                if n == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(events[..n]
                    .iter()
                    .filter_map(|event| i32::try_from(event.data()).ok())
                    .collect::<Vec<_>>())
            });
            match result {
                Ok(pids) => return pids,
                Err(_would_block) => continue,
            }
        }
    }
}
