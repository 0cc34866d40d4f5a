//! Reading `/proc/PID/fd` and `/proc/PID/fdinfo`: what each descriptor is, before any peer is
//! looked up.
//!
//! Each directory is opened once and its entries are read relative to it (`readlinkat`,
//! `openat`), so the kernel resolves one name per descriptor instead of a whole path. Nothing
//! here calls `stat` on a descriptor: `stat` follows the link into the file's file system, and a
//! file on a hung NFS server would then hang the diagnosis too. `readlink` only prints the
//! path the kernel already holds.

use std::collections::HashSet;
use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::Mode;

use super::Access;

/// What `readlink /proc/PID/fd/N` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Link {
    /// `pipe:[INODE]`.
    Pipe(u64),
    /// `socket:[INODE]`.
    Socket(u64),
    /// A path in the file system (`/dev/*`, memfds and deleted files included).
    Path { path: String, deleted: bool },
    /// `anon_inode:[eventpoll]` or `anon_inode:inotify`: the kind, without brackets.
    Anon(String),
    /// Anything else (`net:[4026531840]` for a namespace, …), verbatim.
    Other(String),
}

/// Parses the text of a `/proc/PID/fd/N` link.
pub(super) fn parse_link(link: &str) -> Link {
    if let Some(inode) = bracketed(link, "pipe:") {
        return Link::Pipe(inode);
    }
    if let Some(inode) = bracketed(link, "socket:") {
        return Link::Socket(inode);
    }
    if let Some(kind) = link.strip_prefix("anon_inode:") {
        let kind = kind.strip_prefix('[').unwrap_or(kind);
        let kind = kind.strip_suffix(']').unwrap_or(kind);
        return Link::Anon(kind.to_owned());
    }
    if link.starts_with('/') {
        // The kernel appends " (deleted)" once the name is unlinked; a file whose own name
        // ends that way is indistinguishable, as for every other reader of /proc.
        return match link.strip_suffix(" (deleted)") {
            Some(path) => Link::Path {
                path: path.to_owned(),
                deleted: true,
            },
            None => Link::Path {
                path: link.to_owned(),
                deleted: false,
            },
        };
    }
    Link::Other(link.to_owned())
}

/// The inode of `PREFIX[INODE]`.
fn bracketed(link: &str, prefix: &str) -> Option<u64> {
    link.strip_prefix(prefix)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The fields of `/proc/PID/fdinfo/N` that say what is at the other end.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct FdInfo {
    /// `flags:` (octal): the open flags, whose `O_ACCMODE` bits say which end of a pipe this is.
    pub flags: Option<u32>,
    /// `tfd:` lines of an epoll instance: the descriptors it watches.
    pub epoll_targets: Vec<i32>,
    /// `Pid:` of a pidfd: the process it refers to (`-1` once that process is reaped).
    pub pid: Option<i32>,
}

impl FdInfo {
    /// The access mode, from the flags.
    pub fn access(&self) -> Option<Access> {
        self.flags.map(Access::from_flags)
    }
}

/// Parses the text of `/proc/PID/fdinfo/N` (see `proc_pid_fdinfo(5)`).
pub(super) fn parse_fdinfo(text: &str) -> FdInfo {
    let mut info = FdInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim_start();
        match key {
            "flags" => info.flags = u32::from_str_radix(value.trim(), 8).ok(),
            // `tfd:        5 events:       19 data: ...`
            "tfd" => {
                if let Some(fd) = value.split_whitespace().next().and_then(|v| v.parse().ok()) {
                    info.epoll_targets.push(fd);
                }
            }
            "Pid" => info.pid = value.trim().parse().ok(),
            _ => {}
        }
    }
    info
}

/// One descriptor of a process, as read from `/proc`.
#[derive(Debug, Clone)]
pub(super) struct RawFd {
    pub fd: i32,
    pub link: Link,
    /// Read only for the kinds whose description needs it (pipes, files, epoll, pidfds).
    pub info: Option<FdInfo>,
}

/// Whether an error reading `/proc/PID/…` only says that the process (or descriptor) is gone.
pub(super) fn is_gone(errno: Errno) -> bool {
    matches!(errno, Errno::ENOENT | Errno::ESRCH)
}

