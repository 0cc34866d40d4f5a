//! Open file descriptors of a process tree, each resolved to what is at the other end.
//!
//! A thread blocked in `read(7)` says little until fd 7 is named: "`pipe:[1234]` whose write
//! end is held by pid 812 (`python worker.py`)", "unix stream socket connected to pid 44
//! (`postgres`)", "tcp connect to 127.0.0.1:9000". [`open_fds`] reads that for every process of
//! a tree; [`FdReport::get`] answers for one `(pid, fd)`.
//!
//! # Theory of operation
//!
//! 1. Every descriptor of every given process is read from `/proc/PID/fd` (`readlink`) and,
//!    for pipes, files, epoll instances and pidfds, `/proc/PID/fdinfo` (the access mode that
//!    tells a pipe's read end from its write end; the descriptors an epoll instance watches).
//! 2. Sockets are named by inode: Unix ones by one `sock_diag` dump (the only source of a Unix
//!    socket's peer), TCP and UDP ones from `/proc/PID/net/{tcp,udp}{,6}` of each network
//!    namespace the tree uses.
//! 3. The other end of each pipe, Unix connection and local TCP/UDP connection is looked up
//!    among the tree's own descriptors first. Only inodes still unresolved widen the search to
//!    every process on the machine, which costs one `readlink` per descriptor on it; a tree
//!    whose ends are all inside never pays for it.
//!
//! Holders of the same end as the asking descriptor are listed apart from those of the other
//! end, and the asking descriptor itself is never among them. A pipe whose other end no
//! process holds is worth saying: its reader sees end of file, its writer `EPIPE`.
//!
//! # Caveats
//!
//! - A process can exit, or close a descriptor, between any two reads; it is then left out.
//! - Reading another user's descriptors needs ptrace access (`EACCES` otherwise): such a
//!   process of the tree is listed in [`FdReport::unreadable`], and one outside the tree only
//!   counted ([`Holders::unreadable`]), since a holder may hide there.
//! - Unix-socket peers come from the supervisor's network namespace; a process in another one
//!   gets its sockets' names and states from its own `/proc/PID/net/unix`, without peers.
//! - A named FIFO appears as the file it was opened by (its path and access mode): telling it
//!   from a regular file would need `stat` on the descriptor, which can block on a hung network
//!   file system.
//! - Holders that received a descriptor over a socket (`SCM_RIGHTS`) and have not yet picked
//!   it up are in no process's table; a peer found nowhere may be in flight.

mod inet;
mod procfs;
#[cfg(test)]
mod properties;
mod unix;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use hangwatch_process::stat::format_cmdline;

use self::inet::{InetSocket, InetTables, Proto};
use self::procfs::{Link, RawFd};
use self::unix::UnixSocket;

/// At most this many holders are listed per end; the rest are counted in [`Holders::more`].
/// A pipe shared by a hundred workers would otherwise repeat every one of them in each
/// worker's entry.
pub const MAX_HOLDERS: usize = 8;

/// How long a holder's command line may be before it is cut (with `…`).
const COMMAND_CHARS: usize = 80;

/// Every open descriptor of the processes asked about, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdReport {
    /// One entry per process that could be read, in the order asked.
    pub processes: Vec<ProcessFds>,
    /// Processes of the tree whose descriptors could not be read, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<Unreadable>,
    /// Whether some other end was not in the tree and every process on the machine was
    /// searched for it.
    pub searched_system: bool,
    /// What limited the resolution (for example, `sock_diag` unavailable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl FdReport {
    /// The descriptor `fd` of `pid`, as seen by the scan.
    #[must_use]
    pub fn get(&self, pid: i32, fd: i32) -> Option<&OpenFd> {
        let fds = self.fds(pid)?;
        fds.binary_search_by_key(&fd, |open| open.fd)
            .ok()
            .map(|i| &fds[i])
    }

    /// Every descriptor of `pid`, sorted by number; `None` if `pid` was not read.
    #[must_use]
    pub fn fds(&self, pid: i32) -> Option<&[OpenFd]> {
        self.processes
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.fds.as_slice())
    }
}

/// The open descriptors of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessFds {
    /// The process.
    pub pid: i32,
    /// Its descriptors, sorted by number.
    pub fds: Vec<OpenFd>,
}

/// A process whose descriptors could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreadable {
    /// The process.
    pub pid: i32,
    /// Why, as the system said it (`EACCES: Permission denied`).
    pub error: String,
}

/// One open descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFd {
    /// The descriptor number.
    pub fd: i32,
    /// What it refers to.
    pub target: FdTarget,
}

impl OpenFd {
    /// `fd 7 = pipe:[1234] whose write end is held by this process (fd 8)`: the target as
    /// [`FdTarget`]'s `Display` says it, with `pid`'s own descriptors called "this process".
    #[must_use]
    pub fn describe(&self, pid: i32) -> impl fmt::Display + '_ {
        Described {
            open: self,
            pid,
            with_number: true,
        }
    }

    /// The same without the `fd N = ` prefix, for a sentence that already names the number.
    #[must_use]
    pub fn describe_target(&self, pid: i32) -> impl fmt::Display + '_ {
        Described {
            open: self,
            pid,
            with_number: false,
        }
    }
}

