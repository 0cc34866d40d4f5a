//! The system call a thread is blocked in, from `/proc/PID/task/TID/syscall`, decoded into
//! something a person reads: `futex WAIT on 0x7f…`, `read on fd 7`, `epoll_wait with no
//! timeout`, `clock_nanosleep 900 s (899.8 s left)`, `connect to 127.0.0.1:9000`.
//!
//! The file holds the number, six raw arguments, the stack and instruction pointers. Pointer
//! arguments (timeouts, socket addresses, paths, poll sets) are read from the target's memory
//! with `process_vm_readv` while it sleeps in the call: the kernel copied them in already, so
//! the user copy is what the thread asked for unless the program rewrites it from another thread.
//!
//! Numbers come from `libc`'s `SYS_*` constants for the architecture hangwatch is built for; a
//! 32-bit process on a 64-bit kernel would report its own numbering (not decoded: left as
//! `syscall N`).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use serde::{Deserialize, Serialize};

use crate::memory::Memory;

/// What the `syscall` file of a thread said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyscallLine {
    /// The thread is on a CPU.
    Running,
    /// The thread is stopped or waiting outside a system call (a page fault, a ptrace stop).
    NotInSyscall,
    /// Blocked (or about to block) in this call.
    In {
        /// Call number.
        nr: i64,
        /// Raw arguments.
        args: [u64; 6],
    },
}

/// Parses the text of `/proc/PID/task/TID/syscall`.
#[must_use]
pub fn parse_line(text: &str) -> Option<SyscallLine> {
    let text = text.trim();
    if text == "running" {
        return Some(SyscallLine::Running);
    }
    let mut words = text.split_ascii_whitespace();
    let nr: i64 = words.next()?.parse().ok()?;
    if nr < 0 {
        return Some(SyscallLine::NotInSyscall);
    }
    let mut args = [0u64; 6];
    for arg in &mut args {
        *arg = parse_hex(words.next()?)?;
    }
    Some(SyscallLine::In { nr, args })
}

fn parse_hex(word: &str) -> Option<u64> {
    u64::from_str_radix(word.strip_prefix("0x").unwrap_or(word), 16).ok()
}

/// How long a blocking call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "ms")]
pub enum Timeout {
    /// No timeout: it waits until woken.
    Never,
    /// A relative timeout as asked (the time already waited is not known).
    Requested(u64),
    /// An absolute deadline, as time left from now.
    Left(u64),
    /// The timeout could not be read (not permitted, or a bad pointer).
    Unknown,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timeout::Never => f.write_str("with no timeout"),
            Timeout::Requested(ms) => write!(f, "for {}", human_ms(*ms)),
            Timeout::Left(ms) => write!(f, "with {} left", human_ms(*ms)),
            Timeout::Unknown => f.write_str("with a timeout that could not be read"),
        }
    }
}

