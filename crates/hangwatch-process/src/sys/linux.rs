//! The raw Linux calls of this crate: every `unsafe` block lives here, each with its reason.
#![allow(
    unsafe_code,
    reason = "raw syscalls without a safe wrapper in nix (pidfd, shmctl) and the pre-exec hook \
              of a forked child; each block states why it is sound"
)]

use std::io;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `pidfd_open(2)`: a file descriptor that refers to process `pid` for as long as it is open,
/// whatever happens to the number. Readable (for `poll`/`epoll`) once the process has exited.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; it touches no memory
    // of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd refers to, never a process that
/// reused its PID.
pub(crate) fn pidfd_send_signal(fd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a null siginfo is allowed (the kernel fills one as for kill(2)); fd is a live
    // pidfd borrowed for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// What the child must do between `fork` and `exec`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildSetup {
    /// Make the child's new process group the terminal's foreground group (the terminal is fd 0).
    pub foreground_tty: bool,
    /// Send `SIGKILL` to the child when the thread that forked it exits (`PR_SET_PDEATHSIG`).
    pub die_with_parent: bool,
    /// The PID of the parent, to detect that it died before the death signal was armed.
    pub parent_pid: i32,
    /// Set the limit of open files (`RLIMIT_NOFILE`: soft, hard) before exec.
    pub open_files: Option<(u64, u64)>,
}