struct Described<'a> {
    open: &'a OpenFd,
    pid: i32,
    with_number: bool,
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.with_number {
            write!(f, "fd {} = ", self.open.fd)?;
        }
        write_target(&self.open.target, Some(self.pid), f)
    }
}

/// What a descriptor refers to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FdTarget {
    /// A path: a regular file, a device (`/dev/null`, a terminal), a directory, a memfd, a
    /// named FIFO.
    File {
        /// The path as the kernel prints it.
        path: String,
        /// The name was unlinked after the file was opened.
        deleted: bool,
        /// How the file was opened; `None` if the flags could not be read.
        mode: Option<Access>,
    },
    /// An anonymous pipe.
    Pipe {
        /// The pipe's inode (`pipe:[INODE]`).
        inode: u64,
        /// Which end this descriptor is.
        end: Access,
        /// Holders of the opposite end: the writers of a read end, the readers of a write end.
        other_end: Holders,
        /// Other holders of the same end (this descriptor excluded).
        same_end: Holders,
    },
    /// A Unix-domain socket.
    Unix {
        /// The socket's inode (`socket:[INODE]`).
        inode: u64,
        /// Stream, datagram or seqpacket.
        socket_type: UnixKind,
        /// The name it is bound to, if any: a path, or `@name` for an abstract address.
        path: Option<String>,
        /// A listening socket (it accepts connections).
        listening: bool,
        /// Connected to a peer (whether or not the peer is known).
        connected: bool,
        /// The other end, when the kernel told it.
        peer: Option<UnixPeer>,
        /// Bytes received and not read; for a listener, connections waiting to be accepted.
        recv_queue: Option<u32>,
        /// Bytes sent and not yet read by the peer.
        send_queue: Option<u32>,
    },
    /// A TCP socket.
    Tcp {
        /// The socket's inode.
        inode: u64,
        /// The local address.
        local: SocketAddr,
        /// The remote address, unless listening.
        remote: Option<SocketAddr>,
        /// The connection's state.
        state: TcpState,
        /// Accepted from a listener on this machine (the remote end connected to us), rather
        /// than opened with `connect`.
        accepted: bool,
        /// Bytes sent and not acknowledged.
        send_queue: u32,
        /// Bytes received and not read; for a listener, connections waiting to be accepted.
        recv_queue: u32,
        /// Holders of the other end, when it is on this machine.
        peer: Holders,
    },
    /// A UDP socket.
    Udp {
        /// The socket's inode.
        inode: u64,
        /// The local address.
        local: SocketAddr,
        /// The address it is connected to, if it is.
        remote: Option<SocketAddr>,
        /// Bytes queued to send.
        send_queue: u32,
        /// Bytes received and not read.
        recv_queue: u32,
        /// Holders of the other end, when it is a connected socket on this machine.
        peer: Holders,
    },
    /// A socket of another family (netlink, packet, raw, …), or one whose namespace's tables
    /// could not be read.
    Socket {
        /// The socket's inode.
        inode: u64,
    },
    /// An epoll instance.
    Epoll {
        /// The descriptors it watches (numbers in the table of the process that added them).
        watched: Vec<i32>,
    },
    /// An eventfd.
    EventFd,
    /// A timerfd.
    TimerFd,
    /// A signalfd.
    SignalFd,
    /// An inotify instance.
    Inotify,
    /// A pidfd.
    PidFd {
        /// The process it refers to; `-1` once that process has been reaped.
        pid: Option<i32>,
    },
    /// Anything else, as `readlink` names it (`net:[4026531840]`, `anon_inode:[io_uring]`).
    Other {
        /// The link text.
        link: String,
    },
}

/// How a file was opened: the `O_ACCMODE` bits of its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// `O_RDONLY`: the read end of a pipe.
    Read,
    /// `O_WRONLY`: the write end of a pipe.
    Write,
    /// `O_RDWR`.
    ReadWrite,
    /// `O_PATH`, or the access mode 3 some drivers use: neither reads nor writes.
    Neither,
}

impl Access {
    /// The access mode of the open flags in `/proc/PID/fdinfo/FD`.
    #[must_use]
    pub fn from_flags(flags: u32) -> Access {
        const O_PATH: u32 = 0o10_000_000;
        if flags & O_PATH != 0 {
            return Access::Neither;
        }
        match flags & 0o3 {
            0 => Access::Read,
            1 => Access::Write,
            2 => Access::ReadWrite,
            _ => Access::Neither,
        }
    }

    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read-write",
            Access::Neither => "no read or write",
        })
    }
}

/// The type of a Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnixKind {
    /// `SOCK_STREAM`.
    Stream,
    /// `SOCK_DGRAM`.
    Dgram,
    /// `SOCK_SEQPACKET`.
    Seqpacket,
    /// A type this code does not know.
    Unknown,
}

impl fmt::Display for UnixKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UnixKind::Stream => "stream",
            UnixKind::Dgram => "datagram",
            UnixKind::Seqpacket => "seqpacket",
            UnixKind::Unknown => "unknown-type",
        })
    }
}