/// Milliseconds the way a person says them: `900 s`, `1.5 s`, `250 ms`, `2 h 5 min`.
#[must_use]
pub fn human_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 if ms % 1_000 == 0 => format!("{} s", ms / 1_000),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        60_000..3_600_000 => format!("{} s", ms / 1_000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// The decoded call a thread is blocked in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Call {
    /// A futex wait: a lock, a condition variable, a semaphore, a thread join.
    Futex {
        /// `WAIT`, `WAIT_BITSET`, `LOCK_PI`, …
        op: String,
        /// The futex word's address.
        addr: u64,
        /// The value the waiter expects to find (glibc's contended-lock waits pass 2).
        expected: u32,
        /// How long it may wait.
        timeout: Timeout,
    },
    /// Waiting for data on a file descriptor (`read`, `recvfrom`, `recvmsg`, …).
    Read {
        /// Call name.
        name: String,
        /// The descriptor.
        fd: i32,
    },
    /// Waiting to write to a file descriptor (a full pipe, a full socket buffer).
    Write {
        /// Call name.
        name: String,
        /// The descriptor.
        fd: i32,
    },
    /// Waiting for a connection on a listening socket.
    Accept {
        /// The listening descriptor.
        fd: i32,
    },
    /// Waiting for a connection to be established.
    Connect {
        /// The connecting descriptor.
        fd: i32,
        /// Where to, when the address could be read.
        to: Option<String>,
    },
    /// `poll`, `ppoll`, `select`, `pselect6`.
    Poll {
        /// Call name.
        name: String,
        /// The descriptors polled (poll sets only; at most 32 listed).
        fds: Vec<i32>,
        /// How long it may wait.
        timeout: Timeout,
    },
    /// `epoll_wait` and friends: an event loop waiting for its next event.
    EpollWait {
        /// Call name.
        name: String,
        /// The epoll descriptor.
        epfd: i32,
        /// How long it may wait.
        timeout: Timeout,
    },
    /// A sleep.
    Sleep {
        /// Call name.
        name: String,
        /// How long.
        timeout: Timeout,
    },
    /// Waiting for a child process (`wait4`, `waitid`).
    WaitChild {
        /// Call name.
        name: String,
        /// Which child (`-1` = any).
        pid: i64,
    },
    /// Waiting for a file lock (`flock`, `fcntl(F_SETLKW)`).
    FileLock {
        /// Call name.
        name: String,
        /// The locked descriptor.
        fd: i32,
    },
    /// Opening a file (blocks on a FIFO with no other end, or a slow file system).
    Open {
        /// The path asked for.
        path: Option<String>,
    },
    /// Waiting for a signal (`pause`, `rt_sigsuspend`, `rt_sigtimedwait`).
    SignalWait {
        /// Call name.
        name: String,
    },
    /// A wait interrupted by a stop signal and resumed: the original call's arguments are lost.
    Restart,
    /// Any other call.
    Other {
        /// Call name, when known.
        name: String,
        /// Raw arguments.
        args: [u64; 6],
    },
}

impl Call {
    /// The file descriptor the call waits on, to be resolved by the caller.
    #[must_use]
    pub fn fd(&self) -> Option<i32> {
        match self {
            Call::Read { fd, .. }
            | Call::Write { fd, .. }
            | Call::Accept { fd }
            | Call::Connect { fd, .. }
            | Call::FileLock { fd, .. } => Some(*fd),
            Call::EpollWait { epfd, .. } => Some(*epfd),
            _ => None,
        }
    }

    /// Whether this is a futex wait (a lock or condition of some kind).
    #[must_use]
    pub fn is_futex(&self) -> bool {
        matches!(self, Call::Futex { .. })
    }

    /// Whether the call can only end by an event from elsewhere (no timeout).
    #[must_use]
    pub fn waits_forever(&self) -> bool {
        match self {
            Call::Futex { timeout, .. }
            | Call::Poll { timeout, .. }
            | Call::EpollWait { timeout, .. } => *timeout == Timeout::Never,
            Call::Sleep { .. } | Call::Other { .. } | Call::Restart => false,
            _ => true,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Futex {
                op, addr, timeout, ..
            } => {
                write!(f, "futex {op} on {addr:#x}")?;
                if *timeout != Timeout::Never {
                    write!(f, " {timeout}")?;
                }
                Ok(())
            }
            Call::Read { name, fd } | Call::Write { name, fd } => write!(f, "{name} on fd {fd}"),
            Call::Accept { fd } => write!(f, "accept on fd {fd}"),
            Call::Connect { fd, to } => match to {
                Some(to) => write!(f, "connect to {to} on fd {fd}"),
                None => write!(f, "connect on fd {fd}"),
            },
            Call::Poll { name, fds, timeout } => {
                write!(f, "{name}")?;
                if !fds.is_empty() {
                    let list: Vec<String> = fds.iter().map(ToString::to_string).collect();
                    write!(f, " on fds {}", list.join(", "))?;
                }
                write!(f, " {timeout}")
            }
            Call::EpollWait {
                name,
                epfd,
                timeout,
            } => write!(f, "{name} on fd {epfd} {timeout}"),
            Call::Sleep { name, timeout } => match timeout {
                Timeout::Requested(ms) => write!(f, "{name} {}", human_ms(*ms)),
                Timeout::Left(ms) => write!(f, "{name} ({} left)", human_ms(*ms)),
                other => write!(f, "{name} {other}"),
            },
            Call::WaitChild { name, pid } if *pid <= 0 => write!(f, "{name} for any child"),
            Call::WaitChild { name, pid } => write!(f, "{name} for child {pid}"),
            Call::FileLock { name, fd } => write!(f, "{name} lock on fd {fd}"),
            Call::Open { path: Some(path) } => write!(f, "open of {path}"),
            Call::Open { path: None } => f.write_str("open"),
            Call::SignalWait { name } => write!(f, "{name} (waiting for a signal)"),
            Call::Restart => f.write_str(
                "restart_syscall (a wait resumed after a stop signal; its arguments are lost)",
            ),
            Call::Other { name, .. } => f.write_str(name),
        }
    }
}

