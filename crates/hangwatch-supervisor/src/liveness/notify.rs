//! The receiving side of the systemd notify protocol ([sd_notify(3)]).
//!
//! A supervised program finds a datagram socket's address in `NOTIFY_SOCKET` (a file path, or an
//! abstract socket name written with a leading `@`) and sends it datagrams of newline-separated
//! `KEY=VALUE` assignments: `READY=1` once it has started, `WATCHDOG=1` as a heartbeat, `STATUS=…`
//! as free text, and so on. [`NotifySocket`] is one such socket per supervised program, and
//! [`parse_datagram`] turns a datagram into [`NotifyMessage`]s the way systemd's manager does:
//! unknown or malformed assignments are counted and skipped, never fatal.
//!
//! The sender's PID comes from `SCM_CREDENTIALS`, which the kernel attaches to a datagram *when it
//! is sent*, and only if the receiving socket has `SO_PASSCRED` set at that moment ([unix(7)]). A
//! datagram sent earlier carries no PID, and since a sender may exit right after sending, the PID
//! cannot be recovered later. [`NotifySocket`] therefore sets `SO_PASSCRED` before `bind`, before
//! anyone can send to it.
//!
//! Descriptors passed along with a datagram (`FDSTORE=1`, or `BARRIER=1` from
//! [sd_notify_barrier(3)], whose sender waits until its descriptor is closed) are not kept: they
//! are closed as soon as the datagram is read.
//!
//! # Caveats
//!
//! Linux only: abstract sockets and `SCM_CREDENTIALS` are Linux features. The kernel queues at most
//! `net.unix.max_dgram_qlen` datagrams per socket; a sender on a blocking socket (libsystemd's
//! `sd_notify` is one) then waits for the queue to drain, so a burst is delayed, not lost.
//!
//! [sd_notify(3)]: https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html
//! [sd_notify_barrier(3)]: https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html#sd_notify_barrier()
//! [unix(7)]: https://man7.org/linux/man-pages/man7/unix.7.html

use std::ffi::OsString;
use std::fs;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hangwatch_protocol::report::Degraded;
use nix::sys::socket::{
    self, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr, sockopt,
};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// The largest datagram read whole; a longer one is ignored, as systemd does.
const MAX_DATAGRAM: usize = 64 * 1024;

/// The most descriptors the kernel passes in one message (`SCM_MAX_FD` in `include/net/scm.h`).
/// Room for all of them means the control data is never truncated, so every descriptor received is
/// seen, and closed.
const SCM_MAX_FD: usize = 253;

/// The receive buffer asked for, as systemd's `NOTIFY_RCVBUF_SIZE`.
const RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

/// `sun_path` holds 108 bytes, and senders such as libsystemd need room for a terminating NUL in
/// a path, or for the leading NUL of an abstract name.
const MAX_ADDRESS_LEN: usize = 107;

/// One notify socket per supervised program.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    address: Address,
}

#[derive(Debug)]
enum Address {
    /// A socket file, with the identity it had when bound so that `Drop` removes only that file.
    Path { path: PathBuf, dev: u64, ino: u64 },
    /// An abstract socket name, without the leading NUL.
    Abstract { name: String },
}