/// The state of a TCP connection (`include/net/tcp_states.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[expect(missing_docs, reason = "the kernel's state names say it all")]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    /// A state number this code does not know.
    Unknown,
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn-sent",
            TcpState::SynRecv => "syn-recv",
            TcpState::FinWait1 => "fin-wait-1",
            TcpState::FinWait2 => "fin-wait-2",
            TcpState::TimeWait => "time-wait",
            TcpState::Close => "close",
            TcpState::CloseWait => "close-wait",
            TcpState::LastAck => "last-ack",
            TcpState::Listen => "listen",
            TcpState::Closing => "closing",
            TcpState::Unknown => "unknown",
        })
    }
}

/// The other end of a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnixPeer {
    /// The peer socket's inode; while the connection awaits `accept`, the listener's.
    pub inode: u64,
    /// The name the peer is bound to (a server's path), if any.
    pub path: Option<String>,
    /// The processes holding the peer socket. While the connection waits in a listener's
    /// accept queue nobody holds the peer yet: these are the listener's holders.
    pub holders: Holders,
    /// The connection waits in the accept queue of a listener that has not accepted it.
    pub awaiting_accept: bool,
}

/// The processes holding one end of a pipe or socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holders {
    /// Up to [`MAX_HOLDERS`], processes of the tree first. When the end was found in the
    /// tree, the rest of the machine was not searched.
    pub found: Vec<Holder>,
    /// How many more holders there were than listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: usize,
    /// Processes outside the tree whose descriptors could not be read while searching for
    /// this end: when nothing was found, a holder may hide among them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable: usize,
}

impl Holders {
    /// No holder was found.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A process holding a pipe or socket end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The process.
    pub pid: i32,
    /// Its descriptor for the end.
    pub fd: i32,
    /// Its command line, shortened.
    pub command: String,
}

/// Every open descriptor of each of `pids`, resolved to what is at the other end.
///
/// A process that vanishes mid-scan is left out; one whose descriptors cannot be read is
/// listed in [`FdReport::unreadable`]. Other ends are looked up among `pids` first and on the
/// whole machine only when not found there, so pass the whole tree.
#[must_use]
pub fn open_fds(pids: &[i32]) -> FdReport {
    let mut report = FdReport::default();
    let mut seen = HashSet::new();
    let tree: Vec<i32> = pids.iter().copied().filter(|p| seen.insert(*p)).collect();

    // 1. Every descriptor of the tree.
    let mut tables: Vec<(i32, Vec<RawFd>)> = Vec::new();
    for &pid in &tree {
        match procfs::read_fd_table(pid) {
            Ok(Some(fds)) => tables.push((pid, fds)),
            Ok(None) => {}
            Err(errno) => report.unreadable.push(Unreadable {
                pid,
                error: format!("{errno:?}: {}", errno.desc()),
            }),
        }
    }
    let mut index = Index::default();
    for (pid, fds) in &tables {
        for raw in fds {
            if let Some(key) = Key::of(&raw.link) {
                index.add(key, *pid, raw.fd, raw_access(raw), true);
            }
        }
    }

    // 2. What each socket is.
    let mut sockets = Sockets::new(&tables, &mut report.notes);

    // 3. Other ends not in the tree: one search of the whole machine for all of them.
    let mut wanted_pipes = HashSet::new();
    let mut wanted_sockets = HashSet::new();
    for (pid, fds) in &tables {
        for raw in fds {
            match &raw.link {
                Link::Pipe(inode) => {
                    let Some(end) = raw_access(raw) else { continue };
                    let key = Key::Pipe(*inode);
                    if index
                        .holders(key, *pid, raw.fd, |a| opposite(end, a))
                        .is_empty()
                    {
                        wanted_pipes.insert(*inode);
                    }
                }
                Link::Socket(inode) => {
                    let peer = sockets.peer_to_find(*pid, *inode);
                    if let Some(peer) = peer.filter(|p| !index.contains(Key::Socket(*p))) {
                        wanted_sockets.insert(peer);
                    }
                }
                _ => {}
            }
        }
    }
    let mut unreadable_elsewhere = 0;
    if !wanted_pipes.is_empty() || !wanted_sockets.is_empty() {
        let scan = procfs::scan_system(&seen, &wanted_pipes, &wanted_sockets);
        report.searched_system = true;
        unreadable_elsewhere = scan.unreadable;
        for found in scan.found {
            if let Some(key) = Key::of(&found.link) {
                index.add(key, found.pid, found.fd, found.access, false);
            }
        }
    }
    let searched = |key: Key| match key {
        Key::Pipe(inode) if wanted_pipes.contains(&inode) => unreadable_elsewhere,
        Key::Socket(inode) if wanted_sockets.contains(&inode) => unreadable_elsewhere,
        _ => 0,
    };

    // 4. Each descriptor with its other end.
    let mut commands = Commands::default();
    for (pid, fds) in tables {
        let fds = fds
            .into_iter()
            .map(|raw| OpenFd {
                fd: raw.fd,
                target: resolve(pid, raw, &index, &mut sockets, &mut commands, &searched),
            })
            .collect();
        report.processes.push(ProcessFds { pid, fds });
    }
    report
}