/// Decodes a blocked call, reading pointer arguments from `memory`.
#[must_use]
pub fn decode(nr: i64, args: [u64; 6], memory: &Memory) -> Call {
    let fd = args[0] as i32;
    let name = |s: &str| s.to_owned();
    match nr {
        libc::SYS_futex => decode_futex(args, memory),
        libc::SYS_read | libc::SYS_readv | libc::SYS_pread64 | libc::SYS_preadv => Call::Read {
            name: syscall_name(nr).to_owned(),
            fd,
        },
        libc::SYS_recvfrom | libc::SYS_recvmsg | libc::SYS_recvmmsg => Call::Read {
            name: syscall_name(nr).to_owned(),
            fd,
        },
        libc::SYS_write
        | libc::SYS_writev
        | libc::SYS_pwrite64
        | libc::SYS_sendto
        | libc::SYS_sendmsg
        | libc::SYS_sendmmsg => Call::Write {
            name: syscall_name(nr).to_owned(),
            fd,
        },
        libc::SYS_accept | libc::SYS_accept4 => Call::Accept { fd },
        libc::SYS_connect => Call::Connect {
            fd,
            to: read_sockaddr(memory, args[1], args[2]),
        },
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll => Call::Poll {
            name: name("poll"),
            fds: read_pollfds(memory, args[0], args[1]),
            timeout: ms_timeout(args[2] as i32),
        },
        libc::SYS_ppoll => Call::Poll {
            name: name("ppoll"),
            fds: read_pollfds(memory, args[0], args[1]),
            timeout: relative_timespec(memory, args[2]),
        },
        #[cfg(target_arch = "x86_64")]
        libc::SYS_select if args[0] == 0 && args[4] != 0 => Call::Sleep {
            name: name("select"),
            timeout: memory
                .read_timeval_ns(args[4])
                .map_or(Timeout::Unknown, |ns| Timeout::Requested(ns_to_ms(ns))),
        },
        #[cfg(target_arch = "x86_64")]
        libc::SYS_select => Call::Poll {
            name: name("select"),
            fds: Vec::new(),
            timeout: if args[4] == 0 {
                Timeout::Never
            } else {
                memory
                    .read_timeval_ns(args[4])
                    .map_or(Timeout::Unknown, |ns| Timeout::Requested(ns_to_ms(ns)))
            },
        },
        // With no descriptors, `pselect6` is a sleep: CPython before 3.11 sleeps this way in
        // `time.sleep`, and so do C programs that want a portable sub-second sleep.
        libc::SYS_pselect6 if args[0] == 0 => Call::Sleep {
            name: name("pselect6"),
            timeout: relative_timespec(memory, args[4]),
        },
        libc::SYS_pselect6 => Call::Poll {
            name: name("pselect6"),
            fds: Vec::new(),
            timeout: relative_timespec(memory, args[4]),
        },
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_wait => Call::EpollWait {
            name: name("epoll_wait"),
            epfd: fd,
            timeout: ms_timeout(args[3] as i32),
        },
        libc::SYS_epoll_pwait => Call::EpollWait {
            name: name("epoll_pwait"),
            epfd: fd,
            timeout: ms_timeout(args[3] as i32),
        },
        libc::SYS_epoll_pwait2 => Call::EpollWait {
            name: name("epoll_pwait2"),
            epfd: fd,
            timeout: relative_timespec(memory, args[3]),
        },
        libc::SYS_nanosleep => Call::Sleep {
            name: name("nanosleep"),
            timeout: relative_timespec(memory, args[0]),
        },
        libc::SYS_clock_nanosleep => {
            let absolute = args[1] & libc::TIMER_ABSTIME as u64 != 0;
            let timeout = if absolute {
                absolute_timespec(memory, args[2], args[0] as libc::clockid_t)
            } else {
                relative_timespec(memory, args[2])
            };
            Call::Sleep {
                name: name("clock_nanosleep"),
                timeout,
            }
        }
        libc::SYS_wait4 => Call::WaitChild {
            name: name("wait4"),
            pid: args[0] as i32 as i64,
        },
        libc::SYS_waitid => Call::WaitChild {
            name: name("waitid"),
            // P_ALL = 0, P_PID = 1: only a P_PID wait names its child.
            pid: if args[0] == 1 { args[1] as i64 } else { -1 },
        },
        libc::SYS_flock => Call::FileLock {
            name: name("flock"),
            fd,
        },
        libc::SYS_fcntl => Call::FileLock {
            name: name("fcntl"),
            fd,
        },
        #[cfg(target_arch = "x86_64")]
        libc::SYS_open => Call::Open {
            path: memory.read_c_string(args[0], 512).ok(),
        },
        libc::SYS_openat => Call::Open {
            path: memory.read_c_string(args[1], 512).ok(),
        },
        #[cfg(target_arch = "x86_64")]
        libc::SYS_pause => Call::SignalWait {
            name: name("pause"),
        },
        libc::SYS_rt_sigsuspend | libc::SYS_rt_sigtimedwait => Call::SignalWait {
            name: syscall_name(nr).to_owned(),
        },
        libc::SYS_restart_syscall => Call::Restart,
        _ => Call::Other {
            name: syscall_name(nr).to_owned(),
            args,
        },
    }
}