/// `getrlimit(RLIMIT_NOFILE)`: this process's limit of open files, (soft, hard).
pub(crate) fn open_files_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a live `struct rlimit` the kernel writes into; nothing else is read.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// `setrlimit(RLIMIT_NOFILE)`: sets this process's limit of open files. Async-signal-safe (one
/// system call, no allocation), so the pre-exec hook uses it too.
pub(crate) fn set_open_files_limit(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `limit` is a live `struct rlimit` the kernel only reads.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The identity the child takes before `exec`, looked up before `fork` (see [`crate::user`]).
#[derive(Debug)]
pub(crate) struct ChildCredentials {
    pub uid: u32,
    pub gid: u32,
    /// Every group, the primary one included, as `initgroups(3)` would set them.
    pub groups: Vec<u32>,
}

unsafe extern "C" {
    /// The process environment that `execvp` passes on (see environ(7)).
    static mut environ: *const *const libc::c_char;
}

/// A whole environment built before `fork`, installed in the child by pointing `environ` at
/// it: the only way to give the child a variable that holds its own PID (`WATCHDOG_PID`, as
/// systemd does) without allocating after `fork`.
pub(crate) struct ChildEnv {
    /// `KEY=VALUE\0` entries. Their heap buffers never move once built.
    entries: Vec<Vec<u8>>,
    /// The entry whose value is the child's PID, filled in after `fork`, and its prefix length.
    pid_slot: Option<(usize, usize)>,
    /// Null-terminated pointers into `entries`.
    pointers: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into `entries`, which the struct owns and never reallocates;
// the struct is only used by the one thread that runs the pre-exec hook.
unsafe impl Send for ChildEnv {}
// SAFETY: as above; nothing is shared.
unsafe impl Sync for ChildEnv {}

impl ChildEnv {
    /// `vars` as the whole environment, plus `pid_var=<the child's PID>` if given.
    pub(crate) fn new(
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
        pid_var: Option<&str>,
    ) -> ChildEnv {
        use std::os::unix::ffi::OsStrExt;
        let mut entries: Vec<Vec<u8>> = vars
            .into_iter()
            .filter(|(k, v)| !k.as_bytes().contains(&0) && !v.as_bytes().contains(&0))
            .map(|(k, v)| {
                let mut entry = Vec::with_capacity(k.len() + v.len() + 2);
                entry.extend_from_slice(k.as_bytes());
                entry.push(b'=');
                entry.extend_from_slice(v.as_bytes());
                entry.push(0);
                entry
            })
            .collect();
        let pid_slot = pid_var.map(|name| {
            let mut entry = Vec::with_capacity(name.len() + 1 + 21);
            entry.extend_from_slice(name.as_bytes());
            entry.push(b'=');
            let prefix = entry.len();
            // Room for any PID and the NUL, written after fork without reallocating.
            entry.resize(prefix + 21, 0);
            entries.push(entry);
            (entries.len() - 1, prefix)
        });
        let mut pointers: Vec<*const libc::c_char> =
            entries.iter().map(|e| e.as_ptr().cast()).collect();
        pointers.push(std::ptr::null());
        ChildEnv {
            entries,
            pid_slot,
            pointers,
        }
    }

    /// In the child: fill in the PID and install the environment. Async-signal-safe.
    fn install(&mut self) {
        if let Some((index, prefix)) = self.pid_slot
            && let Some(entry) = self.entries.get_mut(index)
        {
            // SAFETY: getpid has no preconditions.
            let mut pid = unsafe { libc::getpid() } as u32;
            let mut digits = [0u8; 10];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            for i in 0..n {
                entry[prefix + i] = digits[n - 1 - i];
            }
            entry[prefix + n] = 0;
        }
        // SAFETY: a plain pointer store into libc's global, in a single-threaded child before
        // exec; `pointers` lives until exec replaces the process image.
        unsafe { std::ptr::addr_of_mut!(environ).write(self.pointers.as_ptr()) };
    }
}

/// Installs the pre-exec hook for `setup` on `command`. The process group itself is set by
/// `Command::process_group`, which std applies before this hook runs. With `env`, the command
/// must not have had `env`/`envs` called: std would then install its own copy after the hook.
///
/// With `credentials`, the hook switches user itself rather than through std's `uid`/`gid`,
/// which would drop the supplementary groups (std's `groups` is unstable).
pub(crate) fn configure_child(
    command: &mut Command,
    setup: ChildSetup,
    env: Option<ChildEnv>,
    credentials: Option<ChildCredentials>,
) {
    let mut env = env;
    let hook = move || -> io::Result<()> {
        if let Some(env) = &mut env {
            env.install();
        }
        // Only async-signal-safe calls below: setrlimit, setgroups, setgid, setuid, prctl,
        // getppid, sigprocmask, ioctl, getpid.
        if let Some((soft, hard)) = setup.open_files {
            set_open_files_limit(soft, hard)?;
        }
        if let Some(user) = &credentials {
            // Groups first, then the group, then the user: once the uid is dropped, the
            // privilege to change the others is gone.
            // SAFETY: `groups` is a live slice of `gid_t` of the length passed; setgroups only
            // reads it.
            if unsafe { libc::setgroups(user.groups.len(), user.groups.as_ptr()) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: setgid takes an integer only.
            if unsafe { libc::setgid(user.gid) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: setuid takes an integer only.
            if unsafe { libc::setuid(user.uid) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // After the switch of user: a change of credentials clears the parent-death signal
        // (prctl(2)), so arming it before would be undone.
        if setup.die_with_parent {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the signal was armed; then nobody will send it.
            // SAFETY: getppid has no preconditions.
            if unsafe { libc::getppid() } != setup.parent_pid {
                // SAFETY: _exit never returns and is async-signal-safe.
                unsafe { libc::_exit(125) };
            }
        }
        if setup.foreground_tty {
            // A background group calling tcsetpgrp gets SIGTTOU unless it is blocked; with it
            // blocked the kernel makes the change without sending anything.
            // SAFETY: the sets are stack values initialised by sigemptyset before use.
            unsafe {
                let mut block: libc::sigset_t = std::mem::zeroed();
                let mut old: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut block);
                libc::sigaddset(&mut block, libc::SIGTTOU);
                libc::sigprocmask(libc::SIG_BLOCK, &block, &mut old);
                libc::tcsetpgrp(0, libc::getpid());
                libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only makes async-signal-safe calls and allocates nothing; it runs in the
    // forked child before exec.
    unsafe { command.pre_exec(hook) };
}

/// Gives the terminal on `fd` to process group `pgrp`, from a process that may be in the
/// background (SIGTTOU is blocked for the duration, so the call is not stopped).
pub(crate) fn give_terminal(fd: i32, pgrp: i32) -> io::Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
    let mut block = SigSet::empty();
    block.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old))?;
    // SAFETY: fd is one of the process's standard descriptors, open for the whole call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let result = nix::unistd::tcsetpgrp(borrowed, nix::unistd::Pid::from_raw(pgrp));
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    result.map_err(io::Error::from)
}

/// The process group in the foreground of the terminal on `fd`, if `fd` is a terminal.
pub(crate) fn terminal_foreground(fd: i32) -> Option<i32> {
    // SAFETY: fd is one of the process's standard descriptors, open for the whole call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if !nix::unistd::isatty(borrowed).unwrap_or(false) {
        return None;
    }
    nix::unistd::tcgetpgrp(borrowed)
        .ok()
        .map(|pid| pid.as_raw())
}

/// `PR_SET_CHILD_SUBREAPER`: orphaned descendants are re-parented to this process instead of
/// init, so a `setsid` + double fork cannot escape its supervisor.
pub(crate) fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// An epoll instance, owned, for registration with the tokio reactor.
#[derive(Debug)]
pub(crate) struct EpollFd(pub nix::sys::epoll::Epoll);

impl std::os::fd::AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.0.as_raw_fd()
    }
}

/// A new epoll instance registered with the current tokio reactor (panics outside a runtime).
pub(crate) fn async_epoll() -> io::Result<tokio::io::unix::AsyncFd<EpollFd>> {
    use nix::sys::epoll::{Epoll, EpollCreateFlags};
    let epoll = EpollFd(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
    // SAFETY: the fd is owned by `EpollFd`, which the AsyncFd owns until it is dropped, and
    // `as_raw_fd` always returns that same fd.
    unsafe { tokio::io::unix::AsyncFd::register(epoll) }.map_err(|err| err.into_parts().1)
}

/// A non-blocking `CLOCK_MONOTONIC` timerfd, owned, for registration with the tokio reactor.
#[derive(Debug)]
pub(crate) struct TimerFd(pub nix::sys::timerfd::TimerFd);

impl std::os::fd::AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// A new timerfd registered with the current tokio reactor (panics outside a runtime).
pub(crate) fn async_timerfd() -> io::Result<tokio::io::unix::AsyncFd<TimerFd>> {
    use nix::sys::timerfd::{ClockId, TimerFlags};
    let timer = TimerFd(nix::sys::timerfd::TimerFd::new(
        ClockId::CLOCK_MONOTONIC,
        TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
    )?);
    // SAFETY: the fd is owned by `TimerFd`, which the AsyncFd owns until it is dropped, and
    // `as_raw_fd` always returns that same fd.
    unsafe { tokio::io::unix::AsyncFd::register(timer) }.map_err(|err| err.into_parts().1)
}

/// Registers an owned fd with the current tokio reactor (panics outside a runtime).
pub(crate) fn async_owned_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: `OwnedFd` owns the fd and returns that same fd from `as_raw_fd` until it is
    // dropped, which happens only when the AsyncFd is.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|err| err.into_parts().1)
}

/// `shmctl(IPC_RMID)`: marks SysV shared memory segment `id` for removal. The kernel destroys
/// it once the last process detaches; a segment nobody has attached goes at once.
pub(crate) fn remove_sysv_shm(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no buffer, so a null `shmid_ds` pointer is allowed (shmctl(2));
    // an unknown or stale id makes the call fail with EINVAL or EIDRM, reported below.
    let rc = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `struct procmap_query` of `<linux/fs.h>` (Linux 6.11): one question about the memory map of
/// a process, asked through an open `/proc/PID/maps`.
#[repr(C)]
#[derive(Debug, Default)]
struct ProcmapQuery {
    size: u64,
    query_flags: u64,
    query_addr: u64,
    vma_start: u64,
    vma_end: u64,
    vma_flags: u64,
    vma_page_size: u64,
    vma_offset: u64,
    inode: u64,
    dev_major: u32,
    dev_minor: u32,
    vma_name_size: u32,
    build_id_size: u32,
    vma_name_addr: u64,
    build_id_addr: u64,
}

const _: () = assert!(std::mem::size_of::<ProcmapQuery>() == 104);

/// `_IOWR('f', 17, struct procmap_query)`.
const PROCMAP_QUERY: u32 = (3 << 30) | (104 << 16) | ((b'f' as u32) << 8) | 17;
/// Only mappings shared with other processes (`MAP_SHARED`).
const PROCMAP_QUERY_VMA_SHARED: u64 = 8;
/// The mapping at the address, or the next one above it.
const PROCMAP_QUERY_COVERING_OR_NEXT_VMA: u64 = 16;
/// Only mappings of files.
const PROCMAP_QUERY_FILE_BACKED_VMA: u64 = 32;

/// One shared file mapping, as `PROCMAP_QUERY` describes it.
#[derive(Debug)]
pub(crate) struct QueriedMapping {
    pub end: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    pub name_len: usize,
}

/// Asks for the first shared file mapping at or above `address` of the process whose
/// `/proc/PID/maps` is `maps`, its path written into `name`. `Ok(None)` when there is none;
/// `ENOTTY` from kernels older than 6.11.
pub(crate) fn procmap_query(
    maps: BorrowedFd<'_>,
    address: u64,
    name: &mut [u8],
) -> io::Result<Option<QueriedMapping>> {
    use std::os::fd::AsRawFd;
    let mut query = ProcmapQuery {
        size: std::mem::size_of::<ProcmapQuery>() as u64,
        query_flags: PROCMAP_QUERY_COVERING_OR_NEXT_VMA
            | PROCMAP_QUERY_FILE_BACKED_VMA
            | PROCMAP_QUERY_VMA_SHARED,
        query_addr: address,
        vma_name_size: u32::try_from(name.len()).unwrap_or(u32::MAX),
        vma_name_addr: name.as_mut_ptr() as u64,
        ..ProcmapQuery::default()
    };
    // SAFETY: `query` is a live, properly sized `struct procmap_query` (its `size` field says
    // which version); the kernel writes at most `vma_name_size` bytes to `name`, which is
    // borrowed mutably for the call, and no build ID (its size is 0).
    let rc = unsafe {
        libc::ioctl(
            maps.as_raw_fd(),
            PROCMAP_QUERY as libc::Ioctl,
            std::ptr::from_mut(&mut query),
        )
    };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOENT) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(QueriedMapping {
        end: query.vma_end,
        dev_major: query.dev_major,
        dev_minor: query.dev_minor,
        inode: query.inode,
        // The size the kernel reports includes the terminating NUL.
        name_len: (query.vma_name_size as usize)
            .saturating_sub(1)
            .min(name.len()),
    }))
}

/// The longest token entry (`NAME=value`) a guardian looks for; it lives on the guardian's
/// stack, which may not allocate.
pub(crate) const GUARDIAN_NEEDLE_MAX: usize = 256;

/// What a guardian needs, all prepared before `fork`: after it, nothing may allocate.
pub(crate) struct GuardianSetup {
    /// A pidfd of the process to watch (hangwatch), readable once it has exited.
    pub watched: OwnedFd,
    /// The guardian's end of a `SOCK_SEQPACKET` pair: one byte `D` means "ending normally",
    /// end of file means the other end was closed (hangwatch may still be alive).
    pub channel: OwnedFd,
    /// `/dev/null`, opened for reading and writing, for the guardian's standard descriptors.
    pub null: OwnedFd,
    /// The environment entry that marks every process to kill.
    pub needle: [u8; GUARDIAN_NEEDLE_MAX],
    /// How much of `needle` is used.
    pub needle_len: usize,
    /// hangwatch's own process group, never killed as a whole.
    pub spared_group: i32,
}

/// The byte hangwatch sends its guardian on a normal exit.
pub(crate) const GUARDIAN_DISARM: u8 = b'D';

/// Forks the guardian through an intermediate child that forks it and exits at once, so that
/// the guardian is not this process's child. Returns the intermediate's PID at once, *not yet
/// reaped*: [`guardian_settle`] reaps it. Not waiting here keeps the intermediate's scheduling
/// and its fork off the caller's path (on a busy machine, that wait was the guardian's whole
/// start-up cost).
///
/// The intermediate gives up every descriptor but the guardian's before it forks the guardian,
/// so the guardian never holds a copy of hangwatch's output (a reader waiting for its end of
/// file) or of a lock, however late it is scheduled.
pub(crate) fn spawn_guardian(setup: GuardianSetup) -> io::Result<i32> {
    let affinity = SameCpu::pin();
    // SAFETY: the child runs only async-signal-safe system calls (sched_setaffinity, setsid,
    // dup2, fcntl, close_range, fork, _exit and the guardian's own, see `guardian_main`) and
    // allocates nothing; the parent is unaffected.
    let intermediate = unsafe { libc::fork() };
    if intermediate < 0 {
        let err = io::Error::last_os_error();
        affinity.restore();
        return Err(err);
    }
    affinity.restore();
    if intermediate == 0 {
        // SAFETY: setsid takes no argument; in a fresh child it cannot fail (the child is not a
        // group leader), and if it did the guardian would merely share hangwatch's group.
        unsafe { libc::setsid() };
        if !guardian_prepare(&setup) {
            // SAFETY: _exit never returns and is async-signal-safe.
            unsafe { libc::_exit(1) };
        }
        // SAFETY: as above: the grandchild only runs `guardian_main`, which never returns.
        let guardian = unsafe { libc::fork() };
        if guardian == 0 {
            guardian_main(&setup);
        }
        // SAFETY: _exit never returns and is async-signal-safe.
        unsafe { libc::_exit(i32::from(guardian < 0)) };
    }
    drop(setup);
    Ok(intermediate)
}

/// The calling thread pinned to the CPU it runs on, for one `fork`: the child is then queued
/// on that CPU, whose current task (the parent) it may preempt, instead of behind a busy
/// task on another CPU. [`SameCpu::restore`] gives back the thread's CPUs; the child calls it
/// too, before anything else.
struct SameCpu {
    before: Option<libc::cpu_set_t>,
}

impl SameCpu {
    fn pin() -> SameCpu {
        // SAFETY: the sets are plain bit arrays on the stack; the calls take their sizes.
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            let cpu = libc::sched_getcpu();
            if cpu < 0
                || libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut before)
                    != 0
            {
                return SameCpu { before: None };
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
                return SameCpu { before: None };
            }
            SameCpu {
                before: Some(before),
            }
        }
    }

    /// Async-signal-safe: one system call.
    fn restore(&self) {
        if let Some(before) = &self.before {
            // SAFETY: a live set of the size given.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), before);
            }
        }
    }
}