/// Every descriptor of `pid`, sorted by number. `Ok(None)` when the process is gone.
pub(super) fn read_fd_table(pid: i32) -> Result<Option<Vec<RawFd>>, Errno> {
    let mut dir = match open_dir(&format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(errno) if is_gone(errno) => return Ok(None),
        Err(errno) => return Err(errno),
    };
    let mut fdinfo_dir: Option<Dir> = None;
    let mut out = Vec::new();
    let names: Vec<(i32, Vec<u8>)> = dir
        .iter()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let fd = parse_fd_name(name)?;
            Some((fd, name.to_bytes_with_nul().to_vec()))
        })
        .collect();
    for (fd, name) in names {
        let Ok(name) = CStr::from_bytes_with_nul(&name) else {
            continue;
        };
        let link = match readlinkat(dir.as_fd(), name) {
            Ok(link) => parse_link(&String::from_utf8_lossy(link.as_bytes())),
            // Closed since the listing.
            Err(errno) if is_gone(errno) => continue,
            Err(errno) => return Err(errno),
        };
        let wants_info = match &link {
            Link::Pipe(_) | Link::Path { .. } => true,
            Link::Anon(kind) => kind == "eventpoll" || kind == "pidfd",
            Link::Socket(_) | Link::Other(_) => false,
        };
        let info = if wants_info {
            if fdinfo_dir.is_none() {
                fdinfo_dir = match open_dir(&format!("/proc/{pid}/fdinfo")) {
                    Ok(dir) => Some(dir),
                    Err(errno) if is_gone(errno) => return Ok(None),
                    Err(errno) => return Err(errno),
                };
            }
            match fdinfo_dir.as_ref().map(|d| read_at(d, name)) {
                Some(Ok(text)) => Some(parse_fdinfo(&text)),
                Some(Err(errno)) if is_gone(errno) => continue,
                Some(Err(errno)) => return Err(errno),
                None => None,
            }
        } else {
            None
        };
        out.push(RawFd { fd, link, info });
    }
    out.sort_by_key(|raw| raw.fd);
    Ok(Some(out))
}

/// A pipe or socket descriptor found outside the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Found {
    pub pid: i32,
    pub fd: i32,
    pub link: Link,
    /// For pipes: which end.
    pub access: Option<Access>,
}

/// The result of a scan of every process on the machine.
#[derive(Debug, Default)]
pub(super) struct SystemScan {
    pub found: Vec<Found>,
    /// Processes whose descriptors could not be read (`EACCES` for another user's processes).
    pub unreadable: usize,
}

/// Looks through the descriptors of every process not in `skip` for the given pipe and socket
/// inodes. This is the expensive step (one `readlink` per descriptor on the machine), run
/// only for inodes the tree itself did not resolve.
pub(super) fn scan_system(
    skip: &HashSet<i32>,
    pipes: &HashSet<u64>,
    sockets: &HashSet<u64>,
) -> SystemScan {
    let mut scan = SystemScan::default();
    let Ok(pids) = hangwatch_process::tree::pids() else {
        return scan;
    };
    for pid in pids.into_iter().filter(|pid| !skip.contains(pid)) {
        match scan_process(pid, pipes, sockets, &mut scan.found) {
            Ok(()) => {}
            Err(errno) if is_gone(errno) => {}
            Err(_) => scan.unreadable += 1,
        }
    }
    scan
}