fn decode_futex(args: [u64; 6], memory: &Memory) -> Call {
    const PRIVATE: u64 = libc::FUTEX_PRIVATE_FLAG as u64;
    const REALTIME: u64 = libc::FUTEX_CLOCK_REALTIME as u64;
    let cmd = args[1] & !(PRIVATE | REALTIME);
    let op = match cmd as i32 {
        libc::FUTEX_WAIT => "WAIT",
        libc::FUTEX_WAIT_BITSET => "WAIT_BITSET",
        libc::FUTEX_LOCK_PI => "LOCK_PI",
        libc::FUTEX_LOCK_PI2 => "LOCK_PI2",
        libc::FUTEX_WAIT_REQUEUE_PI => "WAIT_REQUEUE_PI",
        libc::FUTEX_WAKE => "WAKE",
        _ => "op",
    };
    let timeout = if args[3] == 0 {
        Timeout::Never
    } else if cmd as i32 == libc::FUTEX_WAIT {
        // FUTEX_WAIT takes a relative timeout; the others an absolute one.
        relative_timespec(memory, args[3])
    } else {
        let clock = if args[1] & REALTIME != 0 || cmd as i32 == libc::FUTEX_LOCK_PI {
            libc::CLOCK_REALTIME
        } else {
            libc::CLOCK_MONOTONIC
        };
        absolute_timespec(memory, args[3], clock)
    };
    Call::Futex {
        op: op.to_owned(),
        addr: args[0],
        expected: args[2] as u32,
        timeout,
    }
}

fn ms_timeout(ms: i32) -> Timeout {
    if ms < 0 {
        Timeout::Never
    } else {
        Timeout::Requested(ms as u64)
    }
}

fn ns_to_ms(ns: u128) -> u64 {
    u64::try_from(ns / 1_000_000).unwrap_or(u64::MAX)
}

fn relative_timespec(memory: &Memory, addr: u64) -> Timeout {
    if addr == 0 {
        return Timeout::Never;
    }
    memory
        .read_timespec_ns(addr)
        .map_or(Timeout::Unknown, |ns| Timeout::Requested(ns_to_ms(ns)))
}