fn resolve(
    pid: i32,
    raw: RawFd,
    index: &Index,
    sockets: &mut Sockets,
    commands: &mut Commands,
    searched: &dyn Fn(Key) -> usize,
) -> FdTarget {
    let access = raw_access(&raw);
    let fd = raw.fd;
    match raw.link {
        Link::Path { path, deleted } => FdTarget::File {
            path,
            deleted,
            mode: access,
        },
        Link::Pipe(inode) => {
            let Some(end) = access else {
                return FdTarget::Other {
                    link: format!("pipe:[{inode}]"),
                };
            };
            let key = Key::Pipe(inode);
            let other = index.holders(key, pid, fd, |a| opposite(end, a));
            let same = index.holders(key, pid, fd, |a| !opposite(end, a));
            FdTarget::Pipe {
                inode,
                end,
                other_end: commands.holders(&other, searched(key)),
                same_end: commands.holders(&same, 0),
            }
        }
        Link::Socket(inode) => sockets.describe(pid, inode, index, commands, searched),
        Link::Anon(kind) => match kind.as_str() {
            "eventpoll" => FdTarget::Epoll {
                watched: raw.info.map(|i| i.epoll_targets).unwrap_or_default(),
            },
            "eventfd" => FdTarget::EventFd,
            "timerfd" => FdTarget::TimerFd,
            "signalfd" => FdTarget::SignalFd,
            "inotify" => FdTarget::Inotify,
            "pidfd" => FdTarget::PidFd {
                pid: raw.info.and_then(|i| i.pid),
            },
            _ => FdTarget::Other {
                link: format!("anon_inode:[{kind}]"),
            },
        },
        Link::Other(link) => FdTarget::Other { link },
    }
}

fn raw_access(raw: &RawFd) -> Option<Access> {
    raw.info.as_ref().and_then(procfs::FdInfo::access)
}

/// Whether a holder with access `other` holds the end opposite to `end`. A descriptor open for
/// both (a FIFO opened `O_RDWR`) is opposite to every end.
fn opposite(end: Access, other: Access) -> bool {
    match end {
        Access::Read => other.writes(),
        Access::Write => other.reads(),
        Access::ReadWrite | Access::Neither => true,
    }
}

/// A pipe or a socket, by inode: the two live in different kernel file systems, so their
/// inode numbers may coincide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Pipe(u64),
    Socket(u64),
}

impl Key {
    fn of(link: &Link) -> Option<Key> {
        match link {
            Link::Pipe(inode) => Some(Key::Pipe(*inode)),
            Link::Socket(inode) => Some(Key::Socket(*inode)),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    pid: i32,
    fd: i32,
    access: Option<Access>,
    in_tree: bool,
}

/// Who holds each pipe and socket: the tree's descriptors, then those the system search found.
#[derive(Debug, Default)]
struct Index {
    by_key: HashMap<Key, Vec<Hold>>,
}

impl Index {
    fn add(&mut self, key: Key, pid: i32, fd: i32, access: Option<Access>, in_tree: bool) {
        self.by_key.entry(key).or_default().push(Hold {
            pid,
            fd,
            access,
            in_tree,
        });
    }

    fn contains(&self, key: Key) -> bool {
        self.by_key.contains_key(&key)
    }

    /// Holders of `key` whose access passes `filter`, except `(pid, fd)` itself; tree first.
    fn holders(&self, key: Key, pid: i32, fd: i32, filter: impl Fn(Access) -> bool) -> Vec<Hold> {
        let mut out: Vec<Hold> = self
            .by_key
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|h| !(h.pid == pid && h.fd == fd))
            .filter(|h| h.access.is_none_or(&filter))
            .copied()
            .collect();
        out.sort_by_key(|h| (!h.in_tree, h.pid, h.fd));
        out
    }

    /// Every holder of `key`.
    fn all(&self, key: Key) -> Vec<Hold> {
        self.holders(key, -1, -1, |_| true)
    }
}

/// Command lines of holders, each read once.
#[derive(Debug, Default)]
struct Commands {
    by_pid: HashMap<i32, String>,
}

impl Commands {
    fn holders(&mut self, holds: &[Hold], unreadable: usize) -> Holders {
        let found = holds
            .iter()
            .take(MAX_HOLDERS)
            .map(|h| Holder {
                pid: h.pid,
                fd: h.fd,
                command: self.command(h.pid),
            })
            .collect();
        Holders {
            found,
            more: holds.len().saturating_sub(MAX_HOLDERS),
            // A search that found someone is not in doubt.
            unreadable: if holds.is_empty() { unreadable } else { 0 },
        }
    }