fn scan_process(
    pid: i32,
    pipes: &HashSet<u64>,
    sockets: &HashSet<u64>,
    found: &mut Vec<Found>,
) -> Result<(), Errno> {
    let mut dir = open_dir(&format!("/proc/{pid}/fd"))?;
    let names: Vec<(i32, Vec<u8>)> = dir
        .iter()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            Some((parse_fd_name(name)?, name.to_bytes_with_nul().to_vec()))
        })
        .collect();
    for (fd, name) in names {
        let Ok(name) = CStr::from_bytes_with_nul(&name) else {
            continue;
        };
        let Ok(link) = readlinkat(dir.as_fd(), name) else {
            continue;
        };
        // Compare bytes first: most descriptors are files, and this runs for every one on
        // the machine.
        let bytes = link.as_bytes();
        if !(bytes.starts_with(b"pipe:[") || bytes.starts_with(b"socket:[")) {
            continue;
        }
        let link = parse_link(&String::from_utf8_lossy(bytes));
        let access = match link {
            Link::Pipe(inode) if pipes.contains(&inode) => {
                let path = format!("/proc/{pid}/fdinfo/{fd}");
                std::fs::read_to_string(path)
                    .ok()
                    .and_then(|text| parse_fdinfo(&text).access())
            }
            Link::Socket(inode) if sockets.contains(&inode) => None,
            _ => continue,
        };
        found.push(Found {
            pid,
            fd,
            link,
            access,
        });
    }
    Ok(())
}

/// A decimal directory entry name (a PID in `/proc`, a descriptor in `fd/`).
fn parse_fd_name(name: &CStr) -> Option<i32> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn open_dir(path: &str) -> Result<Dir, Errno> {
    Dir::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Reads a small file relative to `dir` (an fdinfo entry is a few lines; an epoll instance
/// adds one line per watched descriptor).
fn read_at(dir: &Dir, name: &CStr) -> Result<String, Errno> {
    let fd = openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut text = String::new();
    std::fs::File::from(fd)
        .read_to_string(&mut text)
        .map_err(|err| io_errno(&err))?;
    Ok(text)
}

fn io_errno(err: &io::Error) -> Errno {
    err.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_classified() {
        assert_eq!(parse_link("pipe:[1234]"), Link::Pipe(1234));
        assert_eq!(parse_link("socket:[99]"), Link::Socket(99));
        assert_eq!(
            parse_link("anon_inode:[eventpoll]"),
            Link::Anon("eventpoll".into())
        );
        assert_eq!(
            parse_link("anon_inode:inotify"),
            Link::Anon("inotify".into())
        );
        assert_eq!(
            parse_link("/tmp/data (deleted)"),
            Link::Path {
                path: "/tmp/data".into(),
                deleted: true
            }
        );
        assert_eq!(
            parse_link("/dev/null"),
            Link::Path {
                path: "/dev/null".into(),
                deleted: false
            }
        );
        assert_eq!(
            parse_link("net:[4026531840]"),
            Link::Other("net:[4026531840]".into())
        );
        // Malformed inode: not a pipe.
        assert_eq!(parse_link("pipe:[x]"), Link::Other("pipe:[x]".into()));
    }

    // As Linux 6.x prints them: the read end of a pipe (O_RDONLY), an epoll instance watching
    // fds 5 and 9, and a pidfd.
    const PIPE_READ: &str = "pos:\t0\nflags:\t02000000\nmnt_id:\t15\nino:\t123001\n";
    const PIPE_WRITE: &str = "pos:\t0\nflags:\t01\nmnt_id:\t15\nino:\t123001\n";
    const EPOLL: &str = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\n\
tfd:        5 events:       19 data:                5  pos:0 ino:1e06d sdev:e\n\
tfd:        9 events:       19 data:                9  pos:0 ino:1e06e sdev:e\n";
    const PIDFD: &str =
        "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nPid:\t4242\nNSpid:\t4242\n";

    #[test]
    fn fdinfo_gives_the_access_mode_watched_fds_and_pid() {
        assert_eq!(parse_fdinfo(PIPE_READ).access(), Some(Access::Read));
        assert_eq!(parse_fdinfo(PIPE_WRITE).access(), Some(Access::Write));
        let epoll = parse_fdinfo(EPOLL);
        assert_eq!(epoll.epoll_targets, vec![5, 9]);
        assert_eq!(epoll.access(), Some(Access::ReadWrite));
        assert_eq!(parse_fdinfo(PIDFD).pid, Some(4242));
        assert_eq!(parse_fdinfo("").access(), None);
    }

    #[test]
    fn own_descriptors_are_listed() {
        let table = read_fd_table(std::process::id() as i32)
            .expect("read own fds")
            .expect("present");
        assert!(!table.is_empty());
        assert!(table.windows(2).all(|w| w[0].fd < w[1].fd));
    }
}