fn absolute_timespec(memory: &Memory, addr: u64, clock: libc::clockid_t) -> Timeout {
    if addr == 0 {
        return Timeout::Never;
    }
    let Ok(deadline) = memory.read_timespec_ns(addr) else {
        return Timeout::Unknown;
    };
    let clock = match clock {
        libc::CLOCK_REALTIME => nix::time::ClockId::CLOCK_REALTIME,
        libc::CLOCK_BOOTTIME => nix::time::ClockId::CLOCK_BOOTTIME,
        _ => nix::time::ClockId::CLOCK_MONOTONIC,
    };
    let Ok(now) = nix::time::clock_gettime(clock) else {
        return Timeout::Unknown;
    };
    let now = now.tv_sec() as u128 * 1_000_000_000 + now.tv_nsec() as u128;
    Timeout::Left(ns_to_ms(deadline.saturating_sub(now)))
}

/// The descriptors of a `struct pollfd` array (at most 32).
fn read_pollfds(memory: &Memory, addr: u64, count: u64) -> Vec<i32> {
    let count = count.min(32) as usize;
    let mut buf = vec![0u8; count * 8];
    if count == 0 || memory.read(addr, &mut buf).is_err() {
        return Vec::new();
    }
    buf.chunks_exact(8)
        .filter_map(|pollfd| {
            let fd = i32::from_ne_bytes(pollfd[..4].try_into().ok()?);
            (fd >= 0).then_some(fd)
        })
        .collect()
}

/// A `struct sockaddr` as text: `127.0.0.1:9000`, `[::1]:80`, `/run/app.sock`, `@abstract`.
fn read_sockaddr(memory: &Memory, addr: u64, len: u64) -> Option<String> {
    let len = (len as usize).min(128);
    if len < 2 {
        return None;
    }
    let mut buf = vec![0u8; len];
    memory.read(addr, &mut buf).ok()?;
    parse_sockaddr(&buf)
}

/// Parses the bytes of a `struct sockaddr_in`, `sockaddr_in6` or `sockaddr_un`.
#[must_use]
pub fn parse_sockaddr(buf: &[u8]) -> Option<String> {
    let family = u16::from_ne_bytes(buf.get(..2)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET if buf.len() >= 8 => {
            let port = u16::from_be_bytes(buf[2..4].try_into().ok()?);
            let ip = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)).to_string())
        }
        libc::AF_INET6 if buf.len() >= 24 => {
            let port = u16::from_be_bytes(buf[2..4].try_into().ok()?);
            let octets: [u8; 16] = buf[8..24].try_into().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0)).to_string())
        }
        libc::AF_UNIX => {
            let path = &buf[2..];
            if path.first() == Some(&0) {
                let name = &path[1..];
                Some(format!("@{}", String::from_utf8_lossy(name)))
            } else {
                let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
                Some(String::from_utf8_lossy(&path[..end]).into_owned())
            }
        }
        _ => None,
    }
}