    fn command(&mut self, pid: i32) -> String {
        self.by_pid
            .entry(pid)
            .or_insert_with(|| {
                let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .ok()
                    .and_then(|bytes| format_cmdline(program_name(&bytes)))
                    .or_else(|| {
                        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                        Some(format!("[{}]", comm.trim_end()))
                    })
                    .unwrap_or_default();
                shorten(&command, COMMAND_CHARS)
            })
            .clone()
    }
}

/// A command line with its program's directory left out (`/usr/bin/python3 worker.py` reads
/// as `python3 worker.py`): the PID identifies the process, the command is for people.
fn program_name(cmdline: &[u8]) -> &[u8] {
    let program_end = cmdline
        .iter()
        .position(|b| *b == 0)
        .unwrap_or(cmdline.len());
    match cmdline[..program_end].iter().rposition(|b| *b == b'/') {
        Some(slash) if slash + 1 < program_end => &cmdline[slash + 1..],
        _ => cmdline,
    }
}

/// `text` cut to `max` characters, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// What each socket of the tree is, from `sock_diag` and the `/proc/PID/net` tables, loaded
/// once each.
struct Sockets {
    /// Unix sockets of this process's namespace (empty if `sock_diag` failed).
    unix: HashMap<u64, UnixSocket>,
    /// The listener each waiting client is queued on (`UNIX_DIAG_ICONS` lists the clients;
    /// the server end of a queued connection has no inode yet).
    accept_queue: HashMap<u64, u64>,
    /// The network namespace of each process of the tree (its `ns/net` link), or the PID
    /// itself when that link cannot be read.
    namespace_of: HashMap<i32, String>,
    inet: HashMap<String, InetTables>,
    proc_unix: HashMap<String, HashMap<u64, UnixSocket>>,
}

impl Sockets {
    fn new(tables: &[(i32, Vec<RawFd>)], notes: &mut Vec<String>) -> Sockets {
        let mut sockets = Sockets {
            unix: HashMap::new(),
            accept_queue: HashMap::new(),
            namespace_of: HashMap::new(),
            inet: HashMap::new(),
            proc_unix: HashMap::new(),
        };
        let any_socket = tables
            .iter()
            .any(|(_, fds)| fds.iter().any(|raw| matches!(raw.link, Link::Socket(_))));
        if !any_socket {
            return sockets;
        }
        match unix::dump() {
            Ok(unix) => sockets.unix = unix,
            Err(err) => notes.push(format!(
                "unix socket peers unknown: the sock_diag dump failed: {err}"
            )),
        }
        for (listener, socket) in &sockets.unix {
            for pending in &socket.pending {
                sockets.accept_queue.insert(*pending, *listener);
            }
        }
        sockets
    }

    /// The network namespace of `pid`, read when one of its sockets is not a Unix socket of
    /// this namespace.
    fn namespace(&mut self, pid: i32) -> String {
        self.namespace_of
            .entry(pid)
            .or_insert_with(|| {
                std::fs::read_link(format!("/proc/{pid}/ns/net"))
                    .map(|link| link.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| format!("pid {pid}"))
            })
            .clone()
    }

    fn inet(&mut self, pid: i32) -> &InetTables {
        let namespace = self.namespace(pid);
        self.inet
            .entry(namespace)
            .or_insert_with(|| InetTables::read(pid))
    }

    fn proc_unix(&mut self, pid: i32) -> &HashMap<u64, UnixSocket> {
        let namespace = self.namespace(pid);
        self.proc_unix.entry(namespace).or_insert_with(|| {
            std::fs::read_to_string(format!("/proc/{pid}/net/unix"))
                .map(|text| unix::parse_proc_net_unix(&text))
                .unwrap_or_default()
        })
    }

    /// The socket inode whose holders the description of `inode` needs: a Unix peer (or the
    /// listener it waits on), or the other end of a TCP/UDP connection on this machine.
    fn peer_to_find(&mut self, pid: i32, inode: u64) -> Option<u64> {
        if let Some(listener) = self.accept_queue.get(&inode) {
            return Some(*listener);
        }
        if let Some(socket) = self.unix.get(&inode) {
            return socket.peer;
        }
        let tables = self.inet(pid);
        let socket = tables.get(inode)?;
        tables.peer_inode(socket)
    }