impl NotifySocket {
    /// Binds a datagram socket at `path`, with `SO_PASSCRED` set before any datagram can arrive.
    ///
    /// `path` should be in a private directory; a stale socket file left there is replaced. A
    /// relative path is made absolute, since `NOTIFY_SOCKET` must be.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with I/O enabled, as [`UnixDatagram::from_std`].
    pub fn bind(path: &Path) -> Result<NotifySocket, NotifyError> {
        let path = std::path::absolute(path).map_err(|source| NotifyError::Io {
            about: "resolve notify socket path",
            path: Some(path.to_owned()),
            source,
        })?;
        if path.as_os_str().len() > MAX_ADDRESS_LEN {
            return Err(NotifyError::PathTooLong { path });
        }
        let address = UnixAddr::new(&path).map_err(|errno| NotifyError::Io {
            about: "bind notify socket",
            path: Some(path.clone()),
            source: errno.into(),
        })?;
        remove_stale_socket(&path)?;
        let fd = new_socket(&path)?;
        socket::bind(fd.as_raw_fd(), &address).map_err(|errno| NotifyError::Io {
            about: "bind notify socket",
            path: Some(path.clone()),
            source: errno.into(),
        })?;
        let bound = fs::symlink_metadata(&path)
            .map_err(|source| ("inspect notify socket", source))
            .and_then(|metadata| {
                let socket = UnixDatagram::from_std(fd.into())
                    .map_err(|source| ("register notify socket", source))?;
                Ok((metadata, socket))
            });
        match bound {
            Ok((metadata, socket)) => Ok(NotifySocket {
                socket,
                address: Address::Path {
                    path,
                    dev: metadata.dev(),
                    ino: metadata.ino(),
                },
            }),
            Err((about, source)) => {
                // Not ours to keep: nobody will ever read from it.
                let _ = fs::remove_file(&path);
                Err(NotifyError::Io {
                    about,
                    path: Some(path),
                    source,
                })
            }
        }
    }