/// Reaps the intermediate child of [`spawn_guardian`]: `Ok` once it has exited having forked
/// the guardian. Must run before this process becomes a subreaper.
pub(crate) fn guardian_settle(intermediate: i32) -> io::Result<()> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a live int the kernel writes; the PID is our own fresh child.
        let rc = unsafe { libc::waitpid(intermediate, &mut status, libc::__WALL) };
        if rc == intermediate {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other("the guardian could not be forked"))
    }
}

/// Sends the disarm byte, with `handed` attached (`SCM_RIGHTS`): descriptors whose last close
/// is slow (an inotify instance's costs an RCU grace period, 10 to 20 ms), which the guardian
/// then holds until this process is gone, so that it closes them, not this process on its way
/// out. `MSG_NOSIGNAL`: a guardian that is gone must not raise `SIGPIPE`.
pub(crate) fn guardian_disarm(
    channel: BorrowedFd<'_>,
    handed: &[BorrowedFd<'_>],
) -> io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let byte = [GUARDIAN_DISARM];
    let iov = [std::io::IoSlice::new(&byte)];
    let raw: Vec<i32> = handed
        .iter()
        .take(GUARDIAN_HANDED_MAX)
        .map(|fd| fd.as_raw_fd())
        .collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    sendmsg::<()>(
        channel.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map(|_| ())
    .map_err(io::Error::from)
}

/// The most descriptors one disarm hands over.
pub(crate) const GUARDIAN_HANDED_MAX: usize = 8;

/// The guardian's descriptor numbers, set by [`guardian_prepare`]: hangwatch's pidfd and the
/// channel.
const GUARDIAN_WATCHED: i32 = 3;
const GUARDIAN_CHANNEL: i32 = 4;

/// Prepares the intermediate child for the guardian it is about to fork, which inherits all of
/// it: signal dispositions, an empty mask, and its descriptors. `false` if the descriptors
/// could not be had.
///
/// Runs in a forked child of a possibly multi-threaded process: only raw system calls.
fn guardian_prepare(setup: &GuardianSetup) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: every call below takes integers or pointers to live stack values; the
    // descriptors were inherited from the parent and are owned by this process alone now.
    unsafe {
        // Signals: a stray INT, TERM, HUP or QUIT (a terminal closing, a group signal) must not
        // end the guardian before it has done its job; KILL still does. The others go back to
        // their defaults: the handlers inherited from the runtime would write into descriptors
        // that are closed below.
        for sig in 1..libc::SIGRTMIN() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let ignored = matches!(
                sig,
                libc::SIGINT
                    | libc::SIGTERM
                    | libc::SIGHUP
                    | libc::SIGQUIT
                    | libc::SIGPIPE
                    | libc::SIGTSTP
                    | libc::SIGTTIN
                    | libc::SIGTTOU
                    | libc::SIGUSR1
                    | libc::SIGUSR2
            );
            libc::signal(
                sig,
                if ignored {
                    libc::SIG_IGN
                } else {
                    libc::SIG_DFL
                },
            );
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        // Standard descriptors on /dev/null (hangwatch's stdout may be a pipe someone reads to
        // its end), the two it needs at fixed numbers, everything else closed: a copy of the
        // state directory's lock or of a program's pipe must not live on in the guardian.
        let null = setup.null.as_raw_fd();
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        let watched = libc::fcntl(setup.watched.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10);
        let channel = libc::fcntl(setup.channel.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10);
        if watched < 0 || channel < 0 {
            return false;
        }
        libc::dup2(watched, GUARDIAN_WATCHED);
        libc::dup2(channel, GUARDIAN_CHANNEL);
        libc::syscall(libc::SYS_close_range, GUARDIAN_CHANNEL + 1, u32::MAX, 0);
    }
    true
}