    fn describe(
        &mut self,
        pid: i32,
        inode: u64,
        index: &Index,
        commands: &mut Commands,
        searched: &dyn Fn(Key) -> usize,
    ) -> FdTarget {
        if let Some(socket) = self.unix.get(&inode).cloned() {
            let listener = self.accept_queue.get(&inode).copied();
            let peer = listener.or(socket.peer).map(|peer| {
                let key = Key::Socket(peer);
                UnixPeer {
                    inode: peer,
                    path: self.unix.get(&peer).and_then(|s| s.path.clone()),
                    holders: commands.holders(&index.all(key), searched(key)),
                    awaiting_accept: listener.is_some(),
                }
            });
            return unix_target(inode, socket, peer);
        }
        let tables = self.inet(pid);
        if let Some(socket) = tables.get(inode).cloned() {
            let peer = match tables.peer_inode(&socket) {
                Some(peer) => {
                    let key = Key::Socket(peer);
                    commands.holders(&index.all(key), searched(key))
                }
                None => Holders::default(),
            };
            return inet_target(inode, &socket, tables.accepted(&socket), peer);
        }
        if let Some(socket) = self.proc_unix(pid).get(&inode).cloned() {
            return unix_target(inode, socket, None);
        }
        FdTarget::Socket { inode }
    }
}

fn unix_target(inode: u64, socket: UnixSocket, peer: Option<UnixPeer>) -> FdTarget {
    FdTarget::Unix {
        inode,
        socket_type: socket.kind,
        path: socket.path,
        listening: socket.listening,
        connected: socket.connected || peer.is_some(),
        peer,
        recv_queue: socket.recv_queue,
        send_queue: socket.send_queue,
    }
}

fn inet_target(inode: u64, socket: &InetSocket, accepted: bool, peer: Holders) -> FdTarget {
    match socket.proto {
        Proto::Tcp => FdTarget::Tcp {
            inode,
            local: socket.local,
            remote: socket.remote,
            state: inet::tcp_state(socket.state),
            accepted,
            send_queue: socket.tx_queue,
            recv_queue: socket.rx_queue,
            peer,
        },
        Proto::Udp => FdTarget::Udp {
            inode,
            local: socket.local,
            remote: socket.remote,
            send_queue: socket.tx_queue,
            recv_queue: socket.rx_queue,
            peer,
        },
    }
}

impl fmt::Display for FdTarget {
    /// One short phrase: `pipe:[1234] whose write end is held by pid 812 (python worker.py)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_target(self, None, f)
    }
}

fn write_target(target: &FdTarget, me: Option<i32>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match target {
        FdTarget::File {
            path,
            deleted,
            mode,
        } => {
            f.write_str(path)?;
            if *deleted {
                f.write_str(" (deleted)")?;
            }
            if let Some(mode) = mode {
                write!(f, ", {mode}")?;
            }
            Ok(())
        }
        FdTarget::Pipe {
            inode,
            end,
            other_end,
            same_end,
        } => {
            write!(f, "pipe:[{inode}]")?;
            let (other, none) = match end {
                Access::Read => ("write", "with no writer (a read returns end of file)"),
                Access::Write => ("read", "with no reader (a write fails with EPIPE)"),
                Access::ReadWrite | Access::Neither => {
                    f.write_str(" open for reading and writing")?;
                    if !other_end.is_empty() {
                        f.write_str(", also held by ")?;
                        write_holders(other_end, me, f)?;
                    }
                    return Ok(());
                }
            };
            if other_end.is_empty() {
                if other_end.unreadable == 0 {
                    write!(f, " {none}")?;
                } else {
                    write!(
                        f,
                        " whose {other} end no readable process holds ({} could not be read)",
                        other_end.unreadable
                    )?;
                }
            } else {
                write!(f, " whose {other} end is held by ")?;
                write_holders(other_end, me, f)?;
            }
            if !same_end.is_empty() {
                let verb = if *end == Access::Read {
                    "read"
                } else {
                    "written"
                };
                write!(f, "; also {verb} by ")?;
                write_holders(same_end, me, f)?;
            }
            Ok(())
        }
        FdTarget::Unix {
            inode,
            socket_type,
            path,
            listening,
            connected,
            peer,
            recv_queue,
            send_queue,
        } => {
            write!(f, "unix {socket_type} socket:[{inode}]")?;
            if *listening {
                write!(f, " listening on {}", path.as_deref().unwrap_or("?"))?;
                if let Some(n) = recv_queue.filter(|n| *n > 0) {
                    write!(f, ", {n} waiting to be accepted")?;
                }
                return Ok(());
            }
            if let Some(path) = path {
                write!(f, " bound to {path}")?;
            }
            match peer {
                Some(peer) if peer.awaiting_accept => {
                    write!(
                        f,
                        " connecting to {}, not yet accepted by ",
                        peer.path.as_deref().unwrap_or("a listener")
                    )?;
                    write_peer_holders(peer.inode, &peer.holders, me, f)?;
                }
                Some(peer) => {
                    f.write_str(" connected to ")?;
                    write_peer_holders(peer.inode, &peer.holders, me, f)?;
                    if let Some(path) = &peer.path {
                        write!(f, " at {path}")?;
                    }
                }
                None if *connected => f.write_str(" connected to an unknown peer")?,
                None => f.write_str(" not connected")?,
            }
            if let Some(n) = recv_queue.filter(|n| *n > 0) {
                write!(f, ", {n} bytes unread")?;
            }
            if let Some(n) = send_queue.filter(|n| *n > 0) {
                write!(f, ", {n} bytes not yet read by the peer")?;
            }
            Ok(())
        }
        FdTarget::Tcp {
            local,
            remote,
            state,
            accepted,
            send_queue,
            recv_queue,
            peer,
            ..
        } => {
            match (state, remote) {
                (TcpState::Listen, _) => {
                    write!(f, "tcp accept on {local}")?;
                    if *recv_queue > 0 {
                        write!(f, ", {recv_queue} waiting to be accepted")?;
                    }
                    return Ok(());
                }
                (_, None) => write!(f, "tcp {local} ({state})")?,
                (_, Some(remote)) if *accepted => {
                    write!(
                        f,
                        "tcp connection from {remote} accepted on {local} ({state})"
                    )?;
                }
                (_, Some(remote)) => write!(f, "tcp connect to {remote} from {local} ({state})")?,
            }
            if !peer.is_empty() {
                f.write_str(", other end held by ")?;
                write_holders(peer, me, f)?;
            }
            write_queues(*send_queue, *recv_queue, f)
        }
        FdTarget::Udp {
            local,
            remote,
            send_queue,
            recv_queue,
            peer,
            ..
        } => {
            match remote {
                Some(remote) => write!(f, "udp {local} connected to {remote}")?,
                None => write!(f, "udp bound to {local}")?,
            }
            if !peer.is_empty() {
                f.write_str(", other end held by ")?;
                write_holders(peer, me, f)?;
            }
            write_queues(*send_queue, *recv_queue, f)
        }
        FdTarget::Socket { inode } => write!(f, "socket:[{inode}] (not unix, tcp or udp)"),
        FdTarget::Epoll { watched } => {
            f.write_str("epoll")?;
            if watched.is_empty() {
                return f.write_str(" watching nothing");
            }
            f.write_str(" watching fd")?;
            if watched.len() > 1 {
                f.write_str("s")?;
            }
            for (i, fd) in watched.iter().enumerate() {
                write!(f, "{}{fd}", if i == 0 { " " } else { ", " })?;
            }
            Ok(())
        }
        FdTarget::EventFd => f.write_str("eventfd"),
        FdTarget::TimerFd => f.write_str("timerfd"),
        FdTarget::SignalFd => f.write_str("signalfd"),
        FdTarget::Inotify => f.write_str("inotify"),
        FdTarget::PidFd { pid } => match pid {
            Some(pid) if *pid > 0 => write!(f, "pidfd of pid {pid}"),
            Some(_) => f.write_str("pidfd of a process already reaped"),
            None => f.write_str("pidfd"),
        },
        FdTarget::Other { link } => f.write_str(link),
    }
}