    /// Binds an abstract socket named `name` (without the leading `@` or NUL).
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with I/O enabled, as [`UnixDatagram::from_std`].
    pub fn bind_abstract(name: &str) -> Result<NotifySocket, NotifyError> {
        let shown = PathBuf::from(format!("@{name}"));
        if name.len() > MAX_ADDRESS_LEN {
            return Err(NotifyError::PathTooLong { path: shown });
        }
        if name.is_empty() || name.contains('\0') {
            // A NUL could not be passed in an environment variable.
            return Err(NotifyError::Io {
                about: "bind notify socket",
                path: Some(shown),
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an abstract socket name must be non-empty and contain no NUL",
                ),
            });
        }
        let io_error = |about, source| NotifyError::Io {
            about,
            path: Some(shown.clone()),
            source,
        };
        let address = UnixAddr::new_abstract(name.as_bytes())
            .map_err(|errno| io_error("bind notify socket", errno.into()))?;
        let fd = new_socket(&shown)?;
        socket::bind(fd.as_raw_fd(), &address)
            .map_err(|errno| io_error("bind notify socket", errno.into()))?;
        let socket = UnixDatagram::from_std(fd.into())
            .map_err(|source| io_error("register notify socket", source))?;
        Ok(NotifySocket {
            socket,
            address: Address::Abstract {
                name: name.to_owned(),
            },
        })
    }

    /// Binds the socket file `name` in a runtime directory: hangwatch's private one, or, with
    /// `all_users`, [`super::socket_dir::shared`], with the file writable by every user (0666), so that
    /// programs running as other users (a service's `user`) can send to it.
    ///
    /// Opening the socket to everyone gives nothing away: a datagram counts only for the
    /// program whose process tree its sender is in, and the sender's PID comes from
    /// `SCM_CREDENTIALS`, which the kernel fills in and an unprivileged sender cannot forge. A
    /// datagram from anyone else is ignored; keep it so.
    ///
    /// # Panics
    ///
    /// If called outside a Tokio runtime with I/O enabled, as [`UnixDatagram::from_std`].
    pub fn bind_in_runtime_dir(name: &str, all_users: bool) -> Result<NotifySocket, NotifyError> {
        let dir = if all_users {
            super::socket_dir::shared()
        } else {
            super::socket_dir::private()
        }
        .map_err(|source| NotifyError::Io {
            about: "create a runtime directory for the notify socket",
            path: None,
            source,
        })?;
        let socket = NotifySocket::bind(&dir.join(name))?;
        if all_users {
            return socket.open_to_all_users();
        }
        Ok(socket)
    }

    /// Lets every user send to this socket (mode 0666 on its file; an abstract socket is open
    /// to all already).
    fn open_to_all_users(self) -> Result<NotifySocket, NotifyError> {
        if let Address::Path { path, .. } = &self.address {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(path, fs::Permissions::from_mode(0o666)).map_err(|source| {
                NotifyError::Io {
                    about: "let every user send to the notify socket",
                    path: Some(path.clone()),
                    source,
                }
            })?;
        }
        Ok(self)
    }

    /// [`NotifySocket::bind_in_runtime_dir`], or, when that fails (the directory cannot be made,
    /// or the path is longer than a socket address holds under a deep `XDG_RUNTIME_DIR` or
    /// `TMPDIR`), the same name in `/tmp/hangwatch-UID` ([`super::socket_dir::short_private`]),
    /// and when that fails too an abstract socket `@hangwatch/{fallback}`; each fallback with a
    /// note saying so. The socket is an optional part: it must never be the reason a program
    /// does not run.
    ///
    /// The short directory comes first because not every client speaks the abstract form (the
    /// `sd-notify` crate does not). An abstract socket has no file permissions, so any process
    /// of the network namespace may send to it; that changes nothing here, since a datagram
    /// counts only when its sender (by `SCM_CREDENTIALS`) is in the tree of a program.
    pub fn bind_in_runtime_dir_or_abstract(
        name: &str,
        fallback: &str,
        all_users: bool,
    ) -> Result<(NotifySocket, Option<Degraded>), NotifyError> {
        let first = match NotifySocket::bind_in_runtime_dir(name, all_users) {
            Ok(socket) => return Ok((socket, None)),
            Err(err) => with_source(&err),
        };
        let short = if all_users {
            super::socket_dir::short_shared()
        } else {
            super::socket_dir::short_private()
        };
        let second = match short {
            Ok(dir) => match NotifySocket::bind(&dir.join(name)) {
                Ok(socket) => {
                    let socket = if all_users {
                        socket.open_to_all_users()?
                    } else {
                        socket
                    };
                    let note = Degraded::new(
                        "notify-socket",
                        format!(
                            "cannot {first}; NOTIFY_SOCKET is {} instead",
                            socket.env_value().to_string_lossy()
                        ),
                    );
                    tracing::warn!(%note, "notify socket degraded");
                    return Ok((socket, Some(note)));
                }
                Err(err) => with_source(&err),
            },
            Err(err) => format!("create /tmp/hangwatch-UID: {err}"),
        };
        let socket = NotifySocket::bind_abstract(&format!("hangwatch/{fallback}"))?;
        let note = Degraded::new(
            "notify-socket",
            format!(
                "cannot {first}, nor {second}; NOTIFY_SOCKET is the abstract socket {} instead",
                socket.env_value().to_string_lossy()
            ),
        );
        tracing::warn!(%note, "notify socket degraded");
        Ok((socket, Some(note)))
    }

    /// The value to put in the program's `NOTIFY_SOCKET`: the absolute path, or `@name`.
    pub fn env_value(&self) -> OsString {
        match &self.address {
            Address::Path { path, .. } => path.as_os_str().to_owned(),
            Address::Abstract { name } => format!("@{name}").into(),
        }
    }

    /// Waits for the next datagram.
    ///
    /// Fails only if the socket does; bad content is counted in [`Datagram::ignored`].
    pub async fn recv(&self) -> Result<Datagram, NotifyError> {
        let mut data = vec![0; MAX_DATAGRAM];
        let mut control = vec![0; control_space()];
        loop {
            let received = self
                .socket
                .async_io(Interest::READABLE, || {
                    receive(self.socket.as_raw_fd(), &mut data, &mut control)
                })
                .await;
            match received {
                Ok(datagram) => return Ok(datagram),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(NotifyError::Io {
                        about: "receive from notify socket",
                        path: Some(self.shown_address()),
                        source,
                    });
                }
            }
        }
    }

    fn shown_address(&self) -> PathBuf {
        PathBuf::from(self.env_value())
    }
}

