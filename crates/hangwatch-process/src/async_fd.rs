//! Registering file descriptors with the tokio reactor, safely.
//!
//! tokio's `AsyncFd::register` is `unsafe` because a borrowed fd could be closed behind the
//! reactor's back. An [`OwnedFd`] cannot be, so this wrapper is safe, and the rest of the
//! workspace needs no `unsafe` to await pipes, inotify or timer fds.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;

/// Registers `fd` (which should be non-blocking) with the current tokio reactor. Must be called
/// inside a runtime.
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    crate::sys::async_owned_fd(fd)
}