/// The guardian: waits for hangwatch to exit, and unless it was told the exit is normal,
/// kills every process that carries the token, with its process group. Never returns.
///
/// Runs in a forked child of a possibly multi-threaded process: only raw system calls, no
/// allocation, no lock, no panic path (every index is checked).
fn guardian_main(setup: &GuardianSetup) -> ! {
    const WATCHED: i32 = GUARDIAN_WATCHED;
    const CHANNEL: i32 = GUARDIAN_CHANNEL;
    // SAFETY: a NUL-terminated literal name.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"hw-guardian".as_ptr(), 0, 0, 0) };
    let mut fds = [
        libc::pollfd {
            fd: WATCHED,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: CHANNEL,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a live array of two pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(1) };
        }
        // The channel first: a disarm sent just before the exit is read before the exit is seen.
        if fds[1].revents != 0 {
            let mut byte = [0u8; 16];
            // Room for the descriptors a disarm hands over (`SCM_RIGHTS`), 8-byte aligned as
            // `cmsghdr` needs: they stay open here, and are closed by this process's exit.
            let mut control = [0u64; 8];
            let mut iov = libc::iovec {
                iov_base: byte.as_mut_ptr().cast(),
                iov_len: byte.len(),
            };
            // SAFETY: a zeroed msghdr is valid; its pointers are set to live stack values
            // below.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            // SAFETY: `msg` points at live stack buffers of the lengths given.
            let n = unsafe {
                libc::recvmsg(
                    CHANNEL,
                    &mut msg,
                    libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
                )
            };
            if n > 0 && byte[..n as usize].contains(&GUARDIAN_DISARM) {
                // A normal exit. What was handed over is closed here once hangwatch is gone
                // (bounded: 10 s), so that its last close costs hangwatch nothing.
                if msg.msg_controllen > 0 {
                    let mut watched = [libc::pollfd {
                        fd: WATCHED,
                        events: libc::POLLIN,
                        revents: 0,
                    }];
                    // SAFETY: `watched` is a live array of one pollfd.
                    unsafe { libc::poll(watched.as_mut_ptr(), 1, 10_000) };
                }
                // SAFETY: _exit never returns.
                unsafe { libc::_exit(0) };
            }
            if n == 0 || (n < 0 && fds[1].revents & (libc::POLLHUP | libc::POLLERR) != 0) {
                // Closed without a word: only the exit of hangwatch itself decides now.
                fds[1].fd = -1;
            }
        }
        if fds[0].revents != 0 {
            break;
        }
    }
    let needle = setup
        .needle
        .get(..setup.needle_len)
        .unwrap_or(&setup.needle[..0]);
    sweep(needle, setup.spared_group);
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(0) }
}