fn write_peer_holders(
    inode: u64,
    holders: &Holders,
    me: Option<i32>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    if holders.is_empty() {
        write!(f, "socket:[{inode}], held by no readable process")?;
        if holders.unreadable > 0 {
            write!(f, " ({} could not be read)", holders.unreadable)?;
        }
        return Ok(());
    }
    write_holders(holders, me, f)
}

fn write_holders(holders: &Holders, me: Option<i32>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, holder) in holders.found.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        if Some(holder.pid) == me {
            write!(f, "this process (fd {})", holder.fd)?;
        } else {
            write!(f, "pid {} ({})", holder.pid, holder.command)?;
        }
    }
    if holders.more > 0 {
        write!(f, " and {} more", holders.more)?;
    }
    Ok(())
}

fn write_queues(send: u32, recv: u32, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if recv > 0 {
        write!(f, ", {recv} bytes unread")?;
    }
    if send > 0 {
        write!(f, ", {send} bytes unacknowledged")?;
    }
    Ok(())
}

/// The `/proc` text parsers of this module behind one door each, for the fuzz targets (`fuzz/`)
/// and the property tests: not an API. Results are opaque; they can be compared and printed.
#[doc(hidden)]
pub mod parsers {
    use std::fmt::Debug;

    /// `/proc/PID/fdinfo/N`.
    pub fn fdinfo(text: &str) -> impl Debug + PartialEq + use<> {
        let info = super::procfs::parse_fdinfo(text);
        (info.access(), info)
    }

    /// The target of a `/proc/PID/fd/N` link.
    pub fn fd_link(link: &str) -> impl Debug + PartialEq + use<> {
        super::procfs::parse_link(link)
    }

    /// `/proc/PID/net/{tcp,tcp6}` (`udp` false) or `{udp,udp6}` (`udp` true), whole: every
    /// socket, its peer and whether it was accepted.
    pub fn net_inet(text: &str, udp: bool) -> impl Debug + use<> {
        let proto = if udp {
            super::inet::Proto::Udp
        } else {
            super::inet::Proto::Tcp
        };
        let mut tables = super::inet::InetTables::default();
        tables.add(text, proto);
        text.lines()
            .skip(1)
            .filter_map(|line| super::inet::parse_line(line, proto))
            .map(|socket| {
                (
                    tables.peer_inode(&socket),
                    tables.accepted(&socket),
                    super::inet::tcp_state(socket.state),
                    socket,
                )
            })
            .collect::<Vec<_>>()
    }

