//! Watching the shared memory directory for new entries (inotify), so that each is looked at
//! while its creator most likely still holds it.
//!
//! Only creations matter (`IN_CREATE`, and `IN_MOVED_TO` for a name renamed in); glibc makes a
//! semaphore under a temporary name and links it to its real one, which is a creation too.
//! When the kernel's event queue overflows, some creations go unseen, and the owner is told so.

use std::ffi::OsString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use tokio::io::unix::AsyncFd;

/// What one read of the queue brought.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// Names created (or moved in).
    pub names: Vec<OsString>,
    /// The kernel dropped events: some creations went unseen.
    pub overflowed: bool,
}

/// An inotify watch on one directory, registered with the tokio reactor.
#[derive(Debug)]
pub(crate) struct ShmWatch {
    fd: AsyncFd<OwnedFd>,
}

impl ShmWatch {
    /// Starts watching `dir`. Must be called inside a tokio runtime.
    pub(crate) fn new(dir: &Path) -> io::Result<ShmWatch> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        inotify::add_watch(
            &fd,
            dir,
            WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR,
        )?;
        Ok(ShmWatch {
            fd: hangwatch_process::async_fd::register(fd)?,
        })
    }

    /// Waits for events and returns them.
    pub(crate) async fn next(&self) -> io::Result<Drained> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                let drained = drain(fd.get_ref())?;
                if drained.names.is_empty() && !drained.overflowed {
                    // Nothing after all (another reader took it): wait for the next readiness.
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(drained)
            }) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads whatever is queued now, without waiting.
    pub(crate) fn drain_now(&self) -> io::Result<Drained> {
        drain(self.fd.get_ref())
    }
}

/// Reads events until the queue is empty.
fn drain(fd: &OwnedFd) -> io::Result<Drained> {
    // Room for many events of the longest name (NAME_MAX) per read.
    let mut buf = [MaybeUninit::<u8>::uninit(); 8192];
    let mut reader = inotify::Reader::new(fd, &mut buf);
    let mut drained = Drained::default();
    loop {
        match reader.next() {
            Ok(event) => {
                if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                    drained.overflowed = true;
                }
                if event.events().contains(ReadFlags::ISDIR) {
                    continue;
                }
                if let Some(name) = event.file_name() {
                    drained
                        .names
                        .push(std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned());
                }
            }
            Err(rustix::io::Errno::AGAIN) => return Ok(drained),
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}