/// How many passes over `/proc` a sweep makes at most: each pass kills what it finds, and a
/// process that forked between the read and the kill leaves a child for the next pass.
const SWEEP_PASSES: usize = 32;

/// Kills every process whose starting environment holds `needle`, and the process group of
/// each (but never `spared_group` or the guardian's own), until a pass finds none.
fn sweep(needle: &[u8], spared_group: i32) {
    // SAFETY: getpid and getpgrp have no preconditions.
    let (own_pid, own_group) = unsafe { (libc::getpid(), libc::getpgrp()) };
    for _ in 0..SWEEP_PASSES {
        let mut found = 0usize;
        for_each_pid(|pid| {
            if pid == own_pid || pid <= 1 {
                return;
            }
            // A pidfd first: the kill then reaches the process whose environment was read, or
            // nothing, never a process that took its PID in between.
            // SAFETY: pidfd_open takes integers and returns a new fd or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
            if fd < 0 {
                return;
            }
            if environ_holds(pid, needle) {
                // SAFETY: getpgid takes an integer; pidfd_send_signal with a null siginfo is
                // allowed; `fd` is the pidfd opened above.
                unsafe {
                    let group = libc::getpgid(pid);
                    let sent = libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd,
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    );
                    if sent == 0 {
                        found += 1;
                        // The group of a process that still lives is that process's: its
                        // members that cleared the token go too.
                        if group > 1 && group != spared_group && group != own_group {
                            libc::kill(-group, libc::SIGKILL);
                        }
                    }
                }
            }
            // SAFETY: closes the fd opened above, once.
            unsafe { libc::close(fd) };
        });
        if found == 0 {
            return;
        }
    }
}