    /// `/proc/PID/net/unix`.
    pub fn net_unix(text: &str) -> impl Debug + use<> {
        super::unix::parse_proc_net_unix(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: i32, fd: i32, command: &str) -> Holder {
        Holder {
            pid,
            fd,
            command: command.to_owned(),
        }
    }

    fn holders(list: Vec<Holder>) -> Holders {
        Holders {
            found: list,
            ..Holders::default()
        }
    }

    #[test]
    fn access_comes_from_the_low_bits_and_o_path() {
        assert_eq!(Access::from_flags(0o2_000_000), Access::Read);
        assert_eq!(Access::from_flags(0o1), Access::Write);
        assert_eq!(Access::from_flags(0o2_000_002), Access::ReadWrite);
        assert_eq!(Access::from_flags(0o12_000_000), Access::Neither);
    }

    #[test]
    fn a_read_end_names_its_writers() {
        let pipe = FdTarget::Pipe {
            inode: 1234,
            end: Access::Read,
            other_end: holders(vec![holder(812, 1, "python worker.py")]),
            same_end: Holders::default(),
        };
        assert_eq!(
            pipe.to_string(),
            "pipe:[1234] whose write end is held by pid 812 (python worker.py)"
        );
        let open = OpenFd {
            fd: 7,
            target: pipe,
        };
        assert_eq!(
            open.describe(812).to_string(),
            "fd 7 = pipe:[1234] whose write end is held by this process (fd 1)"
        );
    }

    #[test]
    fn a_pipe_without_its_other_end_says_so_and_doubts_when_it_must() {
        let mut pipe = FdTarget::Pipe {
            inode: 5,
            end: Access::Read,
            other_end: Holders::default(),
            same_end: Holders::default(),
        };
        assert_eq!(
            pipe.to_string(),
            "pipe:[5] with no writer (a read returns end of file)"
        );
        if let FdTarget::Pipe { other_end, .. } = &mut pipe {
            other_end.unreadable = 3;
        }
        assert_eq!(
            pipe.to_string(),
            "pipe:[5] whose write end no readable process holds (3 could not be read)"
        );
    }

    #[test]
    fn long_lists_are_counted_not_repeated() {
        let many = Holders {
            found: vec![holder(1, 1, "a"), holder(2, 1, "b")],
            more: 40,
            unreadable: 0,
        };
        let pipe = FdTarget::Pipe {
            inode: 9,
            end: Access::Write,
            other_end: many,
            same_end: Holders::default(),
        };
        assert_eq!(
            pipe.to_string(),
            "pipe:[9] whose read end is held by pid 1 (a), pid 2 (b) and 40 more"
        );
    }

    #[test]
    fn sockets_read_as_a_sentence() {
        let listener = FdTarget::Tcp {
            inode: 1,
            local: "0.0.0.0:8080".parse().expect("addr"),
            remote: None,
            state: TcpState::Listen,
            accepted: false,
            send_queue: 0,
            recv_queue: 2,
            peer: Holders::default(),
        };
        assert_eq!(
            listener.to_string(),
            "tcp accept on 0.0.0.0:8080, 2 waiting to be accepted"
        );
        let client = FdTarget::Tcp {
            inode: 2,
            local: "127.0.0.1:41000".parse().expect("addr"),
            remote: Some("127.0.0.1:9000".parse().expect("addr")),
            state: TcpState::Established,
            accepted: false,
            send_queue: 0,
            recv_queue: 0,
            peer: holders(vec![holder(44, 5, "server")]),
        };
        assert_eq!(
            client.to_string(),
            "tcp connect to 127.0.0.1:9000 from 127.0.0.1:41000 (established), other end held by pid 44 (server)"
        );
        let unix = FdTarget::Unix {
            inode: 3,
            socket_type: UnixKind::Stream,
            path: None,
            listening: false,
            connected: true,
            peer: Some(UnixPeer {
                inode: 4,
                path: Some("/run/app.sock".into()),
                holders: holders(vec![holder(44, 6, "server")]),
                awaiting_accept: false,
            }),
            recv_queue: Some(0),
            send_queue: Some(10),
        };
        assert_eq!(
            unix.to_string(),
            "unix stream socket:[3] connected to pid 44 (server) at /run/app.sock, 10 bytes not yet read by the peer"
        );
    }

    #[test]
    fn a_command_is_named_by_its_program_without_directory() {
        assert_eq!(
            program_name(b"/usr/bin/python3\0/srv/worker.py\0"),
            b"python3\0/srv/worker.py\0"
        );
        assert_eq!(program_name(b"sleep\x0030\0"), b"sleep\x0030\0");
        assert_eq!(program_name(b"/odd/\0x\0"), b"/odd/\0x\0");
        assert_eq!(program_name(b""), b"");
    }

    #[test]
    fn commands_are_shortened_on_a_character_boundary() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("ééééé", 5), "ééééé");
        assert_eq!(shorten("éééééé", 5), "ééééé…");
    }

    #[test]
    fn the_report_serialises_with_a_kind_tag() {
        let report = FdReport {
            processes: vec![ProcessFds {
                pid: 1,
                fds: vec![OpenFd {
                    fd: 0,
                    target: FdTarget::File {
                        path: "/dev/null".into(),
                        deleted: false,
                        mode: Some(Access::Read),
                    },
                }],
            }],
            ..FdReport::default()
        };
        let json = serde_json::to_value(&report).expect("serialise");
        assert_eq!(json["processes"][0]["fds"][0]["target"]["kind"], "file");
        assert_eq!(json["processes"][0]["fds"][0]["target"]["mode"], "read");
        let back: FdReport = serde_json::from_value(json).expect("deserialise");
        assert_eq!(back, report);
        assert_eq!(back.get(1, 0).map(|o| o.fd), Some(0));
        assert_eq!(back.get(1, 1), None);
    }
}