/// The name of a call, `syscall N` for ones this table does not know.
#[must_use]
pub fn syscall_name(nr: i64) -> &'static str {
    macro_rules! names {
        ($($sys:ident),* $(,)?) => {
            $(if nr == libc::$sys { return &stringify!($sys)[4..]; })*
        };
    }
    names!(
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_preadv,
        SYS_close,
        SYS_openat,
        SYS_ioctl,
        SYS_fsync,
        SYS_fdatasync,
        SYS_futex,
        SYS_ppoll,
        SYS_pselect6,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        SYS_accept,
        SYS_accept4,
        SYS_connect,
        SYS_recvfrom,
        SYS_recvmsg,
        SYS_recvmmsg,
        SYS_sendto,
        SYS_sendmsg,
        SYS_sendmmsg,
        SYS_wait4,
        SYS_waitid,
        SYS_flock,
        SYS_fcntl,
        SYS_rt_sigsuspend,
        SYS_rt_sigtimedwait,
        SYS_restart_syscall,
        SYS_sched_yield,
        SYS_msgrcv,
        SYS_msgsnd,
        SYS_semop,
        SYS_semtimedop,
        SYS_io_getevents,
        SYS_io_uring_enter,
        SYS_mmap,
        SYS_munmap,
        SYS_mprotect,
        SYS_madvise,
        SYS_brk,
        SYS_exit_group,
        SYS_splice,
        SYS_copy_file_range,
        SYS_getdents64,
        SYS_unlinkat,
        SYS_renameat,
        SYS_execve,
        SYS_clone,
        SYS_clone3,
        SYS_sync,
        SYS_syncfs,
    );
    #[cfg(target_arch = "x86_64")]
    {
        names!(
            SYS_poll,
            SYS_select,
            SYS_epoll_wait,
            SYS_pause,
            SYS_open,
            SYS_sendfile,
            SYS_rename,
            SYS_unlink,
            SYS_fork,
            SYS_vfork,
        );
    }
    "syscall"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_shapes_of_the_file() {
        assert_eq!(parse_line("running\n"), Some(SyscallLine::Running));
        assert_eq!(
            parse_line("-1 0x7ffc 0x7f62\n"),
            Some(SyscallLine::NotInSyscall)
        );
        // Captured from `sleep 30` on x86_64.
        let line =
            "230 0x0 0x0 0x7ffca1d17df0 0x7ffca1d17e30 0x0 0x0 0x7ffca1d17dd8 0x7f6218072503";
        assert_eq!(
            parse_line(line),
            Some(SyscallLine::In {
                nr: 230,
                args: [0, 0, 0x7ffc_a1d1_7df0, 0x7ffc_a1d1_7e30, 0, 0]
            })
        );
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn a_select_without_descriptors_is_a_sleep() {
        let memory = Memory::of(std::process::id() as i32);
        let ts = libc::timespec {
            tv_sec: 3599,
            tv_nsec: 0,
        };
        let sleep = decode(
            libc::SYS_pselect6,
            [0, 0, 0, 0, &raw const ts as u64, 0],
            &memory,
        );
        assert!(matches!(sleep, Call::Sleep { .. }), "{sleep:?}");
        assert!(!sleep.waits_forever());
        let poll = decode(libc::SYS_pselect6, [4, 0x1000, 0, 0, 0, 0], &memory);
        assert!(matches!(poll, Call::Poll { .. }), "{poll:?}");
    }

    #[test]
    fn decodes_reads_and_waits_without_memory() {
        let memory = Memory::of(std::process::id() as i32);
        let read = decode(libc::SYS_read, [7, 0, 0, 0, 0, 0], &memory);
        assert_eq!(read.fd(), Some(7));
        assert_eq!(read.to_string(), "read on fd 7");
        let epoll = decode(
            libc::SYS_epoll_pwait,
            [3, 0, 16, u64::from(u32::MAX), 0, 0],
            &memory,
        );
        assert_eq!(epoll.to_string(), "epoll_pwait on fd 3 with no timeout");
        assert!(epoll.waits_forever());
    }

    #[test]
    fn decodes_a_futex_wait_with_its_timeout_read_from_memory() {
        let ts = libc::timespec {
            tv_sec: 2,
            tv_nsec: 500_000_000,
        };
        let memory = Memory::of(std::process::id() as i32);
        let op = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as u64;
        let call = decode(
            libc::SYS_futex,
            [0x7f00, op, 2, &raw const ts as u64, 0, 0],
            &memory,
        );
        assert_eq!(call.to_string(), "futex WAIT on 0x7f00 for 2.5 s");
        let forever = decode(libc::SYS_futex, [0x7f00, op, 2, 0, 0, 0], &memory);
        assert_eq!(forever.to_string(), "futex WAIT on 0x7f00");
        assert!(forever.waits_forever());
    }

    #[test]
    fn parses_socket_addresses() {
        let mut v4 = vec![0u8; 16];
        v4[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&9000u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(parse_sockaddr(&v4).as_deref(), Some("127.0.0.1:9000"));
        let mut un = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        un.extend_from_slice(b"/run/app.sock\0");
        assert_eq!(parse_sockaddr(&un).as_deref(), Some("/run/app.sock"));
    }

    #[test]
    fn names_durations_for_people() {
        assert_eq!(human_ms(250), "250 ms");
        assert_eq!(human_ms(900_000), "900 s");
        assert_eq!(human_ms(1_500), "1.5 s");
    }
}