/// Calls `visit` with every PID in `/proc`, read with `getdents64` into a stack buffer.
fn for_each_pid(mut visit: impl FnMut(i32)) {
    // SAFETY: a NUL-terminated literal path; the fd is closed below.
    let dir = unsafe {
        libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return;
    }
    let mut buf = [0u8; 8192];
    loop {
        // SAFETY: the kernel writes at most `buf.len()` bytes of dirent64 records into `buf`.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let mut at = 0usize;
        let end = n as usize;
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        while at + 19 < end {
            let reclen = match buf.get(at + 16..at + 18) {
                Some(&[lo, hi]) => usize::from(u16::from_ne_bytes([lo, hi])),
                _ => break,
            };
            if reclen == 0 {
                break;
            }
            let name = buf.get(at + 19..(at + reclen).min(end)).unwrap_or(&[]);
            let mut pid: i32 = 0;
            let mut digits = 0;
            for &byte in name {
                if byte == 0 {
                    break;
                }
                if !byte.is_ascii_digit() || digits >= 9 {
                    digits = 0;
                    break;
                }
                pid = pid * 10 + i32::from(byte - b'0');
                digits += 1;
            }
            if digits > 0 {
                visit(pid);
            }
            at += reclen;
        }
    }
    // SAFETY: closes the fd opened above, once.
    unsafe { libc::close(dir) };
}