impl Drop for NotifySocket {
    /// Removes the socket file, if the path still names the one this socket created.
    fn drop(&mut self) {
        if let Address::Path { path, dev, ino } = &self.address {
            let ours = fs::symlink_metadata(path)
                .is_ok_and(|metadata| metadata.dev() == *dev && metadata.ino() == *ino);
            if ours {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// One datagram received on a [`NotifySocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// PID of the sender from `SCM_CREDENTIALS` (`None` if no credentials came with it).
    pub sender_pid: Option<i32>,
    /// The assignments understood, in the order sent.
    pub messages: Vec<NotifyMessage>,
    /// Assignments that were unknown or malformed, ignored (never fatal). A datagram too long to
    /// read whole counts as one.
    pub ignored: usize,
}

/// One assignment understood from a notify datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotifyMessage {
    /// `READY=1`: start-up is finished.
    Ready,
    /// `RELOADING=1`: reloading its configuration.
    Reloading,
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `WATCHDOG=1`: a heartbeat.
    Watchdog,
    /// `WATCHDOG=trigger`: the program asks to be treated as hung.
    WatchdogTrigger,
    /// `WATCHDOG_USEC=N`: a new watchdog interval (N > 0).
    WatchdogUsec(Duration),
    /// `EXTEND_TIMEOUT_USEC=N`: the current start-up or shutdown needs this much longer.
    ExtendTimeoutUsec(Duration),
    /// `STATUS=…`: free text, exactly as sent.
    Status(String),
    /// `MAINPID=N`: the program's main process is now N (N > 0).
    MainPid(i32),
    /// `ERRNO=N`: the program failed with this errno (N ≥ 0).
    Errno(i32),
}

/// Parses a notify datagram into the messages understood and a count of assignments ignored.
///
/// Assignments are `KEY=VALUE` lines separated by `\n`; empty lines are skipped. Values are taken
/// exactly, with no trimming. Ignored and counted: lines without `=`, lines that are not UTF-8 or
/// contain a NUL, unknown keys, values that do not parse, and keys systemd knows but `hangwatch` has
/// no use for (`FDSTORE=`, `BUSERROR=`, `MONOTONIC_USEC=`, `NOTIFYACCESS=`, …). One trailing NUL
/// is tolerated, as systemd does.
pub fn parse_datagram(bytes: &[u8]) -> (Vec<NotifyMessage>, usize) {
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    let mut messages = Vec::new();
    let mut ignored = 0;
    for line in bytes.split(|&byte| byte == b'\n') {
        if line.is_empty() {
            continue;
        }
        match parse_assignment(line) {
            Some(message) => messages.push(message),
            None => ignored += 1,
        }
    }
    (messages, ignored)
}

fn parse_assignment(line: &[u8]) -> Option<NotifyMessage> {
    if line.contains(&0) {
        return None;
    }
    let (key, value) = std::str::from_utf8(line).ok()?.split_once('=')?;
    let message = match (key, value) {
        ("READY", "1") => NotifyMessage::Ready,
        ("RELOADING", "1") => NotifyMessage::Reloading,
        ("STOPPING", "1") => NotifyMessage::Stopping,
        ("WATCHDOG", "1") => NotifyMessage::Watchdog,
        ("WATCHDOG", "trigger") => NotifyMessage::WatchdogTrigger,
        ("WATCHDOG_USEC", value) => NotifyMessage::WatchdogUsec(Duration::from_micros(
            parse_unsigned(value).filter(|&usec| usec > 0)?,
        )),
        ("EXTEND_TIMEOUT_USEC", value) => {
            NotifyMessage::ExtendTimeoutUsec(Duration::from_micros(parse_unsigned(value)?))
        }
        ("STATUS", text) => NotifyMessage::Status(text.to_owned()),
        ("MAINPID", value) => NotifyMessage::MainPid(
            i32::try_from(parse_unsigned(value)?)
                .ok()
                .filter(|&pid| pid > 0)?,
        ),
        ("ERRNO", value) => NotifyMessage::Errno(i32::try_from(parse_unsigned(value)?).ok()?),
        _ => return None,
    };
    Some(message)
}

/// Decimal digits only: `u64::from_str` would also take a leading `+`.
fn parse_unsigned(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// Creates the socket and sets its options, before it has an address anyone could send to.
fn new_socket(shown: &Path) -> Result<OwnedFd, NotifyError> {
    let io_error = |about, errno: nix::errno::Errno| NotifyError::Io {
        about,
        path: Some(shown.to_owned()),
        source: errno.into(),
    };
    let fd = socket::socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|errno| io_error("create notify socket", errno))?;
    socket::setsockopt(&fd, sockopt::PassCred, &true)
        .map_err(|errno| io_error("set SO_PASSCRED on notify socket", errno))?;
    // Best effort, as systemd's `fd_increase_rxbuf`: SO_RCVBUFFORCE needs CAP_NET_ADMIN, and
    // SO_RCVBUF is capped by net.core.rmem_max. Neither failing keeps datagrams from arriving.
    if socket::setsockopt(&fd, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        if let Err(errno) = socket::setsockopt(&fd, sockopt::RcvBuf, &RECEIVE_BUFFER) {
            tracing::debug!(path = %shown.display(), %errno, "could not enlarge notify socket receive buffer");
        }
    }
    Ok(fd)
}

/// Removes a socket file left by an earlier run, which would make `bind` fail with `EADDRINUSE`.
/// Anything other than a socket is left alone, for `bind` to report.
fn remove_stale_socket(path: &Path) -> Result<(), NotifyError> {
    let is_socket = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata.file_type().is_socket(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(NotifyError::Io {
                about: "inspect notify socket path",
                path: Some(path.to_owned()),
                source,
            });
        }
    };
    if is_socket {
        fs::remove_file(path).map_err(|source| NotifyError::Io {
            about: "remove stale notify socket",
            path: Some(path.to_owned()),
            source,
        })?;
    }
    Ok(())
}

/// Room for the credentials and for as many descriptors as one message can carry.
fn control_space() -> usize {
    socket::cmsg_space::<nix::libc::ucred>() + socket::cmsg_space::<[RawFd; SCM_MAX_FD]>()
}

/// Reads one datagram without blocking, closes any descriptors that came with it, and parses it.
fn receive(fd: RawFd, data: &mut [u8], control: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(data)];
    // MSG_CMSG_CLOEXEC: a program spawned between this read and the close below must not inherit
    // the descriptors.
    let message = socket::recvmsg::<()>(fd, &mut iov, Some(control), MsgFlags::MSG_CMSG_CLOEXEC)?;
    let len = message.bytes;
    let truncated = message.flags.contains(MsgFlags::MSG_TRUNC);
    let mut sender_pid = None;
    let mut control_readable = false;
    if let Ok(control_messages) = message.cmsgs() {
        control_readable = true;
        for control_message in control_messages {
            match control_message {
                // A datagram sent before SO_PASSCRED was set gets PID 0 here.
                ControlMessageOwned::ScmCredentials(credentials) if credentials.pid() > 0 => {
                    sender_pid = Some(credentials.pid());
                }
                ControlMessageOwned::ScmRights(fds) => {
                    for fd in fds {
                        // The descriptor is released even if close fails (close(2) on Linux),
                        // so there is nothing to retry.
                        let _ = nix::unistd::close(fd);
                    }
                }
                _ => {}
            }
        }
    }
    // Control data can be truncated (MSG_CTRUNC) only if the kernel sent more than `control_space`
    // allows for; nix then refuses to decode it, and systemd ignores such a datagram.
    if truncated || !control_readable {
        tracing::debug!(
            len,
            truncated,
            control_readable,
            "ignoring notify datagram that could not be read whole"
        );
        return Ok(Datagram {
            sender_pid,
            messages: Vec::new(),
            ignored: 1,
        });
    }
    let (messages, ignored) = parse_datagram(&data[..len]);
    Ok(Datagram {
        sender_pid,
        messages,
        ignored,
    })
}

