//! Watching the shared memory directory for new entries (inotify), so that each is looked at
//! while its creator most likely still holds it.
//!
//! Only creations matter (`IN_CREATE`, and `IN_MOVED_TO` for a name renamed in); glibc makes a
//! semaphore under a temporary name and links it to its real one, which is a creation too.
//! When the kernel's event queue overflows, some creations go unseen, and the owner is told so.
//!
//! The same inotify instance watches the top level of the temporary directories
//! ([`mod@crate::temp`]), where a directory made counts too; each event says which watch it
//! came from.

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
    /// Regular names created (or moved in) in the shared memory directory.
    pub names: Vec<OsString>,
    /// Names created (or moved in) in other watched directories, by watch, directories too.
    pub others: Vec<(i32, OsString)>,
    /// The kernel dropped events: some creations went unseen.
    pub overflowed: bool,
}

/// An inotify watch on one directory, registered with the tokio reactor.
#[derive(Debug)]
pub(crate) struct ShmWatch {
    fd: AsyncFd<OwnedFd>,
    /// The watch of the shared memory directory.
    shm: i32,
}

impl ShmWatch {
    /// A copy of the inotify descriptor (see [`crate::LeakWatch::inotify_copy`]).
    pub(crate) fn fd_copy(&self) -> io::Result<OwnedFd> {
        self.fd.get_ref().try_clone()
    }

    /// Starts watching `dir`. Must be called inside a tokio runtime.
    pub(crate) fn new(dir: &Path) -> io::Result<ShmWatch> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        let shm = inotify::add_watch(
            &fd,
            dir,
            WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR,
        )?;
        Ok(ShmWatch {
            fd: hangwatch_process::async_fd::register(fd)?,
            shm,
        })
    }

    /// Also watches the top level of `dir` (not what is below it); returns the watch's number,
    /// which [`Drained::others`] gives with each name.
    pub(crate) fn add(&self, dir: &Path) -> io::Result<i32> {
        Ok(inotify::add_watch(
            self.fd.get_ref(),
            dir,
            WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR,
        )?)
    }

    /// Waits for events and returns them.
    pub(crate) async fn next(&self) -> io::Result<Drained> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                let drained = drain(fd.get_ref(), self.shm)?;
                if drained.names.is_empty() && drained.others.is_empty() && !drained.overflowed {
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
        drain(self.fd.get_ref(), self.shm)
    }
}

/// Reads events until the queue is empty.
fn drain(fd: &OwnedFd, shm: i32) -> io::Result<Drained> {
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
                let Some(name) = event.file_name() else {
                    continue;
                };
                let name = std::ffi::OsStr::from_bytes(name.to_bytes()).to_owned();
                if event.wd() != shm {
                    drained.others.push((event.wd(), name));
                } else if !event.events().contains(ReadFlags::ISDIR) {
                    drained.names.push(name);
                }
            }
            Err(rustix::io::Errno::AGAIN) => return Ok(drained),
            Err(rustix::io::Errno::INTR) => {}
            Err(err) => return Err(err.into()),
        }
    }
}