/// Whether `/proc/PID/environ` has an entry equal to `needle`, read in stack-sized pieces.
fn environ_holds(pid: i32, needle: &[u8]) -> bool {
    if needle.is_empty() {
        return false;
    }
    let mut path = [0u8; 32];
    let mut len = 0;
    for &byte in b"/proc/" {
        path[len] = byte;
        len += 1;
    }
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut rest = pid.unsigned_abs();
    loop {
        digits[n] = b'0' + (rest % 10) as u8;
        n += 1;
        rest /= 10;
        if rest == 0 || n == digits.len() {
            break;
        }
    }
    for i in (0..n).rev() {
        path[len] = digits[i];
        len += 1;
    }
    for &byte in b"/environ\0" {
        path[len] = byte;
        len += 1;
    }
    // SAFETY: `path` is NUL-terminated (written just above, 6 + 10 + 9 bytes < 32).
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    // Bytes of the current entry that matched so far; `usize::MAX` once it differs.
    let mut matched = 0usize;
    let mut found = false;
    'read: loop {
        // SAFETY: reads at most `buf.len()` bytes into the live stack buffer.
        let got = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if got <= 0 {
            break;
        }
        for &byte in buf.get(..got as usize).unwrap_or(&[]) {
            if byte == 0 {
                if matched == needle.len() {
                    found = true;
                    break 'read;
                }
                matched = 0;
            } else if matched != usize::MAX && needle.get(matched) == Some(&byte) {
                matched += 1;
            } else {
                matched = usize::MAX;
            }
        }
    }
    // SAFETY: closes the fd opened above, once.
    unsafe { libc::close(fd) };
    found
}