/// An error binding or reading a [`NotifySocket`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// A system call failed.
    #[error("{about}{}", at(.path.as_deref()))]
    Io {
        /// What was being done, as a fragment that reads after "failed to".
        about: &'static str,
        /// The socket's path, or `@name` for an abstract socket.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The address does not fit in `sun_path`.
    #[error(
        "bind notify socket `{}`: longer than the {MAX_ADDRESS_LEN} bytes a socket address can hold",
        .path.display()
    )]
    PathTooLong {
        /// The path, or `@name` for an abstract socket.
        path: PathBuf,
    },
}

/// `err` with its cause, for a note.
fn with_source(err: &NotifyError) -> String {
    match std::error::Error::source(err) {
        Some(source) => format!("{err}: {source}"),
        None => err.to_string(),
    }
}

fn at(path: Option<&Path>) -> String {
    path.map(|path| format!(" `{}`", path.display()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::IoSlice;
    use std::os::fd::AsFd;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram as StdUnixDatagram};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use nix::sys::socket::ControlMessage;

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    async fn within<F: Future>(what: &str, future: F) -> F::Output {
        tokio::time::timeout(WAIT, future)
            .await
            .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
    }

    fn unique(tag: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        format!(
            "hangwatch-notify-{}-{tag}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A private directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(unique(tag));
            fs::create_dir(&dir).expect("create temp dir");
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                .expect("make temp dir private");
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn parse(text: &str) -> (Vec<NotifyMessage>, usize) {
        parse_datagram(text.as_bytes())
    }

    #[test]
    fn several_assignments_in_one_datagram() {
        let (messages, ignored) = parse(
            "READY=1\nSTATUS=serving\nMAINPID=4242\nWATCHDOG=1\nWATCHDOG=trigger\n\
             WATCHDOG_USEC=2500000\nEXTEND_TIMEOUT_USEC=0\nRELOADING=1\nSTOPPING=1\nERRNO=5\n",
        );
        assert_eq!(
            messages,
            [
                NotifyMessage::Ready,
                NotifyMessage::Status("serving".to_owned()),
                NotifyMessage::MainPid(4242),
                NotifyMessage::Watchdog,
                NotifyMessage::WatchdogTrigger,
                NotifyMessage::WatchdogUsec(Duration::from_millis(2500)),
                NotifyMessage::ExtendTimeoutUsec(Duration::ZERO),
                NotifyMessage::Reloading,
                NotifyMessage::Stopping,
                NotifyMessage::Errno(5),
            ]
        );
        assert_eq!(ignored, 0);
    }

    #[test]
    fn status_keeps_equals_signs_and_spaces() {
        let (messages, ignored) = parse("STATUS=a=b == c \nSTATUS=");
        assert_eq!(
            messages,
            [
                NotifyMessage::Status("a=b == c ".to_owned()),
                NotifyMessage::Status(String::new()),
            ]
        );
        assert_eq!(ignored, 0);
    }

    #[test]
    fn bad_numbers_are_ignored() {
        let (messages, ignored) = parse(
            "WATCHDOG_USEC=0\nWATCHDOG_USEC=abc\nWATCHDOG_USEC=+5\nWATCHDOG_USEC= 5\n\
             WATCHDOG_USEC=99999999999999999999\nMAINPID=0\nMAINPID=-1\nMAINPID=2147483648\n\
             ERRNO=-1\nEXTEND_TIMEOUT_USEC=\nWATCHDOG_USEC=7",
        );
        assert_eq!(
            messages,
            [NotifyMessage::WatchdogUsec(Duration::from_micros(7))]
        );
        assert_eq!(ignored, 10);
    }

    #[test]
    fn unknown_and_unused_keys_are_ignored() {
        let (messages, ignored) = parse(
            "FDSTORE=1\nBUSERROR=x\nMONOTONIC_USEC=1\nNOTIFYACCESS=all\nREADY=0\nready=1\n\
             READY\n=1\nREADY=1 \nREADY=1",
        );
        assert_eq!(messages, [NotifyMessage::Ready]);
        assert_eq!(ignored, 9);
    }

    #[test]
    fn garbage_bytes_are_ignored_line_by_line() {
        let (messages, ignored) =
            parse_datagram(b"\xff\xfe=1\nSTATUS=\xc3\x28\nSTATUS=a\0b\nREADY=1\n\n\n\0");
        assert_eq!(messages, [NotifyMessage::Ready]);
        assert_eq!(ignored, 3);
    }

    #[test]
    fn empty_datagram_is_nothing() {
        assert_eq!(parse_datagram(b""), (Vec::new(), 0));
        assert_eq!(parse_datagram(b"\n\n"), (Vec::new(), 0));
    }

    #[tokio::test]
    async fn path_socket_receives_with_sender_pid() {
        let dir = TempDir::new("path");
        let path = dir.0.join("notify");
        let notify = NotifySocket::bind(&path).expect("bind notify socket");
        assert_eq!(notify.env_value(), path.as_os_str());

        let client = StdUnixDatagram::unbound().expect("client socket");
        client
            .send_to(b"READY=1\nSTATUS=up\nBOGUS", &path)
            .expect("send");
        let datagram = within("a datagram", notify.recv()).await.expect("receive");
        assert_eq!(
            datagram,
            Datagram {
                sender_pid: i32::try_from(std::process::id()).ok(),
                messages: vec![NotifyMessage::Ready, NotifyMessage::Status("up".to_owned())],
                ignored: 1,
            }
        );

        drop(notify);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[tokio::test]
    async fn abstract_socket_receives_with_sender_pid() {
        let name = unique("abstract");
        let notify = NotifySocket::bind_abstract(&name).expect("bind notify socket");
        assert_eq!(notify.env_value(), OsString::from(format!("@{name}")));

        let client = StdUnixDatagram::unbound().expect("client socket");
        let address = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract address");
        client.connect_addr(&address).expect("connect");
        client.send(b"WATCHDOG=1").expect("send");
        let datagram = within("a datagram", notify.recv()).await.expect("receive");
        assert_eq!(datagram.sender_pid, i32::try_from(std::process::id()).ok());
        assert_eq!(datagram.messages, [NotifyMessage::Watchdog]);
    }

    #[tokio::test]
    async fn burst_of_datagrams_is_all_received() {
        const COUNT: usize = 1000;
        let dir = TempDir::new("burst");
        let path = dir.0.join("notify");
        let notify = NotifySocket::bind(&path).expect("bind notify socket");

        // The kernel queues only a few datagrams (net.unix.max_dgram_qlen), then a blocking sender
        // waits for the reader; so the sender runs on its own thread, with its own deadline.
        let sender = {
            let path = path.clone();
            std::thread::spawn(move || -> io::Result<()> {
                let client = StdUnixDatagram::unbound()?;
                client.set_write_timeout(Some(WAIT))?;
                for i in 0..COUNT {
                    client.send_to(format!("STATUS={i}\nWATCHDOG=1").as_bytes(), &path)?;
                }
                Ok(())
            })
        };
        for i in 0..COUNT {
            let datagram = within("the next datagram of the burst", notify.recv())
                .await
                .expect("receive");
            assert_eq!(
                datagram.messages,
                [
                    NotifyMessage::Status(i.to_string()),
                    NotifyMessage::Watchdog
                ]
            );
        }
        sender
            .join()
            .expect("sender thread")
            .expect("send the burst");
    }

    #[tokio::test]
    async fn oversized_datagram_is_ignored() {
        let dir = TempDir::new("oversized");
        let path = dir.0.join("notify");
        let notify = NotifySocket::bind(&path).expect("bind notify socket");
        let client = StdUnixDatagram::unbound().expect("client socket");

        let mut oversized = b"READY=1\nSTATUS=".to_vec();
        oversized.resize(MAX_DATAGRAM + 1024, b'x');
        client.send_to(&oversized, &path).expect("send oversized");
        client.send_to(b"READY=1", &path).expect("send");

        let datagram = within("the oversized datagram", notify.recv())
            .await
            .expect("receive");
        assert_eq!((datagram.messages.len(), datagram.ignored), (0, 1));
        let datagram = within("the next datagram", notify.recv())
            .await
            .expect("receive");
        assert_eq!(datagram.messages, [NotifyMessage::Ready]);
    }

    #[tokio::test]
    async fn passed_descriptors_are_closed() {
        let dir = TempDir::new("fds");
        let path = dir.0.join("notify");
        let notify = NotifySocket::bind(&path).expect("bind notify socket");

        // What sd_notify_barrier does: pass the write end of a pipe, wait for EOF on the read end.
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        let client = StdUnixDatagram::unbound().expect("client socket");
        let address = UnixAddr::new(&path).expect("address");
        socket::sendmsg(
            client.as_raw_fd(),
            &[IoSlice::new(b"BARRIER=1")],
            &[ControlMessage::ScmRights(&[write_end.as_raw_fd()])],
            MsgFlags::empty(),
            Some(&address),
        )
        .expect("send with a descriptor");
        drop(write_end);

        let datagram = within("a datagram", notify.recv()).await.expect("receive");
        assert_eq!((datagram.messages.len(), datagram.ignored), (0, 1));

        fcntl(read_end.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking");
        let mut buffer = [0; 1];
        assert_eq!(
            nix::unistd::read(read_end.as_fd(), &mut buffer),
            Ok(0),
            "EOF: no write end left open"
        );
    }

    #[tokio::test]
    async fn stale_socket_file_is_replaced() {
        let dir = TempDir::new("stale");
        let path = dir.0.join("notify");
        drop(StdUnixDatagram::bind(&path).expect("bind a stale socket"));
        assert!(path.exists());

        let notify = NotifySocket::bind(&path).expect("bind over the stale socket");
        let client = StdUnixDatagram::unbound().expect("client socket");
        client.send_to(b"READY=1", &path).expect("send");
        let datagram = within("a datagram", notify.recv()).await.expect("receive");
        assert_eq!(datagram.messages, [NotifyMessage::Ready]);
    }

    #[tokio::test]
    async fn a_socket_for_all_users_is_reachable_by_them() {
        let name = unique("shared");
        let notify = NotifySocket::bind_in_runtime_dir(&name, true).expect("bind");
        let path = PathBuf::from(notify.env_value());
        let dir = path.parent().expect("a directory");
        assert_eq!(dir, super::super::socket_dir::shared().expect("shared dir"));
        let dir_mode = fs::metadata(dir).expect("dir").permissions().mode() & 0o777;
        assert_eq!(
            dir_mode & 0o711,
            0o711,
            "every user passes through: {dir_mode:o}"
        );
        assert_eq!(dir_mode & 0o022, 0, "nobody else writes: {dir_mode:o}");
        let socket_mode = fs::symlink_metadata(&path)
            .expect("socket")
            .permissions()
            .mode();
        assert_eq!(socket_mode & 0o777, 0o666);

        let client = StdUnixDatagram::unbound().expect("client socket");
        client.send_to(b"READY=1", &path).expect("send");
        let datagram = within("a datagram", notify.recv()).await.expect("receive");
        assert_eq!(datagram.messages, [NotifyMessage::Ready]);
        drop(notify);
        assert!(!path.exists(), "socket file removed on drop");
    }

    #[tokio::test]
    async fn too_long_addresses_are_refused() {
        let dir = TempDir::new("long");
        let path = dir.0.join("n".repeat(120));
        assert!(matches!(
            NotifySocket::bind(&path),
            Err(NotifyError::PathTooLong { path: refused }) if refused == path
        ));
        assert!(matches!(
            NotifySocket::bind_abstract(&"n".repeat(108)),
            Err(NotifyError::PathTooLong { .. })
        ));
        assert!(NotifySocket::bind_abstract(&"n".repeat(107)).is_ok());
    }
}
